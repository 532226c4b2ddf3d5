//! Each account's call-creation rate, held across every API instance: one token bucket per
//! account in PostgreSQL (`take_call_tokens`), refilled by the database's clock.
//!
//! A round trip per call would make the busiest account's row the bottleneck, so an instance
//! takes a lease of up to 50 ms worth of tokens at once and spends it from memory. Tokens only
//! ever come from the shared bucket, so the cluster never admits more than the rate (plus the
//! bucket's one second of burst); a lease not spent within `LEASE_TTL` is dropped, which can
//! only admit fewer. Queued calls reserve their turn in the bucket one by one: their dial time
//! must be ordered across instances.

use super::rate_limit::RateLimited;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How much of a second's rate one lease takes at most.
const LEASE_FRACTION: f64 = 0.05;
/// A lease's tokens are spent within this or dropped (an idle instance hoards nothing).
const LEASE_TTL: Duration = Duration::from_secs(1);

struct Lease {
    tokens: u32,
    taken_at: Instant,
}

pub struct CallRateLimiter {
    /// A small pool of its own, with asynchronous commit: a bucket update lost in a database
    /// crash only lets a few calls more through once.
    pool: PgPool,
    leases: Mutex<HashMap<i64, Lease>>,
    /// Takes from the shared bucket in flight, by account: a request refused meanwhile waits
    /// for them, since their leases may hold the tokens it needs.
    in_flight: Mutex<HashMap<i64, usize>>,
    /// Signalled when a take ends (its lease, if any, deposited).
    take_ended: tokio::sync::Notify,
}

/// How long a refused request waits for the takes in flight to deposit their leases.
const LEASE_WAIT: Duration = Duration::from_millis(250);

impl CallRateLimiter {
    pub fn new(pool: PgPool) -> CallRateLimiter {
        CallRateLimiter { pool, leases: Mutex::new(HashMap::new()), in_flight: Mutex::new(HashMap::new()), take_ended: tokio::sync::Notify::new() }
    }

    /// Admits one call of the account now, or says how long until it could.
    pub async fn take(&self, account_id: i64, per_second: u32) -> Result<Result<(), RateLimited>, sqlx::Error> {
        if self.spend_leased(account_id) {
            return Ok(Ok(()));
        }
        let want = ((f64::from(per_second) * LEASE_FRACTION).ceil() as i32).max(1);
        self.count_in_flight(account_id, true);
        let taken = self.take_tokens(account_id, per_second, want, false).await;
        if let Ok((granted, _)) = &taken {
            if *granted > 1 {
                let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
                let lease = leases.entry(account_id).or_insert(Lease { tokens: 0, taken_at: Instant::now() });
                if lease.taken_at.elapsed() >= LEASE_TTL {
                    lease.tokens = 0;
                }
                lease.tokens += (*granted - 1) as u32;
                lease.taken_at = Instant::now();
            }
        }
        self.count_in_flight(account_id, false);
        self.take_ended.notify_waiters();
        let (granted, wait_s) = taken?;
        if granted == 0 {
            // Concurrent requests may have leased the last tokens meanwhile, or be about to:
            // spend them before refusing, or they would lapse unused.
            if self.spend_leased_when_deposited(account_id).await {
                return Ok(Ok(()));
            }
            return Ok(Err(RateLimited { retry_after: Duration::from_secs_f64(wait_s.max(0.0)) }));
        }
        Ok(Ok(()))
    }

    fn count_in_flight(&self, account_id: i64, starting: bool) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let count = in_flight.entry(account_id).or_insert(0);
        if starting {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_flight.remove(&account_id);
            }
        }
    }

    /// Spends a leased token, waiting (briefly) for the account's takes in flight to deposit
    /// theirs. False when none is left and none is coming.
    async fn spend_leased_when_deposited(&self, account_id: i64) -> bool {
        let deadline = tokio::time::Instant::now() + LEASE_WAIT;
        loop {
            let ended = self.take_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.spend_leased(account_id) {
                return true;
            }
            let pending = self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).get(&account_id).copied().unwrap_or(0);
            if pending == 0 || tokio::time::timeout_at(deadline, ended).await.is_err() {
                return self.spend_leased(account_id);
            }
        }
    }

    /// Reserves the account's next turn, into debt if need be: how long the call must wait
    /// before it is dialled (zero when a token was there).
    pub async fn reserve(&self, account_id: i64, per_second: u32) -> Result<Duration, sqlx::Error> {
        let (_, wait_s) = self.take_tokens(account_id, per_second, 1, true).await?;
        Ok(Duration::from_secs_f64(wait_s.max(0.0)))
    }

    fn spend_leased(&self, account_id: i64) -> bool {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        match leases.get_mut(&account_id) {
            Some(lease) if lease.tokens > 0 && lease.taken_at.elapsed() < LEASE_TTL => {
                lease.tokens -= 1;
                true
            }
            Some(_) => {
                leases.remove(&account_id);
                false
            }
            None => false,
        }
    }

    async fn take_tokens(&self, account_id: i64, per_second: u32, want: i32, queue: bool) -> Result<(i32, f64), sqlx::Error> {
        sqlx::query_as("SELECT granted, wait_s FROM take_call_tokens($1, $2, $3, $4)")
            .bind(account_id)
            .bind(f64::from(per_second.max(1)))
            .bind(want)
            .bind(queue)
            .fetch_one(&self.pool)
            .await
    }
}
