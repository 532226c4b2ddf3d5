//! Application records and the Applications API v2 body.

use crate::validation::{Fields, InvalidParam, Problems};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Application {
    pub id: Uuid,
    pub account_id: i64,
    pub name: String,
    pub public_key_pem: String,
    pub answer_url: Option<String>,
    pub answer_method: String,
    pub event_url: Option<String>,
    pub event_method: String,
    pub fallback_answer_url: Option<String>,
    pub fallback_answer_method: String,
    pub signed_callbacks: bool,
    pub created_at: DateTime<Utc>,
}

/// What a create or update asks for. `public_key_pem: None` on create means "generate a pair".
#[derive(Debug, Clone, Default)]
pub struct ApplicationSpec {
    pub name: String,
    pub public_key_pem: Option<String>,
    pub answer: Option<(String, String)>,
    pub event: Option<(String, String)>,
    pub fallback_answer: Option<(String, String)>,
    pub signed_callbacks: bool,
}

/// Reads `{address, http_method}` at capabilities.voice.webhooks.<name>.
fn webhook(f: &mut Fields, name: &str, default_method: &str) -> Option<(String, String)> {
    let value = f.object(name)?;
    let path = f.path(name);
    let mut w = Fields::of(value, &path, f.problems)?;
    if !w.has("address") {
        w.missing("address");
        return None;
    }
    let address = w.url_list("address");
    let method = w.http_method("http_method").unwrap_or_else(|| default_method.to_string());
    address.map(|a| (a, method))
}

impl ApplicationSpec {
    /// Parses a Vonage Applications API v2 body.
    pub fn parse(body: &Value) -> Result<ApplicationSpec, Vec<InvalidParam>> {
        let mut problems = Problems::default();
        let mut spec = ApplicationSpec::default();
        if let Some(mut f) = Fields::of(body, "", &mut problems) {
            spec.name = f.required_string("name").unwrap_or_default();
            if spec.name.chars().count() > 200 {
                f.bad("name", "must be at most 200 characters");
            }
            if let Some(keys) = f.object("keys") {
                let mut k = Fields::of(keys, "keys", f.problems).expect("checked object");
                if let Some(pem) = k.string("public_key") {
                    if super::keys::is_valid_public_key(&pem) {
                        spec.public_key_pem = Some(pem.trim().to_string());
                    } else {
                        k.bad("public_key", "must be an RSA public key in PEM form (BEGIN PUBLIC KEY)");
                    }
                }
            }
            let voice = match f.object("capabilities") {
                Some(caps) => Fields::of(caps, "capabilities", f.problems).and_then(|mut c| c.object("voice")),
                None => None,
            };
            if let Some(voice) = voice {
                let mut v = Fields::of(voice, "capabilities.voice", f.problems).expect("checked object");
                spec.signed_callbacks = v.boolean("signed_callbacks").unwrap_or(false);
                if let Some(hooks) = v.object("webhooks") {
                    let mut h = Fields::of(hooks, "capabilities.voice.webhooks", v.problems).expect("checked object");
                    spec.answer = webhook(&mut h, "answer_url", "GET");
                    spec.event = webhook(&mut h, "event_url", "POST");
                    spec.fallback_answer = webhook(&mut h, "fallback_answer_url", "GET");
                }
            }
        }
        problems.into_result(spec)
    }
}

impl Application {
    /// The Applications API v2 representation. `private_key` only right after generation.
    pub fn to_json(&self, base_url: &str, private_key: Option<&str>) -> Value {
        let hook = |url: &Option<String>, method: &str| {
            url.as_ref().map(|u| json!({"address": u, "http_method": method}))
        };
        let mut webhooks = serde_json::Map::new();
        if let Some(h) = hook(&self.answer_url, &self.answer_method) {
            webhooks.insert("answer_url".into(), h);
        }
        if let Some(h) = hook(&self.event_url, &self.event_method) {
            webhooks.insert("event_url".into(), h);
        }
        if let Some(h) = hook(&self.fallback_answer_url, &self.fallback_answer_method) {
            webhooks.insert("fallback_answer_url".into(), h);
        }
        let mut keys = json!({ "public_key": self.public_key_pem });
        if let Some(private) = private_key {
            keys["private_key"] = json!(private);
        }
        json!({
            "id": self.id,
            "name": self.name,
            "keys": keys,
            "capabilities": { "voice": { "webhooks": webhooks, "signed_callbacks": self.signed_callbacks } },
            "privacy": { "improve_ai": false },
            "_links": { "self": { "href": format!("{base_url}/v2/applications/{}", self.id) } }
        })
    }
}
