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
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(pool.options().get_acquire_timeout())
        .connect_lazy_with(options)
}

/// The webhook dispatcher's connections: commits that need not wait for WAL flushes (an
/// outcome lost in a database crash means an event delivered again, which at-least-once
/// delivery allows), and no sequential scans. Every dispatcher statement reaches `events` by an
/// index, but a plan cached while the table was small joins it by a sequential scan, which then
/// reads the whole growing table for every batch until autovacuum's first ANALYZE (on a fresh
/// database the delivery writes took 8 ms each instead of 0.3).
pub fn dispatcher_pool(pool: &PgPool, max_connections: u32) -> PgPool {
    let options = (*pool.connect_options())
        .clone()
        .application_name("outdial-webhooks")
        .options([("synchronous_commit", "off"), ("enable_seqscan", "off")]);
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
/// credit holds): sequential scans are off on these connections. Their plans are cached per
/// connection, and one made while a table was small joined it by a full scan for as long as
/// the connection lived (a third of the leg writers' CPU under load). Every table they touch
/// has the index each join needs.
pub fn probing_pool(pool: &PgPool, application_name: &str, connections: u32) -> PgPool {
    let options = (*pool.connect_options()).clone().application_name(application_name).options([("enable_seqscan", "off")]);
    kept_connections(pool, options, connections)
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
