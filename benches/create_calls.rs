//! POST /v1/calls throughput against the physical limit of the database.
//!
//!   . scripts/db-env.sh outdial_bench && cargo bench --bench create_calls -- [--concurrency 32] [--seconds 10]
//!
//! One run, in order:
//!  1. resets the bench database (DATABASE_URL; its name must contain "bench"): drop schema public cascade;
//!  2. runs `pg-insert-baseline` (durable single-row INSERTs with pgbench) on that database, before
//!     the server exists so nothing competes with it;
//!  3. migrates, creates an account (1,000,000 calls/s) and an application with a fresh key pair,
//!     and starts the real server in this process on port 0;
//!  4. pre-mints a pool of application JWTs (one per request the run is expected to make, each with
//!     its own jti, exp 15 min) so RSA signing on the client does not compete with the server for
//!     this machine's cores during the timed phase;
//!  5. N clients POST /v1/calls for D seconds, one token per request; every non-201 is an error;
//!  6. prints creates/s, latency, errors, the baseline, the ratio, database writes per call, a CPU
//!     breakdown of both phases (this process by thread, PostgreSQL, pgbench, the rest of the
//!     machine, hypervisor steal) and what the server's database backends waited on (sampled).
//!
//! The client and the server share this machine's cores with PostgreSQL, as pgbench does in the
//! baseline; the CPU lines say how much each took per operation. A warning is printed when other
//! programs used the machine during a phase: such figures are not comparable.
//!
//! The last line is machine-readable: `create_calls_per_s=… baseline_insert_tps=… ratio=… …`.

mod common;

use hdrhistogram::Histogram;
use outdial::applications::{self, keys, ApplicationSpec};
use outdial::auth::mint_application_jwt;
use outdial::config::Settings;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// POST /v1/calls throughput against the physical limit of the database.
#[derive(clap::Parser, Debug)]
#[command(
    name = "create_calls",
    after_help = "Environment: DATABASE_URL (required), OUTDIAL_BASELINE_TOOL (default ../shared/tools/pg-insert-baseline), \
                  OUTDIAL__SECTION__KEY overrides as for the server."
)]
struct Options {
    /// Concurrent HTTP clients
    #[arg(long, short = 'c', value_name = "N", default_value_t = 32, value_parser = common::positive::<usize>)]
    concurrency: usize,
    /// Length of the timed phase, seconds
    #[arg(long, short = 'd', value_name = "D", default_value_t = 10.0, value_parser = common::positive::<f64>)]
    seconds: f64,
    /// Length of the pg-insert-baseline run, seconds [default: --seconds]
    #[arg(long, value_name = "S", value_parser = common::positive::<u64>)]
    baseline_seconds: Option<u64>,
    /// pgbench clients for the baseline [default: --concurrency]
    #[arg(long, value_name = "C", value_parser = common::positive::<usize>)]
    baseline_clients: Option<usize>,
    /// JWTs to pre-mint [default: enough for the run, estimated from a probe]
    #[arg(long, value_name = "T", value_parser = common::positive::<usize>)]
    tokens: Option<usize>,
    /// HTTP worker threads [default: http.workers from config; 0 = one per core]
    #[arg(long, value_name = "W")]
    workers: Option<usize>,
    /// Server pool size [default: database.max_connections from config]
    #[arg(long, value_name = "M", value_parser = common::positive::<u32>)]
    max_connections: Option<u32>,
    /// Do not run the baseline (the ratio is then not computed)
    #[arg(long)]
    skip_baseline: bool,
    /// Run S on the bench database after migrating (what-if experiments, e.g.
    /// 'ALTER TABLE calls DROP CONSTRAINT calls_account_id_fkey')
    #[arg(long, value_name = "S")]
    after_migrate_sql: Option<String>,
    #[command(flatten)]
    cargo: common::CargoBench,
}

fn main() -> ExitCode {
    common::main::<Options, _, _>("create_calls", run)
}

const BODY: &str = r#"{"to":[{"type":"phone","number":"447700900000"}],"from":{"type":"phone","number":"447700900001"},"ncco":[{"action":"talk","text":"hello"}]}"#;
const TOKEN_TTL_S: i64 = 900;

async fn run(o: Options) -> anyhow::Result<ExitCode> {
    // 1. Reset the bench database.
    let (url, admin, db_name) = common::reset_bench_database("create-calls-bench", "outdial_bench").await?;
    print_pg_settings(&admin).await;

    // 2. The baseline, alone on the machine, from a fresh checkpoint (as the timed phase).
    checkpoint(&admin).await;
    let baseline_seconds = o.baseline_seconds.unwrap_or(o.seconds.ceil() as u64).max(1);
    let baseline_clients = o.baseline_clients.unwrap_or(o.concurrency);
    let baseline = if o.skip_baseline {
        None
    } else {
        let (tps, cpu) = run_baseline(&url, baseline_seconds, baseline_clients)?;
        println!("baseline: pg-insert-baseline {baseline_seconds} s, {baseline_clients} clients: {tps} single-row insert tx/s");
        cpu.report("during the baseline", tps * baseline_seconds, false);
        Some(tps)
    };

    // 3. The server, in process.
    let mut settings = Settings::load(None)?;
    settings.database.url = url.clone();
    settings.http.host = "127.0.0.1".into();
    settings.http.port = 0;
    settings.limits.other_requests_per_second = 1_000_000;
    if let Some(w) = o.workers {
        settings.http.workers = w;
    }
    if let Some(m) = o.max_connections {
        settings.database.max_connections = m;
    }
    let pool = outdial::db::connect(&settings.database).await?;
    outdial::db::migrate(&pool).await?;
    if let Some(sql) = &o.after_migrate_sql {
        sqlx::raw_sql(sql).execute(&pool).await?;
        println!("after migrate: ran {sql:?} (what-if; not the shipped schema)");
    }
    let account = outdial::accounts::repo::create(&pool, "bench", 1_000_000).await?;
    // Credit enough for every call the benchmark places: measure calls, not 402s.
    outdial::billing::ledger::set_credit_limit(&pool, account.account_id, rust_decimal::Decimal::from(1_000_000_000)).await?;
    let pair = keys::generate();
    let spec = ApplicationSpec {
        name: "bench".into(),
        public_key_pem: Some(pair.public_pem.clone()),
        event: Some(("http://127.0.0.1:9/bench/events".into(), "POST".into())),
        ..Default::default()
    };
    let app = applications::repo::insert(&pool, account.account_id, &spec, &pair.public_pem).await?;
    let workers = if settings.http.workers > 0 {
        settings.http.workers
    } else {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    };
    let max_connections = settings.database.max_connections;
    let keep_alive_s = settings.http.keep_alive_s;
    let server = outdial::startup::Application::build(settings, pool.clone())?;
    let base = format!("http://127.0.0.1:{}", server.port);
    let handle = server.server.handle();
    tokio::spawn(server.server);
    println!(
        "server: in process at {base}, {workers} HTTP workers, database pool max {max_connections} connections; \
         machine has {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );

    let client = common::http_client(keep_alive_s, o.concurrency * 2)?;

    // Warm up (JWT key cache, connections) and probe the rate to size the token pool.
    let minter = Minter { app_id: app.id, pem: Arc::new(pair.private_pem) };
    let probe_tokens = minter.mint_parallel(o.concurrency * 8).await?;
    let probe = load(&client, &base, probe_tokens, o.concurrency, Duration::from_secs(2)).await;
    if probe.ok == 0 {
        anyhow::bail!("warm-up: no call was created; first errors:\n{}", probe.error_report());
    }
    let probe_rate = probe.ok as f64 / probe.elapsed.as_secs_f64();

    // 4. Pre-mint the tokens for the timed phase.
    let wanted = o.tokens.unwrap_or_else(|| ((probe_rate * o.seconds * 2.0) as usize).max(o.concurrency * 8) + o.concurrency);
    let t = Instant::now();
    let tokens = minter.mint_parallel(wanted).await?;
    println!(
        "tokens: {} JWTs pre-minted in {:.1} s before the timed phase (RS256, one per request, own jti, exp {} min); \
         the measurement is of the server, not of client-side signing",
        tokens.len(),
        t.elapsed().as_secs_f64(),
        TOKEN_TTL_S / 60
    );

    // 5. The timed phase.
    checkpoint(&admin).await;
    let counts_before = row_counts(&admin).await?;
    let wal_before = wal_lsn(&admin).await?;
    let stats_before = db_stats(&admin, &db_name).await?;
    let cpu_before = CpuSnapshot::take();
    let sampler = tokio::spawn(sample_waits(admin.clone(), Duration::from_secs_f64(o.seconds)));
    let result = load(&client, &base, tokens, o.concurrency, Duration::from_secs_f64(o.seconds)).await;
    let cpu_after = CpuSnapshot::take();
    let waits = sampler.await?;
    let wal_after = wal_lsn(&admin).await?;

    // Stop the server and close its pool so every backend flushes its statistics.
    handle.stop(true).await;
    pool.close().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let counts_after = row_counts(&admin).await?;
    let stats_after = db_stats(&admin, &db_name).await?;

    // 6. Figures.
    let h = &result.hist;
    let rate = result.ok as f64 / result.elapsed.as_secs_f64();
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "load: {} clients, {:.1} s: {} created (201), {} errors, {} tokens reused",
        o.concurrency,
        result.elapsed.as_secs_f64(),
        result.ok,
        result.errors,
        result.reused
    );
    if result.reused > 0 {
        println!(
            "note: the token pool ran out and {} tokens were used twice (raise --tokens); \
             the server does not track jti, so its work per request is the same",
            result.reused
        );
    }
    println!("creates/s: {rate:.0}");
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (mean {:.2})",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.mean() / 1000.0
    );
    if result.errors > 0 {
        println!("errors:\n{}", result.error_report());
    }

    let calls = counts_after.calls - counts_before.calls;
    let (rows_per_call, wal_per_call, commits_per_call, tuples_per_call) = if calls > 0 {
        let rows = (counts_after.total() - counts_before.total()) as f64;
        (
            rows / calls as f64,
            (wal_after - wal_before) as f64 / calls as f64,
            (stats_after.commits - stats_before.commits) as f64 / calls as f64,
            (stats_after.inserted + stats_after.updated + stats_after.deleted
                - stats_before.inserted
                - stats_before.updated
                - stats_before.deleted) as f64
                / calls as f64,
        )
    } else {
        (0.0, 0.0, 0.0, 0.0)
    };
    println!(
        "database writes per call: {rows_per_call:.2} rows ({} calls, {} call_jobs, {} events for {calls} calls); \
         {tuples_per_call:.2} tuples written, {commits_per_call:.2} commits, {wal_per_call:.0} WAL bytes per call \
         (WAL is cluster-wide: other databases' writes count too)",
        counts_after.calls - counts_before.calls,
        counts_after.call_jobs - counts_before.call_jobs,
        counts_after.events - counts_before.events,
    );
    if calls as u64 != result.ok {
        println!("note: {calls} calls rows vs {} 201 responses", result.ok);
    }
    cpu_after.since(&cpu_before).report("during the timed phase", result.ok, true);

    waits.report();

    let ratio = baseline.map(|b| rate / b as f64);
    // A run with errors meets nothing: its rate counts only the requests that succeeded.
    let verdict = |r: f64| match (result.errors, r >= 0.5) {
        (0, true) => "met".to_string(),
        (0, false) => "NOT met".to_string(),
        (n, _) => format!("not judged, {n} requests failed"),
    };
    match (baseline, ratio) {
        (Some(b), Some(r)) => println!("ratio: {rate:.0} creates/s / {b} baseline insert tx/s = {r:.3} (target >= 0.5: {})", verdict(r)),
        _ => println!("ratio: not computed (--skip-baseline)"),
    }
    println!(
        "create_calls_per_s={rate:.0} baseline_insert_tps={} ratio={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} errors={} \
         rows_per_call={rows_per_call:.2} wal_bytes_per_call={wal_per_call:.0} concurrency={} seconds={}",
        baseline.map_or("NA".to_string(), |b| b.to_string()),
        ratio.map_or("NA".to_string(), |r| format!("{r:.3}")),
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
        result.errors,
        o.concurrency,
        o.seconds
    );
    Ok(if result.errors > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Runs the baseline tool; returns its insert tx/s and the CPU it took. Processes that exit
/// during the run (pgbench and its backends) are sampled every 100 ms so their CPU is counted.
fn run_baseline(url: &str, seconds: u64, clients: usize) -> anyhow::Result<(u64, CpuDelta)> {
    use std::io::Read;
    let tool = std::env::var("OUTDIAL_BASELINE_TOOL").unwrap_or_else(|_| {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        repo.join("../shared/tools/pg-insert-baseline").to_string_lossy().into_owned()
    });
    let before = CpuSnapshot::take();
    let mut child = Command::new(&tool)
        .arg(url)
        .arg(seconds.to_string())
        .arg(clients.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {tool}: {e} (set OUTDIAL_BASELINE_TOOL)"))?;
    let mut stdout_pipe = child.stdout.take().expect("piped");
    let mut stderr_pipe = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout_pipe.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    let mut latest = CpuSnapshot::take();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(100));
        let now = CpuSnapshot::take();
        let mut procs = std::mem::take(&mut latest.procs);
        procs.extend(now.procs);
        latest = CpuSnapshot { procs, ..now };
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let tps = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("baseline_insert_tps="))
        .next_back()
        .and_then(|v| v.trim().parse::<u64>().ok());
    match tps {
        Some(tps) if status.success() && tps > 0 => Ok((tps, latest.since(&before))),
        _ => anyhow::bail!("{tool} failed ({status}):\n{stdout}{stderr}"),
    }
}

#[derive(Clone)]
struct Minter {
    app_id: Uuid,
    pem: Arc<String>,
}

impl Minter {
    /// Mints `n` tokens on the blocking pool, one thread per core.
    async fn mint_parallel(&self, n: usize) -> anyhow::Result<Vec<String>> {
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

struct LoadResult {
    ok: u64,
    errors: u64,
    reused: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
    /// (status, body) -> count
    error_kinds: BTreeMap<(String, String), u64>,
}

impl LoadResult {
    fn error_report(&self) -> String {
        self.error_kinds
            .iter()
            .map(|((status, body), n)| format!("  {n} x {status}: {body}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `concurrency` clients POST /v1/calls until `duration` has passed; each request takes the next
/// token (tokens are reused round-robin only if the pool runs out, and counted).
async fn load(client: &reqwest::Client, base: &str, tokens: Vec<String>, concurrency: usize, duration: Duration) -> LoadResult {
    let tokens = Arc::new(tokens);
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(BTreeMap::<(String, String), u64>::new()));
    let url = format!("{base}/v1/calls");
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, tokens, next, errors, url) = (client.clone(), tokens.clone(), next.clone(), errors.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let (mut ok, mut failed) = (0u64, 0u64);
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let token = &tokens[i % tokens.len()];
                let t = Instant::now();
                let sent = client
                    .post(&url)
                    .bearer_auth(token)
                    .header("Content-Type", "application/json")
                    .body(BODY)
                    .send()
                    .await;
                let outcome = match sent {
                    Ok(resp) if resp.status().as_u16() == 201 => match resp.bytes().await {
                        Ok(_) => Ok(()),
                        Err(e) => Err(("201, body unread".to_string(), e.to_string())),
                    },
                    Ok(resp) => {
                        let status = resp.status().to_string();
                        let body = resp.text().await.unwrap_or_default();
                        Err((status, body.chars().take(300).collect()))
                    }
                    Err(e) => Err(("transport error".to_string(), e.to_string())),
                };
                let us = t.elapsed().as_micros() as u64;
                match outcome {
                    Ok(()) => {
                        ok += 1;
                        hist.saturating_record(us.max(1));
                    }
                    Err(kind) => {
                        failed += 1;
                        *errors.lock().unwrap().entry(kind).or_default() += 1;
                    }
                }
            }
            (ok, failed, hist)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let (mut ok, mut failed) = (0, 0);
    for task in tasks {
        let (o, f, h) = task.await.expect("client task");
        ok += o;
        failed += f;
        hist.add(h).expect("histogram bounds");
    }
    let elapsed = start.elapsed();
    let used = next.load(Ordering::Relaxed);
    let error_kinds = std::mem::take(&mut *errors.lock().unwrap());
    LoadResult { ok, errors: failed, reused: used.saturating_sub(tokens.len()) as u64, elapsed, hist, error_kinds }
}

/// What the server's PostgreSQL backends were doing, sampled from pg_stat_activity.
struct WaitSamples {
    samples: u32,
    active: u64,
    idle: u64,
    /// "type:event" (or "running" when on CPU) -> number of active backends seen in it.
    events: BTreeMap<String, u64>,
}

impl WaitSamples {
    fn report(&self) {
        if self.samples == 0 || self.active == 0 {
            return;
        }
        let mut top: Vec<_> = self.events.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1));
        let shown = top
            .iter()
            .take(5)
            .map(|(e, n)| format!("{e} {:.0}%", **n as f64 * 100.0 / self.active as f64))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "database backends of the server pool (sampled {} times): {:.1} busy and {:.1} idle on average; busy ones: {shown}",
            self.samples,
            self.active as f64 / self.samples as f64,
            self.idle as f64 / self.samples as f64
        );
    }
}

/// Samples the server pool's backends (application_name 'outdial' on this database) every 100 ms.
async fn sample_waits(admin: PgPool, duration: Duration) -> WaitSamples {
    let mut w = WaitSamples { samples: 0, active: 0, idle: 0, events: BTreeMap::new() };
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let rows: Result<Vec<(String, String, i64)>, _> = sqlx::query_as(
            "SELECT coalesce(state, ''), coalesce(wait_event_type || ':' || wait_event, 'running'), count(*)
               FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'outdial' AND pid <> pg_backend_pid()
              GROUP BY 1, 2",
        )
        .fetch_all(&admin)
        .await;
        if let Ok(rows) = rows {
            w.samples += 1;
            for (state, event, n) in rows {
                if state == "active" {
                    w.active += n as u64;
                    *w.events.entry(event).or_default() += n as u64;
                } else {
                    w.idle += n as u64;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w
}

struct RowCounts {
    calls: i64,
    call_jobs: i64,
    events: i64,
}

impl RowCounts {
    fn total(&self) -> i64 {
        self.calls + self.call_jobs + self.events
    }
}

async fn row_counts(pool: &PgPool) -> anyhow::Result<RowCounts> {
    let (calls, call_jobs, events): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM calls), (SELECT count(*) FROM call_jobs), (SELECT count(*) FROM events)",
    )
    .fetch_one(pool)
    .await?;
    Ok(RowCounts { calls, call_jobs, events })
}

async fn wal_lsn(pool: &PgPool) -> anyhow::Result<i64> {
    let (lsn,): (i64,) =
        sqlx::query_as("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").fetch_one(pool).await?;
    Ok(lsn)
}

struct DbStats {
    commits: i64,
    inserted: i64,
    updated: i64,
    deleted: i64,
}

async fn db_stats(pool: &PgPool, db: &str) -> anyhow::Result<DbStats> {
    let (commits, inserted, updated, deleted): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = $1",
    )
    .bind(db)
    .fetch_one(pool)
    .await?;
    Ok(DbStats { commits, inserted, updated, deleted })
}

/// Starts the next phase from a fresh checkpoint, so that neither phase pays for a checkpoint
/// (and its full-page writes) that the other does not. Needs superuser or pg_checkpoint.
async fn checkpoint(pool: &PgPool) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if let Err(e) = sqlx::query("CHECKPOINT").execute(pool).await {
        WARNED.call_once(|| {
            println!(
                "note: CHECKPOINT refused ({e}); a checkpoint may fall inside a phase and add full-page writes \
                 (as superuser: GRANT pg_checkpoint TO <role>)"
            )
        });
    }
}

async fn print_pg_settings(pool: &PgPool) {
    let names = [
        "server_version",
        "max_connections",
        "shared_buffers",
        "synchronous_commit",
        "fsync",
        "wal_sync_method",
        "commit_delay",
        "full_page_writes",
        "max_wal_size",
        "checkpoint_timeout",
    ];
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT name, setting FROM pg_settings WHERE name = ANY($1) ORDER BY name")
        .bind(&names[..])
        .fetch_all(pool)
        .await
        .unwrap_or_default();
    let line = rows.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(" ");
    println!("postgres: {line}");
}

/// CPU time (clock ticks) of this process's threads, of every `postgres` and `pgbench` process,
/// and of the whole machine.
struct CpuSnapshot {
    threads: HashMap<u64, (String, u64)>,
    /// pid -> (comm, ticks) for postgres and pgbench processes.
    procs: HashMap<u64, (String, u64)>,
    /// (busy, total, steal) jiffies from /proc/stat.
    machine: (u64, u64, u64),
    at: Instant,
}

fn read_stat(path: &str) -> Option<(String, u64)> {
    let s = std::fs::read_to_string(path).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let fields: Vec<&str> = s[close + 2..].split_whitespace().collect();
    // After the comm: state(0) ... utime(11) stime(12).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

const HZ: f64 = 100.0; // USER_HZ, 100 on Linux

/// CPU used between two snapshots, in seconds of one core.
struct CpuDelta {
    /// This process's threads, grouped by role.
    groups: BTreeMap<String, f64>,
    postgres: f64,
    pgbench: f64,
    machine_busy_frac: f64,
    /// Time the hypervisor gave to other guests.
    steal_frac: f64,
    wall: f64,
}

impl CpuSnapshot {
    fn take() -> CpuSnapshot {
        let mut threads = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let (Ok(tid), Some(stat)) = (name.parse::<u64>(), read_stat(&format!("/proc/self/task/{name}/stat"))) {
                    threads.insert(tid, stat);
                }
            }
        }
        let mut procs = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Ok(pid) = name.parse::<u64>() {
                    if let Some((comm, ticks)) = read_stat(&format!("/proc/{pid}/stat")) {
                        if comm == "postgres" || comm == "pgbench" {
                            procs.insert(pid, (comm, ticks));
                        }
                    }
                }
            }
        }
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let line = s.lines().next()?.to_string();
                let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal (guest is inside user)
                let total: u64 = v.iter().take(8).sum();
                let steal = v.get(7).copied().unwrap_or(0);
                let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
                Some((total - idle - steal, total, steal))
            })
            .unwrap_or((0, 0, 0));
        CpuSnapshot { threads, procs, machine, at: Instant::now() }
    }

    /// CPU since `before`. A process that exited in between is missed unless an intermediate
    /// snapshot saw it (see `run_baseline`).
    fn since(&self, before: &CpuSnapshot) -> CpuDelta {
        let mut groups: BTreeMap<String, f64> = BTreeMap::new();
        for (tid, (comm, ticks)) in &self.threads {
            let prev = before.threads.get(tid).map_or(0, |(_, t)| *t);
            // Thread names are cut to 15 characters: "actix-server worker N" -> "actix-server wo".
            let group = if comm.starts_with("actix-server wo") || comm.starts_with("actix-rt") {
                "server HTTP workers".to_string()
            } else if comm.starts_with("actix-server ac") {
                "server acceptor".to_string()
            } else if comm.starts_with("tokio-r") {
                "client (tokio runtime)".to_string()
            } else {
                format!("other: {comm}")
            };
            *groups.entry(group).or_default() += ticks.saturating_sub(prev) as f64 / HZ;
        }
        let (mut postgres, mut pgbench) = (0.0, 0.0);
        for (pid, (comm, ticks)) in &self.procs {
            let used = ticks.saturating_sub(before.procs.get(pid).map_or(0, |(_, t)| *t)) as f64 / HZ;
            if comm == "postgres" {
                postgres += used;
            } else {
                pgbench += used;
            }
        }
        let (busy, total, steal) =
            (self.machine.0 - before.machine.0, self.machine.1 - before.machine.1, self.machine.2 - before.machine.2);
        CpuDelta {
            groups,
            postgres,
            pgbench,
            machine_busy_frac: if total > 0 { busy as f64 / total as f64 } else { 0.0 },
            steal_frac: if total > 0 { steal as f64 / total as f64 } else { 0.0 },
            wall: self.at.duration_since(before.at).as_secs_f64(),
        }
    }
}

impl CpuDelta {
    /// "cores used on average" figures, and CPU microseconds per operation.
    fn report(&self, label: &str, ops: u64, include_process: bool) {
        let cores = |s: f64| s / self.wall;
        let per_op = |s: f64| if ops > 0 { s * 1e6 / ops as f64 } else { 0.0 };
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let mut parts = Vec::new();
        if include_process {
            for (g, s) in self.groups.iter().filter(|(_, s)| **s > 0.0) {
                parts.push(format!("{g} {:.2} cores = {:.0} us/op", cores(*s), per_op(*s)));
            }
        }
        parts.push(format!("postgres {:.2} cores = {:.0} us/op", cores(self.postgres), per_op(self.postgres)));
        if self.pgbench > 0.0 {
            parts.push(format!("pgbench {:.2} cores", cores(self.pgbench)));
        }
        // Busy time not seen in the processes above: other programs, and kernel work (e.g. loopback softirqs) charged to no one.
        let seen = self.groups.values().sum::<f64>() + self.postgres + self.pgbench;
        let unaccounted = (self.machine_busy_frac * cpus as f64 * self.wall - seen).max(0.0);
        parts.push(format!("rest of machine {:.2} cores", cores(unaccounted)));
        println!(
            "cpu {label}: {}; machine busy {:.0}% of {cpus} cores, stolen by the hypervisor {:.0}%",
            parts.join(", "),
            self.machine_busy_frac * 100.0,
            self.steal_frac * 100.0
        );
        if cores(unaccounted) > 0.25 {
            println!(
                "warning: {:.2} cores were busy outside this benchmark and PostgreSQL {label}; \
                 figures from a shared machine are not comparable",
                cores(unaccounted)
            );
        }
    }
}
