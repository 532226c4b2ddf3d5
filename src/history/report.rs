//! `GET /v1/reports/calls`: totals per day, month, country, network, status or application over
//! a window, summed from the sealed hours plus the legs of the ragged ends.

use super::{Window, BOUNDS_CTE};
use rust_decimal::Decimal;
use sqlx::PgPool;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GroupBy {
    Day,
    Month,
    Country,
    Network,
    Status,
    Application,
}

pub const GROUP_BY_NAMES: [&str; 6] = ["day", "month", "country", "network", "status", "application"];

impl GroupBy {
    pub fn parse(raw: &str) -> Option<GroupBy> {
        Some(match raw {
            "day" => GroupBy::Day,
            "month" => GroupBy::Month,
            "country" => GroupBy::Country,
            "network" => GroupBy::Network,
            "status" => GroupBy::Status,
            "application" => GroupBy::Application,
            _ => return None,
        })
    }

    /// The group key over the `parts` rows below (days and months in UTC; '' = not rated;
    /// status is how the leg ended).
    fn key_sql(self) -> &'static str {
        match self {
            GroupBy::Day => "to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
            GroupBy::Month => "to_char(t AT TIME ZONE 'UTC', 'YYYY-MM')",
            GroupBy::Country => "country",
            GroupBy::Network => "network",
            GroupBy::Status => "status",
            GroupBy::Application => "application_id::text",
        }
    }
}

/// One group's totals. `duration_s` is the answered seconds; `billed_s` what was charged.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow)]
pub struct Totals {
    pub key: String,
    pub calls: i64,
    pub answered: i64,
    pub duration_s: i64,
    pub billed_s: i64,
    pub price: Decimal,
}

impl Totals {
    /// Mean answered seconds of the answered legs (None when none was answered).
    pub fn average_duration(&self) -> Option<f64> {
        (self.answered > 0).then(|| self.duration_s as f64 / self.answered as f64)
    }

    pub fn add(&mut self, other: &Totals) {
        self.calls += other.calls;
        self.answered += other.answered;
        self.duration_s += other.duration_s;
        self.billed_s += other.billed_s;
        self.price += other.price;
    }
}

/// The account's legs created in `window`, grouped, ordered by key.
pub async fn summarise(pool: &PgPool, account_id: i64, window: Window, group_by: GroupBy) -> Result<Vec<Totals>, sqlx::Error> {
    const LEG: &str = "SELECT c.created_at, c.application_id, COALESCE(c.ending, c.status), COALESCE(c.country, ''), COALESCE(c.network, ''), 1::bigint,
                              (c.start_time IS NOT NULL)::int::bigint, COALESCE(c.duration_s, 0)::bigint,
                              COALESCE(c.billed_s, 0)::bigint, COALESCE(c.price, 0)
                       FROM calls c, k WHERE c.account_id = $1 AND c.created_at >= k.lo AND c.created_at <= k.hi";
    sqlx::query_as(&format!(
        "WITH {BOUNDS_CTE},
              parts (t, application_id, status, country, network, calls, answered, duration_s, billed_s, price) AS (
                  SELECT r.hour, r.application_id, r.status, r.country, r.network, r.calls, r.answered, r.duration_s,
                         r.billed_s, r.price
                  FROM call_rollup r, k WHERE r.account_id = $1 AND r.hour >= k.a AND r.hour < k.b
                  UNION ALL {LEG} AND c.created_at < k.a
                  UNION ALL {LEG} AND c.created_at >= k.b)
         SELECT {key} AS key, sum(calls)::bigint AS calls, sum(answered)::bigint AS answered,
                sum(duration_s)::bigint AS duration_s, sum(billed_s)::bigint AS billed_s, sum(price) AS price
         FROM parts GROUP BY 1 ORDER BY 1",
        key = group_by.key_sql()
    ))
    .bind(account_id)
    .bind(window.start)
    .bind(window.end)
    .fetch_all(pool)
    .await
}
