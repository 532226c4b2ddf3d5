//! Live call control: PUT /v1/calls/{uuid} and its media routes, applied by the instance that
//! owns the leg, with effects visible in the call's history.

mod common;

use common::receiver::Receiver;
use common::*;
use serde_json::{json, Value};
use sqlx::PgPool;

fn call(receiver: &Receiver, number: &str, ncco: Value) -> Value {
    json!({
        "to": [{"type": "phone", "number": number}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": ncco,
        "event_url": [receiver.url("/events")],
    })
}

fn long_wait() -> Value {
    json!([{"action": "wait", "timeout": 600}])
}

#[sqlx::test]
async fn bad_requests_unknown_and_foreign_calls(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let uuid = app.create_call().await;
    let path = format!("/v1/calls/{uuid}");
    assert_eq!(invalid_names(app.put_json(&path, &json!({"action": "explode"})).await).await, ["action"]);
    assert_eq!(invalid_names(app.put_json(&path, &json!({})).await).await, ["action"]);
    assert_eq!(invalid_names(app.put_json(&path, &json!({"action": "transfer"})).await).await, ["destination"]);
    let bad_ncco = json!({"action": "transfer", "destination": {"type": "ncco", "ncco": [{"action": "talk"}]}});
    assert_eq!(invalid_names(app.put_json(&path, &bad_ncco).await).await, ["destination.ncco[0].text"]);
    assert_eq!(invalid_names(app.put_json(&format!("{path}/stream"), &json!({"stream_url": ["x"]})).await).await, ["stream_url"]);
    assert_eq!(invalid_names(app.put_json(&format!("{path}/talk"), &json!({"level": 3})).await).await, ["text", "level"]);
    assert_eq!(invalid_names(app.put_json(&format!("{path}/dtmf"), &json!({"digits": "12a"})).await).await, ["digits"]);
    assert_eq!(invalid_names(app.put_json(&format!("{path}/input/dtmf"), &json!({})).await).await, ["event_url"]);

    assert_problem(app.put_json(&format!("/v1/calls/{}", uuid::Uuid::new_v4()), &json!({"action": "hangup"})).await, 404).await;
    let other = outdial::accounts::repo::create(&pool, "other", 10).await.unwrap();
    let other_app = create_application(&pool, other.account_id, None).await;
    let foreign = app.client.put(app.url(&path)).bearer_auth(app.jwt_for(other_app)).json(&json!({"action": "hangup"})).send().await.unwrap();
    assert_problem(foreign, 404).await;

    // Not answered yet: media is refused, hangup is taken.
    let early = assert_problem(app.put_json(&format!("{path}/talk"), &json!({"text": "hi"})).await, 400).await;
    assert!(early["detail"].as_str().unwrap().contains("answered"), "{early}");
    assert_eq!(app.put_json(&path, &json!({"action": "mute"})).await.status(), 204);
    sqlx::query("UPDATE calls SET status = 'completed' WHERE uuid = $1::uuid").bind(&uuid).execute(&pool).await.unwrap();
    let ended = assert_problem(app.put_json(&path, &json!({"action": "hangup"})).await, 400).await;
    assert!(ended["detail"].as_str().unwrap().contains("ended"));
}

#[sqlx::test]
async fn hangup_while_ringing_is_cancelled_then_completed(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    let uuid = app.place(&call(&receiver, "447700900408", long_wait())).await;
    receiver.wait_status("/events", &uuid, "ringing").await;
    assert_eq!(app.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": "hangup"})).await.status(), 204);
    let statuses = receiver.wait_status("/events", &uuid, "completed").await;
    assert_eq!(statuses, ["started", "ringing", "cancelled", "completed"]);
}

#[sqlx::test]
async fn hangup_after_answer_completes(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    let uuid = app.place(&call(&receiver, "447700900000", long_wait())).await;
    receiver.wait_status("/events", &uuid, "answered").await;
    assert_eq!(app.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": "hangup"})).await.status(), 204);
    let statuses = receiver.wait_status("/events", &uuid, "completed").await;
    assert_eq!(statuses, ["started", "ringing", "answered", "completed"]);
    assert_eq!(receiver.requests("/events").last().unwrap().body["disconnected_by"], "platform");
}

#[sqlx::test]
async fn media_mute_and_earmuff_reach_the_callee_in_order(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    // 4 s of WAV audio (an MP3-rate guess would make it 8 s).
    receiver.respond_bytes("/music.wav", 200, &wav(4));
    let uuid = app.place(&call(&receiver, "447700900000", long_wait())).await;
    receiver.wait_status("/events", &uuid, "answered").await;
    let path = format!("/v1/calls/{uuid}");

    let talk = app.put_json(&format!("{path}/talk"), &json!({"text": "Your order has shipped", "level": 0.5, "loop": 1})).await;
    assert_eq!(talk.status(), 200);
    assert_eq!(talk.json::<Value>().await.unwrap(), json!({"message": "Talk started", "uuid": uuid}));
    let stream = app.put_json(&format!("{path}/stream"), &json!({"stream_url": [receiver.url("/music.wav")], "loop": 0, "level": "0.2"})).await;
    assert_eq!(stream.json::<Value>().await.unwrap()["message"], "Stream started");
    let stop = app.client.delete(app.url(&format!("{path}/stream"))).bearer_auth(app.jwt()).send().await.unwrap();
    assert_eq!(stop.json::<Value>().await.unwrap()["message"], "Stream stopped");
    let dtmf = app.put_json(&format!("{path}/dtmf"), &json!({"digits": "1p2#"})).await;
    assert_eq!(dtmf.json::<Value>().await.unwrap(), json!({"message": "DTMF sent", "uuid": uuid}));
    for action in ["mute", "earmuff"] {
        assert_eq!(app.put_json(&path, &json!({"action": action})).await.status(), 204);
    }
    assert_eq!(app.put_json(&format!("{path}/talk"), &json!({"text": "secret", "loop": 0})).await.status(), 200);
    for action in ["unearmuff", "unmute"] {
        assert_eq!(app.put_json(&path, &json!({"action": action})).await.status(), 204);
    }
    let stop = app.client.delete(app.url(&format!("{path}/talk"))).bearer_auth(app.jwt()).send().await.unwrap();
    assert_eq!(stop.json::<Value>().await.unwrap()["message"], "Talk stopped");

    let mut log = wait_log(&app, &uuid, "stopped talk \"secret\"").await;
    // The first talk lasts 1.6 simulated s: if still playing, the second one stops it first.
    log.retain(|line| line != "stopped talk \"Your order has shipped\"");
    let expected = [
        "heard talk \"Your order has shipped\"",
        &format!("heard stream {}", receiver.url("/music.wav")),
        &format!("stopped stream {}", receiver.url("/music.wav")),
        "heard DTMF 1p2#",
        "muted: the callee's audio is not sent",
        "earmuffed: the callee hears nothing",
        "did not hear talk \"secret\" (earmuffed)",
        "unearmuffed",
        "unmuted",
        "stopped talk \"secret\"",
    ];
    assert_eq!(log, expected, "applied in the order accepted");
    app.put_json(&path, &json!({"action": "hangup"})).await;
    receiver.wait_status("/events", &uuid, "completed").await;
}

#[sqlx::test]
async fn transfer_replaces_the_running_ncco_inline_and_by_url(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    receiver.respond("/ncco", 200, &format!(r#"[{{"action": "notify", "payload": {{"via": "url"}}, "eventUrl": ["{}"]}}, {{"action": "wait", "timeout": 600}}]"#, receiver.url("/notify")));
    let uuid = app.place(&call(&receiver, "447700900000", long_wait())).await;
    receiver.wait_status("/events", &uuid, "answered").await;
    let path = format!("/v1/calls/{uuid}");
    let inline = json!({"action": "transfer", "destination": {"type": "ncco", "ncco": [
        {"action": "notify", "payload": {"via": "inline"}, "eventUrl": [receiver.url("/notify")]}, {"action": "wait", "timeout": 600}]}});
    assert_eq!(app.put_json(&path, &inline).await.status(), 204);
    receiver.wait_for("/notify", |r| r.len() == 1).await;
    let by_url = json!({"action": "transfer", "destination": {"type": "ncco", "url": [receiver.url("/ncco")]}});
    assert_eq!(app.put_json(&path, &by_url).await.status(), 204);
    let notified = receiver.wait_for("/notify", |r| r.len() == 2).await;
    assert_eq!(notified[0].body, json!({"via": "inline"}));
    assert_eq!(notified[1].body, json!({"via": "url"}));
    let transfers: Vec<Value> = receiver
        .wait_for("/events", |r| r.iter().filter(|x| x.body["type"] == "transfer").count() == 2)
        .await
        .into_iter()
        .map(|r| r.body)
        .filter(|b| b["type"] == "transfer")
        .collect();
    assert_eq!(transfers[0]["uuid"], uuid.as_str());
    app.put_json(&path, &json!({"action": "hangup"})).await;
    receiver.wait_status("/events", &uuid, "completed").await;
}

#[sqlx::test]
async fn a_dtmf_subscription_gets_each_key_the_callee_presses(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    let sandbox = json!({"ring_s": 1.0, "dtmf": [{"after_s": 3.0, "value": "42"}]});
    assert_eq!(app.put_json("/v1/sandbox/numbers/447700900560", &sandbox).await.status(), 200);
    let uuid = app.place(&call(&receiver, "447700900560", long_wait())).await;
    receiver.wait_status("/events", &uuid, "answered").await;
    let subscribe = app.put_json(&format!("/v1/calls/{uuid}/input/dtmf"), &json!({"event_url": receiver.url("/dtmf")})).await;
    assert_eq!(subscribe.status(), 204);
    let keys = receiver.wait_for("/dtmf", |r| r.len() == 2).await;
    let digits: Vec<&str> = keys.iter().map(|k| k.body["dtmf"]["digit"].as_str().unwrap()).collect();
    assert_eq!(digits, ["4", "2"]);
    let unsubscribe = app.client.delete(app.url(&format!("/v1/calls/{uuid}/input/dtmf"))).bearer_auth(app.jwt()).send().await.unwrap();
    assert_eq!(unsubscribe.status(), 204);
    app.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": "hangup"})).await;
    receiver.wait_status("/events", &uuid, "completed").await;
}

#[sqlx::test]
async fn commands_reach_the_leg_on_another_instance_by_notify(pool: PgPool) {
    // The API here; the leg on a workers-only instance sharing the database. The worker's
    // sweep for missed notifications runs with its heartbeat: once at start, then every 30 s,
    // so within the 2 s below only NOTIFY can bring the command. Instances time out after a
    // minute, so neither takes the other's legs meanwhile.
    let sweep = std::time::Duration::from_secs(30);
    let mut api_settings = test_settings(&Options { roles: vec!["api", "webhooks"], ..Options::default() });
    api_settings.engine.instance_timeout_ms = 60_000;
    let app = spawn_app_with_settings(pool.clone(), api_settings, Options::default().calls_per_second).await;
    let mut settings = test_settings(&Options::default());
    settings.engine.roles = vec!["workers".into()];
    settings.engine.heartbeat_ms = sweep.as_millis() as u64;
    settings.engine.instance_timeout_ms = 60_000;
    let worker = outdial::startup::Instance::start(settings, pool.clone()).await.unwrap();
    let receiver = Receiver::start().await;
    let uuid = app.place(&call(&receiver, "447700900000", long_wait())).await;
    receiver.wait_status("/events", &uuid, "answered").await;
    let started = std::time::Instant::now();
    assert_eq!(app.put_json(&format!("/v1/calls/{uuid}/dtmf"), &json!({"digits": "9"})).await.status(), 200);
    let bound = std::time::Duration::from_secs(2);
    wait_log_within(&app, &uuid, "heard DTMF 9", bound).await;
    assert!(started.elapsed() < bound, "woken by NOTIFY, not by the sweep");
    assert_eq!(app.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": "hangup"})).await.status(), 204);
    receiver.wait_status("/events", &uuid, "completed").await;
    let (state,): (String,) = sqlx::query_as("SELECT state FROM call_commands WHERE call_uuid = $1::uuid AND action = 'hangup'").bind(&uuid).fetch_one(&pool).await.unwrap();
    assert_eq!(state, "applied");
    worker.stop().await;
    app.stop().await;
}

#[sqlx::test]
async fn a_command_accepted_while_the_owner_is_dead_is_settled_by_the_next_owner(pool: PgPool) {
    let base = std::env::var("DATABASE_URL").unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(pool.connect_options().get_database().unwrap());
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_outdial"))
        .arg("serve")
        .env("DATABASE_URL", url.to_string())
        .env("OUTDIAL__ENGINE__ROLES", "workers")
        .env("OUTDIAL__ENGINE__HEARTBEAT_MS", "200")
        .env("OUTDIAL__CARRIER__TIME_SCALE", "20")
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let app = spawn_app_with(pool.clone(), Options { roles: vec!["api", "webhooks"], ..Options::default() }).await;
    let receiver = Receiver::start().await;
    let uuid = app.place(&call(&receiver, "447700900000", long_wait())).await;
    receiver.wait_status("/events", &uuid, "answered").await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    // Durably accepted though no instance drives the leg right now.
    assert_eq!(app.put_json(&format!("/v1/calls/{uuid}/talk"), &json!({"text": "anyone there?"})).await.status(), 200);
    let mut settings = test_settings(&Options::default());
    settings.engine.roles = vec!["workers".into()];
    let takeover = outdial::startup::Instance::start(settings, pool.clone()).await.unwrap();
    receiver.wait_status("/events", &uuid, "completed").await;
    let (state, reason): (String, Option<String>) = sqlx::query_as("SELECT state, reason FROM call_commands WHERE call_uuid = $1::uuid").bind(&uuid).fetch_one(&pool).await.unwrap();
    assert_eq!((state.as_str(), reason.as_deref()), ("rejected", Some("the call ended")), "the new owner ends the leg and settles its commands");
    takeover.stop().await;
    app.stop().await;
}

#[sqlx::test]
async fn a_command_the_leg_cannot_apply_is_rejected_in_the_history(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    receiver.respond("/missing.wav", 404, "");
    let uuid = app.place(&call(&receiver, "447700900000", long_wait())).await;
    receiver.wait_status("/events", &uuid, "answered").await;
    let stream = app.put_json(&format!("/v1/calls/{uuid}/stream"), &json!({"stream_url": [receiver.url("/missing.wav")]})).await;
    assert_eq!(stream.status(), 200, "accepted: the leg finds out later");
    let log = wait_log(&app, &uuid, "stream rejected").await;
    assert!(log.iter().any(|l| l.contains("HTTP 404")), "{log:?}");
    app.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": "hangup"})).await;
    receiver.wait_status("/events", &uuid, "completed").await;
}

#[sqlx::test]
async fn a_command_too_long_for_a_notification_still_reaches_the_leg(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    let uuid = app.place(&call(&receiver, "447700900000", long_wait())).await;
    receiver.wait_status("/events", &uuid, "answered").await;
    let path = format!("/v1/calls/{uuid}");
    // NOTIFY carries 8000 bytes at most: this command goes by its call uuid and the table.
    let big = "x".repeat(10_000);
    let transfer = json!({"action": "transfer", "destination": {"type": "ncco", "ncco": [
        {"action": "notify", "payload": {"big": big}, "eventUrl": [receiver.url("/notify")]}, {"action": "wait", "timeout": 600}]}});
    assert_eq!(app.put_json(&path, &transfer).await.status(), 204);
    let notified = receiver.wait_for("/notify", |r| r.len() == 1).await;
    assert_eq!(notified[0].body["big"].as_str().map(str::len), Some(10_000));
    // A short one right after travels in the notification, and is applied after it.
    assert_eq!(app.put_json(&path, &json!({"action": "mute"})).await.status(), 204);
    wait_log(&app, &uuid, "muted: the callee's audio is not sent").await;
    app.put_json(&path, &json!({"action": "hangup"})).await;
    receiver.wait_status("/events", &uuid, "completed").await;
}

#[sqlx::test]
async fn a_hangup_accepted_before_any_worker_claimed_the_call_cancels_it_when_one_does(pool: PgPool) {
    // API only: the call waits in the queue, and its hangup is stored while no worker has it.
    let api = spawn_app(pool.clone()).await;
    let receiver = Receiver::start().await;
    let uuid = api.place(&call(&receiver, "447700900000", long_wait())).await;
    assert_eq!(api.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": "hangup"})).await.status(), 204);
    let workers = spawn_app_with(pool, Options { roles: vec!["workers", "webhooks"], ..Options::default() }).await;
    let statuses = receiver.wait_status("/events", &uuid, "completed").await;
    assert!(statuses.contains(&"cancelled".to_string()) && !statuses.contains(&"answered".to_string()), "{statuses:?}");
    workers.stop().await;
    api.stop().await;
}
