//! Endpoints: who a call (`to`) or a `connect` action dials.

use super::sip_rules::{check_standard_headers, check_x_headers, is_sip_uri, HeaderValues};
use crate::validation::{is_dtmf, is_e164, Fields, Problems};
use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Endpoint {
    Phone {
        number: String,
        #[serde(rename = "dtmfAnswer", skip_serializing_if = "Option::is_none")]
        dtmf_answer: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        shaken: Option<String>,
        #[serde(rename = "onAnswer", skip_serializing_if = "Option::is_none")]
        on_answer: Option<OnAnswer>,
    },
    Sip {
        uri: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        headers: Option<Map<String, Value>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        standard_headers: Option<Map<String, Value>>,
    },
    Websocket {
        uri: String,
        #[serde(rename = "content-type")]
        content_type: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        headers: Option<Map<String, Value>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        authorization: Option<Value>,
    },
    Vbc {
        extension: String,
    },
    App {
        user: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OnAnswer {
    pub url: String,
    #[serde(rename = "ringbackTone", skip_serializing_if = "Option::is_none")]
    pub ringback_tone: Option<String>,
}

impl Endpoint {
    pub fn kind(&self) -> &'static str {
        match self {
            Endpoint::Phone { .. } => "phone",
            Endpoint::Sip { .. } => "sip",
            Endpoint::Websocket { .. } => "websocket",
            Endpoint::Vbc { .. } => "vbc",
            Endpoint::App { .. } => "app",
        }
    }

    /// The address in the flat form webhooks carry (`to`/`from` are strings there).
    pub fn address(&self) -> &str {
        match self {
            Endpoint::Phone { number, .. } => number,
            Endpoint::Sip { uri, .. } | Endpoint::Websocket { uri, .. } => uri,
            Endpoint::Vbc { extension } => extension,
            Endpoint::App { user } => user,
        }
    }
}

/// What a SIP URI must look like, as a problem's reason.
pub const SIP_URI_RULE: &str = "must be a sip: or sips: URI such as sip:alice@example.com, without spaces, line breaks, quotes or <>";

const WEBSOCKET_CONTENT_TYPES: [&str; 3] =
    ["audio/l16;rate=8000", "audio/l16;rate=16000", "audio/l16;rate=24000"];

/// Parses one endpoint object at `path`. The Node SDK passes `to[]` unchanged, so websocket
/// `contentType`, `content-type` and `content_type` are all accepted, as are SIP
/// `standard_headers` and `standardHeaders`.
pub fn parse_endpoint(value: &Value, path: &str, problems: &mut Problems) -> Option<Endpoint> {
    let mut f = Fields::of(value, path, problems)?;
    let kind = f.required_string("type")?;
    let endpoint = match kind.as_str() {
        "phone" => {
            let number = f.required_string("number").and_then(|n| {
                if is_e164(&n) {
                    Some(n.trim_start_matches('+').to_string())
                } else {
                    f.bad("number", "must be an E.164 number: 7 to 15 digits, no leading 0");
                    None
                }
            });
            let dtmf_answer = f.string("dtmfAnswer").filter(|d| {
                let ok = is_dtmf(d);
                if !ok {
                    f.bad("dtmfAnswer", "may only contain 0-9, *, # and p");
                }
                ok
            });
            let shaken = f.string("shaken");
            let on_answer = match f.raw("onAnswer").or_else(|| f.raw("ringback")) {
                Some(v) => parse_on_answer(v, &f.path("onAnswer"), f.problems),
                None => None,
            };
            Endpoint::Phone { number: number?, dtmf_answer, shaken, on_answer }
        }
        "sip" => {
            let uri = f.required_string("uri").filter(|u| {
                let ok = is_sip_uri(u);
                if !ok {
                    f.bad("uri", SIP_URI_RULE);
                }
                ok
            });
            // Each entry goes into the INVITE: a bad one refuses the endpoint, never dropped.
            let headers = f.object("headers").and_then(Value::as_object);
            let headers = headers.map(|h| check_x_headers(h, &f.path("headers"), f.problems, HeaderValues::Scalars));
            let std_key = if f.has("standardHeaders") { "standardHeaders" } else { "standard_headers" };
            let standard_headers = f.object(std_key).and_then(Value::as_object);
            let standard_headers = standard_headers.map(|h| check_standard_headers(h, &f.path(std_key), f.problems));
            Endpoint::Sip { uri: uri?, headers: headers.flatten(), standard_headers: standard_headers.flatten() }
        }
        "websocket" => {
            let uri = f.required_string("uri").filter(|u| {
                let ok = u.starts_with("ws://") || u.starts_with("wss://");
                if !ok {
                    f.bad("uri", "must be a ws:// or wss:// URI");
                }
                ok
            });
            let key = ["content-type", "contentType", "content_type"]
                .into_iter()
                .find(|k| f.has(k))
                .unwrap_or("content-type");
            let content_type = match f.string(key) {
                Some(ct) if WEBSOCKET_CONTENT_TYPES.contains(&ct.to_ascii_lowercase().as_str()) => {
                    Some(ct.to_ascii_lowercase())
                }
                Some(_) => {
                    f.bad(key, format!("must be one of {}", WEBSOCKET_CONTENT_TYPES.join(", ")));
                    None
                }
                None if !f.has(key) => {
                    f.missing("content-type");
                    None
                }
                None => None,
            };
            let headers = f.object("headers").and_then(|v| v.as_object().cloned()).filter(|h| {
                let ok = Value::Object(h.clone()).to_string().len() <= 512;
                if !ok {
                    f.bad("headers", "must be at most 512 bytes of JSON");
                }
                ok
            });
            let authorization = f.object("authorization").cloned().filter(|a| {
                let kind = a.get("type").and_then(Value::as_str);
                let ok = matches!(kind, Some("vonage")) || (kind == Some("custom") && a.get("value").is_some_and(Value::is_string));
                if !ok {
                    f.bad("authorization", "must be {\"type\":\"vonage\"} or {\"type\":\"custom\",\"value\":\"…\"}");
                }
                ok
            });
            Endpoint::Websocket { uri: uri?, content_type: content_type?, headers, authorization }
        }
        "vbc" => Endpoint::Vbc { extension: f.required_string("extension")? },
        "app" => Endpoint::App { user: f.required_string("user")? },
        _ => {
            f.bad("type", "must be one of phone, sip, websocket, vbc, app");
            return None;
        }
    };
    Some(endpoint)
}

fn parse_on_answer(value: &Value, path: &str, problems: &mut Problems) -> Option<OnAnswer> {
    let mut f = Fields::of(value, path, problems)?;
    let url = match f.raw("url") {
        Some(_) => f.url_list("url"),
        None => {
            f.missing("url");
            None
        }
    };
    let ringback_tone = if f.has("ringbackTone") { f.url_list("ringbackTone") } else { None };
    Some(OnAnswer { url: url?, ringback_tone })
}
