//! One call as the console opens it: the leg, its event timeline with every webhook delivery
//! attempt, the commands sent to it, its SIP ladder and its recordings.

use crate::calls::{format_time, repo};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, sqlx::FromRow)]
struct Recording {
    id: Uuid,
    content_type: String,
    size: i32,
    start_time: DateTime<Utc>,
    end_time: DateTime<Utc>,
}

#[derive(Debug, sqlx::FromRow)]
struct CommandRow {
    action: String,
    state: String,
    reason: Option<String>,
    created_at: DateTime<Utc>,
    applied_at: Option<DateTime<Utc>>,
}

/// The call of `account_id`, or None when it has no such call. `base_url` prefixes links.
pub async fn call_detail(pool: &PgPool, account_id: i64, uuid: Uuid, base_url: &str) -> Result<Option<Value>, sqlx::Error> {
    let Some(call) = repo::find_for_account(pool, account_id, uuid).await? else { return Ok(None) };
    let events = repo::history(pool, account_id, uuid).await?.unwrap_or_default();
    let recordings: Vec<Recording> =
        sqlx::query_as("SELECT id, content_type, size, start_time, end_time FROM recordings WHERE call_uuid = $1 ORDER BY start_time")
            .bind(uuid)
            .fetch_all(pool)
            .await?;
    let commands: Vec<CommandRow> =
        sqlx::query_as("SELECT action, state, reason, created_at, applied_at FROM call_commands WHERE call_uuid = $1 ORDER BY id")
            .bind(uuid)
            .fetch_all(pool)
            .await?;
    let call_id = call.sip.as_ref().and_then(|s| s.get("call_id")).and_then(|c| c.as_str());
    let ladder = match call_id {
        Some(call_id) => crate::calls::sip_messages::ladder(pool, call_id).await?,
        None => Vec::new(),
    };
    let mut shown = call.to_json(base_url);
    shown["created_at"] = json!(format_time(call.created_at));
    Ok(Some(json!({
        "call": shown,
        "live": !repo::ENDED_STATUSES.contains(&call.status.as_str()),
        "events": events,
        "commands": commands.iter().map(|c| json!({
            "action": c.action, "state": c.state, "reason": c.reason,
            "created_at": format_time(c.created_at), "applied_at": c.applied_at.map(format_time),
        })).collect::<Vec<_>>(),
        "sip_ladder": ladder,
        "recordings": recordings.iter().map(|r| json!({
            "id": r.id, "content_type": r.content_type, "size": r.size,
            "start_time": format_time(r.start_time), "end_time": format_time(r.end_time),
            "href": format!("{base_url}/console/api/recordings/{}", r.id),
        })).collect::<Vec<_>>(),
    })))
}

/// A recording of one of the account's calls: (content type, bytes).
pub async fn recording(pool: &PgPool, account_id: i64, id: Uuid) -> Result<Option<(String, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.content_type, r.content FROM recordings r JOIN calls c ON c.uuid = r.call_uuid WHERE r.id = $1 AND c.account_id = $2",
    )
    .bind(id)
    .bind(account_id)
    .fetch_optional(pool)
    .await
}
