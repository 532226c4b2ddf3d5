//! Waking workers and dispatchers across instances without NOTIFY inside write transactions.
//!
//! A transaction that NOTIFYs holds a database-wide lock from its commit until the commit is on
//! disk, which serialises every such commit (measured: 3,700 → 1,300 inserts/s). So writers only
//! set a flag here, and one task per process sends the NOTIFYs on its own, at most every
//! `COALESCE`, outside any write transaction. Receivers also poll, so a lost wake-up only delays.

use sqlx::PgPool;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub const JOBS_CHANNEL: &str = "outdial_jobs";
pub const EVENTS_CHANNEL: &str = "outdial_events";

const JOBS: u8 = 1;
const EVENTS: u8 = 2;
const COALESCE: Duration = Duration::from_millis(2);

pub struct Notifier {
    pending: AtomicU8,
    wake: Notify,
}

impl Notifier {
    /// Starts the sending task on the current runtime.
    pub fn spawn(pool: PgPool) -> Arc<Notifier> {
        let notifier = Arc::new(Notifier { pending: AtomicU8::new(0), wake: Notify::new() });
        let task = notifier.clone();
        tokio::spawn(async move {
            loop {
                task.wake.notified().await;
                tokio::time::sleep(COALESCE).await;
                let bits = task.pending.swap(0, Ordering::AcqRel);
                let result = sqlx::query("SELECT pg_notify($1, '') WHERE $2 UNION ALL SELECT pg_notify($3, '') WHERE $4")
                    .bind(JOBS_CHANNEL)
                    .bind(bits & JOBS != 0)
                    .bind(EVENTS_CHANNEL)
                    .bind(bits & EVENTS != 0)
                    .execute(&pool)
                    .await;
                if let Err(e) = result {
                    tracing::debug!(error = %e, "NOTIFY failed; receivers will poll");
                }
            }
        });
        notifier
    }

    /// New legs are waiting to be claimed.
    pub fn jobs(&self) {
        self.pending.fetch_or(JOBS, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// New events are waiting to be delivered.
    pub fn events(&self) {
        self.pending.fetch_or(EVENTS, Ordering::AcqRel);
        self.wake.notify_one();
    }
}
