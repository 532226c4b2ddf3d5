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

/// The window split as `BOUNDS_CTE` does, with how many matching legs each part holds, and the
/// sealed hour holding the `n`th matching leg in `order` with how many come before that hour
/// (when the `n`th is in the sealed part). One statement: a page costs one round trip more.
struct Parts {
    before_sealed: i64,
    sealed: i64,
    after_sealed: i64,
    a: Option<DateTime<Utc>>,
    b: Option<DateTime<Utc>>,
    hour: Option<(DateTime<Utc>, i64)>,
}

async fn parts(pool: &PgPool, account_id: i64, status: Option<&str>, window: Window, order: Order, n: i64) -> Result<Parts, sqlx::Error> {
    let (direction, near) = match order {
        Order::Asc => ("ASC", "before_sealed"),
        Order::Desc => ("DESC", "after_sealed"),
    };
    type Row = (i64, i64, i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<i64>);
    let (before_sealed, sealed, after_sealed, a, b, hour, before): Row = sqlx::query_as(&format!(
        "WITH {BOUNDS_CTE},
              c AS (SELECT (SELECT count(*) FROM calls WHERE account_id = $1 AND created_at >= k.lo AND created_at < k.a
                                   AND created_at <= k.hi AND ($4::text IS NULL OR COALESCE(ending, status) = $4)) AS before_sealed,
                           (SELECT COALESCE(sum(calls), 0)::bigint FROM call_counts WHERE account_id = $1 AND status = COALESCE($4, '')
                                   AND hour >= k.a AND hour < k.b) AS sealed,
                           (SELECT count(*) FROM calls WHERE account_id = $1 AND created_at >= k.b AND created_at >= k.lo
                                   AND created_at <= k.hi AND ($4::text IS NULL OR COALESCE(ending, status) = $4)) AS after_sealed
                    FROM k),
              -- status '' counts every status
              h AS (SELECT hour, cum - calls AS before FROM (
                        SELECT hour, calls, sum(calls) OVER (ORDER BY hour {direction})::bigint AS cum
                        FROM call_counts, k WHERE account_id = $1 AND status = COALESCE($4, '') AND hour >= k.a AND hour < k.b) x, c
                    WHERE cum > $5 - c.{near} AND $5 >= c.{near}
                    ORDER BY hour {direction} LIMIT 1)
         SELECT c.before_sealed, c.sealed, c.after_sealed, NULLIF(k.a, '-infinity'), NULLIF(k.b, '-infinity'), h.hour, h.before
         FROM c CROSS JOIN k LEFT JOIN h ON true"
    ))
    .bind(account_id)
    .bind(window.start)
    .bind(window.end)
    .bind(status)
    .bind(n)
    .fetch_one(pool)
    .await?;
    Ok(Parts { before_sealed, sealed, after_sealed, a, b, hour: hour.zip(before) })
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
    let p = parts(pool, account_id, status, window, order, record_index).await?;
    let total = p.before_sealed + p.sealed + p.after_sealed;
    // The parts in the order the page walks them: the near ragged end, the sealed hours, the far end.
    let (near, far_edge) = match order {
        Order::Asc => (p.before_sealed, p.b),
        Order::Desc => (p.after_sealed, p.a),
    };
    let seek = if record_index < near || record_index >= total {
        Seek { skip: record_index, ..Seek::default() }
    } else if record_index < near + p.sealed {
        let (hour, before) = p.hour.ok_or_else(|| sqlx::Error::Protocol("the sealed hours hold fewer legs than they count".into()))?;
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
