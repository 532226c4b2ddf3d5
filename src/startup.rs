//! Building and running the server.

use crate::accounts::{Bucket, RateLimiter};
use crate::auth::{AppJwtVerifier, BasicAuthenticator};
use crate::config::Settings;
use crate::http::{self, error::ApiError};
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use rand::seq::SliceRandom;
use sqlx::PgPool;
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// Everything a request handler may need, shared by all workers of one instance.
pub struct AppState {
    pub pool: PgPool,
    pub settings: Settings,
    pub jwt: AppJwtVerifier,
    pub basic: BasicAuthenticator,
    pub limiter: RateLimiter,
    pub started_at: Instant,
}

impl AppState {
    pub fn new(pool: PgPool, settings: Settings) -> AppState {
        AppState {
            jwt: AppJwtVerifier::new(pool.clone(), settings.auth.jwt_leeway_s, settings.auth.jwt_max_ttl_s),
            basic: BasicAuthenticator::new(pool.clone(), Duration::from_secs(settings.auth.basic_auth_cache_s)),
            limiter: RateLimiter::default(),
            started_at: Instant::now(),
            pool,
            settings,
        }
    }

    pub fn rate_limit(&self, account_id: i64, bucket: Bucket, per_second: u32) -> Result<(), ApiError> {
        let what = match bucket {
            Bucket::CallCreation => "call creations",
            Bucket::OtherRequests => "requests",
        };
        self.limiter
            .take(account_id, bucket, per_second)
            .map_err(|limited| ApiError::RateLimited { retry_after: limited.retry_after, what })
    }

    /// A caller id for `random_from_number`, from the configured pool.
    pub fn random_from_number(&self) -> String {
        self.settings.calls.random_from_numbers.choose(&mut rand::thread_rng()).cloned().unwrap_or_else(|| "447700900001".into())
    }
}

/// A bound, not yet awaited server, and the port it listens on (port 0 picks one).
pub struct Application {
    pub port: u16,
    pub server: Server,
}

impl Application {
    pub fn build(settings: Settings, pool: PgPool) -> std::io::Result<Application> {
        let listener = TcpListener::bind((settings.http.host.as_str(), settings.http.port))?;
        let port = listener.local_addr()?.port();
        let workers = settings.http.workers;
        let max_body = settings.http.max_body_bytes;
        let state = web::Data::new(AppState::new(pool, settings));
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .wrap(http::problem_json_guard())
                .wrap(actix_web::middleware::NormalizePath::new(actix_web::middleware::TrailingSlash::Trim))
                .configure(http::routes)
                .default_service(web::to(http::unknown_route))
        })
        .listen(listener)?;
        if workers > 0 {
            server = server.workers(workers);
        }
        Ok(Application { port, server: server.run() })
    }
}
