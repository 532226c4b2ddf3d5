//! Webhook delivery: signing, outage and recovery, the call's history, and legs surviving the
//! death of the instance that drove them.

mod common;

use common::receiver::Receiver;
use common::*;
use outdial::applications::{self, ApplicationSpec};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::time::Duration;

fn call(receiver: &Receiver, ncco: Value) -> Value {
    json!({
        "to": [{"type": "phone", "number": "447700900000"}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": ncco,
        "event_url": [receiver.url("/events")],
    })
}

#[sqlx::test]
async fn signed_callbacks_carry_a_verifiable_hs256_jwt(pool: PgPool) {
    let app = spawn_engine_app(pool.clone()).await;
    let receiver = Receiver::start().await;
    let spec = ApplicationSpec { name: "signed".into(), signed_callbacks: true, ..Default::default() };
    let signed_app = applications::repo::insert(&pool, app.account.account_id, &spec, PUBLIC_KEY).await.unwrap().id;
    let response = app.post_call_as(&app.jwt_for(signed_app), &call(&receiver, json!([{"action": "talk", "text": "hi"}]))).await;
    assert_eq!(response.status(), 201);
    let uuid = response.json::<Value>().await.unwrap()["uuid"].as_str().unwrap().to_string();
    receiver.wait_status("/events", &uuid, "completed").await;
    for request in receiver.requests("/events") {
        let token = request.headers["authorization"].strip_prefix("Bearer ").expect("Bearer token");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.required_spec_claims.clear();
        let key = jsonwebtoken::DecodingKey::from_secret(app.account.signature_secret.as_bytes());
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation).expect("signature verifies").claims;
        assert_eq!(claims["iss"], "Vonage");
        assert_eq!(claims["api_key"], app.account.api_key.as_str());
        assert_eq!(claims["application_id"], signed_app.to_string());
        assert_eq!(claims["payload_hash"], hex::encode(Sha256::digest(&request.raw)));
        assert!(claims["iat"].as_i64().unwrap() <= chrono::Utc::now().timestamp());
        assert!(claims["jti"].is_string());
    }
    // The default application does not sign.
    let plain = app.place(&call(&receiver, json!([{"action": "talk", "text": "hi"}]))).await;
    receiver.wait_status("/events", &plain, "completed").await;
    assert!(receiver.requests("/events").iter().filter(|r| r.body["uuid"] == plain.as_str()).all(|r| !r.headers.contains_key("authorization")));
}

#[sqlx::test]
async fn a_receiver_that_was_down_gets_every_event_in_order_once_it_is_back(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    for _ in 0..4 {
        receiver.respond_once("/events", 503, "");
    }
    let uuid = app.place(&call(&receiver, json!([{"action": "talk", "text": "hi"}]))).await;
    receiver.wait_for("/events", |r| r.iter().filter(|x| x.body["status"] == "completed").count() == 1).await;
    let delivered: Vec<String> = receiver.requests("/events").iter().skip(4).filter_map(|r| r.body["status"].as_str().map(str::to_string)).collect();
    assert_eq!(delivered, ["started", "ringing", "answered", "completed"], "in order, each once, after the outage");

    let history = app.get_json(&format!("/v1/calls/{uuid}/events")).await;
    let events = history["_embedded"]["events"].as_array().unwrap();
    assert_eq!(events[0]["kind"], "started");
    assert_eq!(events[0]["state"], "delivered");
    let codes: Vec<i64> = events[0]["attempts"].as_array().unwrap().iter().map(|a| a["status_code"].as_i64().unwrap()).collect();
    assert_eq!(codes, [503, 503, 503, 503, 200]);
    assert!(events.iter().filter(|e| e["kind"] != "media").all(|e| e["state"] == "delivered"));
    assert!(events[0]["attempts"][0]["latency_ms"].is_i64());
}

/// A slow receiver keeps each call's earlier event in flight while the leg writes the next
/// ones: they queue behind it in this instance's dispatcher (the call's lane) and still arrive
/// in order; a failure in the lane sends what is queued behind it back to the claim path.
#[sqlx::test]
async fn events_written_while_an_earlier_one_is_in_flight_follow_it_in_order(pool: PgPool) {
    let app = spawn_engine_app(pool.clone()).await;
    let receiver = Receiver::start().await;
    receiver.delay("/events", Duration::from_millis(300));
    let calls = [
        app.place(&call(&receiver, json!([{"action": "talk", "text": "hi"}]))).await,
        app.place(&call(&receiver, json!([{"action": "talk", "text": "hi"}]))).await,
    ];
    for uuid in &calls {
        assert_eq!(receiver.wait_status("/events", uuid, "completed").await, ["started", "ringing", "answered", "completed"]);
    }
    // The case in question happened: events written while their call's previous one (300 ms
    // at the receiver) was still out.
    let written_behind: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events a JOIN events r ON r.call_uuid = a.call_uuid AND r.seq = a.seq - 1
         WHERE a.kind IN ('ringing', 'answered') AND a.created_at < r.delivered_at",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(written_behind >= 1, "no event was written while its predecessor was in flight");

    // The first delivery fails: everything queued behind it waits for its retry.
    receiver.respond_once("/events", 503, "");
    let uuid = app.place(&call(&receiver, json!([{"action": "talk", "text": "hi"}]))).await;
    assert_eq!(receiver.wait_status("/events", &uuid, "completed").await, ["started", "started", "ringing", "answered", "completed"]);
}

#[sqlx::test]
async fn an_unreachable_receiver_is_retried_with_growing_backoff_and_recorded(pool: PgPool) {
    // Retries from 100 ms, doubling: the n-th wait is between half of 100·2^(n-1) ms and all
    // of it (jitter), plus up to a dispatcher poll (100 ms) and a busy machine's delays.
    let base_ms = 100;
    let mut settings = test_settings(&Options { roles: vec!["api", "workers", "webhooks"], ..Options::default() });
    settings.webhooks.retry_base_ms = base_ms;
    settings.webhooks.retry_max_ms = 60_000;
    let app = spawn_app_with_settings(pool, settings, Options::default().calls_per_second).await;
    // Nothing listens on port 9 (discard); connections are refused.
    let body = json!({"to": [{"type": "phone", "number": "447700900603"}], "from": {"type": "phone", "number": "447700900001"},
                      "ncco": [{"action": "talk", "text": "x"}], "event_url": ["http://127.0.0.1:9/events"]});
    let uuid = app.place(&body).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let history = loop {
        let history = app.get_json(&format!("/v1/calls/{uuid}/events")).await;
        if history["_embedded"]["events"][0]["attempts"].as_array().unwrap().len() >= 6 {
            break history;
        }
        assert!(std::time::Instant::now() < deadline, "fewer than 6 attempts: {history}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let started = &history["_embedded"]["events"][0];
    assert_eq!(started["state"], "pending");
    let attempts = started["attempts"].as_array().unwrap();
    assert!(attempts.iter().all(|a| a["error"].as_str().unwrap().contains("connect")));
    let at: Vec<chrono::DateTime<chrono::Utc>> = attempts.iter().map(|a| a["attempted_at"].as_str().unwrap().parse().unwrap()).collect();
    let waits_ms: Vec<i64> = at.windows(2).map(|w| (w[1] - w[0]).num_milliseconds()).collect();
    // Attempts are stamped when recorded, and the first recording may also open the dispatcher's
    // connection: the first wait can look shorter than it was. The next four are judged; their
    // bounds leave no constant wait possible (the first at most 700 ms, the last at least 750).
    for (n, &wait) in waits_ms.iter().enumerate().take(5).skip(1) {
        let full = (base_ms << n) as i64;
        assert!((full / 2 - 50..=full + 500).contains(&wait), "wait {}: {wait} ms, not within {}..={full} ms: {waits_ms:?}", n + 1, full / 2);
    }
    // In order: the next event waits behind the first.
    assert!(history["_embedded"]["events"][1]["attempts"].as_array().unwrap().is_empty());
    app.stop().await;
}

#[test]
fn the_retry_schedule_doubles_within_its_jitter_up_to_the_cap() {
    use outdial::webhooks::dispatcher::backoff;
    for attempt in 1..=10 {
        let full = (100u64 << (attempt - 1)).min(10_000);
        let waits: Vec<u64> = (0..200).map(|_| backoff(100, 10_000, attempt).as_millis() as u64).collect();
        let (shortest, longest) = (*waits.iter().min().unwrap(), *waits.iter().max().unwrap());
        assert!(shortest >= full / 2 && longest <= full, "attempt {attempt}: {shortest}..={longest} ms, not within {}..={full}", full / 2);
        // Jittered: spread over the range, not one value.
        assert!(shortest < longest, "attempt {attempt}: no jitter");
    }
}

#[sqlx::test]
async fn the_sandbox_validates_and_reports_behaviour(pool: PgPool) {
    let app = spawn_app(pool).await;
    let defaults = app.get_json("/v1/sandbox/numbers/447700900486").await;
    assert_eq!(defaults["behaviour"]["outcome"], "busy", "the default table shows through");
    assert_eq!((defaults["source"].as_str(), defaults["suffix"].as_str()), (Some("suffix"), Some("486")), "and says so");
    let plain = app.get_json("/v1/sandbox/numbers/447700900123").await;
    assert_eq!((plain["source"].as_str(), plain["behaviour"]["outcome"].as_str()), (Some("default"), Some("answer")));
    let bad = app.put_json("/v1/sandbox/numbers/447700900001", &json!({"outcome": "explode"})).await;
    assert_problem(bad, 400).await;
    let bad = app.put_json("/v1/sandbox/numbers/abc", &json!({})).await;
    assert_problem(bad, 400).await;
    let huge = app.put_json("/v1/sandbox/numbers/447700900001", &json!({"ring_s": 1e300, "dtmf": [{"after_s": -1, "value": "12x"}]})).await;
    let names = invalid_names(huge).await;
    assert_eq!(names, ["ring_s", "dtmf[0].after_s", "dtmf[0].value"]);
    let unknown = app.put_json("/v1/sandbox/numbers/447700900001", &json!({"dtmf": [{"after_s": 1, "value": "1", "extra": 1}]})).await;
    assert_problem(unknown, 400).await;
    let ok = app.put_json("/v1/sandbox/numbers/447700900001", &json!({"outcome": "answer", "answered_by": "machine"})).await;
    assert_eq!(ok.status(), 200);
    let own = app.get_json("/v1/sandbox/numbers/447700900001").await;
    assert_eq!((own["behaviour"]["answered_by"].as_str(), own["source"].as_str()), (Some("machine"), Some("sandbox")), "the number's own");
    let deleted = app.client.delete(app.url("/v1/sandbox/numbers/447700900001")).bearer_auth(app.jwt()).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(app.get_json("/v1/sandbox/numbers/447700900001").await["source"], "default", "back to the default");
}

/// The test database's URL, for a child process.
fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(pool.connect_options().get_database().unwrap());
    url.to_string()
}

#[sqlx::test]
async fn a_leg_whose_instance_is_killed_is_finished_by_another(pool: PgPool) {
    // Instance A: a real `outdial serve` process running only the call workers.
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_outdial"))
        .arg("serve")
        .env("DATABASE_URL", database_url(&pool))
        .env("OUTDIAL__ENGINE__ROLES", "workers")
        .env("OUTDIAL__ENGINE__HEARTBEAT_MS", "200")
        .env("OUTDIAL__CARRIER__TIME_SCALE", "20")
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("outdial starts");
    // Instance B (this process): the API and the webhook dispatcher, no workers yet.
    let app = spawn_app_with(pool.clone(), Options { roles: vec!["api", "webhooks"], ..Options::default() }).await;
    let receiver = Receiver::start().await;
    let uuid = app.place(&call(&receiver, json!([{"action": "wait", "timeout": 600}]))).await;
    receiver.wait_status("/events", &uuid, "answered").await;

    worker.kill().expect("kill -9");
    worker.wait().unwrap();
    let killed_at = std::time::Instant::now();

    // Instance C: workers that take over once A's heartbeat is stale.
    let mut settings = test_settings(&Options::default());
    settings.engine.roles = vec!["workers".into()];
    let takeover = outdial::startup::Instance::start(settings, pool.clone()).await.unwrap();
    let statuses = receiver.wait_status("/events", &uuid, "completed").await;
    assert_eq!(statuses, ["started", "ringing", "answered", "completed"], "every event once, in order");
    assert!(killed_at.elapsed() < Duration::from_secs(10));
    let completed = receiver.requests("/events").last().unwrap().body.clone();
    assert_eq!(completed["disconnected_by"], "platform");
    let (job, status): (String, String) = sqlx::query_as("SELECT j.state, c.status FROM call_jobs j JOIN calls c ON c.uuid = j.call_uuid WHERE j.call_uuid = $1::uuid")
        .bind(&uuid).fetch_one(&pool).await.unwrap();
    assert_eq!((job.as_str(), status.as_str()), ("done", "completed"));
    takeover.stop().await;
    app.stop().await;
}

#[sqlx::test]
async fn graceful_shutdown_releases_legs_for_another_instance(pool: PgPool) {
    let mut options = Options { roles: vec!["api", "workers", "webhooks"], ..Options::default() };
    options.time_scale = 20.0;
    let mut settings = test_settings(&options);
    settings.engine.drain_timeout_ms = 200;
    let first = outdial::startup::Instance::start(settings.clone(), pool.clone()).await.unwrap();
    let app = spawn_app_with(pool.clone(), Options { roles: vec!["api", "webhooks"], ..Options::default() }).await;
    let receiver = Receiver::start().await;
    let uuid = app.place(&call(&receiver, json!([{"action": "wait", "timeout": 600}]))).await;
    receiver.wait_status("/events", &uuid, "answered").await;
    first.stop().await;
    let (state,): (String,) = sqlx::query_as("SELECT state FROM call_jobs WHERE call_uuid = $1::uuid").bind(&uuid).fetch_one(&pool).await.unwrap();
    assert_eq!(state, "queued", "released at once, not after a lease timeout");
    settings.engine.roles = vec!["workers".into()];
    let second = outdial::startup::Instance::start(settings, pool.clone()).await.unwrap();
    receiver.wait_status("/events", &uuid, "completed").await;
    second.stop().await;
}

/// While the database refuses the dispatcher's records (2.5 s here; the recorder used to give
/// up after three tries), deliveries go on; once it takes them again every outcome is recorded:
/// each event is delivered once, none is left pending for its lock to expire and go out again.
#[sqlx::test]
async fn delivery_outcomes_are_recorded_even_after_the_database_refused_them(pool: PgPool) {
    sqlx::raw_sql(
        "CREATE TABLE refuse_records (x int);
         INSERT INTO refuse_records VALUES (1);
         CREATE FUNCTION refuse_records() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF current_setting('application_name') = 'outdial-webhooks' AND EXISTS (SELECT 1 FROM refuse_records) THEN
             RAISE EXCEPTION 'recording refused by the test';
           END IF;
           RETURN NULL;
         END $$;
         CREATE TRIGGER refuse_records BEFORE INSERT ON webhook_attempts FOR EACH STATEMENT EXECUTE FUNCTION refuse_records();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let app = spawn_engine_app(pool.clone()).await;
    let receiver = Receiver::start().await;
    let uuid = app.place(&call(&receiver, json!([{"action": "talk", "text": "hi"}]))).await;
    receiver.wait_status("/events", &uuid, "completed").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    sqlx::query("DELETE FROM refuse_records").execute(&pool).await.unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (pending,): (i64,) = sqlx::query_as("SELECT count(*) FROM events WHERE call_uuid = $1::uuid AND state NOT IN ('delivered', 'logged')")
            .bind(&uuid)
            .fetch_one(&pool)
            .await
            .unwrap();
        if pending == 0 {
            break;
        }
        if std::time::Instant::now() > deadline {
            let rows: Vec<(String, String, i32, Option<chrono::DateTime<chrono::Utc>>)> =
                sqlx::query_as("SELECT kind, state, attempts, locked_until FROM events WHERE call_uuid = $1::uuid ORDER BY seq")
                    .bind(&uuid)
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            panic!("{pending} events still not recorded as delivered: {rows:?}; received {:?}", receiver.statuses("/events", &uuid));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.statuses("/events", &uuid), ["started", "ringing", "answered", "completed"], "each event once");
    app.stop().await;
}

/// The log of this test process, as `outdial serve` would write it (warn and above).
fn captured_log() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    static LOG: std::sync::OnceLock<std::sync::Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        #[derive(Clone)]
        struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let capture = Capture(log.clone());
        tracing_subscriber::fmt().with_writer(move || capture.clone()).with_ansi(false).with_max_level(tracing::Level::WARN).init();
        log
    })
    .clone()
}

/// The captured log lines that mention `uuid`.
fn log_lines_of(log: &std::sync::Mutex<Vec<u8>>, uuid: &str) -> Vec<String> {
    String::from_utf8_lossy(&log.lock().unwrap()).lines().filter(|l| l.contains(uuid)).map(str::to_string).collect()
}

async fn wait_until_events_settle(pool: &PgPool, uuid: &str, attempts_at_least: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (attempts, completed): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM webhook_attempts a JOIN events e ON e.id = a.event_id WHERE e.call_uuid = $1::uuid),
                    (SELECT count(*) FROM events WHERE call_uuid = $1::uuid AND kind = 'completed')",
        )
        .bind(uuid)
        .fetch_one(pool)
        .await
        .unwrap();
        if attempts >= attempts_at_least && completed > 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "call {uuid}: {attempts} attempts so far");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test]
async fn a_refused_webhook_is_logged_at_warn_once_per_call_with_the_reason(pool: PgPool) {
    let log = captured_log();
    let mut settings = test_settings(&Options { roles: vec!["api", "workers", "webhooks"], ..Options::default() });
    // As `outdial serve` runs by default: webhooks to loopback are refused.
    settings.webhooks.allow_private_addresses = false;
    let app = spawn_app_with_settings(pool.clone(), settings, 1000).await;
    let body = json!({"to": [{"type": "phone", "number": "447700900000"}], "from": {"type": "phone", "number": "447700900001"},
                      "ncco": [{"action": "talk", "text": "hi"}], "event_url": ["http://127.0.0.1:8000/events?token=secret"]});
    let uuid = app.place(&body).await;
    // Every event of the call is refused (started, ringing, answered, completed): one line.
    wait_until_events_settle(&pool, &uuid, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = log_lines_of(&log, &uuid);
    assert_eq!(lines.len(), 1, "one warning for the call: {lines:#?}");
    let line = &lines[0];
    assert!(line.contains("WARN") && line.contains("webhook refused"), "{line}");
    assert!(line.contains("loopback") && line.contains("allow_private_addresses"), "the reason and the way out: {line}");
    assert!(line.contains("http://127.0.0.1:8000/events") && !line.contains("secret"), "the URL without its query: {line}");
    app.stop().await;
}

#[sqlx::test]
async fn a_failing_receiver_is_logged_at_warn_once_per_call_not_once_per_retry(pool: PgPool) {
    let log = captured_log();
    let app = spawn_engine_app(pool.clone()).await;
    let receiver = Receiver::start().await;
    receiver.respond("/events", 500, "");
    let uuid = app.place(&call(&receiver, json!([{"action": "talk", "text": "hi"}]))).await;
    // `started` is retried (50 ms backoff, doubling to 400 ms) while the rest wait behind it.
    receiver.wait_for("/events", |r| r.len() >= 4).await;
    let lines = log_lines_of(&log, &uuid);
    assert_eq!(lines.len(), 1, "one warning for four failed attempts: {lines:#?}");
    assert!(lines[0].contains("WARN") && lines[0].contains("HTTP 500") && lines[0].contains("retrying"), "{}", lines[0]);
    app.stop().await;
}
