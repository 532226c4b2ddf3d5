//! What every benchmark program shares: its entry point and the reset of its bench database.
#![allow(dead_code)]

pub mod cpu;
pub mod load;
pub mod pg;
pub mod procs;
pub mod receiver;
pub mod sipp;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::future::Future;
use std::process::ExitCode;
use std::str::FromStr;

/// What `cargo bench` passes to every `harness = false` target: accepted and ignored.
#[derive(clap::Args, Debug, Clone)]
pub struct CargoBench {
    #[arg(long, hide = true)]
    bench: bool,
}

/// A value parser for options that must be above zero.
pub fn positive<T: FromStr + PartialOrd + Default>(s: &str) -> Result<T, String> {
    match s.parse::<T>() {
        Ok(v) if v > T::default() => Ok(v),
        Ok(_) => Err("must be above zero".into()),
        Err(_) => Err(format!("'{s}' is not a valid number")),
    }
}

/// Parses the options (clap: usage and exit 2 on a bad one), then runs the benchmark on a
/// multi-threaded runtime; an error is printed with its causes and exits 1.
pub fn main<O, F, Fut>(name: &str, run: F) -> ExitCode
where
    O: clap::Parser,
    F: FnOnce(O) -> Fut,
    Fut: Future<Output = anyhow::Result<ExitCode>>,
{
    let options = O::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(options)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The benchmark's HTTP client to the server: it drops a connection idle for half the server's
/// keep-alive (`http.keep_alive_s`), so it never sends on one the server is closing. (With the
/// server closing first, a client busy enough to read the server's FIN late sent the next
/// request on the closed connection: 3 of 20,000 POSTs failed in an engine run at 500 calls/s.)
pub fn http_client(server_keep_alive_s: u64, max_idle: usize) -> reqwest::Result<reqwest::Client> {
    // reqwest builds its TLS configuration from the process's default rustls provider.
    outdial::webhooks::tls::install_default_provider();
    reqwest::Client::builder()
        .pool_max_idle_per_host(max_idle)
        .pool_idle_timeout(std::time::Duration::from_secs(server_keep_alive_s) / 2)
        .build()
}

/// DATABASE_URL, a small admin pool on it, and that database's schema dropped and recreated.
/// Refuses a database whose name lacks "bench": a benchmark must never wipe real data.
pub async fn reset_bench_database(application_name: &str, db_env_hint: &str) -> anyhow::Result<(String, PgPool, String)> {
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| anyhow::anyhow!("DATABASE_URL is not set; run `. scripts/db-env.sh {db_env_hint}` first"))?;
    let options = PgConnectOptions::from_str(&url)?.application_name(application_name);
    let admin = PgPoolOptions::new().max_connections(4).connect_with(options).await?;
    let (db_name,): (String,) = sqlx::query_as("SELECT current_database()").fetch_one(&admin).await?;
    anyhow::ensure!(
        db_name.contains("bench"),
        "refusing to run: database '{db_name}' does not contain \"bench\" and this benchmark drops its schema"
    );
    sqlx::raw_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;").execute(&admin).await?;
    println!("database: {db_name} (schema public reset)");
    Ok((url, admin, db_name))
}

/// This process's resident memory now and at its peak (from /proc/self/status).
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_kb: u64,
    pub hwm_kb: u64,
}

pub fn memory() -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Memory { rss_kb: field("VmRSS:"), hwm_kb: field("VmHWM:") }
}
