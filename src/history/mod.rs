//! Call history at scale: hourly rollups of finished legs, and what reads them — the counts and
//! offsets of `GET /v1/calls`, the summaries of `GET /v1/reports/calls` and its CSV export.
//!
//! A window of time splits into three parts: the whole hours already sealed into the rollup
//! (read from `call_rollup`/`call_counts`), and the two ragged or not-yet-sealed ends (read from
//! `calls` itself). `Window::sql_bounds` is that split, shared by every query here.

pub mod archive;
pub mod cdr;
pub mod pages;
pub mod report;
pub mod rollup;

use chrono::{DateTime, Utc};

/// A created_at window, both ends inclusive and optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// A CTE `k(lo, hi, a, b)` for a query whose $2 and $3 are the window's start and end
/// (nullable timestamptz): rows in [lo, a) and [b, hi] come from `calls`, hours in [a, b) from
/// the rollup. a <= b always, so the parts never overlap.
/// (One row by construction: the planner must not guess otherwise.)
pub const BOUNDS_CTE: &str = "k AS (
    SELECT lo, hi, a, GREATEST(a, LEAST((SELECT sealed_until FROM call_rollup_state), date_trunc('hour', hi, 'UTC'))) AS b
    FROM (SELECT COALESCE($2::timestamptz, '-infinity') AS lo, COALESCE($3::timestamptz, 'infinity') AS hi) w,
         LATERAL (SELECT CASE WHEN lo = '-infinity' THEN lo
                              WHEN date_trunc('hour', lo, 'UTC') = lo THEN lo
                              ELSE date_trunc('hour', lo, 'UTC') + interval '1 hour' END AS a) c)";
