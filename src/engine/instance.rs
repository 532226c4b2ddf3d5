//! Instance leases: one heartbeat row per instance (not per leg, which would cost a write per
//! live call). Legs of an instance whose heartbeat went stale are re-queued for takeover.

use super::EngineCtx;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub async fn register(pool: &PgPool, id: Uuid, roles: &str) -> Result<(), sqlx::Error> {
    let hostname = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    sqlx::query("INSERT INTO instances (id, hostname, pid, roles) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(hostname)
        .bind(std::process::id() as i32)
        .bind(roles)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn heartbeat_and_reap(ctx: Arc<EngineCtx>, shutdown: CancellationToken) {
    let every = Duration::from_millis(ctx.settings.engine.heartbeat_ms);
    loop {
        if let Err(e) = beat(&ctx).await {
            tracing::warn!(error = %e, "heartbeat failed");
        }
        if let Err(e) = super::commands::sweep(&ctx).await {
            tracing::warn!(error = %e, "command sweep failed");
        }
        match reap(&ctx.pool, ctx.settings.engine.instance_timeout_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(legs = n, "took back legs of a dead instance"),
            Err(e) => tracing::warn!(error = %e, "reaper failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

async fn beat(ctx: &EngineCtx) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE instances SET heartbeat_at = now() WHERE id = $1").bind(ctx.instance_id).execute(&ctx.pool).await?;
    Ok(())
}

/// Re-queues the running legs of instances silent for longer than the timeout.
pub async fn reap(pool: &PgPool, timeout_ms: u64) -> Result<u64, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as(
        "WITH dead AS (
            UPDATE instances SET stopped_at = now()
            WHERE stopped_at IS NULL AND heartbeat_at < now() - make_interval(secs => $1::float8 / 1000)
            RETURNING id),
         requeued AS (
            UPDATE call_jobs SET state = 'queued', locked_by = NULL, run_at = now()
            WHERE state = 'running' AND (locked_by IN (SELECT id FROM dead)
                  OR locked_by IN (SELECT id FROM instances WHERE stopped_at IS NOT NULL))
            RETURNING call_uuid)
         SELECT count(*) FROM requeued",
    )
    .bind(timeout_ms as f64)
    .fetch_one(pool)
    .await?;
    let n = n as u64;
    if n > 0 {
        sqlx::query("SELECT pg_notify($1, '')").bind(crate::notify::JOBS_CHANNEL).execute(pool).await?;
    }
    Ok(n)
}

/// On graceful shutdown: this instance's unfinished legs go back to the queue at once.
pub async fn release(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH stopped AS (UPDATE instances SET stopped_at = now() WHERE id = $1)
         UPDATE call_jobs SET state = 'queued', locked_by = NULL, run_at = now() WHERE state = 'running' AND locked_by = $1",
    )
    .bind(id)
    .execute(pool)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')").bind(crate::notify::JOBS_CHANNEL).execute(pool).await?;
    Ok(())
}
