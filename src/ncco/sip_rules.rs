//! What a caller may put into a SIP message: URIs, header names and header values. Whatever
//! passes here is copied into an INVITE as is, so a line break, a control character or an
//! unbalanced `<`/`"` must never pass (header injection).

use crate::validation::{join, Problems};
use serde_json::{Map, Value};

/// Custom headers a call or endpoint may carry (`X-` headers).
pub const MAX_X_HEADERS: usize = 20;
/// Longest custom header name, before its `X-` prefix.
pub const MAX_HEADER_NAME_CHARS: usize = 64;
/// Longest custom header value.
pub const MAX_HEADER_VALUE_CHARS: usize = 256;
/// Longest `User-to-User` value: 131 octets of ISDN UUI, hex-encoded, plus its parameters.
pub const MAX_UUI_CHARS: usize = 512;
/// Longest URI accepted anywhere a SIP URI goes.
pub const MAX_URI_CHARS: usize = 512;

/// RFC 3261 `token` (a header name): alphanumerics and `-.!%*_+`'~`.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// Why `value` cannot be a header value, if it cannot: RFC 3261 TEXT-UTF8 (any visible
/// character, spaces and tabs inside), so no CR, LF or other control character.
pub fn header_value_problem(value: &str, max_chars: usize) -> Option<String> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Some("must not contain line breaks or other control characters".into());
    }
    if value.chars().count() > max_chars {
        return Some(format!("must be at most {max_chars} characters"));
    }
    if value.trim().is_empty() {
        return Some("must not be empty".into());
    }
    None
}

/// A `sip:` or `sips:` URI: `sip:[user@]host[:port][;params][?headers]`, visible ASCII only,
/// no `<`, `>`, `"` or spaces (it goes inside `<…>` as is).
pub fn is_sip_uri(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("sip:").or_else(|| s.strip_prefix("sips:")) else { return false };
    if s.len() > MAX_URI_CHARS || !s.bytes().all(|b| b.is_ascii_graphic() && !b"<>\"\\{}|^`".contains(&b)) {
        return false;
    }
    let addr = rest.split([';', '?']).next().unwrap_or("");
    let hostport = match addr.rsplit_once('@') {
        Some((user, host)) if !user.is_empty() => host,
        Some(_) => return false,
        None => addr,
    };
    is_hostport(hostport)
}

/// `host[:port]`: a name or IPv4 address, or `[IPv6]`.
fn is_hostport(s: &str) -> bool {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, rest)) if !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') => {
                if rest.is_empty() {
                    return true;
                }
                match rest.strip_prefix(':') {
                    Some(port) => (addr, Some(port)),
                    None => return false,
                }
            }
            _ => return false,
        }
    } else {
        match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':');
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    host_ok && port_ok
}

/// A `tel:` URI (RFC 3966): `tel:+14155550100` or a local number with its `;phone-context=`.
pub fn is_tel_uri(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("tel:") else { return false };
    if s.len() > MAX_URI_CHARS {
        return false;
    }
    let (number, params) = rest.split_once(';').unwrap_or((rest, ""));
    let digits = number.strip_prefix('+').unwrap_or(number);
    digits.bytes().any(|b| b.is_ascii_digit())
        && digits.bytes().all(|b| b.is_ascii_hexdigit() || b"*#-.()".contains(&b))
        && params.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()[]/:&+$;=%".contains(&b))
}

/// Which JSON values a header map's values may be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HeaderValues {
    /// Strings only (Outdial's own `sip.headers`).
    Strings,
    /// Strings, numbers or booleans, sent as their text (an endpoint's `headers`, as Vonage).
    Scalars,
}

/// The text a header map's value is sent as, if it is of an allowed kind.
pub fn header_text(value: &Value, kinds: HeaderValues) -> Option<String> {
    match (value, kinds) {
        (Value::String(s), _) => Some(s.clone()),
        (Value::Number(n), HeaderValues::Scalars) => Some(n.to_string()),
        (Value::Bool(b), HeaderValues::Scalars) => Some(b.to_string()),
        _ => None,
    }
}

/// Checks a map of custom headers (each name sent as `X-<name>`) at `path`, recording every
/// problem at `path.<name>`. Returns the map when all of it may go out.
pub fn check_x_headers(map: &Map<String, Value>, path: &str, problems: &mut Problems, kinds: HeaderValues) -> Option<Map<String, Value>> {
    let before = problems.0.len();
    if map.len() > MAX_X_HEADERS {
        problems.add(path, format!("must hold at most {MAX_X_HEADERS} headers, got {}", map.len()));
    }
    let mut seen: Vec<String> = Vec::with_capacity(map.len());
    for (name, value) in map {
        let at = join(path, name);
        if !is_token(name) || name.chars().count() > MAX_HEADER_NAME_CHARS {
            problems.add(
                &at,
                format!("is not a valid header name: 1 to {MAX_HEADER_NAME_CHARS} letters, digits or -.!%*_+`'~ (it is sent as X-<name>)"),
            );
            continue;
        }
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            problems.add(&at, "names another header of this object again (header names are case-insensitive)");
        }
        seen.push(lower);
        match header_text(value, kinds) {
            Some(text) => {
                if let Some(reason) = header_value_problem(&text, MAX_HEADER_VALUE_CHARS) {
                    problems.add(&at, reason);
                }
            }
            None if kinds == HeaderValues::Strings => problems.add(&at, "must be a string"),
            None => problems.add(&at, "must be a string, number or boolean"),
        }
    }
    (problems.0.len() == before).then(|| map.clone())
}

/// The standard headers an endpoint may set: only `User-to-User` (RFC 7433) today.
pub fn check_standard_headers(map: &Map<String, Value>, path: &str, problems: &mut Problems) -> Option<Map<String, Value>> {
    let before = problems.0.len();
    for (name, value) in map {
        let at = join(path, name);
        if !name.eq_ignore_ascii_case("User-to-User") {
            problems.add(&at, "is not supported: User-to-User is the only standard header a call may set");
            continue;
        }
        match value.as_str() {
            Some(text) => {
                if let Some(reason) = header_value_problem(text, MAX_UUI_CHARS) {
                    problems.add(&at, reason);
                }
            }
            None => problems.add(&at, "must be a string"),
        }
    }
    (problems.0.len() == before).then(|| map.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sip_uris() {
        for ok in ["sip:bob@example.com", "sips:bob@example.com;transport=tls", "sip:example.com:5080", "sip:+447700900000@10.0.0.1:5060;user=phone", "sip:a@[2001:db8::1]:5060"] {
            assert!(is_sip_uri(ok), "{ok}");
        }
        for bad in ["http://x", "sip:", "sip:@host", "sip:bob@", "sip:bob@exa mple.com", "sip:bob@example.com\r\nX-Evil: 1", "sip:bob@host>", "sip:bob@host:99999", "sip:b\"ob@host"] {
            assert!(!is_sip_uri(bad), "{bad:?}");
        }
    }

    #[test]
    fn tel_uris() {
        assert!(is_tel_uri("tel:+14155550100"));
        assert!(is_tel_uri("tel:7042;phone-context=example.com"));
        assert!(!is_tel_uri("tel:"));
        assert!(!is_tel_uri("tel:+1415 555"));
        assert!(!is_tel_uri("tel:+1415\r\nX: y"));
    }

    #[test]
    fn header_values_refuse_line_breaks() {
        assert!(header_value_problem("a b\tc", 256).is_none());
        assert!(header_value_problem("a\r\nX-Evil: 1", 256).is_some());
        assert!(header_value_problem("a\nb", 256).is_some());
        assert!(header_value_problem("a\u{0}", 256).is_some());
        assert!(header_value_problem(&"x".repeat(257), 256).is_some());
    }

    #[test]
    fn x_headers_report_each_bad_entry_by_name() {
        let mut problems = Problems::default();
        let map = json!({"Good": "v", "Bad Name": "v", "Evil": "a\r\nb", "n": 5, "good": "again"});
        assert!(check_x_headers(map.as_object().unwrap(), "sip.headers", &mut problems, HeaderValues::Strings).is_none());
        let names: Vec<&str> = problems.0.iter().map(|p| p.name.as_str()).collect();
        assert!(names.contains(&"sip.headers.Bad Name"));
        assert!(names.contains(&"sip.headers.Evil"));
        assert!(names.contains(&"sip.headers.n"));
        assert!(names.contains(&"sip.headers.good"));
        assert!(!names.contains(&"sip.headers.Good"));

        let mut problems = Problems::default();
        let scalars = json!({"n": 5, "b": true, "s": "x"});
        assert!(check_x_headers(scalars.as_object().unwrap(), "h", &mut problems, HeaderValues::Scalars).is_some());
        let nested = json!({"o": {"a": 1}});
        assert!(check_x_headers(nested.as_object().unwrap(), "h", &mut problems, HeaderValues::Scalars).is_none());
    }
}
