//! The webhook receiver every call benchmark shares: an HTTP/1.1 server on its own thread that
//! records when each event arrives (and its payload's uuid, status and timestamp), and serves
//! the files a bench's calls fetch (a `streamUrl`).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;
/// Statuses the receiver tells apart; anything else counts as "other".
pub const STATUSES: [&str; 5] = ["started", "ringing", "answered", "completed", "other"];

pub fn status_index(s: &str) -> usize {
    STATUSES.iter().position(|x| *x == s).unwrap_or(4)
}

#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// Receiver wall clock at arrival, microseconds since the epoch.
    pub wall_us: i64,
    pub at: Instant,
    pub uuid: Uuid,
    pub status: u8,
    /// The payload's `timestamp`, microseconds since the epoch (i64::MIN when absent).
    pub stamp_us: i64,
    /// A `record` event (it has a `recording_url`).
    pub recording: bool,
}

#[derive(Default)]
pub struct RecvState {
    pub arrivals: Mutex<Vec<Arrival>>,
    pub events: AtomicUsize,
    pub completed: AtomicUsize,
    pub connections: AtomicUsize,
    pub unparsed: AtomicUsize,
    pub recordings: AtomicUsize,
    /// GETs answered with a served file.
    pub files_served: AtomicUsize,
    /// GETs carrying a call's `uuid` (an answer_url's query) and when they arrived (wall, us).
    pub fetches: Mutex<Vec<(Uuid, i64)>>,
}

#[derive(serde::Deserialize)]
pub struct EventBody {
    pub uuid: Option<Uuid>,
    pub status: Option<String>,
    pub timestamp: Option<String>,
    pub recording_url: Option<String>,
}

impl RecvState {
    pub fn record(&self, body: &[u8], wall: DateTime<Utc>, at: Instant) {
        let Ok(event) = serde_json::from_slice::<EventBody>(body) else {
            self.unparsed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(uuid) = event.uuid else {
            self.unparsed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let status = status_index(event.status.as_deref().unwrap_or("other"));
        let stamp_us = event
            .timestamp
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or(i64::MIN, |t| t.timestamp_micros());
        let recording = event.recording_url.is_some();
        self.arrivals.lock().unwrap().push(Arrival { wall_us: wall.timestamp_micros(), at, uuid, status: status as u8, stamp_us, recording });
        self.events.fetch_add(1, Ordering::Relaxed);
        if status == 3 {
            self.completed.fetch_add(1, Ordering::Relaxed);
        }
        if recording {
            self.recordings.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct Receiver {
    pub port: u16,
    pub state: Arc<RecvState>,
}

impl Receiver {
    /// Listens on 127.0.0.1:0 on a thread of its own (a current-thread runtime), so its CPU shows
    /// apart and it never waits behind the instance's tasks. HTTP/1.1 with keep-alive (hyper);
    /// each event is recorded when its whole body has arrived, and answered 200 at once.
    pub fn start(calls: usize) -> anyhow::Result<Receiver> {
        Receiver::serving(calls, Vec::new())
    }

    /// As `start`, and a GET of one of `files` (path, content type, body) is answered with it.
    pub fn serving(calls: usize, files: Vec<(String, &'static str, bytes::Bytes)>) -> anyhow::Result<Receiver> {
        let files = Arc::new(files);
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(RecvState { arrivals: Mutex::new(Vec::with_capacity(calls * 4 + 1024)), ..Default::default() });
        let shared = state.clone();
        std::thread::Builder::new().name("receiver".into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("receiver runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("receiver listener");
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    let _ = socket.set_nodelay(true);
                    let state = shared.clone();
                    let files = files.clone();
                    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let (state, files) = (state.clone(), files.clone());
                        async move {
                            if request.method() == hyper::Method::GET {
                                let uuid = request.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("uuid=")));
                                if let Some(uuid) = uuid.and_then(|u| Uuid::parse_str(u).ok()) {
                                    state.fetches.lock().unwrap().push((uuid, Utc::now().timestamp_micros()));
                                }
                                let Some((_, content_type, file)) = files.iter().find(|(path, _, _)| path == request.uri().path()) else {
                                    let mut missing = hyper::Response::new(Full::new(Bytes::new()));
                                    *missing.status_mut() = hyper::StatusCode::NOT_FOUND;
                                    return Ok(missing);
                                };
                                state.files_served.fetch_add(1, Ordering::Relaxed);
                                let mut found = hyper::Response::new(Full::new(file.clone()));
                                found.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
                                return Ok(found);
                            }
                            let body = request.into_body().collect().await?.to_bytes();
                            state.record(&body, Utc::now(), Instant::now());
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::new())))
                        }
                    });
                    tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(socket), service));
                }
            });
        })?;
        Ok(Receiver { port, state })
    }
}
