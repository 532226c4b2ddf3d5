//! `input`: collect DTMF and/or speech, post the result to eventUrl, run the NCCO it answers.

use super::{next, notify::post_for_ncco, stop_background_playback, Flow, Signal};
use crate::calls::format_time;
use crate::carrier::CarrierEvent;
use crate::engine::leg::{Leg, Step};
use crate::engine::store::Change;
use crate::ncco::Input;
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
    let mut deadline = leg.ctx.clock.deadline(first_wait);
    let mut digits = String::new();
    let mut speech: Option<String> = None;
    let mut submitted = false;
    'collect: loop {
        // Keys pressed before this input started (during a bargeIn prompt) count first.
        while let Some(key) = leg.pending_dtmf.pop_front().filter(|_| input.dtmf_enabled) {
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
            Signal::Event(_) | Signal::Audio(_) => {}
            Signal::Deadline => break,
        }
    }
    leg.pending_dtmf.clear();
    let ts = format_time(chrono::Utc::now());
    let dtmf_result = if input.dtmf_enabled {
        json!({"digits": if digits.is_empty() { Value::Null } else { json!(digits) }, "timed_out": !submitted && speech.is_none()})
    } else {
        Value::Null
    };
    let speech_result = if input.speech_enabled {
        match (&speech, digits.is_empty()) {
            (Some(text), _) => json!({"results": [{"text": text, "confidence": "0.9"}], "timeout_reason": "end_on_silence_timeout"}),
            (None, false) => json!({"results": [], "error": "Speech overridden by DTMF"}),
            (None, true) => json!({"results": [], "timeout_reason": "start_timeout"}),
        }
    } else {
        json!({"results": [], "error": "Speech was not enabled"})
    };
    let payload = json!({
        "from": leg.from, "to": leg.to, "uuid": leg.row.uuid, "conversation_uuid": leg.row.conversation_uuid,
        "timestamp": ts, "dtmf": dtmf_result, "speech": speech_result,
    });
    post_for_ncco(leg, "input", payload, url, &method).await
}
