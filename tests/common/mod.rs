//! spawn_app: the real server on port 0 over the test's own database, plus a ready account and
//! application, and helpers to call it as a Vonage SDK would.
#![allow(dead_code)]

pub mod audio;
pub mod baresip;
pub mod kamailio;
pub mod receiver;
pub mod sip_app;
pub mod sipp;
pub mod tls;
pub mod vosk;
pub mod ws_server;

use outdial::accounts::{self, NewAccountCredentials};
use outdial::applications::{self, ApplicationSpec};
use outdial::auth::mint_application_jwt;
use outdial::config::Settings;
use outdial::startup::Instance;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

pub const PRIVATE_KEY: &str = include_str!("../fixtures/app_private.key");
pub const PUBLIC_KEY: &str = include_str!("../fixtures/app_public.key");
/// A key that belongs to no application.
pub const OTHER_PRIVATE_KEY: &str = include_str!("../fixtures/other_private.key");

pub struct TestApp {
    pub address: String,
    pub instance: Option<Instance>,
    pub pool: PgPool,
    pub client: reqwest::Client,
    pub account: NewAccountCredentials,
    pub app_id: Uuid,
}

pub struct Options {
    pub calls_per_second: i32,
    pub other_requests_per_second: u32,
    pub max_body_bytes: usize,
    /// Simulated time runs this many times faster.
    pub time_scale: f64,
    /// Which roles the instance runs (api, workers, webhooks).
    pub roles: Vec<&'static str>,
    /// Any other setting a test needs, applied last.
    pub settings: fn(&mut Settings),
}

impl Default for Options {
    fn default() -> Self {
        Options {
            calls_per_second: 1000,
            other_requests_per_second: 1000,
            max_body_bytes: 262_144,
            time_scale: 20.0,
            // API tests look at calls as created; engine tests ask for the workers.
            roles: vec!["api"],
            settings: |_| {},
        }
    }
}

/// Settings for tests: fast clocks, quick retries and takeovers, loopback webhooks allowed.
pub fn test_settings(options: &Options) -> Settings {
    let mut settings = Settings::load(None).expect("default settings");
    settings.http.port = 0;
    settings.http.workers = 1;
    settings.http.max_body_bytes = options.max_body_bytes;
    settings.limits.other_requests_per_second = options.other_requests_per_second;
    settings.carrier.time_scale = options.time_scale;
    settings.engine.roles = options.roles.iter().map(|r| r.to_string()).collect();
    settings.engine.poll_ms = 100;
    settings.engine.heartbeat_ms = 200;
    settings.engine.instance_timeout_ms = 1500;
    settings.engine.drain_timeout_ms = 2000;
    settings.webhooks.allow_private_addresses = true;
    settings.webhooks.retry_base_ms = 50;
    settings.webhooks.retry_max_ms = 400;
    settings.webhooks.answer_timeout_ms = 2000;
    settings.webhooks.event_timeout_ms = 2000;
    // Seals once at start (an empty database: nothing); history tests seal when they choose.
    settings.history.seal_interval_s = 3600;
    settings.reports.poll_ms = 50;
    (options.settings)(&mut settings);
    settings
}

pub async fn spawn_app(pool: PgPool) -> TestApp {
    spawn_app_with(pool, Options::default()).await
}

/// The API, the call workers and the webhook dispatcher, with simulated time 20x.
pub async fn spawn_engine_app(pool: PgPool) -> TestApp {
    spawn_app_with(pool, Options { roles: vec!["api", "workers", "webhooks"], ..Options::default() }).await
}

pub async fn spawn_app_with(pool: PgPool, options: Options) -> TestApp {
    spawn_app_with_settings(pool, test_settings(&options), options.calls_per_second).await
}

/// The app with settings a test adjusted (start from `test_settings`).
pub async fn spawn_app_with_settings(pool: PgPool, settings: Settings, calls_per_second: i32) -> TestApp {
    let instance = Instance::start(settings, pool.clone()).await.expect("instance starts");
    let address = format!("http://127.0.0.1:{}", instance.port.unwrap_or(0));
    let account = accounts::repo::create(&pool, "test", calls_per_second).await.unwrap();
    let app_id = create_application(&pool, account.account_id, Some("http://127.0.0.1:9/events")).await;
    TestApp { address, instance: Some(instance), pool, client: http_client(), account, app_id }
}

/// A plain HTTP client for calling the app. reqwest builds a TLS configuration for every client
/// from the process's default rustls provider, which this build must install (it compiles only
/// aws-lc-rs): use this rather than `reqwest::Client::new()`.
pub fn http_client() -> reqwest::Client {
    outdial::webhooks::tls::install_default_provider();
    reqwest::Client::new()
}

/// Another instance over the same database (a second node of the cluster), and its base URL.
pub async fn start_instance(pool: &PgPool, options: Options) -> (Instance, String) {
    let instance = Instance::start(test_settings(&options), pool.clone()).await.expect("instance starts");
    let address = format!("http://127.0.0.1:{}", instance.port.unwrap_or(0));
    (instance, address)
}

/// An application holding the fixture public key.
pub async fn create_application(pool: &PgPool, account_id: i64, event_url: Option<&str>) -> Uuid {
    let spec = ApplicationSpec {
        name: "test app".into(),
        event: event_url.map(|u| (u.to_string(), "POST".to_string())),
        ..Default::default()
    };
    applications::repo::insert(pool, account_id, &spec, PUBLIC_KEY).await.unwrap().id
}

impl TestApp {
    /// Stops the instance gracefully, so the test's database is released at once.
    pub async fn stop(mut self) {
        if let Some(instance) = self.instance.take() {
            instance.stop().await;
        }
    }

    pub fn jwt(&self) -> String {
        mint_application_jwt(self.app_id, PRIVATE_KEY, 900).unwrap()
    }

    pub fn jwt_for(&self, app_id: Uuid) -> String {
        mint_application_jwt(app_id, PRIVATE_KEY, 900).unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_call(&self, body: &Value) -> reqwest::Response {
        self.post_call_as(&self.jwt(), body).await
    }

    pub async fn post_call_as(&self, jwt: &str, body: &Value) -> reqwest::Response {
        self.client.post(self.url("/v1/calls")).bearer_auth(jwt).json(body).send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(self.jwt()).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client.put(self.url(path)).bearer_auth(self.jwt()).json(body).send().await.unwrap()
    }

    /// Creates a call from `body` and returns its uuid.
    pub async fn place(&self, body: &Value) -> String {
        let response = self.post_call(body).await;
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        response.json::<Value>().await.unwrap()["uuid"].as_str().unwrap().to_string()
    }

    /// Polls GET /v1/calls/{uuid} until its status is `status`.
    pub async fn wait_call_status(&self, uuid: &str, status: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let call = self.get_json(&format!("/v1/calls/{uuid}")).await;
            if call["status"] == status {
                return call;
            }
            assert!(std::time::Instant::now() < deadline, "call {uuid} stuck at {}", call["status"]);
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Creates a call and returns its uuid.
    pub async fn create_call(&self) -> String {
        let response = self.post_call(&minimal_call()).await;
        assert_eq!(response.status(), 201);
        response.json::<Value>().await.unwrap()["uuid"].as_str().unwrap().to_string()
    }
}

/// The call's history lines written by the simulated network (what the callee heard…).
pub async fn media_log(app: &TestApp, uuid: &str) -> Vec<String> {
    let history = app.get_json(&format!("/v1/calls/{uuid}/events")).await;
    history["_embedded"]["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "media").map(|e| e["payload"]["what"].as_str().unwrap().to_string()).collect()
}

pub async fn wait_log(app: &TestApp, uuid: &str, line: &str) -> Vec<String> {
    wait_log_within(app, uuid, line, std::time::Duration::from_secs(15)).await
}

pub async fn wait_log_within(app: &TestApp, uuid: &str, line: &str, within: std::time::Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let log = media_log(app, uuid).await;
        if log.iter().any(|l| l.contains(line)) {
            return log;
        }
        assert!(std::time::Instant::now() < deadline, "no '{line}' in {log:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub fn minimal_call() -> Value {
    json!({
        "to": [{"type": "phone", "number": "447700900000"}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [{"action": "talk", "text": "Hello from Outdial"}]
    })
}

/// Asserts a problem JSON body with `status`, and returns it.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    assert!(content_type.starts_with("application/problem+json"), "content type was {content_type}");
    let body: Value = response.json().await.expect("problem body is JSON");
    for key in ["type", "title", "detail", "instance"] {
        assert!(body[key].is_string(), "problem JSON lacks {key}: {body}");
    }
    body
}

/// The names of the invalid_parameters of a 400.
pub async fn invalid_names(response: reqwest::Response) -> Vec<String> {
    let body = assert_problem(response, 400).await;
    body["invalid_parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("no invalid_parameters: {body}"))
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

/// A WAV file of silence, 16 kHz 16-bit mono, lasting `seconds`. At 32 kB/s its length differs
/// from the 128 kbit/s guess used for files that are not WAV, so a test can tell them apart.
pub fn wav(seconds: u32) -> Vec<u8> {
    let spec = hound::WavSpec { channels: 1, sample_rate: 16_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut wav = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut wav, spec).unwrap();
    for _ in 0..seconds * 16_000 {
        writer.write_sample(0i16).unwrap();
    }
    writer.finalize().unwrap();
    wav.into_inner()
}
