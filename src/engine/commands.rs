//! Live commands reach the leg that owns the call: NOTIFY carries the command (or, when it is
//! too long for a notification, just the call uuid) to every instance; the one driving the leg
//! hands it over, and the leg applies it in the order the API accepted them (commit order,
//! which is the notification order). Without the command in hand (a bare uuid, a new owner after
//! a takeover, the periodic sweep for a missed NOTIFY) the leg reads its pending commands from
//! PostgreSQL in id order. A command seen both ways is applied once.

use super::answer::{self, Reply, Target};
use super::leg::{Leg, Step, Stop};
use super::store::Change;
use crate::calls::control::Command;
use crate::calls::format_time;
use crate::carrier::{Media, MediaCommand};
use crate::ncco::{parse_ncco, Ncco};
use crate::validation::Problems;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc;
use uuid::Uuid;

pub const COMMANDS_CHANNEL: &str = "outdial_commands";

/// What wakes a leg: look up its pending commands, or here is one (id, body).
#[derive(Debug)]
pub enum Wake {
    Look,
    Carried(i64, Value),
}

/// A notification on `COMMANDS_CHANNEL`: `{"call", "id", "body"}`, or a bare call uuid.
pub fn parse_notification(payload: &str) -> Option<(Uuid, Wake)> {
    #[derive(serde::Deserialize)]
    struct Carried {
        call: Uuid,
        id: i64,
        body: Value,
    }
    if payload.starts_with('{') {
        let c: Carried = serde_json::from_str(payload).ok()?;
        return Some((c.call, Wake::Carried(c.id, c.body)));
    }
    Uuid::parse_str(payload).ok().map(|uuid| (uuid, Wake::Look))
}

/// Where a leg receives its wake-ups.
pub type CommandLine = mpsc::UnboundedReceiver<Wake>;

/// The legs this instance drives, by call uuid, each with a wake-up line.
#[derive(Default)]
pub struct CommandRouter {
    legs: Mutex<HashMap<Uuid, mpsc::UnboundedSender<Wake>>>,
}

impl CommandRouter {
    pub fn register(&self, uuid: Uuid) -> CommandLine {
        let rx = self.register_quietly(uuid);
        // A command may have been accepted before the leg was claimed: look once at the start.
        self.wake(uuid);
        rx
    }

    /// Registers the leg without looking for commands accepted earlier: the caller does (see
    /// `wake_legs_with_commands`).
    pub fn register_quietly(&self, uuid: Uuid) -> CommandLine {
        let (tx, rx) = mpsc::unbounded_channel();
        self.legs.lock().unwrap_or_else(|e| e.into_inner()).insert(uuid, tx);
        rx
    }

    pub fn unregister(&self, uuid: Uuid) {
        self.legs.lock().unwrap_or_else(|e| e.into_inner()).remove(&uuid);
    }

    /// Passes `wake` to the leg if this instance drives it.
    pub fn deliver(&self, uuid: Uuid, wake: Wake) {
        if let Some(tx) = self.legs.lock().unwrap_or_else(|e| e.into_inner()).get(&uuid) {
            let _ = tx.send(wake);
        }
    }

    pub fn wake(&self, uuid: Uuid) {
        self.deliver(uuid, Wake::Look);
    }
}

/// Wakes this instance's legs that have pending commands (the fallback for a missed NOTIFY).
pub async fn sweep(ctx: &super::EngineCtx) -> Result<(), sqlx::Error> {
    let pending: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT c.call_uuid FROM call_commands c JOIN call_jobs j ON j.call_uuid = c.call_uuid
         WHERE c.state = 'pending' AND j.locked_by = $1 AND j.state = 'running'",
    )
    .bind(ctx.instance_id)
    .fetch_all(&ctx.pool)
    .await?;
    for uuid in pending {
        ctx.commands.wake(uuid);
    }
    Ok(())
}

/// Wakes those of just-claimed legs (registered first, so a command accepted after this query
/// reaches them by NOTIFY) that have commands accepted before: one query for the claim's batch,
/// not one per leg. If it fails, every leg looks for itself.
pub async fn wake_legs_with_commands(ctx: &super::EngineCtx, legs: &[Uuid]) {
    let pending: Result<Vec<Uuid>, sqlx::Error> =
        sqlx::query_scalar("SELECT DISTINCT call_uuid FROM call_commands WHERE call_uuid = ANY($1) AND state = 'pending'")
            .bind(legs)
            .fetch_all(&ctx.pool)
            .await;
    let wake: Vec<Uuid> = pending.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "looking up commands of claimed legs failed; each leg looks for itself");
        legs.to_vec()
    });
    for uuid in wake {
        ctx.commands.wake(uuid);
    }
}

/// The commands to apply now: those handed over with `first` and whatever else is already
/// waiting, or, when any wake-up came without its command, the pending ones from the database.
async fn gather(leg: &mut Leg, first: Wake) -> Step<Vec<(i64, Value)>> {
    let mut wakes = vec![first];
    if let Some(rx) = leg.commands.as_mut() {
        while let Ok(wake) = rx.try_recv() {
            wakes.push(wake);
        }
    }
    let commands = if wakes.iter().any(|w| matches!(w, Wake::Look)) {
        sqlx::query_as("SELECT id, body FROM call_commands WHERE call_uuid = $1 AND state = 'pending' ORDER BY id")
            .bind(leg.row.uuid)
            .fetch_all(&leg.ctx.pool)
            .await
            .map_err(|e| Stop::Internal(e.to_string()))?
    } else {
        wakes
            .into_iter()
            .filter_map(|w| match w {
                Wake::Carried(id, body) => Some((id, body)),
                Wake::Look => None,
            })
            .collect()
    };
    Ok(commands.into_iter().filter(|(id, _)| leg.handled_commands.insert(*id)).collect())
}

/// Applies the leg's pending commands in order. A hangup or transfer stops what the leg is
/// doing (Err); commands after a hangup are rejected.
pub async fn apply_pending(leg: &mut Leg, wake: Wake) -> Step<()> {
    let pending = gather(leg, wake).await?;
    let mut results: Vec<(i64, &'static str, Option<String>)> = Vec::new();
    let mut stop = None;
    for (id, body) in pending {
        if stop.is_some() {
            results.push((id, "rejected", Some("the call was hung up or transferred before this command".into())));
            continue;
        }
        let Ok(command) = serde_json::from_value::<Command>(body) else {
            results.push((id, "rejected", Some("unreadable command".into())));
            continue;
        };
        let name = command.name();
        match apply(leg, command).await {
            Ok(Applied::Done) => results.push((id, "applied", None)),
            Ok(Applied::Rejected(reason)) => {
                // The API already answered; the history says what became of the command.
                leg.log(&format!("{name} rejected: {reason}"));
                results.push((id, "rejected", Some(reason)));
            }
            Err(s) => {
                results.push((id, "applied", None));
                stop = Some(s);
            }
        }
    }
    mark(leg, results).await?;
    match stop {
        Some(s) => Err(s),
        None => Ok(()),
    }
}

/// Writes the commands' results together with the media log of what they did.
async fn mark(leg: &mut Leg, results: Vec<(i64, &'static str, Option<String>)>) -> Step<()> {
    if results.is_empty() {
        return Ok(());
    }
    leg.write(Change { commands: results, ..Default::default() }).await?;
    Ok(())
}

enum Applied {
    Done,
    Rejected(String),
}

async fn apply(leg: &mut Leg, command: Command) -> Step<Applied> {
    let answered = leg.answered_at.is_some();
    if command.needs_answer() && !answered {
        return Ok(Applied::Rejected("the call is not answered".into()));
    }
    match command {
        Command::Hangup => Err(Stop::Hangup),
        Command::Mute | Command::Unmute => {
            leg.control(MediaCommand::SetMuted(matches!(command, Command::Mute)));
            Ok(Applied::Done)
        }
        Command::Earmuff | Command::Unearmuff => {
            leg.control(MediaCommand::SetEarmuffed(matches!(command, Command::Earmuff)));
            Ok(Applied::Done)
        }
        Command::StreamStart { url, loop_count, level } => {
            let (duration, audio) = match super::media::stream(leg, &url).await {
                Ok(found) => found,
                Err(reason) => return Ok(Applied::Rejected(format!("could not fetch {url}: {reason}"))),
            };
            if let Some(old) = leg.api_stream.take() {
                leg.control(MediaCommand::StopPlayback { id: old });
            }
            let id = leg.play_id();
            leg.control(MediaCommand::Play { id, media: Media::Audio { url }, duration, loops: loop_count, audio, level: level as f32 });
            leg.api_stream = Some(id);
            Ok(Applied::Done)
        }
        Command::StreamStop => {
            if let Some(id) = leg.api_stream.take() {
                leg.control(MediaCommand::StopPlayback { id });
            }
            Ok(Applied::Done)
        }
        Command::TalkStart { text, language, style, loop_count, level, .. } => {
            let (duration, audio) = match super::media::speech(leg, &text, &language, style).await {
                Ok(found) => found,
                Err(reason) => return Ok(Applied::Rejected(format!("could not synthesize the text: {reason}"))),
            };
            if let Some(old) = leg.api_talk.take() {
                leg.control(MediaCommand::StopPlayback { id: old });
            }
            let id = leg.play_id();
            leg.control(MediaCommand::Play { id, media: Media::Tts { text, language }, duration, loops: loop_count, audio, level: level as f32 });
            leg.api_talk = Some(id);
            Ok(Applied::Done)
        }
        Command::TalkStop => {
            if let Some(id) = leg.api_talk.take() {
                leg.control(MediaCommand::StopPlayback { id });
            }
            Ok(Applied::Done)
        }
        Command::SendDtmf { digits } => {
            leg.control(MediaCommand::SendDtmf(digits));
            Ok(Applied::Done)
        }
        Command::SubscribeDtmf { url, method } => {
            leg.async_dtmf = Some((url, method));
            leg.log("real-time DTMF subscribed");
            Ok(Applied::Done)
        }
        Command::UnsubscribeDtmf => {
            leg.async_dtmf = None;
            leg.log("real-time DTMF unsubscribed");
            Ok(Applied::Done)
        }
        Command::Transfer { ncco, url } => transfer(leg, ncco, url).await,
    }
}

/// Replaces the running NCCO: inline, or fetched from the URL (two attempts, as answer_url).
async fn transfer(leg: &mut Leg, ncco: Option<Value>, url: Option<String>) -> Step<Applied> {
    let new_ncco: Ncco = match (ncco, url) {
        (Some(value), _) => {
            let mut problems = Problems::default();
            match parse_ncco(&value, "ncco", &mut problems) {
                Some(n) => n,
                None => return Ok(Applied::Rejected("invalid NCCO".into())),
            }
        }
        (None, Some(url)) => {
            let payload = json!({"to": leg.to, "from": leg.from, "uuid": leg.row.uuid, "conversation_uuid": leg.row.conversation_uuid});
            let signer = leg.signer();
            match answer::fetch(&leg.ctx.client, Target { url: &url, method: "GET" }, None, &payload, "answer", signer.as_ref()).await.0 {
                Reply::Ncco(n) => n,
                other => return Ok(Applied::Rejected(format!("{url} did not answer with a valid NCCO: {other:?}"))),
            }
        }
        (None, None) => return Ok(Applied::Rejected("no destination".into())),
    };
    let payload = json!({
        "conversation_uuid_from": leg.row.conversation_uuid, "conversation_uuid_to": leg.row.conversation_uuid,
        "uuid": leg.row.uuid, "timestamp": format_time(chrono::Utc::now()), "type": "transfer", "status": "transfer",
    });
    leg.side_event("transfer", payload).await?;
    Err(Stop::Transfer(new_ncco))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_carry_the_command_or_just_the_call() {
        let call = Uuid::new_v4();
        let carried = format!(r#"{{"call": "{call}", "id": 42, "body": {{"action": "mute"}}}}"#);
        match parse_notification(&carried) {
            Some((uuid, Wake::Carried(42, body))) => assert_eq!((uuid, body), (call, json!({"action": "mute"}))),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_notification(&call.to_string()), Some((uuid, Wake::Look)) if uuid == call));
        assert!(parse_notification("{not json").is_none());
    }
}
