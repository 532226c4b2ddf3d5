//! Audio on SIP calls (the media engine): asserted at a real callee (baresip) or from a SIPp
//! trunk playing RFC 2833 packets, never from our own logs.

mod common;

use common::baresip::Baresip;
use common::receiver::Receiver;
use common::sipp::Sipp;
use common::{Options, TestApp};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;

fn sip_settings(settings: &mut outdial::config::Settings) {
    settings.carrier.kind = "sip".into();
    settings.sip.listen = "127.0.0.1:0".into();
    settings.sip.tcp = false;
    settings.sip.allow_private_uris = true;
}

async fn sip_app(pool: PgPool) -> (TestApp, Receiver) {
    let events = Receiver::start().await;
    let options = Options { roles: vec!["api", "workers", "webhooks"], time_scale: 1.0, settings: sip_settings, ..Options::default() };
    let app = common::spawn_app_with(pool, options).await;
    sqlx::query("UPDATE applications SET event_url = $1").bind(events.url("/events")).execute(&app.pool).await.unwrap();
    (app, events)
}

fn call_to(uri: &str, ncco: Value) -> Value {
    json!({"to": [{"type": "sip", "uri": uri}], "from": {"type": "phone", "number": "447700900001"}, "ncco": ncco})
}

/// Keys the callee presses (RFC 2833 packets from SIPp: 1, 2, 3, #) reach `input`.
#[sqlx::test]
async fn the_callees_rfc2833_keys_reach_input(pool: PgPool) {
    if !Sipp::available() || !common::sipp::can_play_pcap() {
        return;
    }
    let mut trunk = Sipp::uas_media("uas_answer_dtmf_pcap.xml", &[]);
    let (app, events) = sip_app(pool).await;
    let ncco = json!([{"action": "input", "type": ["dtmf"], "dtmf": {"maxDigits": 8, "submitOnHash": true, "timeOut": 8},
                       "eventUrl": [events.url("/input")]}]);
    let uuid = app.place(&call_to(&format!("sip:trunk@{}", trunk.address()), ncco)).await;
    let input = events.wait_for("/input", |r| !r.is_empty()).await;
    assert_eq!(input[0].body["dtmf"]["digits"], "123", "{:?}", input[0].body);
    assert_eq!(input[0].body["dtmf"]["timed_out"], false);
    events.wait_status("/events", &uuid, "completed").await;
    let (code, log) = trunk.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{log}");
    app.stop().await;
}

/// Keys a real softphone presses reach `input`.
#[sqlx::test]
async fn a_softphones_keys_reach_input(pool: PgPool) {
    if !Baresip::available() {
        return;
    }
    let callee = Baresip::callee("agent", None);
    let (app, events) = sip_app(pool).await;
    let ncco = json!([{"action": "input", "type": ["dtmf"], "dtmf": {"maxDigits": 3, "timeOut": 10}, "eventUrl": [events.url("/input")]}]);
    let uuid = app.place(&call_to(&callee.uri(), ncco)).await;
    callee.wait_established(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    callee.send_dtmf("47*").await;
    let input = events.wait_for("/input", |r| !r.is_empty()).await;
    assert_eq!(input[0].body["dtmf"]["digits"], "47*", "{:?}", input[0].body);
    events.wait_status("/events", &uuid, "completed").await;
    app.stop().await;
}

/// `PUT /v1/calls/{uuid}/dtmf` goes out as RFC 4733 events the softphone decodes.
#[sqlx::test]
async fn api_dtmf_is_decoded_by_the_softphone(pool: PgPool) {
    if !Baresip::available() {
        return;
    }
    let callee = Baresip::callee("agent", None);
    let (app, events) = sip_app(pool).await;
    let ncco = json!([{"action": "talk", "text": "please hold", "loop": 0}]);
    let uuid = app.place(&call_to(&callee.uri(), ncco)).await;
    events.wait_status("/events", &uuid, "answered").await;
    callee.wait_established(Duration::from_secs(10)).await;
    let response = app.put_json(&format!("/v1/calls/{uuid}/dtmf"), &json!({"digits": "19#"})).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let heard = callee.wait_dtmf(3, Duration::from_secs(10)).await;
    assert_eq!(heard, "19#");
    app.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": "hangup"})).await;
    events.wait_status("/events", &uuid, "completed").await;
    app.stop().await;
}

/// A 16 kHz WAV of `seconds` of `freq` Hz, as a customer's server would serve it.
fn tone_wav(freq: f64, seconds: f64) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("outdial-tone-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tone.wav");
    common::audio::write_tone_wav(&path, freq, seconds, 16_000);
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

/// A `stream` of a 1 kHz tone (16 kHz WAV, resampled to 8 kHz) arrives at the softphone as
/// a 1 kHz tone of the file's length.
#[sqlx::test]
async fn a_streamed_tone_is_heard_by_the_softphone(pool: PgPool) {
    if !Baresip::available() {
        return;
    }
    let callee = Baresip::callee("agent", None);
    let (app, events) = sip_app(pool).await;
    events.respond_bytes("/tone.wav", 200, &tone_wav(1000.0, 2.0));
    let ncco = json!([{"action": "stream", "streamUrl": [events.url("/tone.wav")]}]);
    let uuid = app.place(&call_to(&callee.uri(), ncco)).await;
    events.wait_status("/events", &uuid, "completed").await;
    callee.wait_hangup(Duration::from_secs(10)).await;
    let (heard, rate) = callee.heard().await;
    let spans = common::audio::tone_spans(&heard, rate, 1000.0, 0.5);
    let longest = common::audio::longest_span_ms(&spans);
    assert!((1900..=2100).contains(&longest), "a 2 s tone, heard as {spans:?}");
    assert!(common::audio::tone_spans(&heard, rate, 440.0, 0.5).is_empty(), "nothing else");
    app.stop().await;
}

/// A `talk` is synthesized (espeak-ng) and arrives as speech: non-silent audio of a sentence's
/// length, and no pure tone.
#[sqlx::test]
async fn a_talk_is_heard_as_speech(pool: PgPool) {
    if !Baresip::available() {
        return;
    }
    let callee = Baresip::callee("agent", None);
    let (app, events) = sip_app(pool).await;
    let ncco = json!([{"action": "talk", "text": "Your parcel will arrive tomorrow between nine and eleven", "language": "en-GB"}]);
    let uuid = app.place(&call_to(&callee.uri(), ncco)).await;
    events.wait_status("/events", &uuid, "completed").await;
    callee.wait_hangup(Duration::from_secs(10)).await;
    let (heard, rate) = callee.heard().await;
    let voiced = common::audio::non_silent_ms(&heard, rate, 300.0);
    assert!((1500..=6000).contains(&voiced), "speech-length audio: {voiced} ms non-silent of {} ms", heard.len() as u64 * 1000 / rate as u64);
    assert!(common::audio::longest_span_ms(&common::audio::tone_spans(&heard, rate, 1000.0, 0.8)) < 200, "speech, not a tone");
    let completed = events.requests("/events").into_iter().find(|e| e.body["uuid"] == uuid && e.body["status"] == "completed").unwrap();
    let duration: u64 = completed.body["duration"].as_str().unwrap().parse().unwrap();
    assert!((2..=6).contains(&duration), "the call lasted as long as the speech: {duration} s");
    app.stop().await;
}
