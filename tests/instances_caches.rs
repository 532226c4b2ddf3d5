//! Two instances over one database: what one instance (or the CLI) changes, the other stops
//! using at once, although it had it cached (applications' keys and URLs, accounts' secrets and
//! limits, webhook signing).

mod common;

use common::receiver::{Received, Receiver};
use common::*;
use outdial::accounts;
use outdial::startup::Instance;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::{Duration, Instant};

/// Well under the 30 s (JWT keys, signing) and 60 s (Basic) the caches used to keep entries.
const AT_ONCE: Duration = Duration::from_secs(3);

/// Instance B: another instance over the same database, with its address.
async fn instance_b(pool: &PgPool, roles: Vec<&'static str>) -> (Instance, String) {
    let settings = test_settings(&Options { roles, ..Options::default() });
    let instance = Instance::start(settings, pool.clone()).await.expect("instance B starts");
    let address = format!("http://127.0.0.1:{}", instance.port.expect("B runs the API"));
    (instance, address)
}

/// Sends `request` until its status is `status`; fails if that takes longer than `AT_ONCE`.
async fn until_status(status: u16, request: impl Fn() -> reqwest::RequestBuilder) {
    let started = Instant::now();
    loop {
        let got = request().send().await.unwrap().status();
        if got == status {
            return;
        }
        assert!(started.elapsed() < AT_ONCE, "still {got}, not {status}, {:?} after the change", started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn call_to(event_url: &str) -> Value {
    json!({
        "to": [{"type": "phone", "number": "447700900000"}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [{"action": "talk", "text": "hi"}],
        "event_url": [event_url],
    })
}

#[sqlx::test]
async fn an_application_deleted_on_one_instance_is_refused_by_the_other(pool: PgPool) {
    let a = spawn_app(pool.clone()).await;
    let (b, b_address) = instance_b(&pool, vec!["api"]).await;
    let on_b = || a.client.post(format!("{b_address}/v1/calls")).bearer_auth(a.jwt()).json(&minimal_call());
    assert_eq!(on_b().send().await.unwrap().status(), 201, "B has the key cached now");

    let deleted = a.client.delete(a.url(&format!("/v2/applications/{}", a.app_id)))
        .basic_auth(&a.account.api_key, Some(&a.account.api_secret)).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    until_status(401, on_b).await;
    b.stop().await;
    a.stop().await;
}

#[sqlx::test]
async fn a_replaced_key_and_new_urls_reach_the_other_instance(pool: PgPool) {
    let a = spawn_app(pool.clone()).await;
    let (b, b_address) = instance_b(&pool, vec!["api"]).await;
    let create_on_b = |jwt: String| a.client.post(format!("{b_address}/v1/calls")).bearer_auth(jwt).json(&minimal_call());
    assert_eq!(create_on_b(a.jwt()).send().await.unwrap().status(), 201, "B has the key cached now");

    let pair = outdial::applications::keys::generate();
    let update = json!({"name": "rekeyed", "keys": {"public_key": pair.public_pem},
                        "capabilities": {"voice": {"webhooks": {"event_url": {"address": "https://example.com/new-events", "http_method": "POST"}}}}});
    let updated = a.client.put(a.url(&format!("/v2/applications/{}", a.app_id)))
        .basic_auth(&a.account.api_key, Some(&a.account.api_secret)).json(&update).send().await.unwrap();
    assert_eq!(updated.status(), 200);
    let old_jwt = a.jwt();
    until_status(401, || create_on_b(old_jwt.clone())).await;

    // The new key works on B, and B's new calls take the application's new event_url.
    let new_jwt = outdial::auth::mint_application_jwt(a.app_id, &pair.private_pem, 900).unwrap();
    let created = create_on_b(new_jwt).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let uuid = created.json::<Value>().await.unwrap()["uuid"].as_str().unwrap().to_string();
    let (event_url,): (Option<String>,) = sqlx::query_as("SELECT event_url FROM calls WHERE uuid = $1::uuid").bind(&uuid).fetch_one(&pool).await.unwrap();
    assert_eq!(event_url.as_deref(), Some("https://example.com/new-events"));
    b.stop().await;
    a.stop().await;
}

#[sqlx::test]
async fn an_account_changed_from_the_cli_reaches_every_instance(pool: PgPool) {
    let a = spawn_app(pool.clone()).await;
    let (b, b_address) = instance_b(&pool, vec!["api"]).await;
    let (key, old_secret) = (a.account.api_key.clone(), a.account.api_secret.clone());
    let list_on_b = |secret: String| a.client.get(format!("{b_address}/v2/applications")).basic_auth(&key, Some(secret));
    assert_eq!(list_on_b(old_secret.clone()).send().await.unwrap().status(), 200, "B has the pair cached now");
    let create_on_b = || a.client.post(format!("{b_address}/v1/calls")).bearer_auth(a.jwt()).json(&minimal_call());
    assert_eq!(create_on_b().send().await.unwrap().status(), 201, "B has the account's rate cached with the key");

    // What `outdial account rotate-secrets --api-secret` does, from no instance at all.
    let rotated = accounts::repo::replace_secrets(&pool, &key, true, false).await.unwrap().unwrap();
    until_status(401, || list_on_b(old_secret.clone())).await;
    assert_eq!(list_on_b(rotated.api_secret.unwrap()).send().await.unwrap().status(), 200);

    // `outdial account update --calls-per-second 1`: B's cached rate (1000/s) goes with it.
    let changes = accounts::repo::AccountChanges { calls_per_second: Some(1), ..Default::default() };
    accounts::repo::update_limits(&pool, &key, &changes).await.unwrap().unwrap();
    until_status(429, create_on_b).await;
    b.stop().await;
    a.stop().await;
}

/// The HS256 secret an event's `Authorization` was signed with, among `secrets` (None: unsigned).
fn signed_with<'s>(request: &Received, secrets: &[&'s str]) -> Option<&'s str> {
    let token = request.headers.get("authorization")?.strip_prefix("Bearer ").expect("Bearer token");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    let verifies = |secret: &&&str| jsonwebtoken::decode::<Value>(token, &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()), &validation).is_ok();
    Some(secrets.iter().find(verifies).copied().expect("signed with a known secret"))
}

/// The `started` event of a new call created on B.
async fn started_event(a: &TestApp, b_address: &str, receiver: &Receiver) -> Received {
    let body = call_to(&receiver.url("/events"));
    let response = a.client.post(format!("{b_address}/v1/calls")).bearer_auth(a.jwt()).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let uuid = response.json::<Value>().await.unwrap()["uuid"].as_str().unwrap().to_string();
    let is_started = |e: &Received| e.body["uuid"] == uuid.as_str() && e.body["status"] == "started";
    let events = receiver.wait_for("/events", |r| r.iter().any(is_started)).await;
    events.into_iter().find(is_started).unwrap()
}

#[sqlx::test]
async fn signing_changes_reach_the_other_instances_dispatcher(pool: PgPool) {
    let a = spawn_app(pool.clone()).await;
    // B creates calls, drives them and sends their events (handed over in memory, signed by
    // what its dispatcher has cached).
    let (b, b_address) = instance_b(&pool, vec!["api", "workers", "webhooks"]).await;
    let receiver = Receiver::start().await;
    let started_on_b = || started_event(&a, &b_address, &receiver);
    let old_secret = a.account.signature_secret.clone();
    assert_eq!(signed_with(&started_on_b().await, &[&old_secret]), None, "unsigned, and B has that cached now");

    let signed = json!({"name": "signed", "capabilities": {"voice": {"webhooks": {}, "signed_callbacks": true}}});
    let updated = a.client.put(a.url(&format!("/v2/applications/{}", a.app_id)))
        .basic_auth(&a.account.api_key, Some(&a.account.api_secret)).json(&signed).send().await.unwrap();
    assert_eq!(updated.status(), 200);
    let changed_at = Instant::now();
    while signed_with(&started_on_b().await, &[&old_secret]).is_none() {
        assert!(changed_at.elapsed() < AT_ONCE, "B still sends unsigned events {:?} after signed_callbacks was set", changed_at.elapsed());
    }

    // What `outdial account rotate-secrets --signature-secret` does.
    let rotated = accounts::repo::replace_secrets(&pool, &a.account.api_key, false, true).await.unwrap().unwrap();
    let new_secret = rotated.signature_secret.unwrap();
    let changed_at = Instant::now();
    while signed_with(&started_on_b().await, &[&old_secret, &new_secret]) != Some(new_secret.as_str()) {
        assert!(changed_at.elapsed() < AT_ONCE, "B still signs with the old secret {:?} after it was replaced", changed_at.elapsed());
    }
    b.stop().await;
    a.stop().await;
}

#[sqlx::test]
async fn a_lost_listen_connection_clears_the_caches_when_it_is_back(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let list = || app.client.get(app.url("/v1/calls")).bearer_auth(app.jwt());
    assert_eq!(list().send().await.unwrap().status(), 200, "the key is cached now");
    // A change whose notification is lost: made without one, while the listener is cut off.
    sqlx::query("UPDATE applications SET deleted_at = now() WHERE id = $1").bind(app.app_id).execute(&pool).await.unwrap();
    let (cut,): (i64,) = sqlx::query_as(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(outdial::cache::LISTENER_NAME)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(cut, 1, "one listener per instance");
    until_status(401, list).await;
    app.stop().await;
}
