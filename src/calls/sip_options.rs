//! Per-call SIP options: the `sip` object of `POST /v1/calls` (an Outdial extension the SDKs
//! never send), validated here and stored as JSON in `calls.sip_options`; and which of the
//! facts the engine keeps in `calls.sip` the API shows. Pure types and validation, no I/O.
//!
//! The engine reads the options back with
//! `serde_json::from_value::<SipOptions>(row.sip_options)`; what is stored passed
//! `parse_sip_options`, so every string may go into an INVITE as is.

use crate::ncco::sip_rules::{check_x_headers, header_value_problem, is_sip_uri, is_tel_uri, HeaderValues, MAX_URI_CHARS};
use crate::validation::{Fields, Problems};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Longest `sip.display_name`.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;
/// Longest `sip.rewrite_from`.
pub const MAX_USER_PART_CHARS: usize = 64;
/// Longest `sip.trunk`.
pub const MAX_TRUNK_NAME_CHARS: usize = 128;
/// Longest `user_data` (a top-level field of the call, not of `sip`).
pub const MAX_USER_DATA_CHARS: usize = 128;
/// Longest digits-only `sip.pai`/`sip.rpi`.
const MAX_IDENTITY_DIGITS: usize = 20;

/// How the callee's device is asked to answer by itself (an intercom or a paging call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AutoAnswer {
    /// RFC 5373 `Answer-Mode: Auto`.
    #[serde(rename = "answer_mode")]
    AnswerMode,
    /// `Call-Info: <…>;answer-after=0`.
    #[serde(rename = "call_info")]
    CallInfo,
    /// `Alert-Info` asking for auto-answer.
    #[serde(rename = "alert_info")]
    AlertInfo,
    /// `Alert-Info` asking for auto-answer with no delay (`delay=0`).
    #[serde(rename = "alert_info_delay0")]
    AlertInfoDelay0,
    /// `Alert-Info` asking for an intercom answer.
    #[serde(rename = "intercom")]
    Intercom,
}

impl AutoAnswer {
    pub const ALL: [AutoAnswer; 5] = [AutoAnswer::AnswerMode, AutoAnswer::CallInfo, AutoAnswer::AlertInfo, AutoAnswer::AlertInfoDelay0, AutoAnswer::Intercom];

    pub fn as_str(self) -> &'static str {
        match self {
            AutoAnswer::AnswerMode => "answer_mode",
            AutoAnswer::CallInfo => "call_info",
            AutoAnswer::AlertInfo => "alert_info",
            AutoAnswer::AlertInfoDelay0 => "alert_info_delay0",
            AutoAnswer::Intercom => "intercom",
        }
    }

    pub fn parse(s: &str) -> Option<AutoAnswer> {
        AutoAnswer::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// The validated `sip` object of a call. Every field is optional; an absent one leaves the
/// trunk's and the call's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SipOptions {
    /// The trunk to go out through, by name, instead of routing by prefix. Whether it exists
    /// (and is the account's or the platform's) is decided when the call is routed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk: Option<String>,
    /// The From display name (no quotes, backslashes or control characters: it goes inside
    /// `"…"` as is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The From user part instead of the call's `from` number: a SIP user part (RFC 3261
    /// `user`, `%HH` escapes allowed) such as `alice` or `+447700900001`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_from: Option<String>,
    /// P-Asserted-Identity: a `sip:`/`sips:`/`tel:` URI, or digits (an optional leading `+`)
    /// that the carrier turns into a URI at the trunk's domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pai: Option<String>,
    /// Remote-Party-ID, the same forms as `pai`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpi: Option<String>,
    /// Custom headers, each sent as `X-<name>: <value>`; names as the caller gave them
    /// (RFC 3261 tokens), values single-line text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_answer: Option<AutoAnswer>,
}

impl SipOptions {
    pub fn is_empty(&self) -> bool {
        *self == SipOptions::default()
    }

    /// The custom headers as they go out: (`X-<name>`, value).
    pub fn x_headers(&self) -> impl Iterator<Item = (String, &str)> {
        self.headers.iter().map(|(name, value)| (format!("X-{name}"), value.as_str()))
    }
}

/// The keys `sip` may hold; any other is refused (a typo must not be silently ignored when it
/// changes what a real phone network sees).
const KEYS: [&str; 7] = ["trunk", "display_name", "rewrite_from", "pai", "rpi", "headers", "auto_answer"];

/// Reads the `sip` object at `path`, recording every problem under it (`sip.headers.Foo`).
/// Returns None when there was a problem.
pub fn parse_sip_options(value: &Value, path: &str, problems: &mut Problems) -> Option<SipOptions> {
    let before = problems.0.len();
    let mut f = Fields::of(value, path, problems)?;
    if let Some(map) = value.as_object() {
        for key in map.keys().filter(|k| !KEYS.contains(&k.as_str())) {
            f.bad(key, format!("is not a SIP option: the options are {}", KEYS.join(", ")));
        }
    }
    let trunk = checked(&mut f, "trunk", trunk_problem);
    let display_name = checked(&mut f, "display_name", display_name_problem);
    let rewrite_from = checked(&mut f, "rewrite_from", user_part_problem);
    let pai = checked(&mut f, "pai", identity_problem);
    let rpi = checked(&mut f, "rpi", identity_problem);
    let headers = match f.object("headers").and_then(Value::as_object) {
        Some(map) => check_x_headers(map, &f.path("headers"), f.problems, HeaderValues::Strings).map(strings).unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let allowed: Vec<&str> = AutoAnswer::ALL.iter().map(|a| a.as_str()).collect();
    let auto_answer = f.one_of("auto_answer", &allowed).as_deref().and_then(AutoAnswer::parse);
    let options = SipOptions { trunk, display_name, rewrite_from, pai, rpi, headers, auto_answer };
    (problems.0.len() == before).then_some(options)
}

/// The top-level `user_data` of a call: any text up to 128 characters, kept with the call.
pub fn user_data_problem(s: &str) -> Option<String> {
    (s.chars().count() > MAX_USER_DATA_CHARS).then(|| format!("must be at most {MAX_USER_DATA_CHARS} characters"))
}

/// A string field that must pass `rule`.
fn checked(f: &mut Fields, key: &str, rule: fn(&str) -> Option<String>) -> Option<String> {
    let s = f.string(key)?;
    match rule(&s) {
        None => Some(s),
        Some(reason) => {
            f.bad(key, reason);
            None
        }
    }
}

fn strings(map: Map<String, Value>) -> BTreeMap<String, String> {
    map.into_iter().filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string()))).collect()
}

fn trunk_problem(s: &str) -> Option<String> {
    if s.trim().is_empty() {
        return Some("must be a trunk's name".into());
    }
    if s.chars().any(char::is_control) || s.chars().count() > MAX_TRUNK_NAME_CHARS {
        return Some(format!("must be a trunk's name: at most {MAX_TRUNK_NAME_CHARS} characters, no control characters"));
    }
    None
}

fn display_name_problem(s: &str) -> Option<String> {
    if s.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
        return Some("must not contain quotes, backslashes, line breaks or other control characters".into());
    }
    header_value_problem(s, MAX_DISPLAY_NAME_CHARS)
}

/// RFC 3261 `user`: unreserved, user-unreserved and `%HH` escapes.
fn user_part_problem(s: &str) -> Option<String> {
    let rule = format!(
        "must be a SIP user part such as alice or +447700900001: 1 to {MAX_USER_PART_CHARS} letters, digits or -_.!~*'()&=+$,;?/ (not a whole URI)"
    );
    let bytes = s.as_bytes();
    if bytes.is_empty() || s.chars().count() > MAX_USER_PART_CHARS {
        return Some(rule);
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return Some(rule);
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b)) {
            return Some(rule);
        }
        i += 1;
    }
    None
}

/// `pai`/`rpi`: a sip:, sips: or tel: URI, or digits.
fn identity_problem(s: &str) -> Option<String> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    let is_digits = !digits.is_empty() && digits.len() <= MAX_IDENTITY_DIGITS && digits.bytes().all(|b| b.is_ascii_digit());
    if is_digits || is_sip_uri(s) || is_tel_uri(s) {
        return None;
    }
    Some(format!(
        "must be a sip:, sips: or tel: URI (at most {MAX_URI_CHARS} characters, no spaces, quotes or <>) such as sip:+447700900001@example.com, \
         or up to {MAX_IDENTITY_DIGITS} digits with an optional leading +"
    ))
}

/// The keys of `calls.sip` the API shows: the engine also keeps the dialog there (tags, CSeq,
/// route set), which stays inside.
pub const SHOWN_SIP_KEYS: [&str; 8] = ["call_id", "trunk", "remote_address", "codec", "early_media_ms", "final_code", "final_reason", "attempts"];

/// The `sip` object of `GET /v1/calls/{uuid}`: the shown keys of the stored facts, as stored;
/// None when the leg has none of them (not a SIP leg, or not dialled yet).
pub fn shown_sip(stored: &Value) -> Option<Value> {
    let stored = stored.as_object()?;
    let shown: Map<String, Value> =
        SHOWN_SIP_KEYS.iter().filter_map(|k| stored.get(*k).filter(|v| !v.is_null()).map(|v| (k.to_string(), v.clone()))).collect();
    (!shown.is_empty()).then_some(Value::Object(shown))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(value: Value) -> Vec<String> {
        let mut problems = Problems::default();
        let parsed = parse_sip_options(&value, "sip", &mut problems);
        assert_eq!(parsed.is_none(), !problems.is_empty());
        problems.0.into_iter().map(|p| p.name).collect()
    }

    #[test]
    fn every_option_round_trips_through_its_stored_json() {
        let mut problems = Problems::default();
        let body = json!({"trunk": "carrier-a", "display_name": "Alice Example", "rewrite_from": "+447700900001",
                          "pai": "sip:+447700900001@example.com", "rpi": "tel:+447700900001", "headers": {"Tenant": "7", "Trace-Id": "ab c"},
                          "auto_answer": "alert_info_delay0"});
        let options = parse_sip_options(&body, "sip", &mut problems).unwrap();
        assert_eq!(options.auto_answer, Some(AutoAnswer::AlertInfoDelay0));
        let stored = serde_json::to_value(&options).unwrap();
        assert_eq!(stored, body);
        assert_eq!(serde_json::from_value::<SipOptions>(stored).unwrap(), options);
        let x: Vec<(String, &str)> = options.x_headers().collect();
        assert_eq!(x, vec![("X-Tenant".to_string(), "7"), ("X-Trace-Id".to_string(), "ab c")]);
        assert!(parse_sip_options(&json!({}), "sip", &mut problems).unwrap().is_empty());
        assert!(serde_json::from_value::<SipOptions>(json!({"future": 1})).unwrap().is_empty(), "stored rows of a newer version still read");
    }

    #[test]
    fn each_bad_option_is_named() {
        assert_eq!(names(json!({"trunc": "a"})), ["sip.trunc"]);
        assert_eq!(names(json!({"trunk": ""})), ["sip.trunk"]);
        assert_eq!(names(json!({"display_name": "Al \"x\""})), ["sip.display_name"]);
        assert_eq!(names(json!({"display_name": "x".repeat(65)})), ["sip.display_name"]);
        assert_eq!(names(json!({"display_name": "a\r\nb"})), ["sip.display_name"]);
        assert_eq!(names(json!({"rewrite_from": "sip:alice@example.com"})), ["sip.rewrite_from"]);
        assert_eq!(names(json!({"rewrite_from": "al ice"})), ["sip.rewrite_from"]);
        assert_eq!(names(json!({"rewrite_from": "a%2"})), ["sip.rewrite_from"]);
        assert!(names(json!({"rewrite_from": "a%20b"})).is_empty());
        assert_eq!(names(json!({"pai": "Alice <sip:a@b>"})), ["sip.pai"]);
        assert_eq!(names(json!({"rpi": "12ab"})), ["sip.rpi"]);
        assert!(names(json!({"pai": "+447700900001", "rpi": "sips:a@example.com"})).is_empty());
        assert_eq!(names(json!({"headers": {"A": "x\ny"}})), ["sip.headers.A"]);
        assert_eq!(names(json!({"headers": {"A": 1}})), ["sip.headers.A"]);
        assert_eq!(names(json!({"headers": "A: b"})), ["sip.headers"]);
        let many: Map<String, Value> = (0..21).map(|i| (format!("H{i}"), json!("v"))).collect();
        assert_eq!(names(json!({"headers": many})), ["sip.headers"]);
        assert_eq!(names(json!({"auto_answer": "yes"})), ["sip.auto_answer"]);
        assert_eq!(names(json!("sip:x@y")), ["sip"]);
    }

    #[test]
    fn only_the_shown_facts_leave_the_stored_sip_object() {
        let stored = json!({"call_id": "abc@host", "trunk": "a", "final_code": 200, "dialog": {"local_tag": "t"}, "cseq": 3});
        assert_eq!(shown_sip(&stored), Some(json!({"call_id": "abc@host", "trunk": "a", "final_code": 200})));
        assert_eq!(shown_sip(&json!({"dialog": {}})), None);
        assert_eq!(shown_sip(&Value::Null), None);
    }
}
