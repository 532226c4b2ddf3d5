//! NCCO actions and webhooks that answer with NCCOs, against real receivers.

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

#[sqlx::test]
async fn answer_url_get_carries_the_call_in_its_query(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    receiver.respond("/answer", 200, r#"[{"action": "talk", "text": "from the answer url"}]"#);
    let body = json!({
        "to": [{"type": "phone", "number": "447700900000"}], "from": {"type": "phone", "number": "447700900001"},
        "answer_url": [receiver.url("/answer")], "event_url": [receiver.url("/events")],
    });
    let uuid = app.place(&body).await;
    receiver.wait_status("/events", &uuid, "completed").await;
    let answers = receiver.requests("/answer");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].method, "GET");
    assert_eq!(answers[0].query["uuid"], uuid);
    assert_eq!(answers[0].query["to"], "447700900000");
    assert_eq!(answers[0].query["from"], "447700900001");
    assert!(answers[0].query["conversation_uuid"].starts_with("CON-"));
    assert!(answers[0].query.contains_key("region_url"));
}

#[sqlx::test]
async fn answer_url_post_falls_back_after_two_failures(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    receiver.respond("/answer", 503, "");
    receiver.respond("/fallback", 200, r#"[{"action": "talk", "text": "fallback"}]"#);
    let body = json!({
        "to": [{"type": "phone", "number": "447700900000"}], "from": {"type": "phone", "number": "447700900001"},
        "answer_url": [receiver.url("/answer")], "answer_method": "POST", "fallback_url": [receiver.url("/fallback")],
        "event_url": [receiver.url("/events")],
    });
    let uuid = app.place(&body).await;
    let statuses = receiver.wait_status("/events", &uuid, "completed").await;
    assert_eq!(statuses, ["started", "ringing", "answered", "completed"]);
    let answers = receiver.requests("/answer");
    assert_eq!(answers.len(), 2, "two attempts at the answer_url");
    assert_eq!(answers[0].method, "POST");
    assert_eq!(answers[0].body["uuid"], uuid.as_str());
    let fallback = receiver.requests("/fallback");
    assert_eq!(fallback.len(), 1);
    assert!(fallback[0].query["original_request"].contains("answer"));

    // The history shows the answer request with its three attempts.
    let history = app.get_json(&format!("/v1/calls/{uuid}/events")).await;
    let answer = history["_embedded"]["events"].as_array().unwrap().iter().find(|e| e["kind"] == "answer").unwrap().clone();
    let codes: Vec<Value> = answer["attempts"].as_array().unwrap().iter().map(|a| a["status_code"].clone()).collect();
    assert_eq!(codes, [json!(503), json!(503), json!(200)]);
}

#[sqlx::test]
async fn an_invalid_answer_ncco_sends_an_error_event_and_ends_the_call(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    receiver.respond("/answer", 200, r#"[{"action": "dance"}]"#);
    let body = json!({
        "to": [{"type": "phone", "number": "447700900000"}], "from": {"type": "phone", "number": "447700900001"},
        "answer_url": [receiver.url("/answer")], "event_url": [receiver.url("/events")],
    });
    let uuid = app.place(&body).await;
    receiver.wait_status("/events", &uuid, "completed").await;
    let error = receiver.requests("/events").into_iter().find(|r| r.body.get("reason").is_some()).expect("an error event");
    assert!(error.body["reason"].as_str().unwrap().contains("Syntax error in NCCO"), "{}", error.body);
}

#[sqlx::test]
async fn input_collects_the_callees_keys_and_runs_the_ncco_it_is_answered_with(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    let sandbox = json!({"ring_s": 1.0, "dtmf": [{"after_s": 1.0, "value": "1234"}]});
    assert_eq!(app.put_json("/v1/sandbox/numbers/447700900555", &sandbox).await.status(), 200);
    receiver.respond("/input", 200, r#"[{"action": "talk", "text": "thanks"}, {"action": "notify", "payload": {"step": "after input"}, "eventUrl": ["RECEIVER/notify"]}]"#
        .replace("RECEIVER", &receiver.base).as_str());
    let ncco = json!([
        {"action": "talk", "text": "Enter your PIN", "bargeIn": true},
        {"action": "input", "type": ["dtmf"], "dtmf": {"maxDigits": 4, "timeOut": 5}, "eventUrl": [receiver.url("/input")]}
    ]);
    let uuid = app.place(&call(&receiver, "447700900555", ncco)).await;
    receiver.wait_status("/events", &uuid, "completed").await;
    let input = receiver.requests("/input");
    assert_eq!(input.len(), 1);
    assert_eq!(input[0].body["dtmf"]["digits"], "1234");
    assert_eq!(input[0].body["dtmf"]["timed_out"], false);
    assert_eq!(input[0].body["uuid"], uuid.as_str());
    let notify = receiver.requests("/notify");
    assert_eq!(notify.len(), 1, "the NCCO returned by the input webhook ran");
    assert_eq!(notify[0].body, json!({"step": "after input"}));
}

#[sqlx::test]
async fn input_times_out_and_speech_is_recognised(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    // Simulated time runs 20 times faster: the phrase comes 8 s (400 ms) after the DTMF input
    // timed out, so its webhook and write are done by then even on a busy machine.
    let sandbox = json!({"ring_s": 1.0, "speech": [{"after_s": 10.0, "value": "billing please"}]});
    assert_eq!(app.put_json("/v1/sandbox/numbers/447700900556", &sandbox).await.status(), 200);
    let ncco = json!([
        {"action": "input", "type": ["dtmf"], "dtmf": {"timeOut": 2}, "eventUrl": [receiver.url("/dtmf")]},
        {"action": "input", "type": ["speech"], "speech": {"startTimeout": 30}, "eventUrl": [receiver.url("/speech")]}
    ]);
    let uuid = app.place(&call(&receiver, "447700900556", ncco)).await;
    receiver.wait_status("/events", &uuid, "completed").await;
    let dtmf = &receiver.requests("/dtmf")[0].body;
    assert_eq!(dtmf["dtmf"]["digits"], Value::Null);
    assert_eq!(dtmf["dtmf"]["timed_out"], true);
    let speech = &receiver.requests("/speech")[0].body;
    assert_eq!(speech["speech"]["results"][0]["text"], "billing please", "{speech}");
}

#[sqlx::test]
async fn notify_posts_its_payload_and_an_answer_replaces_the_rest(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    receiver.respond("/notify", 200, r#"[{"action": "wait", "timeout": 1}]"#);
    let ncco = json!([
        {"action": "notify", "payload": {"order": 42}, "eventUrl": [receiver.url("/notify")]},
        {"action": "notify", "payload": {"never": true}, "eventUrl": [receiver.url("/never")]}
    ]);
    let uuid = app.place(&call(&receiver, "447700900000", ncco)).await;
    receiver.wait_status("/events", &uuid, "completed").await;
    assert_eq!(receiver.requests("/notify")[0].body, json!({"order": 42}));
    assert!(receiver.requests("/never").is_empty(), "the answered NCCO replaced the rest");
}

#[sqlx::test]
async fn a_failing_notify_is_retried_then_the_ncco_continues(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    receiver.respond("/notify", 500, "");
    let ncco = json!([
        {"action": "notify", "payload": {"a": 1}, "eventUrl": [receiver.url("/notify")]},
        {"action": "notify", "payload": {"b": 2}, "eventUrl": [receiver.url("/next")]}
    ]);
    let uuid = app.place(&call(&receiver, "447700900000", ncco)).await;
    receiver.wait_status("/events", &uuid, "completed").await;
    assert_eq!(receiver.requests("/notify").len(), 2);
    assert_eq!(receiver.requests("/next").len(), 1);
}

#[sqlx::test]
async fn record_writes_a_wav_served_only_to_its_application(pool: PgPool) {
    let app = spawn_engine_app(pool.clone()).await;
    let receiver = Receiver::start().await;
    let sandbox = json!({"ring_s": 1.0, "dtmf": [{"after_s": 4.0, "value": "#"}]});
    assert_eq!(app.put_json("/v1/sandbox/numbers/447700900557", &sandbox).await.status(), 200);
    let ncco = json!([{"action": "record", "endOnKey": "#", "eventUrl": [receiver.url("/record")]}, {"action": "talk", "text": "bye"}]);
    let uuid = app.place(&call(&receiver, "447700900557", ncco)).await;
    let record = receiver.wait_for("/record", |r| !r.is_empty()).await[0].body.clone();
    assert_eq!(record["uuid"], uuid.as_str());
    // One clock for the event's times (wall clock, as every timestamp): with time_scale 20 the
    // ~3 simulated seconds took ~0.15 s, and the recording ended before its event was written.
    let time = |key: &str| chrono::DateTime::parse_from_rfc3339(record[key].as_str().unwrap()).unwrap();
    let (start, end, timestamp) = (time("start_time"), time("end_time"), time("timestamp"));
    assert!(start <= end && end <= timestamp, "start {start} <= end {end} <= timestamp {timestamp}");
    assert!((end - start).num_milliseconds() < 1000, "wall-clock span, not simulated seconds: {start} .. {end}");
    let url = record["recording_url"].as_str().unwrap();
    let path = url::Url::parse(url).unwrap().path().to_string();
    assert!(path.starts_with("/v1/files/"));
    let wav = app.get(&path).await;
    assert_eq!(wav.status(), 200);
    assert_eq!(wav.headers()["content-type"], "audio/wav");
    let bytes = wav.bytes().await.unwrap();
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(bytes.len() as u64, record["size"].as_u64().unwrap());
    // About 3 s of 16 kHz 16-bit audio (the key came 4 s after answer, the record began ~0.1 s
    // in). Simulated time runs 20x: 50 ms of real delay on a loaded machine is a simulated second.
    let seconds = (bytes.len() - 44) as f64 / 32_000.0;
    assert!((1.5..=4.5).contains(&seconds), "{seconds}");

    let other_app = create_application(&pool, app.account.account_id, None).await;
    let denied = app.client.get(app.url(&path)).bearer_auth(app.jwt_for(other_app)).send().await.unwrap();
    assert_problem(denied, 404).await;
}

#[sqlx::test]
async fn connect_bridges_a_second_leg_and_falls_through_when_it_is_busy(pool: PgPool) {
    let app = spawn_engine_app(pool.clone()).await;
    let receiver = Receiver::start().await;
    let ncco = json!([
        {"action": "connect", "endpoint": [{"type": "phone", "number": "447700900486"}], "eventUrl": [receiver.url("/busy-leg")]},
        {"action": "connect", "endpoint": [{"type": "phone", "number": "447700900999"}], "eventUrl": [receiver.url("/leg")], "limit": 3}
    ]);
    let uuid = app.place(&call(&receiver, "447700900000", ncco)).await;
    receiver.wait_status("/events", &uuid, "completed").await;
    let busy: Vec<String> = receiver.requests("/busy-leg").iter().filter_map(|r| r.body["status"].as_str().map(str::to_string)).collect();
    assert_eq!(busy, ["started", "ringing", "busy", "completed"]);
    let leg: Vec<Value> = receiver.requests("/leg").into_iter().map(|r| r.body).collect();
    let statuses: Vec<&str> = leg.iter().filter_map(|b| b["status"].as_str()).collect();
    assert_eq!(statuses, ["started", "ringing", "answered", "completed"]);
    assert_eq!(leg[0]["conversation_uuid"], receiver.requests("/events")[0].body["conversation_uuid"], "same conversation");
    // Simulated seconds at 20x: a few ms of scheduling on a busy machine round up a second.
    let duration: i64 = leg.last().unwrap()["duration"].as_str().unwrap().parse().unwrap();
    assert!((3..=4).contains(&duration), "the connect limit (3 s) ended it: {duration}");
    let child = leg[0]["uuid"].as_str().unwrap();
    let (parent,): (Option<uuid::Uuid>,) = sqlx::query_as("SELECT parent_uuid FROM calls WHERE uuid = $1::uuid").bind(child).fetch_one(&pool).await.unwrap();
    assert_eq!(parent.unwrap().to_string(), uuid);
    app.stop().await;
}

#[sqlx::test]
async fn stream_lasts_as_long_as_the_audio(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    // 4 s of WAV audio (an MP3-rate guess would make it 8 s).
    receiver.respond_bytes("/audio.wav", 200, &wav(4));
    let ncco = json!([{"action": "stream", "streamUrl": [receiver.url("/audio.wav")]}]);
    let uuid = app.place(&call(&receiver, "447700900000", ncco)).await;
    receiver.wait_status("/events", &uuid, "completed").await;
    let completed = receiver.requests("/events").last().unwrap().body.clone();
    let duration: i64 = completed["duration"].as_str().unwrap().parse().unwrap();
    assert!((4..=5).contains(&duration), "the 4 s file (plus ms of scheduling, ×20): {duration}");
}

#[sqlx::test]
async fn a_moderator_leaving_with_end_on_exit_ends_the_conversation(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    // The attendee waits on hold; the moderator joins later, starts it, and leaves after 3 s.
    let sandbox = json!({"ring_s": 1.0, "hangup_after_s": 4.0});
    assert_eq!(app.put_json("/v1/sandbox/numbers/447700900558", &sandbox).await.status(), 200);
    let attendee = app.place(&call(&receiver, "447700900000", json!([{"action": "conversation", "name": "standup", "startOnEnter": false}]))).await;
    receiver.wait_status("/events", &attendee, "answered").await;
    let moderator = app.place(&call(&receiver, "447700900558", json!([{"action": "conversation", "name": "standup", "endOnExit": true, "record": true}]))).await;
    receiver.wait_status("/events", &moderator, "completed").await;
    let attendee_events = receiver.wait_status("/events", &attendee, "completed").await;
    assert_eq!(attendee_events, ["started", "ringing", "answered", "completed"]);
    let completed = receiver.requests("/events").into_iter().rev().find(|r| r.body["uuid"] == attendee.as_str()).unwrap();
    assert_eq!(completed.body["disconnected_by"], "platform", "the conversation ended under the attendee");
    // The moderator's recording of the conversation.
    let record = receiver.wait_for("/events", |r| r.iter().any(|x| x.body.get("recording_url").is_some())).await;
    assert!(record.iter().any(|x| x.body["uuid"] == moderator.as_str() && x.body["recording_url"].is_string()));
}

/// Members on two instances: the one that starts the conversation (startOnEnter) and ends it
/// (endOnExit) runs on the second instance; the attendee's music on hold stops and its leg ends
/// on the first.
#[sqlx::test]
async fn a_conversation_starts_and_ends_for_members_on_another_instance(pool: PgPool) {
    let options = || Options { roles: vec!["api", "workers", "webhooks"], settings: |s| s.engine.max_live_legs = 1, ..Options::default() };
    let app = spawn_app_with(pool.clone(), options()).await;
    let receiver = Receiver::start().await;
    let music = receiver.url("/hold.wav");
    receiver.respond_bytes("/hold.wav", 200, &wav(60));
    let hold = json!([{"action": "conversation", "name": "standup", "startOnEnter": false, "musicOnHoldUrl": [music]}]);
    let attendee = app.place(&call(&receiver, "447700900000", hold)).await;
    wait_log(&app, &attendee, &format!("heard stream {music}")).await;
    // The first instance drives one leg at most: the moderator's runs on the second.
    let (second, _) = start_instance(&pool, Options { roles: vec!["workers"], ..options() }).await;
    let sandbox = json!({"ring_s": 1.0, "hangup_after_s": 40.0});
    assert_eq!(app.put_json("/v1/sandbox/numbers/447700900558", &sandbox).await.status(), 200);
    let moderator = app.place(&call(&receiver, "447700900558", json!([{"action": "conversation", "name": "standup", "endOnExit": true}]))).await;
    wait_log(&app, &attendee, &format!("stopped stream {music}")).await;
    let instances: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT DISTINCT instance_id FROM conversation_members WHERE name = 'standup'").fetch_all(&pool).await.unwrap();
    assert_eq!(instances.len(), 2, "the members' legs run on two instances");
    receiver.wait_status("/events", &moderator, "completed").await;
    let attendee_events = receiver.wait_status("/events", &attendee, "completed").await;
    assert_eq!(attendee_events, ["started", "ringing", "answered", "completed"]);
    let completed = receiver.requests("/events").into_iter().rev().find(|r| r.body["uuid"] == attendee.as_str()).unwrap();
    assert_eq!(completed.body["disconnected_by"], "platform", "the conversation ended under the attendee");
    second.stop().await;
}

#[sqlx::test]
async fn the_transfer_action_sends_a_transfer_event_and_joins_the_conversation(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    // The attendee waits on hold in CON-target until someone starts it, and ends it on leaving.
    let music = receiver.url("/hold.wav");
    receiver.respond_bytes("/hold.wav", 200, &wav(60));
    let hold = json!([{"action": "conversation", "name": "CON-target", "startOnEnter": false, "endOnExit": true, "musicOnHoldUrl": [music]}]);
    let attendee = app.place(&call(&receiver, "447700900000", hold)).await;
    wait_log(&app, &attendee, &format!("heard stream {music}")).await;

    let uuid = app.place(&call(&receiver, "447700900000", json!([{"action": "transfer", "conversationId": "CON-target"}]))).await;
    let events = receiver.wait_for("/events", |r| r.iter().any(|x| x.body["type"] == "transfer")).await;
    let transfer = events.into_iter().find(|r| r.body["type"] == "transfer").unwrap();
    assert_eq!(transfer.body["uuid"], uuid.as_str());
    assert_eq!(transfer.body["conversation_uuid_to"], "CON-target");
    assert!(transfer.body["conversation_uuid_from"].as_str().unwrap().starts_with("CON-"));
    // Joining started the conversation: the attendee's music stops, and the call stays in it…
    wait_log(&app, &attendee, &format!("stopped stream {music}")).await;
    assert_eq!(app.get_json(&format!("/v1/calls/{uuid}")).await["status"], "answered");
    // …until the attendee leaves and the conversation ends under it.
    assert_eq!(app.put_json(&format!("/v1/calls/{attendee}"), &json!({"action": "hangup"})).await.status(), 204);
    receiver.wait_status("/events", &uuid, "completed").await;
    let completed = receiver.requests("/events").into_iter().rev().find(|r| r.body["uuid"] == uuid.as_str()).unwrap();
    assert_eq!(completed.body["disconnected_by"], "platform", "the conversation ended under the transferred call");
}

#[sqlx::test]
async fn a_synchronous_connect_runs_the_ncco_its_failure_event_answers(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    receiver.respond("/leg", 200, &format!(r#"[{{"action": "notify", "payload": {{"fallback": true}}, "eventUrl": ["{}"]}}]"#, receiver.url("/fallback-ran")));
    let ncco = json!([
        {"action": "connect", "eventType": "synchronous", "endpoint": [{"type": "phone", "number": "447700900404"}], "eventUrl": [receiver.url("/leg")]},
        {"action": "notify", "payload": {"skipped": true}, "eventUrl": [receiver.url("/skipped")]}
    ]);
    let uuid = app.place(&call(&receiver, "447700900000", ncco)).await;
    receiver.wait_status("/events", &uuid, "completed").await;
    assert_eq!(receiver.requests("/fallback-ran").len(), 1, "the failure event's NCCO ran");
    assert!(receiver.requests("/skipped").is_empty(), "and replaced the rest");
    let failed = receiver.requests("/leg").into_iter().find(|r| r.body["status"] == "failed").unwrap();
    assert_eq!(failed.body["detail"], "number_out_of_service");
}

#[sqlx::test]
async fn a_background_record_ends_with_the_call(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    let ncco = json!([{"action": "record", "eventUrl": [receiver.url("/record")]}, {"action": "talk", "text": "one two three four five six seven eight nine ten"}]);
    let uuid = app.place(&call(&receiver, "447700900000", ncco)).await;
    receiver.wait_status("/events", &uuid, "completed").await;
    let record = receiver.wait_for("/record", |r| !r.is_empty()).await[0].body.clone();
    let seconds = (record["size"].as_u64().unwrap() - 44) as f64 / 32_000.0;
    assert!((3.5..=4.5).contains(&seconds), "recorded the 4 s talk: {seconds}");
}
