//! Field-by-field validation of JSON request bodies, collecting every problem with its path
//! (`ncco[2].timeOut`) so one response tells the caller all there is to fix.
//!
//! Readers are tolerant the way the official SDKs need: numbers may arrive as numeric strings,
//! URL lists as a bare string, and unknown keys are ignored.

use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvalidParam {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Problems(pub Vec<InvalidParam>);

impl Problems {
    pub fn add(&mut self, name: impl Into<String>, reason: impl Into<String>) {
        self.0.push(InvalidParam { name: name.into(), reason: reason.into() });
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_result<T>(self, value: T) -> Result<T, Vec<InvalidParam>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Reads the fields of one JSON object, recording a problem for each bad one.
pub struct Fields<'v, 'p> {
    map: &'v Map<String, Value>,
    path: String,
    pub problems: &'p mut Problems,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'v, 'p> Fields<'v, 'p> {
    /// Starts reading `value` as an object; records a problem and returns None if it is not one.
    pub fn of(value: &'v Value, path: &str, problems: &'p mut Problems) -> Option<Fields<'v, 'p>> {
        match value.as_object() {
            Some(map) => Some(Fields { map, path: path.to_string(), problems }),
            None => {
                let name = if path.is_empty() { "body" } else { path };
                problems.add(name, format!("must be a JSON object, got {}", type_name(value)));
                None
            }
        }
    }

    pub fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    pub fn raw(&self, key: &str) -> Option<&'v Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn bad(&mut self, key: &str, reason: impl Into<String>) {
        let name = self.path(key);
        self.problems.add(name, reason);
    }

    pub fn missing(&mut self, key: &str) {
        self.bad(key, "is required");
    }

    pub fn string(&mut self, key: &str) -> Option<String> {
        match self.raw(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                let t = type_name(other);
                self.bad(key, format!("must be a string, got {t}"));
                None
            }
        }
    }

    pub fn required_string(&mut self, key: &str) -> Option<String> {
        if !self.has(key) {
            self.missing(key);
            return None;
        }
        let s = self.string(key)?;
        if s.trim().is_empty() {
            self.bad(key, "must not be empty");
            return None;
        }
        Some(s)
    }

    /// A string that must be one of `allowed`.
    pub fn one_of(&mut self, key: &str, allowed: &[&str]) -> Option<String> {
        let s = self.string(key)?;
        if allowed.contains(&s.as_str()) {
            Some(s)
        } else {
            self.bad(key, format!("must be one of {}", allowed.join(", ")));
            None
        }
    }

    pub fn boolean(&mut self, key: &str) -> Option<bool> {
        match self.raw(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" || s == "false" => Some(s == "true"),
            other => {
                let t = type_name(other);
                self.bad(key, format!("must be true or false, got {t}"));
                None
            }
        }
    }

    fn number(&mut self, key: &str) -> Option<f64> {
        let parsed = match self.raw(key)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        };
        if parsed.is_none() {
            self.bad(key, "must be a number");
        }
        parsed
    }

    /// An integer in `min..=max`; numeric strings are accepted (SDKs send some numbers as strings).
    pub fn int_in(&mut self, key: &str, min: i64, max: i64) -> Option<i64> {
        let n = self.number(key)?;
        if n.fract() != 0.0 {
            self.bad(key, format!("must be a whole number between {min} and {max}"));
            return None;
        }
        let n = n as i64;
        if n < min || n > max {
            self.bad(key, format!("must be between {min} and {max}, got {n}"));
            return None;
        }
        Some(n)
    }

    /// A number in `min..=max`; numeric strings are accepted.
    pub fn number_in(&mut self, key: &str, min: f64, max: f64) -> Option<f64> {
        let n = self.number(key)?;
        if n < min || n > max {
            self.bad(key, format!("must be between {min} and {max}, got {n}"));
            return None;
        }
        Some(n)
    }

    /// A number clamped into `min..=max` (Vonage clamps `wait.timeout` rather than refusing it).
    pub fn number_clamped(&mut self, key: &str, min: f64, max: f64) -> Option<f64> {
        self.number(key).map(|n| n.clamp(min, max))
    }

    /// An http(s) URL given as `["https://…"]` or, tolerated, a bare string.
    pub fn url_list(&mut self, key: &str) -> Option<String> {
        let raw = self.raw(key)?;
        let candidate = match raw {
            Value::String(s) => Some(s.as_str()),
            Value::Array(items) if items.len() == 1 => items[0].as_str(),
            Value::Array(items) if items.is_empty() => {
                self.bad(key, "must contain one URL");
                return None;
            }
            Value::Array(_) => {
                self.bad(key, "must contain exactly one URL");
                return None;
            }
            _ => None,
        };
        match candidate {
            Some(s) if is_http_url(s) => Some(s.to_string()),
            Some(_) => {
                self.bad(key, "must be an absolute http or https URL");
                None
            }
            None => {
                self.bad(key, "must be an array holding one URL string");
                None
            }
        }
    }

    /// `GET` or `POST`, as Vonage's webhook method fields.
    pub fn http_method(&mut self, key: &str) -> Option<String> {
        let s = self.string(key)?;
        let upper = s.to_ascii_uppercase();
        if upper == "GET" || upper == "POST" {
            Some(upper)
        } else {
            self.bad(key, "must be GET or POST");
            None
        }
    }

    /// An array field; each element is handed to `each` with its path.
    pub fn array(&mut self, key: &str) -> Option<&'v Vec<Value>> {
        match self.raw(key)? {
            Value::Array(items) => Some(items),
            other => {
                let t = type_name(other);
                self.bad(key, format!("must be an array, got {t}"));
                None
            }
        }
    }

    pub fn object(&mut self, key: &str) -> Option<&'v Value> {
        match self.raw(key)? {
            v @ Value::Object(_) => Some(v),
            other => {
                let t = type_name(other);
                self.bad(key, format!("must be an object, got {t}"));
                None
            }
        }
    }
}

pub fn is_http_url(s: &str) -> bool {
    match url::Url::parse(s) {
        Ok(u) => (u.scheme() == "http" || u.scheme() == "https") && u.host_str().is_some(),
        Err(_) => false,
    }
}

/// E.164 without the leading `+`: 7 to 15 digits, not starting with 0 (the Python SDK's rule).
pub fn is_e164(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// DTMF digits as Vonage accepts them: 0-9, *, # and `p` (a 500 ms pause).
pub fn is_dtmf(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'#' || b == b'p')
}
