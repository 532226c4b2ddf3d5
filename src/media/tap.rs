//! Taps: where the audio of a leg goes besides the wire. Every tick of the session clock hands
//! each subscriber one 20 ms frame, so a consumer keeps wall time even when the far end sends
//! nothing (silence then). Consumers are a recorder (mono: what the leg says; split: what it
//! says and what it hears, aligned per frame), a speech recognizer, a WebSocket stream and the
//! silence/voice measurement below.

use super::{Frame, FRAME_DURATION};
use std::time::Duration;
use tokio::sync::mpsc;

/// Frames a subscriber may fall behind (10 s) before frames are dropped for it.
pub const TAP_CAPACITY: usize = 500;

/// One tick of a leg's audio in both directions.
#[derive(Debug, Clone, Copy)]
pub struct FramePair {
    /// What the far end said (after the mute gate: silence while the leg is muted).
    pub received: Frame,
    /// What was sent to the far end (after level and the earmuff gate).
    pub sent: Frame,
}

#[derive(Default)]
pub(crate) struct Taps {
    received: Vec<mpsc::Sender<Frame>>,
    pairs: Vec<mpsc::Sender<FramePair>>,
    /// Frames dropped because a subscriber was full.
    pub dropped: u64,
    /// The session stopped: no more frames, new subscriptions end at once.
    closed: bool,
}

impl Taps {
    pub fn subscribe_received(&mut self) -> mpsc::Receiver<Frame> {
        let (tx, rx) = mpsc::channel(TAP_CAPACITY);
        if !self.closed {
            self.received.push(tx);
        }
        rx
    }

    pub fn subscribe_pairs(&mut self) -> mpsc::Receiver<FramePair> {
        let (tx, rx) = mpsc::channel(TAP_CAPACITY);
        if !self.closed {
            self.pairs.push(tx);
        }
        rx
    }

    /// Ends every subscription (their receivers drain, then get None).
    pub fn close(&mut self) {
        self.closed = true;
        self.received.clear();
        self.pairs.clear();
    }

    /// Hands the tick's frames to every subscriber; forgets the ones that went away.
    pub fn deliver(&mut self, received: &Frame, sent: &Frame) {
        let mut dropped = 0;
        self.received.retain(|tx| match tx.try_send(*received) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                dropped += 1;
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        self.pairs.retain(|tx| match tx.try_send(FramePair { received: *received, sent: *sent }) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                dropped += 1;
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        self.dropped += dropped;
    }
}

/// Root-mean-square level of a frame in dBFS (a full-scale sine is -3; digital silence -inf).
pub fn rms_dbfs(frame: &[i16]) -> f32 {
    let mean_square = frame.iter().map(|&x| (x as f32) * (x as f32)).sum::<f32>() / frame.len().max(1) as f32;
    20.0 * (mean_square.sqrt() / 32768.0).log10()
}

/// Whether the far end is speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Silence,
    Voice,
}

/// Energy-based voice activity over received frames, for `endOnSilence`, speech start and
/// machine detection (greeting length, words, silence after): a frame louder than the
/// threshold is voiced; `onset` of voiced frames starts voice, `hangover` of quiet ones ends it.
pub struct VoiceDetector {
    threshold_dbfs: f32,
    onset_frames: u32,
    hangover_frames: u32,
    state: Activity,
    /// Consecutive frames disagreeing with `state`.
    run: u32,
    /// Frames since `state` last changed.
    in_state: u32,
}

impl VoiceDetector {
    /// -40 dBFS, 60 ms onset, 300 ms hangover: speech over G.711 is -30..-15 dBFS, a quiet
    /// line below -50.
    pub fn new() -> VoiceDetector {
        VoiceDetector::with(-40.0, Duration::from_millis(60), Duration::from_millis(300))
    }

    pub fn with(threshold_dbfs: f32, onset: Duration, hangover: Duration) -> VoiceDetector {
        let frames = |d: Duration| (d.as_millis() / FRAME_DURATION.as_millis()).max(1) as u32;
        VoiceDetector {
            threshold_dbfs,
            onset_frames: frames(onset),
            hangover_frames: frames(hangover),
            state: Activity::Silence,
            run: 0,
            in_state: 0,
        }
    }

    /// Feeds one frame; returns the new state when it changes.
    pub fn push(&mut self, frame: &[i16]) -> Option<Activity> {
        let voiced = rms_dbfs(frame) > self.threshold_dbfs;
        self.in_state += 1;
        let agrees = voiced == (self.state == Activity::Voice);
        if agrees {
            self.run = 0;
            return None;
        }
        self.run += 1;
        let needed = if voiced { self.onset_frames } else { self.hangover_frames };
        if self.run < needed {
            return None;
        }
        self.state = if voiced { Activity::Voice } else { Activity::Silence };
        // The new state began `run` frames ago.
        self.in_state = self.run;
        self.run = 0;
        Some(self.state)
    }

    pub fn state(&self) -> Activity {
        self.state
    }

    /// How long the current state has lasted (counted from its first frame).
    pub fn state_duration(&self) -> Duration {
        FRAME_DURATION * self.in_state
    }
}

impl Default for VoiceDetector {
    fn default() -> Self {
        VoiceDetector::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::FRAME_SAMPLES;

    #[test]
    fn voice_starts_after_the_onset_and_ends_after_the_hangover() {
        let loud = [8000i16; FRAME_SAMPLES];
        let quiet = [3i16; FRAME_SAMPLES];
        let mut vad = VoiceDetector::new();
        assert_eq!(vad.push(&loud), None);
        assert_eq!(vad.push(&loud), None);
        assert_eq!(vad.push(&loud), Some(Activity::Voice));
        assert_eq!(vad.state_duration(), Duration::from_millis(60));
        let changes: Vec<_> = (0..15).filter_map(|_| vad.push(&quiet)).collect();
        assert_eq!(changes, vec![Activity::Silence]);
        assert_eq!(vad.state_duration(), Duration::from_millis(300));
        assert!(rms_dbfs(&quiet) < -60.0 && rms_dbfs(&loud) > -13.0);
    }

    #[tokio::test]
    async fn subscribers_get_every_frame_and_closed_ones_are_forgotten() {
        let mut taps = Taps::default();
        let mut heard = taps.subscribe_received();
        let pairs = taps.subscribe_pairs();
        drop(pairs);
        taps.deliver(&[1; FRAME_SAMPLES], &[2; FRAME_SAMPLES]);
        assert_eq!(heard.recv().await.unwrap()[0], 1);
        assert!(taps.pairs.is_empty());
    }
}
