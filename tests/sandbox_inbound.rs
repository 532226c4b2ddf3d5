//! Inbound calls on the simulated network: `POST /v1/sandbox/inbound` rings one of the
//! account's numbers with a sandbox caller, and its application answers as it would a trunk's
//! call (answer_url, events with direction inbound, DTMF to input).

mod common;

use common::receiver::Receiver;
use common::TestApp;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;

const NUMBER: &str = "442079460002";

/// The engine app (simulated network, 20x time) holding NUMBER, linked to its application whose
/// answer_url and event_url are the receiver's.
async fn app_with_number(pool: PgPool) -> (TestApp, Receiver) {
    let app = common::spawn_engine_app(pool).await;
    let hooks = Receiver::start().await;
    sqlx::query("UPDATE applications SET answer_url = $1, answer_method = 'POST', event_url = $2")
        .bind(hooks.url("/answer"))
        .bind(hooks.url("/events"))
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO numbers (msisdn, country, account_id, application_id) VALUES ($1, 'GB', $2, $3)")
        .bind(NUMBER)
        .bind(app.account.account_id)
        .bind(app.app_id)
        .execute(&app.pool)
        .await
        .unwrap();
    (app, hooks)
}

async fn ring(app: &TestApp, body: &Value) -> reqwest::Response {
    app.client.post(app.url("/v1/sandbox/inbound")).bearer_auth(app.jwt()).json(body).send().await.unwrap()
}

#[sqlx::test]
async fn a_sandbox_caller_reaches_the_numbers_application_and_its_keys_reach_input(pool: PgPool) {
    let (app, hooks) = app_with_number(pool).await;
    hooks.respond(
        "/answer",
        200,
        &json!([{"action": "input", "type": ["dtmf"], "dtmf": {"maxDigits": 3, "timeOut": 5}, "eventUrl": [hooks.url("/input")]}]).to_string(),
    );
    let caller = json!({"dtmf": [{"after_s": 1, "value": "427"}]});
    let response = ring(&app, &json!({"to": NUMBER, "from": "447700900321", "caller": caller})).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["direction"], "inbound");
    let uuid = created["uuid"].as_str().unwrap().to_string();
    let input = hooks.wait_for("/input", |r| !r.is_empty()).await;
    assert_eq!(input[0].body["dtmf"]["digits"], "427", "{}", input[0].body);
    hooks.wait_status("/events", &uuid, "completed").await;
    assert_eq!(hooks.statuses("/events", &uuid), ["started", "ringing", "answered", "completed"]);
    assert!(hooks.requests("/events").iter().all(|e| e.body["direction"] == "inbound"));
    // POST answer_url: Vonage's inbound parameters as JSON.
    let answer = &hooks.requests("/answer")[0];
    assert_eq!(answer.method, "POST");
    assert_eq!(answer.body["to"], NUMBER);
    assert_eq!(answer.body["from"], "447700900321");
    assert_eq!(answer.body["uuid"], uuid.as_str());
    let call = app.get_json(&format!("/v1/calls/{uuid}")).await;
    assert_eq!(call["direction"], "inbound", "{call}");
    app.stop().await;
}

#[sqlx::test]
async fn a_sandbox_caller_who_gives_up_while_the_ncco_is_fetched_is_cancelled(pool: PgPool) {
    let (app, hooks) = app_with_number(pool).await;
    hooks.respond("/answer", 200, &json!([{"action": "talk", "text": "too late"}]).to_string());
    hooks.delay("/answer", Duration::from_secs(2));
    // Gives up after 10 simulated seconds (0.5 s at 20x) unless answered.
    let response = ring(&app, &json!({"to": NUMBER, "from": "447700900321", "caller": {"outcome": "unavailable", "ring_s": 10}})).await;
    assert_eq!(response.status(), 201);
    let uuid = response.json::<Value>().await.unwrap()["uuid"].as_str().unwrap().to_string();
    hooks.wait_status("/events", &uuid, "completed").await;
    assert_eq!(hooks.statuses("/events", &uuid), ["started", "ringing", "cancelled", "completed"]);
    app.stop().await;
}

#[sqlx::test]
async fn ringing_a_number_the_account_does_not_hold_is_refused_with_problem_json(pool: PgPool) {
    let (app, _hooks) = app_with_number(pool).await;
    let problem = common::assert_problem(ring(&app, &json!({"to": "442079460999", "from": "447700900321"})).await, 404).await;
    assert!(problem["detail"].as_str().unwrap().contains("not one of your numbers"), "{problem}");
    let problem = common::assert_problem(ring(&app, &json!({"from": "447700900321"})).await, 400).await;
    assert!(problem.to_string().contains("to"), "{problem}");
    let problem = common::assert_problem(ring(&app, &json!({"to": NUMBER, "from": "1", "caller": {"outcome": "sometimes"}})).await, 400).await;
    assert!(problem.to_string().contains("caller"), "{problem}");
    sqlx::query("UPDATE numbers SET application_id = NULL").execute(&app.pool).await.unwrap();
    let problem = common::assert_problem(ring(&app, &json!({"to": NUMBER, "from": "447700900321"})).await, 400).await;
    assert!(problem.to_string().contains("not linked"), "{problem}");
    app.stop().await;
}

/// An inbound leg is priced by the number called at the deck's inbound price, not the outbound
/// one, and its account pays it.
#[sqlx::test]
async fn an_inbound_call_is_billed_at_the_inbound_price(pool: PgPool) {
    let (app, hooks) = app_with_number(pool).await;
    sqlx::query("INSERT INTO rates (prefix, country, network, price_per_minute, inbound_price_per_minute) VALUES ('4420', 'GB', 'GB-FIXED', 0.10, 0.02)")
        .execute(&app.pool)
        .await
        .unwrap();
    hooks.respond("/answer", 200, &json!([{"action": "talk", "text": "please hold", "loop": 0}]).to_string());
    // Hangs up 60 simulated seconds after the answer.
    let response = ring(&app, &json!({"to": NUMBER, "from": "447700900321", "caller": {"hangup_after_s": 60}})).await;
    let uuid = response.json::<Value>().await.unwrap()["uuid"].as_str().unwrap().to_string();
    let got = hooks.wait_status("/events", &uuid, "completed").await;
    let completed = hooks.requests("/events").into_iter().find(|e| e.body["uuid"] == uuid.as_str() && e.body["status"] == "completed").unwrap();
    assert_eq!(completed.body["disconnected_by"], "user", "{got:?}");
    assert_eq!(completed.body["duration"], "60", "{}", completed.body);
    assert_eq!(completed.body["rate"], "0.02000000", "{}", completed.body);
    assert_eq!(completed.body["price"], "0.02000000", "{}", completed.body);
    assert_eq!(completed.body["network"], "GB-FIXED");
    app.stop().await;
}

/// An inbound call's `connect` with randomFromNumber calls out from one of the numbers linked to
/// the application (here the one called).
#[sqlx::test]
async fn an_inbound_calls_connect_takes_its_caller_id_from_a_linked_number(pool: PgPool) {
    let (app, hooks) = app_with_number(pool).await;
    let ncco = json!([{"action": "connect", "randomFromNumber": true, "endpoint": [{"type": "phone", "number": "447700900111"}]}]);
    hooks.respond("/answer", 200, &ncco.to_string());
    let response = ring(&app, &json!({"to": NUMBER, "from": "447700900321", "caller": {"hangup_after_s": 30}})).await;
    assert_eq!(response.status(), 201);
    let started = |to: &'static str| {
        move |r: &[common::receiver::Received]| r.iter().any(|e| e.body["to"] == to && e.body["status"] == "started")
    };
    let first = hooks.wait_for("/events", started("447700900111")).await;
    let first = first.iter().find(|e| e.body["to"] == "447700900111").unwrap();
    assert_eq!(first.body["from"], NUMBER, "{}", first.body);
    assert_eq!(first.body["direction"], "outbound");
    app.stop().await;
}

/// An inbound call is controlled like any other: PUT /v1/calls/{uuid} hangs it up.
#[sqlx::test]
async fn an_inbound_call_is_hung_up_through_the_api(pool: PgPool) {
    let (app, hooks) = app_with_number(pool).await;
    hooks.respond("/answer", 200, &json!([{"action": "talk", "text": "please hold", "loop": 0}]).to_string());
    let response = ring(&app, &json!({"to": NUMBER, "from": "447700900321"})).await;
    let uuid = response.json::<Value>().await.unwrap()["uuid"].as_str().unwrap().to_string();
    hooks.wait_status("/events", &uuid, "answered").await;
    let hangup = app.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": "hangup"})).await;
    assert_eq!(hangup.status(), 204, "{:?}", hangup.text().await);
    hooks.wait_status("/events", &uuid, "completed").await;
    let completed = hooks.requests("/events").into_iter().find(|e| e.body["uuid"] == uuid.as_str() && e.body["status"] == "completed").unwrap();
    assert_eq!(completed.body["direction"], "inbound");
    app.stop().await;
}
