//! What operators (accounts flagged `rates_admin`, who manage the platform's trunks and rates)
//! see: trunks with their live calls, observed calls per second and last errors, and instances
//! with the legs they run. Read on demand (the page asks every few seconds while it shows them).

use crate::calls::format_time;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

/// How far back calls per second are measured, in seconds.
const CPS_WINDOW_S: f64 = 10.0;
/// How far back failed attempts are listed, and how many per trunk.
const ERRORS_WINDOW: &str = "15 minutes";
const ERRORS_PER_TRUNK: usize = 5;
/// Legs listed per instance (the count is always exact).
const LEGS_PER_INSTANCE: usize = 50;

#[derive(sqlx::FromRow)]
struct TrunkRow {
    id: Uuid,
    name: String,
    account_id: Option<i64>,
    host: String,
    port: i32,
    transport: String,
    cps: Option<i32>,
    max_channels: Option<i32>,
    enabled: bool,
    live: i64,
    recent: i64,
}

#[derive(sqlx::FromRow)]
struct TrunkError {
    trunk: String,
    code: Option<i32>,
    reason: Option<String>,
    at: Option<String>,
    call_uuid: Uuid,
}

#[derive(sqlx::FromRow)]
struct InstanceRow {
    id: Uuid,
    hostname: String,
    pid: i32,
    roles: String,
    started_at: DateTime<Utc>,
    heartbeat_at: DateTime<Utc>,
    stopped_at: Option<DateTime<Utc>>,
    legs: i64,
}

#[derive(sqlx::FromRow)]
struct InstanceLeg {
    instance: Uuid,
    uuid: Uuid,
    account_id: i64,
    status: String,
    direction: String,
    trunk: Option<String>,
}

pub async fn overview(pool: &PgPool) -> Result<Value, sqlx::Error> {
    // Live calls per trunk from the running legs (the owner index), calls per second from the
    // last seconds' legs (the created_at BRIN index): no scan of the whole history.
    let trunks: Vec<TrunkRow> = sqlx::query_as(
        "WITH live AS (SELECT c.sip->>'trunk_id' AS trunk_id, count(*) AS n FROM call_jobs j JOIN calls c ON c.uuid = j.call_uuid
                       WHERE j.state = 'running' AND c.sip IS NOT NULL GROUP BY 1),
              recent AS (SELECT c.sip->>'trunk_id' AS trunk_id, count(*) AS n FROM calls c
                         WHERE c.created_at > now() - make_interval(secs => $1) AND c.sip IS NOT NULL GROUP BY 1)
         SELECT t.id, t.name, t.account_id, t.host, t.port, t.transport, t.cps, t.max_channels, t.enabled,
                COALESCE(live.n, 0) AS live, COALESCE(recent.n, 0) AS recent
         FROM trunks t LEFT JOIN live ON live.trunk_id = t.id::text LEFT JOIN recent ON recent.trunk_id = t.id::text
         ORDER BY t.account_id NULLS FIRST, t.name",
    )
    .bind(CPS_WINDOW_S)
    .fetch_all(pool)
    .await?;
    let errors: Vec<TrunkError> = sqlx::query_as(&format!(
        "SELECT a->>'trunk' AS trunk, (a->>'code')::int AS code, a->>'reason' AS reason, a->>'at' AS at, c.uuid AS call_uuid
         FROM calls c CROSS JOIN LATERAL jsonb_array_elements(COALESCE(c.sip->'attempts', '[]'::jsonb)) a
         WHERE c.created_at > now() - interval '{ERRORS_WINDOW}' AND c.sip IS NOT NULL
           AND (a->>'code' IS NULL OR (a->>'code')::int >= 400)
         ORDER BY a->>'at' DESC LIMIT 500"
    ))
    .fetch_all(pool)
    .await?;
    let mut errors_by_trunk: HashMap<&str, Vec<Value>> = HashMap::new();
    for e in &errors {
        let list = errors_by_trunk.entry(e.trunk.as_str()).or_default();
        if list.len() < ERRORS_PER_TRUNK {
            list.push(json!({"code": e.code, "reason": e.reason, "at": e.at, "call_uuid": e.call_uuid}));
        }
    }
    let instances: Vec<InstanceRow> = sqlx::query_as(
        "SELECT i.id, i.hostname, i.pid, i.roles, i.started_at, i.heartbeat_at, i.stopped_at,
                (SELECT count(*) FROM call_jobs j WHERE j.locked_by = i.id AND j.state = 'running') AS legs
         FROM instances i WHERE i.stopped_at IS NULL OR i.stopped_at > now() - interval '1 hour'
         ORDER BY i.started_at",
    )
    .fetch_all(pool)
    .await?;
    let legs: Vec<InstanceLeg> = sqlx::query_as(
        "SELECT j.locked_by AS instance, c.uuid, c.account_id, COALESCE(c.ending, c.status) AS status, c.direction, c.sip->>'trunk' AS trunk
         FROM call_jobs j JOIN calls c ON c.uuid = j.call_uuid WHERE j.state = 'running' ORDER BY c.created_at LIMIT 2000",
    )
    .fetch_all(pool)
    .await?;
    let mut legs_by_instance: HashMap<Uuid, Vec<Value>> = HashMap::new();
    for l in &legs {
        let list = legs_by_instance.entry(l.instance).or_default();
        if list.len() < LEGS_PER_INSTANCE {
            list.push(json!({"uuid": l.uuid, "account_id": l.account_id, "status": l.status, "direction": l.direction, "trunk": l.trunk}));
        }
    }
    let now = Utc::now();
    Ok(json!({
        "trunks": trunks.iter().map(|t| json!({
            "id": t.id, "name": t.name, "account_id": t.account_id, "host": t.host, "port": t.port, "transport": t.transport,
            "enabled": t.enabled, "cps_limit": t.cps, "max_channels": t.max_channels,
            "live_calls": t.live, "cps": (t.recent as f64 / CPS_WINDOW_S),
            "last_errors": errors_by_trunk.get(t.name.as_str()).cloned().unwrap_or_default(),
        })).collect::<Vec<_>>(),
        "instances": instances.iter().map(|i| json!({
            "id": i.id, "hostname": i.hostname, "pid": i.pid, "roles": i.roles,
            "started_at": format_time(i.started_at), "heartbeat_at": format_time(i.heartbeat_at),
            "heartbeat_age_ms": (now - i.heartbeat_at).num_milliseconds(),
            "stopped_at": i.stopped_at.map(format_time),
            "live_legs": i.legs,
            "legs": legs_by_instance.remove(&i.id).unwrap_or_default(),
        })).collect::<Vec<_>>(),
    }))
}
