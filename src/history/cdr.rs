//! The CDR export: every leg of a window as CSV, produced by PostgreSQL's COPY and streamed on
//! as it arrives, so a million rows cost no more memory than a few.

use super::Window;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::stream::BoxStream;
use sqlx::postgres::PgPoolCopyExt;
use sqlx::PgPool;

/// A timestamptz literal (COPY takes no bind parameters); the ends of time when open.
fn literal(t: Option<DateTime<Utc>>, open: &str) -> String {
    match t {
        Some(t) => format!("'{}'::timestamptz", t.to_rfc3339_opts(SecondsFormat::Micros, true)),
        None => format!("'{open}'::timestamptz"),
    }
}

const ISO: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'";

/// The CSV (with a header row) of the account's legs created in `window`, oldest first.
pub async fn export(pool: &PgPool, account_id: i64, window: Window) -> Result<BoxStream<'static, Result<Bytes, sqlx::Error>>, sqlx::Error> {
    let address = |col: &str| format!("COALESCE({col}->>'number', {col}->>'uri', {col}->>'user', {col}->>'extension')");
    let time = |col: &str| format!("to_char({col} AT TIME ZONE 'UTC', {ISO})");
    let statement = format!(
        "COPY (SELECT uuid, conversation_uuid, application_id, direction, status, ending, detail,
                      {from} AS \"from\", {to} AS \"to\", country, network,
                      {created} AS created_at, {start} AS start_time, {end} AS end_time,
                      duration_s AS duration, billed_s AS billed_seconds, rate, price, '{currency}' AS currency
               FROM calls WHERE account_id = {account_id} AND created_at >= {lo} AND created_at <= {hi}
               ORDER BY created_at, uuid)
         TO STDOUT WITH (FORMAT csv, HEADER)",
        from = address("from_endpoint"),
        to = address("to_endpoint"),
        created = time("created_at"),
        start = time("start_time"),
        end = time("end_time"),
        currency = crate::billing::CURRENCY,
        lo = literal(window.start, "-infinity"),
        hi = literal(window.end, "infinity"),
    );
    pool.copy_out_raw(&statement).await
}
