//! The media engine: audio for SIP legs. One RTP session per leg (G.711 µ-law/A-law, 20 ms
//! packets paced by a clock, RFC 4733 DTMF both ways, symmetric RTP, a small jitter buffer,
//! comfort silence), what plays into it (clips mixed at a level) and taps on what it hears
//! (frames for the recorder, speech recognition and streaming; voice activity).
//!
//! Audio only: no SIP, no SQL, no HTTP. The SIP carrier hands a session its socket, the far
//! end's address and the negotiated codec; the engine plays clips and reads events and taps.
//! All audio here is 8 kHz mono 16-bit: `decode` (files) and `tts` (speech) make `Clip`s, kept
//! in `cache`. The process's counters over every session, live and closed, are in `totals()`.

pub mod cache;
pub mod clip;
pub mod codec;
pub mod decode;
pub mod detect;
mod deviation;
pub mod dtmf;
mod interarrival;
mod jitter;
pub mod rate;
pub mod recorder;
pub mod rtp;
mod session;
pub mod source;
pub mod tap;
mod totals;
pub mod tts;
mod work;

use std::time::Duration;

pub use codec::Codec;
pub use deviation::DeviationHistogram;
pub use interarrival::{JitterHistogram, JITTER_EDGES_MS};
pub use session::{MediaHandle, MediaSession, MediaStats, MediaTap};
pub use totals::{totals, MediaTotals};
pub use work::WorkHistogram;
pub use source::{level_to_gain, Clip};
pub use tap::{rms_dbfs, Activity, FramePair, VoiceDetector};

/// The one sample rate of the engine (G.711's).
pub const SAMPLE_RATE: u32 = 8000;
/// Samples per packet: 20 ms at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// The packet time (ptime 20).
pub const FRAME_DURATION: Duration = Duration::from_millis(20);

/// 20 ms of 8 kHz mono audio.
pub type Frame = [i16; FRAME_SAMPLES];

/// What a session reports to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// A finite playback's last audio was sent (not reported for `stop`).
    PlaybackFinished(u64),
    /// A digit the far end pressed (RFC 4733), once per key press.
    Dtmf { digit: char, duration_ms: u32 },
    /// The digits queued by `send_dtmf` have all gone out.
    DtmfSent,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("'{0}' is not a DTMF digit: use 0-9, *, #, A-D, or p for a 500 ms pause")]
    InvalidDigit(char),
}

#[cfg(test)]
mod tests;
