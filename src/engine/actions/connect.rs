//! `connect`: a second outbound leg in the same conversation, dialled through the carrier and
//! bridged to this one. Its status events go to the connect's eventUrl. If it does not connect
//! the NCCO moves on (or, with eventType synchronous, runs the NCCO the event's answer holds).
//! A websocket whose application closes it sends `disconnected` to that eventUrl, then
//! `completed`; an NCCO in the answer to `disconnected` replaces the rest of this one.
//!
//! On real audio the first leg hears ringback (`ringbackTone`, or a generated 440+480 Hz
//! cadence) while the second rings, then each leg hears the other: each one's received frames
//! are a live input of the other's mixer, so PCMU and PCMA legs meet as PCM (transcoded).

use super::notify::post_for_ncco;
use super::{next, Flow};
use crate::carrier::{Media, MediaCommand};
use crate::engine::leg::{Leg, LegRow, Step, Stop};
use crate::media::Clip;
use crate::ncco::Connect;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

/// The live-input id a bridged leg hears its peer under.
const BRIDGE_INPUT: u64 = u64::MAX - 1;

pub async fn connect(leg: &mut Leg, c: &Connect) -> Step<Flow> {
    if c.refer {
        return refer(leg, c).await;
    }
    let (event_url, event_method) = match &c.event {
        Some(hook) => (Some(hook.url.clone()), hook.method.clone()),
        None => (leg.row.event_url.clone(), leg.row.event_method.clone()),
    };
    let random_from = match c.random_from_number {
        true => crate::numbers::repo::random_caller_id(&leg.ctx.pool, leg.row.application_id, &leg.ctx.settings.calls.random_from_numbers)
            .await
            .map_err(|e| Stop::Internal(e.to_string()))?,
        false => None,
    };
    // An inbound call's caller id passes through unless the action says otherwise.
    let from = c.from.clone().or(random_from).unwrap_or_else(|| leg.from.clone());
    let child_row = LegRow {
        uuid: Uuid::new_v4(),
        conversation_uuid: leg.row.conversation_uuid.clone(),
        account_id: leg.row.account_id,
        application_id: leg.row.application_id,
        direction: "outbound".into(),
        status: "started".into(),
        to_endpoint: serde_json::to_value(&c.endpoint).unwrap_or(Value::Null),
        from_endpoint: Some(json!({"type": "phone", "number": from})),
        ncco: None,
        answer_url: None,
        answer_method: "GET".into(),
        event_url,
        event_method,
        fallback_url: None,
        machine_detection: c.machine_detection.clone(),
        advanced_machine_detection: c.advanced_machine_detection.as_ref().and_then(|a| serde_json::to_value(a).ok()),
        length_timer_s: c.limit_s as i32,
        ringing_timer_s: c.timeout_s as i32,
        answered_at: None,
        last_seq: 1,
        signed_callbacks: leg.row.signed_callbacks,
        api_key: leg.row.api_key.clone(),
        signature_secret: leg.row.signature_secret.clone(),
        sandbox_behaviour: None,
        user_data: leg.row.user_data.clone(),
        sip_options: None,
        sip: None,
    };
    insert_child(leg, &child_row).await?;
    let mut child = Leg::new(leg.ctx.clone(), child_row);
    child.row.sandbox_behaviour = sandbox_behaviour(leg, &child.to).await;
    let child_uuid = child.row.uuid;
    child.commands = Some(leg.ctx.commands.register(child_uuid));
    let outcome = drive_child(leg, &mut child, c).await;
    leg.ctx.commands.unregister(child_uuid);
    outcome
}

async fn drive_child(leg: &mut Leg, child: &mut Leg, c: &Connect) -> Step<Flow> {
    let ringback = start_ringback(leg, c).await;
    let answered = child.dial_and_ring().await;
    if let Some(id) = ringback {
        leg.control(MediaCommand::StopPlayback { id });
    }
    let answered = answered?;
    if answered.is_none() {
        if c.synchronous_events {
            // Connect fallback: the final status event may answer with an NCCO.
            let status = child.last_status.clone().unwrap_or_else(|| "failed".into());
            let mut payload = child.base_payload(&status);
            payload["detail"] = json!(child.last_detail);
            let (url, method) = (child.row.event_url.clone(), child.row.event_method.clone());
            return post_for_ncco(leg, "connect", payload, url, &method).await;
        }
        return Ok(Flow::Next);
    }
    child.answer().await?;
    bridge(leg, child);
    // Bridged until one side hangs up. Keys the first leg presses go on to the second (as
    // RFC 4733 events, or a websocket's JSON events).
    let keys_to = child.handle.as_ref().map(|h| h.control.clone());
    let outcome = tokio::select! {
        parent = wait_end_passing_keys(leg, keys_to) => Err(parent),
        child_end = wait_end(child) => Ok(child_end),
    };
    match outcome {
        Err(parent_stop) => {
            child.hang_up("platform").await?;
            Err(parent_stop)
        }
        Ok(Stop::Remote) => {
            // A websocket closed by its application: `disconnected` may answer with an NCCO.
            let flow = match child.disconnected_payload() {
                Some(payload) => {
                    let (url, method) = (child.row.event_url.clone(), child.row.event_method.clone());
                    post_for_ncco(child, "disconnected", payload, url, &method).await?
                }
                None => Flow::Next,
            };
            child.hang_up("user").await?;
            Ok(flow)
        }
        // The connected leg's own limit, or the API hanging it up (a transfer of a connected
        // leg is not supported: it ends the leg too).
        Ok(Stop::Platform | Stop::Hangup | Stop::Transfer(_)) => {
            child.hang_up("platform").await?;
            Ok(Flow::Next)
        }
        Ok(other) => Err(other),
    }
}

/// `"method": "refer"`: a blind transfer by SIP REFER. On success (the target answered, as the
/// far end's NOTIFY says) the leg gets a `transfer` event and Outdial hangs up (the call goes on
/// between the far end and the target, outside Outdial); on failure or `timeout` the NCCO goes
/// on with its next action.
async fn refer(leg: &mut Leg, c: &Connect) -> Step<Flow> {
    let crate::ncco::Endpoint::Sip { uri, .. } = &c.endpoint else { return Ok(Flow::Next) };
    leg.control(MediaCommand::Refer(uri.clone()));
    let deadline = leg.ctx.clock.deadline(Duration::from_secs(u64::from(c.timeout_s)));
    loop {
        match next(leg, Some(deadline)).await? {
            super::Signal::Event(crate::carrier::CarrierEvent::Transferred { code }) if (200..300).contains(&code) => {
                let payload = json!({
                    "uuid": leg.row.uuid, "conversation_uuid_from": leg.row.conversation_uuid, "type": "refer", "to": uri,
                    "status": "transferred", "timestamp": crate::calls::format_time(chrono::Utc::now()),
                });
                leg.side_event("transfer", payload).await?;
                return Err(Stop::Platform);
            }
            super::Signal::Event(crate::carrier::CarrierEvent::Transferred { code }) => {
                leg.log(&format!("transfer to {uri} failed ({code}): the NCCO goes on"));
                return Ok(Flow::Next);
            }
            super::Signal::Deadline => {
                leg.log(&format!("transfer to {uri} not confirmed within {} s: the NCCO goes on", c.timeout_s));
                return Ok(Flow::Next);
            }
            _ => {}
        }
    }
}

/// What the first leg hears while the second rings: `ringbackTone`, else the generated cadence.
/// None without real audio (or when the tone cannot be loaded: then silence, logged).
async fn start_ringback(leg: &mut Leg, c: &Connect) -> Option<u64> {
    leg.media.as_ref()?;
    let (media, audio) = match &c.ringback_tone {
        Some(url) => match crate::engine::media::stream(leg, url).await {
            Ok((_, audio)) => (Media::Audio { url: url.clone() }, audio?),
            Err(e) => {
                leg.log(&format!("ringbackTone {url} not played: {e}"));
                return None;
            }
        },
        None => (Media::Audio { url: "ringback".into() }, ringback_cadence()),
    };
    let id = leg.play_id();
    leg.control(MediaCommand::Play { id, media, duration: audio.duration(), loops: 0, audio: Some(audio), level: 0.0 });
    Some(id)
}

/// North American ringback: 440 + 480 Hz, 2 s on, 4 s off.
fn ringback_cadence() -> Clip {
    let on = Duration::from_secs(2);
    let low = Clip::tone(440.0, on, 0.15);
    let high = Clip::tone(480.0, on, 0.15);
    let mut samples: Vec<i16> = low.samples().iter().zip(high.samples()).map(|(a, b)| a.saturating_add(*b)).collect();
    samples.extend(Clip::silence(Duration::from_secs(4)).samples());
    Clip::from(samples)
}

/// Each leg hears the other (when both have real audio).
fn bridge(leg: &Leg, child: &Leg) {
    if let (Some(a), Some(b)) = (&leg.media, &child.media) {
        a.attach(BRIDGE_INPUT, b.subscribe_received(), 0.0);
        b.attach(BRIDGE_INPUT, a.subscribe_received(), 0.0);
    }
}

/// Runs a leg's signals until it ends, passing its keys to `keys_to`; returns why it ended.
async fn wait_end_passing_keys(leg: &mut Leg, keys_to: Option<tokio::sync::mpsc::UnboundedSender<MediaCommand>>) -> Stop {
    loop {
        match next(leg, None).await {
            Ok(super::Signal::Event(crate::carrier::CarrierEvent::Dtmf(key))) => {
                leg.pending_dtmf.clear();
                if let Some(to) = &keys_to {
                    let _ = to.send(MediaCommand::SendDtmf(key.to_string()));
                }
            }
            // A simulated callee has no audio but says its sandbox speech: the second leg (a
            // websocket bot) hears it spoken.
            Ok(super::Signal::Event(crate::carrier::CarrierEvent::Speech(text))) if leg.media.is_none() => {
                let Some(to) = &keys_to else { continue };
                match leg.ctx.audio.speech(&text, "en-US", 0).await {
                    Ok(clip) => {
                        let id = leg.play_id();
                        let media = Media::Tts { text, language: "en-US".into() };
                        let _ = to.send(MediaCommand::Play { id, media, duration: clip.duration(), loops: 1, audio: Some(clip), level: 0.0 });
                    }
                    Err(e) => leg.log(&format!("the callee's words not spoken to the connected leg: {e}")),
                }
            }
            Ok(_) => {}
            Err(stop) => return stop,
        }
    }
}

/// Runs a leg's signals until it ends, returning why.
async fn wait_end(leg: &mut Leg) -> Stop {
    loop {
        if let Err(stop) = next(leg, None).await {
            return stop;
        }
    }
}

async fn sandbox_behaviour(leg: &Leg, number: &str) -> Option<Value> {
    sqlx::query_scalar("SELECT behaviour FROM sandbox_numbers WHERE account_id = $1 AND number = $2")
        .bind(leg.row.account_id)
        .bind(number)
        .fetch_optional(&leg.ctx.pool)
        .await
        .ok()
        .flatten()
}

/// The connected leg's row, its job (owned by this instance, so a takeover ends it cleanly)
/// and its `started` event, in one statement.
async fn insert_child(leg: &Leg, row: &LegRow) -> Step<()> {
    let started = json!({
        "from": row.from_endpoint.as_ref().and_then(|f| f["number"].as_str()), "to": crate::engine::leg::address_of(&row.to_endpoint),
        "uuid": row.uuid, "conversation_uuid": row.conversation_uuid, "status": "started", "direction": "outbound",
        "timestamp": crate::calls::format_time(chrono::Utc::now()),
    });
    sqlx::query(
        "WITH c AS (
            INSERT INTO calls (uuid, conversation_uuid, account_id, application_id, status, to_endpoint, from_endpoint,
                               event_url, event_method, machine_detection, advanced_machine_detection, length_timer_s, ringing_timer_s, parent_uuid)
            VALUES ($1, $2, $3, $4, 'started', $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING uuid),
         j AS (INSERT INTO call_jobs (call_uuid, state, locked_by, claimed_at) SELECT uuid, 'running', $14, now() FROM c)
         INSERT INTO events (call_uuid, seq, kind, payload, url, method) SELECT uuid, 1, 'started', $15, $7, $8 FROM c",
    )
    .bind(row.uuid)
    .bind(&row.conversation_uuid)
    .bind(row.account_id)
    .bind(row.application_id)
    .bind(&row.to_endpoint)
    .bind(&row.from_endpoint)
    .bind(&row.event_url)
    .bind(&row.event_method)
    .bind(&row.machine_detection)
    .bind(&row.advanced_machine_detection)
    .bind(row.length_timer_s)
    .bind(row.ringing_timer_s)
    .bind(leg.row.uuid)
    .bind(leg.ctx.instance_id)
    .bind(started)
    .execute(&leg.ctx.pool)
    .await
    .map_err(|e| Stop::Internal(e.to_string()))?;
    leg.ctx.wake_dispatchers();
    Ok(())
}
