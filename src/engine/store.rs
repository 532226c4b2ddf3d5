//! A leg's writes: its status, its new events and (at the end) its price and the debit of that
//! price in the account's ledger (the account row follows through the settler), in one
//! statement that only takes effect while this instance still owns the leg (a fence against a
//! takeover).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
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

#[derive(Debug, Clone, Default)]
pub struct Finish {
    pub end_time: DateTime<Utc>,
    pub duration_s: i32,
    /// Seconds charged: the answered seconds rounded up to the deck's increments.
    pub billed_s: Option<i32>,
    pub rate: Option<Decimal>,
    pub price: Option<Decimal>,
    pub network: Option<String>,
    pub country: Option<String>,
    /// How the leg ended: completed when answered, else busy, failed, timeout, unanswered,
    /// rejected or cancelled (its status reads completed after most of them, as at Vonage).
    pub ending: Option<String>,
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

/// `hand_off_lock_s`: when this instance delivers webhooks, new pending events with no older
/// pending event of their call are locked for it for that long, so it can send them straight
/// from memory while no other dispatcher claims them; after a crash the lock expires and any
/// dispatcher delivers them.
pub async fn apply(
    pool: &PgPool,
    instance: Uuid,
    leg: Uuid,
    last_seq: i32,
    change: &Change,
    hand_off_lock_s: Option<i64>,
) -> Result<Written, StoreError> {
    let seqs: Vec<i32> = change.events.iter().map(|e| e.seq).collect();
    let kinds: Vec<&str> = change.events.iter().map(|e| e.kind.as_str()).collect();
    let payloads: Vec<&Value> = change.events.iter().map(|e| &e.payload).collect();
    let urls: Vec<Option<&str>> = change.events.iter().map(|e| e.url.as_deref()).collect();
    let methods: Vec<&str> = change.events.iter().map(|e| e.method.as_str()).collect();
    let states: Vec<&str> = change.events.iter().map(|e| e.state).collect();
    let finish = change.finish.as_ref();
    let row: Option<(Vec<i64>, bool)> = sqlx::query_as(
        "WITH own AS (SELECT 1 FROM call_jobs WHERE call_uuid = $1 AND locked_by = $2 AND state = 'running' FOR UPDATE),
              -- Read before this statement's update: the credit the leg held while it ran.
              held AS (SELECT credit_reserved FROM calls WHERE uuid = $1),
              u AS (UPDATE calls SET status = COALESCE($3, status), detail = COALESCE($4, detail), last_seq = $5,
                           answered_at = COALESCE($6, answered_at), start_time = COALESCE($6, start_time),
                           end_time = COALESCE($7, end_time), duration_s = COALESCE($8, duration_s), rate = COALESCE($9, rate),
                           price = COALESCE($10, price), network = COALESCE($11, network),
                           country = COALESCE($24, country), billed_s = COALESCE($25, billed_s), ending = COALESCE($26, ending),
                           disconnected_by = COALESCE($12, disconnected_by), updated_at = now(),
                           credit_reserved = CASE WHEN $13 THEN 0 ELSE credit_reserved END
                    WHERE uuid = $1 AND EXISTS (SELECT 1 FROM own) RETURNING account_id),
              -- The price is debited in the statement that writes it: both happen or neither.
              d AS (INSERT INTO account_ledger (account_id, amount, kind, call_uuid)
                    SELECT account_id, -$10, 'call', $1 FROM u WHERE $13 AND $10 > 0
                    ON CONFLICT (call_uuid) DO NOTHING RETURNING account_id, amount),
              -- The debit and the release of what the leg held reach the account row through
              -- the settler (billing::ledger::settle): no leg waits on its account's row lock.
              b AS (INSERT INTO account_settlements (account_id, amount, released)
                    SELECT (SELECT account_id FROM u), COALESCE((SELECT amount FROM d), 0), (SELECT credit_reserved FROM held)
                    WHERE $13 AND EXISTS (SELECT 1 FROM u)
                      AND (EXISTS (SELECT 1 FROM d) OR (SELECT credit_reserved FROM held) <> 0)),
              j AS (UPDATE call_jobs SET state = 'done', locked_by = NULL WHERE call_uuid = $1 AND $13 AND EXISTS (SELECT 1 FROM own)),
              m AS (UPDATE call_commands c SET state = r.state, reason = r.reason, applied_at = now()
                    FROM unnest($21::bigint[], $22::text[], $23::text[]) AS r(id, state, reason)
                    WHERE c.id = r.id AND EXISTS (SELECT 1 FROM own)),
              k AS (UPDATE call_commands SET state = 'rejected', reason = 'the call ended', applied_at = now()
                    WHERE call_uuid = $1 AND state = 'pending' AND $13 AND id <> ALL($21) AND EXISTS (SELECT 1 FROM own)),
              hand AS (SELECT $20::float8 IS NOT NULL
                              AND NOT EXISTS (SELECT 1 FROM events p WHERE p.call_uuid = $1 AND p.state = 'pending') AS off),
              e AS (INSERT INTO events (call_uuid, seq, kind, payload, url, method, state, delivered_at, locked_until)
                    SELECT $1, t.seq, t.kind, t.payload, t.url, t.method, t.state, CASE WHEN t.state = 'sent_inline' THEN now() END,
                           CASE WHEN hand.off AND t.state = 'pending' THEN now() + make_interval(secs => $20::float8) END
                    FROM unnest($14::int[], $15::text[], $16::jsonb[], $17::text[], $18::text[], $19::text[]) AS t(seq, kind, payload, url, method, state), hand
                    WHERE EXISTS (SELECT 1 FROM own)
                    RETURNING id, seq)
         SELECT COALESCE((SELECT array_agg(id ORDER BY seq) FROM e), '{}'), (SELECT off FROM hand) FROM own",
    )
    .bind(leg)
    .bind(instance)
    .bind(&change.status)
    .bind(&change.detail)
    .bind(last_seq)
    .bind(change.answered_at)
    .bind(finish.map(|f| f.end_time))
    .bind(finish.map(|f| f.duration_s))
    .bind(finish.and_then(|f| f.rate))
    .bind(finish.and_then(|f| f.price))
    .bind(finish.and_then(|f| f.network.clone()))
    .bind(finish.and_then(|f| f.disconnected_by.clone()))
    .bind(finish.is_some())
    .bind(&seqs)
    .bind(&kinds)
    .bind(&payloads)
    .bind(&urls)
    .bind(&methods)
    .bind(&states)
    .bind(hand_off_lock_s.map(|s| s as f64))
    .bind(change.commands.iter().map(|c| c.0).collect::<Vec<i64>>())
    .bind(change.commands.iter().map(|c| c.1).collect::<Vec<&str>>())
    .bind(change.commands.iter().map(|c| c.2.as_deref()).collect::<Vec<Option<&str>>>())
    .bind(finish.and_then(|f| f.country.clone()))
    .bind(finish.and_then(|f| f.billed_s))
    .bind(finish.and_then(|f| f.ending.clone()))
    .fetch_optional(pool)
    .await?;
    row.map(|(ids, handed_off)| Written { ids, handed_off }).ok_or(StoreError::LostOwnership)
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
