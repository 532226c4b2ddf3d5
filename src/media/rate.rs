//! Streaming sample-rate conversion of live audio in 20 ms frames (a WebSocket's 16 kHz to the
//! engine's 8 kHz and back), with rubato's FFT resampler as for files (`decode::resample`).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// Converts a stream of samples from one rate to another; output comes in whole chunks (20 ms of
/// the output rate), after the filter's short start-up delay.
pub struct RateConverter {
    resampler: Option<Fft<f32>>,
    chunk_in: usize,
    pending: Vec<f32>,
}

impl RateConverter {
    /// From `from` Hz to `to` Hz (equal rates pass samples through).
    pub fn new(from: u32, to: u32) -> Result<RateConverter, String> {
        let chunk_in = (from / 50) as usize;
        let resampler = if from == to {
            None
        } else {
            Some(Fft::<f32>::new(from as usize, to as usize, chunk_in, 1, FixedSync::Both).map_err(|e| e.to_string())?)
        };
        Ok(RateConverter { resampler, chunk_in, pending: Vec::new() })
    }

    /// Feeds `samples`; returns the converted audio ready so far.
    pub fn push(&mut self, samples: &[i16]) -> Vec<i16> {
        let Some(resampler) = self.resampler.as_mut() else { return samples.to_vec() };
        self.pending.extend(samples.iter().map(|&s| f32::from(s) / 32768.0));
        let mut out = Vec::new();
        let mut used = 0;
        while self.pending.len() - used >= self.chunk_in {
            let chunk = &self.pending[used..used + self.chunk_in];
            used += self.chunk_in;
            let Ok(adapter) = InterleavedSlice::new(chunk, 1, chunk.len()) else { break };
            // Chunks are of the size the resampler was made for: it does not fail on them.
            if let Ok(converted) = resampler.process(&adapter, None) {
                out.extend(converted.take_data().iter().map(|&x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16));
            }
        }
        self.pending.drain(..used);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Clip;
    use std::time::Duration;

    #[test]
    fn a_tone_keeps_its_frequency_both_ways() {
        let tone = Clip::tone(1000.0, Duration::from_secs(1), 0.5);
        let mut up = RateConverter::new(8000, 16_000).unwrap();
        let mut wide = Vec::new();
        for frame in tone.samples().chunks(160) {
            wide.extend(up.push(frame));
        }
        assert!((15_000..=16_000).contains(&wide.len()), "{}", wide.len());
        let mut down = RateConverter::new(16_000, 8000).unwrap();
        let mut back = Vec::new();
        for chunk in wide.chunks(100) {
            back.extend(down.push(chunk));
        }
        assert!((7_000..=8_000).contains(&back.len()), "{}", back.len());
        // Zero crossings of the steady middle: 1,000 Hz = 2,000 a second.
        let middle = &back[2000..6000];
        let crossings = middle.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((990..=1010).contains(&crossings), "{crossings} crossings in 0.5 s");
        let mut same = RateConverter::new(8000, 8000).unwrap();
        assert_eq!(same.push(&[1, 2, 3]), vec![1, 2, 3]);
    }
}
