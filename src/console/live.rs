//! The live-calls feed: while any console of this instance is connected, one task reads the
//! live legs (queued or running jobs) of the accounts watching, about once a second, and
//! publishes the snapshot; each connection sends its account's changes. One reading per
//! instance per interval, whatever the number of consoles, and none while nobody watches.

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

/// Every live leg of these accounts. Two branches, each matching one of call_jobs' partial
/// indexes (queued by run_at, running by owner), so finished jobs are never scanned.
pub async fn live_legs(pool: &PgPool, accounts: &[i64]) -> Result<Vec<LiveCall>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {LEG_COLUMNS}, NULL::uuid AS instance FROM call_jobs j JOIN calls c ON c.uuid = j.call_uuid
         WHERE j.state = 'queued' AND c.account_id = ANY($1)
         UNION ALL
         SELECT {LEG_COLUMNS}, j.locked_by AS instance FROM call_jobs j JOIN calls c ON c.uuid = j.call_uuid
         WHERE j.state = 'running' AND c.account_id = ANY($1)"
    ))
    .bind(accounts)
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

/// These accounts' legs created since `since` (the created_at BRIN index), with the database's
/// clock now.
pub async fn created_since(pool: &PgPool, accounts: &[i64], since: DateTime<Utc>) -> Result<(Vec<LiveCall>, DateTime<Utc>), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let (now,): (DateTime<Utc>,) = sqlx::query_as("SELECT now()").fetch_one(&mut *tx).await?;
    let legs = sqlx::query_as(&format!(
        "SELECT {LEG_COLUMNS}, NULL::uuid AS instance FROM calls c WHERE c.created_at >= $1 AND c.account_id = ANY($2)"
    ))
        .bind(since)
        .bind(accounts)
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
    /// The accounts whose consoles follow the feed, with how many each has connected.
    watchers: Mutex<HashMap<i64, usize>>,
    interval: Duration,
    tx: watch::Sender<Arc<Snapshot>>,
    polling: Mutex<bool>,
    closing: tokio_util::sync::CancellationToken,
}

impl LiveFeed {
    pub fn new(pool: PgPool, interval: Duration) -> Arc<LiveFeed> {
        let (tx, _) = watch::channel(Arc::new(Snapshot::default()));
        Arc::new(LiveFeed { pool, watchers: Mutex::default(), interval, tx, polling: Mutex::new(false), closing: Default::default() })
    }

    /// Ends every stream following the feed (the instance is stopping).
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// Resolves once `close` was called.
    pub async fn closed(&self) {
        self.closing.cancelled().await
    }

    /// The readings from now on, which include `account_id`'s legs while the subscription
    /// lives; the poller runs while any does.
    pub fn subscribe(self: &Arc<Self>, account_id: i64) -> Subscription {
        *self.watchers.lock().unwrap().entry(account_id).or_default() += 1;
        let rx = self.tx.subscribe();
        let subscription = Subscription { rx, feed: self.clone(), account_id };
        let mut polling = self.polling.lock().unwrap();
        if !*polling {
            *polling = true;
            tokio::spawn(self.clone().poll());
        }
        subscription
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
        let accounts: Vec<i64> = self.watchers.lock().unwrap().keys().copied().collect();
        // Read before the live legs: a leg created and ended between two readings shows up here.
        let created = match *since {
            Some(t) => {
                let (legs, now) = created_since(&self.pool, &accounts, t).await?;
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
        for call in live_legs(&self.pool, &accounts).await? {
            seen.insert(call.uuid);
            snapshot.live.entry(call.account_id).or_default().push(call);
        }
        for call in created.into_iter().filter(|c| !seen.contains(&c.uuid) && !previous.contains_key(&c.uuid)) {
            snapshot.ended.entry(call.account_id).or_default().push(call);
        }
        // Legs of accounts nobody watches any more are not followed to their end.
        let departed: Vec<Uuid> =
            previous.iter().filter(|(u, a)| !seen.contains(*u) && accounts.contains(a)).map(|(u, _)| *u).collect();
        if !departed.is_empty() {
            for call in legs(&self.pool, &departed).await? {
                snapshot.ended.entry(call.account_id).or_default().push(call);
            }
        }
        Ok(snapshot)
    }
}

/// A console's place in the feed: its readings, and its account kept in them until dropped.
pub struct Subscription {
    pub rx: watch::Receiver<Arc<Snapshot>>,
    feed: Arc<LiveFeed>,
    account_id: i64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut watchers = self.feed.watchers.lock().unwrap();
        if let Some(n) = watchers.get_mut(&self.account_id) {
            *n -= 1;
            if *n == 0 {
                watchers.remove(&self.account_id);
            }
        }
    }
}
