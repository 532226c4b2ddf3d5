//! What plays into a leg: clips of 8 kHz mono audio, each with its loop count and level, mixed
//! into one 20 ms frame per tick.

use super::{Frame, FRAME_SAMPLES, SAMPLE_RATE};
use std::sync::Arc;
use std::time::Duration;

/// Audio ready to play: 8 kHz, mono, 16-bit. Cheap to clone (shared samples), so one decoded
/// or synthesized clip can play on many legs at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clip {
    samples: Arc<[i16]>,
}

impl Clip {
    /// Wraps samples that are already 8 kHz mono.
    pub fn new(samples: impl Into<Arc<[i16]>>) -> Clip {
        Clip { samples: samples.into() }
    }

    /// A sine tone (a beep; also what the tests play). `amplitude` 0..=1 of full scale.
    pub fn tone(frequency_hz: f32, duration: Duration, amplitude: f32) -> Clip {
        let count = (duration.as_secs_f64() * SAMPLE_RATE as f64).round() as usize;
        let peak = amplitude.clamp(0.0, 1.0) * i16::MAX as f32;
        let step = 2.0 * std::f32::consts::PI * frequency_hz / SAMPLE_RATE as f32;
        Clip::new((0..count).map(|i| (peak * (step * i as f32).sin()) as i16).collect::<Vec<_>>())
    }

    /// Silence of the given length (a pause).
    pub fn silence(duration: Duration) -> Clip {
        let count = (duration.as_secs_f64() * SAMPLE_RATE as f64).round() as usize;
        Clip::new(vec![0i16; count])
    }

    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.samples.len() as f64 / SAMPLE_RATE as f64)
    }

    /// Memory the samples take (what the audio cache counts).
    pub fn size_bytes(&self) -> usize {
        std::mem::size_of_val::<[i16]>(&self.samples)
    }
}

impl From<Vec<i16>> for Clip {
    fn from(samples: Vec<i16>) -> Clip {
        Clip::new(samples)
    }
}

/// Vonage's `level` (-1..=1, 0 the default) as a linear gain: 0 plays the audio as it is, -1
/// is silent, -0.5 half the amplitude (-6 dB), 1 twice the amplitude (+6 dB, saturating).
/// Vonage documents only the range and the default; this keeps 0 = unchanged and the ends
/// meaningful.
pub fn level_to_gain(level: f32) -> f32 {
    if level.is_nan() {
        return 1.0;
    }
    1.0 + level.clamp(-1.0, 1.0)
}

/// One clip playing: its position, loops left and gain.
struct Playback {
    id: u64,
    clip: Clip,
    position: usize,
    /// Passes still to play including the current one; None plays forever.
    passes_left: Option<u32>,
    gain: f32,
}

/// Live audio from elsewhere (another leg's voice, a WebSocket), one frame per tick.
struct LiveInput {
    id: u64,
    frames: tokio::sync::mpsc::Receiver<Frame>,
    gain: f32,
}

/// More frames than this waiting on a live input are dropped, oldest first: the two clocks
/// feeding and reading it drift, and latency must not grow with the drift (60 ms at most).
const LIVE_BACKLOG_FRAMES: usize = 3;

/// The sources playing on a leg.
#[derive(Default)]
pub(crate) struct Mixer {
    playing: Vec<Playback>,
    live: Vec<LiveInput>,
}

impl Mixer {
    /// Starts `clip` under `id`, replacing what played under that id. `loops` 0 = forever.
    pub fn play(&mut self, id: u64, clip: Clip, loops: u32, level: f32) {
        self.stop(id);
        let passes_left = if loops == 0 { None } else { Some(loops) };
        self.playing.push(Playback { id, clip, position: 0, passes_left, gain: level_to_gain(level) });
    }

    /// Stops `id`; true if it was playing.
    pub fn stop(&mut self, id: u64) -> bool {
        let before = self.playing.len();
        self.playing.retain(|p| p.id != id);
        self.playing.len() != before
    }

    pub fn stop_all(&mut self) {
        self.playing.clear();
    }

    /// Mixes `frames` in as they come (a frame per tick), at Vonage `level`, until they end or
    /// `detach(id)`. Replaces the live input under the same id.
    pub fn attach(&mut self, id: u64, frames: tokio::sync::mpsc::Receiver<Frame>, level: f32) {
        self.detach(id);
        self.live.push(LiveInput { id, frames, gain: level_to_gain(level) });
    }

    /// Stops mixing live input `id`; true if it was attached.
    pub fn detach(&mut self, id: u64) -> bool {
        let before = self.live.len();
        self.live.retain(|l| l.id != id);
        self.live.len() != before
    }

    pub fn is_playing(&self, id: u64) -> bool {
        self.playing.iter().any(|p| p.id == id)
    }

    #[cfg(test)]
    pub fn is_idle(&self) -> bool {
        self.playing.is_empty()
    }

    /// Mixes the next 20 ms of every source into `out` (sum with saturation) and pushes the ids
    /// whose last audio is in this frame onto `finished`.
    pub fn next_frame(&mut self, out: &mut Frame, finished: &mut Vec<u64>) {
        if self.live.is_empty() && self.playing.len() == 1 && self.playing[0].gain == 1.0 {
            // One clip at its own level and nothing live (a talk, a stream): its samples as they
            // are, copied, without the float mix (the same result: exact at gain 1).
            *out = [0; FRAME_SAMPLES];
            advance(&mut self.playing[0], |at, run| out[at..at + run.len()].copy_from_slice(run));
        } else {
            self.mix(out);
        }
        self.playing.retain(|p| {
            let done = p.passes_left == Some(0) || (p.passes_left.is_none() && p.clip.is_empty());
            if done {
                finished.push(p.id);
            }
            !done
        });
    }

    fn mix(&mut self, out: &mut Frame) {
        let mut sum = [0f32; FRAME_SAMPLES];
        for playback in &mut self.playing {
            let gain = playback.gain;
            advance(playback, |at, run| {
                for (acc, &s) in sum[at..at + run.len()].iter_mut().zip(run) {
                    *acc += s as f32 * gain;
                }
            });
        }
        self.live.retain_mut(|input| {
            while input.frames.len() > LIVE_BACKLOG_FRAMES {
                let _ = input.frames.try_recv();
            }
            match input.frames.try_recv() {
                Ok(frame) => {
                    for (acc, &s) in sum.iter_mut().zip(&frame) {
                        *acc += s as f32 * input.gain;
                    }
                    true
                }
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => true,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => false,
            }
        });
        for (o, s) in out.iter_mut().zip(sum) {
            // Rounds half away from zero, as f32::round, without its libm call per sample (x86-64's
            // baseline has no rounding instruction), so the loop vectorizes; `as` saturates.
            *o = (s + 0.5f32.copysign(s)) as i16;
        }
    }
}

/// Plays the next frame's worth of `playback`, looping as it must: `each(offset, run)` for every
/// run of its samples, at the run's offset in the frame. A clip that ends leaves the rest unplayed.
fn advance(playback: &mut Playback, mut each: impl FnMut(usize, &[i16])) {
    let samples = playback.clip.samples();
    let mut filled = 0;
    while filled < FRAME_SAMPLES {
        if playback.position >= samples.len() {
            match &mut playback.passes_left {
                None if samples.is_empty() => break,
                None => playback.position = 0,
                Some(left) if *left > 1 => {
                    *left -= 1;
                    playback.position = 0;
                }
                Some(left) => {
                    *left = 0;
                    break;
                }
            }
            // An empty clip looping a fixed number of times uses up its passes here.
            if samples.is_empty() {
                continue;
            }
        }
        let take = (samples.len() - playback.position).min(FRAME_SAMPLES - filled);
        each(filled, &samples[playback.position..playback.position + take]);
        playback.position += take;
        filled += take;
    }
    if playback.passes_left == Some(1) && playback.position >= samples.len() {
        playback.passes_left = Some(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(mixer: &mut Mixer, n: usize) -> (Vec<Frame>, Vec<(usize, u64)>) {
        let mut out = Vec::new();
        let mut ended = Vec::new();
        for i in 0..n {
            let mut frame = [0i16; FRAME_SAMPLES];
            let mut finished = Vec::new();
            mixer.next_frame(&mut frame, &mut finished);
            ended.extend(finished.into_iter().map(|id| (i, id)));
            out.push(frame);
        }
        (out, ended)
    }

    #[test]
    fn a_clip_plays_its_loops_then_reports_the_frame_it_ended_in() {
        let mut mixer = Mixer::default();
        // 250 samples: frame 0 full, frame 1 holds 90 samples then silence.
        mixer.play(7, Clip::new(vec![1000i16; 250]), 2, 0.0);
        let (out, ended) = frames(&mut mixer, 5);
        // Two passes = 500 samples: frames 0, 1, 2 full, frame 3 holds 20 samples.
        assert_eq!(ended, vec![(3, 7)]);
        assert!(out[2].iter().all(|&s| s == 1000));
        assert!(out[3][..20].iter().all(|&s| s == 1000) && out[3][20..].iter().all(|&s| s == 0));
        assert!(mixer.is_idle());
    }

    #[test]
    fn sources_sum_with_saturation_and_level_scales() {
        let mut mixer = Mixer::default();
        mixer.play(1, Clip::new(vec![30000i16; 160]), 0, 0.0);
        mixer.play(2, Clip::new(vec![30000i16; 160]), 0, 0.0);
        mixer.play(3, Clip::new(vec![-1000i16; 160]), 1, -0.5);
        let (out, ended) = frames(&mut mixer, 1);
        assert_eq!(out[0][0], i16::MAX);
        assert_eq!(ended, vec![(0, 3)]);
        mixer.stop_all();
        mixer.play(4, Clip::new(vec![1000i16; 160]), 1, -1.0);
        assert_eq!(frames(&mut mixer, 1).0[0][0], 0, "level -1 is silent");
        assert_eq!(level_to_gain(0.0), 1.0);
    }

    #[test]
    fn live_input_is_mixed_a_frame_a_tick_with_a_bounded_backlog() {
        let mut mixer = Mixer::default();
        let (tx, rx) = tokio::sync::mpsc::channel(50);
        mixer.attach(9, rx, 0.0);
        mixer.play(1, Clip::new(vec![100i16; 1600]), 0, 0.0);
        for n in 1..=6i16 {
            tx.try_send([n * 1000; FRAME_SAMPLES]).unwrap();
        }
        let (out, ended) = frames(&mut mixer, 3);
        assert!(ended.is_empty(), "live input never finishes a playback");
        // Six waiting, three kept (the newest): 4, 5, 6 thousand, each with the clip's 100.
        assert_eq!([out[0][0], out[1][0], out[2][0]], [4100, 5100, 6100]);
        assert_eq!(frames(&mut mixer, 1).0[0][0], 100, "nothing came: only the clip");
        drop(tx);
        frames(&mut mixer, 1);
        assert!(!mixer.detach(9), "an ended input is dropped");
    }

    /// A lone clip at its own level is copied, not mixed: the same samples as the mix gives
    /// (here beside a silent clip), looping across frame edges, then silence once it ends.
    #[test]
    fn a_lone_clip_plays_as_the_mix_would() {
        let ramp: Vec<i16> = (0..250).map(|i| (i * 131 - 16_000) as i16).collect();
        let mut alone = Mixer::default();
        alone.play(1, Clip::new(ramp.clone()), 3, 0.0);
        let mut mixed = Mixer::default();
        mixed.play(1, Clip::new(ramp.clone()), 3, 0.0);
        mixed.play(2, Clip::new(vec![0i16; 1000]), 1, 0.0);
        let (out, ended) = frames(&mut alone, 6);
        assert_eq!(out, frames(&mut mixed, 6).0);
        let played: Vec<i16> = out.iter().flatten().copied().collect();
        assert_eq!(played[..750], [ramp.clone(), ramp.clone(), ramp].concat()[..]);
        assert!(played[750..].iter().all(|&s| s == 0));
        assert_eq!(ended, vec![(4, 1)]);
    }

    #[test]
    fn forever_loops_until_stopped_and_empty_clips_end_at_once() {
        let mut mixer = Mixer::default();
        mixer.play(1, Clip::new(vec![5i16; 100]), 0, 0.0);
        mixer.play(2, Clip::new(Vec::new()), 0, 0.0);
        mixer.play(3, Clip::new(Vec::new()), 3, 0.0);
        let (out, ended) = frames(&mut mixer, 10);
        assert_eq!(ended, vec![(0, 2), (0, 3)]);
        assert!(out.iter().all(|f| f.iter().all(|&s| s == 5)));
        assert!(mixer.stop(1));
        assert!(!mixer.stop(1));
    }
}
