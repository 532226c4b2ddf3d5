//! Claiming legs: a short transaction with FOR UPDATE SKIP LOCKED; nothing stays open while a
//! call runs.

use super::commands;
use super::leg::{self, LegRow};
use super::EngineCtx;
use crate::billing::{self, Rate};
use chrono::Utc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub async fn claim_loop(ctx: Arc<EngineCtx>, wake: Arc<Notify>, poll: Duration, shutdown: CancellationToken) {
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let room = ctx.settings.engine.max_live_legs.saturating_sub(ctx.live_legs()) as i64;
        let claimed = if room > 0 { claim(&ctx, room.min(ctx.settings.engine.claim_batch)).await } else { Ok(vec![]) };
        match claimed {
            Ok(legs) => {
                let full = legs.len() as i64 == ctx.settings.engine.claim_batch;
                let lines: Vec<_> = legs.iter().map(|row| ctx.commands.register_quietly(row.uuid)).collect();
                let uuids: Vec<uuid::Uuid> = legs.iter().map(|row| row.uuid).collect();
                if !uuids.is_empty() {
                    commands::wake_legs_with_commands(&ctx, &uuids).await;
                }
                let rates = rates_of(&ctx, &legs).await;
                for ((row, rate), line) in legs.into_iter().zip(rates).zip(lines) {
                    ctx.live_legs.fetch_add(1, Ordering::Relaxed);
                    let ctx = ctx.clone();
                    let live = crate::metrics::LiveLeg::start();
                    tokio::spawn(async move {
                        let _live = live;
                        leg::drive(ctx.clone(), row, rate, line).await;
                        ctx.live_legs.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                if full {
                    continue;
                }
            }
            Err(e) => tracing::warn!(error = %e, "claiming legs failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// The deck entries of claimed legs, in one query for the batch. If it fails each leg looks its
/// own up when it needs it.
async fn rates_of(ctx: &EngineCtx, legs: &[LegRow]) -> Vec<Option<Option<Rate>>> {
    if legs.is_empty() {
        return vec![];
    }
    let numbers: Vec<String> = legs.iter().map(|row| leg::address_of(&row.to_endpoint)).collect();
    let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
    match billing::rates_for(&ctx.pool, &numbers, Utc::now()).await {
        Ok(rates) => rates.into_iter().map(Some).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "looking up claimed legs' rates failed; each leg looks its own up");
            vec![None; legs.len()]
        }
    }
}

async fn claim(ctx: &EngineCtx, limit: i64) -> Result<Vec<LegRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "WITH claimed AS (
            UPDATE call_jobs SET state = 'running', locked_by = $1, attempts = attempts + 1, claimed_at = now()
            WHERE call_uuid IN (
                SELECT call_uuid FROM call_jobs WHERE state = 'queued' AND run_at <= now()
                ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING call_uuid)
         SELECT {} FROM claimed JOIN calls c ON c.uuid = claimed.call_uuid {}",
        leg::LEG_COLUMNS,
        leg::LEG_JOINS
    ))
    .bind(ctx.instance_id)
    .bind(limit)
    .fetch_all(&ctx.pool)
    .await
}
