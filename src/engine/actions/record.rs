//! `record`: with endOnKey/endOnSilence the NCCO waits for the recording (voicemail); otherwise
//! it records in the background until timeOut or the end of the call.
//!
//! On a leg with real audio (SIP) the recorder takes the leg's frames (`audio_tasks`) and the
//! file holds what was said and heard, in Vonage's formats (16 kHz WAV, or MP3 through LAME);
//! endOnSilence is measured on the audio. The simulated network records silence: a WAV
//! (16 kHz, 16-bit) of the recording's length. Either is kept in PostgreSQL.

use super::{next, until_played, Flow, Signal};
use crate::calls::format_time;
use crate::carrier::{CarrierEvent, Media, MediaCommand};
use crate::engine::audio_tasks::{AudioEvent, LiveRecording, RecordingRules};
use crate::engine::leg::{Leg, Step, Stop};
use crate::engine::media::silent_wav;
use crate::engine::store::Change;
use crate::media::recorder::{FileFormat, Layout};
use crate::media::Clip;
use crate::ncco::Record;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// Longest silence the simulated network writes per recording; the reported times stay true
/// beyond it.
const MAX_STORED_S: f64 = 600.0;
/// `beepStart`: a 1 kHz tone of 400 ms before the recording starts.
const BEEP_HZ: f32 = 1000.0;
const BEEP: Duration = Duration::from_millis(400);

pub struct BackgroundRecording {
    pub record: Record,
    pub started_at: DateTime<Utc>,
    pub started_wall: Instant,
    live: Option<LiveRecording>,
}

impl BackgroundRecording {
    /// Starts recording now (the leg's real audio when it has some).
    pub fn start(leg: &mut Leg, record: Record) -> BackgroundRecording {
        let live = start_live(leg, &record);
        BackgroundRecording { record, started_at: Utc::now(), started_wall: Instant::now(), live }
    }
}

fn start_live(leg: &mut Leg, record: &Record) -> Option<LiveRecording> {
    let tap = leg.media.clone()?;
    let id = leg.play_id();
    Some(LiveRecording::start(&tap, id, rules(record), leg.audio_events.sender()))
}

pub async fn record(leg: &mut Leg, record: &Record) -> Step<Flow> {
    if record.beep_start && leg.media.is_some() {
        beep(leg).await?;
    }
    let started_at = Utc::now();
    let started_wall = Instant::now();
    let live = start_live(leg, record);
    if !record.is_synchronous() {
        // A second background record replaces the first, which ends now.
        finish_background(leg).await?;
        leg.background_recording = Some(BackgroundRecording { record: record.clone(), started_at, started_wall, live });
        return Ok(Flow::Next);
    }
    let limit = Duration::from_secs(u64::from(record.time_out_s));
    // Real audio measures its own silence; the simulated callee's speech events reset a timer.
    let silence = record.end_on_silence_s.filter(|_| live.is_none()).map(|s| Duration::from_secs(u64::from(s)));
    // The recorder stops itself at timeOut; the deadline is a backstop.
    let end_at = leg.ctx.clock.deadline(if live.is_some() { limit + Duration::from_secs(1) } else { limit });
    let mut silence_at = silence.map(|s| leg.ctx.clock.deadline(s));
    let live_id = live.as_ref().map(|l| l.id);
    loop {
        let deadline = silence_at.map_or(end_at, |s| s.min(end_at));
        match next(leg, Some(deadline)).await {
            Ok(Signal::Event(CarrierEvent::Dtmf(key))) if Some(key) == record.end_on_key => break,
            Ok(Signal::Event(CarrierEvent::Speech(_))) => silence_at = silence.map(|s| leg.ctx.clock.deadline(s)),
            Ok(Signal::Audio(AudioEvent::RecordingEnded(id))) if Some(id) == live_id => break,
            Ok(Signal::Event(_) | Signal::Audio(_)) => {}
            Ok(Signal::Deadline) => break,
            Err(stop @ (Stop::Remote | Stop::Platform | Stop::Hangup | Stop::Transfer(_))) => {
                save(leg, record, started_at, started_wall, live).await?;
                return Err(stop);
            }
            Err(other) => return Err(other),
        }
    }
    leg.pending_dtmf.clear();
    save(leg, record, started_at, started_wall, live).await?;
    Ok(Flow::Next)
}

fn rules(record: &Record) -> RecordingRules {
    RecordingRules {
        layout: if record.split { Layout::Split { channels: record.channels.unwrap_or(2).clamp(2, 32) as u16 } } else { Layout::Mono },
        time_out: Duration::from_secs(u64::from(record.time_out_s)),
        end_on_silence: record.end_on_silence_s.map(|s| Duration::from_secs(u64::from(s))),
    }
}

/// Plays the start beep and waits for it to end.
async fn beep(leg: &mut Leg) -> Step<()> {
    let id = leg.play_id();
    let audio = Some(Clip::tone(BEEP_HZ, BEEP, 0.3));
    let media = Media::Audio { url: "beep".into() };
    leg.control(MediaCommand::Play { id, media, duration: BEEP, loops: 1, audio, level: 0.0 });
    until_played(leg, id).await
}

/// Ends a background recording (at timeOut at the latest) and sends its event.
pub async fn finish_background(leg: &mut Leg) -> Step<()> {
    if let Some(running) = leg.background_recording.take() {
        save(leg, &running.record, running.started_at, running.started_wall, running.live).await?;
    }
    Ok(())
}

/// A recording's file: what it is, and the span it covers.
struct RecordingFile {
    bytes: Vec<u8>,
    format: FileFormat,
    end_time: DateTime<Utc>,
}

async fn save(leg: &mut Leg, record: &Record, started_at: DateTime<Utc>, started_wall: Instant, live: Option<LiveRecording>) -> Step<()> {
    let file = match live {
        Some(live) => real_file(leg, record, live).await?,
        None => silent_file(leg, record, started_at, started_wall).await?,
    };
    let (file_id, recording_uuid) = (Uuid::new_v4(), Uuid::new_v4());
    sqlx::query(
        "INSERT INTO recordings (id, recording_uuid, call_uuid, application_id, content_type, content, size, start_time, end_time)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(file_id)
    .bind(recording_uuid)
    .bind(leg.row.uuid)
    .bind(leg.row.application_id)
    .bind(file.format.content_type())
    .bind(&file.bytes)
    .bind(file.bytes.len() as i32)
    .bind(started_at)
    .bind(file.end_time)
    .execute(&leg.ctx.pool)
    .await
    .map_err(|e| Stop::Internal(e.to_string()))?;
    let payload = json!({
        "start_time": format_time(started_at), "end_time": format_time(file.end_time),
        "recording_url": format!("{}/v1/files/{file_id}", leg.ctx.base_url),
        "size": file.bytes.len(), "recording_uuid": recording_uuid, "format": file.format.name(),
        "uuid": leg.row.uuid, "conversation_uuid": leg.row.conversation_uuid, "timestamp": format_time(Utc::now()),
    });
    let (url, method) = match &record.event {
        Some(hook) => (Some(hook.url.clone()), hook.method.clone()),
        None => (leg.row.event_url.clone(), leg.row.event_method.clone()),
    };
    let event = leg.event_to("record", payload, url, &method, "pending");
    leg.write(Change { events: vec![event], ..Default::default() }).await?;
    Ok(())
}

/// The leg's real audio, encoded as asked (WAV when MP3 cannot be written, with a history line).
async fn real_file(leg: &mut Leg, record: &Record, live: LiveRecording) -> Step<RecordingFile> {
    let recorded = live.finish().await.map_err(Stop::Internal)?;
    let asked = match record.format.as_str() {
        "wav" => FileFormat::Wav,
        "mp3" => FileFormat::Mp3,
        other => {
            leg.log(&format!("record format {other} is not written yet: recorded as WAV"));
            FileFormat::Wav
        }
    };
    let end_time = recorded.ended;
    let lame = leg.ctx.settings.media.lame_path.clone();
    let file = recorded.recorder.encode(asked, &lame).await.map_err(|e| Stop::Internal(e.to_string()))?;
    if let Some(why) = &file.fallback {
        leg.log(&format!("recording not encoded as {}: {why}; written as WAV", asked.name()));
    }
    Ok(RecordingFile { bytes: file.bytes, format: file.format, end_time })
}

/// What the simulated network records: silence as long as the recording lasted.
async fn silent_file(leg: &mut Leg, record: &Record, started_at: DateTime<Utc>, started_wall: Instant) -> Step<RecordingFile> {
    let clock = leg.ctx.clock;
    // The recording's length is simulated time (as a call's duration); its start and end are
    // wall-clock, as the event's timestamp and every other timestamp (see clock.rs).
    let simulated = clock.simulated(started_wall.elapsed()).min(Duration::from_secs(u64::from(record.time_out_s)));
    let end_time = (started_at + chrono::Duration::from_std(clock.wall(simulated)).unwrap_or_default()).min(Utc::now());
    // Up to 19 MB of samples (600 s, some 20 ms to write): off the runtime's threads.
    let stored = Duration::from_secs_f64(simulated.as_secs_f64().min(MAX_STORED_S));
    let bytes = tokio::task::spawn_blocking(move || silent_wav(stored)).await.map_err(|e| Stop::Internal(e.to_string()))?;
    Ok(RecordingFile { bytes, format: FileFormat::Wav, end_time })
}
