//! Interarrival jitter of the audio a far end sends (RFC 3550 §6.4.1, A.8): the mean deviation
//! of packets' spacing on arrival from their spacing in RTP time, smoothed over 16 packets. A
//! session keeps its estimate and its peak; when the session ends the peak goes into the
//! process's totals (`AtomicJitter`: fixed buckets, lock-free), which `/metrics` exports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// RTP clock of every codec here (G.711, telephone-event): 8 kHz.
const CLOCK_HZ: u64 = 8000;

#[derive(Debug, Default)]
pub(super) struct InterarrivalJitter {
    /// The first packet's arrival; arrivals are counted in RTP units from it.
    base: Option<tokio::time::Instant>,
    /// The last packet's SSRC and transit time (arrival − RTP timestamp, in RTP units).
    last: Option<(u32, u32)>,
    /// The estimate and its highest value, in RTP units.
    jitter: f64,
    peak: f64,
}

impl InterarrivalJitter {
    pub fn on_packet(&mut self, ssrc: u32, timestamp: u32, arrival: tokio::time::Instant) {
        let base = *self.base.get_or_insert(arrival);
        let since = arrival.duration_since(base);
        // RTP arithmetic is modulo 2^32 (a long call's arrivals wrap as its timestamps do).
        let units = since.as_secs().wrapping_mul(CLOCK_HZ).wrapping_add(u64::from(since.subsec_nanos()) * CLOCK_HZ / 1_000_000_000) as u32;
        let transit = units.wrapping_sub(timestamp);
        match self.last {
            // A new source starts its own estimate (RFC 3550: per SSRC).
            Some((last_ssrc, last_transit)) if last_ssrc == ssrc => {
                let d = f64::from((transit.wrapping_sub(last_transit) as i32).unsigned_abs());
                self.jitter += (d - self.jitter) / 16.0;
                self.peak = self.peak.max(self.jitter);
            }
            _ => self.jitter = 0.0,
        }
        self.last = Some((ssrc, transit));
    }

    /// The estimate now (the tests watch it settle).
    #[cfg(test)]
    pub fn current(&self) -> Duration {
        Duration::from_secs_f64(self.jitter / CLOCK_HZ as f64)
    }

    /// The highest estimate so far (None before two packets of one source).
    pub fn peak(&self) -> Option<Duration> {
        self.last.map(|_| Duration::from_secs_f64(self.peak / CLOCK_HZ as f64))
    }
}

/// Bucket edges of sessions' peak jitter, ms.
pub const JITTER_EDGES_MS: [u64; 9] = [1, 2, 5, 10, 20, 30, 50, 100, 200];

/// Sessions' peak jitter: counts per bucket (the last for anything above 200 ms) and the sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitterHistogram {
    /// One count per edge of `JITTER_EDGES_MS` (values at most that edge, above the previous),
    /// then those above the last.
    pub buckets: [u64; JITTER_EDGES_MS.len() + 1],
    pub sum: Duration,
}

impl JitterHistogram {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

pub(super) struct AtomicJitter {
    buckets: [AtomicU64; JITTER_EDGES_MS.len() + 1],
    sum_us: AtomicU64,
}

impl AtomicJitter {
    pub const fn new() -> AtomicJitter {
        AtomicJitter { buckets: [const { AtomicU64::new(0) }; JITTER_EDGES_MS.len() + 1], sum_us: AtomicU64::new(0) }
    }

    pub fn record(&self, jitter: Duration) {
        let us = jitter.as_micros() as u64;
        let i = JITTER_EDGES_MS.iter().position(|&edge| us <= edge * 1000).unwrap_or(JITTER_EDGES_MS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> JitterHistogram {
        JitterHistogram {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum: Duration::from_micros(self.sum_us.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spaced_packets_have_no_jitter_and_uneven_ones_do() {
        let start = tokio::time::Instant::now();
        let mut even = InterarrivalJitter::default();
        for i in 0..50u32 {
            even.on_packet(7, 1000 + i * 160, start + Duration::from_millis(u64::from(i) * 20));
        }
        assert!(even.current() < Duration::from_micros(200), "{:?}", even.current());
        // Every other packet 10 ms late: |D| is 10 ms each time, the estimate tends to it.
        let mut uneven = InterarrivalJitter::default();
        for i in 0..200u32 {
            let late = if i % 2 == 1 { 10 } else { 0 };
            uneven.on_packet(7, i * 160, start + Duration::from_millis(u64::from(i) * 20 + late));
        }
        let j = uneven.current().as_secs_f64() * 1000.0;
        assert!((9.0..=10.5).contains(&j), "jitter {j} ms");
        assert!(uneven.peak().unwrap() >= uneven.current());
        // RTP timestamps wrap around 2^32 without a jump.
        let mut wrapping = InterarrivalJitter::default();
        for i in 0..50u32 {
            wrapping.on_packet(7, (u32::MAX - 1000).wrapping_add(i * 160), start + Duration::from_millis(u64::from(i) * 20));
        }
        assert!(wrapping.peak().unwrap() < Duration::from_micros(200));
    }

    #[test]
    fn peaks_land_in_their_buckets() {
        let totals = AtomicJitter::new();
        for ms in [0, 1, 3, 25, 500] {
            totals.record(Duration::from_millis(ms));
        }
        let h = totals.snapshot();
        assert_eq!(h.buckets, [2, 0, 1, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(h.count(), 5);
        assert_eq!(h.sum, Duration::from_millis(529));
    }
}
