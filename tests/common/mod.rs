//! spawn_app: the real server on port 0 over the test's own database, plus a ready account and
//! application, and helpers to call it as a Vonage SDK would.
#![allow(dead_code)]

use outdial::accounts::{self, NewAccountCredentials};
use outdial::applications::{self, ApplicationSpec};
use outdial::auth::mint_application_jwt;
use outdial::config::Settings;
use outdial::startup::Application;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

pub const PRIVATE_KEY: &str = include_str!("../fixtures/app_private.key");
pub const PUBLIC_KEY: &str = include_str!("../fixtures/app_public.key");
/// A key that belongs to no application.
pub const OTHER_PRIVATE_KEY: &str = include_str!("../fixtures/other_private.key");

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub client: reqwest::Client,
    pub account: NewAccountCredentials,
    pub app_id: Uuid,
}

pub struct Options {
    pub calls_per_second: i32,
    pub other_requests_per_second: u32,
    pub max_body_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { calls_per_second: 1000, other_requests_per_second: 1000, max_body_bytes: 262_144 }
    }
}

pub async fn spawn_app(pool: PgPool) -> TestApp {
    spawn_app_with(pool, Options::default()).await
}

pub async fn spawn_app_with(pool: PgPool, options: Options) -> TestApp {
    let mut settings = Settings::load(None).expect("default settings");
    settings.http.port = 0;
    settings.http.workers = 1;
    settings.http.max_body_bytes = options.max_body_bytes;
    settings.limits.other_requests_per_second = options.other_requests_per_second;
    let app = Application::build(settings, pool.clone()).expect("server binds");
    let address = format!("http://127.0.0.1:{}", app.port);
    tokio::spawn(app.server);
    let account = accounts::repo::create(&pool, "test", options.calls_per_second).await.unwrap();
    let app_id = create_application(&pool, account.account_id, Some("http://127.0.0.1:9/events")).await;
    TestApp { address, pool, client: reqwest::Client::new(), account, app_id }
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

    /// Creates a call and returns its uuid.
    pub async fn create_call(&self) -> String {
        let response = self.post_call(&minimal_call()).await;
        assert_eq!(response.status(), 201);
        response.json::<Value>().await.unwrap()["uuid"].as_str().unwrap().to_string()
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
