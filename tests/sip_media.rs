//! Audio on SIP calls (the media engine): asserted at a real callee (baresip) or from a SIPp
//! trunk playing RFC 2833 packets, never from our own logs.

mod common;

use common::baresip::Baresip;
use common::sipp::Sipp;
use common::TestApp;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;

use common::sip_app::{call_to, start as sip_app, start_with as sip_app_with, TempDir};
use common::vosk::VoskServer;

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

/// An 8 kHz WAV of `seconds` of `freq` Hz in a temporary directory, for baresip to play.
fn callee_tone(freq: f64, seconds: f64) -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new();
    let path = dir.tone_wav("callee.wav", freq, seconds);
    (dir, path)
}

/// The recording a `record` event points at: its bytes, fetched as the application.
async fn fetch_recording(app: &TestApp, event: &Value) -> (Vec<u8>, String) {
    let url = event["recording_url"].as_str().unwrap();
    let path = url::Url::parse(url).unwrap().path().to_string();
    let response = app.get(&path).await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    let bytes = response.bytes().await.unwrap().to_vec();
    assert_eq!(bytes.len() as u64, event["size"].as_u64().unwrap(), "size is the file's");
    (bytes, content_type)
}

/// Channel `channel` of a WAV file's 16-bit samples, and its rate.
fn wav_channel(bytes: &[u8], channel: usize) -> (Vec<i16>, u32, u16) {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).unwrap();
    let spec = reader.spec();
    let samples: Vec<i16> = reader.into_samples::<i16>().map(Result::unwrap).collect();
    let lane = samples.iter().skip(channel).step_by(spec.channels as usize).copied().collect();
    (lane, spec.sample_rate, spec.channels)
}

fn seconds_between(event: &Value, from: &str, to: &str) -> f64 {
    let time = |key: &str| chrono::DateTime::parse_from_rfc3339(event[key].as_str().unwrap()).unwrap();
    (time(to) - time(from)).num_milliseconds() as f64 / 1000.0
}

/// A split recording holds what the callee said (its 1 kHz tone) in channel 1 and what it
/// heard (our 440 Hz stream) in channel 2, each without the other, at 16 kHz.
#[sqlx::test]
async fn a_split_recording_holds_each_direction_in_its_channel(pool: PgPool) {
    if !Baresip::available() {
        return;
    }
    let (_dir, wav) = callee_tone(1000.0, 3.0);
    let callee = Baresip::callee("agent", Some(&wav));
    let (app, events) = sip_app(pool).await;
    events.respond_bytes("/tone.wav", 200, &tone_wav(440.0, 2.0));
    let ncco = json!([
        {"action": "record", "split": "conversation", "format": "wav", "eventUrl": [events.url("/record")]},
        {"action": "stream", "streamUrl": [events.url("/tone.wav")]},
        {"action": "wait", "timeout": 1}
    ]);
    let uuid = app.place(&call_to(&callee.uri(), ncco)).await;
    let record = events.wait_for("/record", |r| !r.is_empty()).await[0].body.clone();
    assert_eq!((record["uuid"].as_str(), record["format"].as_str()), (Some(uuid.as_str()), Some("wav")));
    let (bytes, content_type) = fetch_recording(&app, &record).await;
    assert_eq!(content_type, "audio/wav");
    let (said, rate, channels) = wav_channel(&bytes, 0);
    let (heard, _, _) = wav_channel(&bytes, 1);
    assert_eq!((rate, channels), (16_000, 2));
    let said_tone = common::audio::longest_span_ms(&common::audio::tone_spans(&said, rate, 1000.0, 0.5));
    let heard_tone = common::audio::longest_span_ms(&common::audio::tone_spans(&heard, rate, 440.0, 0.5));
    assert!((2500..=3100).contains(&said_tone), "the callee's 3 s tone in channel 1: {said_tone} ms");
    assert!((1900..=2100).contains(&heard_tone), "our 2 s stream in channel 2: {heard_tone} ms");
    assert!(common::audio::tone_spans(&said, rate, 440.0, 0.5).is_empty(), "channel 1 holds only what the callee said");
    assert!(common::audio::tone_spans(&heard, rate, 1000.0, 0.5).is_empty(), "channel 2 holds only what it heard");
    let seconds = seconds_between(&record, "start_time", "end_time");
    assert!((2.8..=4.0).contains(&seconds), "the recording spans the call's 3 s: {seconds}");
    events.wait_status("/events", &uuid, "completed").await;
    app.stop().await;
}

/// Vonage's default format: an MP3 (16 kHz, 32 kbit/s) of both directions mixed, which decodes
/// back to the callee's tone.
#[sqlx::test]
async fn a_default_recording_is_an_mp3_of_the_call(pool: PgPool) {
    if !Baresip::available() {
        return;
    }
    let (_dir, wav) = callee_tone(1000.0, 2.0);
    let callee = Baresip::callee("agent", Some(&wav));
    let (app, events) = sip_app(pool).await;
    let ncco = json!([{"action": "record", "eventUrl": [events.url("/record")]}, {"action": "wait", "timeout": 3}]);
    let uuid = app.place(&call_to(&callee.uri(), ncco)).await;
    let record = events.wait_for("/record", |r| !r.is_empty()).await[0].body.clone();
    assert_eq!(record["format"], "mp3");
    let (bytes, content_type) = fetch_recording(&app, &record).await;
    assert_eq!(content_type, "audio/mpeg");
    let decoded = outdial::media::decode::decode(bytes, &Default::default()).expect("a playable MP3");
    let spans = common::audio::tone_spans(decoded.samples(), 8000, 1000.0, 0.5);
    let longest = common::audio::longest_span_ms(&spans);
    assert!((1700..=2200).contains(&longest), "the callee's 2 s tone: {spans:?}");
    events.wait_status("/events", &uuid, "completed").await;
    app.stop().await;
}

/// `endOnSilence` ends a voicemail recording on measured silence: the callee's 2 s tone, then
/// 3 s of quiet, and the NCCO goes on. `beepStart` plays a real beep first.
#[sqlx::test]
async fn end_on_silence_ends_on_real_silence_after_a_beep(pool: PgPool) {
    if !Baresip::available() {
        return;
    }
    let (_dir, wav) = callee_tone(440.0, 2.0);
    let callee = Baresip::callee("agent", Some(&wav));
    let (app, events) = sip_app(pool).await;
    let ncco = json!([
        {"action": "record", "endOnSilence": 3, "beepStart": true, "format": "wav", "timeOut": 30, "eventUrl": [events.url("/record")]},
        {"action": "notify", "payload": {"after": "record"}, "eventUrl": [events.url("/after")]}
    ]);
    let uuid = app.place(&call_to(&callee.uri(), ncco)).await;
    let record = events.wait_for("/record", |r| !r.is_empty()).await[0].body.clone();
    events.wait_for("/after", |r| !r.is_empty()).await;
    let seconds = seconds_between(&record, "start_time", "end_time");
    // The beep (0.4 s) came first: ~1.6 s of tone were left, then 3 s of silence.
    assert!((4.0..=5.8).contains(&seconds), "ended 3 s after the tone: {seconds} s");
    let (bytes, _) = fetch_recording(&app, &record).await;
    let (said, rate, _) = wav_channel(&bytes, 0);
    let tone = common::audio::longest_span_ms(&common::audio::tone_spans(&said, rate, 440.0, 0.5));
    assert!((1200..=2000).contains(&tone), "the tone after the beep: {tone} ms");
    events.wait_status("/events", &uuid, "completed").await;
    callee.wait_hangup(Duration::from_secs(10)).await;
    let (heard, rate) = callee.heard().await;
    let beep = common::audio::tone_spans(&heard, rate, 1000.0, 0.5);
    assert!((300..=500).contains(&common::audio::longest_span_ms(&beep)), "one 400 ms beep: {beep:?}");
    app.stop().await;
}

/// Mute silences what the callee says (in our recording), earmuff what it hears (at the
/// callee), each only while it is on.
#[sqlx::test]
async fn mute_and_earmuff_silence_their_direction(pool: PgPool) {
    if !Baresip::available() {
        return;
    }
    let (_dir, wav) = callee_tone(1000.0, 10.0);
    let callee = Baresip::callee("agent", Some(&wav));
    let (app, events) = sip_app(pool).await;
    events.respond_bytes("/tone.wav", 200, &tone_wav(440.0, 1.0));
    let ncco = json!([
        {"action": "record", "split": "conversation", "format": "wav", "eventUrl": [events.url("/record")]},
        {"action": "stream", "streamUrl": [events.url("/tone.wav")], "loop": 0}
    ]);
    let uuid = app.place(&call_to(&callee.uri(), ncco)).await;
    events.wait_status("/events", &uuid, "answered").await;
    let put = |action: &'static str| {
        let (app, uuid) = (&app, uuid.clone());
        async move {
            let response = app.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": action})).await;
            assert_eq!(response.status(), 204, "{action}: {:?}", response.text().await);
        }
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    put("mute").await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    put("unmute").await;
    put("earmuff").await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    put("unearmuff").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    put("hangup").await;
    let record = events.wait_for("/record", |r| !r.is_empty()).await[0].body.clone();
    let (bytes, _) = fetch_recording(&app, &record).await;
    let (said, rate, _) = wav_channel(&bytes, 0);
    let said_spans = common::audio::tone_spans(&said, rate, 1000.0, 0.5);
    assert_gap(&said_spans, "what the callee said, muted");
    callee.wait_hangup(Duration::from_secs(10)).await;
    let (heard, rate) = callee.heard().await;
    let heard_spans = common::audio::tone_spans(&heard, rate, 440.0, 0.5);
    assert_gap(&heard_spans, "what the callee heard, earmuffed");
    // The other direction went on: the callee kept hearing us while muted, and we kept hearing
    // it while it was earmuffed.
    assert!(common::audio::longest_span_ms(&heard_spans) >= 2800, "heard while muted: {heard_spans:?}");
    assert!(common::audio::longest_span_ms(&said_spans) >= 2800, "said while earmuffed: {said_spans:?}");
    events.wait_status("/events", &uuid, "completed").await;
    app.stop().await;
}

/// Tone before and after one silent gap of about two seconds.
fn assert_gap(spans: &[(u32, u32)], what: &str) {
    let gaps: Vec<u32> = spans.windows(2).map(|w| w[1].0 - w[0].1).filter(|&gap| gap > 300).collect();
    assert_eq!(gaps.len(), 1, "{what}: one gap in {spans:?}");
    assert!((1500..=2600).contains(&gaps[0]), "{what}: a gap of ~2 s, not {} ms ({spans:?})", gaps[0]);
}

/// Early media (183 with SDP) is heard before the answer: the trunk's announcement is measured
/// on the audio and reported in the call's `sip` object.
#[sqlx::test]
async fn early_media_is_heard_before_the_answer(pool: PgPool) {
    if !Sipp::available() || !common::sipp::can_play_pcap() {
        return;
    }
    let mut trunk = Sipp::uas_media("uas_early_media.xml", &[("early_ms", "3000")]);
    let (app, events) = sip_app(pool).await;
    let ncco = json!([{"action": "wait", "timeout": 1}]);
    let uuid = app.place(&call_to(&format!("sip:trunk@{}", trunk.address()), ncco)).await;
    events.wait_status("/events", &uuid, "completed").await;
    let (code, log) = trunk.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{log}");
    let call: Value = app.get(&format!("/v1/calls/{uuid}")).await.json().await.unwrap();
    let early = call["sip"]["early_media_ms"].as_u64().unwrap_or_else(|| panic!("no early media in {}", call["sip"]));
    assert!((1000..=3100).contains(&early), "speech heard in the 3 s before the answer: {early} ms");
    assert_eq!(call["sip"]["codec"], "PCMA");
    app.stop().await;
}

/// What a callee says, synthesized by espeak-ng (8 kHz), then `after` of silence, then a beep
/// of `beep_hz` for 500 ms if given; written where baresip can play it.
async fn greeting_wav(dir: &TempDir, text: &str, after: Duration, beep_hz: Option<f64>) -> std::path::PathBuf {
    spoken_wav(dir, Duration::from_millis(200), text, after, beep_hz).await
}

/// As `greeting_wav`, after `lead` of silence.
async fn spoken_wav(dir: &TempDir, lead: Duration, text: &str, after: Duration, beep_hz: Option<f64>) -> std::path::PathBuf {
    use outdial::media::tts::{EspeakNg, TextToSpeech, Voice};
    let espeak = EspeakNg::new("espeak-ng", Duration::from_secs(10), Duration::from_secs(60));
    let speech = espeak.synthesize(text, &Voice::new(Some("en-US"), None)).await.unwrap();
    let mut samples = vec![0i16; (lead.as_secs_f64() * 8000.0) as usize];
    samples.extend_from_slice(speech.samples());
    samples.extend(std::iter::repeat(0).take((after.as_secs_f64() * 8000.0) as usize));
    if let Some(hz) = beep_hz {
        samples.extend(common::audio::tone(hz, 0.5, 8000));
    }
    let path = dir.path().join("greeting.wav");
    common::audio::write_wav(&path, &samples, 8000);
    path
}

/// Advanced machine detection on real audio: a voicemail greeting is a machine, and its beep
/// (850 Hz, after the greeting) is found: `machine`, then `machine` with `beep_start`.
#[sqlx::test]
async fn a_voicemail_greeting_and_its_beep_are_detected(pool: PgPool) {
    if !Baresip::available() {
        return;
    }
    let dir = TempDir::new();
    let text = "Hello, you have reached the voicemail of Jane Smith. I cannot take your call right now, please leave a message after the tone.";
    let wav = greeting_wav(&dir, text, Duration::from_millis(700), Some(850.0)).await;
    let callee = Baresip::callee("voicemail", Some(&wav));
    let (app, events) = sip_app(pool).await;
    let mut body = call_to(&callee.uri(), json!([{"action": "talk", "text": "after the beep"}]));
    body["advanced_machine_detection"] = json!({"behavior": "continue", "mode": "detect_beep", "beep_timeout": 45});
    let uuid = app.place(&body).await;
    let machine = events.wait_for("/events", |r| r.iter().filter(|e| e.body["status"] == "machine").count() >= 2).await;
    let machine: Vec<&Value> = machine.iter().map(|e| &e.body).filter(|b| b["status"] == "machine").collect();
    assert_eq!(machine[0]["sub_state"], Value::Null, "{machine:?}");
    assert_eq!(machine[1]["sub_state"], "beep_start", "{machine:?}");
    assert!(events.requests("/events").iter().all(|e| e.body["status"] != "human"));
    // The beep came after the greeting (some 7 s of speech), not on a word of it.
    let answered = events.requests("/events").into_iter().find(|e| e.body["status"] == "answered").unwrap();
    let at = |b: &Value| chrono::DateTime::parse_from_rfc3339(b["timestamp"].as_str().unwrap()).unwrap();
    let beep_after = (at(machine[1]) - at(&answered.body)).num_milliseconds();
    assert!(beep_after > 4000, "beep_start {beep_after} ms after the answer");
    events.wait_status("/events", &uuid, "completed").await;
    app.stop().await;
}

/// Standard machine detection: a person saying "Hello?" and waiting is `human`.
#[sqlx::test]
async fn a_short_hello_is_a_human(pool: PgPool) {
    if !Baresip::available() {
        return;
    }
    let dir = TempDir::new();
    let wav = greeting_wav(&dir, "Hello?", Duration::from_secs(5), None).await;
    let callee = Baresip::callee("person", Some(&wav));
    let (app, events) = sip_app(pool).await;
    let mut body = call_to(&callee.uri(), json!([{"action": "talk", "text": "this is your reminder"}]));
    body["machine_detection"] = json!("continue");
    let uuid = app.place(&body).await;
    let human = events.wait_for("/events", |r| r.iter().any(|e| e.body["status"] == "human" || e.body["status"] == "machine")).await;
    let verdict = human.iter().find(|e| e.body["status"] == "human" || e.body["status"] == "machine").unwrap();
    assert_eq!(verdict.body["status"], "human", "{:?}", verdict.body);
    events.wait_status("/events", &uuid, "completed").await;
    app.stop().await;
}

/// Speech `input` on real audio: the callee's spoken words go to a speech server (Vosk protocol;
/// the PocketSphinx test server) and come back as Vonage's `speech.results`.
#[sqlx::test]
async fn spoken_words_reach_input_through_the_speech_server(pool: PgPool) {
    if !Baresip::available() || !VoskServer::available() {
        return;
    }
    let server = VoskServer::start();
    let dir = TempDir::new();
    let wav = spoken_wav(&dir, Duration::from_secs(1), "yes please", Duration::from_secs(4), None).await;
    let callee = Baresip::callee("caller", Some(&wav));
    let url = server.url().to_string();
    let (app, events) = sip_app_with(pool, move |s| s.media.speech_url = url).await;
    let speech = json!({"language": "en-US", "endOnSilence": 1, "context": ["yes please", "no thanks", "operator", "hello world"]});
    let ncco = json!([{"action": "input", "type": ["speech"], "speech": speech, "eventUrl": [events.url("/input")]}]);
    let uuid = app.place(&call_to(&callee.uri(), ncco)).await;
    let input = events.wait_for("/input", |r| !r.is_empty()).await[0].body.clone();
    assert_eq!(input["speech"]["results"][0]["text"], "yes please", "{input}\n{}", server.log());
    assert_eq!(input["speech"]["timeout_reason"], "end_on_silence_timeout", "{input}");
    assert!(input["speech"].get("error").is_none(), "{input}");
    events.wait_status("/events", &uuid, "completed").await;
    app.stop().await;
}

/// Without a speech server configured, a speech input on a real call says so at once.
#[sqlx::test]
async fn speech_input_without_a_recognizer_reports_the_error(pool: PgPool) {
    if !Baresip::available() {
        return;
    }
    let callee = Baresip::callee("caller", None);
    let (app, events) = sip_app(pool).await;
    let ncco = json!([{"action": "input", "type": ["speech"], "speech": {"startTimeout": 10}, "eventUrl": [events.url("/input")]}]);
    let started = std::time::Instant::now();
    let uuid = app.place(&call_to(&callee.uri(), ncco)).await;
    let input = events.wait_for("/input", |r| !r.is_empty()).await[0].body.clone();
    assert!(input["speech"]["error"].as_str().unwrap_or_default().contains("media.speech_url"), "{input}");
    assert!(started.elapsed() < Duration::from_secs(8), "not after startTimeout: {:?}", started.elapsed());
    events.wait_status("/events", &uuid, "completed").await;
    app.stop().await;
}
