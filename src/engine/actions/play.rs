//! `talk` and `stream`: play into the leg; with bargeIn they run on while later actions start.

use super::{until_played, Flow};
use crate::carrier::{Media, MediaCommand};
use crate::engine::leg::{Leg, Step};
use crate::engine::media::{audio_duration, tts_duration};
use crate::ncco::{Stream, Talk};
use serde_json::json;

pub async fn talk(leg: &mut Leg, talk: &Talk) -> Step<Flow> {
    let media = Media::Tts { text: talk.text.clone(), language: talk.language.clone() };
    play(leg, media, tts_duration(&talk.text), talk.loop_count, talk.barge_in).await
}

pub async fn stream(leg: &mut Leg, stream: &Stream) -> Step<Flow> {
    let duration = match audio_duration(&leg.ctx.client, &stream.stream_url).await {
        Ok(d) => d,
        Err(reason) => {
            // Vonage skips audio it cannot fetch; the customer learns why from an error event.
            let payload = json!({"reason": format!("Could not fetch streamUrl {}: {reason}", stream.stream_url),
                                 "uuid": leg.row.uuid, "conversation_uuid": leg.row.conversation_uuid});
            leg.side_event("error", payload).await?;
            return Ok(Flow::Next);
        }
    };
    play(leg, Media::Audio { url: stream.stream_url.clone() }, duration, stream.loop_count, stream.barge_in).await
}

async fn play(leg: &mut Leg, media: Media, duration: std::time::Duration, loops: u32, barge_in: bool) -> Step<Flow> {
    let id = leg.play_id();
    leg.control(MediaCommand::Play { id, media, duration, loops, audio: None, level: 0.0 });
    if barge_in {
        leg.background_playback.push(id);
        return Ok(Flow::Next);
    }
    until_played(leg, id).await?;
    Ok(Flow::Next)
}
