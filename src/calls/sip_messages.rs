//! A call's SIP messages (its SIP ladder): stored in batches as the SIP carrier hands them
//! over, read back by the leg's Call-ID.

use crate::carrier::sip::trace::SipMessageRecord;
use super::format_time;
use serde_json::{json, Value};
use std::collections::HashMap;
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::mpsc;

/// Records stored per statement at most.
const BATCH: usize = 2000;
/// How long records gather before a write (one statement per this long under load).
const GATHER: Duration = Duration::from_millis(250);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// A ladder shows at most this many messages (a call that re-INVITEs for hours sends more).
const SHOWN: usize = 500;

/// Stores the records, one row per call (its messages in order, as a JSON array).
pub async fn insert(pool: &PgPool, records: &[SipMessageRecord]) -> Result<(), sqlx::Error> {
    let mut calls: Vec<(&str, chrono::DateTime<chrono::Utc>, Vec<Value>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for r in records {
        let at = *index.entry(&r.call_id).or_insert_with(|| {
            calls.push((&r.call_id, r.at, Vec::new()));
            calls.len() - 1
        });
        calls[at].2.push(json!({"d": if r.outbound { "out" } else { "in" }, "m": r.message, "c": r.cseq, "p": r.peer, "t": format_time(r.at)}));
    }
    sqlx::query("INSERT INTO sip_messages (call_id, first_at, messages) SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::jsonb[])")
        .bind(calls.iter().map(|c| c.0).collect::<Vec<_>>())
        .bind(calls.iter().map(|c| c.1).collect::<Vec<_>>())
        .bind(calls.into_iter().map(|c| Value::Array(c.2)).collect::<Vec<_>>())
        .execute(pool)
        .await?;
    Ok(())
}

/// Stores what `records` brings, a batch at a time, and deletes records older than `keep`.
/// Runs until the carrier is gone (or the engine stops it, after its legs drained).
pub async fn store(pool: PgPool, mut records: mpsc::Receiver<SipMessageRecord>, keep: Duration) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            n = records.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                // Let a burst gather: one statement for many calls' messages.
                tokio::time::sleep(GATHER).await;
                while batch.len() < BATCH {
                    match records.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                if let Err(e) = insert(&pool, &batch).await {
                    tracing::warn!(error = %e, records = batch.len(), "could not store SIP ladder records");
                }
                batch.clear();
            }
            _ = prune.tick() => {
                let deleted = sqlx::query("DELETE FROM sip_messages WHERE first_at < now() - make_interval(secs => $1)")
                    .bind(keep.as_secs_f64())
                    .execute(&pool)
                    .await;
                if let Err(e) = deleted {
                    tracing::warn!(error = %e, "could not delete old SIP ladder records");
                }
            }
        }
    }
}

/// The ladder of the dialog `call_id`, in order: `{dir: "out"|"in", msg, cseq, peer, at}`.
pub async fn ladder(pool: &PgPool, call_id: &str) -> Result<Vec<Value>, sqlx::Error> {
    let rows: Vec<(Value,)> = sqlx::query_as("SELECT messages FROM sip_messages WHERE call_id = $1 ORDER BY first_at, id")
        .bind(call_id)
        .fetch_all(pool)
        .await?;
    let mut messages: Vec<Value> = rows
        .into_iter()
        .flat_map(|(m,)| match m {
            Value::Array(list) => list,
            _ => Vec::new(),
        })
        .take(SHOWN)
        .map(|m| json!({"dir": m["d"], "msg": m["m"], "cseq": m["c"], "peer": m["p"], "at": m["t"]}))
        .collect();
    // Batches of one call may interleave by a few ms across instances: order by the time taken.
    messages.sort_by(|a, b| a["at"].as_str().cmp(&b["at"].as_str()));
    Ok(messages)
}
