//! RTP packets (RFC 3550) through `rtp-rs`: what the session sends (one SSRC, a sequence
//! number per packet, the timestamp of the 8 kHz clock) and what it accepts.

use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};

/// Fixed RTP header (no CSRC, no extension) plus the largest payload we send (160 bytes).
pub const MAX_PACKET: usize = 12 + 160;

/// The sending side of one RTP stream.
pub struct RtpSender {
    ssrc: u32,
    seq: u16,
}

impl RtpSender {
    /// A stream with a random SSRC and a random first sequence number (RFC 3550 § 5.1).
    pub fn new() -> RtpSender {
        RtpSender { ssrc: rand::random(), seq: rand::random() }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Writes the next packet into `out` (at least `12 + payload.len()` bytes) and returns its
    /// length; every call takes the next sequence number.
    pub fn build(&mut self, payload_type: u8, timestamp: u32, marker: bool, payload: &[u8], out: &mut [u8]) -> usize {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        RtpPacketBuilder::new()
            .payload_type(payload_type)
            .ssrc(self.ssrc)
            .sequence(Seq::from(seq))
            .timestamp(timestamp)
            .marked(marker)
            .payload(payload)
            .build_into(out)
            // Fails only on a short buffer or a payload type above 127, neither of which the
            // session produces.
            .unwrap_or(0)
    }
}

impl Default for RtpSender {
    fn default() -> Self {
        RtpSender::new()
    }
}

/// The fields of a received packet the session uses.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// Parses an RTP version 2 packet (padding removed by rtp-rs); None for anything else
/// (STUN, RTCP multiplexed on the port, garbage).
pub fn parse(datagram: &[u8]) -> Option<Received<'_>> {
    let reader = RtpReader::new(datagram).ok()?;
    if reader.version() != 2 {
        return None;
    }
    // RTCP multiplexed on the RTP port (RFC 5761) has packet types 200-204, which read as
    // payload types 72-76 with the marker set; they are not media.
    if (72..=76).contains(&reader.payload_type()) {
        return None;
    }
    Some(Received {
        payload_type: reader.payload_type(),
        marker: reader.mark(),
        seq: reader.sequence_number().into(),
        timestamp: reader.timestamp(),
        ssrc: reader.ssrc(),
        payload: reader.payload(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_packets_parse_back_with_consecutive_sequence_numbers() {
        let mut sender = RtpSender::new();
        let mut out = [0u8; MAX_PACKET];
        let len = sender.build(8, 1600, true, &[0xD5; 160], &mut out);
        assert_eq!(len, 172);
        let first = parse(&out[..len]).unwrap();
        assert_eq!((first.payload_type, first.marker, first.timestamp, first.ssrc), (8, true, 1600, sender.ssrc()));
        assert_eq!(first.payload, &[0xD5; 160][..]);
        let mut out2 = [0u8; MAX_PACKET];
        let len = sender.build(8, 1760, false, &[0xD5; 160], &mut out2);
        let second = parse(&out2[..len]).unwrap();
        assert_eq!(second.seq, first.seq.wrapping_add(1));
        assert!(!second.marker);
        assert!(parse(b"not rtp at all").is_none());
    }
}
