//! A number as stored, as Vonage's Numbers API shows it and as the operator's CLI shows it; the
//! filters of a listing; and why a change an account asks for is refused.

use crate::validation::{InvalidParam, Problems};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::HashMap;
use uuid::Uuid;

/// The number types Vonage knows (the table's CHECK holds the same list).
pub const TYPES: [&str; 3] = ["landline", "mobile-lvn", "landline-toll-free"];
/// The features a number can have, in the order Vonage lists them.
pub const FEATURES: [&str; 3] = ["SMS", "VOICE", "MMS"];
pub const DEFAULT_PAGE_SIZE: i64 = 10;
pub const MAX_PAGE_SIZE: i64 = 100;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Number {
    /// E.164 digits, no '+'.
    pub msisdn: String,
    /// ISO 3166 alpha-2.
    pub country: String,
    /// None: a number only the simulated network rings (POST /v1/sandbox/inbound).
    pub trunk_id: Option<Uuid>,
    /// None: available for an account to buy.
    pub account_id: Option<i64>,
    pub application_id: Option<Uuid>,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub features: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// What an inbound call to a number needs to know: where it may come from (the trunk) and whose
/// application answers it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InboundTarget {
    pub msisdn: String,
    pub country: String,
    pub trunk_id: Option<Uuid>,
    pub account_id: Option<i64>,
    pub application_id: Option<Uuid>,
}

/// A number the operator adds (`outdial number add`), checked.
#[derive(Debug, Clone)]
pub struct NewNumber {
    pub msisdn: String,
    pub country: String,
    pub trunk_id: Option<Uuid>,
    pub account_id: Option<i64>,
    pub application_id: Option<Uuid>,
    pub kind: String,
}

impl Number {
    /// As Vonage's `GET /account/numbers` shows an owned number. A linked one names its
    /// application as `app_id` and, as Vonage still does, as the voice callback.
    pub fn to_owned_json(&self) -> Value {
        let mut out = json!({
            "country": self.country,
            "msisdn": self.msisdn,
            "type": self.kind,
            "features": self.features,
        });
        if let Some(app) = self.application_id {
            out["app_id"] = json!(app);
            out["voiceCallbackType"] = json!("app");
            out["voiceCallbackValue"] = json!(app);
        }
        out
    }

    /// As Vonage's `GET /number/search` shows a number for sale. Outdial charges nothing for
    /// numbers (their calls are billed), so both prices are zero.
    pub fn to_available_json(&self) -> Value {
        json!({
            "country": self.country,
            "msisdn": self.msisdn,
            "type": self.kind,
            "features": self.features,
            "cost": "0.00",
            "initialPrice": "0.00",
        })
    }
}

/// A number as the operator's CLI lists it: with its trunk's name and its owner's api_key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Listed {
    #[sqlx(flatten)]
    pub number: Number,
    pub trunk_name: Option<String>,
    pub api_key: Option<String>,
}

impl Listed {
    pub fn to_json(&self) -> Value {
        let n = &self.number;
        json!({
            "msisdn": n.msisdn,
            "country": n.country,
            "type": n.kind,
            "features": n.features,
            "trunk": self.trunk_name,
            "trunk_id": n.trunk_id,
            "api_key": self.api_key,
            "available": n.account_id.is_none(),
            "app_id": n.application_id,
            "created_at": crate::calls::format_time(n.created_at),
        })
    }
}

/// The number's E.164 digits (a leading '+' dropped), if it is one.
pub fn normalize_msisdn(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let digits = raw.strip_prefix('+').unwrap_or(raw);
    crate::validation::is_e164(digits).then(|| digits.to_string())
}

/// An ISO 3166 alpha-2 code, upper-cased.
pub fn normalize_country(raw: &str) -> Option<String> {
    let raw = raw.trim();
    (raw.len() == 2 && raw.bytes().all(|b| b.is_ascii_alphabetic())).then(|| raw.to_ascii_uppercase())
}

pub const MSISDN_RULE: &str = "must be an E.164 number: 7 to 15 digits, optionally after a +, not starting with 0";
pub const COUNTRY_RULE: &str = "must be an ISO 3166-1 alpha-2 country code such as GB";

/// How `pattern` matches (Vonage's `search_pattern`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchPattern {
    StartsWith,
    Contains,
    EndsWith,
}

/// Which numbers a listing shows, and which page of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub application_id: Option<Uuid>,
    pub has_application: Option<bool>,
    pub country: Option<String>,
    pub kind: Option<String>,
    /// Features every listed number has.
    pub features: Vec<String>,
    pub pattern: Option<(String, SearchPattern)>,
    /// 1-based page.
    pub index: i64,
    pub size: i64,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            application_id: None,
            has_application: None,
            country: None,
            kind: None,
            features: Vec::new(),
            pattern: None,
            index: 1,
            size: DEFAULT_PAGE_SIZE,
        }
    }
}

impl Filter {
    /// The `pattern` as a LIKE pattern (digits only, so nothing to escape).
    pub fn like(&self) -> Option<String> {
        self.pattern.as_ref().map(|(digits, how)| match how {
            SearchPattern::StartsWith => format!("{digits}%"),
            SearchPattern::Contains => format!("%{digits}%"),
            SearchPattern::EndsWith => format!("%{digits}"),
        })
    }

    pub fn offset(&self) -> i64 {
        (self.index - 1) * self.size
    }
}

/// Which listing a query is for: the account's own numbers, or those for sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Owned,
    Available,
}

/// Reads a listing's query parameters as Vonage names them, every problem at once. An empty
/// value counts as absent; booleans as `true`/`false` in any case (Python sends `True`) or 1/0.
pub fn parse_filter(query: &HashMap<String, String>, listing: Listing) -> Result<Filter, Vec<InvalidParam>> {
    let mut p = Problems::default();
    let get = |key: &str| query.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut filter = Filter::default();
    if listing == Listing::Owned {
        if let Some(raw) = get("application_id") {
            match Uuid::parse_str(raw) {
                Ok(id) => filter.application_id = Some(id),
                Err(_) => p.add("application_id", "must be an application id (a UUID)"),
            }
        }
        if let Some(raw) = get("has_application") {
            match raw.to_ascii_lowercase().as_str() {
                "true" | "1" => filter.has_application = Some(true),
                "false" | "0" => filter.has_application = Some(false),
                _ => p.add("has_application", "must be true or false"),
            }
        }
    } else {
        if let Some(raw) = get("type") {
            match TYPES.iter().find(|t| t.eq_ignore_ascii_case(raw)) {
                Some(t) => filter.kind = Some(t.to_string()),
                None => p.add("type", format!("must be one of {}", TYPES.join(", "))),
            }
        }
        if let Some(raw) = get("features") {
            for feature in raw.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                match FEATURES.iter().find(|f| f.eq_ignore_ascii_case(feature)) {
                    Some(f) => filter.features.push(f.to_string()),
                    None => p.add("features", format!("must be a comma-separated list of {}", FEATURES.join(", "))),
                }
            }
        }
    }
    match get("country") {
        Some(raw) => match normalize_country(raw) {
            Some(c) => filter.country = Some(c),
            None => p.add("country", COUNTRY_RULE),
        },
        None if listing == Listing::Available => p.add("country", "is required: the country to search numbers in"),
        None => {}
    }
    let how = match get("search_pattern") {
        None | Some("0") => SearchPattern::StartsWith,
        Some("1") => SearchPattern::Contains,
        Some("2") => SearchPattern::EndsWith,
        Some(_) => {
            p.add("search_pattern", "must be 0 (starts with), 1 (contains) or 2 (ends with)");
            SearchPattern::StartsWith
        }
    };
    if let Some(raw) = get("pattern") {
        let digits = raw.strip_prefix('+').unwrap_or(raw);
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            p.add("pattern", "must be 1 to 15 digits");
        } else {
            filter.pattern = Some((digits.to_string(), how));
        }
    }
    if let Some(raw) = get("index") {
        match raw.parse::<i64>() {
            Ok(n) if (1..=1_000_000).contains(&n) => filter.index = n,
            _ => p.add("index", "must be a page number from 1 to 1000000"),
        }
    }
    if let Some(raw) = get("size") {
        match raw.parse::<i64>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => filter.size = n,
            _ => p.add("size", format!("must be from 1 to {MAX_PAGE_SIZE}")),
        }
    }
    p.into_result(filter)
}

/// Why a change to a number is refused (Vonage answers these with error-code 420).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No such number, or another account's: one answer for both, so others' numbers stay unknown.
    #[error("You do not own the number {0}")]
    NotYours(String),
    #[error("The number {msisdn} is in {actual}, not {given}")]
    WrongCountry { msisdn: String, actual: String, given: String },
    #[error("The application {0} does not exist or is not yours")]
    ApplicationNotYours(Uuid),
    #[error("The number {0} is not available to buy")]
    NotAvailable(String),
    #[error("You already own the number {0}")]
    AlreadyYours(String),
    #[error("The number {0} is held on your own trunk: only the operator can remove it (outdial number remove)")]
    OnOwnTrunk(String),
    #[error("voiceCallbackType {0} is not supported: link the number to an application (app_id), whose NCCO can connect the call anywhere")]
    CallbackUnsupported(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_listing_reads_vonage_filters() {
        let app = Uuid::new_v4().to_string();
        let q = query(&[("application_id", &app), ("has_application", "True"), ("country", "gb"), ("pattern", "+4477"), ("index", "2"), ("size", "100")]);
        let f = parse_filter(&q, Listing::Owned).unwrap();
        assert_eq!(f.country.as_deref(), Some("GB"));
        assert_eq!(f.has_application, Some(true));
        assert_eq!(f.like().as_deref(), Some("4477%"), "search_pattern defaults to 0: starts with");
        assert_eq!((f.index, f.size, f.offset()), (2, 100, 100));
        let ends = parse_filter(&query(&[("pattern", "123"), ("search_pattern", "2")]), Listing::Owned).unwrap();
        assert_eq!(ends.like().as_deref(), Some("%123"));
        assert_eq!(parse_filter(&query(&[]), Listing::Owned).unwrap(), Filter::default());
    }

    #[test]
    fn every_bad_filter_is_named() {
        let q = query(&[("application_id", "x"), ("has_application", "maybe"), ("country", "GBR"), ("pattern", "12a"), ("search_pattern", "3"), ("index", "0"), ("size", "101")]);
        let names: Vec<String> = parse_filter(&q, Listing::Owned).unwrap_err().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["application_id", "has_application", "country", "search_pattern", "pattern", "index", "size"]);
        let names: Vec<String> = parse_filter(&query(&[("type", "fax"), ("features", "VOICE,FAX")]), Listing::Available).unwrap_err().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["type", "features", "country"]);
    }

    #[test]
    fn numbers_and_countries_are_normalized() {
        assert_eq!(normalize_msisdn(" +447700900123 ").as_deref(), Some("447700900123"));
        assert_eq!(normalize_msisdn("0447700900123"), None);
        assert_eq!(normalize_msisdn("44770"), None);
        assert_eq!(normalize_country("gb").as_deref(), Some("GB"));
        assert_eq!(normalize_country("G1"), None);
    }
}
