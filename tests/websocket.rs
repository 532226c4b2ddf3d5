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
