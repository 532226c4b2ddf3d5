//! Voice records: the SQL over `calls` (a keyset walk of `calls_account_created_idx`), and a
//! record's fields as the Node SDK's `VoiceCallRecord` / `VoiceFailedRecord` name them.

use super::{format_time, Cursor, Filter, Product, StatusFilter};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// The columns of each product, in record and CSV order.
pub const VOICE_CALL_COLUMNS: &[&str] = &[
    "account_id", "id", "call_id", "direction", "from", "to", "forced_from", "country", "network", "network_name",
    "date_start", "date_end", "duration", "price", "total_price", "currency", "status", "status_code", "status_description",
];
pub const VOICE_FAILED_COLUMNS: &[&str] = &[
    "account_id", "id", "call_id", "direction", "from", "to", "country", "network", "network_name", "date_start", "date_end",
    "status", "status_code", "status_description",
];

pub fn columns(product: Product) -> &'static [&'static str] {
    match product {
        Product::VoiceCall => VOICE_CALL_COLUMNS,
        Product::VoiceFailed => VOICE_FAILED_COLUMNS,
    }
}

/// One finished leg, as read for a report.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LegRow {
    pub uuid: Uuid,
    pub created_at: DateTime<Utc>,
    pub direction: String,
    pub detail: Option<String>,
    pub to_number: Option<String>,
    pub from_number: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub duration_s: Option<i32>,
    pub rate: Option<Decimal>,
    pub price: Option<Decimal>,
    pub network: Option<String>,
    pub country: Option<String>,
    /// How a VOICE-FAILED leg ended (busy, timeout, …); NULL for VOICE-CALL.
    pub ending: Option<String>,
    /// Answering-machine detection found a machine (VOICE-CALL: the record reads `MACHINE`).
    pub by_machine: bool,
}

impl LegRow {
    pub fn cursor(&self) -> Cursor {
        Cursor { created_at: self.created_at, uuid: self.uuid }
    }
}

/// The SIP-like code of a failed leg's ending (as the simulated network's numbers use them).
fn ending_code(ending: &str) -> &'static str {
    match ending {
        "busy" => "486",
        "rejected" => "603",
        "failed" => "404",
        "unanswered" => "480",
        "timeout" => "408",
        "cancelled" => "487",
        _ => "500",
    }
}

fn money(d: Decimal) -> String {
    format!("{:.8}", d)
}

/// A record's fields in column order; None for a field the leg has no value for.
pub fn fields(product: Product, api_key: &str, leg: &LegRow) -> Vec<(&'static str, Option<String>)> {
    let id = leg.uuid.to_string();
    let network = leg.network.clone();
    match product {
        Product::VoiceCall => vec![
            ("account_id", Some(api_key.to_string())),
            ("id", Some(id.clone())),
            ("call_id", Some(id)),
            ("direction", Some(leg.direction.clone())),
            ("from", leg.from_number.clone()),
            ("to", leg.to_number.clone()),
            ("forced_from", Some(String::new())),
            ("country", leg.country.clone()),
            ("network", network.clone()),
            ("network_name", network),
            ("date_start", leg.start_time.map(format_time)),
            ("date_end", leg.end_time.map(format_time)),
            ("duration", Some(leg.duration_s.unwrap_or(0).to_string())),
            // As Vonage's records: `price` is the rate per minute, `total_price` what the leg cost.
            ("price", leg.rate.map(money)),
            ("total_price", leg.price.map(money)),
            ("currency", Some(crate::billing::CURRENCY.to_string())),
            ("status", Some(if leg.by_machine { "MACHINE" } else { "ANSWERED" }.into())),
            ("status_code", Some("200".into())),
            ("status_description", Some(leg.detail.clone().unwrap_or_else(|| "completed".into()))),
        ],
        Product::VoiceFailed => {
            let ending = leg.ending.clone().unwrap_or_else(|| "failed".into());
            let description = match &leg.detail {
                Some(d) => format!("{ending}: {d}"),
                None => ending.clone(),
            };
            vec![
                ("account_id", Some(api_key.to_string())),
                ("id", Some(id.clone())),
                ("call_id", Some(id)),
                ("direction", Some(leg.direction.clone())),
                ("from", leg.from_number.clone()),
                ("to", leg.to_number.clone()),
                ("country", leg.country.clone()),
                ("network", network.clone()),
                ("network_name", network),
                // Never answered: the leg's life runs from its creation to its end.
                ("date_start", Some(format_time(leg.created_at))),
                ("date_end", leg.end_time.map(format_time)),
                ("status", Some("FAILED".into())),
                ("status_code", Some(ending_code(&ending).into())),
                ("status_description", Some(description)),
            ]
        }
    }
}

/// A record as JSON (snake_case: the SDK camel-cases keys itself); absent values are left out.
pub fn to_json(product: Product, api_key: &str, leg: &LegRow) -> Value {
    let mut map = Map::new();
    for (key, value) in fields(product, api_key, leg) {
        if let Some(v) = value {
            map.insert(key.into(), Value::String(v));
        }
    }
    Value::Object(map)
}

/// Up to `limit` records of `filter` after `after`, in (created_at, uuid) order.
///
/// Every bound is an index condition of `calls_account_created_idx` (account_id, created_at,
/// uuid): account, the date range and the cursor; the rest filters the rows that walk finds.
pub async fn page(pool: &PgPool, filter: &Filter, after: Option<Cursor>, limit: i64) -> Result<Vec<LegRow>, sqlx::Error> {
    let (status_mode, ending) = match &filter.status {
        StatusFilter::All => ("all", None),
        StatusFilter::Answered => ("answered", None),
        StatusFilter::Machine => ("machine", None),
        StatusFilter::Nothing => ("nothing", None),
        StatusFilter::Ending(e) => ("all", Some(e.as_str())),
    };
    sqlx::query_as::<_, LegRow>(
        "SELECT * FROM (
           SELECT c.uuid, c.created_at, c.direction, c.detail,
                  c.to_endpoint->>'number' AS to_number, c.from_endpoint->>'number' AS from_number,
                  c.start_time, c.end_time, c.duration_s, c.rate, c.price, c.network, c.country,
                  CASE WHEN $2 = 'VOICE-CALL' THEN NULL
                       WHEN c.ending IS NOT NULL THEN c.ending
                       WHEN c.status <> 'completed' THEN c.status
                       -- Legs stored before `ending` was: the status event before `completed`.
                       ELSE COALESCE((SELECT e.kind FROM events e
                                      WHERE e.call_uuid = c.uuid
                                        AND e.kind IN ('busy', 'failed', 'rejected', 'timeout', 'unanswered', 'cancelled')
                                      ORDER BY e.seq LIMIT 1), 'failed') END AS ending,
                  -- Detection ran only if the call asked for it: most legs need no probe.
                  ($2 = 'VOICE-CALL' AND (c.machine_detection IS NOT NULL OR c.advanced_machine_detection IS NOT NULL)
                   AND EXISTS (SELECT 1 FROM events m WHERE m.call_uuid = c.uuid AND m.kind = 'machine')) AS by_machine
           FROM calls c
           WHERE c.account_id = $1
             AND c.created_at >= COALESCE($3, '-infinity'::timestamptz)
             AND c.created_at < COALESCE($4, 'infinity'::timestamptz)
             AND (c.created_at, c.uuid) > (COALESCE($11, '-infinity'::timestamptz), COALESCE($12, '00000000-0000-0000-0000-000000000000'::uuid))
             AND c.end_time IS NOT NULL
             AND CASE WHEN $2 = 'VOICE-CALL' THEN c.status = 'completed' AND c.start_time IS NOT NULL
                      ELSE c.start_time IS NULL
                           AND c.status IN ('completed', 'busy', 'failed', 'rejected', 'timeout', 'unanswered', 'cancelled') END
             AND ($5::text IS NULL OR c.direction = $5)
             AND (cardinality($6::uuid[]) = 0 OR c.uuid = ANY($6))
             AND ($7::text IS NULL OR c.to_endpoint->>'number' = $7)
             AND ($8::text IS NULL OR c.from_endpoint->>'number' = $8)
             AND ($9::text IS NULL OR c.country = $9)
             AND ($10::text IS NULL OR c.network = $10)
           ORDER BY c.created_at, c.uuid
         ) legs
         WHERE ($14::text IS NULL OR legs.ending = $14)
           -- the filter agrees with the record's status field
           AND CASE $13 WHEN 'nothing' THEN false
                        WHEN 'machine' THEN legs.by_machine
                        WHEN 'answered' THEN NOT legs.by_machine
                        ELSE true END
         ORDER BY legs.created_at, legs.uuid
         LIMIT $15",
    )
    .bind(filter.account_id)
    .bind(filter.product.as_str())
    .bind(filter.date_start)
    .bind(filter.date_end)
    .bind(&filter.direction)
    .bind(&filter.ids)
    .bind(&filter.to)
    .bind(&filter.from)
    .bind(&filter.country)
    .bind(&filter.network)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.uuid))
    .bind(status_mode)
    .bind(ending)
    .bind(limit)
    .fetch_all(pool)
    .await
}
