//! A call's SIP messages (its SIP ladder): stored in batches as the SIP carrier hands them
//! over, read back by the leg's Call-ID.

use crate::carrier::sip::trace::SipMessageRecord;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::mpsc;

/// Records stored per statement at most.
const BATCH: usize = 2000;
/// How long records gather before a write (one statement per this long under load).
const GATHER: Duration = Duration::from_millis(250);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// A ladder shows at most this many messages (a call that re-INVITEs for hours sends more).
const SHOWN: i64 = 500;

pub async fn insert(pool: &PgPool, records: &[SipMessageRecord]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sip_messages (call_id, at, outbound, message, cseq, peer)
         SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bool[], $4::text[], $5::text[], $6::text[])",
    )
    .bind(records.iter().map(|r| r.call_id.as_str()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.at).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.outbound).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.message.as_str()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.cseq.as_str()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.peer.as_deref()).collect::<Vec<_>>())
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
                let deleted = sqlx::query("DELETE FROM sip_messages WHERE at < now() - make_interval(secs => $1)")
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

/// The ladder of the dialog `call_id`, in order: `{dir: "out"|"in", msg, cseq, at, peer}`.
pub async fn ladder(pool: &PgPool, call_id: &str) -> Result<Vec<Value>, sqlx::Error> {
    let rows: Vec<(chrono::DateTime<chrono::Utc>, bool, String, String, Option<String>)> =
        sqlx::query_as("SELECT at, outbound, message, cseq, peer FROM sip_messages WHERE call_id = $1 ORDER BY at, id LIMIT $2")
            .bind(call_id)
            .bind(SHOWN)
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(at, outbound, msg, cseq, peer)| {
            json!({"dir": if outbound { "out" } else { "in" }, "msg": msg, "cseq": cseq, "peer": peer, "at": super::format_time(at)})
        })
        .collect())
}
