//! Answering-machine detection on the audio of an answered call: how the callee's first words
//! sound (a person says "Hello?" and waits; a machine plays a long greeting), then, for
//! advanced detection, the voicemail beep (one steady tone).
//!
//! The greeting rules are the classic ones (as Asterisk's app_amd): a long silence before any
//! voice, a single voiced stretch longer than a short greeting, or too many words mean a
//! machine; a short greeting followed by silence means a person; a call still undecided at
//! the end of the analysis counts as a person (callers hear a human greeting wait for them).

use super::tap::{rms_dbfs, Activity, VoiceDetector};
use super::{Frame, FRAME_DURATION, SAMPLE_RATE};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Human,
    Machine,
}

/// Why the verdict was reached, for the call's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    InitialSilence,
    LongGreeting,
    ManyWords,
    SilenceAfterGreeting,
    Undecided,
}

#[derive(Debug, Clone, Copy)]
pub struct GreetingRules {
    /// Silence before any voice longer than this: a machine (or a line nobody speaks on).
    pub initial_silence: Duration,
    /// One voiced stretch longer than this: a machine's greeting.
    pub greeting: Duration,
    /// This much silence after some voice: a person waiting for an answer.
    pub after_greeting_silence: Duration,
    /// This many words (voiced stretches) or more: a machine.
    pub max_words: u32,
    /// Undecided after this long: a person.
    pub total: Duration,
}

impl Default for GreetingRules {
    fn default() -> Self {
        GreetingRules {
            initial_silence: Duration::from_millis(2500),
            greeting: Duration::from_millis(1500),
            after_greeting_silence: Duration::from_millis(800),
            max_words: 4,
            total: Duration::from_millis(5000),
        }
    }
}

/// Feeds on received frames until it has a verdict.
pub struct GreetingAnalyzer {
    rules: GreetingRules,
    voice: VoiceDetector,
    elapsed: Duration,
    words: u32,
    heard_voice: bool,
}

impl GreetingAnalyzer {
    pub fn new(rules: GreetingRules) -> GreetingAnalyzer {
        // Short onset and hangover: words, not sentences (a 150 ms pause separates words).
        let voice = VoiceDetector::with(-40.0, Duration::from_millis(60), Duration::from_millis(160));
        GreetingAnalyzer { rules, voice, elapsed: Duration::ZERO, words: 0, heard_voice: false }
    }

    /// The verdict once the audio so far decides it.
    pub fn push(&mut self, frame: &Frame) -> Option<(Verdict, Reason)> {
        self.elapsed += FRAME_DURATION;
        if let Some(Activity::Voice) = self.voice.push(frame) {
            self.heard_voice = true;
            self.words += 1;
            if self.words >= self.rules.max_words {
                return Some((Verdict::Machine, Reason::ManyWords));
            }
        }
        let lasted = self.voice.state_duration();
        match (self.voice.state(), self.heard_voice) {
            (Activity::Silence, false) if lasted >= self.rules.initial_silence => {
                return Some((Verdict::Machine, Reason::InitialSilence))
            }
            (Activity::Voice, _) if lasted >= self.rules.greeting => return Some((Verdict::Machine, Reason::LongGreeting)),
            (Activity::Silence, true) if lasted >= self.rules.after_greeting_silence => {
                return Some((Verdict::Human, Reason::SilenceAfterGreeting))
            }
            _ => {}
        }
        (self.elapsed >= self.rules.total).then_some((Verdict::Human, Reason::Undecided))
    }
}

/// Finds a voicemail beep: one frequency between 300 and 2,500 Hz holding most of the energy
/// of consecutive frames for at least `min_length`.
pub struct BeepDetector {
    min_frames: u32,
    frequency: Option<f32>,
    run: u32,
}

/// Candidate beep frequencies, every 25 Hz (beeps are 400, 440, 850, 1000, 1400 Hz …).
const BEEP_MIN_HZ: f32 = 300.0;
const BEEP_MAX_HZ: f32 = 2500.0;
const BEEP_STEP_HZ: f32 = 25.0;
/// Share of a frame's energy at one frequency for the frame to count as tone.
const TONE_SHARE: f64 = 0.6;

impl BeepDetector {
    pub fn new(min_length: Duration) -> BeepDetector {
        let min_frames = (min_length.as_millis() / FRAME_DURATION.as_millis()).max(1) as u32;
        BeepDetector { min_frames, frequency: None, run: 0 }
    }

    /// The beep's frequency when this frame completes one.
    pub fn push(&mut self, frame: &Frame) -> Option<f32> {
        match dominant_tone(frame) {
            Some(hz) if self.frequency.is_some_and(|f| (f - hz).abs() <= 2.0 * BEEP_STEP_HZ) => self.run += 1,
            Some(hz) => {
                self.frequency = Some(hz);
                self.run = 1;
            }
            None => {
                self.frequency = None;
                self.run = 0;
            }
        }
        (self.run == self.min_frames).then_some(self.frequency).flatten()
    }
}

/// The frequency holding `TONE_SHARE` of a loud enough frame's energy, if any.
fn dominant_tone(frame: &Frame) -> Option<f32> {
    if rms_dbfs(frame) < -45.0 {
        return None;
    }
    let energy: f64 = frame.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    let mut best = (0.0f64, 0.0f32);
    let mut hz = BEEP_MIN_HZ;
    while hz <= BEEP_MAX_HZ {
        let share = goertzel_power(frame, hz) / (energy * frame.len() as f64 / 2.0);
        if share > best.0 {
            best = (share, hz);
        }
        hz += BEEP_STEP_HZ;
    }
    (best.0 >= TONE_SHARE).then_some(best.1)
}

fn goertzel_power(frame: &[i16], hz: f32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(SAMPLE_RATE);
    let coefficient = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in frame {
        let s0 = f64::from(x) + coefficient * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coefficient * s1 * s2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Clip, FRAME_SAMPLES};

    fn frames(clip: &Clip) -> Vec<Frame> {
        clip.samples()
            .chunks_exact(FRAME_SAMPLES)
            .map(|c| {
                let mut f = [0; FRAME_SAMPLES];
                f.copy_from_slice(c);
                f
            })
            .collect()
    }

    /// Bursts of a 300 Hz buzz (voiced, not a steady beep when mixed) standing for words.
    fn words(count: usize, word: Duration, gap: Duration) -> Vec<Frame> {
        let mut out = Vec::new();
        for _ in 0..count {
            out.extend(frames(&Clip::tone(300.0, word, 0.3)));
            out.extend(frames(&Clip::silence(gap)));
        }
        out
    }

    fn verdict(audio: &[Frame]) -> Option<(Verdict, Reason)> {
        let mut analyzer = GreetingAnalyzer::new(GreetingRules::default());
        audio.iter().find_map(|f| analyzer.push(f))
    }

    #[test]
    fn a_short_hello_then_silence_is_a_person() {
        let mut audio = frames(&Clip::silence(Duration::from_millis(400)));
        audio.extend(words(1, Duration::from_millis(500), Duration::from_secs(2)));
        assert_eq!(verdict(&audio), Some((Verdict::Human, Reason::SilenceAfterGreeting)));
    }

    #[test]
    fn a_long_greeting_is_a_machine() {
        let audio = words(1, Duration::from_secs(3), Duration::ZERO);
        assert_eq!(verdict(&audio), Some((Verdict::Machine, Reason::LongGreeting)));
        let chatty = words(6, Duration::from_millis(300), Duration::from_millis(250));
        assert_eq!(verdict(&chatty), Some((Verdict::Machine, Reason::ManyWords)));
    }

    #[test]
    fn silence_on_the_line_is_a_machine() {
        let audio = frames(&Clip::silence(Duration::from_secs(3)));
        assert_eq!(verdict(&audio), Some((Verdict::Machine, Reason::InitialSilence)));
    }

    #[test]
    fn a_beep_is_found_by_its_steady_tone_and_speech_is_not() {
        let mut detector = BeepDetector::new(Duration::from_millis(200));
        let speechlike: Vec<Frame> = (0..50)
            .map(|i| {
                // Two tones changing every frame: no single frequency dominates for long.
                let a = Clip::tone(300.0 + 40.0 * (i % 7) as f32, FRAME_DURATION, 0.2);
                let b = Clip::tone(1700.0 - 90.0 * (i % 5) as f32, FRAME_DURATION, 0.2);
                let mut f = [0; FRAME_SAMPLES];
                for (k, s) in f.iter_mut().enumerate() {
                    *s = a.samples()[k] + b.samples()[k];
                }
                f
            })
            .collect();
        assert!(speechlike.iter().all(|f| detector.push(f).is_none()));
        let beep = frames(&Clip::tone(1000.0, Duration::from_millis(500), 0.4));
        let found: Vec<f32> = beep.iter().filter_map(|f| detector.push(f)).collect();
        assert_eq!(found.len(), 1, "one beep");
        assert!((found[0] - 1000.0).abs() <= 25.0, "{found:?}");
    }
}
