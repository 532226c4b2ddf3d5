//! Placing calls through `POST /v1/calls`: pre-minted application JWTs and paced HTTP clients.

use hdrhistogram::Histogram;
use outdial::auth::mint_application_jwt;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub const TOKEN_TTL_S: i64 = 1800;

pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

pub fn hist() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram")
}

#[derive(Clone)]
pub struct Minter {
    pub app_id: Uuid,
    pub pem: Arc<String>,
}

impl Minter {
    pub async fn mint_parallel(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let threads = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1).max(1);
        let mut jobs = Vec::new();
        for i in 0..threads {
            let share = n / threads + usize::from(i < n % threads);
            let m = self.clone();
            jobs.push(tokio::task::spawn_blocking(move || {
                (0..share).map(|_| mint_application_jwt(m.app_id, &m.pem, TOKEN_TTL_S)).collect::<Result<Vec<_>, _>>()
            }));
        }
        let mut tokens = Vec::with_capacity(n);
        for job in jobs {
            tokens.extend(job.await??);
        }
        Ok(tokens)
    }
}

pub struct Load {
    /// (call uuid, when its POST was sent)
    pub created: Vec<(Uuid, Instant)>,
    pub errors: u64,
    pub error_kinds: BTreeMap<(String, String), u64>,
    pub hist: Histogram<u64>,
    pub start: Instant,
    pub end: Instant,
}

impl Load {
    pub fn error_report(&self) -> String {
        self.error_kinds.iter().map(|((status, body), n)| format!("  {n} x {status}: {body}")).collect::<Vec<_>>().join("\n")
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn place_calls(
    client: &reqwest::Client,
    base: &str,
    tokens: Arc<Vec<String>>,
    body: &str,
    calls: usize,
    concurrency: usize,
    rate: Option<f64>,
    posted_ok: Arc<AtomicUsize>,
) -> Load {
    #[derive(serde::Deserialize)]
    struct Created {
        uuid: Uuid,
    }
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(BTreeMap::<(String, String), u64>::new()));
    let url = format!("{base}/v1/calls");
    let body = bytes_of(body);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.min(calls) {
        let (client, tokens, next, errors, url, body, posted_ok) =
            (client.clone(), tokens.clone(), next.clone(), errors.clone(), url.clone(), body, posted_ok.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = hist();
            let mut created = Vec::new();
            let mut failed = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls {
                    break;
                }
                if let Some(rate) = rate {
                    // Call i is due i/rate seconds after the start.
                    tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into()).await;
                }
                let t = Instant::now();
                let sent = client
                    .post(&url)
                    .bearer_auth(&tokens[i])
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let outcome = match sent {
                    Ok(resp) if resp.status().as_u16() == 201 => match resp.json::<Created>().await {
                        Ok(c) => Ok(c.uuid),
                        Err(e) => Err(("201, body unreadable".to_string(), e.to_string())),
                    },
                    Ok(resp) => {
                        let status = resp.status().to_string();
                        let text = resp.text().await.unwrap_or_default();
                        Err((status, text.chars().take(300).collect()))
                    }
                    Err(e) => Err(("transport error".to_string(), e.to_string())),
                };
                match outcome {
                    Ok(uuid) => {
                        hist.saturating_record((t.elapsed().as_micros() as u64).max(1));
                        created.push((uuid, t));
                        posted_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(kind) => {
                        failed += 1;
                        *errors.lock().unwrap().entry(kind).or_default() += 1;
                    }
                }
            }
            (created, failed, hist)
        }));
    }
    let mut load = Load { created: Vec::with_capacity(calls), errors: 0, error_kinds: BTreeMap::new(), hist: hist(), start, end: start };
    for task in tasks {
        let (created, failed, h) = task.await.expect("client task");
        load.created.extend(created);
        load.errors += failed;
        load.hist.add(h).expect("histogram bounds");
    }
    load.end = Instant::now();
    load.error_kinds = std::mem::take(&mut *errors.lock().unwrap());
    load
}

/// The request body, leaked once: a `&'static str` body is sent without copying.
pub fn bytes_of(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}
