//! Settings: `config/default.toml` (compiled in), an optional file, then environment variables.

use serde::Deserialize;
use std::path::Path;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub calls: CallSettings,
    pub engine: EngineSettings,
    pub webhooks: WebhookSettings,
    pub carrier: CarrierSettings,
    pub sip: SipSettings,
    pub history: HistorySettings,
    pub reports: ReportSettings,
    pub log: LogSettings,
    pub media: MediaSettings,
    pub console: ConsoleSettings,
    pub metrics: MetricsSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HistorySettings {
    pub seal_interval_s: u64,
    pub seal_grace_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EngineSettings {
    pub roles: Vec<String>,
    pub heartbeat_ms: u64,
    pub instance_timeout_ms: u64,
    pub poll_ms: u64,
    pub max_live_legs: usize,
    pub claim_batch: i64,
    pub write_tasks: usize,
    pub write_batch_max: usize,
    pub drain_timeout_ms: u64,
    pub machine_detection_s: f64,
}

impl EngineSettings {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.trim() == role)
    }
}

/// The Reports API's background jobs (`POST /v2/reports`).
#[derive(Debug, Clone, Deserialize)]
pub struct ReportSettings {
    pub poll_ms: u64,
    pub lease_ms: u64,
    pub max_attempts: i32,
    pub callback_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    pub connect_timeout_ms: u64,
    pub answer_timeout_ms: u64,
    pub event_timeout_ms: u64,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub max_age_s: i64,
    pub batch: i64,
    pub max_in_flight: usize,
    pub database_connections: u32,
    pub allow_private_addresses: bool,
    /// Networks (CIDR) allowed even though they are private, e.g. an internal receiver's.
    pub allowed_networks: Vec<ipnet::IpNet>,
    /// Largest reply body kept (NCCOs from answer_url and events, report callbacks).
    pub max_reply_bytes: usize,
    /// Largest audio file fetched (`streamUrl`, `musicOnHoldUrl`).
    pub max_media_bytes: usize,
    /// Certificates (PEM) trusted besides the public roots for https:// webhooks and wss://
    /// websocket endpoints: a private CA's. The key holds the file's path ("" for none).
    #[serde(deserialize_with = "crate::webhooks::tls::ExtraRoots::deserialize")]
    pub ca_file: crate::webhooks::tls::ExtraRoots,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CarrierSettings {
    pub kind: String,
    pub time_scale: f64,
    pub simulated: crate::carrier::BehaviourTable,
}

/// The SIP carrier (`carrier.kind = "sip"`).
#[derive(Debug, Clone, Deserialize)]
pub struct SipSettings {
    pub listen: String,
    pub public_address: String,
    pub tcp: bool,
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    pub user_agent: String,
    pub invite_timeout_ms: u64,
    /// SIP endpoints (`to: [{type: "sip"}]`) may be private or loopback hosts.
    pub allow_private_uris: bool,
    /// Seals trunk passwords at rest; None (empty in the file) when not configured.
    #[serde(deserialize_with = "crate::trunks::CredentialKey::deserialize_optional")]
    pub credentials_key: Option<crate::trunks::CredentialKey>,
    /// Calls per second one account's numbers take from trunks, per instance (0: no limit).
    pub inbound_account_cps: u32,
    /// Concurrent inbound calls one account takes, per instance (0: no limit).
    pub inbound_account_channels: u32,
    /// Keep each call's SIP messages (method or status, direction, time) for its SIP ladder.
    pub record_messages: bool,
    /// Hours a call's SIP messages are kept.
    pub record_messages_keep_h: u32,
    /// The SIP proxy outbound INVITEs go through ("host:port", UDP; "" = straight to the trunk).
    pub outbound_proxy: String,
    /// Proxies whose INVITEs name the caller's address in `X-Outdial-Source` (deploy/kamailio).
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CallSettings {
    pub random_from_numbers: Vec<String>,
    pub insert_writers: usize,
    pub insert_batch_max: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
    pub public_base_url: String,
    pub max_body_bytes: usize,
    pub max_rates_body_bytes: usize,
    pub workers: usize,
    pub keep_alive_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub jwt_leeway_s: u64,
    pub jwt_max_ttl_s: i64,
    pub basic_auth_cache_s: u64,
    pub failed_logins_burst: u32,
    pub failed_login_interval_ms: u64,
    pub client_address_from_forwarded: bool,
}

/// The live-calls console (`/console`).
#[derive(Debug, Clone, Deserialize)]
pub struct ConsoleSettings {
    pub enabled: bool,
    pub session_ttl_s: u64,
    pub poll_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    pub default_calls_per_second: i32,
    pub other_requests_per_second: u32,
    pub idempotency_ttl_h: i64,
}

/// Who may read `GET /metrics` (`[metrics]`).
#[derive(Debug, Clone, Deserialize)]
pub struct MetricsSettings {
    /// A scraper must send `Authorization: Bearer <token>`; None (empty in the file): no token.
    #[serde(deserialize_with = "MetricsToken::deserialize_optional")]
    pub token: Option<MetricsToken>,
    /// Client addresses (CIDR) allowed to scrape; empty: none.
    pub allowed_networks: Vec<ipnet::IpNet>,
}

/// The metrics bearer token; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct MetricsToken(pub String);

impl MetricsToken {
    fn deserialize_optional<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<MetricsToken>, D::Error> {
        let token = String::deserialize(d)?;
        Ok((!token.trim().is_empty()).then(|| MetricsToken(token.trim().to_string())))
    }

    /// Compares in time independent of where `offered` differs.
    pub fn matches(&self, offered: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), offered.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(..)")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub filter: String,
    pub format: String,
}

impl Settings {
    /// Loads defaults, then `file` if given, then `OUTDIAL__SECTION__KEY` variables and `DATABASE_URL`.
    pub fn load(file: Option<&Path>) -> Result<Settings, config::ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("OUTDIAL")
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("calls.random_from_numbers")
                .with_list_parse_key("engine.roles")
                .with_list_parse_key("webhooks.allowed_networks")
                .with_list_parse_key("sip.trusted_proxies")
                .with_list_parse_key("metrics.allowed_networks")
                .try_parsing(true),
        );
        if let Ok(url) = std::env::var("DATABASE_URL") {
            builder = builder.set_override("database.url", url)?;
        }
        builder.build()?.try_deserialize()
    }
}

/// Audio for calls: text-to-speech, decoded streams and speech recognition (`[media]`).
#[derive(Debug, Clone, Deserialize)]
pub struct MediaSettings {
    pub tts_engine: TtsEngineKind,
    /// The HTTP engine's endpoint ("" when unused).
    pub tts_http_url: String,
    /// The espeak-ng program: a name looked up in PATH, or a path.
    pub espeak_path: String,
    pub tts_timeout_ms: u64,
    /// Longest clip decoded or synthesized.
    pub max_clip_s: u64,
    pub audio_cache_bytes: usize,
    /// The LAME program that encodes MP3 recordings: a name looked up in PATH, or a path.
    pub lame_path: String,
    /// The speech server for `input` speech (Vosk protocol, `ws://`); "" for none.
    pub speech_url: String,
    /// Longest wait to connect to the speech server and for any answer it owes.
    pub speech_timeout_ms: u64,
    /// Send `speech.context` as the server's `phrase_list`.
    pub speech_phrase_list: bool,
    /// Alternatives asked of the server (n-best); 0: one result with word confidences.
    pub speech_max_alternatives: u32,
}

/// Which text-to-speech engine speaks `talk` (`media.tts_engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TtsEngineKind {
    EspeakNg,
    Http,
}
