//! POST /v1/calls: the happy path, what is stored, each field family's validation, idempotency
//! and the call-creation rate limit.

mod common;

use common::*;
use serde_json::{json, Value};
use sqlx::PgPool;

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn without(mut base: Value, key: &str) -> Value {
    base.as_object_mut().unwrap().remove(key);
    base
}

#[sqlx::test]
async fn a_call_is_created_and_its_leg_job_and_started_event_are_stored(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let response = app.post_call(&minimal_call()).await;
    assert_eq!(response.status(), 201);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "started");
    assert_eq!(body["direction"], "outbound");
    let uuid = uuid::Uuid::parse_str(body["uuid"].as_str().unwrap()).unwrap();
    let conversation = body["conversation_uuid"].as_str().unwrap();
    assert!(conversation.starts_with("CON-") && uuid::Uuid::parse_str(&conversation[4..]).is_ok());

    let (status, to, ncco, event_url): (String, Value, Value, String) =
        sqlx::query_as("SELECT status, to_endpoint, ncco, event_url FROM calls WHERE uuid = $1").bind(uuid).fetch_one(&pool).await.unwrap();
    assert_eq!(status, "started");
    assert_eq!(to, json!({"type": "phone", "number": "447700900000"}));
    assert_eq!(ncco, minimal_call()["ncco"]);
    assert_eq!(event_url, "http://127.0.0.1:9/events", "the application's event_url is the default");
    let (job_state,): (String,) = sqlx::query_as("SELECT state FROM call_jobs WHERE call_uuid = $1").bind(uuid).fetch_one(&pool).await.unwrap();
    assert_eq!(job_state, "queued");
    let (kind, payload): (String, Value) =
        sqlx::query_as("SELECT kind, payload FROM events WHERE call_uuid = $1 AND seq = 1").bind(uuid).fetch_one(&pool).await.unwrap();
    assert_eq!(kind, "started");
    assert_eq!(payload["status"], "started");
    assert_eq!(payload["to"], "447700900000");
    assert_eq!(payload["from"], "447700900001");
    assert_eq!(payload["conversation_uuid"], conversation);
}

#[sqlx::test]
async fn every_endpoint_type_and_sdk_quirk_is_accepted(pool: PgPool) {
    let app = spawn_app(pool).await;
    let bodies = [
        // Python SDK: from as a SIP URI string.
        with(minimal_call(), "from", json!("sip:alice@example.com")),
        with(minimal_call(), "to", json!([{"type": "sip", "uri": "sip:bob@example.com;transport=tls", "headers": {"k": "v"}, "standard_headers": {"User-to-User": "abc"}}])),
        // Node SDK passes websocket contentType camelCase.
        with(minimal_call(), "to", json!([{"type": "websocket", "uri": "wss://ws.example.com/s", "contentType": "audio/l16;rate=16000", "headers": {"a": 1}}])),
        with(minimal_call(), "to", json!([{"type": "websocket", "uri": "ws://ws.example.com/s", "content-type": "audio/l16;rate=8000"}])),
        with(minimal_call(), "to", json!([{"type": "vbc", "extension": "1234"}])),
        with(minimal_call(), "to", json!([{"type": "app", "user": "alice"}])),
        with(minimal_call(), "to", json!([{"type": "phone", "number": "447700900000", "dtmfAnswer": "p*123#", "shaken": "eyJ..."}])),
        with(without(minimal_call(), "from"), "random_from_number", json!(true)),
        with(without(minimal_call(), "ncco"), "answer_url", json!(["https://example.com/answer"])),
        json!({"to": [{"type": "phone", "number": "447700900000"}], "from": {"type": "phone", "number": "447700900001"},
               "answer_url": "https://example.com/answer", "answer_method": "POST", "event_url": ["https://example.com/e"], "event_method": "GET",
               "fallback_url": ["https://example.com/fallback"], "machine_detection": "hangup",
               "advanced_machine_detection": {"behavior": "continue", "mode": "detect_beep", "beep_timeout": 90},
               "length_timer": 86400, "ringing_timer": 120, "unknown_future_field": true}),
        with(minimal_call(), "ncco", json!([{"action": "stream", "streamUrl": ["https://example.com/a.mp3"], "level": "0.4"}])),
        with(minimal_call(), "ncco", json!([{"action": "talk", "text": "hi", "level": 0.5, "style": "2"}])),
    ];
    for body in bodies {
        let response = app.post_call(&body).await;
        let status = response.status();
        assert_eq!(status, 201, "{body} -> {}", response.text().await.unwrap());
    }
}

#[sqlx::test]
async fn random_from_number_gets_a_caller_id_from_the_pool(pool: PgPool) {
    let app = spawn_app(pool).await;
    let created: Value = app.post_call(&with(without(minimal_call(), "from"), "random_from_number", json!(true))).await.json().await.unwrap();
    let call = app.get_json(&format!("/v1/calls/{}", created["uuid"].as_str().unwrap())).await;
    assert_eq!(call["from"]["type"], "phone");
    assert!(call["from"]["number"].as_str().unwrap().starts_with("4477009001"));
}

async fn assert_refused(app: &TestApp, body: Value, expected: &[&str]) {
    let names = invalid_names(app.post_call(&body).await).await;
    for name in expected {
        assert!(names.iter().any(|n| n == name), "expected {name} in {names:?} for {body}");
    }
}

#[sqlx::test]
async fn to_and_from_are_validated(pool: PgPool) {
    let app = spawn_app(pool).await;
    assert_refused(&app, without(minimal_call(), "to"), &["to"]).await;
    assert_refused(&app, with(minimal_call(), "to", json!([])), &["to"]).await;
    assert_refused(&app, with(minimal_call(), "to", json!({"type": "phone"})), &["to"]).await;
    assert_refused(&app, with(minimal_call(), "to", json!([{"type": "phone", "number": "12"}])), &["to[0].number"]).await;
    assert_refused(&app, with(minimal_call(), "to", json!([{"type": "phone", "number": "44770090000a"}])), &["to[0].number"]).await;
    assert_refused(&app, with(minimal_call(), "to", json!([{"type": "fax", "number": "447700900000"}])), &["to[0].type"]).await;
    assert_refused(&app, with(minimal_call(), "to", json!([{"type": "sip", "uri": "http://x"}])), &["to[0].uri"]).await;
    assert_refused(&app, with(minimal_call(), "to", json!([{"type": "websocket", "uri": "wss://x/y", "content-type": "audio/mp3"}])), &["to[0].content-type"]).await;
    assert_refused(&app, with(minimal_call(), "to", json!([{"type": "phone", "number": "447700900000", "dtmfAnswer": "12x"}])), &["to[0].dtmfAnswer"]).await;
    assert_refused(&app, without(minimal_call(), "from"), &["from"]).await;
    assert_refused(&app, with(minimal_call(), "random_from_number", json!(true)), &["from"]).await;
    assert_refused(&app, with(minimal_call(), "from", json!({"type": "phone", "number": "0"})), &["from.number"]).await;
}

#[sqlx::test]
async fn ncco_and_answer_url_are_exclusive_and_validated(pool: PgPool) {
    let app = spawn_app(pool).await;
    assert_refused(&app, without(minimal_call(), "ncco"), &["ncco"]).await;
    assert_refused(&app, with(minimal_call(), "answer_url", json!(["https://e.com/a"])), &["answer_url"]).await;
    let answer = with(without(minimal_call(), "ncco"), "answer_url", json!(["ftp://e.com/a"]));
    assert_refused(&app, answer, &["answer_url"]).await;
    let answer = with(with(without(minimal_call(), "ncco"), "answer_url", json!(["https://e.com/a"])), "answer_method", json!("PUT"));
    assert_refused(&app, answer, &["answer_method"]).await;
    assert_refused(&app, with(minimal_call(), "ncco", json!([{"action": "dance"}])), &["ncco[0].action"]).await;
    assert_refused(&app, with(minimal_call(), "ncco", json!([])), &["ncco"]).await;
}

#[sqlx::test]
async fn webhooks_timers_and_detection_are_validated(pool: PgPool) {
    let app = spawn_app(pool).await;
    assert_refused(&app, with(minimal_call(), "event_url", json!(["not a url"])), &["event_url"]).await;
    assert_refused(&app, with(minimal_call(), "event_url", json!(["https://a", "https://b"])), &["event_url"]).await;
    assert_refused(&app, with(minimal_call(), "event_method", json!("DELETE")), &["event_method"]).await;
    assert_refused(&app, with(minimal_call(), "fallback_url", json!([42])), &["fallback_url"]).await;
    assert_refused(&app, with(minimal_call(), "length_timer", json!(0)), &["length_timer"]).await;
    assert_refused(&app, with(minimal_call(), "length_timer", json!(86401)), &["length_timer"]).await;
    assert_refused(&app, with(minimal_call(), "ringing_timer", json!(121)), &["ringing_timer"]).await;
    assert_refused(&app, with(minimal_call(), "ringing_timer", json!(1.5)), &["ringing_timer"]).await;
    assert_refused(&app, with(minimal_call(), "machine_detection", json!("maybe")), &["machine_detection"]).await;
    let amd = json!({"behavior": "wait", "mode": "guess", "beep_timeout": 30});
    assert_refused(&app, with(minimal_call(), "advanced_machine_detection", amd),
        &["advanced_machine_detection.behavior", "advanced_machine_detection.mode", "advanced_machine_detection.beep_timeout"]).await;
}

#[sqlx::test]
async fn every_problem_is_reported_at_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = json!({"to": [{"type": "phone", "number": "1"}], "ringing_timer": 0, "ncco": [{"action": "talk"}]});
    let names = invalid_names(app.post_call(&body).await).await;
    for expected in ["to[0].number", "from", "ringing_timer", "ncco[0].text"] {
        assert!(names.contains(&expected.to_string()), "{expected} missing from {names:?}");
    }
}

#[sqlx::test]
async fn event_url_is_required_when_the_application_has_none(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let bare = create_application(&pool, app.account.account_id, None).await;
    let response = app.post_call_as(&app.jwt_for(bare), &minimal_call()).await;
    let body = assert_problem(response, 400).await;
    assert_eq!(body["invalid_parameters"][0]["name"], "event_url");
    let ok = app.post_call_as(&app.jwt_for(bare), &with(minimal_call(), "event_url", json!(["https://e.com/e"]))).await;
    assert_eq!(ok.status(), 201);
}

#[sqlx::test]
async fn the_same_idempotency_key_replays_the_first_response_and_places_no_second_call(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let send = |body: Value, key: &'static str| {
        app.client.post(app.url("/v1/calls")).bearer_auth(app.jwt()).header("Idempotency-Key", key).json(&body).send()
    };
    let first = send(minimal_call(), "k-1").await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = send(minimal_call(), "k-1").await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM calls").fetch_one(&pool).await.unwrap();
    assert_eq!(count, 1);

    // The same JSON with its keys in another order is the same request.
    let reordered: Value = serde_json::from_str(
        r#"{"ncco":[{"text":"Hello from Outdial","action":"talk"}],"from":{"number":"447700900001","type":"phone"},"to":[{"number":"447700900000","type":"phone"}]}"#,
    ).unwrap();
    let replay = send(reordered, "k-1").await.unwrap();
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.json::<Value>().await.unwrap(), first);

    let other_body = with(minimal_call(), "ringing_timer", json!(30));
    let body = assert_problem(send(other_body, "k-1").await.unwrap(), 422).await;
    assert!(body["detail"].as_str().unwrap().contains("Idempotency-Key"));
    assert_eq!(send(minimal_call(), "k-2").await.unwrap().status(), 201);
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM calls").fetch_one(&pool).await.unwrap();
    assert_eq!(count, 2);
}

#[sqlx::test]
async fn concurrent_retries_with_one_key_dial_once(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let requests = (0..8).map(|_| {
        app.client.post(app.url("/v1/calls")).bearer_auth(app.jwt()).header("Idempotency-Key", "burst").json(&minimal_call()).send()
    });
    let responses = futures_util::future::join_all(requests).await;
    let mut uuids = std::collections::HashSet::new();
    for response in responses {
        let response = response.unwrap();
        assert_eq!(response.status(), 201);
        uuids.insert(response.json::<Value>().await.unwrap()["uuid"].as_str().unwrap().to_string());
    }
    assert_eq!(uuids.len(), 1);
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM calls").fetch_one(&pool).await.unwrap();
    assert_eq!(count, 1);
}

#[sqlx::test]
async fn creations_over_the_account_rate_get_429_with_retry_after(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), Options { calls_per_second: 3, ..Options::default() }).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = app.post_call(&minimal_call()).await;
        if response.status() == 429 {
            assert!(response.headers().get("retry-after").is_some());
            assert_problem(response, 429).await;
            statuses.push(429);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    assert_eq!(&statuses[..3], &[201, 201, 201]);
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM calls").fetch_one(&pool).await.unwrap();
    assert_eq!(count as usize, statuses.iter().filter(|s| **s == 201).count(), "a refused call is not stored");
}

/// Two API instances share one account's rate: a burst of calls sent to both is admitted at
/// the account's rate (its one second of burst, plus the rate for as long as the burst took),
/// not twice it (each instance used to keep its own bucket).
#[sqlx::test]
async fn the_call_rate_holds_across_instances(pool: PgPool) {
    // Low, so that however slowly this machine answers, twice the rate stays out of reach.
    const CPS: f64 = 2.0;
    let app = spawn_app_with(pool.clone(), Options { calls_per_second: CPS as i32, ..Options::default() }).await;
    let (second, second_address) = start_instance(&pool, Options::default()).await;
    let jwt = app.jwt();
    let started = std::time::Instant::now();
    let requests: Vec<_> = (0..40)
        .map(|i| {
            let base = if i % 2 == 0 { app.address.clone() } else { second_address.clone() };
            let (client, jwt) = (app.client.clone(), jwt.clone());
            tokio::spawn(async move {
                let response = client.post(format!("{base}/v1/calls")).bearer_auth(jwt).json(&minimal_call()).send().await.unwrap();
                (i % 2, response.status().as_u16())
            })
        })
        .collect();
    let mut admitted = [0u32; 2];
    for request in requests {
        let (instance, status) = request.await.unwrap();
        assert!(status == 201 || status == 429, "{status}");
        admitted[instance] += u32::from(status == 201);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = (CPS + CPS * elapsed).floor();
    let total = f64::from(admitted[0] + admitted[1]);
    assert!(total <= allowed, "admitted {admitted:?} in {elapsed:.2} s: more than {allowed} at {CPS}/s");
    assert!(total >= CPS, "admitted {admitted:?}: not even the bucket's burst of {CPS}");
    second.stop().await;
    app.stop().await;
}

/// At higher rates an instance takes several tokens at once; none of them is wasted: a second's
/// worth of calls in a row is all admitted.
#[sqlx::test]
async fn leased_tokens_are_spent_not_lost(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), Options { calls_per_second: 25, ..Options::default() }).await;
    let jwt = app.jwt();
    let body = minimal_call();
    let burst = futures_util::future::join_all((0..25).map(|_| app.post_call_as(&jwt, &body))).await;
    let statuses: Vec<u16> = burst.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    app.stop().await;
}

/// A queue-mode account's calls, created through two instances at once, are dialled at the
/// account's rate: two at once (the bucket holds one second's worth), then one every half
/// second, as the carrier sees them (the `ringing` webhooks), whichever instance took them.
#[sqlx::test]
async fn an_account_set_to_queue_gets_every_call_dialled_at_its_rate(pool: PgPool) {
    let engine = Options { roles: vec!["api", "workers", "webhooks"], ..Options::default() };
    let app = spawn_app_with(pool.clone(), Options { roles: vec!["api", "workers", "webhooks"], ..Options::default() }).await;
    let (second, second_address) = start_instance(&pool, engine).await;
    let receiver = common::receiver::Receiver::start().await;
    let queued = outdial::accounts::repo::create_with(&pool, "queued", 2, "queue").await.unwrap();
    let queued_app = create_application(&pool, queued.account_id, Some(&receiver.url("/events"))).await;
    let mut uuids = Vec::new();
    for i in 0..6 {
        let base = if i % 2 == 0 { &app.address } else { &second_address };
        let response = app.client.post(format!("{base}/v1/calls")).bearer_auth(app.jwt_for(queued_app)).json(&minimal_call()).send().await.unwrap();
        assert_eq!(response.status(), 201, "queued, not refused");
        uuids.push(response.json::<Value>().await.unwrap()["uuid"].as_str().unwrap().to_string());
    }
    let ringing = receiver.wait_for("/events", |r| r.iter().filter(|x| x.body["status"] == "ringing").count() == 6).await;
    let mut dialled: Vec<std::time::Instant> = ringing.iter().filter(|x| x.body["status"] == "ringing").map(|x| x.at).collect();
    dialled.sort();
    let spread = (dialled[5] - dialled[0]).as_millis();
    assert!((1700..=2600).contains(&spread), "first to last dialled: {spread} ms");
    for pair in dialled[2..].windows(2) {
        let gap = (pair[1] - pair[0]).as_millis();
        assert!((250..=900).contains(&gap), "dialled {gap} ms apart");
    }
    second.stop().await;
    app.stop().await;
}

/// One POST /v1/calls on a raw keep-alive connection; the status code, or None when the server
/// had closed the connection.
async fn post_call_on(connection: &mut tokio::net::TcpStream, app: &TestApp) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = minimal_call().to_string();
    let request = format!(
        "POST /v1/calls HTTP/1.1\r\nhost: outdial\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        app.jwt(),
        body.len()
    );
    connection.write_all(request.as_bytes()).await.ok()?;
    let mut response = vec![0u8; 16 * 1024];
    let n = connection.read(&mut response).await.ok().filter(|n| *n > 0)?;
    let head = String::from_utf8_lossy(&response[..n]);
    head.split(' ').nth(1)?.parse().ok()
}

/// An SDK client keeps idle connections for a few seconds (Node's global agent: 5 s) and sends
/// its next call on one: the server must not close it first, or that POST fails on the client
/// side (actix's default closed it after 4.5-5 s).
#[sqlx::test]
async fn a_connection_idle_for_six_seconds_still_takes_the_next_call(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut connection = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
    assert_eq!(post_call_on(&mut connection, &app).await, Some(201));
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert_eq!(post_call_on(&mut connection, &app).await, Some(201), "the server closed the idle connection");
}
