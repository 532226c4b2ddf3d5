//! A `Clip`: a whole piece of audio ready to play on a call, 8 kHz mono 16-bit PCM (defined
//! with the sources that play it, `source::Clip`).
//!
//! Clips come from `decode` (stream files, TTS output) and live in the `cache`; they are cheap
//! to clone (the samples are shared), so one cached prompt plays on many calls at once.

pub use super::source::Clip;

/// The telephony sample rate every clip is at (G.711).
pub const RATE_HZ: u32 = super::SAMPLE_RATE;
