//! A leg's writes: its status, its new events and (at the end) its price and the debit of that
//! price from the account's ledger, in one statement that only takes effect while this
//! instance still owns the leg (a fence against a takeover).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use crate::group_commit::GroupCommit;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub seq: i32,
    pub kind: String,
    pub payload: Value,
    pub url: Option<String>,
    pub method: String,
    /// pending (the dispatcher delivers it) or sent_inline (the leg already sent it itself).
    pub state: &'static str,
}

#[derive(Debug, Default)]
pub struct Change {
    pub status: Option<String>,
    pub detail: Option<String>,
    pub answered_at: Option<DateTime<Utc>>,
    pub events: Vec<NewEvent>,
    pub finish: Option<Finish>,
    /// API commands this write reports on: (id, applied | rejected, reason). They commit with
    /// the effects they had (the media log), in the same statement.
    pub commands: Vec<(i64, &'static str, Option<String>)>,
}

#[derive(Debug, Clone)]
pub struct Finish {
    pub end_time: DateTime<Utc>,
    pub duration_s: i32,
    pub rate: Option<Decimal>,
    pub price: Option<Decimal>,
    pub network: Option<String>,
    pub disconnected_by: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("this instance no longer owns the leg")]
    LostOwnership,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What a write stored: the new events' ids, in order, and whether this instance's dispatcher
/// was handed them (locked for it at birth).
pub struct Written {
    pub ids: Vec<i64>,
    pub handed_off: bool,
}

/// The JSON document `outdial_leg_write` (migration 12) reads: one leg's write.
#[derive(serde::Serialize)]
struct WriteDoc<'a> {
    leg: Uuid,
    last_seq: i32,
    status: Option<&'a str>,
    detail: Option<&'a str>,
    answered_at: Option<DateTime<Utc>>,
    finish: Option<FinishDoc<'a>>,
    events: Vec<EventDoc<'a>>,
    commands: Vec<CommandDoc<'a>>,
    hand_off_lock_s: Option<i64>,
}

#[derive(serde::Serialize)]
struct FinishDoc<'a> {
    end_time: DateTime<Utc>,
    duration_s: i32,
    /// Decimals travel as strings, so no digit is lost on the way to NUMERIC.
    rate: Option<String>,
    price: Option<String>,
    network: Option<&'a str>,
    disconnected_by: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct EventDoc<'a> {
    seq: i32,
    kind: &'a str,
    payload: &'a Value,
    url: Option<&'a str>,
    method: &'a str,
    state: &'a str,
}

#[derive(serde::Serialize)]
struct CommandDoc<'a> {
    id: i64,
    state: &'a str,
    reason: Option<&'a str>,
}

impl LegWrite {
    fn doc(&self) -> WriteDoc<'_> {
        let c = &self.change;
        WriteDoc {
            leg: self.leg,
            last_seq: self.last_seq,
            status: c.status.as_deref(),
            detail: c.detail.as_deref(),
            answered_at: c.answered_at,
            finish: c.finish.as_ref().map(|f| FinishDoc {
                end_time: f.end_time,
                duration_s: f.duration_s,
                rate: f.rate.map(|r| r.to_string()),
                price: f.price.map(|p| p.to_string()),
                network: f.network.as_deref(),
                disconnected_by: f.disconnected_by.as_deref(),
            }),
            events: c
                .events
                .iter()
                .map(|e| EventDoc { seq: e.seq, kind: &e.kind, payload: &e.payload, url: e.url.as_deref(), method: &e.method, state: e.state })
                .collect(),
            commands: c.commands.iter().map(|(id, state, reason)| CommandDoc { id: *id, state, reason: reason.as_deref() }).collect(),
            hand_off_lock_s: self.hand_off_lock_s,
        }
    }
}

/// Applies legs' writes in one statement, in order; per write its result, or LostOwnership when
/// this instance no longer owns that leg (then nothing of it was written).
///
/// `hand_off_lock_s`: when this instance delivers webhooks, new pending events with no older
/// pending event of their call are locked for it for that long, so it can send them straight
/// from memory while no other dispatcher claims them; after a crash the lock expires and any
/// dispatcher delivers them.
pub async fn apply(pool: &PgPool, instance: Uuid, writes: &[&LegWrite]) -> Result<Vec<Result<Written, StoreError>>, sqlx::Error> {
    let docs: Vec<WriteDoc<'_>> = writes.iter().map(|w| w.doc()).collect();
    let rows: Vec<(i64, Option<Vec<i64>>, Option<bool>)> = sqlx::query_as(
        "SELECT w.ord, f.ids, f.handed_off
         FROM jsonb_array_elements($2) WITH ORDINALITY AS w(doc, ord)
         LEFT JOIN LATERAL outdial_leg_write($1, w.doc) f ON true
         ORDER BY w.ord",
    )
    .bind(instance)
    .bind(sqlx::types::Json(&docs))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(_, ids, handed_off)| match ids {
            Some(ids) => Ok(Written { ids, handed_off: handed_off.unwrap_or(false) }),
            None => Err(StoreError::LostOwnership),
        })
        .collect())
}

/// One leg's write, queued for group commit.
pub struct LegWrite {
    pub leg: Uuid,
    pub last_seq: i32,
    pub change: Change,
    pub hand_off_lock_s: Option<i64>,
}

/// Leg writes by group commit: the writes of many legs waiting at one moment go in one statement
/// (each still fenced on its own leg), so thousands of live legs share round trips and commits.
/// A leg hears back only after the commit.
#[derive(Clone)]
pub struct LegWriter {
    queue: GroupCommit<LegWrite, (LegWrite, Result<Written, StoreError>)>,
}

impl LegWriter {
    pub fn spawn(pool: PgPool, instance: Uuid, writers: usize, max_batch: usize) -> LegWriter {
        let queue = GroupCommit::spawn(writers, max_batch, move |writes: Vec<LegWrite>| {
            let pool = pool.clone();
            async move {
                let all: Vec<&LegWrite> = writes.iter().collect();
                match apply(&pool, instance, &all).await {
                    Ok(results) => writes.into_iter().zip(results).collect(),
                    // The statement failed for all: each on its own, so one failure stays its own.
                    Err(e) if writes.len() == 1 => {
                        let w = writes.into_iter().next().expect("one write");
                        vec![(w, Err(StoreError::Database(e)))]
                    }
                    Err(_) => {
                        let mut results = Vec::with_capacity(writes.len());
                        for w in writes {
                            let result = match apply(&pool, instance, &[&w]).await {
                                Ok(mut one) => one.pop().unwrap_or(Err(StoreError::LostOwnership)),
                                Err(e) => Err(StoreError::Database(e)),
                            };
                            results.push((w, result));
                        }
                        results
                    }
                }
            }
        });
        LegWriter { queue }
    }

    /// Stores the write; gives it back with the result once committed.
    pub async fn write(&self, write: LegWrite) -> Result<(LegWrite, Written), StoreError> {
        match self.queue.submit(write).await {
            Some((write, Ok(written))) => Ok((write, written)),
            Some((_, Err(e))) => Err(e),
            None => Err(StoreError::Database(sqlx::Error::PoolClosed)),
        }
    }
}

/// Records the attempts of a webhook the leg sent itself (answer_url, input, notify).
pub async fn record_attempts(pool: &PgPool, event_id: i64, attempts: &[super::answer::Attempt]) -> Result<(), sqlx::Error> {
    let codes: Vec<Option<i32>> = attempts.iter().map(|a| a.status_code).collect();
    let latencies: Vec<i32> = attempts.iter().map(|a| a.latency_ms).collect();
    let errors: Vec<Option<String>> = attempts.iter().map(|a| a.error.clone()).collect();
    let urls: Vec<String> = attempts.iter().map(|a| a.url.clone()).collect();
    sqlx::query(
        "WITH a AS (INSERT INTO webhook_attempts (event_id, status_code, latency_ms, error)
                    SELECT $1, c, l, CASE WHEN e IS NULL THEN NULL ELSE u || ': ' || e END
                    FROM unnest($2::int[], $3::int[], $4::text[], $5::text[]) AS t(c, l, e, u))
         UPDATE events SET attempts = $6 WHERE id = $1",
    )
    .bind(event_id)
    .bind(&codes)
    .bind(&latencies)
    .bind(&errors)
    .bind(&urls)
    .bind(attempts.len() as i32)
    .execute(pool)
    .await?;
    Ok(())
}
