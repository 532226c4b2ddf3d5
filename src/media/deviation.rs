//! Send-time deviation (actual send − the clock's deadline) as a histogram: 50 µs buckets up to
//! 50 ms, and one for everything later. A session keeps its own; the process's totals keep one in
//! atomics that every session adds to (`AtomicDeviation`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BUCKET: Duration = Duration::from_micros(50);
const BUCKETS: usize = 1000;

/// Send-time deviation (actual send − deadline) in 50 µs buckets up to 50 ms.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviationHistogram {
    buckets: Vec<u64>,
    max: Duration,
}

fn bucket_of(deviation: Duration) -> usize {
    // In u64: Duration::as_micros is a u128, and a u128 division is a libcall (this runs for
    // every packet of every session, twice).
    let us = deviation.as_secs().saturating_mul(1_000_000).saturating_add(u64::from(deviation.subsec_micros()));
    ((us / BUCKET.as_micros() as u64) as usize).min(BUCKETS)
}

impl Default for DeviationHistogram {
    fn default() -> Self {
        DeviationHistogram::new()
    }
}

impl DeviationHistogram {
    pub fn new() -> DeviationHistogram {
        DeviationHistogram { buckets: vec![0; BUCKETS + 1], max: Duration::ZERO }
    }

    pub fn record(&mut self, deviation: Duration) {
        self.buckets[bucket_of(deviation)] += 1;
        self.max = self.max.max(deviation);
    }

    /// Adds another histogram (the benchmark sums its sessions).
    pub fn merge(&mut self, other: &DeviationHistogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.max = self.max.max(other.max);
    }

    /// What was recorded after `earlier`, a snapshot of the same growing histogram (a window
    /// of the process's totals). Its max is an upper bound: the upper edge of the highest
    /// bucket the window filled (this histogram's max when that is the last bucket).
    pub fn since(&self, earlier: &DeviationHistogram) -> DeviationHistogram {
        let buckets: Vec<u64> = self.buckets.iter().zip(&earlier.buckets).map(|(a, b)| a.saturating_sub(*b)).collect();
        let max = match buckets.iter().rposition(|&n| n > 0) {
            None => Duration::ZERO,
            Some(BUCKETS) => self.max,
            Some(i) => (BUCKET * (i as u32 + 1)).min(self.max),
        };
        DeviationHistogram { buckets, max }
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    pub fn max(&self) -> Duration {
        self.max
    }

    /// Values below `edge` (to the microsecond): whole buckets only, so exact at multiples of
    /// 50 µs (the edges `/metrics` exports).
    pub fn count_below(&self, edge: Duration) -> u64 {
        let edge_us = (edge.as_nanos() + 500) / 1000;
        let whole = ((edge_us / BUCKET.as_micros()) as usize).min(BUCKETS);
        self.buckets[..whole].iter().sum()
    }

    /// The sum of the values, each taken at its bucket's middle (the max for the last bucket).
    pub fn sum_estimate(&self) -> Duration {
        let step = BUCKET.as_micros() as u64;
        let us: u64 = self.buckets[..BUCKETS].iter().enumerate().map(|(i, &n)| n.saturating_mul(i as u64 * step + step / 2)).sum();
        let late_us = self.max.max(BUCKET * BUCKETS as u32).as_micros() as u64;
        Duration::from_micros(us.saturating_add(late_us.saturating_mul(self.buckets[BUCKETS])))
    }

    /// The upper edge of the bucket holding quantile `q` (0..=1); the max for the last bucket.
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return if i == BUCKETS { self.max } else { (BUCKET * (i as u32 + 1)).min(self.max) };
            }
        }
        self.max
    }
}

impl std::fmt::Debug for DeviationHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviationHistogram")
            .field("count", &self.count())
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .field("max", &self.max)
            .finish()
    }
}

/// The same buckets shared by many writers: one relaxed add per record.
pub(super) struct AtomicDeviation {
    buckets: [AtomicU64; BUCKETS + 1],
    max_us: AtomicU64,
}

impl AtomicDeviation {
    pub const fn new() -> AtomicDeviation {
        AtomicDeviation { buckets: [const { AtomicU64::new(0) }; BUCKETS + 1], max_us: AtomicU64::new(0) }
    }

    pub fn record(&self, deviation: Duration) {
        self.buckets[bucket_of(deviation)].fetch_add(1, Ordering::Relaxed);
        let us = deviation.as_micros() as u64;
        // Most records are below the max: a load spares the cache line a write.
        if us > self.max_us.load(Ordering::Relaxed) {
            self.max_us.fetch_max(us, Ordering::Relaxed);
        }
    }

    /// The counts now (each bucket read once; records meanwhile land in this or the next read).
    pub fn snapshot(&self) -> DeviationHistogram {
        DeviationHistogram {
            buckets: self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect(),
            max: Duration::from_micros(self.max_us.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_below_an_edge_and_the_estimated_sum_come_from_whole_buckets() {
        let mut histogram = DeviationHistogram::new();
        for us in [10, 60, 99, 100, 240, 260] {
            histogram.record(Duration::from_micros(us));
        }
        histogram.record(Duration::from_millis(70));
        assert_eq!(histogram.count_below(Duration::from_micros(100)), 3);
        assert_eq!(histogram.count_below(Duration::from_secs_f64(0.00025)), 5);
        assert_eq!(histogram.count_below(Duration::from_millis(50)), 6);
        assert_eq!(histogram.count_below(Duration::from_secs(1)), 6, "the late bucket has no upper edge");
        // Middles: 25 + 75 + 75 + 125 + 225 + 275 µs, and the max for the late one.
        assert_eq!(histogram.sum_estimate(), Duration::from_micros(800) + Duration::from_millis(70));
    }

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut histogram = DeviationHistogram::new();
        for us in 0..100u64 {
            histogram.record(Duration::from_micros(us * 10));
        }
        histogram.record(Duration::from_millis(80));
        assert_eq!(histogram.count(), 101);
        assert_eq!(histogram.quantile(0.5), Duration::from_micros(550));
        assert_eq!(histogram.quantile(1.0), Duration::from_millis(80));
        let mut total = DeviationHistogram::new();
        total.merge(&histogram);
        assert_eq!(total.count(), 101);
    }

    #[test]
    fn a_window_is_the_difference_of_two_snapshots() {
        let shared = AtomicDeviation::new();
        for us in [100, 200, 300] {
            shared.record(Duration::from_micros(us));
        }
        let before = shared.snapshot();
        for us in [1_000, 2_010] {
            shared.record(Duration::from_micros(us));
        }
        let window = shared.snapshot().since(&before);
        assert_eq!(window.count(), 2);
        assert_eq!(window.quantile(0.5), Duration::from_micros(1_050));
        // The window's max: the upper edge of its highest bucket, capped by the true max.
        assert_eq!(window.max(), Duration::from_micros(2_010));
        assert_eq!(before.max(), Duration::from_micros(300));

        shared.record(Duration::from_millis(70));
        let late = shared.snapshot().since(&before);
        assert_eq!(late.count(), 3);
        assert_eq!(late.quantile(1.0), Duration::from_millis(70));
    }
}
