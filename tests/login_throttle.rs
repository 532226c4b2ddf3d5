//! Failed logins are throttled per client address and per key (429 with Retry-After, nothing
//! checked), successes are not, and an unknown api_key costs as much as a wrong secret.

mod common;

use common::*;
use outdial::config::Settings;
use sqlx::PgPool;
use std::time::{Duration, Instant};

const BURST: u32 = 3;

/// Three failures in a row, then one a minute; client addresses from X-Forwarded-For, so one
/// test can speak from many.
fn throttled_settings() -> Settings {
    let mut settings = test_settings(&Options::default());
    settings.auth.failed_logins_burst = BURST;
    settings.auth.failed_login_interval_ms = 60_000;
    settings.auth.client_address_from_forwarded = true;
    settings
}

impl TestApp {
    fn basic_from(&self, client: &str, api_key: &str, api_secret: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url("/v2/applications")).header("X-Forwarded-For", client).basic_auth(api_key, Some(api_secret))
    }

    fn own_basic_from(&self, client: &str) -> reqwest::RequestBuilder {
        self.basic_from(client, &self.account.api_key, &self.account.api_secret)
    }

    fn bearer_from(&self, client: &str, token: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url("/v1/calls")).header("X-Forwarded-For", client).bearer_auth(token)
    }
}

async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

/// A 429 problem with a Retry-After of at most the one-minute interval.
async fn assert_throttled(request: reqwest::RequestBuilder) {
    let response = request.send().await.unwrap();
    let retry_after: u64 = response.headers().get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After: {retry_after}");
    let body = assert_problem(response, 429).await;
    assert!(body["detail"].as_str().unwrap().contains("failed logins"), "{body}");
}

fn foreign_token(app: &TestApp) -> String {
    outdial::auth::mint_application_jwt(app.app_id, OTHER_PRIVATE_KEY, 900).unwrap()
}

#[sqlx::test]
async fn failures_from_one_address_are_throttled_whatever_they_try(pool: PgPool) {
    let app = spawn_app_with_settings(pool, throttled_settings(), 1000).await;
    let attacker = "203.0.113.7";
    // Unknown keys, a wrong secret in get-balance's query, a bad token: one budget for all.
    assert_eq!(status(app.basic_from(attacker, "nobody01", "guess")).await, 401);
    let query = app.client.get(app.url(&format!("/account/get-balance?api_key={}&api_secret=guess", app.account.api_key)));
    assert_eq!(status(query.header("X-Forwarded-For", attacker)).await, 401);
    assert_eq!(status(app.bearer_from(attacker, "not-a-jwt")).await, 401);
    // Even right credentials are not checked from there now.
    assert_throttled(app.own_basic_from(attacker)).await;
    assert_throttled(app.bearer_from(attacker, &app.jwt())).await;
    // Other addresses are not held up, and a proxy's earlier hops are the client's own say-so.
    assert_eq!(status(app.own_basic_from("198.51.100.1")).await, 200);
    assert_eq!(status(app.bearer_from("198.51.100.1", &app.jwt())).await, 200);
    assert_eq!(status(app.own_basic_from(&format!("198.51.100.1, {attacker}"))).await, 429);
    app.stop().await;
}

#[sqlx::test]
async fn an_api_key_failed_from_many_addresses_is_throttled_for_strangers_not_its_owner(pool: PgPool) {
    let app = spawn_app_with_settings(pool, throttled_settings(), 1000).await;
    let owner = "198.51.100.20";
    assert_eq!(status(app.own_basic_from(owner)).await, 200);
    for i in 0..BURST {
        // One failure per address: no address is over its budget, the key is.
        assert_eq!(status(app.basic_from(&format!("203.0.113.{i}"), &app.account.api_key, "guess")).await, 401);
    }
    assert_throttled(app.basic_from("203.0.113.99", &app.account.api_key, "guess")).await;
    assert_throttled(app.own_basic_from("192.0.2.50")).await;
    // Its owner's address logged in with it before: let in at once.
    assert_eq!(status(app.own_basic_from(owner)).await, 200);
    // Other keys are not affected.
    let other = outdial::accounts::repo::create(&app.pool, "other", 3).await.unwrap();
    assert_eq!(status(app.basic_from("192.0.2.50", &other.api_key, &other.api_secret)).await, 200);
    app.stop().await;
}

#[sqlx::test]
async fn jwt_failures_are_throttled_per_application_too(pool: PgPool) {
    let app = spawn_app_with_settings(pool, throttled_settings(), 1000).await;
    let owner = "198.51.100.30";
    assert_eq!(status(app.bearer_from(owner, &app.jwt())).await, 200);
    for i in 0..BURST {
        assert_eq!(status(app.bearer_from(&format!("203.0.113.{i}"), &foreign_token(&app))).await, 401);
    }
    assert_throttled(app.bearer_from("192.0.2.60", &app.jwt())).await;
    assert_eq!(status(app.bearer_from(owner, &app.jwt())).await, 200);
    // Another application of the account is not affected.
    let second = create_application(&app.pool, app.account.account_id, None).await;
    assert_eq!(status(app.bearer_from("192.0.2.60", &app.jwt_for(second))).await, 200);
    app.stop().await;
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[sqlx::test]
async fn an_unknown_api_key_costs_as_much_as_a_wrong_secret(pool: PgPool) {
    let mut settings = test_settings(&Options::default());
    settings.auth.failed_logins_burst = 10_000;
    let app = spawn_app_with_settings(pool, settings, 1000).await;
    let timed = |api_key: String, api_secret: String| {
        let request = app.client.get(app.url("/v2/applications")).basic_auth(api_key, Some(api_secret));
        async move {
            let started = Instant::now();
            let status = request.send().await.unwrap().status();
            (started.elapsed(), status.as_u16())
        }
    };
    assert_eq!(timed(app.account.api_key.clone(), app.account.api_secret.clone()).await.1, 200);
    let (mut known, mut unknown, mut cached) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..15 {
        let (took, status) = timed(app.account.api_key.clone(), format!("wrong{i}")).await;
        assert_eq!(status, 401);
        known.push(took);
        let (took, status) = timed(format!("{i:08x}"), format!("wrong{i}")).await;
        assert_eq!(status, 401);
        unknown.push(took);
        cached.push(timed(app.account.api_key.clone(), app.account.api_secret.clone()).await.0);
    }
    let (known, unknown, cached) = (median(known), median(unknown), median(cached));
    println!("median: wrong secret {known:?}, unknown api_key {unknown:?}, remembered right pair {cached:?}");
    // The comparison means something only if argon2, not the request, makes the wrong secret slow.
    assert!(known > cached * 2, "a wrong secret ({known:?}) is not much slower than a remembered pair ({cached:?})");
    assert!(unknown * 2 >= known, "an unknown api_key ({unknown:?}) answers much faster than a wrong secret ({known:?})");
    app.stop().await;
}

#[sqlx::test]
async fn throttling_is_off_the_path_of_successful_logins(pool: PgPool) {
    let app = spawn_app_with_settings(pool, throttled_settings(), 1000).await;
    let client = "198.51.100.40";
    // Fewer failures than the burst, then successes: none refused, and successes spend nothing.
    for _ in 0..BURST - 1 {
        assert_eq!(status(app.basic_from(client, &app.account.api_key, "typo")).await, 401);
    }
    for _ in 0..20 {
        assert_eq!(status(app.own_basic_from(client)).await, 200);
        assert_eq!(status(app.bearer_from(client, &app.jwt())).await, 200);
    }
    assert_eq!(status(app.basic_from(client, &app.account.api_key, "typo")).await, 401, "the last failure of the burst");
    assert_throttled(app.basic_from(client, &app.account.api_key, "typo")).await;
    app.stop().await;
}
