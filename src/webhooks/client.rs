//! Outbound HTTP to customers (webhooks, answer_url, audio): timeouts always set, every body
//! read under a size cap, and private or loopback addresses refused (see `address_guard`) on
//! the first URL and on every redirect hop, unless configuration allows them. Proxy variables
//! are ignored: a proxy would resolve names where the guard cannot see them. https:// is
//! verified against the public roots and `webhooks.ca_file` (see `tls`).

use super::address_guard::{AddressGuard, GuardedResolver};
use super::signing::Signer;
use crate::config::WebhookSettings;
use rustls::ClientConfig;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Redirects followed at most, each checked like the first URL.
const MAX_REDIRECTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("invalid URL: {0}")]
    BadUrl(String),
    #[error("{0} is or resolves to a private, loopback or reserved address, which is not allowed (webhooks.allow_private_addresses, webhooks.allowed_networks)")]
    PrivateAddress(String),
    #[error("the response body is larger than the {0} bytes allowed")]
    TooLarge(usize),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("{0}")]
    Other(String),
}

impl WebhookError {
    /// Whether trying again may help (Vonage retries timeouts, connection errors, 429 and 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            WebhookError::Timeout | WebhookError::Connect(_) | WebhookError::Other(_) => true,
            WebhookError::Status(code) => *code == 429 || *code >= 500,
            WebhookError::BadUrl(_) | WebhookError::PrivateAddress(_) | WebhookError::TooLarge(_) | WebhookError::TooManyRedirects => false,
        }
    }
}

#[derive(Debug)]
pub struct WebhookResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub latency: Duration,
}

/// What to do with a response's body.
#[derive(Debug, Clone, Copy)]
pub enum BodyLimit {
    /// Keep it (an NCCO, an audio file): larger than this many bytes is an error.
    Keep(usize),
    /// Not needed (a plain event's reply): read up to this many bytes, so the connection can be
    /// kept alive, then drop it; never an error.
    Discard(usize),
}

#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    guard: Arc<AddressGuard>,
    pub settings: Arc<WebhookSettings>,
}

/// One outbound request.
pub struct Outbound<'a> {
    pub url: &'a str,
    pub method: &'a str,
    /// Sent as JSON for POST, as query parameters for GET.
    pub payload: &'a Value,
    pub timeout: Duration,
    pub signer: Option<&'a Signer>,
    pub body_limit: BodyLimit,
}

impl WebhookClient {
    pub fn new(settings: &WebhookSettings) -> WebhookClient {
        let guard = Arc::new(AddressGuard::new(settings.allow_private_addresses, settings.allowed_networks.clone()));
        let hop_guard = guard.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(WebhookError::TooManyRedirects);
            }
            match hop_guard.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refused) => attempt.error(refused),
            }
        });
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .pool_max_idle_per_host(settings.max_in_flight)
            .user_agent(concat!("Outdial/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .use_preconfigured_tls(ClientConfig::clone(&super::tls::client_config(&settings.ca_file)))
            .redirect(redirects);
        if guard.filters() {
            builder = builder.dns_resolver(Arc::new(GuardedResolver(guard.clone())));
        }
        WebhookClient { http: builder.build().expect("HTTP client"), guard, settings: Arc::new(settings.clone()) }
    }

    /// The cap for bodies that are kept and parsed (NCCOs, replies).
    pub fn reply_limit(&self) -> BodyLimit {
        BodyLimit::Keep(self.settings.max_reply_bytes)
    }

    /// The cap for audio files (`streamUrl`, music on hold).
    pub fn media_limit(&self) -> BodyLimit {
        BodyLimit::Keep(self.settings.max_media_bytes)
    }

    /// For replies nobody reads (plain events).
    pub fn discard_reply(&self) -> BodyLimit {
        BodyLimit::Discard(self.settings.max_reply_bytes)
    }

    fn check_url(&self, raw: &str) -> Result<url::Url, WebhookError> {
        let url = url::Url::parse(raw).map_err(|e| WebhookError::BadUrl(e.to_string()))?;
        self.guard.check_url(&url)?;
        Ok(url)
    }

    /// Sends one request; a non-2xx status is an error carrying the status.
    pub async fn send(&self, out: Outbound<'_>) -> Result<WebhookResponse, (WebhookError, Duration)> {
        let started = Instant::now();
        let url = self.check_url(out.url).map_err(|e| (e, started.elapsed()))?;
        let (request, body) = if out.method.eq_ignore_ascii_case("GET") {
            let mut url = url;
            if let Value::Object(map) = out.payload {
                let mut pairs = url.query_pairs_mut();
                for (k, v) in map {
                    match v {
                        Value::String(s) => pairs.append_pair(k, s),
                        Value::Null => continue,
                        other => pairs.append_pair(k, &other.to_string()),
                    };
                }
            }
            (self.http.get(url), Vec::new())
        } else {
            let body = serde_json::to_vec(out.payload).expect("JSON");
            (self.http.post(url).header("content-type", "application/json").body(body.clone()), body)
        };
        let mut request = request.timeout(out.timeout);
        if let Some(signer) = out.signer {
            request = request.header("authorization", signer.authorization(&body));
        }
        let response = request.send().await.map_err(|e| (classify(e), started.elapsed()))?;
        let status = response.status().as_u16();
        if !(200..=299).contains(&status) {
            return Err((WebhookError::Status(status), started.elapsed()));
        }
        let body = read_body(response, out.body_limit).await.map_err(|e| (e, started.elapsed()))?;
        Ok(WebhookResponse { status, body, latency: started.elapsed() })
    }
}

/// Reads a body chunk by chunk, never holding more than the limit.
async fn read_body(mut response: reqwest::Response, limit: BodyLimit) -> Result<Vec<u8>, WebhookError> {
    let (max, keep) = match limit {
        BodyLimit::Keep(max) => (max, true),
        BodyLimit::Discard(max) => (max, false),
    };
    if keep && response.content_length().is_some_and(|declared| declared > max as u64) {
        return Err(WebhookError::TooLarge(max));
    }
    let mut body = Vec::new();
    let mut read = 0usize;
    while let Some(chunk) = response.chunk().await.map_err(classify)? {
        read += chunk.len();
        if read > max {
            return if keep { Err(WebhookError::TooLarge(max)) } else { Ok(Vec::new()) };
        }
        if keep {
            body.extend_from_slice(&chunk);
        }
    }
    Ok(body)
}

fn classify(e: reqwest::Error) -> WebhookError {
    if e.is_timeout() {
        return WebhookError::Timeout;
    }
    // The resolver's and the redirect policy's refusals arrive wrapped in reqwest's errors.
    let mut source: Option<&dyn std::error::Error> = Some(&e);
    while let Some(err) = source {
        match err.downcast_ref::<WebhookError>() {
            Some(WebhookError::PrivateAddress(host)) => return WebhookError::PrivateAddress(host.clone()),
            Some(WebhookError::BadUrl(why)) => return WebhookError::BadUrl(why.clone()),
            Some(WebhookError::TooManyRedirects) => return WebhookError::TooManyRedirects,
            _ => {}
        }
        source = err.source();
    }
    if e.is_connect() {
        WebhookError::Connect(with_causes(&e))
    } else {
        WebhookError::Other(with_causes(&e))
    }
}

/// The error and its causes: reqwest's own message names only the URL, the cause says what
/// failed (refused, a certificate nothing trusts…).
fn with_causes(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text = format!("{text}: {line}");
        }
        source = cause.source();
    }
    text
}
