//! `talk` and `stream`: play into the leg; with bargeIn they run on while later actions start.

use super::{until_played, Flow};
use crate::carrier::{Media, MediaCommand};
use crate::engine::leg::{Leg, Step};
use crate::engine::media;
use crate::ncco::{Stream, Talk};
use serde_json::json;

pub async fn talk(leg: &mut Leg, talk: &Talk) -> Step<Flow> {
    let (duration, audio) = match media::speech(leg, &talk.text, &talk.language, talk.style).await {
        Ok(found) => found,
        Err(reason) => return skip(leg, format!("Could not synthesize talk: {reason}")).await,
    };
    let media = Media::Tts { text: talk.text.clone(), language: talk.language.clone() };
    play(leg, Playback { media, duration, loops: talk.loop_count, audio, level: talk.level as f32 }, talk.barge_in).await
}

pub async fn stream(leg: &mut Leg, stream: &Stream) -> Step<Flow> {
    let (duration, audio) = match media::stream(leg, &stream.stream_url).await {
        Ok(found) => found,
        Err(reason) => return skip(leg, format!("Could not fetch streamUrl {}: {reason}", stream.stream_url)).await,
    };
    let media = Media::Audio { url: stream.stream_url.clone() };
    play(leg, Playback { media, duration, loops: stream.loop_count, audio, level: stream.level as f32 }, stream.barge_in).await
}

/// Vonage skips media it cannot play; the customer learns why from an error event.
async fn skip(leg: &mut Leg, reason: String) -> Step<Flow> {
    let payload = json!({"reason": reason, "uuid": leg.row.uuid, "conversation_uuid": leg.row.conversation_uuid});
    leg.side_event("error", payload).await?;
    Ok(Flow::Next)
}

struct Playback {
    media: Media,
    duration: std::time::Duration,
    loops: u32,
    audio: Option<crate::media::Clip>,
    level: f32,
}

async fn play(leg: &mut Leg, playback: Playback, barge_in: bool) -> Step<Flow> {
    let id = leg.play_id();
    let Playback { media, duration, loops, audio, level } = playback;
    leg.control(MediaCommand::Play { id, media, duration, loops, audio, level });
    if barge_in {
        leg.background_playback.push(id);
        return Ok(Flow::Next);
    }
    until_played(leg, id).await?;
    Ok(Flow::Next)
}
