//! The LISTEN side: one task per instance hands every change to the caches registered here.

use super::{Changed, Invalidate, CHANNEL};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The listener's connection is named so (`application_name`).
pub const LISTENER_NAME: &str = "outdial-cache-listener";

/// This instance's caches of rows other instances may change.
#[derive(Default)]
pub struct Invalidations {
    caches: Mutex<Vec<Weak<dyn Invalidate>>>,
}

impl Invalidations {
    pub fn register(&self, cache: Weak<dyn Invalidate>) {
        let mut caches = self.caches.lock().unwrap_or_else(|e| e.into_inner());
        caches.retain(|c| c.strong_count() > 0);
        caches.push(cache);
    }

    /// Drops what depends on `changed` in this instance's caches, at once (the instance that
    /// made the change must not wait for its own notification).
    pub fn invalidate(&self, changed: Changed) {
        self.each(|cache| cache.invalidate(changed));
    }

    pub fn invalidate_all(&self) {
        self.each(|cache| cache.invalidate_all());
    }

    fn each(&self, f: impl Fn(&dyn Invalidate)) {
        let caches: Vec<_> = self.caches.lock().unwrap_or_else(|e| e.into_inner()).iter().filter_map(Weak::upgrade).collect();
        for cache in caches {
            f(cache.as_ref());
        }
    }
}

/// LISTENs on `CHANNEL` over a connection of its own; returns once listening (so nothing this
/// instance caches can miss a change), with the task relaying changes until aborted.
pub async fn start_listener(pool: &PgPool, invalidations: Arc<Invalidations>) -> Result<JoinHandle<()>, sqlx::Error> {
    let pool = crate::db::pool_like(pool, LISTENER_NAME, 1, true);
    let mut listener = Some(listening(&pool).await?);
    Ok(tokio::spawn(async move {
        loop {
            let current = match listener.take() {
                Some(listener) => listener,
                None => match listening(&pool).await {
                    Ok(listener) => {
                        // Whatever changed while nobody listened is unknown: start afresh.
                        invalidations.invalidate_all();
                        listener
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cache invalidation: LISTEN failed; caches are cleared once it is back");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            if let Err(e) = relay(current, &invalidations).await {
                tracing::warn!(error = %e, "cache invalidation: LISTEN connection lost");
            }
        }
    }))
}

async fn listening(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Hands every notification to the caches, until the connection fails for good.
async fn relay(mut listener: PgListener, invalidations: &Invalidations) -> Result<(), sqlx::Error> {
    loop {
        match listener.try_recv().await? {
            Some(notification) => match Changed::parse(notification.payload()) {
                Some(changed) => invalidations.invalidate(changed),
                None => invalidations.invalidate_all(),
            },
            // The connection was lost and is back, LISTEN included: what was missed is unknown.
            None => invalidations.invalidate_all(),
        }
    }
}
