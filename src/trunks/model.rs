//! A trunk as stored, as shown (never its password), and the checks every change goes through,
//! shared by the API and the CLI.

use crate::carrier::SipTransport;
use crate::validation::{InvalidParam, Problems};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_PREFIXES: usize = 500;
pub const MAX_PRIORITY: i64 = 65_535;
pub const MAX_CPS: i64 = 100_000;
pub const MAX_CHANNELS: i64 = 1_000_000;
const MAX_CREDENTIAL_CHARS: usize = 128;

#[derive(Clone, sqlx::FromRow)]
pub struct Trunk {
    pub id: Uuid,
    /// None: a platform trunk.
    pub account_id: Option<i64>,
    pub name: String,
    pub host: String,
    pub port: i32,
    pub transport: String,
    pub username: Option<String>,
    /// Sealed with the credentials key (see `crypto`); never shown.
    pub password_encrypted: Option<Vec<u8>>,
    pub from_domain: Option<String>,
    pub prefixes: Vec<String>,
    pub priority: i32,
    pub cps: Option<i32>,
    pub max_channels: Option<i32>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for Trunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trunk")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("has_password", &self.password_encrypted.is_some())
            .finish_non_exhaustive()
    }
}

impl Trunk {
    pub fn owner(&self) -> &'static str {
        if self.account_id.is_some() {
            "account"
        } else {
            "platform"
        }
    }

    pub fn transport(&self) -> SipTransport {
        if self.transport == "tcp" {
            SipTransport::Tcp
        } else {
            SipTransport::Udp
        }
    }

    /// What the API and the CLI show: everything but the password, which is only `has_password`.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "owner": self.owner(),
            "account_id": self.account_id,
            "host": self.host,
            "port": self.port,
            "transport": self.transport,
            "username": self.username,
            "has_password": self.password_encrypted.is_some(),
            "from_domain": self.from_domain,
            "prefixes": self.prefixes,
            "priority": self.priority,
            "cps": self.cps,
            "max_channels": self.max_channels,
            "enabled": self.enabled,
            "created_at": crate::calls::format_time(self.created_at),
            "updated_at": crate::calls::format_time(self.updated_at),
        })
    }
}

/// A change to a nullable field: leave it, clear it, or set it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Change<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T> Change<T> {
    fn merge(self, current: Option<T>) -> Option<T> {
        match self {
            Change::Keep => current,
            Change::Clear => None,
            Change::Set(v) => Some(v),
        }
    }
}

/// What a create or an update asks for, unchecked; None / Keep leaves a field as it is (or at
/// its default on create). Numbers are i64 so out-of-range values are reported, not wrapped.
#[derive(Default, Clone)]
pub struct TrunkInput {
    pub name: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub transport: Option<String>,
    pub username: Change<String>,
    pub password: Change<String>,
    pub from_domain: Change<String>,
    pub prefixes: Option<Vec<String>>,
    pub priority: Option<i64>,
    pub cps: Change<i64>,
    pub max_channels: Change<i64>,
    pub enabled: Option<bool>,
}

impl std::fmt::Debug for TrunkInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkInput").field("name", &self.name).field("host", &self.host).finish_non_exhaustive()
    }
}

/// The password part of a checked change.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordChange {
    Keep,
    Clear,
    Set(String),
}

/// A trunk's fields after a change, all checked.
#[derive(Clone)]
pub struct TrunkSpec {
    pub name: String,
    pub host: String,
    pub port: i32,
    pub transport: String,
    pub username: Option<String>,
    pub password: PasswordChange,
    pub from_domain: Option<String>,
    pub prefixes: Vec<String>,
    pub priority: i32,
    pub cps: Option<i32>,
    pub max_channels: Option<i32>,
    pub enabled: bool,
}

impl TrunkInput {
    /// Checks every field (all problems at once), merged over `current` for an update.
    pub fn into_spec(self, current: Option<&Trunk>) -> Result<TrunkSpec, Vec<InvalidParam>> {
        let mut p = Problems::default();
        let name = match (self.name, current) {
            (Some(n), _) => check_name(&mut p, n.trim()),
            (None, Some(t)) => t.name.clone(),
            (None, None) => {
                p.add("name", "is required");
                String::new()
            }
        };
        let host = match (self.host, current) {
            (Some(h), _) => check_host(&mut p, "host", h.trim()),
            (None, Some(t)) => t.host.clone(),
            (None, None) => {
                p.add("host", "is required");
                String::new()
            }
        };
        let port = match self.port {
            Some(n) if (1..=65_535).contains(&n) => n as i32,
            Some(n) => {
                p.add("port", format!("must be between 1 and 65535, got {n}"));
                0
            }
            None => current.map_or(5060, |t| t.port),
        };
        let transport = match self.transport.map(|t| t.trim().to_ascii_lowercase()) {
            Some(t) if t == "udp" || t == "tcp" => t,
            Some(_) => {
                p.add("transport", "must be udp or tcp");
                String::new()
            }
            None => current.map_or("udp".into(), |t| t.transport.clone()),
        };
        let username = match self.username {
            Change::Set(u) => Change::Set(check_credential(&mut p, "username", u)),
            other => other,
        }
        .merge(current.and_then(|t| t.username.clone()));
        let password = match self.password {
            Change::Set(pw) => PasswordChange::Set(check_credential(&mut p, "password", pw)),
            Change::Clear => PasswordChange::Clear,
            Change::Keep => PasswordChange::Keep,
        };
        let has_password = match &password {
            PasswordChange::Set(_) => true,
            PasswordChange::Clear => false,
            PasswordChange::Keep => current.is_some_and(|t| t.password_encrypted.is_some()),
        };
        if has_password && username.is_none() {
            match password {
                PasswordChange::Set(_) => p.add("password", "needs a username: digest credentials are a username and a password"),
                _ => p.add("username", "cannot be removed while the trunk has a password (remove the password too)"),
            }
        }
        let from_domain = match self.from_domain {
            Change::Set(d) => Change::Set(check_host(&mut p, "from_domain", d.trim())),
            other => other,
        }
        .merge(current.and_then(|t| t.from_domain.clone()));
        let prefixes = match self.prefixes {
            Some(list) => check_prefixes(&mut p, list),
            None => current.map(|t| t.prefixes.clone()).unwrap_or_default(),
        };
        let priority = match self.priority {
            Some(n) if (0..=MAX_PRIORITY).contains(&n) => n as i32,
            Some(n) => {
                p.add("priority", format!("must be between 0 and {MAX_PRIORITY} (lower is tried first), got {n}"));
                0
            }
            None => current.map_or(10, |t| t.priority),
        };
        let cps = check_limit(&mut p, "cps", self.cps, MAX_CPS, "calls per second").merge(current.and_then(|t| t.cps));
        let max_channels = check_limit(&mut p, "max_channels", self.max_channels, MAX_CHANNELS, "concurrent calls").merge(current.and_then(|t| t.max_channels));
        let enabled = self.enabled.or(current.map(|t| t.enabled)).unwrap_or(true);
        p.into_result(TrunkSpec { name, host, port, transport, username, password, from_domain, prefixes, priority, cps, max_channels, enabled })
    }
}

fn check_name(p: &mut Problems, name: &str) -> String {
    if name.is_empty() {
        p.add("name", "must not be empty");
    } else if name.chars().count() > MAX_NAME_CHARS || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        p.add("name", format!("must be 1 to {MAX_NAME_CHARS} letters, digits, '-', '_' or '.'"));
    }
    name.to_string()
}

/// A DNS name or an IP address, without a port or a scheme.
pub fn is_host(host: &str) -> bool {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = host.strip_suffix('.').unwrap_or(host).split('.').collect();
    // All-numeric dotted names are mistyped IPv4 addresses, not host names.
    let numeric = labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit()));
    !numeric
        && labels.iter().all(|l| {
            !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-') && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn check_host(p: &mut Problems, field: &str, host: &str) -> String {
    if host.is_empty() {
        p.add(field, "must not be empty");
    } else if !is_host(host) {
        p.add(field, "must be a host name or an IP address, without a scheme or a port (give the port in port)");
    }
    // IPv6 literals are kept without brackets; the carrier adds them in URIs.
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).to_string()
}

fn check_credential(p: &mut Problems, field: &str, value: String) -> String {
    if value.is_empty() {
        p.add(field, "must not be empty (send null to remove it)");
    } else if value.chars().count() > MAX_CREDENTIAL_CHARS || value.chars().any(|c| c.is_control()) {
        p.add(field, format!("must be at most {MAX_CREDENTIAL_CHARS} characters, none of them control characters"));
    } else if field == "username" && value.chars().any(|c| c.is_whitespace() || c == '@' || c == ':') {
        p.add(field, "must not contain spaces, '@' or ':'");
    }
    value
}

fn check_prefixes(p: &mut Problems, list: Vec<String>) -> Vec<String> {
    if list.len() > MAX_PREFIXES {
        p.add("prefixes", format!("must hold at most {MAX_PREFIXES} prefixes"));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, raw) in list.into_iter().enumerate() {
        let prefix = raw.trim();
        let prefix = prefix.strip_prefix('+').unwrap_or(prefix);
        if prefix.is_empty() || prefix.len() > 15 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            p.add(format!("prefixes[{i}]"), "must be 1 to 15 digits (leave prefixes empty to serve every number)");
        } else if !out.iter().any(|o| o == prefix) {
            out.push(prefix.to_string());
        }
    }
    out
}

fn check_limit(p: &mut Problems, field: &str, change: Change<i64>, max: i64, what: &str) -> Change<i32> {
    match change {
        Change::Set(n) if (1..=max).contains(&n) => Change::Set(n as i32),
        Change::Set(n) => {
            p.add(field, format!("must be between 1 and {max} {what}, or null for no limit; got {n}"));
            Change::Keep
        }
        Change::Clear => Change::Clear,
        Change::Keep => Change::Keep,
    }
}

/// Reads a JSON body (POST or PUT) into a `TrunkInput`, recording a problem for each bad field.
/// `null` clears an optional field (username, password, from_domain, cps, max_channels).
pub fn input_from_json(value: &Value, problems: &mut Problems) -> TrunkInput {
    let mut input = TrunkInput::default();
    let Some(mut f) = crate::validation::Fields::of(value, "", problems) else {
        return input;
    };
    let is_null = |key: &str| value.get(key).is_some_and(Value::is_null);
    input.name = f.string("name");
    input.host = f.string("host");
    input.port = int(&mut f, "port");
    input.transport = f.string("transport");
    for (key, slot) in [("username", &mut input.username), ("password", &mut input.password), ("from_domain", &mut input.from_domain)] {
        *slot = if is_null(key) { Change::Clear } else { f.string(key).map_or(Change::Keep, Change::Set) };
    }
    if let Some(items) = f.array("prefixes") {
        let mut list = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) => list.push(s.to_string()),
                None => f.bad(&format!("prefixes[{i}]"), "must be a string of digits"),
            }
        }
        input.prefixes = Some(list);
    }
    input.priority = int(&mut f, "priority");
    for (key, slot) in [("cps", &mut input.cps), ("max_channels", &mut input.max_channels)] {
        *slot = if is_null(key) { Change::Clear } else { int(&mut f, key).map_or(Change::Keep, Change::Set) };
    }
    input.enabled = f.boolean("enabled");
    input
}

/// A whole number (numeric strings accepted, as elsewhere), reported when it is not one.
fn int(f: &mut crate::validation::Fields, key: &str) -> Option<i64> {
    f.int_in(key, i64::from(i32::MIN), i64::from(i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for good in ["sip.example.com", "trunk-1.carrier.net.", "10.0.0.7", "::1", "[2001:db8::1]", "localhost"] {
            assert!(is_host(good), "{good}");
        }
        for bad in ["", "sip.example.com:5060", "sip://x", "-a.com", "a..b", "10.0.0.300", "host name", "x_y.com"] {
            assert!(!is_host(bad), "{bad}");
        }
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let input = TrunkInput {
            name: Some(" ".into()),
            host: Some("bad host".into()),
            port: Some(70_000),
            transport: Some("tls".into()),
            password: Change::Set("pw".into()),
            prefixes: Some(vec!["44".into(), "4a".into()]),
            priority: Some(-1),
            cps: Change::Set(-5),
            max_channels: Change::Set(0),
            ..TrunkInput::default()
        };
        let names: Vec<String> = input.into_spec(None).err().unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["name", "host", "port", "transport", "password", "prefixes[1]", "priority", "cps", "max_channels"]);
    }
}
