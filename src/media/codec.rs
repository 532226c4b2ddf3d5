//! G.711 (ITU-T, RFC 3551 static payload types 0 and 8) through `audio-codec`: one byte per
//! sample at 8 kHz, so a 20 ms frame is 160 samples in and 160 bytes out.

use audio_codec::pcma::{PcmaDecoder, PcmaEncoder};
use audio_codec::pcmu::{PcmuDecoder, PcmuEncoder};
use audio_codec::{Decoder, Encoder};

/// The audio codec of a leg, as the SDP answer chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// G.711 µ-law, RTP payload type 0.
    Pcmu,
    /// G.711 A-law, RTP payload type 8.
    Pcma,
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    pub fn from_payload_type(payload_type: u8) -> Option<Codec> {
        match payload_type {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The SDP encoding name (`a=rtpmap:0 PCMU/8000`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The byte that decodes to (near) zero: what a silent frame is made of.
    pub fn silence_byte(self) -> u8 {
        match self {
            Codec::Pcmu => 0xFF,
            Codec::Pcma => 0xD5,
        }
    }

    pub(crate) fn encoder(self) -> G711Encoder {
        match self {
            Codec::Pcmu => G711Encoder::Pcmu(PcmuEncoder::new()),
            Codec::Pcma => G711Encoder::Pcma(PcmaEncoder::new()),
        }
    }

    pub(crate) fn decoder(self) -> G711Decoder {
        match self {
            Codec::Pcmu => G711Decoder::Pcmu(PcmuDecoder::new()),
            Codec::Pcma => G711Decoder::Pcma(PcmaDecoder::new()),
        }
    }
}

/// Static dispatch over the two laws (no boxing on the per-frame path).
pub(crate) enum G711Encoder {
    Pcmu(PcmuEncoder),
    Pcma(PcmaEncoder),
}

impl G711Encoder {
    /// Encodes `pcm` into `out` (at least `pcm.len()` bytes); returns the bytes written.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        let written = match self {
            G711Encoder::Pcmu(e) => e.encode_into(pcm, out),
            G711Encoder::Pcma(e) => e.encode_into(pcm, out),
        };
        // G.711 fails only on a short output buffer, which the callers size.
        written.unwrap_or(0)
    }
}

pub(crate) enum G711Decoder {
    Pcmu(PcmuDecoder),
    Pcma(PcmaDecoder),
}

impl G711Decoder {
    /// Decodes a payload into samples (one per byte).
    pub fn decode(&mut self, payload: &[u8]) -> Vec<i16> {
        let mut pcm = vec![0i16; payload.len()];
        let written = match self {
            G711Decoder::Pcmu(d) => d.decode_into(payload, &mut pcm),
            G711Decoder::Pcma(d) => d.decode_into(payload, &mut pcm),
        };
        pcm.truncate(written.unwrap_or(0));
        pcm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_bytes_decode_to_near_zero_and_a_sine_round_trips() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let silence = codec.decoder().decode(&[codec.silence_byte(); 160]);
            assert!(silence.iter().all(|s| s.abs() <= 8), "{codec:?} silence decodes to {:?}", &silence[..4]);
            let sine: Vec<i16> = (0..160).map(|i| (8000.0 * (i as f32 * 0.785).sin()) as i16).collect();
            let mut bytes = [0u8; 160];
            assert_eq!(codec.encoder().encode(&sine, &mut bytes), 160);
            let back = codec.decoder().decode(&bytes);
            let worst = sine.iter().zip(&back).map(|(a, b)| (a - b).abs()).max().unwrap();
            assert!(worst < 300, "{codec:?} round trip error {worst}");
            assert_eq!(Codec::from_payload_type(codec.payload_type()), Some(codec));
        }
    }
}
