//! `GET /v1/calls` over millions of legs: the `count` and where `record_index` falls, from the
//! hourly counts, so a page never counts or skips more than the ragged ends of its window.
//! The page itself is then read by keyset (created_at from the hour found) plus a short offset.

use super::{Window, BOUNDS_CTE};
use crate::calls::Order;
use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;

/// Where a page starts: rows from `created_at >= from` (ascending) or `created_at < until`
/// (descending), skipping `skip` of them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Seek {
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub skip: i64,
}

/// The window split as `BOUNDS_CTE` does, with how many matching legs each part holds.
struct Parts {
    before_sealed: i64,
    sealed: i64,
    after_sealed: i64,
    a: Option<DateTime<Utc>>,
    b: Option<DateTime<Utc>>,
}

async fn parts(pool: &PgPool, account_id: i64, status: Option<&str>, window: Window) -> Result<Parts, sqlx::Error> {
    let (before_sealed, sealed, after_sealed, a, b): (i64, i64, i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
        sqlx::query_as(&format!(
            "WITH {BOUNDS_CTE}
             SELECT (SELECT count(*) FROM calls WHERE account_id = $1 AND created_at >= k.lo AND created_at < k.a
                            AND created_at <= k.hi AND ($4::text IS NULL OR status = $4)),
                    (SELECT COALESCE(sum(calls), 0)::bigint FROM call_counts WHERE account_id = $1 AND hour >= k.a AND hour < k.b
                            AND ($4::text IS NULL OR status = $4)),
                    (SELECT count(*) FROM calls WHERE account_id = $1 AND created_at >= k.b AND created_at >= k.lo
                            AND created_at <= k.hi AND ($4::text IS NULL OR status = $4)),
                    NULLIF(k.a, '-infinity'), NULLIF(k.b, '-infinity')
             FROM k"
        ))
        .bind(account_id)
        .bind(window.start)
        .bind(window.end)
        .bind(status)
        .fetch_one(pool)
        .await?;
    Ok(Parts { before_sealed, sealed, after_sealed, a, b })
}

/// The sealed hour holding the `n`th matching leg (0-based, in `order`) and how many matching
/// legs come before that hour.
async fn hour_of(pool: &PgPool, account_id: i64, status: Option<&str>, parts: &Parts, order: Order, n: i64) -> Result<(DateTime<Utc>, i64), sqlx::Error> {
    let direction = match order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };
    sqlx::query_as(&format!(
        "SELECT hour, cum - n FROM (
             SELECT hour, sum(sum(calls)) OVER (ORDER BY hour {direction})::bigint AS cum, sum(calls)::bigint AS n
             FROM call_counts WHERE account_id = $1 AND hour >= COALESCE($2, '-infinity') AND hour < $3 AND ($4::text IS NULL OR status = $4)
             GROUP BY hour) x
         WHERE cum > $5 ORDER BY hour {direction} LIMIT 1"
    ))
    .bind(account_id)
    .bind(parts.a)
    .bind(parts.b)
    .bind(status)
    .bind(n)
    .fetch_one(pool)
    .await
}

/// How many legs match in all, and where the page at `record_index` starts.
pub async fn count_and_seek(
    pool: &PgPool,
    account_id: i64,
    status: Option<&str>,
    window: Window,
    order: Order,
    record_index: i64,
) -> Result<(i64, Seek), sqlx::Error> {
    let p = parts(pool, account_id, status, window).await?;
    let total = p.before_sealed + p.sealed + p.after_sealed;
    // The parts in the order the page walks them: the near ragged end, the sealed hours, the far end.
    let (near, far_edge) = match order {
        Order::Asc => (p.before_sealed, p.b),
        Order::Desc => (p.after_sealed, p.a),
    };
    let seek = if record_index < near || record_index >= total {
        Seek { skip: record_index, ..Seek::default() }
    } else if record_index < near + p.sealed {
        let (hour, before) = hour_of(pool, account_id, status, &p, order, record_index - near).await?;
        let skip = record_index - near - before;
        match order {
            Order::Asc => Seek { from: Some(hour), skip, ..Seek::default() },
            Order::Desc => Seek { until: Some(hour + Duration::hours(1)), skip, ..Seek::default() },
        }
    } else {
        let skip = record_index - near - p.sealed;
        match order {
            Order::Asc => Seek { from: far_edge, skip, ..Seek::default() },
            Order::Desc => Seek { until: far_edge, skip, ..Seek::default() },
        }
    };
    Ok((total, seek))
}
