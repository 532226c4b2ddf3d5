//! Building and running the server.

use crate::accounts::{Bucket, RateLimiter};
use crate::auth::{AppJwtVerifier, BasicAuthenticator, LoginThrottle};
use crate::cache::Invalidations;
use crate::config::Settings;
use crate::http::{self, error::ApiError};
use crate::webhooks::dispatcher::HandOffs;
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use sqlx::PgPool;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything a request handler may need, shared by all workers of one instance.
pub struct AppState {
    pub pool: PgPool,
    pub settings: Settings,
    pub jwt: AppJwtVerifier,
    pub basic: BasicAuthenticator,
    pub limiter: RateLimiter,
    /// Each account's call-creation rate, across every instance.
    pub call_rate: crate::accounts::CallRateLimiter,
    pub started_at: Instant,
    pub notifier: std::sync::Arc<crate::notify::Notifier>,
    /// This instance's caches of applications and accounts (see `cache`).
    pub invalidations: Arc<Invalidations>,
    /// The 402 check on creates, mostly from memory.
    pub credit: crate::billing::gate::CreditGate,
    /// Stores new calls, committing concurrent creates together.
    pub call_writer: crate::calls::writer::CallWriter,
    /// Live legs for the consoles connected to this instance (polls only while one is).
    pub console_feed: Arc<crate::console::live::LiveFeed>,
}

impl AppState {
    /// `hand_offs`: this instance's dispatcher, which then sends new calls' `started` events
    /// from memory (empty when it runs none: they go out by the claim path).
    /// Its caches are registered with `invalidations`.
    pub fn new(pool: PgPool, settings: Settings, hand_offs: HandOffs, invalidations: Arc<Invalidations>) -> AppState {
        let auth = &settings.auth;
        // One budget per client for both schemes: alternating them buys no more tries.
        let throttle = Arc::new(LoginThrottle::new(auth.failed_logins_burst, Duration::from_millis(auth.failed_login_interval_ms)));
        AppState {
            jwt: AppJwtVerifier::new(pool.clone(), auth.jwt_leeway_s, auth.jwt_max_ttl_s, &invalidations, throttle.clone()),
            basic: BasicAuthenticator::new(pool.clone(), Duration::from_secs(auth.basic_auth_cache_s), &invalidations, throttle),
            invalidations,
            limiter: RateLimiter::default(),
            call_rate: crate::accounts::CallRateLimiter::new(crate::db::pool_like(&pool, "outdial-rates", 2, false)),
            started_at: Instant::now(),
            notifier: crate::notify::Notifier::spawn(pool.clone()),
            credit: Default::default(),
            // Its own connections, one per writer task: a create never waits behind legs' reads.
            call_writer: crate::calls::writer::CallWriter::spawn(
                crate::db::dedicated_pool(&pool, "outdial", settings.calls.insert_writers as u32),
                &settings,
                hand_offs,
            ),
            console_feed: crate::console::live::LiveFeed::new(pool.clone(), Duration::from_millis(settings.console.poll_ms.max(100))),
            pool,
            settings,
        }
    }

    pub fn rate_limit(&self, account_id: i64, bucket: Bucket, per_second: u32) -> Result<(), ApiError> {
        let what = match bucket {
            Bucket::OtherRequests => "requests",
        };
        self.limiter
            .take(account_id, bucket, per_second)
            .map_err(|limited| ApiError::RateLimited { retry_after: limited.retry_after, what })
    }

    /// A caller id for `random_from_number`, as Vonage picks it: one of the account's numbers
    /// linked to the application, else one from the configured pool.
    pub async fn random_from_number(&self, application_id: uuid::Uuid) -> Result<String, sqlx::Error> {
        let picked = crate::numbers::repo::random_caller_id(&self.pool, application_id, &self.settings.calls.random_from_numbers).await?;
        Ok(picked.unwrap_or_else(|| "447700900001".into()))
    }
}

/// A bound, not yet awaited server, and the port it listens on (port 0 picks one).
pub struct Application {
    pub port: u16,
    pub server: Server,
    /// Closed before the server stops, so open console event streams end (see `Instance::stop`).
    pub console_feed: Arc<crate::console::live::LiveFeed>,
}

impl Application {
    /// The API alone: its caches hear of no other instance's changes (run an `Instance` for that).
    pub fn build(settings: Settings, pool: PgPool) -> std::io::Result<Application> {
        Application::build_with(settings, pool, HandOffs::default(), Arc::default())
    }

    /// As `build`, with new calls' `started` events handed to this instance's dispatcher, and its
    /// caches registered with `invalidations`.
    pub fn build_with(settings: Settings, pool: PgPool, hand_offs: HandOffs, invalidations: Arc<Invalidations>) -> std::io::Result<Application> {
        let listener = TcpListener::bind((settings.http.host.as_str(), settings.http.port))?;
        let port = listener.local_addr()?.port();
        let workers = settings.http.workers;
        let keep_alive = std::time::Duration::from_secs(settings.http.keep_alive_s);
        let max_body = settings.http.max_body_bytes;
        let console = settings.console.enabled;
        let state = web::Data::new(AppState::new(pool, settings, hand_offs, invalidations));
        let console_feed = state.console_feed.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .wrap(http::problem_json_guard())
                .wrap(actix_web::middleware::NormalizePath::new(actix_web::middleware::TrailingSlash::Trim))
                .wrap_fn(|req, srv| {
                    use actix_web::dev::Service;
                    // A query string holding U+0000 is refused before any handler reads it.
                    type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = Result<actix_web::dev::ServiceResponse, actix_web::Error>>>>;
                    let answer: Answer = if http::query_holds_nul(req.query_string()) {
                        let response = req.into_response(http::nul_refused());
                        Box::pin(async move { Ok(response.map_into_boxed_body()) })
                    } else {
                        let call = srv.call(req);
                        Box::pin(async move { call.await.map(|r| r.map_into_boxed_body()) })
                    };
                    answer
                })
                .configure(http::routes)
                .configure(|cfg| if console { http::console::routes(cfg) })
                .default_service(web::to(http::unknown_route))
        })
        .keep_alive(keep_alive)
        .listen(listener)?;
        if workers > 0 {
            server = server.workers(workers);
        }
        Ok(Application { port, server: server.disable_signals().run(), console_feed })
    }
}

/// The base URL this instance is reached at, for links in webhooks (recording_url, region_url).
pub fn public_base_url(settings: &Settings, port: u16) -> String {
    let configured = settings.http.public_base_url.trim_end_matches('/');
    if configured.is_empty() {
        format!("http://{}:{}", settings.http.host, port)
    } else {
        configured.to_string()
    }
}

/// A whole instance: the API and the engine, each present when its role is configured.
pub struct Instance {
    pub port: Option<u16>,
    pub server: Option<actix_web::dev::ServerHandle>,
    console_feed: Option<Arc<crate::console::live::LiveFeed>>,
    pub engine: Option<crate::engine::Engine>,
    /// Produces asynchronous reports; runs with the api role.
    pub reports: Option<crate::reports::jobs::ReportWorker>,
    server_task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Housekeeping that holds no state of its own (aborted at stop).
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Instance {
    pub async fn start(settings: Settings, pool: PgPool) -> anyhow::Result<Instance> {
        let roles = &settings.engine;
        let (mut port, mut server, mut server_task, mut console_feed) = (None, None, None, None);
        let hand_offs = HandOffs::default();
        let invalidations = Arc::new(Invalidations::default());
        let cache_listener = crate::cache::start_listener(&pool, invalidations.clone()).await?;
        if roles.has_role("api") {
            let app = Application::build_with(settings.clone(), pool.clone(), hand_offs.clone(), invalidations.clone())?;
            port = Some(app.port);
            server = Some(app.server.handle());
            console_feed = Some(app.console_feed.clone());
            server_task = Some(tokio::spawn(app.server));
        }
        let history = &settings.history;
        let mut background = vec![cache_listener];
        background.push(crate::history::rollup::spawn_sealer(
            pool.clone(),
            std::time::Duration::from_secs(history.seal_interval_s.max(1)),
            std::time::Duration::from_secs(history.seal_grace_s),
        ));
        // Finished calls' debits reach their account rows within this long (balances read
        // exact before that: see billing::ledger::funds).
        background.push(crate::billing::ledger::spawn_settler(pool.clone(), std::time::Duration::from_millis(200)));
        let reports = port.map(|port| {
            crate::reports::jobs::ReportWorker::spawn(pool.clone(), settings.clone(), public_base_url(&settings, port))
        });
        let engine = if roles.has_role("workers") || roles.has_role("webhooks") {
            let base = public_base_url(&settings, port.unwrap_or(settings.http.port));
            // Only call workers place calls: a webhooks-only instance opens no SIP port.
            let carrier = match roles.has_role("workers") {
                true => crate::carrier::from_settings(&settings).await.map_err(anyhow::Error::msg)?,
                false => None,
            };
            let ctx = crate::engine::EngineCtx::new(pool, settings, base, hand_offs, carrier, &invalidations);
            Some(crate::engine::Engine::start(ctx, &invalidations).await?)
        } else {
            None
        };
        Ok(Instance { port, server, console_feed, engine, reports, server_task, background })
    }

    /// The SIP carrier's address, when this instance runs one.
    pub fn sip_address(&self) -> Option<std::net::SocketAddr> {
        self.engine.as_ref().and_then(|e| e.ctx.carrier.signalling_address())
    }

    /// SIP dialogs this instance holds (None without the SIP carrier).
    pub fn sip_dialogs(&self) -> Option<usize> {
        self.engine.as_ref().and_then(|e| e.ctx.carrier.live_dialogs())
    }

    /// Graceful stop: the engine drains and releases its legs (see Engine::stop), then the API
    /// stops. In that order because pooled connections opened on the API's worker threads die
    /// with them, and the release must not pick up a dead one.
    pub async fn stop(self) {
        for task in &self.background {
            task.abort();
        }
        if let Some(reports) = self.reports {
            reports.stop().await;
        }
        if let Some(engine) = self.engine {
            engine.stop().await;
        }
        // Console event streams never finish by themselves: a graceful stop would wait for them.
        if let Some(feed) = &self.console_feed {
            feed.close();
        }
        if let Some(server) = &self.server {
            server.stop(true).await;
        }
        if let Some(task) = self.server_task {
            let _ = task.await;
        }
    }
}
