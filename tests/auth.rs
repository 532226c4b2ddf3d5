//! Application JWTs on the Voice API: what is accepted and what is refused with 401.

mod common;

use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sqlx::PgPool;

fn sign(claims: serde_json::Value, alg: Algorithm, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

fn rsa_key(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn assert_unauthorized(app: &TestApp, token: Option<&str>) -> serde_json::Value {
    let mut request = app.client.get(app.url("/v1/calls"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer realm=\"outdial\""));
    let body = assert_problem(response, 401).await;
    assert!(body.get("invalid_parameters").is_none(), "401 never carries invalid_parameters");
    body
}

#[sqlx::test]
async fn a_token_minted_like_the_sdks_is_accepted(pool: PgPool) {
    let app = spawn_app(pool).await;
    let claims = json!({"application_id": app.app_id, "iat": now(), "jti": uuid::Uuid::new_v4(), "exp": now() + 900});
    let token = sign(claims, Algorithm::RS256, &rsa_key(PRIVATE_KEY));
    let response = app.client.get(app.url("/v1/calls")).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // The scheme is case-insensitive.
    let response = app.client.get(app.url("/v1/calls")).header("Authorization", format!("bearer {}", app.jwt())).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[sqlx::test]
async fn missing_and_malformed_tokens_are_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = assert_unauthorized(&app, None).await;
    assert!(body["detail"].as_str().unwrap().contains("Bearer"));
    assert_unauthorized(&app, Some("not-a-jwt")).await;
    let basic = app.client.get(app.url("/v1/calls")).basic_auth("key", Some("secret")).send().await.unwrap();
    assert_problem(basic, 401).await;
}

#[sqlx::test]
async fn expired_tokens_are_refused_beyond_the_leeway(pool: PgPool) {
    let app = spawn_app(pool).await;
    let key = rsa_key(PRIVATE_KEY);
    let expired = sign(json!({"application_id": app.app_id, "iat": now() - 1000, "jti": "a", "exp": now() - 120}), Algorithm::RS256, &key);
    let body = assert_unauthorized(&app, Some(&expired)).await;
    assert!(body["detail"].as_str().unwrap().contains("expired"), "{body}");
    // Within the 30 s leeway still good: clocks drift.
    let barely = sign(json!({"application_id": app.app_id, "iat": now() - 900, "jti": "b", "exp": now() - 5}), Algorithm::RS256, &key);
    let response = app.client.get(app.url("/v1/calls")).bearer_auth(barely).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[sqlx::test]
async fn a_token_without_exp_or_living_too_long_is_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let key = rsa_key(PRIVATE_KEY);
    let no_exp = sign(json!({"application_id": app.app_id, "iat": now(), "jti": "a"}), Algorithm::RS256, &key);
    assert_unauthorized(&app, Some(&no_exp)).await;
    let week = sign(json!({"application_id": app.app_id, "iat": now(), "jti": "a", "exp": now() + 7 * 86400}), Algorithm::RS256, &key);
    assert_unauthorized(&app, Some(&week)).await;
}

#[sqlx::test]
async fn nbf_and_iat_in_the_future_are_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let key = rsa_key(PRIVATE_KEY);
    let nbf = sign(json!({"application_id": app.app_id, "iat": now(), "nbf": now() + 600, "jti": "a", "exp": now() + 900}), Algorithm::RS256, &key);
    let body = assert_unauthorized(&app, Some(&nbf)).await;
    assert!(body["detail"].as_str().unwrap().contains("nbf"), "{body}");
    let iat = sign(json!({"application_id": app.app_id, "iat": now() + 600, "jti": "a", "exp": now() + 900}), Algorithm::RS256, &key);
    assert_unauthorized(&app, Some(&iat)).await;
}

#[sqlx::test]
async fn a_token_signed_with_another_key_is_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let claims = json!({"application_id": app.app_id, "iat": now(), "jti": "a", "exp": now() + 900});
    let token = sign(claims, Algorithm::RS256, &rsa_key(OTHER_PRIVATE_KEY));
    let body = assert_unauthorized(&app, Some(&token)).await;
    assert!(body["detail"].as_str().unwrap().contains("signature"), "{body}");
}

#[sqlx::test]
async fn other_algorithms_are_refused_including_key_confusion_and_none(pool: PgPool) {
    let app = spawn_app(pool).await;
    let claims = json!({"application_id": app.app_id, "iat": now(), "jti": "a", "exp": now() + 900});
    // HS256 keyed with the application's public key: the classic key-confusion forgery.
    let forged = sign(claims.clone(), Algorithm::HS256, &EncodingKey::from_secret(PUBLIC_KEY.as_bytes()));
    let body = assert_unauthorized(&app, Some(&forged)).await;
    assert!(body["detail"].as_str().unwrap().contains("RS256"), "{body}");
    let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{}.", b64(json!({"alg": "none", "typ": "JWT"})), b64(claims));
    assert_unauthorized(&app, Some(&none)).await;
}

#[sqlx::test]
async fn unknown_and_deleted_applications_are_refused(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    assert_unauthorized(&app, Some(&app.jwt_for(uuid::Uuid::new_v4()))).await;
    let claims = json!({"iat": now(), "jti": "a", "exp": now() + 900});
    assert_unauthorized(&app, Some(&sign(claims, Algorithm::RS256, &rsa_key(PRIVATE_KEY)))).await;

    let second = create_application(&pool, app.account.account_id, None).await;
    // Used first, so its key is cached: the delete must drop it, not just miss an empty cache.
    let used = app.client.get(app.url("/v1/calls")).bearer_auth(app.jwt_for(second)).send().await.unwrap();
    assert_eq!(used.status(), 200);
    let deleted = app.client.delete(app.url(&format!("/v2/applications/{second}")))
        .basic_auth(&app.account.api_key, Some(&app.account.api_secret)).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_unauthorized(&app, Some(&app.jwt_for(second))).await;
}
