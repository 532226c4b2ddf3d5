//! Connected audio on SIP calls: a `connect` bridges two real callees (baresip), asserted on
//! what each of them heard.

mod common;

use common::baresip::{Baresip, Options as PhoneOptions};
use common::sipp::Sipp;
use common::sip_app::{call_to, start as sip_app, TempDir};
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;

/// The first callee (PCMU, playing 1 kHz) hears ringback while the second rings, then the
/// second callee's 700 Hz tone; the second (PCMA only: transcoded) hears the 1 kHz tone.
#[sqlx::test]
async fn connect_bridges_two_callees_both_ways_after_ringback(pool: PgPool) {
    if !Baresip::available() {
        return;
    }
    let dir = TempDir::new();
    let caller = Baresip::start(PhoneOptions {
        play: Some(dir.tone_wav("caller.wav", 1000.0, 20.0)),
        codecs: "PCMU".into(),
        ..PhoneOptions::new("caller")
    });
    let agent = Baresip::start(PhoneOptions {
        play: Some(dir.tone_wav("agent.wav", 700.0, 20.0)),
        codecs: "PCMA".into(),
        auto_answer: false,
        ..PhoneOptions::new("agent")
    });
    let (app, events) = sip_app(pool).await;
    let ncco = json!([{"action": "connect", "endpoint": [{"type": "sip", "uri": agent.uri()}], "eventUrl": [events.url("/agent")]}]);
    let uuid = app.place(&call_to(&caller.uri(), ncco)).await;
    agent.wait_event("CALL_INCOMING", 1, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    agent.answer().await;
    events.wait_for("/agent", |r| r.iter().any(|e| e.body["status"] == "answered")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    agent.hangup().await;
    events.wait_status("/events", &uuid, "completed").await;
    caller.wait_hangup(Duration::from_secs(10)).await;
    agent.wait_hangup(Duration::from_secs(10)).await;

    let (heard, rate) = caller.heard().await;
    let ringback = common::audio::tone_spans(&heard, rate, 440.0, 0.3);
    assert!((1800..=2100).contains(&common::audio::longest_span_ms(&ringback)), "a 2 s ringback burst: {ringback:?}");
    let agent_voice = common::audio::longest_span_ms(&common::audio::tone_spans(&heard, rate, 700.0, 0.5));
    assert!(agent_voice >= 2500, "the caller heard the agent for ~3 s: {agent_voice} ms");
    let (heard, rate) = agent.heard().await;
    let caller_voice = common::audio::longest_span_ms(&common::audio::tone_spans(&heard, rate, 1000.0, 0.5));
    assert!(caller_voice >= 2500, "the agent heard the caller for ~3 s: {caller_voice} ms");
    assert!(common::audio::tone_spans(&heard, rate, 700.0, 0.5).is_empty(), "and not itself");
    app.stop().await;
}

/// A three-member conversation: each member hears the other two and never itself, and a muted
/// member is heard by nobody (it still hears the others).
#[sqlx::test]
async fn conversation_members_hear_the_others_but_not_themselves_nor_the_muted(pool: PgPool) {
    if !Baresip::available() {
        return;
    }
    let dir = TempDir::new();
    let tones = [("alice", 600.0), ("bob", 1000.0), ("carol", 1400.0)];
    let phones: Vec<Baresip> =
        tones.iter().map(|(name, hz)| Baresip::callee(name, Some(&dir.tone_wav(&format!("{name}.wav"), *hz, 30.0)))).collect();
    let (app, events) = sip_app(pool).await;
    let mut uuids = Vec::new();
    for (phone, (name, _)) in phones.iter().zip(tones) {
        let member = json!({"action": "conversation", "name": "standup", "mute": name == "carol"});
        uuids.push(app.place(&call_to(&phone.uri(), json!([member]))).await);
    }
    for uuid in &uuids {
        events.wait_status("/events", uuid, "answered").await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    for uuid in &uuids {
        app.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": "hangup"})).await;
    }
    for (phone, uuid) in phones.iter().zip(&uuids) {
        events.wait_status("/events", uuid, "completed").await;
        phone.wait_hangup(Duration::from_secs(10)).await;
    }
    let heard_ms = |samples: &[i16], rate: u32, hz: f64| common::audio::longest_span_ms(&common::audio::tone_spans(samples, rate, hz, 0.3));
    for (phone, (name, own)) in phones.iter().zip(tones) {
        let (heard, rate) = phone.heard().await;
        for (other, hz) in tones {
            let ms = heard_ms(&heard, rate, hz);
            if hz == own {
                assert_eq!(ms, 0, "{name} does not hear itself");
            } else if other == "carol" {
                assert_eq!(ms, 0, "{name} does not hear carol, who is muted");
            } else {
                assert!(ms >= 2500, "{name} hears {other}: {ms} ms");
            }
        }
    }
    app.stop().await;
}

/// `connect` to a websocket: the server gets `websocket:connected` with the headers, then the
/// callee's 1 kHz tone as 20 ms frames of 16 kHz PCM; the 440 Hz it sends back is heard by the
/// callee; the callee's key arrives as JSON; the server closing ends that leg with
/// `disconnected` (carrying the headers), then `completed`.
#[sqlx::test]
async fn connect_to_a_websocket_streams_the_call_both_ways(pool: PgPool) {
    if !Baresip::available() {
        return;
    }
    let dir = TempDir::new();
    let callee = Baresip::callee("caller", Some(&dir.tone_wav("caller.wav", 1000.0, 20.0)));
    let reply = common::audio::tone(440.0, 2.0, 16_000);
    let (port, received) = common::ws_server::start(reply, Duration::from_secs(5)).await;
    let (app, events) = sip_app(pool).await;
    let endpoint = json!({"type": "websocket", "uri": format!("ws://127.0.0.1:{port}/socket"),
                          "content-type": "audio/l16;rate=16000", "headers": {"app": "demo", "caller": "447700900001"},
                          "authorization": {"type": "custom", "value": "Bearer s3cret"}});
    let ncco = json!([{"action": "connect", "endpoint": [endpoint], "eventUrl": [events.url("/ws")]}]);
    let uuid = app.place(&call_to(&callee.uri(), ncco)).await;
    events.wait_for("/ws", |r| r.iter().any(|e| e.body["status"] == "answered")).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    callee.send_dtmf("5").await;
    events.wait_for("/ws", |r| r.iter().any(|e| e.body["status"] == "completed")).await;
    events.wait_status("/events", &uuid, "completed").await;
    callee.wait_hangup(Duration::from_secs(10)).await;

    let got = std::mem::take(&mut *received.lock().unwrap());
    let first = got.first.clone().expect("a first message");
    assert_eq!(first["event"], "websocket:connected");
    assert_eq!(first["content-type"], "audio/l16;rate=16000");
    assert_eq!(got.authorization.as_deref(), Some("Bearer s3cret"), "custom authorization on the upgrade");
    assert_eq!((first["app"].as_str(), first["caller"].as_str()), (Some("demo"), Some("447700900001")));
    assert!(got.binary_sizes.len() > 150, "frames for the ~5 s the socket was open: {}", got.binary_sizes.len());
    assert!(got.binary_sizes.iter().all(|&n| n == 640), "20 ms of 16 kHz 16-bit each");
    let tone = common::audio::longest_span_ms(&common::audio::tone_spans(&got.samples, 16_000, 1000.0, 0.5));
    assert!(tone >= 3000, "the callee's tone reached the server: {tone} ms");
    assert!(got.texts.iter().any(|t| t["event"] == "websocket:dtmf" && t["digit"] == "5"), "{:?}", got.texts);
    let (heard, rate) = callee.heard().await;
    let reply_heard = common::audio::longest_span_ms(&common::audio::tone_spans(&heard, rate, 440.0, 0.5));
    assert!((1800..=2100).contains(&reply_heard), "the server's 2 s reply, played at its pace: {reply_heard} ms");
    let ws_events = events.requests("/ws");
    let statuses: Vec<&str> = ws_events.iter().filter_map(|e| e.body["status"].as_str()).collect();
    assert_eq!(statuses, ["started", "ringing", "answered", "disconnected", "completed"]);
    let disconnected = ws_events.iter().find(|e| e.body["status"] == "disconnected").unwrap();
    assert_eq!(disconnected.body["headers"], json!({"app": "demo", "caller": "447700900001"}));
    app.stop().await;
}

/// A conversation whose members' legs run on two instances: the first instance mixes it, the
/// second relays its member's voice there and the mix back; each member hears the other.
#[sqlx::test]
async fn a_conversation_spans_two_instances(pool: PgPool) {
    if !Baresip::available() {
        return;
    }
    let dir = TempDir::new();
    let alice = Baresip::callee("alice", Some(&dir.tone_wav("alice.wav", 600.0, 30.0)));
    let bob = Baresip::callee("bob", Some(&dir.tone_wav("bob.wav", 1000.0, 30.0)));
    // The first instance drives one leg at most: the second call goes to the second instance.
    let (app, events) = common::sip_app::start_with(pool.clone(), |s| s.engine.max_live_legs = 1).await;
    let member = json!([{"action": "conversation", "name": "across"}]);
    let first = app.place(&call_to(&alice.uri(), member.clone())).await;
    events.wait_status("/events", &first, "answered").await;
    let second_options = common::Options { roles: vec!["workers"], time_scale: 1.0, settings: common::sip_app::sip_settings, ..Default::default() };
    let (second_instance, _) = common::start_instance(&pool, second_options).await;
    let second = app.place(&call_to(&bob.uri(), member)).await;
    events.wait_status("/events", &second, "answered").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    for uuid in [&first, &second] {
        app.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": "hangup"})).await;
        events.wait_status("/events", uuid, "completed").await;
    }
    alice.wait_hangup(Duration::from_secs(10)).await;
    bob.wait_hangup(Duration::from_secs(10)).await;
    let hears = |samples: &[i16], rate: u32, hz: f64| common::audio::longest_span_ms(&common::audio::tone_spans(samples, rate, hz, 0.5));
    let (heard, rate) = alice.heard().await;
    assert!(hears(&heard, rate, 1000.0) >= 2500, "alice hears bob across instances");
    assert_eq!(hears(&heard, rate, 600.0), 0, "not herself");
    let (heard, rate) = bob.heard().await;
    assert!(hears(&heard, rate, 600.0) >= 2500, "bob hears alice across instances");
    assert_eq!(hears(&heard, rate, 1000.0), 0, "not himself");
    let owners: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT instance_id FROM conversation_rooms").fetch_all(&pool).await.unwrap();
    assert_eq!(owners.len(), 1, "one instance mixes the conversation");
    let relayed: Vec<String> = sqlx::query_scalar(
        "SELECT payload->>'what' FROM events WHERE call_uuid = $1::uuid AND kind = 'media' AND payload->>'what' LIKE '%mixed on another instance%'",
    )
    .bind(&second)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(relayed.len(), 1, "the second call ran on the second instance, through the relay");
    second_instance.stop().await;
    app.stop().await;
}

/// `connect` with `"method": "refer"` (an Outdial extension): a blind transfer by SIP REFER.
/// The far end accepts (202) and reports the target's 200 (NOTIFY): the leg gets a `transfer`
/// event and Outdial hangs up; the rest of the NCCO does not run.
#[sqlx::test]
async fn connect_by_refer_transfers_the_call_out_of_outdial(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let mut trunk = Sipp::uas("uas_refer.xml", &[("refer_to_re", "sip:agent@pbx.example.com")]);
    let (app, events) = sip_app(pool).await;
    let ncco = json!([
        {"action": "connect", "method": "refer", "endpoint": [{"type": "sip", "uri": "sip:agent@pbx.example.com"}]},
        {"action": "notify", "payload": {"after": "refer"}, "eventUrl": [events.url("/after")]}
    ]);
    let uuid = app.place(&call_to(&format!("sip:trunk@{}", trunk.address()), ncco)).await;
    events.wait_status("/events", &uuid, "completed").await;
    let (code, log) = trunk.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{log}");
    let all = events.requests("/events");
    let transfer = all.iter().find(|e| e.body["type"] == "refer").expect("a transfer event");
    assert_eq!((transfer.body["status"].as_str(), transfer.body["to"].as_str()), (Some("transferred"), Some("sip:agent@pbx.example.com")));
    assert!(events.requests("/after").is_empty(), "the call left Outdial: nothing after the connect runs");
    app.stop().await;
}

/// A transfer the target refuses (NOTIFY with 486): the NCCO goes on with its next action.
#[sqlx::test]
async fn a_refused_refer_goes_on_with_the_ncco(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let keys = [("refer_to_re", "sip:agent@pbx.example.com"), ("target_code", "486"), ("target_reason", "Busy Here")];
    let mut trunk = Sipp::uas("uas_refer.xml", &keys);
    let (app, events) = sip_app(pool).await;
    let ncco = json!([
        {"action": "connect", "method": "refer", "endpoint": [{"type": "sip", "uri": "sip:agent@pbx.example.com"}]},
        {"action": "notify", "payload": {"after": "refer"}, "eventUrl": [events.url("/after")]}
    ]);
    let uuid = app.place(&call_to(&format!("sip:trunk@{}", trunk.address()), ncco)).await;
    events.wait_for("/after", |r| !r.is_empty()).await;
    events.wait_status("/events", &uuid, "completed").await;
    let (code, log) = trunk.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{log}");
    assert!(events.requests("/events").iter().all(|e| e.body["type"] != "refer"), "no transfer");
    app.stop().await;
}
