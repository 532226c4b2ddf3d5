//! Readers of a leg's real audio that run beside its NCCO: the recorder, the machine detector
//! and speech capture (for a speech recognizer). Each is a task on the leg's media
//! tap that reports what it found through the leg's `AudioEvents`, which `next` waits on with
//! the carrier's events. Only legs whose carrier has audio (SIP) have a tap.

use crate::media::detect::{BeepDetector, GreetingAnalyzer, GreetingRules, Reason, Verdict};
use crate::media::recorder::{Layout, Recorder};
use crate::media::{Activity, MediaTap, VoiceDetector};
use crate::speech::{RecognitionOptions, SpeechRecognizer, Transcript};
use std::sync::Arc;
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
    /// A speech `input` has its result.
    Speech(SpeechOutcome),
}

/// What a speech `input` heard.
#[derive(Debug)]
pub enum SpeechOutcome {
    /// The caller spoke; the recognizer's readings, best first (empty: not understood), and
    /// Vonage's `timeout_reason` (`end_on_silence_timeout`, `max_duration`).
    Heard { results: Vec<Transcript>, timeout_reason: &'static str },
    /// Nobody spoke within `startTimeout`.
    NothingSaid,
    /// The recognizer failed; the message goes to `speech.error`.
    Failed(String),
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

/// How a speech `input` listens (Vonage's `speech` settings).
#[derive(Debug, Clone)]
pub struct SpeechRules {
    pub options: RecognitionOptions,
    /// Nobody spoke this long after the input started: `start_timeout`.
    pub start_timeout: Duration,
    /// This much silence after speech ends the input.
    pub end_on_silence: Duration,
    /// Longest speech, from its start.
    pub max_duration: Duration,
}

/// Streams what the caller says to the recognizer until their speech ends, then reports the
/// outcome. Dropping it (a key pressed: DTMF overrides speech) abandons the recognition.
pub struct SpeechCapture(tokio::task::JoinHandle<()>);

impl SpeechCapture {
    pub fn start(tap: &MediaTap, recognizer: Arc<dyn SpeechRecognizer>, rules: SpeechRules, events: mpsc::UnboundedSender<AudioEvent>) -> SpeechCapture {
        // Subscribed before the recognizer connects: the caller's first words wait in the tap.
        let frames = tap.subscribe_received();
        SpeechCapture(tokio::spawn(async move {
            let outcome = capture(frames, recognizer, rules).await;
            let _ = events.send(AudioEvent::Speech(outcome));
        }))
    }
}

impl Drop for SpeechCapture {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn capture(mut frames: mpsc::Receiver<crate::media::Frame>, recognizer: Arc<dyn SpeechRecognizer>, rules: SpeechRules) -> SpeechOutcome {
    let recognition = match recognizer.start(rules.options.clone()).await {
        Ok(recognition) => recognition,
        Err(e) => return SpeechOutcome::Failed(e.to_string()),
    };
    let mut voice = VoiceDetector::with(-40.0, Duration::from_millis(60), rules.end_on_silence);
    let mut waited = Duration::ZERO;
    let mut spoken: Option<Duration> = None;
    let timeout_reason = loop {
        // The call ended: recognize what was said so far.
        let Some(frame) = frames.recv().await else { break "end_on_silence_timeout" };
        if recognition.audio.try_send(frame).is_err() {
            // Closed: the recognition failed (its result says why); full: the server stalled.
            break "end_on_silence_timeout";
        }
        match (voice.push(&frame), spoken.as_mut()) {
            (Some(Activity::Voice), None) => spoken = Some(voice.state_duration()),
            (Some(Activity::Silence), Some(_)) => break "end_on_silence_timeout",
            (_, Some(length)) => {
                *length += crate::media::FRAME_DURATION;
                if *length >= rules.max_duration {
                    break "max_duration";
                }
            }
            (_, None) => {
                waited += crate::media::FRAME_DURATION;
                if waited >= rules.start_timeout {
                    return SpeechOutcome::NothingSaid;
                }
            }
        }
    };
    match recognition.finish().await {
        Ok(results) => SpeechOutcome::Heard { results, timeout_reason },
        Err(e) => SpeechOutcome::Failed(e.to_string()),
    }
}
