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
