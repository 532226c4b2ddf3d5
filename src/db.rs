//! The PostgreSQL pool and migrations.

use crate::config::DatabaseSettings;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub async fn connect(settings: &DatabaseSettings) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(&settings.url)?.application_name("outdial");
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        .connect_with(options)
        .await
}

/// A separate pool to the same database, for a task that must not wait behind the main pool.
pub fn pool_like(pool: &PgPool, application_name: &str, max_connections: u32) -> PgPool {
    let options = (*pool.connect_options()).clone().application_name(application_name);
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(pool.options().get_acquire_timeout())
        .connect_lazy_with(options)
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
