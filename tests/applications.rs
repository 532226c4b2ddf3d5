//! /v2/applications with api_key:api_secret, shaped like Vonage's Applications API v2.

mod common;

use common::*;
use serde_json::{json, Value};
use sqlx::PgPool;

fn voice_app(name: &str) -> Value {
    json!({
        "name": name,
        "capabilities": {"voice": {
            "webhooks": {
                "answer_url": {"address": "https://example.com/answer", "http_method": "GET"},
                "event_url": {"address": "https://example.com/event", "http_method": "POST"},
                "fallback_answer_url": {"address": "https://example.com/fallback", "http_method": "GET"}
            },
            "signed_callbacks": true
        }}
    })
}

impl TestApp {
    fn apps(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).basic_auth(&self.account.api_key, Some(&self.account.api_secret))
    }
}

#[sqlx::test]
async fn an_application_without_a_key_gets_a_generated_pair_that_signs_working_jwts(pool: PgPool) {
    let app = spawn_app(pool).await;
    let response = app.apps(reqwest::Method::POST, "/v2/applications").json(&voice_app("generated")).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let private = created["keys"]["private_key"].as_str().expect("private key returned once");
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8, as both SDKs read");
    assert!(created["keys"]["public_key"].as_str().unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));
    assert_eq!(created["capabilities"]["voice"]["webhooks"]["event_url"]["address"], "https://example.com/event");
    assert_eq!(created["capabilities"]["voice"]["signed_callbacks"], true);
    let id = uuid::Uuid::parse_str(created["id"].as_str().unwrap()).unwrap();

    // The returned private key authenticates Voice API calls for the new application.
    let jwt = outdial::auth::mint_application_jwt(id, private, 900).unwrap();
    let call = app.post_call_as(&jwt, &minimal_call()).await;
    assert_eq!(call.status(), 201);

    let fetched: Value = app.apps(reqwest::Method::GET, &format!("/v2/applications/{id}")).send().await.unwrap().json().await.unwrap();
    assert!(fetched["keys"].get("private_key").is_none(), "the private key is never shown again");
    assert_eq!(fetched["name"], "generated");
}

#[sqlx::test]
async fn a_given_public_key_is_kept_and_updates_replace_settings(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut body = voice_app("mine");
    body["keys"] = json!({"public_key": PUBLIC_KEY});
    let created: Value = app.apps(reqwest::Method::POST, "/v2/applications").json(&body).send().await.unwrap().json().await.unwrap();
    assert!(created["keys"].get("private_key").is_none());
    let id = created["id"].as_str().unwrap().to_string();

    let update = json!({"name": "renamed", "capabilities": {"voice": {"webhooks": {"event_url": {"address": "https://example.com/v2", "http_method": "GET"}}}}});
    let response = app.apps(reqwest::Method::PUT, &format!("/v2/applications/{id}")).json(&update).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["name"], "renamed");
    assert_eq!(updated["capabilities"]["voice"]["webhooks"]["event_url"], json!({"address": "https://example.com/v2", "http_method": "GET"}));
    assert!(updated["capabilities"]["voice"]["webhooks"].get("answer_url").is_none());
    assert_eq!(updated["keys"]["public_key"], PUBLIC_KEY.trim());
}

#[sqlx::test]
async fn list_is_paginated_and_delete_removes(pool: PgPool) {
    let app = spawn_app(pool).await;
    for i in 0..3 {
        let mut body = voice_app(&format!("app {i}"));
        body["keys"] = json!({"public_key": PUBLIC_KEY});
        assert_eq!(app.apps(reqwest::Method::POST, "/v2/applications").json(&body).send().await.unwrap().status(), 201);
    }
    // spawn_app already made one: 4 in all.
    let page: Value = app.apps(reqwest::Method::GET, "/v2/applications?page_size=3&page=2").send().await.unwrap().json().await.unwrap();
    assert_eq!(page["total_items"], 4);
    assert_eq!(page["total_pages"], 2);
    assert_eq!(page["page"], 2);
    assert_eq!(page["_embedded"]["applications"].as_array().unwrap().len(), 1);
    assert!(page["_links"]["prev"]["href"].as_str().unwrap().contains("page=1"));
    assert!(page["_links"].get("next").is_none());

    let id = page["_embedded"]["applications"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(app.apps(reqwest::Method::DELETE, &format!("/v2/applications/{id}")).send().await.unwrap().status(), 204);
    assert_problem(app.apps(reqwest::Method::GET, &format!("/v2/applications/{id}")).send().await.unwrap(), 404).await;
    assert_problem(app.apps(reqwest::Method::DELETE, &format!("/v2/applications/{id}")).send().await.unwrap(), 404).await;
}

#[sqlx::test]
async fn bad_bodies_and_bad_credentials(pool: PgPool) {
    let app = spawn_app(pool).await;
    let bad = json!({"keys": {"public_key": "nope"}, "capabilities": {"voice": {"webhooks": {"event_url": {"address": "mailto:x"}, "answer_url": {"http_method": "PUT"}}}}});
    let names = invalid_names(app.apps(reqwest::Method::POST, "/v2/applications").json(&bad).send().await.unwrap()).await;
    for expected in ["name", "keys.public_key", "capabilities.voice.webhooks.event_url.address", "capabilities.voice.webhooks.answer_url.address"] {
        assert!(names.contains(&expected.to_string()), "{expected} not in {names:?}");
    }
    let wrong = app.client.get(app.url("/v2/applications")).basic_auth(&app.account.api_key, Some("wrong")).send().await.unwrap();
    assert_eq!(wrong.headers()["www-authenticate"], "Basic realm=\"outdial\"");
    assert_problem(wrong, 401).await;
    let none = app.client.get(app.url("/v2/applications")).send().await.unwrap();
    assert_problem(none, 401).await;
}

#[sqlx::test]
async fn accounts_cannot_touch_each_others_applications(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let other = outdial::accounts::repo::create(&pool, "other", 3).await.unwrap();
    let as_other = |m: reqwest::Method, path: String| app.client.request(m, app.url(&path)).basic_auth(&other.api_key, Some(&other.api_secret));
    let path = format!("/v2/applications/{}", app.app_id);
    assert_problem(as_other(reqwest::Method::GET, path.clone()).send().await.unwrap(), 404).await;
    assert_problem(as_other(reqwest::Method::PUT, path.clone()).json(&voice_app("x")).send().await.unwrap(), 404).await;
    assert_problem(as_other(reqwest::Method::DELETE, path).send().await.unwrap(), 404).await;
    let list: Value = as_other(reqwest::Method::GET, "/v2/applications".into()).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["total_items"], 0);
}

#[sqlx::test]
async fn basic_credentials_are_read_as_rfc_7617_says(pool: PgPool) {
    use base64::Engine;
    let app = spawn_app(pool).await;
    let encode = |pair: &str| base64::engine::general_purpose::STANDARD.encode(pair);
    let with = |value: String| app.client.get(app.url("/v2/applications")).header("Authorization", value).send();
    let pair = format!("{}:{}", app.account.api_key, app.account.api_secret);
    // The scheme name is case-insensitive and surrounding blanks do not matter.
    assert_eq!(with(format!("basic {}", encode(&pair))).await.unwrap().status(), 200);
    assert_eq!(with(format!("  BASIC   {}  ", encode(&pair))).await.unwrap().status(), 200);
    // An empty secret is a wrong one; no colon, bad base64 or bad UTF-8 are no credentials at all.
    let empty_secret = assert_problem(with(format!("Basic {}", encode(&format!("{}:", app.account.api_key)))).await.unwrap(), 401).await;
    assert!(empty_secret["detail"].as_str().unwrap().contains("wrong"), "{empty_secret}");
    for unreadable in [format!("Basic {}", encode(&app.account.api_key)), "Basic %%%".to_string(), format!("Basic {}", base64::engine::general_purpose::STANDARD.encode([0xff, b':', 0xfe]))] {
        let body = assert_problem(with(unreadable).await.unwrap(), 401).await;
        assert!(body["detail"].as_str().unwrap().contains("no Basic credentials"), "{body}");
    }
}
