//! Answering-machine detection: standard (`machine_detection`) and advanced (with the beep).
//! Detection runs before the NCCO (Vonage's synchronous modes; the asynchronous `default` mode
//! is run the same way here).

use super::{next, pause, Signal};
use crate::engine::audio_tasks::{AudioEvent, MachineDetection};
use crate::media::detect::Verdict;
use crate::calls::format_time;
use crate::carrier::CarrierEvent;
use crate::engine::leg::{Leg, Step};
use crate::engine::store::Change;
use serde_json::{json, Value};
use std::time::Duration;

fn machine_event(leg: &mut Leg, status: &str, sub_state: Option<&str>) -> Value {
    let mut payload = json!({
        "call_uuid": leg.row.uuid, "from": leg.from, "to": leg.to, "status": status,
        "conversation_uuid": leg.row.conversation_uuid, "timestamp": format_time(chrono::Utc::now()),
    });
    if let Some(s) = sub_state {
        payload["sub_state"] = json!(s);
    }
    payload
}

/// Runs detection when the call asked for it; true when the leg must hang up (a machine with
/// behaviour `hangup`).
pub async fn detect_machine(leg: &mut Leg, by_machine: bool) -> Step<bool> {
    let (behavior, wants_beep, beep_timeout) = match (&leg.row.advanced_machine_detection, &leg.row.machine_detection) {
        (Some(amd), _) => (
            amd["behavior"].as_str().unwrap_or("continue").to_string(),
            amd["mode"].as_str() != Some("detect"),
            amd["beep_timeout"].as_u64().unwrap_or(45),
        ),
        (None, Some(md)) => (md.clone(), false, 0),
        (None, None) => return Ok(false),
    };
    // On real audio the greeting decides; the simulated network says who answered.
    let (by_machine, _detection) = match leg.media.clone() {
        Some(tap) => {
            let detection = MachineDetection::start(&tap, wants_beep, leg.audio_events.sender());
            (greeting_verdict(leg).await? == Verdict::Machine, Some(detection))
        }
        None => {
            pause(leg, Duration::from_secs_f64(leg.ctx.settings.engine.machine_detection_s)).await?;
            (by_machine, None)
        }
    };
    let verdict = if by_machine { "machine" } else { "human" };
    let payload = machine_event(leg, verdict, None);
    let event = leg.event(verdict, payload);
    let status = by_machine.then(|| "machine".to_string());
    leg.write(Change { status, events: vec![event], ..Default::default() }).await?;
    if by_machine && wants_beep {
        let deadline = leg.ctx.clock.deadline(Duration::from_secs(beep_timeout));
        let mut beeped = leg.beeped;
        while !beeped {
            match next(leg, Some(deadline)).await? {
                Signal::Event(CarrierEvent::Beep) => beeped = true,
                Signal::Audio(AudioEvent::Beep { hz }) => {
                    leg.log(&format!("machine detection: a {hz:.0} Hz beep"));
                    beeped = true;
                }
                Signal::Event(_) | Signal::Audio(_) => {}
                Signal::Deadline => break,
            }
        }
        let sub_state = if beeped { "beep_start" } else { "beep_timeout" };
        let payload = machine_event(leg, "machine", Some(sub_state));
        leg.side_event("machine", payload).await?;
    }
    Ok(by_machine && behavior == "hangup")
}

/// Waits for the greeting analysis (it decides within 5 s of audio; a person if it never does).
async fn greeting_verdict(leg: &mut Leg) -> Step<Verdict> {
    let deadline = leg.ctx.clock.deadline(Duration::from_secs(7));
    loop {
        match next(leg, Some(deadline)).await? {
            Signal::Audio(AudioEvent::Machine { verdict, reason }) => {
                leg.log(&format!("machine detection: {verdict:?} ({reason:?})").to_lowercase());
                return Ok(verdict);
            }
            Signal::Event(_) | Signal::Audio(_) => {}
            Signal::Deadline => {
                leg.log("machine detection: no verdict from the audio; taken for a human");
                return Ok(Verdict::Human);
            }
        }
    }
}
