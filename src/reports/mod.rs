//! Vonage's Reports API v2 for voice: the filters a request may carry (checked once, for the
//! synchronous records and the asynchronous jobs alike), the opaque page cursor, and the two
//! products Outdial reports.
//!
//! | product | legs |
//! |---|---|
//! | `VOICE-CALL` | finished legs that were answered (`start_time` set): status `MACHINE` when answering-machine detection found a machine, else `ANSWERED` |
//! | `VOICE-FAILED` | finished legs never answered: `busy`, `failed`, `rejected`, `timeout`, `unanswered`, `cancelled`; status `FAILED` |
//!
//! Legs still running are in neither. Dates select legs by creation time (`created_at`), the
//! order records come in.

pub mod csv;
pub mod jobs;
pub mod records;

use crate::validation::InvalidParam;
use base64::Engine;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use uuid::Uuid;

/// Most records in one synchronous page, and the default.
pub const MAX_PAGE_SIZE: i64 = 1000;
/// Most call ids one request may name.
pub const MAX_IDS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    VoiceCall,
    VoiceFailed,
}

impl Product {
    pub fn parse(s: &str) -> Option<Product> {
        match s {
            "VOICE-CALL" => Some(Product::VoiceCall),
            "VOICE-FAILED" => Some(Product::VoiceFailed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Product::VoiceCall => "VOICE-CALL",
            Product::VoiceFailed => "VOICE-FAILED",
        }
    }
}

/// How the legs that never connected ended, by the status that ended them.
pub const FAILED_ENDINGS: [&str; 6] = ["busy", "failed", "rejected", "timeout", "unanswered", "cancelled"];

/// Which legs of a product a `status` filter keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusFilter {
    /// Every leg of the product (no filter, or `FAILED` for VOICE-FAILED).
    All,
    /// VOICE-CALL legs whose record reads `ANSWERED`: answered, and not found to be a machine.
    Answered,
    /// VOICE-CALL legs whose record reads `MACHINE`: answered, and answering-machine detection
    /// (`machine_detection` or `advanced_machine_detection`) found a machine.
    Machine,
    /// Nothing matches (`ERROR`: Outdial records no errored answered call).
    Nothing,
    /// VOICE-FAILED legs that ended this way (`busy`, `timeout`, …).
    Ending(String),
}

/// A checked request: what to report on, for whom, and where a page starts.
#[derive(Debug, Clone)]
pub struct Filter {
    pub product: Product,
    pub account_id: i64,
    /// The account's api_key, as records show it.
    pub api_key: String,
    pub date_start: Option<DateTime<Utc>>,
    pub date_end: Option<DateTime<Utc>>,
    pub direction: Option<String>,
    pub status: StatusFilter,
    pub ids: Vec<Uuid>,
    pub to: Option<String>,
    pub from: Option<String>,
    pub country: Option<String>,
    pub network: Option<String>,
}

/// Where a page starts: after this (created_at, uuid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub uuid: Uuid,
}

impl Cursor {
    /// Opaque to clients: base64url of the keyset position.
    pub fn encode(&self) -> String {
        let raw = format!("{}.{}", self.created_at.timestamp_micros(), self.uuid.simple());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (micros, uuid) = raw.split_once('.')?;
        let created_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        Some(Cursor { created_at, uuid: Uuid::parse_str(uuid).ok()? })
    }
}

/// The caller of a report request: its account id and api_key.
pub struct Caller<'a> {
    pub account_id: i64,
    pub api_key: &'a str,
}

/// Why a request is refused, before any HTTP status is chosen.
#[derive(Debug)]
pub enum FilterError {
    Invalid(Vec<InvalidParam>),
    /// `account_id` names another account.
    OtherAccount,
}

fn bad(problems: &mut Vec<InvalidParam>, name: &str, reason: &str) {
    problems.push(InvalidParam { name: name.into(), reason: reason.into() });
}

fn parse_time(problems: &mut Vec<InvalidParam>, name: &str, value: Option<&String>) -> Option<DateTime<Utc>> {
    let value = value?.trim();
    if value.is_empty() {
        return None;
    }
    match DateTime::parse_from_rfc3339(value) {
        Ok(t) => Some(t.to_utc()),
        Err(_) => {
            bad(problems, name, "must be an ISO-8601 date and time, e.g. 2026-01-31T00:00:00Z or 2026-01-31T00:00:00+01:00");
            None
        }
    }
}

fn non_empty<'a>(params: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    params.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// A phone number as stored (digits, no `+`).
fn number(value: &str) -> String {
    value.trim().trim_start_matches('+').to_string()
}

/// Checks the parameters of a records request or a report job. Parameters Outdial has no use
/// for (`include_message`, `include_subaccounts`, `show_concatenated`, `iv`, …) are accepted and
/// ignored, as their products do not apply to voice.
pub fn parse_filter(params: &HashMap<String, String>, caller: &Caller<'_>) -> Result<Filter, FilterError> {
    let mut problems = Vec::new();
    let product = match non_empty(params, "product") {
        None => {
            bad(&mut problems, "product", "is required: VOICE-CALL or VOICE-FAILED");
            None
        }
        Some(p) => Product::parse(p).or_else(|| {
            bad(&mut problems, "product", "Outdial reports VOICE-CALL and VOICE-FAILED only");
            None
        }),
    };
    let account_ok = match non_empty(params, "account_id") {
        None => {
            bad(&mut problems, "account_id", "is required: your api_key");
            true
        }
        Some(id) => id == caller.api_key,
    };
    let date_start = parse_time(&mut problems, "date_start", params.get("date_start"));
    let date_end = parse_time(&mut problems, "date_end", params.get("date_end"));
    if let (Some(s), Some(e)) = (date_start, date_end) {
        if s > e {
            bad(&mut problems, "date_end", "must not be before date_start");
        }
    }
    let direction = match non_empty(params, "direction").map(str::to_ascii_lowercase) {
        None => None,
        Some(d) if d == "outbound" || d == "inbound" => Some(d),
        Some(_) => {
            bad(&mut problems, "direction", "must be inbound or outbound");
            None
        }
    };
    let status = match (non_empty(params, "status").map(str::to_ascii_uppercase), product) {
        (None, _) | (_, None) => StatusFilter::All,
        (Some(s), Some(Product::VoiceCall)) => match s.as_str() {
            "ANSWERED" => StatusFilter::Answered,
            "MACHINE" => StatusFilter::Machine,
            "ERROR" => StatusFilter::Nothing,
            _ => {
                bad(&mut problems, "status", "must be ANSWERED, MACHINE or ERROR for VOICE-CALL");
                StatusFilter::All
            }
        },
        (Some(s), Some(Product::VoiceFailed)) => {
            let lower = s.to_ascii_lowercase();
            if s == "FAILED" {
                StatusFilter::All
            } else if FAILED_ENDINGS.contains(&lower.as_str()) {
                StatusFilter::Ending(lower)
            } else {
                bad(&mut problems, "status", "must be FAILED, or one of busy, failed, rejected, timeout, unanswered, cancelled for VOICE-FAILED");
                StatusFilter::All
            }
        }
    };
    let mut ids = Vec::new();
    for key in ["id", "call_id"] {
        if let Some(list) = non_empty(params, key) {
            for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match Uuid::parse_str(part) {
                    Ok(id) if !ids.contains(&id) => ids.push(id),
                    Ok(_) => {}
                    Err(_) => {
                        bad(&mut problems, key, "must be call UUIDs, separated by commas");
                        break;
                    }
                }
            }
        }
    }
    if ids.len() > MAX_IDS {
        bad(&mut problems, "id", &format!("names at most {MAX_IDS} calls"));
    }
    let country = non_empty(params, "country").map(str::to_ascii_uppercase);
    if country.as_deref().is_some_and(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase())) {
        bad(&mut problems, "country", "must be an ISO 3166 alpha-2 code, e.g. GB");
    }
    if !problems.is_empty() {
        return Err(FilterError::Invalid(problems));
    }
    if !account_ok {
        return Err(FilterError::OtherAccount);
    }
    Ok(Filter {
        product: product.expect("checked"),
        account_id: caller.account_id,
        api_key: caller.api_key.to_string(),
        date_start,
        date_end,
        direction,
        status,
        ids,
        to: non_empty(params, "to").map(number),
        from: non_empty(params, "from").map(number),
        country,
        network: non_empty(params, "network").map(str::to_string),
    })
}

/// `page_size` (1–1000, default 1000) and `cursor` of a synchronous request.
pub fn parse_page(params: &HashMap<String, String>) -> Result<(i64, Option<Cursor>), Vec<InvalidParam>> {
    let mut problems = Vec::new();
    let page_size = match non_empty(params, "page_size") {
        None => MAX_PAGE_SIZE,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                bad(&mut problems, "page_size", &format!("must be a whole number from 1 to {MAX_PAGE_SIZE}"));
                MAX_PAGE_SIZE
            }
        },
    };
    let cursor = match non_empty(params, "cursor") {
        None => None,
        Some(c) => Cursor::decode(c).or_else(|| {
            bad(&mut problems, "cursor", "is not a cursor this API gave out; use _links.next.href as it is");
            None
        }),
    };
    if problems.is_empty() {
        Ok((page_size, cursor))
    } else {
        Err(problems)
    }
}

/// Times as the Reports API writes them: `yyyy-mm-ddThh:mm:ss+00:00`.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor { created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(), uuid: Uuid::new_v4() };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("not-a-cursor"), None);
        assert_eq!(Cursor::decode(""), None);
    }
}
