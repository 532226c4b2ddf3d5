//! Every error path answers problem JSON with the right status: never plain text, never a 500
//! for the caller's mistake.

mod common;

use common::*;
use sqlx::PgPool;

#[sqlx::test]
async fn malformed_json_is_400(pool: PgPool) {
    let app = spawn_app(pool).await;
    let response = app.client.post(app.url("/v1/calls")).bearer_auth(app.jwt())
        .header("content-type", "application/json").body("{\"to\": [").send().await.unwrap();
    let body = assert_problem(response, 400).await;
    assert!(body["detail"].as_str().unwrap().contains("not valid JSON"), "{body}");
    let response = app.client.post(app.url("/v1/calls")).bearer_auth(app.jwt())
        .header("content-type", "application/json").body("[1,2]").send().await.unwrap();
    assert_problem(response, 400).await;
    let response = app.client.post(app.url("/v1/calls")).bearer_auth(app.jwt())
        .header("content-type", "application/json").body("").send().await.unwrap();
    assert_problem(response, 400).await;
}

#[sqlx::test]
async fn a_wrong_content_type_is_415(pool: PgPool) {
    let app = spawn_app(pool).await;
    let response = app.client.post(app.url("/v1/calls")).bearer_auth(app.jwt())
        .header("content-type", "text/plain").body(minimal_call().to_string()).send().await.unwrap();
    let body = assert_problem(response, 415).await;
    assert!(body["detail"].as_str().unwrap().contains("application/json"));
}

#[sqlx::test]
async fn unknown_routes_and_wrong_methods(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = assert_problem(app.client.get(app.url("/v1/nope")).send().await.unwrap(), 404).await;
    assert!(body["detail"].as_str().unwrap().starts_with("There is no GET /v1/nope"));
    let wrong = app.client.delete(app.url("/v1/calls")).send().await.unwrap();
    assert_eq!(wrong.headers().get("allow").map(|v| v.to_str().unwrap()), Some("GET, POST"), "a 405 says what the path takes");
    assert_problem(wrong, 405).await;
    // Allow is built from the path's routes, in one order (src/http/endpoint.rs).
    for (method, path, allow) in [
        ("PATCH", "/v2/applications/x", "GET, PUT, DELETE"),
        ("POST", "/health", "GET"),
        ("HEAD", "/v1/calls/x/dtmf", "PUT"),
        ("POST", "/v1/calls/x/talk", "PUT, DELETE"),
        ("OPTIONS", "/v1/sandbox/numbers/447700900000", "GET, PUT, DELETE"),
        ("DELETE", "/v1/rates", "GET, POST"),
        ("GET", "/number/buy", "POST"),
    ] {
        let wrong = app.client.request(method.parse().unwrap(), app.url(path)).send().await.unwrap();
        assert_eq!(wrong.headers().get("allow").map(|v| v.to_str().unwrap()), Some(allow), "Allow of {method} {path}");
        if method != "HEAD" {
            assert_problem(wrong, 405).await;
        } else {
            assert_eq!(wrong.status(), 405, "HEAD {path}");
        }
    }
    // A trailing slash, as some clients add, reaches the route.
    assert_eq!(app.client.get(app.url("/v1/calls/")).bearer_auth(app.jwt()).send().await.unwrap().status(), 200);
}

#[sqlx::test]
async fn a_body_over_the_limit_is_413(pool: PgPool) {
    let app = spawn_app_with(pool, Options { max_body_bytes: 4096, ..Options::default() }).await;
    let big = serde_json::json!({"to": [{"type": "phone", "number": "447700900000"}], "pad": "x".repeat(10_000)});
    let response = app.post_call(&big).await;
    assert_problem(response, 413).await;
}

#[sqlx::test]
async fn other_requests_over_the_rate_get_429(pool: PgPool) {
    let app = spawn_app_with(pool, Options { other_requests_per_second: 2, ..Options::default() }).await;
    let mut limited = None;
    for _ in 0..6 {
        let response = app.get("/v1/calls").await;
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("the fifth request in a second is over 2/s");
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    assert_problem(response, 429).await;
}

#[sqlx::test]
async fn a_database_failure_is_a_problem_json_5xx_not_a_panic(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let jwt = app.jwt();
    // Warm the key cache, then take the database away.
    assert_eq!(app.get("/v1/calls").await.status(), 200);
    pool.close().await;
    let response = app.client.get(app.url("/v1/calls")).bearer_auth(jwt).send().await.unwrap();
    let status = response.status().as_u16();
    assert!(status == 500 || status == 503, "{status}");
    let body = assert_problem(response, status).await;
    assert!(!body["detail"].as_str().unwrap().contains("pool"), "internals stay in the logs: {body}");
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    assert_eq!(health.json::<serde_json::Value>().await.unwrap()["database"], "unreachable");
}

#[sqlx::test]
async fn health_reports_version_database_and_active_calls(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.create_call().await;
    let response = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "reachable");
    assert_eq!(body["active_calls"], 1);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_s"].is_u64());
}

/// U+0000 cannot be stored by PostgreSQL: a body, a query or credentials holding it get a
/// 4xx problem, never a 500 from the database.
#[sqlx::test]
async fn the_nul_character_is_refused_not_a_500(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut call = minimal_call();
    call["user_data"] = serde_json::json!("order\u{0}42");
    let body = assert_problem(app.post_call(&call).await, 400).await;
    assert!(body["detail"].as_str().unwrap().contains("U+0000"), "{body}");
    let mut call = minimal_call();
    call["ncco"][0]["unknown\u{0}key"] = serde_json::json!(1);
    assert_problem(app.post_call(&call).await, 400).await;
    let response = app.client.get(app.url("/v1/calls?conversation_uuid=CON-%00")).bearer_auth(app.jwt()).send().await.unwrap();
    assert_problem(response, 400).await;
    // Refused before anyone reads the query; as Basic credentials, a key that cannot exist.
    let response = app.client.get(app.url("/account/get-balance?api_key=a%00b&api_secret=x")).send().await.unwrap();
    assert_problem(response, 400).await;
    let response = app.client.get(app.url("/account/get-balance")).basic_auth("a\u{0}b", Some("x")).send().await.unwrap();
    assert_problem(response, 401).await;
}
