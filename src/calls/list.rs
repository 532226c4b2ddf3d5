//! `GET /v1/calls` filters and paging (reference §2.2).

use super::model::{CallStatus, STATUSES};
use crate::validation::{InvalidParam, Problems};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Order {
    Asc,
    Desc,
}

#[derive(Debug, Clone)]
pub struct CallFilter {
    pub status: Option<String>,
    pub date_start: Option<DateTime<Utc>>,
    pub date_end: Option<DateTime<Utc>>,
    pub conversation_uuid: Option<String>,
    pub page_size: i64,
    pub record_index: i64,
    pub order: Order,
}

/// ISO-8601 date-time, a bare date, or unix seconds (the Node SDK's fixtures send those).
pub fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S") {
        return Some(Utc.from_utc_datetime(&t));
    }
    if let Ok(d) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Some(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?));
    }
    raw.parse::<i64>().ok().and_then(|s| Utc.timestamp_opt(s, 0).single())
}

pub fn parse_list_query(query: &HashMap<String, String>) -> Result<CallFilter, Vec<InvalidParam>> {
    let mut problems = Problems::default();
    let get = |k: &str| query.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());

    let status = get("status").map(str::to_string);
    if let Some(s) = &status {
        if !CallStatus::is_known(s) {
            problems.add("status", format!("must be one of {}", STATUSES.join(", ")));
        }
    }
    let mut time = |key: &str| {
        get(key).and_then(|raw| {
            let t = parse_time(raw);
            if t.is_none() {
                problems.add(key, "must be an ISO-8601 date-time such as 2024-04-19T01:34:18Z");
            }
            t
        })
    };
    let date_start = time("date_start");
    let date_end = time("date_end");
    if let (Some(s), Some(e)) = (date_start, date_end) {
        if s > e {
            problems.add("date_end", "must not be before date_start");
        }
    }
    let mut int = |key: &str, min: i64, max: i64, default: i64| match get(key) {
        None => default,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                problems.add(key, format!("must be a whole number from {min} to {max}"));
                default
            }
        },
    };
    let page_size = int("page_size", 1, 100, 10);
    let record_index = int("record_index", 0, i64::from(i32::MAX), 0);
    let order = match get("order").map(str::to_ascii_lowercase).as_deref() {
        None | Some("asc") => Order::Asc,
        Some("desc") => Order::Desc,
        Some(_) => {
            problems.add("order", "must be asc or desc");
            Order::Asc
        }
    };
    let conversation_uuid = get("conversation_uuid").map(str::to_string);
    problems.into_result(CallFilter { status, date_start, date_end, conversation_uuid, page_size, record_index, order })
}
