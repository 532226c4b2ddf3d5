//! The NCCO interpreter: a loop over actions, one module per action. Each action waits on the
//! leg's carrier events and timers through `next`, and says what comes after it.

mod connect;
mod conversation;
mod detection;
mod input;
mod notify;
mod play;
mod record;

pub use detection::detect_machine;
pub use conversation::Rooms;
pub use record::BackgroundRecording;

use super::audio_tasks::AudioEvent;
use super::leg::{recv_command, Leg, Step, Stop};
use crate::carrier::{CarrierEvent, MediaCommand, Reported};
use crate::ncco::{Action, Ncco};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// What runs after an action.
pub enum Flow {
    Next,
    /// A webhook answered with an NCCO: it replaces the rest.
    Replace(Ncco),
}

pub async fn run_ncco(leg: &mut Leg, ncco: Ncco) -> Step<()> {
    let mut queue: VecDeque<Action> = ncco.0.into();
    let result = loop {
        let Some(action) = queue.pop_front() else { break Ok(()) };
        let flow = match action {
            Action::Talk(talk) => play::talk(leg, &talk).await,
            Action::Stream(stream) => play::stream(leg, &stream).await,
            Action::Wait(wait) => pause(leg, Duration::from_secs_f64(wait.timeout_s)).await.map(|_| Flow::Next),
            Action::Input(input) => input::input(leg, &input).await,
            Action::Notify(notify) => notify::notify(leg, &notify).await,
            Action::Record(record) => record::record(leg, &record).await,
            Action::Connect(connect) => connect::connect(leg, &connect).await,
            Action::Conversation(conversation) => conversation::conversation(leg, &conversation).await,
            Action::Transfer(transfer) => conversation::transfer(leg, &transfer).await,
        };
        match flow {
            Ok(Flow::Next) => {}
            Ok(Flow::Replace(ncco)) => queue = ncco.0.into(),
            // PUT transfer: whatever runs or waits is replaced, prompts stop.
            Err(Stop::Transfer(ncco)) => {
                stop_background_playback(leg);
                queue = ncco.0.into();
            }
            Err(stop) => break Err(stop),
        }
    };
    if leg.media.is_some() && leg.background_recording.is_some() && matches!(result, Ok(()) | Err(Stop::Platform | Stop::Hangup)) {
        // The call ends now; its recording is encoded after (encoders are queued one per core,
        // and a caller must not stay on the line meanwhile).
        leg.disconnect_now();
    }
    record::finish_background(leg).await?;
    result
}

/// What `next` saw.
pub enum Signal {
    Event(CarrierEvent),
    /// One of the leg's audio readers finished something (see `audio_tasks`).
    Audio(AudioEvent),
    Deadline,
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// The next carrier event, or `deadline`. The callee hanging up (Err Remote) and length_timer
/// (Err Platform) end the leg from here. A key pressed while a bargeIn prompt plays stops it
/// and is kept for the next input.
pub async fn next(leg: &mut Leg, deadline: Option<Instant>) -> Step<Signal> {
    let until = deadline.unwrap_or_else(far_future);
    let event = loop {
        let hangup_at = leg.hangup_at.unwrap_or_else(far_future);
        let Some(handle) = leg.handle.as_mut() else { return Err(Stop::Internal("no carrier leg".into())) };
        tokio::select! {
            event = handle.events.recv() => match event {
                Some(Reported { event: CarrierEvent::Log(line), wall, .. }) => {
                    // Written at once, so the history shows an effect as soon as it happens.
                    leg.log_at(&line, wall);
                    leg.write(crate::engine::store::Change::default()).await?;
                }
                Some(Reported { event: CarrierEvent::Sip(facts), .. }) => leg.pending_sip = Some(facts),
                Some(Reported { event: CarrierEvent::Media(tap), .. }) => leg.media = Some(tap),
                other => break other,
            },
            Some(found) = leg.audio_events.next() => return Ok(Signal::Audio(found)),
            _ = tokio::time::sleep_until(hangup_at) => {
                // Out of credit unless the account was topped up meanwhile.
                if !leg.credit_extended().await? {
                    return Err(Stop::Platform);
                }
            }
            _ = tokio::time::sleep_until(until) => return Ok(Signal::Deadline),
            Some(wake) = recv_command(&mut leg.commands) => crate::engine::commands::apply_pending(leg, wake).await?,
        }
    };
    let Some(Reported { event, wall, at }) = event else { return Err(Stop::Remote) };
    match event {
        CarrierEvent::Ended(reason) => {
            // The call ended then, however late the leg got to it.
            leg.callee_hung_up = Some((wall, at));
            leg.disconnected_owed = reason == crate::carrier::EndReason::Disconnected;
            Err(Stop::Remote)
        }
        CarrierEvent::Beep => {
            leg.beeped = true;
            Ok(Signal::Event(CarrierEvent::Beep))
        }
        CarrierEvent::Dtmf(key) => {
            input::on_key(leg, key, wall).await?;
            Ok(Signal::Event(CarrierEvent::Dtmf(key)))
        }
        other => Ok(Signal::Event(other)),
    }
}

/// Lets `duration` of simulated time pass on the leg.
pub async fn pause(leg: &mut Leg, duration: Duration) -> Step<()> {
    let deadline = leg.ctx.clock.deadline(duration);
    while let Signal::Event(_) = next(leg, Some(deadline)).await? {}
    Ok(())
}

/// Waits until playback `id` ends (loops = 0 plays until the leg ends).
pub async fn until_played(leg: &mut Leg, id: u64) -> Step<()> {
    loop {
        if let Signal::Event(CarrierEvent::PlaybackFinished(done)) = next(leg, None).await? {
            if done == id {
                return Ok(());
            }
        }
    }
}

/// Stops bargeIn prompts still playing.
pub fn stop_background_playback(leg: &mut Leg) {
    for id in std::mem::take(&mut leg.background_playback) {
        leg.control(MediaCommand::StopPlayback { id });
    }
}
