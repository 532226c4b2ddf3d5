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
    /// The attempts of a webhook the leg sent itself (answer_url, input, notify): stored by the
    /// statement that stores the event, so sending one costs no commit of its own.
    pub attempts: Vec<super::answer::Attempt>,
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
    pub commands: Vec<CommandReport>,
    /// The leg's SIP facts (replaces the stored ones).
    pub sip: Option<Value>,
}

/// An API command a write reports on: (id, applied | rejected, reason).
pub type CommandReport = (i64, &'static str, Option<String>);

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
    /// The newest older event of the call still pending (in flight, locked) when the new ones
    /// were handed off: the dispatcher sends them only after it has delivered that one.
    pub after: Option<i64>,
}

/// One leg's write. `hand_off_lock_s`: when this instance delivers webhooks, new pending events
/// whose call has no older pending event waiting to be claimed (none, or only ones in flight)
/// are locked for it for that long, so it can send them straight from memory while no other
/// dispatcher claims them; after a crash the lock expires and any dispatcher delivers them.
pub struct LegWrite {
    pub leg: Uuid,
    pub last_seq: i32,
    pub change: Change,
    pub hand_off_lock_s: Option<i64>,
}

/// Stores the writes of several legs (each leg at most once) in one statement, so they share a
/// round trip, a plan and a commit. Each takes effect only while this instance owns its leg;
/// the others are answered `LostOwnership`. The statement fails (and stores nothing) if any
/// write is refused by the database.
pub async fn apply(pool: &PgPool, instance: Uuid, writes: &[LegWrite]) -> Result<Vec<Result<Written, StoreError>>, sqlx::Error> {
    let finishes: Vec<Option<&Finish>> = writes.iter().map(|w| w.change.finish.as_ref()).collect();
    let events: Vec<(Uuid, &NewEvent)> = writes.iter().flat_map(|w| w.change.events.iter().map(move |e| (w.leg, e))).collect();
    let commands: Vec<(Uuid, &CommandReport)> =
        writes.iter().flat_map(|w| w.change.commands.iter().map(move |c| (w.leg, c))).collect();
    let attempts: Vec<(Uuid, i32, &super::answer::Attempt)> =
        events.iter().flat_map(|(leg, e)| e.attempts.iter().map(move |a| (*leg, e.seq, a))).collect();
    let rows: Vec<(Uuid, Vec<i64>, bool, Option<i64>)> = sqlx::query_as(
        "WITH w AS (SELECT * FROM unnest($1::uuid[], $3::text[], $4::text[], $5::int[], $6::timestamptz[], $7::timestamptz[],
                                         $8::int[], $9::numeric[], $10::numeric[], $11::text[], $12::text[], $13::bool[],
                                         $14::text[], $15::int[], $16::text[], $17::float8[], $29::jsonb[])
                    AS w(leg, status, detail, last_seq, answered_at, end_time, duration_s, rate, price, network,
                         disconnected_by, finish, country, billed_s, ending, hand_off_s, sip)),
              -- The legs this instance still owns (a fence against a takeover), each job row
              -- locked by a probe of its key (a LATERAL per leg: a join was planned, on stale
              -- statistics, as a scan of every running leg of the instance).
              own AS (SELECT w.* FROM (SELECT * FROM w ORDER BY leg) w
                      CROSS JOIN LATERAL (SELECT 1 FROM call_jobs j WHERE j.call_uuid = w.leg AND j.locked_by = $2
                                          AND j.state = 'running' LIMIT 1 FOR UPDATE) owned),
              -- Read before this statement's update: the credit each leg held while it ran.
              held AS (SELECT c.uuid, c.credit_reserved FROM calls c JOIN own ON c.uuid = own.leg),
              u AS (UPDATE calls c SET status = COALESCE(o.status, c.status), detail = COALESCE(o.detail, c.detail), last_seq = o.last_seq,
                           answered_at = COALESCE(o.answered_at, c.answered_at), start_time = COALESCE(o.answered_at, c.start_time),
                           end_time = COALESCE(o.end_time, c.end_time), duration_s = COALESCE(o.duration_s, c.duration_s),
                           rate = COALESCE(o.rate, c.rate), price = COALESCE(o.price, c.price), network = COALESCE(o.network, c.network),
                           country = COALESCE(o.country, c.country), billed_s = COALESCE(o.billed_s, c.billed_s),
                           ending = COALESCE(o.ending, c.ending), disconnected_by = COALESCE(o.disconnected_by, c.disconnected_by),
                           sip = COALESCE(o.sip, c.sip),
                           updated_at = now(), credit_reserved = CASE WHEN o.finish THEN 0 ELSE c.credit_reserved END
                    FROM own o WHERE c.uuid = o.leg RETURNING c.uuid, c.account_id),
              -- The price is debited in the statement that writes it: both happen or neither.
              d AS (INSERT INTO account_ledger (account_id, amount, kind, call_uuid)
                    SELECT u.account_id, -o.price, 'call', o.leg FROM own o JOIN u ON u.uuid = o.leg WHERE o.finish AND o.price > 0
                    ON CONFLICT (call_uuid) DO NOTHING RETURNING call_uuid, amount),
              -- The debit and the release of what the leg held reach the account row through
              -- the settler (billing::ledger::settle): no leg waits on its account's row lock.
              b AS (INSERT INTO account_settlements (account_id, amount, released)
                    SELECT u.account_id, COALESCE(d.amount, 0), held.credit_reserved
                    FROM own o JOIN u ON u.uuid = o.leg JOIN held ON held.uuid = o.leg LEFT JOIN d ON d.call_uuid = o.leg
                    WHERE o.finish AND (d.call_uuid IS NOT NULL OR held.credit_reserved <> 0)),
              j AS (UPDATE call_jobs j SET state = 'done', locked_by = NULL FROM own o WHERE j.call_uuid = o.leg AND o.finish),
              m AS (UPDATE call_commands c SET state = r.state, reason = r.reason, applied_at = now()
                    FROM unnest($25::uuid[], $26::bigint[], $27::text[], $28::text[]) AS r(leg, id, state, reason)
                    WHERE c.id = r.id AND r.leg IN (SELECT leg FROM own)),
              k AS (UPDATE call_commands c SET state = 'rejected', reason = 'the call ended', applied_at = now()
                    FROM own o WHERE c.call_uuid = o.leg AND o.finish AND c.state = 'pending' AND c.id <> ALL($26)),
              -- Probes per leg (a scalar subquery is never planned as a join over every pending event).
              hand AS (SELECT o.leg, o.hand_off_s IS NOT NULL
                              AND (SELECT p.seq FROM events p WHERE p.call_uuid = o.leg AND p.state = 'pending'
                                     AND (p.locked_until IS NULL OR p.locked_until <= now()) LIMIT 1) IS NULL AS off,
                              (SELECT max(p.id) FROM events p WHERE p.call_uuid = o.leg AND p.state = 'pending') AS after
                       FROM own o),
              e AS (INSERT INTO events (call_uuid, seq, kind, payload, url, method, state, delivered_at, locked_until, attempts)
                    SELECT t.leg, t.seq, t.kind, t.payload, t.url, t.method, t.state, CASE WHEN t.state = 'sent_inline' THEN now() END,
                           CASE WHEN hand.off AND t.state = 'pending' THEN now() + make_interval(secs => o.hand_off_s) END, t.attempts
                    FROM unnest($18::uuid[], $19::int[], $20::text[], $21::jsonb[], $22::text[], $23::text[], $24::text[], $30::int[])
                         AS t(leg, seq, kind, payload, url, method, state, attempts)
                    JOIN own o ON o.leg = t.leg JOIN hand ON hand.leg = t.leg
                    RETURNING id, call_uuid, seq),
              a AS (INSERT INTO webhook_attempts (event_id, status_code, latency_ms, error)
                    SELECT e.id, t.code, t.latency, CASE WHEN t.error IS NULL THEN NULL ELSE t.url || ': ' || t.error END
                    FROM unnest($31::uuid[], $32::int[], $33::int[], $34::int[], $35::text[], $36::text[]) WITH ORDINALITY
                         AS t(leg, seq, code, latency, error, url, n)
                    JOIN e ON e.call_uuid = t.leg AND e.seq = t.seq ORDER BY t.n)
         SELECT hand.leg, COALESCE((SELECT array_agg(e.id ORDER BY e.seq) FROM e WHERE e.call_uuid = hand.leg), '{}'), hand.off, hand.after
         FROM hand",
    )
    .bind(writes.iter().map(|w| w.leg).collect::<Vec<Uuid>>())
    .bind(instance)
    .bind(writes.iter().map(|w| w.change.status.as_deref()).collect::<Vec<Option<&str>>>())
    .bind(writes.iter().map(|w| w.change.detail.as_deref()).collect::<Vec<Option<&str>>>())
    .bind(writes.iter().map(|w| w.last_seq).collect::<Vec<i32>>())
    .bind(writes.iter().map(|w| w.change.answered_at).collect::<Vec<Option<DateTime<Utc>>>>())
    .bind(finishes.iter().map(|f| f.map(|f| f.end_time)).collect::<Vec<Option<DateTime<Utc>>>>())
    .bind(finishes.iter().map(|f| f.map(|f| f.duration_s)).collect::<Vec<Option<i32>>>())
    .bind(finishes.iter().map(|f| f.and_then(|f| f.rate)).collect::<Vec<Option<Decimal>>>())
    .bind(finishes.iter().map(|f| f.and_then(|f| f.price)).collect::<Vec<Option<Decimal>>>())
    .bind(finishes.iter().map(|f| f.and_then(|f| f.network.as_deref())).collect::<Vec<Option<&str>>>())
    .bind(finishes.iter().map(|f| f.and_then(|f| f.disconnected_by.as_deref())).collect::<Vec<Option<&str>>>())
    .bind(finishes.iter().map(|f| f.is_some()).collect::<Vec<bool>>())
    .bind(finishes.iter().map(|f| f.and_then(|f| f.country.as_deref())).collect::<Vec<Option<&str>>>())
    .bind(finishes.iter().map(|f| f.and_then(|f| f.billed_s)).collect::<Vec<Option<i32>>>())
    .bind(finishes.iter().map(|f| f.and_then(|f| f.ending.as_deref())).collect::<Vec<Option<&str>>>())
    .bind(writes.iter().map(|w| w.hand_off_lock_s.map(|s| s as f64)).collect::<Vec<Option<f64>>>())
    .bind(events.iter().map(|(leg, _)| *leg).collect::<Vec<Uuid>>())
    .bind(events.iter().map(|(_, e)| e.seq).collect::<Vec<i32>>())
    .bind(events.iter().map(|(_, e)| e.kind.as_str()).collect::<Vec<&str>>())
    .bind(events.iter().map(|(_, e)| &e.payload).collect::<Vec<&Value>>())
    .bind(events.iter().map(|(_, e)| e.url.as_deref()).collect::<Vec<Option<&str>>>())
    .bind(events.iter().map(|(_, e)| e.method.as_str()).collect::<Vec<&str>>())
    .bind(events.iter().map(|(_, e)| e.state).collect::<Vec<&str>>())
    .bind(commands.iter().map(|(leg, _)| *leg).collect::<Vec<Uuid>>())
    .bind(commands.iter().map(|(_, c)| c.0).collect::<Vec<i64>>())
    .bind(commands.iter().map(|(_, c)| c.1).collect::<Vec<&str>>())
    .bind(commands.iter().map(|(_, c)| c.2.as_deref()).collect::<Vec<Option<&str>>>())
    .bind(writes.iter().map(|w| w.change.sip.as_ref()).collect::<Vec<Option<&Value>>>())
    .bind(events.iter().map(|(_, e)| e.attempts.len() as i32).collect::<Vec<i32>>())
    .bind(attempts.iter().map(|(leg, _, _)| *leg).collect::<Vec<Uuid>>())
    .bind(attempts.iter().map(|(_, seq, _)| *seq).collect::<Vec<i32>>())
    .bind(attempts.iter().map(|(_, _, a)| a.status_code).collect::<Vec<Option<i32>>>())
    .bind(attempts.iter().map(|(_, _, a)| a.latency_ms).collect::<Vec<i32>>())
    .bind(attempts.iter().map(|(_, _, a)| a.error.as_deref()).collect::<Vec<Option<&str>>>())
    .bind(attempts.iter().map(|(_, _, a)| a.url.as_str()).collect::<Vec<&str>>())
    .fetch_all(pool)
    .await?;
    let mut written: std::collections::HashMap<Uuid, Written> =
        rows.into_iter().map(|(leg, ids, handed_off, after)| (leg, Written { ids, handed_off, after })).collect();
    Ok(writes.iter().map(|w| written.remove(&w.leg).ok_or(StoreError::LostOwnership)).collect())
}

