//! Readers of a leg's real audio that run beside its NCCO: the recorder, the machine detector
//! (and the speech recognizer). Each is a task on the leg's media
//! tap that reports what it found through the leg's `AudioEvents`, which `next` waits on with
//! the carrier's events. Only legs whose carrier has audio (SIP) have a tap.

use crate::media::detect::{BeepDetector, GreetingAnalyzer, GreetingRules, Reason, Verdict};
use crate::media::recorder::{Layout, Recorder};
use crate::media::{Activity, MediaTap, VoiceDetector};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What a reader of the leg's audio found.
#[derive(Debug)]
pub enum AudioEvent {
    /// Recording `id` stopped by itself: `endOnSilence` silence, `timeOut`, or the call's end.
    RecordingEnded(u64),
    /// Answering-machine detection decided, from the callee's greeting.
    Machine { verdict: Verdict, reason: Reason },
    /// A voicemail beep (a steady tone of `hz`) after a machine's greeting.
    Beep { hz: f32 },
}

/// The leg's line from its audio readers.
pub struct AudioEvents {
    sender: mpsc::UnboundedSender<AudioEvent>,
    events: mpsc::UnboundedReceiver<AudioEvent>,
}

impl Default for AudioEvents {
    fn default() -> Self {
        let (sender, events) = mpsc::unbounded_channel();
        AudioEvents { sender, events }
    }
}

impl AudioEvents {
    pub fn sender(&self) -> mpsc::UnboundedSender<AudioEvent> {
        self.sender.clone()
    }

    /// The next event (never None: the leg holds a sender).
    pub async fn next(&mut self) -> Option<AudioEvent> {
        self.events.recv().await
    }
}

/// When a recording stops by itself.
#[derive(Debug, Clone, Copy)]
pub struct RecordingRules {
    pub layout: Layout,
    pub time_out: Duration,
    /// Stop after this much silence from the leg (measured: voice activity on what it says).
    pub end_on_silence: Option<Duration>,
}

/// A recording in progress; `finish` stops it (if it has not stopped) and hands its audio over.
pub struct LiveRecording {
    pub id: u64,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Recorded>,
}

/// A recording's audio and when it ended.
pub struct Recorded {
    pub recorder: Recorder,
    pub ended: DateTime<Utc>,
}

impl LiveRecording {
    pub fn start(tap: &MediaTap, id: u64, rules: RecordingRules, events: mpsc::UnboundedSender<AudioEvent>) -> LiveRecording {
        let mut pairs = tap.subscribe_pairs();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut recorder = Recorder::new(rules.layout);
            let mut voice = VoiceDetector::new();
            let by_itself = loop {
                tokio::select! {
                    _ = &mut stopped => break false,
                    pair = pairs.recv() => match pair {
                        None => break true,
                        Some(pair) => {
                            recorder.push(&pair);
                            voice.push(&pair.received);
                            if recorder.duration() >= rules.time_out {
                                break true;
                            }
                            let silent_for = (voice.state() == Activity::Silence).then(|| voice.state_duration());
                            if matches!((rules.end_on_silence, silent_for), (Some(limit), Some(silent)) if silent >= limit) {
                                break true;
                            }
                        }
                    }
                }
            };
            if by_itself {
                let _ = events.send(AudioEvent::RecordingEnded(id));
            }
            Recorded { recorder, ended: Utc::now() }
        });
        LiveRecording { id, stop: Some(stop), task }
    }

    pub async fn finish(mut self) -> Result<Recorded, String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.map_err(|e| format!("the recorder failed: {e}"))
    }
}

/// The shortest tone taken for a voicemail beep.
const MIN_BEEP: Duration = Duration::from_millis(200);

/// Answering-machine detection on the leg's audio: the greeting's verdict, then (when
/// `wants_beep` and a machine answered) the beep. Dropping it stops the analysis.
pub struct MachineDetection(tokio::task::JoinHandle<()>);

impl MachineDetection {
    pub fn start(tap: &MediaTap, wants_beep: bool, events: mpsc::UnboundedSender<AudioEvent>) -> MachineDetection {
        let mut frames = tap.subscribe_received();
        MachineDetection(tokio::spawn(async move {
            let mut greeting = GreetingAnalyzer::new(GreetingRules::default());
            let mut verdict = None;
            while let Some(frame) = frames.recv().await {
                if let Some((found, reason)) = greeting.push(&frame) {
                    let _ = events.send(AudioEvent::Machine { verdict: found, reason });
                    verdict = Some(found);
                    break;
                }
            }
            if !(wants_beep && verdict == Some(Verdict::Machine)) {
                return;
            }
            let mut beep = BeepDetector::new(MIN_BEEP);
            while let Some(frame) = frames.recv().await {
                if let Some(hz) = beep.push(&frame) {
                    let _ = events.send(AudioEvent::Beep { hz });
                    return;
                }
            }
        }))
    }
}

impl Drop for MachineDetection {
    fn drop(&mut self) {
        self.0.abort();
    }
}
