//! A real HTTP server that records every request it gets and answers as a test tells it:
//! the customer's webhook endpoints (answer_url, event_url, …).
#![allow(dead_code)]

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HashMap<String, String>,
    pub raw: Vec<u8>,
    pub body: Value,
    /// When it arrived.
    pub at: std::time::Instant,
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Received>>,
    once: Mutex<HashMap<String, VecDeque<(u16, Vec<u8>)>>>,
    always: Mutex<HashMap<String, (u16, Vec<u8>)>>,
    delays: Mutex<HashMap<String, Duration>>,
    redirects: Mutex<HashMap<String, String>>,
}

pub struct Receiver {
    pub base: String,
    state: Arc<State>,
}

async fn handle(req: HttpRequest, body: web::Bytes, state: web::Data<Arc<State>>) -> HttpResponse {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let headers = req.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let path = req.path().to_string();
    state.requests.lock().unwrap().push(Received {
        method: req.method().to_string(),
        path: path.clone(),
        query,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: body.to_vec(),
        at: std::time::Instant::now(),
    });
    if let Some(location) = state.redirects.lock().unwrap().get(&path).cloned() {
        return HttpResponse::Found().insert_header(("location", location)).finish();
    }
    let answer = state.once.lock().unwrap().get_mut(&path).and_then(VecDeque::pop_front).or_else(|| state.always.lock().unwrap().get(&path).cloned());
    let (status, body) = answer.unwrap_or((200, Vec::new()));
    let delay = state.delays.lock().unwrap().get(&path).copied();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).content_type("application/json").body(body)
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::start_on("127.0.0.1").await
    }

    /// A receiver on another loopback address (e.g. 127.0.0.2), or `[::1]`.
    pub async fn start_on(ip: &str) -> Receiver {
        let state = Arc::new(State::default());
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(handle)))
            .workers(1)
            .disable_signals()
            .bind((ip.trim_matches(|c| c == '[' || c == ']'), 0))
            .unwrap();
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        Receiver { base: format!("http://{ip}:{port}"), state }
    }

    /// The same receiver, reached at `base` (e.g. through a TLS front: `tls::TestCa::receiver`).
    pub fn with_base(self, base: String) -> Receiver {
        Receiver { base, ..self }
    }

    /// The port of `base`.
    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Every request to `path` gets this answer.
    pub fn respond(&self, path: &str, status: u16, body: &str) {
        self.respond_bytes(path, status, body.as_bytes());
    }

    /// Every request to `path` gets these bytes (audio files).
    pub fn respond_bytes(&self, path: &str, status: u16, body: &[u8]) {
        self.state.always.lock().unwrap().insert(path.to_string(), (status, body.to_vec()));
    }

    /// The next request to `path` gets this answer (queued before `respond`'s).
    pub fn respond_once(&self, path: &str, status: u16, body: &str) {
        self.state.once.lock().unwrap().entry(path.to_string()).or_default().push_back((status, body.as_bytes().to_vec()));
    }

    /// Requests to `path` are answered 302 to `location`.
    pub fn redirect(&self, path: &str, location: &str) {
        self.state.redirects.lock().unwrap().insert(path.to_string(), location.to_string());
    }

    /// Requests to `path` are recorded on arrival and answered only after `delay`.
    pub fn delay(&self, path: &str, delay: Duration) {
        self.state.delays.lock().unwrap().insert(path.to_string(), delay);
    }

    pub fn requests(&self, path: &str) -> Vec<Received> {
        self.state.requests.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }

    /// The `status` of every JSON body posted to `path` for call `uuid`, in arrival order.
    pub fn statuses(&self, path: &str, uuid: &str) -> Vec<String> {
        self.requests(path)
            .iter()
            .filter(|r| r.body["uuid"] == uuid || r.body["call_uuid"] == uuid)
            .filter_map(|r| r.body["status"].as_str().map(str::to_string))
            .collect()
    }

    /// Waits (up to 20 s) until `done` holds for the requests to `path`, then returns them.
    pub async fn wait_for(&self, path: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let requests = self.requests(path);
            if done(&requests) {
                return requests;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting on {path}; got {:#?}", requests.iter().map(|r| &r.body).collect::<Vec<_>>());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until call `uuid` sent `status` to `path`; returns its statuses so far.
    pub async fn wait_status(&self, path: &str, uuid: &str, status: &str) -> Vec<String> {
        self.wait_for(path, |_| self.statuses(path, uuid).iter().any(|s| s == status)).await;
        self.statuses(path, uuid)
    }
}
