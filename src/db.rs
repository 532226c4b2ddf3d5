//! The PostgreSQL pool and migrations.

use crate::config::DatabaseSettings;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub async fn connect(settings: &DatabaseSettings) -> Result<PgPool, sqlx::Error> {
    // JIT compiles for queries the planner thinks are big: hundreds of milliseconds spent on
    // reports that then run in ten. Every query here is short.
    let options = PgConnectOptions::from_str(&settings.url)?.application_name("outdial").options([("jit", "off")]);
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        .connect_with(options)
        .await
}

/// A separate pool to the same database, for a task that must not wait behind the main pool.
/// `durable_commits: false` lets its commits return before their WAL is flushed: only for writes
/// whose loss in a database crash is harmless (redone or repeated), never for accepted work.
pub fn pool_like(pool: &PgPool, application_name: &str, max_connections: u32, durable_commits: bool) -> PgPool {
    let mut options = (*pool.connect_options()).clone().application_name(application_name);
    if !durable_commits {
        options = options.options([("synchronous_commit", "off")]);
    }
    lazy_pool(pool, options, max_connections)
}

/// Up to `max_connections`, opened when first needed, with the main pool's acquire timeout.
fn lazy_pool(pool: &PgPool, options: PgConnectOptions, max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(pool.options().get_acquire_timeout())
        .connect_lazy_with(options)
}

/// Connections for one task each (writers): opened at once and kept, so the first writes do not
/// wait for a connection to be set up.
pub fn dedicated_pool(pool: &PgPool, application_name: &str, connections: u32) -> PgPool {
    let options = (*pool.connect_options()).clone().application_name(application_name);
    kept_connections(pool, options, connections)
}

fn kept_connections(pool: &PgPool, options: PgConnectOptions, connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(connections.max(1))
        .min_connections(connections.max(1))
        .acquire_timeout(pool.options().get_acquire_timeout())
        .connect_lazy_with(options)
}

/// `dedicated_pool` for statements that must only ever probe indexes (a leg's write, a group of
/// credit holds). Each plan is made once per connection and kept (`force_generic_plan`): the
/// planner would otherwise re-plan these many-CTE statements at every execution, because their
/// arrays make a custom plan look cheaper, and planning cost 1.4 ms where running took 0.3.
/// Sequential scans are off, so a plan made while a table was small cannot join it by a full
/// scan for as long as the connection lives (that once took a third of the leg writers' CPU).
/// Every table they touch has the index each join needs.
pub fn probing_pool(pool: &PgPool, application_name: &str, connections: u32) -> PgPool {
    kept_connections(pool, probing_options(pool, application_name), connections)
}

/// The webhook dispatcher's connections: they probe `events` by its indexes only (see
/// `probing_pool`), and their commits need not wait for WAL flushes (an outcome lost in a
/// database crash means an event delivered again, which at-least-once delivery allows).
pub fn dispatcher_pool(pool: &PgPool, max_connections: u32) -> PgPool {
    lazy_pool(pool, probing_options(pool, "outdial-webhooks").options([("synchronous_commit", "off")]), max_connections)
}

fn probing_options(pool: &PgPool, application_name: &str) -> PgConnectOptions {
    (*pool.connect_options())
        .clone()
        .application_name(application_name)
        .options([("enable_seqscan", "off"), ("plan_cache_mode", "force_generic_plan")])
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
