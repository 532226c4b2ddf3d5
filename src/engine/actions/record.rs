//! `record`: with endOnKey/endOnSilence the NCCO waits for the recording (voicemail); otherwise
//! it records in the background until timeOut or the end of the call. The simulated network
//! records silence: a real WAV (16 kHz, 16-bit) of the recording's length, kept in PostgreSQL.

use super::{next, Flow, Signal};
use crate::calls::format_time;
use crate::carrier::CarrierEvent;
use crate::engine::leg::{Leg, Step, Stop};
use crate::engine::media::silent_wav;
use crate::engine::store::Change;
use crate::ncco::Record;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// Longest audio actually written per recording; the reported times stay true beyond it.
const MAX_STORED_S: f64 = 600.0;

pub struct BackgroundRecording {
    pub record: Record,
    pub started_at: DateTime<Utc>,
    pub started_wall: Instant,
}

pub async fn record(leg: &mut Leg, record: &Record) -> Step<Flow> {
    let started_at = Utc::now();
    let started_wall = Instant::now();
    if !record.is_synchronous() {
        // A second background record replaces the first, which ends now.
        finish_background(leg).await?;
        leg.background_recording = Some(BackgroundRecording { record: record.clone(), started_at, started_wall });
        return Ok(Flow::Next);
    }
    let limit = Duration::from_secs(u64::from(record.time_out_s));
    let silence = record.end_on_silence_s.map(|s| Duration::from_secs(u64::from(s)));
    let end_at = leg.ctx.clock.deadline(limit);
    let mut silence_at = silence.map(|s| leg.ctx.clock.deadline(s));
    loop {
        let deadline = silence_at.map_or(end_at, |s| s.min(end_at));
        match next(leg, Some(deadline)).await {
            Ok(Signal::Event(CarrierEvent::Dtmf(key))) if Some(key) == record.end_on_key => break,
            Ok(Signal::Event(CarrierEvent::Speech(_))) => silence_at = silence.map(|s| leg.ctx.clock.deadline(s)),
            Ok(Signal::Event(_)) => {}
            Ok(Signal::Deadline) => break,
            Err(stop @ (Stop::Remote | Stop::Platform | Stop::Hangup | Stop::Transfer(_))) => {
                save(leg, record, started_at, started_wall).await?;
                return Err(stop);
            }
            Err(other) => return Err(other),
        }
    }
    leg.pending_dtmf.clear();
    save(leg, record, started_at, started_wall).await?;
    Ok(Flow::Next)
}

/// Ends a background recording (at timeOut at the latest) and sends its event.
pub async fn finish_background(leg: &mut Leg) -> Step<()> {
    if let Some(running) = leg.background_recording.take() {
        save(leg, &running.record, running.started_at, running.started_wall).await?;
    }
    Ok(())
}

async fn save(leg: &mut Leg, record: &Record, started_at: DateTime<Utc>, started_wall: Instant) -> Step<()> {
    let clock = leg.ctx.clock;
    // The recording's length is simulated time (as a call's duration); its start and end are
    // wall-clock, as the event's timestamp and every other timestamp (see clock.rs).
    let simulated = clock.simulated(started_wall.elapsed()).min(Duration::from_secs(u64::from(record.time_out_s)));
    let now = Utc::now();
    let end_time = (started_at + chrono::Duration::from_std(clock.wall(simulated)).unwrap_or_default()).min(now);
    // Up to 19 MB of samples (600 s, some 20 ms to write): off the runtime's threads.
    let stored = Duration::from_secs_f64(simulated.as_secs_f64().min(MAX_STORED_S));
    let wav = tokio::task::spawn_blocking(move || silent_wav(stored)).await.map_err(|e| Stop::Internal(e.to_string()))?;
    let (file_id, recording_uuid) = (Uuid::new_v4(), Uuid::new_v4());
    sqlx::query(
        "INSERT INTO recordings (id, recording_uuid, call_uuid, application_id, content_type, content, size, start_time, end_time)
         VALUES ($1, $2, $3, $4, 'audio/wav', $5, $6, $7, $8)",
    )
    .bind(file_id)
    .bind(recording_uuid)
    .bind(leg.row.uuid)
    .bind(leg.row.application_id)
    .bind(&wav)
    .bind(wav.len() as i32)
    .bind(started_at)
    .bind(end_time)
    .execute(&leg.ctx.pool)
    .await
    .map_err(|e| Stop::Internal(e.to_string()))?;
    let payload = json!({
        "start_time": format_time(started_at), "end_time": format_time(end_time),
        "recording_url": format!("{}/v1/files/{file_id}", leg.ctx.base_url),
        "size": wav.len(), "recording_uuid": recording_uuid, "format": "wav",
        "uuid": leg.row.uuid, "conversation_uuid": leg.row.conversation_uuid, "timestamp": format_time(now),
    });
    let (url, method) = match &record.event {
        Some(hook) => (Some(hook.url.clone()), hook.method.clone()),
        None => (leg.row.event_url.clone(), leg.row.event_method.clone()),
    };
    let event = leg.event_to("record", payload, url, &method, "pending");
    leg.write(Change { events: vec![event], ..Default::default() }).await?;
    Ok(())
}
