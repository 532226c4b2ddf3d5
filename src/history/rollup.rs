//! Sealing hours into the rollup. An hour is sealed once every leg created in it has ended
//! (its job is done) and the hour is `grace` behind the clock (a create stamped 10:59:59 may
//! commit a moment later). Sealed hours never change, so the rollup is exact, not an estimate.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::Duration;

/// At most this much history is sealed per statement, so catching up after an import stays a
/// series of short transactions.
const MAX_STEP: &str = "1 day";

/// Seals as many whole hours as may be sealed now, a day at most per transaction. Returns the
/// new `sealed_until`. Several instances may run this: the state row serialises them.
pub async fn seal(pool: &PgPool, grace: Duration) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    // The hours read below are recent pages that autovacuum may not have summarised yet, and a
    // BRIN scan reads every unsummarised range: summarise them first (a no-op when done).
    sqlx::query("SELECT brin_summarize_new_values('calls_created_brin')").execute(pool).await?;
    loop {
        let (from, to) = seal_step(pool, grace).await?;
        if to <= from {
            return Ok(to.max(from));
        }
    }
}

/// One transaction: seals [sealed_until, limit) and returns (old, new) `sealed_until`; None
/// while nothing was ever sealed ('-infinity').
async fn seal_step(pool: &PgPool, grace: Duration) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let (from, to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(&format!(
        "WITH st AS (SELECT sealed_until FROM call_rollup_state FOR UPDATE),
              -- nothing is older than the oldest call: the first seal starts at its hour
              s AS (SELECT CASE WHEN sealed_until > '-infinity' THEN sealed_until
                                ELSE COALESCE((SELECT date_trunc('hour', min(created_at), 'UTC') FROM calls), sealed_until)
                           END AS sealed_until FROM st),
              -- the oldest leg still queued or running holds back its hour and every later one
              live AS (SELECT min(c.created_at) AS oldest FROM call_jobs j JOIN calls c ON c.uuid = j.call_uuid
                       WHERE j.state IN ('queued', 'running'))
         SELECT NULLIF(s.sealed_until, '-infinity'),
                NULLIF(GREATEST(s.sealed_until, LEAST(s.sealed_until + interval '{MAX_STEP}',
                                                      date_trunc('hour', now() - make_interval(secs => $1), 'UTC'),
                                                      COALESCE(date_trunc('hour', live.oldest, 'UTC'), 'infinity'))), '-infinity')
         FROM s, live"
    ))
    .bind(grace.as_secs_f64())
    .fetch_one(&mut *tx)
    .await?;
    let (Some(from_t), Some(to_t)) = (from, to) else { return Ok((from, to)) };
    if to_t <= from_t {
        // Still records where the first seal starts; nothing else changes.
        sqlx::query("UPDATE call_rollup_state SET sealed_until = $1 WHERE sealed_until <> $1").bind(to_t).execute(&mut *tx).await?;
        tx.commit().await?;
        return Ok((from, to));
    }
    sqlx::query(
        "-- Only the columns summed: the CTE is materialized, and a leg's JSON (NCCO, SIP options and
         -- facts) would be copied into it for nothing.
         WITH legs AS (SELECT account_id, created_at, application_id, status, ending, country, network, start_time,
                              duration_s, billed_s, price
                       FROM calls WHERE created_at >= $1 AND created_at < $2),
              r AS (INSERT INTO call_rollup (account_id, hour, application_id, status, country, network,
                                             calls, answered, duration_s, billed_s, price)
                    SELECT account_id, date_trunc('hour', created_at, 'UTC'), application_id, COALESCE(ending, status),
                           COALESCE(country, ''), COALESCE(network, ''), count(*),
                           count(*) FILTER (WHERE start_time IS NOT NULL), COALESCE(sum(duration_s), 0),
                           COALESCE(sum(billed_s), 0), COALESCE(sum(price), 0)
                    FROM legs GROUP BY 1, 2, 3, 4, 5, 6)
         -- by the status the API shows and filters on (calls::model::SHOWN_STATUS)
         INSERT INTO call_counts (account_id, hour, status, calls)
         SELECT account_id, date_trunc('hour', created_at, 'UTC'), COALESCE(ending, status), count(*) FROM legs GROUP BY 1, 2, 3
         UNION ALL
         SELECT account_id, date_trunc('hour', created_at, 'UTC'), '', count(*) FROM legs GROUP BY 1, 2",
    )
    .bind(from_t)
    .bind(to_t)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE call_rollup_state SET sealed_until = $1").bind(to_t).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok((from, to))
}

/// Seals every `interval` until the task is aborted; failures are logged and retried.
pub fn spawn_sealer(pool: PgPool, interval: Duration, grace: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            if let Err(e) = seal(&pool, grace).await {
                tracing::warn!(error = %e, "sealing call history into the rollup failed; retrying later");
            }
        }
    })
}
