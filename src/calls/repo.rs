//! SQL for call legs, reused by the API and (later) the call engine.

use super::create::NewCall;
use super::list::{CallFilter, Order};
use super::model::{format_time, CallRow, CALL_COLUMNS, SHOWN_STATUS};
use super::writer::CallWriter;
use crate::history::{self, pages::Seek, Window};
use crate::ncco::Endpoint;
use crate::webhooks::dispatcher::{HandOff, HandedEvent};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

/// The result of a create: the 201 body, or what an Idempotency-Key says instead.
#[derive(Debug)]
pub enum CreateOutcome {
    Created(Value),
    /// The same key and body were seen before: here is the first response.
    Replayed(Value),
    /// The key was used before with a different body.
    KeyReused,
}

pub struct IdempotencyKey<'a> {
    pub key: &'a str,
    /// Canonical form of the request body; compared as a SHA-256.
    pub canonical_body: &'a str,
    pub ttl_hours: i64,
}

struct Prepared {
    uuid: Uuid,
    conversation_uuid: String,
    created_at: DateTime<Utc>,
    /// When a worker may dial: later than now for calls queued over the account's rate.
    run_at: DateTime<Utc>,
    started_event: Value,
    response: Value,
}

fn prepare(call: &NewCall, from: &Endpoint, dial_after: std::time::Duration) -> Prepared {
    let uuid = Uuid::new_v4();
    let conversation_uuid = format!("CON-{}", Uuid::new_v4());
    let created_at = Utc::now();
    let run_at = created_at + chrono::Duration::from_std(dial_after).unwrap_or_default();
    let mut started_event = json!({
        "from": from.address(),
        "to": call.to.address(),
        "uuid": uuid,
        "conversation_uuid": conversation_uuid,
        "status": "started",
        "direction": "outbound",
        "timestamp": format_time(created_at),
    });
    if let Some(user_data) = &call.user_data {
        started_event["user_data"] = json!(user_data);
    }
    let response = json!({ "uuid": uuid, "status": "started", "direction": "outbound", "conversation_uuid": conversation_uuid });
    Prepared { uuid, conversation_uuid, created_at, run_at, started_event, response }
}

/// One leg as stored by `insert_calls`: every value bound, owned so it can wait in the writer's
/// queue.
pub struct CallInsert {
    uuid: Uuid,
    conversation_uuid: String,
    account_id: i64,
    application_id: Uuid,
    to: Value,
    from: Value,
    random_from_number: bool,
    ncco: Option<Value>,
    answer_url: Option<String>,
    answer_method: String,
    event_url: Option<String>,
    event_method: String,
    fallback_url: Option<String>,
    machine_detection: Option<String>,
    advanced_machine_detection: Option<Value>,
    length_timer_s: i32,
    ringing_timer_s: i32,
    created_at: DateTime<Utc>,
    started_event: Value,
    run_at: DateTime<Utc>,
    sip_options: Option<Value>,
    user_data: Option<String>,
    direction: &'static str,
    /// A sandbox caller's behaviour (the simulated network plays it).
    caller_behaviour: Option<Value>,
    /// The instance whose job it is from the start (it holds an inbound caller's dialog); None:
    /// queued for any instance's claim.
    running_on: Option<Uuid>,
    /// An inbound caller that instance rings at once: the leg is stored `ringing`, with its
    /// `ringing` event after `started`, in the same commit.
    ringing_event: Option<Value>,
}

impl CallInsert {
    /// A call to one of our numbers (`to`, digits) from `from`, answered by `app`'s webhooks;
    /// its conversation_uuid is `conversation_uuid()`.
    pub fn inbound(uuid: Uuid, app: &AnsweringApp, to: &str, from: &str, caller_behaviour: Option<Value>, running_on: Option<Uuid>) -> CallInsert {
        let conversation_uuid = format!("CON-{}", Uuid::new_v4());
        let created_at = Utc::now();
        let status_event = |status: &str| {
            json!({
                "from": from, "to": to, "uuid": uuid, "conversation_uuid": conversation_uuid,
                "status": status, "direction": "inbound", "timestamp": format_time(created_at),
            })
        };
        let (started_event, ringing_event) = (status_event("started"), running_on.map(|_| status_event("ringing")));
        CallInsert {
            uuid,
            conversation_uuid,
            account_id: app.account_id,
            application_id: app.application_id,
            to: json!({"type": "phone", "number": to}),
            from: json!({"type": "phone", "number": from}),
            random_from_number: false,
            ncco: None,
            answer_url: app.answer_url.clone(),
            answer_method: app.answer_method.clone(),
            event_url: app.event_url.clone(),
            event_method: app.event_method.clone(),
            fallback_url: app.fallback_answer_url.clone(),
            machine_detection: None,
            advanced_machine_detection: None,
            length_timer_s: DEFAULT_LENGTH_TIMER_S,
            ringing_timer_s: DEFAULT_RINGING_TIMER_S,
            created_at,
            started_event,
            run_at: created_at,
            sip_options: None,
            user_data: None,
            direction: "inbound",
            caller_behaviour,
            running_on,
            ringing_event,
        }
    }

    /// The events stored with the leg, in order (`started`, then `ringing` for an inbound caller
    /// rung at once), as `insert_calls` returned them, handed to this instance's dispatcher.
    pub fn stored_hand_off(&self, mut stored: Vec<(i64, Value)>) -> HandOff {
        stored.sort_by_key(|(id, _)| *id);
        HandOff {
            call_uuid: self.uuid,
            application_id: self.application_id,
            after: None,
            events: stored
                .into_iter()
                .map(|(id, payload)| HandedEvent { id, payload, url: self.event_url.clone(), method: self.event_method.clone() })
                .collect(),
        }
    }

    /// Whether the leg is stored `ringing` (see `ringing_event`).
    pub fn rung(&self) -> bool {
        self.ringing_event.is_some()
    }

    pub fn conversation_uuid(&self) -> &str {
        &self.conversation_uuid
    }

    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    fn new(account_id: i64, application_id: Uuid, call: &NewCall, from: &Endpoint, p: &Prepared) -> CallInsert {
        CallInsert {
            uuid: p.uuid,
            conversation_uuid: p.conversation_uuid.clone(),
            account_id,
            application_id,
            to: serde_json::to_value(&call.to).unwrap_or(Value::Null),
            from: serde_json::to_value(from).unwrap_or(Value::Null),
            random_from_number: call.random_from_number,
            ncco: call.ncco.clone(),
            answer_url: call.answer.as_ref().map(|a| a.url.clone()),
            answer_method: call.answer.as_ref().map_or("GET", |a| &a.method).to_string(),
            event_url: call.event.as_ref().map(|e| e.url.clone()),
            event_method: call.event.as_ref().map_or("POST", |e| &e.method).to_string(),
            fallback_url: call.fallback_url.clone(),
            machine_detection: call.machine_detection.clone(),
            advanced_machine_detection: call.advanced_machine_detection.as_ref().and_then(|a| serde_json::to_value(a).ok()),
            length_timer_s: call.length_timer_s,
            ringing_timer_s: call.ringing_timer_s,
            created_at: p.created_at,
            started_event: p.started_event.clone(),
            run_at: p.run_at,
            sip_options: call.sip_options.as_ref().and_then(|o| serde_json::to_value(o).ok()),
            user_data: call.user_data.clone(),
            direction: "outbound",
            caller_behaviour: None,
            running_on: None,
            ringing_event: None,
        }
    }
}

/// Inserts legs, each with its job and its `started` event, in one statement (one transaction,
/// one round trip): for every leg either all three rows exist or none does. `hand_off_lock_s`
/// locks the events for this instance's dispatcher, which is handed them. Returns (leg, its
/// `started` event id and payload).
///
/// Stamped with the database's clock, not this instance's: history is sealed by the database's
/// clock, and a lagging instance would write legs into hours already sealed (never counted).
pub async fn insert_calls<'e, E>(executor: E, legs: &[&CallInsert], hand_off_lock_s: Option<i64>) -> Result<Vec<(Uuid, i64, Value)>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    fn column<'a, T>(legs: &[&'a CallInsert], f: impl Fn(&'a CallInsert) -> T) -> Vec<T> {
        legs.iter().map(|l| f(l)).collect()
    }
    sqlx::query_as(
        "WITH t AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::uuid[], $5::jsonb[], $6::jsonb[], $7::bool[],
                                          $8::jsonb[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
                                          $15::jsonb[], $16::int[], $17::int[], $18::timestamptz[], $19::jsonb[], $20::timestamptz[],
                                          $22::jsonb[], $23::text[], $24::text[], $25::jsonb[], $26::uuid[], $27::jsonb[])
                    AS t(uuid, conversation_uuid, account_id, application_id, to_endpoint, from_endpoint, random_from_number,
                         ncco, answer_url, answer_method, event_url, event_method, fallback_url, machine_detection,
                         advanced_machine_detection, length_timer_s, ringing_timer_s, created_at, started_event, run_at,
                         sip_options, user_data, direction, caller_behaviour, running_on, ringing_event)),
              c AS (INSERT INTO calls (uuid, conversation_uuid, account_id, application_id, status, to_endpoint, from_endpoint,
                               random_from_number, ncco, answer_url, answer_method, event_url, event_method, fallback_url,
                               machine_detection, advanced_machine_detection, length_timer_s, ringing_timer_s, created_at, updated_at,
                               sip_options, user_data, direction, caller_behaviour, last_seq)
                    SELECT uuid, conversation_uuid, account_id, application_id,
                           CASE WHEN ringing_event IS NULL THEN 'started' ELSE 'ringing' END, to_endpoint, from_endpoint,
                           random_from_number, ncco, answer_url, answer_method, event_url, event_method, fallback_url,
                           machine_detection, advanced_machine_detection, length_timer_s, ringing_timer_s, now(), now(),
                           sip_options, user_data, direction, caller_behaviour, CASE WHEN ringing_event IS NULL THEN 1 ELSE 2 END
                    FROM t),
              -- A job an instance runs from the start (an inbound caller's dialog is there) is
              -- stored running, claimed by it; the others wait for a claim.
              j AS (INSERT INTO call_jobs (call_uuid, run_at, created_at, state, locked_by, attempts, claimed_at)
                    SELECT uuid, now() + (run_at - created_at), now(), CASE WHEN running_on IS NULL THEN 'queued' ELSE 'running' END,
                           running_on, CASE WHEN running_on IS NULL THEN 0 ELSE 1 END, CASE WHEN running_on IS NULL THEN NULL ELSE now() END
                    FROM t)
         INSERT INTO events (call_uuid, seq, kind, payload, url, method, created_at, locked_until)
         SELECT t.uuid, e.seq, e.kind,
                jsonb_set(e.payload, '{timestamp}', to_jsonb(to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))),
                t.event_url, t.event_method, now(), now() + make_interval(secs => $21::float8)
         FROM t CROSS JOIN LATERAL (VALUES (1, 'started', t.started_event), (2, 'ringing', t.ringing_event)) AS e(seq, kind, payload)
         WHERE e.payload IS NOT NULL ORDER BY t.uuid, e.seq
         RETURNING call_uuid, id, payload",
    )
    .bind(column(legs, |l| l.uuid))
    .bind(column(legs, |l| l.conversation_uuid.as_str()))
    .bind(column(legs, |l| l.account_id))
    .bind(column(legs, |l| l.application_id))
    .bind(column(legs, |l| &l.to))
    .bind(column(legs, |l| &l.from))
    .bind(column(legs, |l| l.random_from_number))
    .bind(column(legs, |l| l.ncco.as_ref()))
    .bind(column(legs, |l| l.answer_url.as_deref()))
    .bind(column(legs, |l| l.answer_method.as_str()))
    .bind(column(legs, |l| l.event_url.as_deref()))
    .bind(column(legs, |l| l.event_method.as_str()))
    .bind(column(legs, |l| l.fallback_url.as_deref()))
    .bind(column(legs, |l| l.machine_detection.as_deref()))
    .bind(column(legs, |l| l.advanced_machine_detection.as_ref()))
    .bind(column(legs, |l| l.length_timer_s))
    .bind(column(legs, |l| l.ringing_timer_s))
    .bind(column(legs, |l| l.created_at))
    .bind(column(legs, |l| &l.started_event))
    .bind(column(legs, |l| l.run_at))
    .bind(hand_off_lock_s.map(|s| s as f64))
    .bind(column(legs, |l| l.sip_options.as_ref()))
    .bind(column(legs, |l| l.user_data.as_deref()))
    .bind(column(legs, |l| l.direction))
    .bind(column(legs, |l| l.caller_behaviour.as_ref()))
    .bind(column(legs, |l| l.running_on))
    .bind(column(legs, |l| l.ringing_event.as_ref()))
    .fetch_all(executor)
    .await
}

/// Vonage's defaults: a call lasts at most 2 hours, and rings at most 60 s.
pub const DEFAULT_LENGTH_TIMER_S: i32 = 7200;
pub const DEFAULT_RINGING_TIMER_S: i32 = 60;

/// An application's webhooks, as an inbound leg of it is stored with them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AnsweringApp {
    pub account_id: i64,
    pub application_id: Uuid,
    pub answer_url: Option<String>,
    pub answer_method: String,
    pub event_url: Option<String>,
    pub event_method: String,
    pub fallback_answer_url: Option<String>,
}

/// Whether a live Idempotency-Key of the account already created a call: a retry of it is
/// answered with that call, whatever has changed since (credit included).
pub async fn idempotency_key_used(pool: &PgPool, account_id: i64, key: &str, ttl_hours: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM idempotency_keys WHERE account_id = $1 AND key = $2 AND created_at >= now() - make_interval(hours => $3))",
    )
    .bind(account_id)
    .bind(key)
    .bind(ttl_hours as i32)
    .fetch_one(pool)
    .await
}

pub async fn create(
    pool: &PgPool,
    writer: &CallWriter,
    account_id: i64,
    application_id: Uuid,
    call: &NewCall,
    from: &Endpoint,
    dial_after: std::time::Duration,
    idempotency: Option<IdempotencyKey<'_>>,
) -> Result<CreateOutcome, sqlx::Error> {
    let prepared = prepare(call, from, dial_after);
    let leg = CallInsert::new(account_id, application_id, call, from, &prepared);
    let Some(key) = idempotency else {
        writer.insert(leg).await?;
        return Ok(CreateOutcome::Created(prepared.response));
    };
    let request_hash = hex::encode(Sha256::digest(key.canonical_body.as_bytes()));
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2 AND created_at < now() - make_interval(hours => $3)")
        .bind(account_id)
        .bind(key.key)
        .bind(key.ttl_hours as i32)
        .execute(&mut *tx)
        .await?;
    // A concurrent request with the same key waits here on the unique index until the first commits.
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (account_id, key, request_hash, response_status, response_body)
         VALUES ($1, $2, $3, 201, $4) ON CONFLICT (account_id, key) DO NOTHING",
    )
    .bind(account_id)
    .bind(key.key)
    .bind(&request_hash)
    .bind(&prepared.response)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        tx.rollback().await?;
        let (first_hash, first_body): (String, Value) =
            sqlx::query_as("SELECT request_hash, response_body FROM idempotency_keys WHERE account_id = $1 AND key = $2")
                .bind(account_id)
                .bind(key.key)
                .fetch_one(pool)
                .await?;
        return Ok(if first_hash == request_hash { CreateOutcome::Replayed(first_body) } else { CreateOutcome::KeyReused });
    }
    insert_calls(&mut *tx, &[&leg], None).await?;
    tx.commit().await?;
    Ok(CreateOutcome::Created(prepared.response))
}

/// One leg as `GET /v1/calls/{uuid}` shows it: with its SIP facts, which the list leaves out.
pub async fn find_for_account(pool: &PgPool, account_id: i64, uuid: Uuid) -> Result<Option<CallRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {CALL_COLUMNS}, sip FROM calls WHERE uuid = $1 AND account_id = $2"))
        .bind(uuid)
        .bind(account_id)
        .fetch_optional(pool)
        .await
}

fn push_filters<'a>(qb: &mut QueryBuilder<'a, Postgres>, account_id: i64, filter: &'a CallFilter) {
    qb.push(" WHERE account_id = ").push_bind(account_id);
    if let Some(status) = &filter.status {
        qb.push(format!(" AND {SHOWN_STATUS} = ")).push_bind(status);
    }
    if let Some(start) = filter.date_start {
        qb.push(" AND created_at >= ").push_bind(start);
    }
    if let Some(end) = filter.date_end {
        qb.push(" AND created_at <= ").push_bind(end);
    }
    if let Some(conversation) = &filter.conversation_uuid {
        qb.push(" AND conversation_uuid = ").push_bind(conversation);
    }
}

/// The page the filter asks for, and how many calls match in all. A conversation's legs are
/// few and counted directly; every other filter counts and seeks through the hourly rollup
/// (`history::pages`), so deep pages of large accounts stay fast.
pub async fn list(pool: &PgPool, account_id: i64, filter: &CallFilter) -> Result<(Vec<CallRow>, i64), sqlx::Error> {
    let (total, seek) = if filter.conversation_uuid.is_some() {
        let mut count = QueryBuilder::new("SELECT count(*) FROM calls");
        push_filters(&mut count, account_id, filter);
        let (total,): (i64,) = count.build_query_as().fetch_one(pool).await?;
        (total, Seek { skip: filter.record_index, ..Seek::default() })
    } else {
        let window = Window { start: filter.date_start, end: filter.date_end };
        history::pages::count_and_seek(pool, account_id, filter.status.as_deref(), window, filter.order, filter.record_index).await?
    };
    if filter.record_index >= total {
        return Ok((Vec::new(), total));
    }
    let mut page = QueryBuilder::new(format!("SELECT {CALL_COLUMNS} FROM calls"));
    push_filters(&mut page, account_id, filter);
    if let Some(from) = seek.from {
        page.push(" AND created_at >= ").push_bind(from);
    }
    if let Some(until) = seek.until {
        page.push(" AND created_at < ").push_bind(until);
    }
    page.push(match filter.order {
        Order::Asc => " ORDER BY created_at ASC, uuid ASC",
        Order::Desc => " ORDER BY created_at DESC, uuid DESC",
    });
    page.push(" LIMIT ").push_bind(filter.page_size).push(" OFFSET ").push_bind(seek.skip);
    let rows = page.build_query_as().fetch_all(pool).await?;
    Ok((rows, total))
}

/// One event of a call's history with its delivery attempts.
#[derive(Debug, sqlx::FromRow, serde::Serialize)]
pub struct HistoryEntry {
    pub seq: i32,
    pub kind: String,
    pub payload: Value,
    pub url: Option<String>,
    pub method: String,
    pub state: String,
    #[serde(serialize_with = "ser_time")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "ser_opt_time")]
    pub delivered_at: Option<DateTime<Utc>>,
    pub attempts: Value,
}

fn ser_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*t))
}

fn ser_opt_time<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_time(*t)),
        None => s.serialize_none(),
    }
}

/// The call's events in order, each with every delivery attempt.
pub async fn history(pool: &PgPool, account_id: i64, uuid: Uuid) -> Result<Option<Vec<HistoryEntry>>, sqlx::Error> {
    if find_for_account(pool, account_id, uuid).await?.is_none() {
        return Ok(None);
    }
    let entries = sqlx::query_as(
        "SELECT e.seq, e.kind, e.payload, e.url, e.method, e.state, e.created_at, e.delivered_at,
                COALESCE((SELECT jsonb_agg(jsonb_build_object(
                              'attempted_at', to_char(a.attempted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                              'status_code', a.status_code, 'latency_ms', a.latency_ms, 'error', a.error) ORDER BY a.id)
                          FROM webhook_attempts a WHERE a.event_id = e.id), '[]'::jsonb) AS attempts
         FROM events e WHERE e.call_uuid = $1 ORDER BY e.seq",
    )
    .bind(uuid)
    .fetch_all(pool)
    .await?;
    Ok(Some(entries))
}

/// A recording, if it belongs to `application_id`: (content type, bytes).
pub async fn recording(pool: &PgPool, application_id: Uuid, id: Uuid) -> Result<Option<(String, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as("SELECT content_type, content FROM recordings WHERE id = $1 AND application_id = $2")
        .bind(id)
        .bind(application_id)
        .fetch_optional(pool)
        .await
}

/// What became of a command sent to a live call.
#[derive(Debug)]
pub enum CommandOutcome {
    Accepted,
    NoSuchCall,
    /// The call is in `status`, which does not allow the command.
    WrongState(String),
}

pub const ENDED_STATUSES: [&str; 7] = ["completed", "busy", "cancelled", "failed", "rejected", "timeout", "unanswered"];

/// Stores a command for the leg's owner and wakes it (NOTIFY on commit), unless the call has
/// ended or (for media and transfers) is not answered yet.
pub async fn send_command(pool: &PgPool, account_id: i64, uuid: Uuid, command: &super::control::Command) -> Result<CommandOutcome, sqlx::Error> {
    let row: Option<(String, Option<i64>)> = sqlx::query_as(
        "WITH c AS (SELECT uuid, status FROM calls WHERE uuid = $1 AND account_id = $2),
              ins AS (INSERT INTO call_commands (call_uuid, action, body)
                      SELECT uuid, $3, $4 FROM c
                      WHERE status <> ALL($5) AND (NOT $6 OR status IN ('answered', 'machine'))
                      RETURNING id),
              -- The command travels in the notification (8000 bytes at most; else the uuid only,
              -- and the leg reads it from the table).
              n AS (SELECT pg_notify('outdial_commands', CASE WHEN octet_length(p) < 7900 THEN p ELSE $1::text END)
                    FROM (SELECT json_build_object('call', $1, 'id', ins.id, 'body', $4::jsonb)::text AS p FROM ins) x)
         SELECT c.status, (SELECT id FROM ins) FROM c LEFT JOIN n ON true",
    )
    .bind(uuid)
    .bind(account_id)
    .bind(command.name())
    .bind(sqlx::types::Json(command))
    .bind(&ENDED_STATUSES[..])
    .bind(command.needs_answer())
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        None => CommandOutcome::NoSuchCall,
        Some((_, Some(_))) => CommandOutcome::Accepted,
        Some((status, None)) => CommandOutcome::WrongState(status),
    })
}
