//! A `Clip`: a whole piece of audio ready to play on a call, 8 kHz mono 16-bit PCM.
//!
//! Clips come from `decode` (stream files, TTS output) and live in the `cache`; they are cheap
//! to clone (the samples are shared), so one cached prompt plays on many calls at once.

use std::sync::Arc;
use std::time::Duration;

/// The telephony sample rate every clip is at (G.711).
pub const RATE_HZ: u32 = 8000;

/// 8 kHz mono i16 samples, shared.
#[derive(Clone, PartialEq, Eq)]
pub struct Clip(pub Arc<[i16]>);

impl Clip {
    pub fn new(samples: Vec<i16>) -> Clip {
        Clip(samples.into())
    }

    pub fn samples(&self) -> &[i16] {
        &self.0
    }

    /// Number of samples (at 8 kHz).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How long the clip plays.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.0.len() as u64 * 1_000_000 / RATE_HZ as u64)
    }

    /// Memory the samples take (what the audio cache counts).
    pub fn size_bytes(&self) -> usize {
        std::mem::size_of_val::<[i16]>(&self.0)
    }
}

impl From<Vec<i16>> for Clip {
    fn from(samples: Vec<i16>) -> Clip {
        Clip::new(samples)
    }
}

impl std::fmt::Debug for Clip {
    /// The length, not thousands of samples.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clip({} samples, {:?})", self.len(), self.duration())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_and_size_follow_the_sample_count() {
        let clip = Clip::new(vec![0; 12_000]);
        assert_eq!(clip.duration(), Duration::from_millis(1500));
        assert_eq!(clip.size_bytes(), 24_000);
        assert_eq!(clip.clone(), clip);
        assert!(Clip::new(Vec::new()).is_empty());
    }
}
