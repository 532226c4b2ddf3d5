//! Calls driven through the simulated network: the event sequences of each ending, delivered
//! to a real receiver, and the finished leg's price.

mod common;

use common::receiver::Receiver;
use common::*;
use serde_json::{json, Value};
use sqlx::PgPool;

fn call_to(number: &str, receiver: &Receiver) -> Value {
    json!({
        "to": [{"type": "phone", "number": number}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [{"action": "talk", "text": "Hello from Outdial, this is a test"}],
        "event_url": [receiver.url("/events")],
    })
}

#[sqlx::test]
async fn an_answered_call_runs_its_ncco_and_completes_with_a_price(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    let uuid = app.place(&call_to("447700900000", &receiver)).await;
    let statuses = receiver.wait_status("/events", &uuid, "completed").await;
    assert_eq!(statuses, ["started", "ringing", "answered", "completed"]);

    let events = receiver.requests("/events");
    let stamps: Vec<&str> = events.iter().map(|r| r.body["timestamp"].as_str().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "timestamps increase: {stamps:?}");
    for e in &events {
        assert_eq!(e.method, "POST");
        assert_eq!(e.body["to"], "447700900000");
        assert_eq!(e.body["from"], "447700900001");
        assert_eq!(e.body["direction"], "outbound");
    }
    let completed = &events.last().unwrap().body;
    // 8 words of TTS = 3.2 s of simulated speech.
    let duration: i64 = completed["duration"].as_str().unwrap().parse().unwrap();
    assert!((3..=4).contains(&duration), "duration {duration}");
    assert_eq!(completed["rate"], "0.02400000", "447… is GB-MOBILE in the default deck");
    assert_eq!(completed["network"], "GB-MOBILE");
    assert_eq!(completed["disconnected_by"], "platform");
    let expected_price = rust_decimal::Decimal::new(24, 3) * rust_decimal::Decimal::from(duration) / rust_decimal::Decimal::from(60);
    assert_eq!(completed["price"], format!("{:.8}", expected_price.round_dp(8)));

    let call = app.wait_call_status(&uuid, "completed").await;
    assert_eq!(call["price"], completed["price"], "the API and the webhook agree");
    assert_eq!(call["duration"], completed["duration"]);
    assert!(call["start_time"].is_string() && call["end_time"].is_string());
}

/// `GET /v1/calls?status=<status>` lists the call (and its entry agrees), before and after its
/// hour is sealed into the counts the list pages with.
async fn assert_listed_by_status(app: &TestApp, uuid: &str, status: &str) {
    for sealed in [false, true] {
        if sealed {
            // Sealing needs the hour behind the clock: move the leg an hour and more back.
            sqlx::query("UPDATE calls SET created_at = created_at - interval '2 hours' WHERE uuid = $1::uuid").bind(uuid).execute(&app.pool).await.unwrap();
            outdial::history::rollup::seal(&app.pool, std::time::Duration::ZERO).await.unwrap();
        }
        let page = app.get_json(&format!("/v1/calls?status={status}")).await;
        let calls = page["_embedded"]["calls"].as_array().unwrap();
        assert_eq!(page["count"], 1, "status={status} (sealed: {sealed}): {page}");
        assert_eq!((calls[0]["uuid"].as_str(), calls[0]["status"].as_str()), (Some(uuid), Some(status)));
        let others = if status == "completed" { "busy" } else { "completed" };
        assert_eq!(app.get_json(&format!("/v1/calls?status={others}")).await["count"], 0, "status={others} (sealed: {sealed})");
    }
}

async fn assert_sequence(pool: PgPool, number: &str, extra: Value, expected: &[&str], detail: Option<&str>) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    let mut body = call_to(number, &receiver);
    if let Value::Object(map) = extra {
        body.as_object_mut().unwrap().extend(map);
    }
    let uuid = app.place(&body).await;
    let last = expected.last().unwrap();
    let statuses = receiver.wait_status("/events", &uuid, last).await;
    // Nothing may follow the last expected status.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(receiver.statuses("/events", &uuid), expected, "got {statuses:?}");
    // The API shows a finished leg by how it ended: `completed` if answered, else its ending
    // (the status event before `completed`, or `rejected`).
    let answered = expected.contains(&"answered");
    let final_status = if answered { "completed" } else if *last == "rejected" { "rejected" } else { expected[expected.len() - 2] };
    if let Some(detail) = detail {
        let ending = receiver.requests("/events").into_iter().find(|r| r.body["status"] == final_status).unwrap();
        assert_eq!(ending.body["detail"], detail);
    }
    let call = app.wait_call_status(&uuid, final_status).await;
    if !answered {
        assert_eq!(call["duration"], "0");
        assert_eq!(call["price"], "0.00000000");
    }
    assert_listed_by_status(&app, &uuid, final_status).await;
    let (job,): (String,) = sqlx::query_as("SELECT state FROM call_jobs WHERE call_uuid = $1::uuid").bind(&uuid).fetch_one(&app.pool).await.unwrap();
    assert_eq!(job, "done");
}

#[sqlx::test]
async fn busy(pool: PgPool) {
    assert_sequence(pool, "447700900486", json!({}), &["started", "ringing", "busy", "completed"], None).await;
}

#[sqlx::test]
async fn rejected_has_no_completed(pool: PgPool) {
    assert_sequence(pool, "447700900603", json!({}), &["started", "rejected"], Some("declined")).await;
}

#[sqlx::test]
async fn failed_number_out_of_service(pool: PgPool) {
    assert_sequence(pool, "447700900404", json!({}), &["started", "failed", "completed"], Some("number_out_of_service")).await;
}

#[sqlx::test]
async fn unanswered(pool: PgPool) {
    assert_sequence(pool, "447700900480", json!({}), &["started", "ringing", "unanswered", "completed"], Some("unavailable")).await;
}

#[sqlx::test]
async fn timeout_after_the_ringing_timer(pool: PgPool) {
    assert_sequence(pool, "447700900408", json!({"ringing_timer": 5}), &["started", "ringing", "timeout", "completed"], None).await;
}

#[sqlx::test]
async fn machine_detection_hangup(pool: PgPool) {
    assert_sequence(pool, "447700900777", json!({"machine_detection": "hangup"}), &["started", "ringing", "answered", "machine", "completed"], None).await;
}

#[sqlx::test]
async fn human_detection_continues_the_ncco(pool: PgPool) {
    assert_sequence(pool, "447700900000", json!({"machine_detection": "continue"}), &["started", "ringing", "answered", "human", "completed"], None).await;
}

#[sqlx::test]
async fn advanced_detection_waits_for_the_beep(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    let mut body = call_to("447700900777", &receiver);
    body["advanced_machine_detection"] = json!({"behavior": "continue", "mode": "detect_beep", "beep_timeout": 45});
    let uuid = app.place(&body).await;
    receiver.wait_status("/events", &uuid, "completed").await;
    let events = receiver.requests("/events");
    let machine: Vec<&Value> = events.iter().map(|r| &r.body).filter(|b| b["status"] == "machine").collect();
    assert_eq!(machine.len(), 2);
    assert_eq!(machine[0]["call_uuid"], uuid.as_str());
    assert!(machine[0].get("sub_state").is_none());
    assert_eq!(machine[1]["sub_state"], "beep_start");
}

#[sqlx::test]
async fn a_call_hung_up_while_ringing_reads_and_lists_as_cancelled(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    let mut body = call_to("447700900408", &receiver);
    body["ringing_timer"] = json!(60);
    let uuid = app.place(&body).await;
    receiver.wait_status("/events", &uuid, "ringing").await;
    let hangup = app.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": "hangup"})).await;
    assert_eq!(hangup.status(), 204);
    assert_eq!(receiver.wait_status("/events", &uuid, "completed").await, ["started", "ringing", "cancelled", "completed"]);
    app.wait_call_status(&uuid, "cancelled").await;
    assert_listed_by_status(&app, &uuid, "cancelled").await;
}

#[sqlx::test]
async fn length_timer_ends_an_endless_call(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    let mut body = call_to("447700900000", &receiver);
    body["ncco"] = json!([{"action": "talk", "text": "forever", "loop": 0}]);
    body["length_timer"] = json!(6);
    let uuid = app.place(&body).await;
    receiver.wait_status("/events", &uuid, "completed").await;
    let completed = receiver.requests("/events").last().unwrap().body.clone();
    let duration: i64 = completed["duration"].as_str().unwrap().parse().unwrap();
    assert!((5..=7).contains(&duration), "{duration}");
    assert_eq!(completed["disconnected_by"], "platform");
}

#[sqlx::test]
async fn a_callee_hanging_up_is_disconnected_by_user(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    let sandbox = app.put_json("/v1/sandbox/numbers/447700900123", &json!({"hangup_after_s": 2.0, "ring_s": 1.0})).await;
    assert_eq!(sandbox.status(), 200);
    let mut body = call_to("447700900123", &receiver);
    body["ncco"] = json!([{"action": "wait", "timeout": 60}]);
    let uuid = app.place(&body).await;
    receiver.wait_status("/events", &uuid, "completed").await;
    let completed = receiver.requests("/events").last().unwrap().body.clone();
    assert_eq!(completed["disconnected_by"], "user");
    let duration: i64 = completed["duration"].as_str().unwrap().parse().unwrap();
    assert!((2..=3).contains(&duration), "hung up 2 s after answer: {duration}");
}

fn stamp(event: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(event["timestamp"].as_str().unwrap()).unwrap().into()
}

/// Webhooks carry the moment the network reported each change, and the call's duration ends
/// when the callee hung up, however late the leg gets to them: here the answered leg waits for
/// its credit hold (a test transaction holds the account row) while the callee answers and,
/// a quarter of a second later, hangs up.
#[sqlx::test]
async fn events_are_stamped_when_the_network_reported_them_not_when_the_leg_got_to_them(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    // At time_scale 20: rings 0.5 s of wall time, hangs up 0.25 s after answering.
    let sandbox = app.put_json("/v1/sandbox/numbers/447700900124", &json!({"ring_s": 10.0, "hangup_after_s": 5.0})).await;
    assert_eq!(sandbox.status(), 200);
    let mut body = call_to("447700900124", &receiver);
    body["ncco"] = json!([{"action": "wait", "timeout": 60}]);
    let uuid = app.place(&body).await;
    let mut hold_blocker = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM accounts WHERE id = $1 FOR NO KEY UPDATE")
        .bind(app.account.account_id)
        .execute(&mut *hold_blocker)
        .await
        .unwrap();
    receiver.wait_status("/events", &uuid, "ringing").await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (held_until,): (chrono::DateTime<chrono::Utc>,) = sqlx::query_as("SELECT clock_timestamp()").fetch_one(&mut *hold_blocker).await.unwrap();
    hold_blocker.commit().await.unwrap();

    receiver.wait_status("/events", &uuid, "completed").await;
    let events: Vec<Value> = receiver.requests("/events").into_iter().map(|r| r.body).collect();
    let by_status = |s: &str| events.iter().find(|e| e["status"] == s).unwrap_or_else(|| panic!("no {s} in {events:?}")).clone();
    let (ringing, answered, completed) = (by_status("ringing"), by_status("answered"), by_status("completed"));
    let rang_ms = (stamp(&answered) - stamp(&ringing)).num_milliseconds();
    assert!((450..1200).contains(&rang_ms), "answered {rang_ms} ms after ringing (rings 500 ms; the hold was blocked 2 s)");
    assert!(stamp(&answered) < held_until, "answered is stamped before the hold was taken");
    let talked_ms = (stamp(&completed) - stamp(&answered)).num_milliseconds();
    assert!((200..1000).contains(&talked_ms), "completed {talked_ms} ms after answered (the callee hung up after 250 ms)");
    assert_eq!(completed["disconnected_by"], "user");
    let duration: i64 = completed["duration"].as_str().unwrap().parse().unwrap();
    assert!((5..=6).contains(&duration), "the callee hung up 5 simulated s after answering: {duration}");
    assert_eq!(completed["start_time"], answered["timestamp"]);
    assert_eq!(completed["end_time"], completed["timestamp"]);
}
