//! `input`: collect DTMF and/or speech, post the result to eventUrl, run the NCCO it answers.

use super::{next, notify::post_for_ncco, stop_background_playback, Flow, Signal};
use crate::calls::format_time;
use crate::carrier::CarrierEvent;
use crate::engine::audio_tasks::{AudioEvent, SpeechCapture, SpeechOutcome, SpeechRules};
use crate::engine::leg::{Leg, Step};
use crate::engine::store::Change;
use crate::ncco::{Input, SpeechSettings};
use crate::speech::RecognitionOptions;
use serde_json::{json, Value};
use std::time::Duration;

/// Every key the callee presses passes here: it stops bargeIn prompts, waits for the next
/// input, and streams to an asynchronous input's eventUrl, stamped when it was pressed.
pub async fn on_key(leg: &mut Leg, key: char, pressed: chrono::DateTime<chrono::Utc>) -> Step<()> {
    stop_background_playback(leg);
    leg.pending_dtmf.push_back(key);
    if let Some((url, method)) = leg.async_dtmf.clone() {
        leg.pending_dtmf.clear();
        let ts = format_time(pressed);
        let payload = json!({
            "from": leg.from, "to": leg.to, "uuid": leg.row.uuid, "conversation_uuid": leg.row.conversation_uuid,
            "timestamp": ts, "dtmf": {"digit": key.to_string(), "digits": key.to_string()}, "mode": "asynchronous",
        });
        let event = leg.event_to("input", payload, Some(url), &method, "pending");
        leg.write(Change { events: vec![event], ..Default::default() }).await?;
    }
    Ok(())
}

pub async fn input(leg: &mut Leg, input: &Input) -> Step<Flow> {
    let (url, method) = match &input.event {
        Some(hook) => (Some(hook.url.clone()), hook.method.clone()),
        None => (leg.row.event_url.clone(), leg.row.event_method.clone()),
    };
    if input.asynchronous {
        leg.async_dtmf = url.map(|u| (u, method));
        return Ok(Flow::Next);
    }
    let dtmf = &input.dtmf;
    let key_timeout = Duration::from_secs(u64::from(dtmf.time_out_s.max(1)));
    let speech_timeout = input.speech.as_ref().map(|s| Duration::from_secs(u64::from(s.start_timeout_s)));
    let first_wait = match (input.dtmf_enabled, speech_timeout) {
        (true, Some(s)) => s.max(key_timeout),
        (false, Some(s)) => s,
        _ => key_timeout,
    };
    // On real audio a recognizer listens (and times the speech itself); on the simulated
    // network the callee's speech events answer.
    let (mut capture, speech_error) = match (input.speech_enabled, leg.media.clone(), &input.speech) {
        (true, Some(tap), Some(settings)) => match leg.ctx.speech.clone() {
            Some(recognizer) => (Some(SpeechCapture::start(&tap, recognizer, speech_rules(settings), leg.audio_events.sender())), None),
            None => (None, Some(NO_RECOGNIZER)),
        },
        _ => (None, None),
    };
    let first_wait = match (&capture, &input.speech) {
        (Some(_), Some(s)) => Duration::from_secs(u64::from(s.start_timeout_s + s.max_duration_s)) + RECOGNIZER_GRACE,
        // Nothing can answer speech: only keys are waited for (none: the input ends at once).
        _ if speech_error.is_some() && !input.dtmf_enabled => Duration::ZERO,
        _ if speech_error.is_some() => key_timeout,
        _ => first_wait,
    };
    let mut deadline = leg.ctx.clock.deadline(first_wait);
    let mut digits = String::new();
    let mut speech: Option<String> = None;
    let mut heard: Option<SpeechOutcome> = None;
    let mut submitted = false;
    'collect: loop {
        // Keys pressed before this input started (during a bargeIn prompt) count first.
        while let Some(key) = leg.pending_dtmf.pop_front().filter(|_| input.dtmf_enabled) {
            // DTMF overrides speech.
            capture = None;
            if key == '#' && dtmf.submit_on_hash {
                submitted = true;
                break 'collect;
            }
            digits.push(key);
            deadline = leg.ctx.clock.deadline(key_timeout);
            if digits.len() >= dtmf.max_digits as usize {
                submitted = true;
                break 'collect;
            }
        }
        match next(leg, Some(deadline)).await? {
            Signal::Event(CarrierEvent::Speech(text)) if input.speech_enabled && digits.is_empty() => {
                speech = Some(text);
                break;
            }
            Signal::Audio(AudioEvent::Speech(outcome)) if capture.is_some() && digits.is_empty() => {
                heard = Some(outcome);
                break;
            }
            Signal::Event(_) | Signal::Audio(_) => {}
            Signal::Deadline => break,
        }
    }
    drop(capture);
    leg.pending_dtmf.clear();
    let ts = format_time(chrono::Utc::now());
    let answered_by_speech = speech.is_some() || matches!(heard, Some(SpeechOutcome::Heard { .. }));
    let dtmf_result = if input.dtmf_enabled {
        json!({"digits": if digits.is_empty() { Value::Null } else { json!(digits) }, "timed_out": !submitted && !answered_by_speech})
    } else {
        Value::Null
    };
    let speech_result = if !input.speech_enabled {
        json!({"results": [], "error": "Speech was not enabled"})
    } else if !digits.is_empty() {
        json!({"results": [], "error": "Speech overridden by DTMF"})
    } else if let Some(error) = speech_error {
        json!({"results": [], "error": error})
    } else {
        match (heard, speech) {
            (Some(SpeechOutcome::Heard { results, timeout_reason }), _) => {
                let results: Vec<Value> =
                    results.iter().map(|t| json!({"text": t.text, "confidence": format!("{:.2}", t.confidence)})).collect();
                json!({"results": results, "timeout_reason": timeout_reason})
            }
            (Some(SpeechOutcome::Failed(error)), _) => json!({"results": [], "error": error}),
            (Some(SpeechOutcome::NothingSaid), _) | (None, None) => json!({"results": [], "timeout_reason": "start_timeout"}),
            (None, Some(text)) => json!({"results": [{"text": text, "confidence": "0.9"}], "timeout_reason": "end_on_silence_timeout"}),
        }
    };
    let payload = json!({
        "from": leg.from, "to": leg.to, "uuid": leg.row.uuid, "conversation_uuid": leg.row.conversation_uuid,
        "timestamp": ts, "dtmf": dtmf_result, "speech": speech_result,
    });
    post_for_ncco(leg, "input", payload, url, &method).await
}

/// `speech.error` when a speech input runs on real audio with no recognizer configured.
const NO_RECOGNIZER: &str = "speech recognition is not configured: set media.speech_url to a speech server (Vosk protocol)";
/// Beyond startTimeout + maxDuration: connecting, and the recognizer's final result.
const RECOGNIZER_GRACE: Duration = Duration::from_secs(10);

fn speech_rules(settings: &SpeechSettings) -> SpeechRules {
    SpeechRules {
        options: RecognitionOptions { language: settings.language.clone(), context: settings.context.clone() },
        start_timeout: Duration::from_secs(u64::from(settings.start_timeout_s)),
        end_on_silence: Duration::from_secs_f64(settings.end_on_silence_s.clamp(0.4, 10.0)),
        max_duration: Duration::from_secs(u64::from(settings.max_duration_s)),
    }
}
