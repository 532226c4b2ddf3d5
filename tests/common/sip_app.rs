//! An Outdial on the SIP carrier for tests with real SIP peers (SIPp, baresip): loopback SIP
//! on a free port, private SIP URIs allowed, events to a test receiver.
//!
//! ```ignore
//! let (app, events) = common::sip_app::start(pool).await;
//! let uuid = app.place(&common::sip_app::call_to(&callee.uri(), json!([{"action": "talk", "text": "hi"}]))).await;
//! events.wait_status("/events", &uuid, "completed").await;
//! ```
#![allow(dead_code)]

use super::receiver::Receiver;
use super::{Options, TestApp};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::path::{Path, PathBuf};

pub fn sip_settings(settings: &mut outdial::config::Settings) {
    settings.carrier.kind = "sip".into();
    settings.sip.listen = "127.0.0.1:0".into();
    settings.sip.tcp = false;
    settings.sip.allow_private_uris = true;
}

/// The app (roles api, workers, webhooks; real time) and the receiver its event_url points at.
pub async fn start(pool: PgPool) -> (TestApp, Receiver) {
    start_with(pool, |_| {}).await
}

/// As `start`, with more settings adjusted (e.g. a speech server's URL).
pub async fn start_with(pool: PgPool, adjust: impl FnOnce(&mut outdial::config::Settings)) -> (TestApp, Receiver) {
    let events = Receiver::start().await;
    let options = Options { roles: vec!["api", "workers", "webhooks"], time_scale: 1.0, settings: sip_settings, ..Options::default() };
    let mut settings = super::test_settings(&options);
    adjust(&mut settings);
    let app = super::spawn_app_with_settings(pool, settings, options.calls_per_second).await;
    sqlx::query("UPDATE applications SET event_url = $1").bind(events.url("/events")).execute(&app.pool).await.unwrap();
    (app, events)
}

/// A call to a SIP URI running `ncco`.
pub fn call_to(uri: &str, ncco: Value) -> Value {
    json!({"to": [{"type": "sip", "uri": uri}], "from": {"type": "phone", "number": "447700900001"}, "ncco": ncco})
}

/// A temporary directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!("outdial-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// An 8 kHz WAV of `seconds` of `freq` Hz in it, for baresip to play.
    pub fn tone_wav(&self, name: &str, freq: f64, seconds: f64) -> PathBuf {
        let path = self.0.join(name);
        super::audio::write_tone_wav(&path, freq, seconds, 8000);
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `outdial serve` as a separate process running only the call workers on the SIP carrier at
/// 127.0.0.1:`sip_port`, over the test's database, with `extra` settings (env): an instance a
/// test can kill -9 mid-call.
pub fn spawn_sip_worker(pool: &PgPool, sip_port: u16, extra: &[(&str, &str)]) -> std::process::Child {
    let mut url = url::Url::parse(&std::env::var("DATABASE_URL").unwrap()).unwrap();
    url.set_path(pool.connect_options().get_database().unwrap());
    std::process::Command::new(env!("CARGO_BIN_EXE_outdial"))
        .arg("serve")
        .env("DATABASE_URL", url.to_string())
        .env("OUTDIAL__ENGINE__ROLES", "workers")
        .env("OUTDIAL__ENGINE__HEARTBEAT_MS", "200")
        .env("OUTDIAL__CARRIER__KIND", "sip")
        .env("OUTDIAL__SIP__LISTEN", format!("127.0.0.1:{sip_port}"))
        .env("OUTDIAL__SIP__TCP", "false")
        .env("OUTDIAL__WEBHOOKS__ALLOW_PRIVATE_ADDRESSES", "true")
        .env("OUTDIAL__HISTORY__SEAL_INTERVAL_S", "3600")
        .env("RUST_LOG", "warn")
        .envs(extra.iter().copied())
        .spawn()
        .unwrap()
}

/// `number` on a trunk of the app's account at `trunk_host` (serving `prefixes`; every number
/// when empty), linked to the app's application, whose answer_url becomes `answer_url` (GET).
pub async fn hold_number(app: &TestApp, number: &str, trunk_host: &str, prefixes: &[&str], answer_url: &str) {
    let trunk: (uuid::Uuid,) = sqlx::query_as("INSERT INTO trunks (id, account_id, name, host, port, prefixes) VALUES ($1, $2, 'carrier-in', $3, 5060, $4) RETURNING id")
        .bind(uuid::Uuid::new_v4())
        .bind(app.account.account_id)
        .bind(trunk_host)
        .bind(prefixes)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO numbers (msisdn, country, trunk_id, account_id, application_id) VALUES ($1, 'GB', $2, $3, $4)")
        .bind(number)
        .bind(trunk.0)
        .bind(app.account.account_id)
        .bind(app.app_id)
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE applications SET answer_url = $1, answer_method = 'GET', fallback_answer_url = NULL")
        .bind(answer_url)
        .execute(&app.pool)
        .await
        .unwrap();
}
