//! The receive side's small jitter buffer. Decoded packets are kept by RTP timestamp and played
//! out one 20 ms frame per tick of the session clock, `DEPTH_FRAMES` behind the first arrival:
//! a packet reordered by up to that much still plays in order, one later than its turn is
//! dropped, a duplicate is dropped, a gap (loss, silence suppression, a DTMF event) plays as
//! silence. Keying by timestamp rather than sequence number keeps time across telephone-event
//! packets, which share the sequence space, and handles any packet size.

use super::{Frame, FRAME_SAMPLES};
use std::collections::{BTreeMap, VecDeque};

/// Frames of delay before playout starts (40 ms): the reordering the buffer absorbs.
pub const DEPTH_FRAMES: u32 = 2;
/// More than this buffered (a sender running fast, a burst after a stall) and playout jumps
/// forward to `DEPTH_FRAMES` behind the newest audio.
const MAX_BUFFERED_SAMPLES: i64 = 10 * FRAME_SAMPLES as i64;
/// A packet this far ahead of playout is a new timeline (the far end restarted): re-anchor.
const RESYNC_AHEAD_SAMPLES: i64 = 50 * FRAME_SAMPLES as i64;
/// Packets this far behind playout, `RESYNC_BEHIND_PACKETS` in a row, are a timeline that went
/// back (a sender that does not advance timestamps over a pause): re-anchor rather than drop
/// the rest of the call. A single stray old packet is only late.
const RESYNC_BEHIND_SAMPLES: i64 = 4 * FRAME_SAMPLES as i64;
const RESYNC_BEHIND_PACKETS: u32 = 3;
/// Sequence numbers remembered to drop duplicates.
const RECENT_SEQS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing received yet (or just reset).
    Idle,
    /// Anchored, waiting `DEPTH_FRAMES` ticks before playing.
    Filling(u32),
    Playing,
}

/// What became of an inserted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    Queued,
    Late,
    Duplicate,
}

pub(crate) struct JitterBuffer {
    state: State,
    ssrc: Option<u32>,
    /// Extended timestamps: i64 around the first packet's timestamp, so wrapping is handled.
    reference: i64,
    next: i64,
    packets: BTreeMap<i64, Vec<i16>>,
    recent: VecDeque<u16>,
    /// Consecutive packets far behind playout.
    behind_run: u32,
}

impl JitterBuffer {
    pub fn new() -> JitterBuffer {
        JitterBuffer {
            state: State::Idle,
            ssrc: None,
            reference: 0,
            next: 0,
            packets: BTreeMap::new(),
            recent: VecDeque::with_capacity(RECENT_SEQS),
            behind_run: 0,
        }
    }

    fn extend(&self, timestamp: u32) -> i64 {
        let delta = timestamp.wrapping_sub(self.reference as u32) as i32;
        self.reference + delta as i64
    }

    fn anchor(&mut self, ssrc: u32, timestamp: u32) {
        self.ssrc = Some(ssrc);
        self.reference = timestamp as i64;
        self.next = timestamp as i64;
        self.packets.clear();
        self.behind_run = 0;
        self.state = State::Filling(0);
    }

    /// Queues one decoded packet.
    pub fn insert(&mut self, ssrc: u32, seq: u16, timestamp: u32, samples: Vec<i16>) -> Insert {
        if self.state == State::Idle || self.ssrc != Some(ssrc) {
            self.anchor(ssrc, timestamp);
            self.recent.clear();
        }
        if self.recent.contains(&seq) {
            return Insert::Duplicate;
        }
        if self.recent.len() == RECENT_SEQS {
            self.recent.pop_front();
        }
        self.recent.push_back(seq);

        let start = self.extend(timestamp);
        let end = start + samples.len() as i64;
        let far_behind = start < self.next - RESYNC_BEHIND_SAMPLES;
        self.behind_run = if far_behind { self.behind_run + 1 } else { 0 };
        if start > self.next + RESYNC_AHEAD_SAMPLES || self.behind_run >= RESYNC_BEHIND_PACKETS {
            self.anchor(ssrc, timestamp);
            self.packets.insert(timestamp as i64, samples);
            return Insert::Queued;
        }
        if end <= self.next {
            return Insert::Late;
        }
        if self.packets.contains_key(&start) {
            return Insert::Duplicate;
        }
        self.reference = start.max(self.reference);
        self.packets.insert(start, samples);
        Insert::Queued
    }

    /// The next 20 ms of received audio into `out` (silence where nothing arrived); true if
    /// any of it came from a packet.
    pub fn pop(&mut self, out: &mut Frame) -> bool {
        out.fill(0);
        match self.state {
            State::Idle => return false,
            State::Filling(ticks) => {
                if ticks + 1 < DEPTH_FRAMES {
                    self.state = State::Filling(ticks + 1);
                    return false;
                }
                self.state = State::Playing;
                return false;
            }
            State::Playing => {}
        }
        if let Some((&last_start, last)) = self.packets.iter().next_back() {
            let newest = last_start + last.len() as i64;
            if newest - self.next > MAX_BUFFERED_SAMPLES {
                self.next = newest - (DEPTH_FRAMES as i64 + 1) * FRAME_SAMPLES as i64;
            }
        }
        let (from, to) = (self.next, self.next + FRAME_SAMPLES as i64);
        let mut any = false;
        for (&start, samples) in self.packets.range(..to) {
            let end = start + samples.len() as i64;
            let (lo, hi) = (start.max(from), end.min(to));
            if lo < hi {
                out[(lo - from) as usize..(hi - from) as usize]
                    .copy_from_slice(&samples[(lo - start) as usize..(hi - start) as usize]);
                any = true;
            }
        }
        self.packets.retain(|&start, samples| start + samples.len() as i64 > to);
        self.next = to;
        any
    }
}

/// RFC 3550 (appendix A.3) loss accounting over every accepted packet of the far end's stream.
#[derive(Default)]
pub(crate) struct SeqCounter {
    base: Option<i64>,
    highest: i64,
    received: u64,
}

impl SeqCounter {
    pub fn record(&mut self, seq: u16) {
        self.received += 1;
        match self.base {
            None => {
                self.base = Some(seq as i64);
                self.highest = seq as i64;
            }
            Some(_) => {
                let delta = seq.wrapping_sub(self.highest as u16) as i16 as i64;
                if delta > 0 {
                    self.highest += delta;
                }
            }
        }
    }

    /// Expected minus received (duplicates can make it negative; reported as 0).
    pub fn lost(&self) -> u64 {
        match self.base {
            None => 0,
            Some(base) => (self.highest - base + 1 - self.received as i64).max(0) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(k: u32) -> Vec<i16> {
        vec![(k as i16 + 1) * 100; FRAME_SAMPLES]
    }

    fn play(jitter: &mut JitterBuffer, ticks: usize) -> Vec<i16> {
        let mut heard = Vec::new();
        for _ in 0..ticks {
            let mut frame = [0i16; FRAME_SAMPLES];
            jitter.pop(&mut frame);
            heard.push(frame[0]);
        }
        heard
    }

    #[test]
    fn reordered_packets_play_in_order_and_late_or_duplicate_ones_are_dropped() {
        let mut jitter = JitterBuffer::new();
        let ts0 = u32::MAX - 320; // wraps during the test
        let ts = |k: u32| ts0.wrapping_add(k * FRAME_SAMPLES as u32);
        let mut heard = Vec::new();
        // Arrival order per tick: 0 | 2 | 1 | 3 | 3 again (duplicate) | 5 | 4 | 6
        let arrivals: [&[u32]; 8] = [&[0], &[2], &[1], &[3], &[3], &[5], &[4], &[6]];
        for (tick, ks) in arrivals.iter().enumerate() {
            for &k in *ks {
                let outcome = jitter.insert(42, 1000 + k as u16, ts(k), packet(k));
                if tick == 4 {
                    assert_eq!(outcome, Insert::Duplicate);
                }
            }
            heard.extend(play(&mut jitter, 1));
        }
        heard.extend(play(&mut jitter, 3));
        // Two ticks of fill, then 0..=6 in order, then silence.
        assert_eq!(heard, vec![0, 0, 100, 200, 300, 400, 500, 600, 700, 0, 0]);
        // Playout is at packet 9 now: 12 queues, 5 (a new seq) is late.
        assert_eq!(jitter.insert(42, 5000, ts(12), packet(12)), Insert::Queued);
        assert_eq!(jitter.insert(42, 1001 + 100, ts(5), packet(5)), Insert::Late);
    }

    #[test]
    fn a_gap_plays_as_silence_and_a_new_ssrc_re_anchors() {
        let mut jitter = JitterBuffer::new();
        jitter.insert(1, 0, 8000, packet(0));
        jitter.insert(1, 1, 8160, packet(1));
        jitter.insert(1, 3, 8480, packet(3)); // 2 lost
        let heard = play(&mut jitter, 6);
        assert_eq!(heard, vec![0, 0, 100, 200, 0, 400]);
        jitter.insert(2, 9, 123_456, packet(5));
        assert_eq!(play(&mut jitter, 3), vec![0, 0, 600]);
    }

    #[test]
    fn a_timeline_that_goes_back_re_anchors_after_three_packets() {
        let mut jitter = JitterBuffer::new();
        for k in 0..10u32 {
            jitter.insert(1, k as u16, 8000 + k * 160, packet(k));
            play(&mut jitter, 1);
        }
        // The sender restarts its timestamps at 8000 without a new SSRC.
        assert_eq!(jitter.insert(1, 10, 8000, packet(0)), Insert::Late);
        assert_eq!(jitter.insert(1, 11, 8160, packet(1)), Insert::Late);
        assert_eq!(jitter.insert(1, 12, 8320, packet(2)), Insert::Queued);
        assert_eq!(play(&mut jitter, 3), vec![0, 0, 300]);
    }

    #[test]
    fn loss_counts_sequence_gaps_across_the_wrap() {
        let mut counter = SeqCounter::default();
        for seq in [65534u16, 65535, 1, 2] {
            counter.record(seq);
        }
        assert_eq!(counter.lost(), 1);
    }
}
