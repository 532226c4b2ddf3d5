//! How long a session's clock works on a tick (mixing what plays and what it hears live,
//! encoding, handing the received frame to the taps): a histogram of log-spaced buckets, 16 to
//! an octave (a value is known within 6.25%) from 1 ns to 68 s, with the sum, so a mean and the
//! work per 20 ms frame over many sessions come out too. A session keeps its own; the process's
//! totals keep one in atomics that every session adds to (`AtomicWork`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets per octave, as bits: 16.
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// Below 16 ns one bucket a nanosecond, then 32 octaves of 16 (up to 2^36 ns, 68 s); anything
/// longer lands in the last.
const BUCKETS: usize = SUB * 33;

fn bucket_of(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    // The leading bit says the octave, the next four the bucket within it.
    let shift = 63 - ns.leading_zeros() - SUB_BITS;
    let at = (shift as usize + 1) * SUB + ((ns >> shift) as usize & (SUB - 1));
    at.min(BUCKETS - 1)
}

/// The first value above bucket `i`, ns.
fn upper_edge(i: usize) -> u64 {
    if i < SUB {
        return i as u64 + 1;
    }
    let (shift, mantissa) = (i / SUB - 1, (i % SUB) as u64);
    (SUB as u64 + mantissa + 1) << shift
}

fn as_ns(d: Duration) -> u64 {
    d.as_secs().saturating_mul(1_000_000_000).saturating_add(u64::from(d.subsec_nanos()))
}

/// Tick work (from the clock's wake-up to its packet built) in log-spaced buckets.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkHistogram {
    buckets: Vec<u64>,
    sum_ns: u64,
    max_ns: u64,
}

impl Default for WorkHistogram {
    fn default() -> Self {
        WorkHistogram::new()
    }
}

impl WorkHistogram {
    pub fn new() -> WorkHistogram {
        WorkHistogram { buckets: vec![0; BUCKETS], sum_ns: 0, max_ns: 0 }
    }

    pub fn record(&mut self, work: Duration) {
        let ns = as_ns(work);
        self.buckets[bucket_of(ns)] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// What was recorded after `earlier`, a snapshot of the same growing histogram. Its max is
    /// an upper bound: the upper edge of the highest bucket the window filled, capped by the max.
    pub fn since(&self, earlier: &WorkHistogram) -> WorkHistogram {
        let buckets: Vec<u64> = self.buckets.iter().zip(&earlier.buckets).map(|(a, b)| a.saturating_sub(*b)).collect();
        let max_ns = buckets.iter().rposition(|&n| n > 0).map_or(0, |i| upper_edge(i).min(self.max_ns));
        WorkHistogram { buckets, sum_ns: self.sum_ns.saturating_sub(earlier.sum_ns), max_ns }
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Values in the buckets wholly below `edge` (a value is known within 6.25%).
    pub fn count_below(&self, edge: Duration) -> u64 {
        let edge_ns = as_ns(edge);
        self.buckets.iter().enumerate().take_while(|(i, _)| upper_edge(*i) <= edge_ns).map(|(_, n)| n).sum()
    }

    /// All the work recorded, added up.
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.sum_ns)
    }

    pub fn mean(&self) -> Duration {
        Duration::from_nanos(self.sum_ns.checked_div(self.count()).unwrap_or(0))
    }

    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }

    /// The upper edge of the bucket holding quantile `q` (0..=1), capped by the max.
    pub fn quantile(&self, q: f64) -> Duration {
        let rank = ((q.clamp(0.0, 1.0) * self.count() as f64).ceil() as u64).max(1);
        let mut seen = 0;
        let at = self.buckets.iter().position(|&n| {
            seen += n;
            seen >= rank
        });
        Duration::from_nanos(at.map_or(0, |i| upper_edge(i).min(self.max_ns)))
    }
}

impl std::fmt::Debug for WorkHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkHistogram")
            .field("count", &self.count())
            .field("mean", &self.mean())
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .field("max", &self.max())
            .finish()
    }
}

/// The same buckets shared by many writers: two relaxed adds per record.
pub(super) struct AtomicWork {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl AtomicWork {
    pub const fn new() -> AtomicWork {
        AtomicWork { buckets: [const { AtomicU64::new(0) }; BUCKETS], sum_ns: AtomicU64::new(0), max_ns: AtomicU64::new(0) }
    }

    pub fn record(&self, work: Duration) {
        let ns = as_ns(work);
        self.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        // Most records are below the max: a load spares the cache line a write.
        if ns > self.max_ns.load(Ordering::Relaxed) {
            self.max_ns.fetch_max(ns, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> WorkHistogram {
        WorkHistogram {
            buckets: self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect(),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
            max_ns: self.max_ns.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_keep_a_value_within_a_sixteenth() {
        for ns in (0..100_000u64).chain((1..2000).map(|k| k * 7_919_123)) {
            let i = bucket_of(ns);
            let below = if i == 0 { 0 } else { upper_edge(i - 1) };
            assert!(below <= ns && ns < upper_edge(i), "{ns} ns in bucket {i} [{below}, {})", upper_edge(i));
            assert!(upper_edge(i) - below <= below / 16 + 1, "bucket {i} is [{below}, {})", upper_edge(i));
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_mean_and_total_come_from_the_records() {
        let mut work = WorkHistogram::new();
        for us in 1..=100u64 {
            work.record(Duration::from_micros(us));
        }
        assert_eq!(work.count(), 100);
        assert_eq!(work.total(), Duration::from_micros(5050));
        assert_eq!(work.mean(), Duration::from_nanos(50_500));
        let p50 = work.quantile(0.5).as_nanos() as f64;
        assert!((50_000.0..=50_000.0 * 1.0625).contains(&p50), "p50 {p50} ns");
        assert_eq!(work.quantile(1.0), Duration::from_micros(100));
        assert_eq!(work.max(), Duration::from_micros(100));
        assert_eq!(WorkHistogram::new().quantile(0.99), Duration::ZERO);
    }

    #[test]
    fn counts_below_an_edge_take_whole_buckets() {
        let mut work = WorkHistogram::new();
        for ns in [500, 900, 1_000, 20_000, 2_000_000] {
            work.record(Duration::from_nanos(ns));
        }
        // 1,000 ns is in [992, 1,024): not wholly below 1 µs.
        assert_eq!(work.count_below(Duration::from_micros(1)), 2);
        assert_eq!(work.count_below(Duration::from_micros(25)), 4);
        assert_eq!(work.count_below(Duration::from_secs(1)), 5);
        assert_eq!(work.count_below(Duration::ZERO), 0);
    }

    #[test]
    fn a_window_is_the_difference_of_two_snapshots() {
        let shared = AtomicWork::new();
        shared.record(Duration::from_millis(3));
        let before = shared.snapshot();
        for ns in [700, 900, 20_000] {
            shared.record(Duration::from_nanos(ns));
        }
        let window = shared.snapshot().since(&before);
        assert_eq!(window.count(), 3);
        assert_eq!(window.total(), Duration::from_nanos(21_600));
        // The window's max: the upper edge of its highest bucket (20,000 ns is in [19,456,
        // 20,480)), not the 3 ms recorded before it.
        assert_eq!(window.max(), Duration::from_nanos(20_480));
        assert_eq!(window.quantile(0.5), Duration::from_nanos(928));
    }
}
