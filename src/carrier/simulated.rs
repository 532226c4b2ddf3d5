//! The simulated network: deterministic callees on timers (scaled by `time_scale`), so Outdial
//! doubles as a local emulator for voice apps.

use super::behaviour::{Answerer, BehaviourTable, CalleeBehaviour, Outcome};
use super::{Carrier, CarrierEvent, DialRequest, EndReason, LegHandle, MediaCommand, Reporter};
use crate::clock::Clock;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub struct SimulatedNetwork {
    clock: Clock,
    table: BehaviourTable,
}

impl SimulatedNetwork {
    pub fn new(clock: Clock, table: BehaviourTable) -> SimulatedNetwork {
        SimulatedNetwork { clock, table }
    }
}

impl Carrier for SimulatedNetwork {
    fn dial(&self, request: DialRequest) -> LegHandle {
        let (event_tx, events) = Reporter::channel();
        let (control, control_rx) = mpsc::unbounded_channel();
        let behaviour = request.behaviour.unwrap_or_else(|| self.table.for_address(request.to.address()));
        let callee = Callee {
            clock: self.clock,
            behaviour,
            events: event_tx,
            schedule: Vec::new(),
            muted: false,
            earmuffed: false,
            playing: HashMap::new(),
            inbound: request.inbound,
        };
        tokio::spawn(callee.run(control_rx));
        LegHandle { events, control }
    }

    fn name(&self) -> &'static str {
        "simulated"
    }
}

/// Seconds before a refusal that happens without ringing (busy, declined, out of service).
const REFUSAL_S: f64 = 0.5;

struct Callee {
    clock: Clock,
    behaviour: CalleeBehaviour,
    events: Reporter,
    /// Things that will happen, (when, what); not sorted.
    schedule: Vec<(Instant, Scheduled)>,
    /// The callee's audio is not sent into the call.
    muted: bool,
    /// The callee hears nothing.
    earmuffed: bool,
    /// What is playing, by playback id.
    playing: HashMap<u64, String>,
    /// A sandbox caller of one of our numbers: it waits for our answer (or hangs up after
    /// `ring_s` when its outcome is not to wait: busy, decline, unavailable…).
    inbound: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Scheduled {
    Emit(CarrierEvent),
    Answer,
    End(EndReason),
}

impl Callee {
    fn at(&mut self, after_s: f64, what: Scheduled) {
        let when = self.clock.deadline(Duration::from_secs_f64(after_s.max(0.0)));
        self.schedule.push((when, what));
    }

    async fn run(mut self, mut control: mpsc::UnboundedReceiver<MediaCommand>) {
        let b = self.behaviour.clone();
        match b.outcome {
            _ if self.inbound => {
                if !matches!(b.outcome, Outcome::Answer | Outcome::RingForever) {
                    self.at(b.ring_s, Scheduled::End(EndReason::RemoteHangup));
                }
            }
            Outcome::OutOfService => self.at(REFUSAL_S, Scheduled::End(EndReason::OutOfService)),
            Outcome::Decline => self.at(REFUSAL_S, Scheduled::End(EndReason::Declined)),
            Outcome::Busy => {
                let _ = self.events.report(CarrierEvent::Ringing);
                self.at(REFUSAL_S.max(b.ring_s.min(1.0)), Scheduled::End(EndReason::Busy));
            }
            Outcome::Unavailable => {
                let _ = self.events.report(CarrierEvent::Ringing);
                self.at(b.ring_s, Scheduled::End(EndReason::Unavailable));
            }
            Outcome::RingForever => {
                let _ = self.events.report(CarrierEvent::Ringing);
            }
            Outcome::Answer => {
                let _ = self.events.report(CarrierEvent::Ringing);
                self.at(b.ring_s, Scheduled::Answer);
            }
        }
        loop {
            let next = self.schedule.iter().enumerate().min_by_key(|(_, (when, _))| *when).map(|(i, (when, _))| (i, *when));
            let sleep_until = next.map(|(_, when)| when).unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                command = control.recv() => match command {
                    None | Some(MediaCommand::Hangup) => return,
                    Some(MediaCommand::Ring) => self.log("the caller hears ringing".into()),
                    Some(MediaCommand::Answer) => {
                        // The caller gives up no more once answered.
                        self.schedule.retain(|(_, s)| !matches!(s, Scheduled::End(_)));
                        self.answer();
                    }
                    Some(MediaCommand::Reject(code)) => {
                        self.log(format!("the call was refused ({code})"));
                        return;
                    }
                    Some(MediaCommand::Play { id, duration, loops, media, .. }) => {
                        let what = match &media {
                            super::Media::Tts { text, .. } => format!("talk \"{text}\""),
                            super::Media::Audio { url } => format!("stream {url}"),
                        };
                        self.log(if self.earmuffed { format!("did not hear {what} (earmuffed)") } else { format!("heard {what}") });
                        self.playing.insert(id, what);
                        if loops > 0 {
                            let total = duration.as_secs_f64() * f64::from(loops);
                            self.at(total, Scheduled::Emit(CarrierEvent::PlaybackFinished(id)));
                        }
                    }
                    Some(MediaCommand::StopPlayback { id }) => {
                        self.schedule.retain(|(_, s)| *s != Scheduled::Emit(CarrierEvent::PlaybackFinished(id)));
                        if let Some(what) = self.playing.remove(&id) {
                            self.log(format!("stopped {what}"));
                        }
                    }
                    Some(MediaCommand::Refer(uri)) => {
                        // The sandbox callee's network takes every transfer.
                        self.log(format!("transferred to {uri} (REFER)"));
                        self.at(0.0, Scheduled::Emit(CarrierEvent::Transferred { code: 200 }));
                    }
                    Some(MediaCommand::SendDtmf(digits)) => {
                        self.log(if self.earmuffed { format!("did not hear DTMF {digits} (earmuffed)") } else { format!("heard DTMF {digits}") });
                    }
                    Some(MediaCommand::SetMuted(muted)) => {
                        self.muted = muted;
                        self.log(if muted { "muted: the callee's audio is not sent".into() } else { "unmuted".into() });
                    }
                    Some(MediaCommand::SetEarmuffed(earmuffed)) => {
                        self.earmuffed = earmuffed;
                        self.log(if earmuffed { "earmuffed: the callee hears nothing".into() } else { "unearmuffed".into() });
                    }
                },
                _ = tokio::time::sleep_until(sleep_until) => {
                    let Some((index, _)) = next else { continue };
                    let (_, what) = self.schedule.swap_remove(index);
                    match what {
                        Scheduled::Emit(event) => {
                            if let CarrierEvent::PlaybackFinished(id) = event {
                                self.playing.remove(&id);
                            }
                            let _ = self.events.report(event);
                        }
                        Scheduled::Answer => self.answer(),
                        Scheduled::End(reason) => {
                            let _ = self.events.report(CarrierEvent::Ended(reason));
                            return;
                        }
                    }
                }
            }
        }
    }

    fn log(&self, line: String) {
        let _ = self.events.report(CarrierEvent::Log(line));
    }

    /// Answered: the callee's timed behaviour starts now.
    fn answer(&mut self) {
        let b = self.behaviour.clone();
        let _ = self.events.report(CarrierEvent::Answered { by_machine: b.answered_by == Answerer::Machine });
        if let Some(beep) = b.beep_after_s {
            self.at(beep, Scheduled::Emit(CarrierEvent::Beep));
        }
        for press in &b.dtmf {
            // Keys of one entry follow each other 100 ms apart, as a person types.
            for (i, key) in press.value.chars().enumerate() {
                self.at(press.after_s + 0.1 * i as f64, Scheduled::Emit(CarrierEvent::Dtmf(key)));
            }
        }
        for said in &b.speech {
            self.at(said.after_s, Scheduled::Emit(CarrierEvent::Speech(said.value.clone())));
        }
        if let Some(after) = b.hangup_after_s {
            self.at(after, Scheduled::End(EndReason::RemoteHangup));
        }
    }
}
