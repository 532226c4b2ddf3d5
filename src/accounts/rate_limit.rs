//! Per-account token buckets in this instance's memory, for every request but call creation
//! (a fixed rate per account and instance, a guard against floods). Call creation is limited
//! across the cluster by `call_rate`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    OtherRequests,
}

#[derive(Debug)]
pub struct RateLimited {
    pub retry_after: Duration,
}

struct TokenBucket {
    tokens: f64,
    refilled_at: Instant,
}

#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<(i64, Bucket), TokenBucket>>,
}

impl RateLimiter {
    /// Takes one token from the account's bucket, which holds `per_second` tokens at most.
    pub fn take(&self, account_id: i64, bucket: Bucket, per_second: u32) -> Result<(), RateLimited> {
        self.with_refilled(account_id, bucket, per_second, |b, rate| {
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                Ok(())
            } else {
                Err(RateLimited { retry_after: Duration::from_secs_f64((1.0 - b.tokens) / rate) })
            }
        })
    }

    /// Runs `f` on the account's bucket, refilled for the time since it was last used.
    fn with_refilled<T>(&self, account_id: i64, bucket: Bucket, per_second: u32, f: impl FnOnce(&mut TokenBucket, f64) -> T) -> T {
        let rate = f64::from(per_second.max(1));
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry((account_id, bucket)).or_insert(TokenBucket { tokens: rate, refilled_at: now });
        b.tokens = (b.tokens + now.duration_since(b.refilled_at).as_secs_f64() * rate).min(rate);
        b.refilled_at = now;
        f(b, rate)
    }
}
