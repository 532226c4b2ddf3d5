//! `conversation` (named per application; legs in it are bridged) and the `transfer` action
//! (moves the leg into another conversation). Where a conversation stands (started, ended) is
//! shared by the cluster (`conversation_state`), so startOnEnter, endOnExit and music on hold
//! act on members of every instance; its audio is mixed by the one instance that owns it
//! (`relay`), members on other instances reach it through their relay.
//!
//! On real audio each member hears the sum of the others, never itself: every other member's
//! received frames are a live input of its mixer (N members, N(N-1) inputs; fine for the tens
//! of members a call has). `canHear`/`canSpeak` leave out the inputs they forbid, a muted
//! member's frames are silence at the source, an earmuffed member's mixer sends silence.

use super::{next, Flow};
use crate::calls::format_time;
use crate::carrier::{Media, MediaCommand};
use crate::engine::leg::{Leg, Step, Stop};
use crate::engine::conversation_state::Session;
use crate::engine::relay::JoinRequest;
use crate::media::MediaTap;
use crate::ncco::{Conversation, Record, Transfer};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A conversation's audio on this instance.
pub struct Room {
    members: Mutex<usize>,
    /// The members with real audio.
    voices: Mutex<Vec<Voice>>,
}

/// A member's audio in a room.
struct Voice {
    leg: uuid::Uuid,
    tap: MediaTap,
    /// Legs that may hear it (None: all).
    can_speak: Option<Vec<String>>,
    /// Legs it may hear (None: all).
    can_hear: Option<Vec<String>>,
}

impl Voice {
    fn hears(&self, other: &Voice) -> bool {
        let allowed = |list: &Option<Vec<String>>, leg: uuid::Uuid| list.as_ref().is_none_or(|l| l.iter().any(|u| u.eq_ignore_ascii_case(&leg.to_string())));
        allowed(&self.can_hear, other.leg) && allowed(&other.can_speak, self.leg)
    }
}

/// The live-input id under which a member hears another: from the other's leg uuid.
fn input_id(leg: uuid::Uuid) -> u64 {
    leg.as_u64_pair().1
}

impl Room {
    /// Wires a new member's audio both ways with every member allowed to hear it.
    fn add_voice(&self, voice: Voice) {
        let mut voices = self.voices.lock().unwrap_or_else(|e| e.into_inner());
        for other in voices.iter() {
            if other.hears(&voice) {
                other.tap.attach(input_id(voice.leg), voice.tap.subscribe_received(), 0.0);
            }
            if voice.hears(other) {
                voice.tap.attach(input_id(other.leg), other.tap.subscribe_received(), 0.0);
            }
        }
        voices.push(voice);
    }

    fn remove_voice(&self, leg: uuid::Uuid) {
        let mut voices = self.voices.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = voices.iter().position(|v| v.leg == leg) {
            let gone = voices.remove(at);
            for other in voices.iter() {
                other.tap.detach(input_id(leg));
                gone.tap.detach(input_id(other.leg));
            }
        }
    }
}

#[derive(Default)]
pub struct Rooms(Mutex<HashMap<String, Arc<Room>>>);

impl Rooms {
    fn join(&self, key: &str) -> Arc<Room> {
        let mut rooms = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = rooms.entry(key.to_string()).or_insert_with(|| Arc::new(Room { members: Mutex::new(0), voices: Mutex::new(Vec::new()) })).clone();
        *room.members.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        room
    }

    fn leave(&self, key: &str, room: &Room) {
        let mut members = room.members.lock().unwrap_or_else(|e| e.into_inner());
        *members -= 1;
        if *members == 0 {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        }
    }

    /// A member whose leg runs on another instance (see `relay`): its audio is `tap`.
    pub fn join_remote(&self, key: &str, leg: uuid::Uuid, tap: MediaTap, can_speak: Option<Vec<String>>, can_hear: Option<Vec<String>>) {
        let room = self.join(key);
        room.add_voice(Voice { leg, tap, can_speak, can_hear });
    }

    pub fn leave_remote(&self, key: &str, leg: uuid::Uuid) {
        let room = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned();
        if let Some(room) = room {
            room.remove_voice(leg);
            self.leave(key, &room);
        }
    }

    /// Names of the conversations this instance holds, with their member counts.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub async fn conversation(leg: &mut Leg, c: &Conversation) -> Step<Flow> {
    let key = format!("{}/{}", leg.row.application_id, c.name);
    let ctx = leg.ctx.clone();
    let session = ctx
        .conversations
        .join(&ctx.pool, ctx.instance_id, ctx.settings.engine.instance_timeout_ms, leg.row.application_id, &c.name, leg.row.uuid, c.start_on_enter)
        .await
        .map_err(|e| Stop::Internal(e.to_string()))?;
    let room = ctx.rooms.join(&key);
    // Whatever ends the membership (an error on the way in included), the leg leaves.
    let stop = match take_part(leg, c, &key, &room, &session).await {
        Ok(never) => match never {},
        Err(stop) => stop,
    };
    room.remove_voice(leg.row.uuid);
    ctx.rooms.leave(&key, &room);
    let stored = !matches!(stop, Stop::Fenced);
    ctx.conversations.leave(&ctx.pool, &session, leg.row.uuid, c.end_on_exit, stored).await;
    Err(stop)
}

/// The leg in the conversation: music on hold until it starts, its audio in the room (here or
/// through the relay), its recording, until the leg or the conversation ends.
async fn take_part(leg: &mut Leg, c: &Conversation, key: &str, room: &Room, session: &Session) -> Step<std::convert::Infallible> {
    let mut started = session.started.subscribe();
    let mut ended = session.ended.subscribe();
    let mut music = None;
    if !*started.borrow() {
        if let Some(url) = &c.music_on_hold_url {
            if let Ok((duration, audio)) = crate::engine::media::stream(leg, url).await {
                let id = leg.play_id();
                leg.control(MediaCommand::Play { id, media: Media::Audio { url: url.clone() }, duration, loops: 0, audio, level: 0.0 });
                music = Some(id);
            }
        }
    }
    if c.mute {
        leg.control(MediaCommand::SetMuted(true));
    }
    // The room's audio is mixed by the instance that owns it (this one, or another: then the
    // relay carries this member's voice there and its mix back).
    let mut remote_membership = None;
    if let Some(tap) = leg.media.clone() {
        let owner = match &leg.ctx.relay {
            Some(relay) => claim_room(leg, &c.name, relay).await?,
            None => None,
        };
        match (owner, leg.ctx.relay.clone()) {
            (Some((owner, token)), Some(relay)) => {
                let join = JoinRequest { room: key.to_string(), token, can_speak: c.can_speak.clone(), can_hear: c.can_hear.clone() };
                leg.log(&format!("conversation {} is mixed on another instance ({owner})", c.name));
                remote_membership = Some(relay.join_remote(owner, leg.row.uuid, &tap, join));
            }
            _ => room.add_voice(Voice { leg: leg.row.uuid, tap, can_speak: c.can_speak.clone(), can_hear: c.can_hear.clone() }),
        }
    }
    let recording = c.record.then(|| Record {
        format: "wav".into(),
        split: false,
        channels: None,
        end_on_silence_s: None,
        end_on_key: None,
        time_out_s: 7200,
        beep_start: false,
        event: c.event.clone(),
        transcription: None,
    });
    let recording = recording.map(|record| super::record::BackgroundRecording::start(leg, record));
    if recording.is_some() {
        super::record::finish_background(leg).await?;
        leg.background_recording = recording;
    }
    let stop = loop {
        tokio::select! {
            signal = next(leg, None) => if let Err(stop) = signal { break stop },
            // wait_for looks at the value first: a change before the subscription counts too.
            _ = started.wait_for(|started| *started), if music.is_some() => {
                if let Some(id) = music.take() {
                    leg.control(MediaCommand::StopPlayback { id });
                }
            }
            _ = ended.wait_for(|ended| *ended) => break Stop::Platform,
        }
    };
    drop(remote_membership);
    Err(stop)
}

pub async fn transfer(leg: &mut Leg, t: &Transfer) -> Step<Flow> {
    let payload = json!({
        "conversation_uuid_from": leg.row.conversation_uuid, "conversation_uuid_to": t.conversation_id,
        "uuid": leg.row.uuid, "timestamp": format_time(chrono::Utc::now()), "type": "transfer", "status": "transfer",
    });
    leg.side_event("transfer", payload).await?;
    let joined = Conversation {
        name: t.conversation_id.clone(),
        music_on_hold_url: None,
        start_on_enter: true,
        end_on_exit: false,
        record: false,
        can_speak: t.can_speak.clone(),
        can_hear: t.can_hear.clone(),
        mute: t.mute,
        event: None,
        transcription: None,
    };
    conversation(leg, &joined).await
}

/// Which instance mixes the conversation: None when it is this one (it claims it when no live
/// instance holds it, with a new relay token), else the owner's relay address and token.
async fn claim_room(leg: &Leg, name: &str, relay: &crate::engine::relay::RoomRelay) -> Step<Option<(std::net::SocketAddr, uuid::Uuid)>> {
    let claimed: Option<(uuid::Uuid, String, uuid::Uuid)> = sqlx::query_as(
        "INSERT INTO conversation_rooms (application_id, name, instance_id, relay_address, relay_token) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (application_id, name) DO UPDATE
           SET instance_id = EXCLUDED.instance_id, relay_address = EXCLUDED.relay_address, relay_token = EXCLUDED.relay_token
           WHERE NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = conversation_rooms.instance_id AND i.stopped_at IS NULL
                             AND i.heartbeat_at > now() - make_interval(secs => $6::float8 / 1000))
         RETURNING instance_id, relay_address, relay_token",
    )
    .bind(leg.row.application_id)
    .bind(name)
    .bind(leg.ctx.instance_id)
    .bind(relay.address.to_string())
    .bind(uuid::Uuid::new_v4())
    .bind(leg.ctx.settings.engine.instance_timeout_ms as f64)
    .fetch_optional(&leg.ctx.pool)
    .await
    .map_err(|e| Stop::Internal(e.to_string()))?;
    let (instance, address, token) = match claimed {
        Some(claimed) => claimed,
        None => sqlx::query_as("SELECT instance_id, relay_address, relay_token FROM conversation_rooms WHERE application_id = $1 AND name = $2")
            .bind(leg.row.application_id)
            .bind(name)
            .fetch_one(&leg.ctx.pool)
            .await
            .map_err(|e| Stop::Internal(e.to_string()))?,
    };
    let key = format!("{}/{name}", leg.row.application_id);
    if instance == leg.ctx.instance_id {
        relay.admit(&key, token);
        return Ok(None);
    }
    Ok(address.parse().ok().map(|address| (address, token)))
}
