//! The live-calls feed: while any console of this instance is connected, one task reads every
//! live leg (queued or running jobs) about once a second and publishes the snapshot; each
//! connection sends its account's changes. One query per instance per interval, whatever the
//! number of consoles, and none while nobody watches.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// A leg as the console lists it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct LiveCall {
    pub uuid: Uuid,
    #[serde(skip)]
    pub account_id: i64,
    /// As the API shows it: a finished leg by how it ended.
    pub status: String,
    pub direction: String,
    pub to: Value,
    pub from: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub duration_s: Option<i32>,
    pub trunk: Option<String>,
    /// The instance running the leg (None while queued, or once ended).
    pub instance: Option<Uuid>,
}

const LEG_COLUMNS: &str = "c.uuid, c.account_id, COALESCE(c.ending, c.status) AS status, c.direction, c.to_endpoint AS \"to\", \
     c.from_endpoint AS \"from\", c.created_at, c.answered_at, c.end_time, c.duration_s, c.sip->>'trunk' AS trunk";

/// Every live leg of every account. Two branches, each matching one of call_jobs' partial
/// indexes (queued by run_at, running by owner), so finished jobs are never scanned.
pub async fn live_legs(pool: &PgPool) -> Result<Vec<LiveCall>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {LEG_COLUMNS}, NULL::uuid AS instance FROM call_jobs j JOIN calls c ON c.uuid = j.call_uuid WHERE j.state = 'queued'
         UNION ALL
         SELECT {LEG_COLUMNS}, j.locked_by AS instance FROM call_jobs j JOIN calls c ON c.uuid = j.call_uuid WHERE j.state = 'running'"
    ))
    .fetch_all(pool)
    .await
}

/// These legs as they are now (the final state of legs that left the live set).
pub async fn legs(pool: &PgPool, uuids: &[Uuid]) -> Result<Vec<LiveCall>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {LEG_COLUMNS}, NULL::uuid AS instance FROM calls c WHERE c.uuid = ANY($1)"))
        .bind(uuids)
        .fetch_all(pool)
        .await
}

/// Legs created since `since` (the created_at BRIN index), with the database's clock now.
pub async fn created_since(pool: &PgPool, since: DateTime<Utc>) -> Result<(Vec<LiveCall>, DateTime<Utc>), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let (now,): (DateTime<Utc>,) = sqlx::query_as("SELECT now()").fetch_one(&mut *tx).await?;
    let legs = sqlx::query_as(&format!("SELECT {LEG_COLUMNS}, NULL::uuid AS instance FROM calls c WHERE c.created_at >= $1"))
        .bind(since)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((legs, now))
}

/// The account's newest legs, live or not (what a console shows first).
pub async fn recent(pool: &PgPool, account_id: i64, limit: i64) -> Result<Vec<LiveCall>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {LEG_COLUMNS}, NULL::uuid AS instance FROM calls c WHERE c.account_id = $1 ORDER BY c.created_at DESC, c.uuid DESC LIMIT $2"
    ))
    .bind(account_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// One reading of the live legs, by account; `ended`: legs live in the previous reading and no
/// longer, and legs created since the previous reading that had already ended, as they ended.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub live: HashMap<i64, Vec<LiveCall>>,
    pub ended: HashMap<i64, Vec<LiveCall>>,
}

pub struct LiveFeed {
    pool: PgPool,
    interval: Duration,
    tx: watch::Sender<Arc<Snapshot>>,
    polling: Mutex<bool>,
    closing: tokio_util::sync::CancellationToken,
}

impl LiveFeed {
    pub fn new(pool: PgPool, interval: Duration) -> Arc<LiveFeed> {
        let (tx, _) = watch::channel(Arc::new(Snapshot::default()));
        Arc::new(LiveFeed { pool, interval, tx, polling: Mutex::new(false), closing: Default::default() })
    }

    /// Ends every stream following the feed (the instance is stopping).
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// Resolves once `close` was called.
    pub async fn closed(&self) {
        self.closing.cancelled().await
    }

    /// The readings from now on; the poller runs while any receiver is alive.
    pub fn subscribe(self: &Arc<Self>) -> watch::Receiver<Arc<Snapshot>> {
        let rx = self.tx.subscribe();
        let mut polling = self.polling.lock().unwrap();
        if !*polling {
            *polling = true;
            tokio::spawn(self.clone().poll());
        }
        rx
    }

    async fn poll(self: Arc<Self>) {
        let mut previous: HashMap<Uuid, i64> = HashMap::new();
        let mut since: Option<DateTime<Utc>> = None;
        loop {
            {
                // Decided under the lock `subscribe` takes, so no subscriber is left without a poller.
                let mut polling = self.polling.lock().unwrap();
                if self.tx.receiver_count() == 0 {
                    *polling = false;
                    return;
                }
            }
            match self.read(&previous, &mut since).await {
                Ok(snapshot) => {
                    previous = snapshot.live.values().flatten().map(|c| (c.uuid, c.account_id)).collect();
                    self.tx.send_replace(Arc::new(snapshot));
                }
                Err(e) => tracing::warn!(error = %e, "console: reading live legs failed; retrying"),
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    async fn read(&self, previous: &HashMap<Uuid, i64>, since: &mut Option<DateTime<Utc>>) -> Result<Snapshot, sqlx::Error> {
        let mut snapshot = Snapshot::default();
        // Read before the live legs: a leg created and ended between two readings shows up here.
        let created = match *since {
            Some(t) => {
                let (legs, now) = created_since(&self.pool, t).await?;
                *since = Some(now - chrono::Duration::seconds(2));
                legs
            }
            None => {
                let (now,): (DateTime<Utc>,) = sqlx::query_as("SELECT now()").fetch_one(&self.pool).await?;
                *since = Some(now - chrono::Duration::seconds(2));
                Vec::new()
            }
        };
        let mut seen = HashSet::new();
        for call in live_legs(&self.pool).await? {
            seen.insert(call.uuid);
            snapshot.live.entry(call.account_id).or_default().push(call);
        }
        for call in created.into_iter().filter(|c| !seen.contains(&c.uuid) && !previous.contains_key(&c.uuid)) {
            snapshot.ended.entry(call.account_id).or_default().push(call);
        }
        let departed: Vec<Uuid> = previous.keys().filter(|u| !seen.contains(*u)).copied().collect();
        if !departed.is_empty() {
            for call in legs(&self.pool, &departed).await? {
                snapshot.ended.entry(call.account_id).or_default().push(call);
            }
        }
        Ok(snapshot)
    }
}
