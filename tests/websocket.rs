//! Calls to a websocket endpoint on the simulated network: developers build voice bots against
//! their own WebSocket server with no trunk. The test's server is the customer's.

mod common;

use common::receiver::Receiver;
use common::{spawn_app_with, Options};
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;

/// `to: [{type: websocket}]` with a `talk`: the server gets `websocket:connected`, then the
/// synthesized speech as 16 kHz frames (8 kHz here: the content-type says so), then Outdial
/// closes the socket when the NCCO ends; the leg has its events.
#[sqlx::test]
async fn a_call_to_a_websocket_streams_its_talk(pool: PgPool) {
    let (port, received) = common::ws_server::start(Vec::new(), Duration::from_secs(15)).await;
    let app = spawn_app_with(pool, Options { roles: vec!["api", "workers", "webhooks"], time_scale: 1.0, ..Options::default() }).await;
    let events = Receiver::start().await;
    let call = json!({
        "to": [{"type": "websocket", "uri": format!("ws://127.0.0.1:{port}/bot"), "content-type": "audio/l16;rate=8000", "headers": {"session": "42"}}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [{"action": "talk", "text": "Hello, this is your voice bot speaking from the test"}],
        "event_url": [events.url("/events")],
    });
    let uuid = app.place(&call).await;
    events.wait_status("/events", &uuid, "completed").await;
    let statuses: Vec<String> = events.requests("/events").iter().filter_map(|e| e.body["status"].as_str().map(String::from)).collect();
    assert_eq!(statuses, ["started", "ringing", "answered", "completed"]);
    let got = std::mem::take(&mut *received.lock().unwrap());
    let first = got.first.expect("websocket:connected");
    assert_eq!((first["event"].as_str(), first["session"].as_str()), (Some("websocket:connected"), Some("42")));
    assert!(got.binary_sizes.iter().all(|&n| n == 320), "20 ms of 8 kHz 16-bit each");
    let speech = common::audio::non_silent_ms(&got.samples, 8000, 300.0);
    assert!((1500..=6000).contains(&speech), "the talk reached the server as speech: {speech} ms");
    app.stop().await;
}

/// A server that cannot be reached: the leg fails with a clear detail.
#[sqlx::test]
async fn an_unreachable_websocket_fails_the_leg(pool: PgPool) {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = spawn_app_with(pool, Options { roles: vec!["api", "workers", "webhooks"], ..Options::default() }).await;
    let events = Receiver::start().await;
    let call = json!({
        "to": [{"type": "websocket", "uri": format!("ws://127.0.0.1:{closed_port}/bot"), "content-type": "audio/l16;rate=16000"}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [{"action": "talk", "text": "never heard"}],
        "event_url": [events.url("/events")],
    });
    let uuid = app.place(&call).await;
    events.wait_status("/events", &uuid, "completed").await;
    let failed = events.requests("/events").into_iter().find(|e| e.body["status"] == "failed").expect("failed");
    assert_eq!(failed.body["detail"], "websocket_unavailable");
    app.stop().await;
}

/// A simulated callee connected to a websocket: the bot hears the callee's sandbox speech,
/// spoken (espeak-ng), among silence frames.
#[sqlx::test]
async fn a_simulated_callees_speech_reaches_the_connected_websocket(pool: PgPool) {
    let (port, received) = common::ws_server::start(Vec::new(), Duration::from_secs(8)).await;
    let app = spawn_app_with(pool, Options { roles: vec!["api", "workers", "webhooks"], time_scale: 1.0, ..Options::default() }).await;
    let events = Receiver::start().await;
    let sandbox = json!({"ring_s": 0.5, "speech": [{"after_s": 1.0, "value": "I would like to pay my bill please"}]});
    assert_eq!(app.put_json("/v1/sandbox/numbers/447700900777", &sandbox).await.status(), 200);
    let endpoint = json!({"type": "websocket", "uri": format!("ws://127.0.0.1:{port}/bot"), "content-type": "audio/l16;rate=16000"});
    let call = json!({
        "to": [{"type": "phone", "number": "447700900777"}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [{"action": "connect", "endpoint": [endpoint], "eventUrl": [events.url("/bot")]}],
        "event_url": [events.url("/events")],
    });
    app.place(&call).await;
    events.wait_for("/bot", |r| r.iter().any(|e| e.body["status"] == "completed")).await;
    let got = std::mem::take(&mut *received.lock().unwrap());
    assert!(got.binary_sizes.len() > 100, "frames while connected: {}", got.binary_sizes.len());
    let speech = common::audio::non_silent_ms(&got.samples, 16_000, 300.0);
    assert!((1000..=5000).contains(&speech), "the callee's words, spoken: {speech} ms");
    app.stop().await;
}

/// Settings for an app whose customers' servers use certificates of `ca` (`webhooks.ca_file`).
fn trusting(ca: &common::tls::TestCa) -> outdial::config::Settings {
    let mut settings = common::test_settings(&Options { roles: vec!["api", "workers", "webhooks"], time_scale: 1.0, ..Options::default() });
    settings.webhooks.ca_file = outdial::webhooks::tls::ExtraRoots::load(&ca.ca_path()).unwrap();
    settings
}

/// wss://: the server's certificate, signed by a private CA that `webhooks.ca_file` trusts, is
/// verified; `websocket:connected` and the talk's audio arrive over TLS; the platform ends the
/// NCCO, so no `disconnected`.
#[sqlx::test]
async fn a_call_over_wss_streams_its_talk(pool: PgPool) {
    let ca = common::tls::TestCa::new();
    let (port, received) = common::ws_server::start_tls(Vec::new(), Duration::from_secs(15), &ca).await;
    let app = common::spawn_app_with_settings(pool, trusting(&ca), 1000).await;
    let events = Receiver::start().await;
    let call = json!({
        "to": [{"type": "websocket", "uri": format!("wss://localhost:{port}/bot"), "content-type": "audio/l16;rate=16000", "headers": {"session": "tls"}}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [{"action": "talk", "text": "Hello, this travels over TLS"}],
        "event_url": [events.url("/events")],
    });
    let uuid = app.place(&call).await;
    events.wait_status("/events", &uuid, "completed").await;
    assert_eq!(events.statuses("/events", &uuid), ["started", "ringing", "answered", "completed"]);
    let got = std::mem::take(&mut *received.lock().unwrap());
    let first = got.first.expect("websocket:connected");
    assert_eq!((first["event"].as_str(), first["session"].as_str()), (Some("websocket:connected"), Some("tls")));
    assert_eq!(got.path.as_deref(), Some("/bot"));
    assert!(got.binary_sizes.len() > 50 && got.binary_sizes.iter().all(|&n| n == 640), "20 ms of 16 kHz 16-bit each: {}", got.binary_sizes.len());
    let speech = common::audio::non_silent_ms(&got.samples, 16_000, 300.0);
    assert!((1000..=5000).contains(&speech), "the talk reached the server as speech: {speech} ms");
    app.stop().await;
}

/// A wss:// server whose certificate nothing trusts (no `webhooks.ca_file`) is refused: the leg
/// fails and its history says why.
#[sqlx::test]
async fn a_wss_server_with_an_untrusted_certificate_fails_the_leg(pool: PgPool) {
    let ca = common::tls::TestCa::new();
    let (port, received) = common::ws_server::start_tls(Vec::new(), Duration::from_secs(5), &ca).await;
    let app = spawn_app_with(pool, Options { roles: vec!["api", "workers", "webhooks"], ..Options::default() }).await;
    let events = Receiver::start().await;
    let call = json!({
        "to": [{"type": "websocket", "uri": format!("wss://127.0.0.1:{port}/bot"), "content-type": "audio/l16;rate=16000"}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [{"action": "talk", "text": "never heard"}],
        "event_url": [events.url("/events")],
    });
    let uuid = app.place(&call).await;
    events.wait_status("/events", &uuid, "completed").await;
    let failed = events.requests("/events").into_iter().find(|e| e.body["status"] == "failed").expect("failed");
    assert_eq!(failed.body["detail"], "websocket_unavailable");
    let log = common::media_log(&app, &uuid).await;
    assert!(log.iter().any(|l| l.contains("TLS") && l.contains("UnknownIssuer")), "{log:?}");
    assert!(received.lock().unwrap().first.is_none(), "no WebSocket was opened");
    app.stop().await;
}

/// wss:// keeps the webhooks' address rule: a server on loopback is refused before any TLS
/// when only another network is allowed.
#[sqlx::test]
async fn a_wss_server_on_a_refused_address_fails_the_leg(pool: PgPool) {
    let ca = common::tls::TestCa::new();
    let (port, received) = common::ws_server::start_tls(Vec::new(), Duration::from_secs(5), &ca).await;
    let mut settings = trusting(&ca);
    settings.webhooks.allow_private_addresses = false;
    settings.webhooks.allowed_networks = vec!["127.0.0.2/32".parse().unwrap()];
    let app = common::spawn_app_with_settings(pool, settings, 1000).await;
    let events = Receiver::start_on("127.0.0.2").await;
    let call = json!({
        "to": [{"type": "websocket", "uri": format!("wss://localhost:{port}/bot"), "content-type": "audio/l16;rate=16000"}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [{"action": "talk", "text": "never heard"}],
        "event_url": [events.url("/events")],
    });
    let uuid = app.place(&call).await;
    events.wait_status("/events", &uuid, "completed").await;
    let failed = events.requests("/events").into_iter().find(|e| e.body["status"] == "failed").expect("failed");
    assert_eq!(failed.body["detail"], "websocket_unavailable");
    let log = common::media_log(&app, &uuid).await;
    assert!(log.iter().any(|l| l.contains("private addresses")), "{log:?}");
    assert!(received.lock().unwrap().path.is_none(), "no upgrade reached the server");
    app.stop().await;
}

/// `authorization: {"type": "vonage"}`: the upgrade carries `Bearer <JWT>` that the customer's
/// server verifies with the account's signature secret (HS256), naming the application, the
/// websocket leg and its conversation, valid for a minute.
#[sqlx::test]
async fn a_vonage_authorization_is_a_token_signed_with_the_signature_secret(pool: PgPool) {
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
    let (port, received) = common::ws_server::start(Vec::new(), Duration::from_secs(15)).await;
    let app = spawn_app_with(pool, Options { roles: vec!["api", "workers", "webhooks"], time_scale: 1.0, ..Options::default() }).await;
    let events = Receiver::start().await;
    let call = json!({
        "to": [{"type": "websocket", "uri": format!("ws://127.0.0.1:{port}/bot"), "content-type": "audio/l16;rate=16000", "authorization": {"type": "vonage"}}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [{"action": "talk", "text": "signed"}],
        "event_url": [events.url("/events")],
    });
    let uuid = app.place(&call).await;
    let answered = events.wait_for("/events", |r| r.iter().any(|e| e.body["status"] == "answered")).await;
    let conversation = answered[0].body["conversation_uuid"].as_str().unwrap().to_string();
    let header = received.lock().unwrap().authorization.clone().expect("an Authorization header");
    let token = header.strip_prefix("Bearer ").expect("a bearer token");
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "iat"]);
    let claims = decode::<serde_json::Value>(token, &DecodingKey::from_secret(app.account.signature_secret.as_bytes()), &validation)
        .expect("signed with the account's signature secret")
        .claims;
    assert_eq!(claims["application_id"], app.app_id.to_string());
    assert_eq!(claims["api_key"], app.account.api_key);
    assert_eq!(claims["call_uuid"], uuid);
    assert_eq!(claims["conversation_uuid"], conversation);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 60, "short-lived");
    assert!((chrono::Utc::now().timestamp() - iat).abs() < 30);
    let wrong = decode::<serde_json::Value>(token, &DecodingKey::from_secret(b"another secret"), &validation);
    assert!(wrong.is_err(), "another secret does not verify it");
    events.wait_status("/events", &uuid, "completed").await;
    app.stop().await;
}

/// The server closes the socket of a call `to` a websocket: its event_url gets `disconnected`
/// with the endpoint's headers, then `completed` (disconnected_by user).
#[sqlx::test]
async fn a_socket_closed_by_the_server_sends_disconnected_then_completed(pool: PgPool) {
    let (port, _received) = common::ws_server::start(Vec::new(), Duration::from_secs(2)).await;
    let app = spawn_app_with(pool, Options { roles: vec!["api", "workers", "webhooks"], time_scale: 1.0, ..Options::default() }).await;
    let events = Receiver::start().await;
    let call = json!({
        "to": [{"type": "websocket", "uri": format!("ws://127.0.0.1:{port}/bot"), "content-type": "audio/l16;rate=16000", "headers": {"session": "7"}}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [{"action": "talk", "text": "Please hold the line", "loop": 0}],
        "event_url": [events.url("/events")],
    });
    let uuid = app.place(&call).await;
    events.wait_status("/events", &uuid, "completed").await;
    assert_eq!(events.statuses("/events", &uuid), ["started", "ringing", "answered", "disconnected", "completed"]);
    let requests = events.requests("/events");
    let disconnected = requests.iter().find(|e| e.body["status"] == "disconnected").unwrap();
    assert_eq!(disconnected.body["headers"], json!({"session": "7"}));
    assert_eq!(disconnected.body["conversation_uuid"], requests[0].body["conversation_uuid"]);
    let completed = requests.iter().find(|e| e.body["status"] == "completed").unwrap();
    assert_eq!(completed.body["disconnected_by"], "user");
    assert!(disconnected.body["timestamp"].as_str() < completed.body["timestamp"].as_str());
    let duration: i64 = completed.body["duration"].as_str().unwrap().parse().unwrap();
    assert!((1..=4).contains(&duration), "ended when the server closed (~2 s), not by the endless talk: {duration}");
    app.stop().await;
}

/// A websocket `connect`ed to a simulated callee closes: the connect's eventUrl gets
/// `disconnected` (with headers) then `completed`; the NCCO `disconnected` answers with
/// replaces the rest of the call's NCCO (its talk is heard, its notify arrives, the original
/// next action never runs).
#[sqlx::test]
async fn a_disconnected_answered_with_an_ncco_runs_it(pool: PgPool) {
    let (port, _received) = common::ws_server::start(Vec::new(), Duration::from_secs(2)).await;
    let app = spawn_app_with(pool, Options { roles: vec!["api", "workers", "webhooks"], time_scale: 1.0, ..Options::default() }).await;
    let events = Receiver::start().await;
    let replacement = json!([
        {"action": "talk", "text": "The assistant left, goodbye"},
        {"action": "notify", "payload": {"after": "disconnected"}, "eventUrl": [events.url("/after")]},
    ]);
    events.respond("/bot", 200, &replacement.to_string());
    let endpoint = json!({"type": "websocket", "uri": format!("ws://127.0.0.1:{port}/bot"), "content-type": "audio/l16;rate=16000", "headers": {"bot": "billing"}});
    let call = json!({
        "to": [{"type": "phone", "number": "447700900123"}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [
            {"action": "connect", "endpoint": [endpoint], "eventUrl": [events.url("/bot")]},
            {"action": "talk", "text": "the original next action"},
        ],
        "event_url": [events.url("/events")],
    });
    let uuid = app.place(&call).await;
    events.wait_for("/after", |r| !r.is_empty()).await;
    events.wait_status("/events", &uuid, "completed").await;
    let bot = events.requests("/bot");
    let statuses: Vec<&str> = bot.iter().filter_map(|e| e.body["status"].as_str()).collect();
    assert_eq!(statuses, ["started", "ringing", "answered", "disconnected", "completed"]);
    let disconnected = bot.iter().find(|e| e.body["status"] == "disconnected").unwrap();
    assert_eq!(disconnected.body["headers"], json!({"bot": "billing"}));
    assert_ne!(disconnected.body["uuid"], uuid, "the websocket leg's own event");
    let log = common::media_log(&app, &uuid).await;
    assert!(log.iter().any(|l| l == "heard talk \"The assistant left, goodbye\""), "{log:?}");
    assert!(!log.iter().any(|l| l.contains("the original next action")), "replaced: {log:?}");
    app.stop().await;
}

/// `disconnected` answered with no NCCO: the call's NCCO goes on after the connect.
#[sqlx::test]
async fn a_disconnected_without_an_ncco_lets_the_flow_continue(pool: PgPool) {
    let (port, _received) = common::ws_server::start(Vec::new(), Duration::from_secs(2)).await;
    let app = spawn_app_with(pool, Options { roles: vec!["api", "workers", "webhooks"], time_scale: 1.0, ..Options::default() }).await;
    let events = Receiver::start().await;
    let endpoint = json!({"type": "websocket", "uri": format!("ws://127.0.0.1:{port}/bot"), "content-type": "audio/l16;rate=16000"});
    let call = json!({
        "to": [{"type": "phone", "number": "447700900123"}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [
            {"action": "connect", "endpoint": [endpoint], "eventUrl": [events.url("/bot")]},
            {"action": "talk", "text": "the next action"},
        ],
        "event_url": [events.url("/events")],
    });
    let uuid = app.place(&call).await;
    events.wait_status("/events", &uuid, "completed").await;
    let statuses: Vec<String> = events.requests("/bot").iter().filter_map(|e| e.body["status"].as_str().map(String::from)).collect();
    assert_eq!(statuses, ["started", "ringing", "answered", "disconnected", "completed"]);
    let log = common::media_log(&app, &uuid).await;
    assert!(log.iter().any(|l| l == "heard talk \"the next action\""), "{log:?}");
    app.stop().await;
}
