//! Webhooks that answer with an NCCO (answer_url, input, notify): two attempts at the URL, then
//! two at the fallback URL, as Vonage does.

use crate::ncco::{parse_ncco, Ncco};
use crate::validation::Problems;
use crate::webhooks::signing::Signer;
use crate::webhooks::{Outbound, WebhookClient};
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Attempt {
    pub url: String,
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
}

/// What the customer answered.
#[derive(Debug)]
pub enum Reply {
    /// A valid NCCO.
    Ncco(Ncco),
    /// 2xx with an empty body or something that is not an NCCO array: "carry on".
    Empty,
    /// 2xx with an array that is not a valid NCCO.
    Invalid(String),
    /// No attempt succeeded.
    Unreachable,
}

pub struct Target<'a> {
    pub url: &'a str,
    pub method: &'a str,
}

const ATTEMPTS_PER_URL: usize = 2;

pub async fn fetch(
    client: &WebhookClient,
    primary: Target<'_>,
    fallback: Option<Target<'_>>,
    payload: &Value,
    kind: &str,
    signer: Option<&Signer>,
) -> (Reply, Vec<Attempt>) {
    let timeout = Duration::from_millis(client.settings.answer_timeout_ms);
    let mut attempts = Vec::new();
    let mut last_error = String::new();
    let targets = std::iter::once((primary, false)).chain(fallback.map(|f| (f, true)));
    for (target, is_fallback) in targets {
        // The fallback request carries the original and why it failed.
        let body = if is_fallback {
            let mut p = payload.clone();
            if let Value::Object(map) = &mut p {
                map.insert("reason".into(), Value::String(last_error.clone()));
                map.insert("original_request".into(), serde_json::json!({"url": attempts.first().map(|a: &Attempt| a.url.clone()), "type": kind}));
            }
            p
        } else {
            payload.clone()
        };
        for _ in 0..ATTEMPTS_PER_URL {
            let result = client.send(Outbound { url: target.url, method: target.method, payload: &body, timeout, signer, body_limit: client.reply_limit() }).await;
            match result {
                Ok(response) => {
                    attempts.push(Attempt {
                        url: target.url.to_string(),
                        status_code: Some(i32::from(response.status)),
                        latency_ms: response.latency.as_millis() as i32,
                        error: None,
                    });
                    return (interpret(&response.body), attempts);
                }
                Err((error, latency)) => {
                    let status_code = match &error {
                        crate::webhooks::WebhookError::Status(c) => Some(i32::from(*c)),
                        _ => None,
                    };
                    last_error = error.to_string();
                    attempts.push(Attempt { url: target.url.to_string(), status_code, latency_ms: latency.as_millis() as i32, error: Some(last_error.clone()) });
                    if !error.is_retryable() {
                        break;
                    }
                }
            }
        }
    }
    (Reply::Unreachable, attempts)
}

fn interpret(body: &[u8]) -> Reply {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Reply::Empty;
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else { return Reply::Empty };
    if !value.is_array() {
        return Reply::Empty;
    }
    let mut problems = Problems::default();
    match parse_ncco(&value, "ncco", &mut problems) {
        Some(ncco) => Reply::Ncco(ncco),
        None => Reply::Invalid(
            problems.0.iter().map(|p| format!("{}: {}", p.name, p.reason)).collect::<Vec<_>>().join("; "),
        ),
    }
}
