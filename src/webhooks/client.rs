//! Outbound HTTP to customers (webhooks, answer_url, audio): timeouts always set, and private
//! or loopback addresses refused unless configuration allows them.

use super::signing::Signer;
use crate::config::WebhookSettings;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("invalid URL: {0}")]
    BadUrl(String),
    #[error("{0} resolves to a private or loopback address, which is not allowed")]
    PrivateAddress(String),
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
            WebhookError::BadUrl(_) | WebhookError::PrivateAddress(_) => false,
        }
    }
}

#[derive(Debug)]
pub struct WebhookResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub latency: Duration,
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast()
                || v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1]) // carrier-grade NAT
        }
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// Resolves names and drops private addresses, so a public name pointing inside is refused too.
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::task::spawn_blocking(move || (host.as_str(), 0).to_socket_addrs().map(|a| a.collect()))
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)??;
            let public: Vec<SocketAddr> = addrs.into_iter().filter(|a| !is_private(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(WebhookError::PrivateAddress(name.as_str().to_string())) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    allow_private: bool,
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
}

impl WebhookClient {
    pub fn new(settings: &WebhookSettings) -> WebhookClient {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .pool_max_idle_per_host(settings.max_in_flight)
            .user_agent(concat!("Outdial/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(3));
        if !settings.allow_private_addresses {
            builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
        }
        WebhookClient {
            http: builder.build().expect("HTTP client"),
            allow_private: settings.allow_private_addresses,
            settings: Arc::new(settings.clone()),
        }
    }

    fn check_url(&self, raw: &str) -> Result<url::Url, WebhookError> {
        let url = url::Url::parse(raw).map_err(|e| WebhookError::BadUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WebhookError::BadUrl(format!("{} is not http(s)", url.scheme())));
        }
        if !self.allow_private {
            let literal = match url.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            if literal.is_some_and(is_private) || url.host_str() == Some("localhost") {
                return Err(WebhookError::PrivateAddress(url.host_str().unwrap_or_default().to_string()));
            }
        }
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
        let body = response.bytes().await.map_err(|e| (classify(e), started.elapsed()))?.to_vec();
        let latency = started.elapsed();
        if (200..=299).contains(&status) {
            Ok(WebhookResponse { status, body, latency })
        } else {
            Err((WebhookError::Status(status), latency))
        }
    }
}

fn classify(e: reqwest::Error) -> WebhookError {
    if e.is_timeout() {
        return WebhookError::Timeout;
    }
    // The resolver's refusal arrives wrapped in a connect error.
    let mut source: Option<&dyn std::error::Error> = Some(&e);
    while let Some(err) = source {
        if let Some(WebhookError::PrivateAddress(host)) = err.downcast_ref::<WebhookError>() {
            return WebhookError::PrivateAddress(host.clone());
        }
        source = err.source();
    }
    if e.is_connect() {
        WebhookError::Connect(e.to_string())
    } else {
        WebhookError::Other(e.to_string())
    }
}
