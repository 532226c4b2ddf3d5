//! The call engine under load: N concurrent calls on one instance, every webhook received.
//!
//!   . scripts/db-env.sh outdial_engine_bench && cargo bench --bench engine -- [--calls 10000] [--rate 500 --hold-seconds 20]
//!
//! One run, in order:
//!  1. resets the bench database (DATABASE_URL; its name must contain "bench"): drop schema public cascade;
//!  2. migrates, creates an account (1,000,000 calls/s) and an application with a fresh key pair;
//!  3. starts a webhook receiver in this process (an HTTP/1.1 server, hyper, on its own thread named
//!     "receiver", that records when each event arrives and answers 200 at once) and one Instance
//!     (roles api,workers,webhooks; loopback webhooks allowed; simulated time `--time-scale` times
//!     faster; engine.max_live_legs >= N);
//!  4. pre-mints N application JWTs (RS256, one per call) so signing does not compete with the run;
//!  5. places N calls to 447700900000 (answers after 2 simulated seconds of ringing) with
//!     `--concurrency` HTTP clients; each call's NCCO is one `talk` long enough that the call stays
//!     up `--hold-seconds` of wall time, so every call is live at once;
//!  6. waits until every call's `completed` webhook has arrived, then prints: calls/s, events/s
//!     (whole run, busiest 1 s and 5 s, and sustained over the steady state: from the first
//!     `completed` to the last call placed, when calls start and end together; the target is
//!     judged on that one), POST -> `started` webhook latency, state change -> webhook latency
//!     (payload `timestamp`: when the carrier reported the change, e.g. the answer, before the
//!     leg's credit hold; against the receiver's wall clock at arrival),
//!     peak live legs, peak RSS per 1,000 live calls, database rows/commits/WAL per call, a timeline,
//!     where PostgreSQL spent its time (pg_stat_activity sampled every 100 ms), the dispatcher's
//!     batches, and CPU by thread group.
//!
//! Targets are judged on a clean run only (every call placed and completed with its four statuses
//! in order, once; no timeout): otherwise the run prints "not judged" and exits 1.
//!
//! The last line is machine-readable: `engine_calls=… peak_live=… calls_per_s=… …`.

mod common;

use common::cpu::CpuSnapshot;
use common::load::{hist, mb, ms, place_calls, Load, Minter, TOKEN_TTL_S};
use common::pg::pg_sampler;
use common::receiver::{status_index, Arrival, RecvState, Receiver, STATUSES};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use outdial::applications::{self, keys, ApplicationSpec};
use outdial::config::Settings;
use outdial::startup::Instance;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The call engine under load: N calls on one instance, every webhook received.
#[derive(clap::Parser, Debug)]
#[command(name = "engine", after_help = "Environment: DATABASE_URL (required), OUTDIAL__SECTION__KEY overrides as for the server.")]
struct Options {
    /// Calls placed
    #[arg(long, short = 'n', value_name = "N", default_value_t = 10_000, value_parser = common::positive::<usize>)]
    calls: usize,
    /// Simulated time runs S times faster than real time
    #[arg(long, value_name = "S", default_value_t = 10.0, value_parser = common::positive::<f64>)]
    time_scale: f64,
    /// Wall seconds each answered call talks [default: 30 + calls/100, so that every call is still
    /// up when the last is placed]; the talk text (and, past 1,500 characters, its loop count) is
    /// sized from it and the time scale
    #[arg(long, value_name = "H", value_parser = common::positive::<f64>)]
    hold_seconds: Option<f64>,
    /// Concurrent HTTP clients placing calls
    #[arg(long, short = 'c', value_name = "C", default_value_t = 32, value_parser = common::positive::<usize>)]
    concurrency: usize,
    /// Place at most R calls a second [default: as fast as the clients go]
    #[arg(long, value_name = "R", value_parser = common::positive::<f64>)]
    rate: Option<f64>,
    /// Server database pool size
    #[arg(long, value_name = "M", default_value_t = 32, value_parser = common::positive::<u32>)]
    max_connections: u32,
    /// API HTTP worker threads [default: http.workers from config; 0 = one per core]
    #[arg(long, value_name = "W")]
    workers: Option<usize>,
    /// webhooks.batch: events the dispatcher claims per query [default: config]
    #[arg(long, value_name = "B")]
    webhook_batch: Option<i64>,
    /// engine.claim_batch: legs claimed per query [default: config]
    #[arg(long, value_name = "B")]
    claim_batch: Option<i64>,
    /// engine.poll_ms [default: config]
    #[arg(long, value_name = "P")]
    poll_ms: Option<u64>,
    /// Give up waiting for `completed` webhooks after T s [default: hold + 120 + calls/100]
    #[arg(long, value_name = "T", value_parser = common::positive::<f64>)]
    timeout_seconds: Option<f64>,
    /// Do not sample pg_stat_activity
    #[arg(long)]
    no_pg_sample: bool,
    /// Run S on the bench database after migrating (what-if experiments)
    #[arg(long, value_name = "S")]
    after_migrate_sql: Option<String>,
    /// What-if, not the shipped behaviour: the server's connections resolve pg_notify to a no-op
    /// (public.pg_notify, search_path public,pg_catalog), so no commit takes PostgreSQL's NOTIFY
    /// lock; workers and dispatcher then wake only by polling (poll_ms 20 unless --poll-ms is given)
    #[arg(long = "what-if-no-notify")]
    no_notify: bool,
    #[command(flatten)]
    cargo: common::CargoBench,
}

impl Options {
    fn hold_seconds(&self) -> f64 {
        self.hold_seconds.unwrap_or(30.0 + self.calls as f64 / 100.0)
    }
}

fn main() -> ExitCode {
    common::main::<Options, _, _>("engine", run)
}

const TARGET_LIVE: usize = 10_000;
const TARGET_EVENTS_PER_S: f64 = 2_000.0;
const TARGET_P99_MS: f64 = 100.0;
/// A steady state shorter than this is too short to judge the events/s target on.
const STEADY_MIN_S: f64 = 10.0;

/// The talk: `words` two-letter words (tts_duration: 0.4 simulated s each) played `loops` times.
/// A prompt of at most 40 words (~120 characters, a realistic size: the text is kept in every
/// leg's memory and in the calls row), repeated (loop <= 100) as often as the hold needs.
fn talk_for(hold_wall_s: f64, time_scale: f64) -> (usize, u32) {
    let simulated = hold_wall_s * time_scale;
    let words_total = (simulated / 0.4).ceil().max(1.0) as usize;
    let mut words = words_total.min(40);
    let mut loops = words_total.div_ceil(words);
    if loops > 100 {
        loops = 100;
        words = words_total.div_ceil(100);
    }
    (words, loops as u32)
}

async fn run(o: Options) -> anyhow::Result<ExitCode> {
    // 1. Reset the bench database.
    let (url, admin, db_name) = common::reset_bench_database("engine-bench", "outdial_engine_bench").await?;
    print_pg_settings(&admin).await;

    // 2. Settings, schema, account.
    let mut settings = Settings::load(None)?;
    settings.database.url = url.clone();
    if o.no_notify {
        let sep = if url.contains('?') { '&' } else { '?' };
        settings.database.url = format!("{url}{sep}options[search_path]=public,pg_catalog");
        settings.engine.poll_ms = 20;
    }
    settings.database.max_connections = o.max_connections;
    settings.http.host = "127.0.0.1".into();
    settings.http.port = 0;
    settings.limits.other_requests_per_second = 1_000_000;
    settings.carrier.time_scale = o.time_scale;
    settings.engine.roles = vec!["api".into(), "workers".into(), "webhooks".into()];
    settings.engine.max_live_legs = settings.engine.max_live_legs.max(o.calls);
    settings.webhooks.allow_private_addresses = true;
    if let Some(w) = o.workers {
        settings.http.workers = w;
    }
    if let Some(b) = o.webhook_batch {
        settings.webhooks.batch = b;
    }
    if let Some(b) = o.claim_batch {
        settings.engine.claim_batch = b;
    }
    if let Some(p) = o.poll_ms {
        settings.engine.poll_ms = p;
    }
    // Warnings from the engine (failed claims, failed legs) go to stderr; RUST_LOG overrides.
    settings.log.filter = "warn".into();
    outdial::telemetry::init(&settings.log);

    let pool = outdial::db::connect(&settings.database).await?;
    outdial::db::migrate(&pool).await?;
    if let Some(sql) = &o.after_migrate_sql {
        sqlx::raw_sql(sql).execute(&pool).await?;
        println!("after migrate: ran {sql:?} (what-if; not the shipped schema)");
    }
    if o.no_notify {
        sqlx::raw_sql("CREATE FUNCTION public.pg_notify(text, text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$")
            .execute(&pool)
            .await?;
        let (resolved,): (String,) = sqlx::query_as(
            "SELECT p.pronamespace::regnamespace::text || '.pg_notify' FROM pg_proc p WHERE p.oid = 'pg_notify(text,text)'::regprocedure",
        )
        .fetch_one(&pool)
        .await?;
        anyhow::ensure!(resolved.starts_with("public."), "what-if: pg_notify still resolves to {resolved}");
        println!(
            "WHAT-IF (not the shipped behaviour): pg_notify resolves to a no-op ({resolved}) on the server's connections, so no \
             commit takes the NOTIFY lock; workers and dispatcher wake by polling every {} ms",
            settings.engine.poll_ms
        );
    }
    let account = outdial::accounts::repo::create(&pool, "bench", 1_000_000).await?;
    // Credit enough for every call the benchmark places: measure calls, not 402s.
    outdial::billing::ledger::set_credit_limit(&pool, account.account_id, rust_decimal::Decimal::from(1_000_000_000)).await?;

    // 3. Receiver, application, instance.
    let receiver = Receiver::start(o.calls)?;
    let event_url = format!("http://127.0.0.1:{}/events", receiver.port);
    let pair = keys::generate();
    let spec = ApplicationSpec {
        name: "engine bench".into(),
        public_key_pem: Some(pair.public_pem.clone()),
        event: Some((event_url.clone(), "POST".into())),
        ..Default::default()
    };
    let app = applications::repo::insert(&pool, account.account_id, &spec, &pair.public_pem).await?;
    let instance = Instance::start(settings.clone(), pool.clone()).await?;
    let port = instance.port.ok_or_else(|| anyhow::anyhow!("the instance has no API"))?;
    let ctx = instance.engine.as_ref().ok_or_else(|| anyhow::anyhow!("the instance has no engine"))?.ctx.clone();
    let base = format!("http://127.0.0.1:{port}");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "instance: in process at {base}, roles api,workers,webhooks, {} API HTTP workers, database pool max {} connections, \
         time_scale {}, max_live_legs {}, claim_batch {}, webhooks.batch {}, poll_ms {}; receiver at {event_url}; machine has {cores} cores",
        if settings.http.workers > 0 { settings.http.workers } else { cores },
        settings.database.max_connections,
        settings.carrier.time_scale,
        settings.engine.max_live_legs,
        settings.engine.claim_batch,
        settings.webhooks.batch,
        settings.engine.poll_ms,
    );

    // 4. Tokens and the request body.
    let minter = Minter { app_id: app.id, pem: Arc::new(pair.private_pem) };
    let t = Instant::now();
    let tokens = Arc::new(minter.mint_parallel(o.calls).await?);
    println!(
        "tokens: {} JWTs pre-minted in {:.1} s (RS256, one per call, own jti, exp {} min)",
        tokens.len(),
        t.elapsed().as_secs_f64(),
        TOKEN_TTL_S / 60
    );
    let (words, loops) = talk_for(o.hold_seconds(), o.time_scale);
    let text = vec!["la"; words].join(" ");
    let mut talk = serde_json::json!({"action": "talk", "text": text});
    if loops > 1 {
        talk["loop"] = loops.into();
    }
    let body = serde_json::json!({
        "to": [{"type": "phone", "number": "447700900000"}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [talk],
        "event_url": [event_url],
    })
    .to_string();
    let talk_simulated = words as f64 * 0.4 * f64::from(loops);
    println!(
        "calls: {} to 447700900000 (rings 2 simulated s, answers), NCCO [talk: {words} words x {loops} loop(s) = {talk_simulated:.0} \
         simulated s = {:.1} s wall at time_scale {}]; {} clients POST /v1/calls{}; body {} bytes",
        o.calls,
        talk_simulated / o.time_scale,
        o.time_scale,
        o.concurrency,
        o.rate.map_or(" as fast as they can".to_string(), |r| format!(" at {r} calls/s")),
        body.len()
    );
    let client = common::http_client(settings.http.keep_alive_s, o.concurrency * 2)?;

    // 5. The run: samplers, then the calls.
    tokio::time::sleep(Duration::from_millis(300)).await;
    checkpoint(&admin).await;
    let counts_before = row_counts(&admin).await?;
    let wal_before = wal_lsn(&admin).await?;
    let fpi_before = wal_fpi(&admin).await;
    let stats_before = db_stats(&admin, &db_name).await?;
    // Reset VmHWM to the current RSS (Linux >= 4.0), so "before" is where the run starts from.
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let mem_before = common::memory();
    let cpu_before = CpuSnapshot::take();
    let stop = CancellationToken::new();
    let start = Instant::now();
    let posted_ok = Arc::new(AtomicUsize::new(0));

    let fast = Arc::new(Mutex::new(FastSamples::default()));
    let fast_task =
        tokio::spawn(fast_sampler(ctx.clone(), pool.clone(), o.max_connections, posted_ok.clone(), fast.clone(), start, stop.clone()));
    let timeline_task = tokio::spawn(timeline_sampler(
        ctx.clone(),
        admin.clone(),
        receiver.state.clone(),
        posted_ok.clone(),
        fast.clone(),
        start,
        stop.clone(),
    ));
    let placing = Arc::new(AtomicBool::new(true));
    let pg_task = (!o.no_pg_sample).then(|| tokio::spawn(pg_sampler(admin.clone(), pool.clone(), placing.clone(), stop.clone())));

    let load = place_calls(&client, &base, tokens, &body, o.calls, o.concurrency, o.rate, posted_ok.clone()).await;
    let posted_at = load.end;
    placing.store(false, Ordering::Relaxed);
    println!(
        "placed: {} created (201), {} errors in {:.2} s from the first POST = {:.0} creates/s; POST latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        load.created.len(),
        load.errors,
        (load.end - load.start).as_secs_f64(),
        load.created.len() as f64 / (load.end - load.start).as_secs_f64(),
        ms(load.hist.value_at_quantile(0.5)),
        ms(load.hist.value_at_quantile(0.99)),
        ms(load.hist.max())
    );
    if load.errors > 0 {
        println!("errors:\n{}", load.error_report());
    }

    // 6. Wait for every `completed`.
    let expected = load.created.len();
    let timeout = Duration::from_secs_f64(o.timeout_seconds.unwrap_or(o.hold_seconds() + 120.0 + o.calls as f64 / 100.0));
    let mut timed_out = false;
    while receiver.state.completed.load(Ordering::Relaxed) < expected {
        if posted_at.elapsed() > timeout {
            timed_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let finished_at = Instant::now();
    // Late duplicates, if any, still count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu_after = CpuSnapshot::take();
    let mem_after = common::memory();
    let wal_after = wal_lsn(&admin).await?;
    let fpi_after = wal_fpi(&admin).await;
    stop.cancel();
    let fast_result = fast_task.await?;
    let timeline = timeline_task.await?;
    let pg_profile = match pg_task {
        Some(t) => Some(t.await?),
        None => None,
    };
    if timed_out {
        println!(
            "TIMEOUT: {} of {expected} `completed` webhooks after {:.0} s; live legs now {}",
            receiver.state.completed.load(Ordering::Relaxed),
            timeout.as_secs_f64(),
            ctx.live_legs()
        );
    }

    // Stop the instance and close its pool so every backend flushes its statistics.
    let t = Instant::now();
    instance.stop().await;
    pool.close().await;
    let stop_s = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let counts_after = row_counts(&admin).await?;
    let stats_after = db_stats(&admin, &db_name).await?;
    let event_rows = event_rows(&admin).await?;

    // 7. Figures.
    let arrivals: Vec<Arrival> = receiver.state.arrivals.lock().unwrap().clone();
    let report = Report::build(&load, &arrivals, finished_at);
    println!(
        "--- timeline (t from the first POST; events = outbox rows written so far, backlog = pending at that moment; claim = how \
         the dispatcher's claim query is planned at that moment: probe = index lookup per candidate, SCAN = every pending event \
         per candidate; analyzed = times `events` was analyzed so far) ---"
    );
    print_timeline(&timeline);

    println!("--- results ---");
    println!(
        "completed: {} of {} calls ({} calls saw started,ringing,answered,completed in order; {} duplicate and {} unparsed webhooks; \
         {} webhooks for other statuses) in {:.2} s from the first POST to the last `completed`",
        report.completed_calls,
        expected,
        report.in_order,
        report.duplicates,
        receiver.state.unparsed.load(Ordering::Relaxed),
        report.by_status[4],
        report.window_s
    );
    println!(
        "calls/s: {:.0} (completed calls / wall time first POST -> last `completed` delivered; each call holds {:.1} s of wall time, so \
         this is bounded by N / (placing time + hold))",
        report.calls_per_s,
        talk_simulated / o.time_scale + 2.0 / o.time_scale
    );
    println!(
        "events/s delivered: {:.0} over the whole run ({} webhooks: started {}, ringing {}, answered {}, completed {}); \
         busiest 1 s: {:.0}/s, busiest 5 s: {:.0}/s; {}; {}",
        report.events_per_s,
        arrivals.len(),
        report.by_status[0],
        report.by_status[1],
        report.by_status[2],
        report.by_status[3],
        report.busiest_1s,
        report.busiest_5s,
        placing_rate_line(&timeline, o.calls),
        backlog_rate_line(&timeline)
    );
    match report.steady {
        Some(steady) => {
            let (from_s, to_s) = ((steady.from - start).as_secs_f64(), (steady.to - start).as_secs_f64());
            let live = timeline.iter().filter(|r| r.t >= from_s && r.t <= to_s).map(|r| r.live);
            println!(
                "events/s sustained over the steady state: {:.0}/s ({} webhooks in {:.1} s, t={from_s:.1}..{to_s:.1} s: from the first \
                 `completed` to the last call placed, while calls start and end together); live legs in it {}..{} (timeline samples)",
                steady.rate(),
                steady.events,
                steady.seconds(),
                live.clone().min().unwrap_or(0),
                live.max().unwrap_or(0)
            );
        }
        None => println!(
            "events/s sustained over the steady state: none (every call was placed before the first ended); for one, run with \
             --rate R and --hold-seconds H so that calls end while others are still being placed"
        ),
    }
    println!(
        "POST -> `started` webhook arrival: p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms ({} calls)",
        ms(report.started.value_at_quantile(0.5)),
        ms(report.started.value_at_quantile(0.9)),
        ms(report.started.value_at_quantile(0.99)),
        ms(report.started.max()),
        report.started.len()
    );
    println!(
        "state change -> webhook arrival (payload timestamp = when the carrier reported it, ms precision, vs arrival wall clock): p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  \
         max {:.1} ms ({} events)",
        ms(report.latency.value_at_quantile(0.5)),
        ms(report.latency.value_at_quantile(0.9)),
        ms(report.latency.value_at_quantile(0.99)),
        ms(report.latency.max()),
        report.latency.len()
    );
    for (i, h) in report.latency_by_status.iter().enumerate().take(4) {
        if !h.is_empty() {
            println!(
                "  {:<9} p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms",
                STATUSES[i],
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99)),
                ms(h.max())
            );
        }
    }
    println!(
        "receiver: {} webhook requests over {} TCP connections ({:.1} requests per connection: the webhook client keeps at most \
         webhooks' pool_max_idle_per_host idle connections, so a batch wider than that reconnects)",
        arrivals.len(),
        receiver.state.connections.load(Ordering::Relaxed),
        arrivals.len() as f64 / receiver.state.connections.load(Ordering::Relaxed).max(1) as f64
    );
    let peak_live = fast_result.peak_live;
    println!(
        "live legs: peak {} of {} at t={:.1} s (reached when {} calls were placed); the pool had all {} connections in use in {:.0}% of \
         20 ms samples, {:.1} on average",
        peak_live,
        o.calls,
        fast_result.peak_live_at,
        fast_result.posted_at_peak,
        o.max_connections,
        fast_result.pool_full_frac() * 100.0,
        fast_result.pool_avg()
    );
    let hwm_growth_kb = mem_after.hwm_kb.saturating_sub(mem_before.hwm_kb);
    let per_1000 = |kb: u64| if peak_live > 0 { kb as f64 / 1024.0 / (peak_live as f64 / 1000.0) } else { 0.0 };
    println!(
        "memory: VmHWM {:.1} MB before{} -> {:.1} MB after (+{:.1} MB); VmRSS {:.1} MB before, {:.1} MB at peak live; \
         = {:.2} MB per 1,000 live calls (VmHWM growth / peak live; includes the bench's own records, ~{:.1} MB); \
         whole process {:.2} MB per 1,000",
        mb(mem_before.hwm_kb),
        if hwm_reset { " (reset to RSS)" } else { " (could not reset)" },
        mb(mem_after.hwm_kb),
        mb(hwm_growth_kb),
        mb(mem_before.rss_kb),
        mb(fast_result.rss_at_peak_kb),
        per_1000(hwm_growth_kb),
        (arrivals.capacity() * std::mem::size_of::<Arrival>() + expected * 64) as f64 / 1_048_576.0,
        per_1000(mem_after.hwm_kb)
    );

    let n = expected.max(1) as f64;
    let d_calls = counts_after.calls - counts_before.calls;
    let d_jobs = counts_after.call_jobs - counts_before.call_jobs;
    let d_events = counts_after.events - counts_before.events;
    let d_attempts = counts_after.attempts - counts_before.attempts;
    let commits = (stats_after.commits - stats_before.commits) as f64;
    let tuples = (stats_after.inserted + stats_after.updated + stats_after.deleted
        - stats_before.inserted
        - stats_before.updated
        - stats_before.deleted) as f64;
    let wal = (wal_after - wal_before) as f64;
    let rows_per_call = (d_calls + d_events + d_attempts) as f64 / n;
    println!(
        "database writes per call: {:.2} rows in calls, events, webhook_attempts ({:.2} calls + {:.2} events + {:.2} webhook_attempts; \
         {:.2} call_jobs); {:.2} tuples written (inserts+updates+deletes), {:.2} commits (all sessions, incl. this bench's ~10/s samplers), \
         {:.0} WAL bytes per call",
        rows_per_call,
        d_calls as f64 / n,
        d_events as f64 / n,
        d_attempts as f64 / n,
        d_jobs as f64 / n,
        tuples / n,
        commits / n,
        wal / n
    );
    if let (Some((f0, r0)), Some((f1, r1))) = (fpi_before, fpi_after) {
        println!(
            "WAL (pg_stat_wal, whole cluster, from the run's start to the last `completed`): {:.1} records and {:.2} full-page images \
             per call; {:.0} WAL bytes per call in all",
            (r1 - r0) as f64 / n,
            (f1 - f0) as f64 / n,
            wal / n
        );
    }
    event_rows.report(&arrivals);
    if let Some(profile) = &pg_profile {
        profile.report();
    }
    cpu_after.since(&cpu_before).report("during the run", arrivals.len() as u64);
    println!("instance stop took {stop_s:.2} s");

    // 8. Targets, judged on a clean run only: a run with errors or a timeout meets nothing.
    let mut faults = Vec::new();
    if load.errors > 0 {
        faults.push(format!("{} POST errors", load.errors));
    }
    if timed_out {
        faults.push("timed out waiting for `completed` webhooks".to_string());
    }
    if report.in_order < o.calls {
        faults.push(format!("{} of {} calls lack started,ringing,answered,completed in order", o.calls - report.in_order, o.calls));
    }
    if report.duplicates > 0 {
        faults.push(format!("{} duplicate webhooks", report.duplicates));
    }
    let unparsed = receiver.state.unparsed.load(Ordering::Relaxed);
    if unparsed > 0 {
        faults.push(format!("{unparsed} unparsed webhooks"));
    }
    let clean = faults.is_empty();
    let steady = report.steady.filter(|s| s.seconds() >= STEADY_MIN_S);
    let live_ok = peak_live >= TARGET_LIVE;
    let events_ok = steady.is_some_and(|s| s.rate() >= TARGET_EVENTS_PER_S);
    let p99 = ms(report.latency.value_at_quantile(0.99));
    let p99_ok = !report.latency.is_empty() && p99 < TARGET_P99_MS;
    let verdict = |ok: bool| match (clean, ok) {
        (false, _) => "not judged",
        (true, true) => "met",
        (true, false) => "NOT met",
    };
    if !clean {
        println!("targets: NOT judged, the run was not clean: {}", faults.join("; "));
    }
    println!(
        "targets: {} live calls on one instance: {} (peak {}{}); >= {} events/s sustained over the steady state: {} ({}; busiest 5 s \
         {:.0}/s, whole run {:.0}/s); p99 event latency < {} ms: {} ({:.1} ms)",
        TARGET_LIVE,
        verdict(live_ok),
        peak_live,
        if o.calls < TARGET_LIVE { format!(", but only {} calls were placed: run with --calls 10000", o.calls) } else { String::new() },
        TARGET_EVENTS_PER_S,
        verdict(events_ok),
        match (report.steady, steady) {
            (_, Some(s)) => format!("{:.0}/s over {:.1} s", s.rate(), s.seconds()),
            (Some(s), None) => format!("{:.0}/s over {:.1} s, shorter than the {STEADY_MIN_S} s judged", s.rate(), s.seconds()),
            (None, None) => "no steady state in this run".to_string(),
        },
        report.busiest_5s,
        report.events_per_s,
        TARGET_P99_MS,
        verdict(p99_ok),
        p99
    );
    let all_ok = clean && live_ok && events_ok && p99_ok;
    println!(
        "engine_calls={} completed={} errors={} peak_live={} calls_per_s={:.0} events_per_s={:.0} events_per_s_sustained={} \
         steady_s={:.1} events_per_s_busiest_5s={:.0} started_p50_ms={:.1} started_p99_ms={:.1} event_p50_ms={:.1} event_p99_ms={:.1} \
         rss_mb_per_1000_live={:.2} rows_per_call={:.2} commits_per_call={:.2} wal_bytes_per_call={:.0} time_scale={} hold_s={} \
         rate={} max_connections={} what_if_no_notify={} clean={clean} targets_met={}",
        o.calls,
        report.completed_calls,
        load.errors,
        peak_live,
        report.calls_per_s,
        report.events_per_s,
        report.steady.map_or("NA".to_string(), |s| format!("{:.0}", s.rate())),
        report.steady.map_or(0.0, |s| s.seconds()),
        report.busiest_5s,
        ms(report.started.value_at_quantile(0.5)),
        ms(report.started.value_at_quantile(0.99)),
        ms(report.latency.value_at_quantile(0.5)),
        p99,
        per_1000(hwm_growth_kb),
        rows_per_call,
        commits / n,
        wal / n,
        o.time_scale,
        o.hold_seconds(),
        o.rate.map_or("NA".to_string(), |r| r.to_string()),
        o.max_connections,
        o.no_notify,
        all_ok
    );
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}


// ---------------------------------------------------------------------------------------------
// Samplers.

#[derive(Default)]
struct FastSamples {
    peak_live: usize,
    peak_live_at: f64,
    posted_at_peak: usize,
    rss_at_peak_kb: u64,
    pool_samples: u64,
    pool_in_use_sum: u64,
    pool_full: u64,
    /// Since the timeline last read them.
    window_in_use_sum: u64,
    window_samples: u64,
    window_full: u64,
}

impl FastSamples {
    fn pool_full_frac(&self) -> f64 {
        if self.pool_samples == 0 {
            0.0
        } else {
            self.pool_full as f64 / self.pool_samples as f64
        }
    }
    fn pool_avg(&self) -> f64 {
        if self.pool_samples == 0 {
            0.0
        } else {
            self.pool_in_use_sum as f64 / self.pool_samples as f64
        }
    }
}

/// Every 20 ms: live legs (and RSS while at the peak, at most every 100 ms), pool connections in use.
async fn fast_sampler(
    ctx: Arc<outdial::engine::EngineCtx>,
    pool: PgPool,
    max: u32,
    posted: Arc<AtomicUsize>,
    samples: Arc<Mutex<FastSamples>>,
    start: Instant,
    stop: CancellationToken,
) -> FastSamples {
    let mut last_rss_read = Instant::now() - Duration::from_secs(1);
    loop {
        let live = ctx.live_legs();
        let in_use = (pool.size() as usize).saturating_sub(pool.num_idle()) as u64;
        {
            let mut s = samples.lock().unwrap();
            if live > 0 && live >= s.peak_live {
                if live > s.peak_live {
                    s.peak_live = live;
                    s.peak_live_at = start.elapsed().as_secs_f64();
                    s.posted_at_peak = posted.load(Ordering::Relaxed);
                }
                if last_rss_read.elapsed() > Duration::from_millis(100) {
                    s.rss_at_peak_kb = common::memory().rss_kb;
                    last_rss_read = Instant::now();
                }
            }
            s.pool_samples += 1;
            s.pool_in_use_sum += in_use;
            s.window_samples += 1;
            s.window_in_use_sum += in_use;
            if in_use >= u64::from(max) {
                s.pool_full += 1;
                s.window_full += 1;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    let mut s = samples.lock().unwrap();
    std::mem::take(&mut *s)
}

struct TimelineRow {
    t: f64,
    posted: usize,
    live: usize,
    events_written: i64,
    delivered: usize,
    backlog: i64,
    completed: usize,
    pool_avg: f64,
    pool_full_pct: f64,
    rss_mb: f64,
    /// How the dispatcher's claim query would check "no older pending event of this call" right
    /// now: by probing an index per candidate, or by scanning every pending event per candidate.
    claim_plan: &'static str,
    /// Times autovacuum has analyzed `events` so far.
    analyzed: i64,
}

/// Every second: what has happened so far.
async fn timeline_sampler(
    ctx: Arc<outdial::engine::EngineCtx>,
    admin: PgPool,
    recv: Arc<RecvState>,
    posted: Arc<AtomicUsize>,
    fast: Arc<Mutex<FastSamples>>,
    start: Instant,
    stop: CancellationToken,
) -> Vec<TimelineRow> {
    let mut rows = Vec::new();
    let mut next = start;
    loop {
        next += Duration::from_secs(1);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {}
        }
        let (written, backlog): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COALESCE(max(id), 0) FROM events), (SELECT count(*) FROM events WHERE state = 'pending')",
        )
        .fetch_one(&admin)
        .await
        .unwrap_or((-1, -1));
        let claim_plan = claim_plan(&admin).await;
        let analyzed: i64 = sqlx::query_scalar("SELECT autoanalyze_count + analyze_count FROM pg_stat_user_tables WHERE relname = 'events'")
            .fetch_one(&admin)
            .await
            .unwrap_or(-1);
        let (pool_avg, pool_full_pct) = {
            let mut f = fast.lock().unwrap();
            let r = if f.window_samples > 0 {
                (f.window_in_use_sum as f64 / f.window_samples as f64, f.window_full as f64 * 100.0 / f.window_samples as f64)
            } else {
                (0.0, 0.0)
            };
            f.window_samples = 0;
            f.window_in_use_sum = 0;
            f.window_full = 0;
            r
        };
        rows.push(TimelineRow {
            t: start.elapsed().as_secs_f64(),
            posted: posted.load(Ordering::Relaxed),
            live: ctx.live_legs(),
            events_written: written,
            delivered: recv.events.load(Ordering::Relaxed),
            backlog,
            completed: recv.completed.load(Ordering::Relaxed),
            pool_avg,
            pool_full_pct,
            rss_mb: mb(common::memory().rss_kb),
            claim_plan,
            analyzed,
        });
    }
    rows
}

/// The dispatcher's claim statement (the one it runs: `CLAIM_SQL`, for a batch of 200), planned
/// now: "probe" when the check for an older pending event of the candidate's call looks it up
/// by index, "SCAN" when it walks pending events for each candidate (cost grows with the square
/// of the backlog).
async fn claim_plan(admin: &PgPool) -> &'static str {
    let plan: Result<serde_json::Value, _> =
        sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) {}", outdial::webhooks::dispatcher::CLAIM_SQL)).bind(200i64).fetch_one(admin).await;
    fn inner(node: &serde_json::Value) -> Option<(String, String, String)> {
        if node.get("Alias").and_then(|a| a.as_str()) == Some("p") {
            let get = |k: &str| node.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            return Some((get("Node Type"), get("Index Name"), get("Index Cond")));
        }
        node.get("Plans").and_then(|p| p.as_array()).and_then(|plans| plans.iter().find_map(inner))
            .or_else(|| node.get("Plan").and_then(inner))
            .or_else(|| node.as_array().and_then(|a| a.iter().find_map(inner)))
    }
    match plan.ok().as_ref().and_then(inner) {
        Some((_, _, cond)) if cond.contains("call_uuid") => "probe",
        Some((kind, _, _)) if kind.contains("Index") || kind.contains("Seq") => "SCAN",
        Some(_) => "hash",
        None => "?",
    }
}

fn print_timeline(rows: &[TimelineRow]) {
    println!(
        "{:>6} {:>7} {:>6} {:>8} {:>8} {:>7} {:>8} {:>7} {:>9} {:>8} {:>7} {:>6} {:>8}",
        "t s", "placed", "live", "events", "deliv'd", "deliv/s", "backlog", "done", "pool avg", "pool 100%", "RSS MB", "claim", "analyzed"
    );
    let mut prev_delivered = 0usize;
    let mut prev_t = 0.0;
    // At most ~60 lines: print every k-th row, and always the last.
    let k = rows.len().div_ceil(60).max(1);
    for (i, r) in rows.iter().enumerate() {
        if i % k != 0 && i + 1 != rows.len() {
            continue;
        }
        let rate = (r.delivered - prev_delivered) as f64 / (r.t - prev_t).max(1e-9);
        prev_delivered = r.delivered;
        prev_t = r.t;
        println!(
            "{:>6.1} {:>7} {:>6} {:>8} {:>8} {:>7.0} {:>8} {:>7} {:>9.1} {:>8.0}% {:>7.0} {:>6} {:>8}",
            r.t,
            r.posted,
            r.live,
            r.events_written,
            r.delivered,
            rate,
            r.backlog,
            r.completed,
            r.pool_avg,
            r.pool_full_pct,
            r.rss_mb,
            r.claim_plan,
            r.analyzed
        );
    }
}

/// Written and delivered events per second while calls were still being placed (the loaded phase).
fn placing_rate_line(rows: &[TimelineRow], calls: usize) -> String {
    let Some(end) = rows.iter().position(|r| r.posted >= calls) else { return String::new() };
    let last = &rows[end];
    if last.t <= 0.0 {
        return String::new();
    }
    format!(
        "while calls were being placed (first {:.0} s): {:.0} events/s written, {:.0}/s delivered, backlog {} at the end",
        last.t,
        last.events_written.max(0) as f64 / last.t,
        last.delivered as f64 / last.t,
        last.backlog
    )
}

/// Delivery rate over the seconds that began with a real backlog: the dispatcher's capacity.
fn backlog_rate_line(rows: &[TimelineRow]) -> String {
    let (mut delivered, mut seconds) = (0usize, 0.0);
    for pair in rows.windows(2) {
        if pair[0].backlog > 500 {
            delivered += pair[1].delivered - pair[0].delivered;
            seconds += pair[1].t - pair[0].t;
        }
    }
    if seconds > 0.0 {
        format!("while over 500 events were pending ({seconds:.0} s): {:.0}/s", delivered as f64 / seconds)
    } else {
        "the backlog never exceeded 500 pending events (the dispatcher kept up with what was offered)".to_string()
    }
}
// ---------------------------------------------------------------------------------------------
// Analysis.

struct Report {
    completed_calls: usize,
    in_order: usize,
    duplicates: usize,
    by_status: [usize; 5],
    window_s: f64,
    calls_per_s: f64,
    events_per_s: f64,
    busiest_1s: f64,
    busiest_5s: f64,
    steady: Option<Steady>,
    started: Histogram<u64>,
    latency: Histogram<u64>,
    latency_by_status: Vec<Histogram<u64>>,
}

/// The steady state: from the first `completed` to the last call placed, calls start and end
/// at once, each at the offered rate, so every call's four status events flow together.
#[derive(Debug, Clone, Copy)]
struct Steady {
    from: Instant,
    to: Instant,
    /// Webhooks that arrived within it.
    events: usize,
}

impl Steady {
    /// None when every call was placed before the first ended (no steady state: an unpaced run).
    fn of(sorted: &[Instant], first_completed: Option<Instant>, last_placed: Instant) -> Option<Steady> {
        let from = first_completed.filter(|t| *t < last_placed)?;
        let events = sorted.partition_point(|t| *t <= last_placed) - sorted.partition_point(|t| *t < from);
        Some(Steady { from, to: last_placed, events })
    }

    fn seconds(&self) -> f64 {
        (self.to - self.from).as_secs_f64()
    }

    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds().max(1e-9)
    }
}

fn busiest(sorted: &[Instant], window: Duration) -> f64 {
    let mut best = 0usize;
    let mut lo = 0;
    for hi in 0..sorted.len() {
        while sorted[hi] - sorted[lo] > window {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best as f64 / window.as_secs_f64()
}

impl Report {
    fn build(load: &Load, arrivals: &[Arrival], finished_at: Instant) -> Report {
        let posted: HashMap<Uuid, Instant> = load.created.iter().copied().collect();
        let first_post = load.start;
        let mut by_status = [0usize; 5];
        let mut started = hist();
        let mut latency = hist();
        let mut latency_by_status: Vec<Histogram<u64>> = (0..5).map(|_| hist()).collect();
        let mut per_call: HashMap<Uuid, Vec<u8>> = HashMap::with_capacity(posted.len());
        let mut last_completed = first_post;
        let mut first_completed: Option<Instant> = None;
        let mut times = Vec::with_capacity(arrivals.len());
        for a in arrivals {
            by_status[a.status as usize] += 1;
            per_call.entry(a.uuid).or_default().push(a.status);
            times.push(a.at);
            if a.status == 3 && a.at > last_completed {
                last_completed = a.at;
            }
            if a.status == 3 && first_completed.is_none_or(|t| a.at < t) {
                first_completed = Some(a.at);
            }
            if a.status == 0 {
                if let Some(t) = posted.get(&a.uuid) {
                    started.saturating_record((a.at.saturating_duration_since(*t).as_micros() as u64).max(1));
                }
            }
            if a.stamp_us != i64::MIN {
                let us = (a.wall_us - a.stamp_us).max(1) as u64;
                latency.saturating_record(us);
                latency_by_status[a.status as usize].saturating_record(us);
            }
        }
        let mut duplicates = 0;
        let mut in_order = 0;
        let mut completed_calls = 0;
        for statuses in per_call.values() {
            let mut seen = [false; 5];
            for s in statuses {
                if seen[*s as usize] && *s != 4 {
                    duplicates += 1;
                }
                seen[*s as usize] = true;
            }
            if seen[3] {
                completed_calls += 1;
            }
            if statuses.as_slice() == [0, 1, 2, 3] {
                in_order += 1;
            }
        }
        times.sort();
        if completed_calls == 0 {
            last_completed = finished_at;
        }
        let window_s = (last_completed - first_post).as_secs_f64().max(1e-9);
        Report {
            completed_calls,
            in_order,
            duplicates,
            by_status,
            window_s,
            calls_per_s: completed_calls as f64 / window_s,
            events_per_s: arrivals.len() as f64 / window_s,
            busiest_1s: busiest(&times, Duration::from_secs(1)),
            busiest_5s: busiest(&times, Duration::from_secs(5)),
            steady: Steady::of(&times, first_completed, load.end),
            started,
            latency,
            latency_by_status,
        }
    }
}

/// What the outbox rows say after the run: where each event's latency went, and the dispatcher's batches.
struct EventRows {
    rows: Vec<EventRow>,
    attempts_total: i64,
    attempts_not_2xx: i64,
}

struct EventRow {
    call_uuid: Uuid,
    kind: String,
    stamp_us: Option<i64>,
    created_us: i64,
    delivered_us: Option<i64>,
    state: String,
    attempts: i32,
}

async fn event_rows(admin: &PgPool) -> anyhow::Result<EventRows> {
    type Row = (Uuid, String, Option<String>, DateTime<Utc>, Option<DateTime<Utc>>, String, i32);
    let raw: Vec<Row> = sqlx::query_as(
        "SELECT call_uuid, kind, payload->>'timestamp', created_at, delivered_at, state, attempts FROM events",
    )
    .fetch_all(admin)
    .await?;
    let rows = raw
        .into_iter()
        .map(|(call_uuid, kind, stamp, created, delivered, state, attempts)| EventRow {
            call_uuid,
            kind,
            stamp_us: stamp.and_then(|s| DateTime::parse_from_rfc3339(&s).ok()).map(|t| t.timestamp_micros()),
            created_us: created.timestamp_micros(),
            delivered_us: delivered.map(|d| d.timestamp_micros()),
            state,
            attempts,
        })
        .collect();
    let (attempts_total, attempts_not_2xx): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status_code IS NULL OR status_code NOT BETWEEN 200 AND 299) FROM webhook_attempts",
    )
    .fetch_one(admin)
    .await?;
    Ok(EventRows { rows, attempts_total, attempts_not_2xx })
}

impl EventRows {
    fn report(&self, arrivals: &[Arrival]) {
        let mut states: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &self.rows {
            *states.entry(r.state.as_str()).or_default() += 1;
        }
        let retried = self.rows.iter().filter(|r| r.attempts > 1).count();
        println!(
            "outbox: {} events ({}); {} needed more than one attempt; {} webhook_attempts, {} not 2xx",
            self.rows.len(),
            states.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(", "),
            retried,
            self.attempts_total,
            self.attempts_not_2xx
        );
        // Dispatcher batches: record() stamps a batch's delivered_at with one transaction's now().
        let mut batches: HashMap<i64, usize> = HashMap::new();
        for r in &self.rows {
            if let Some(d) = r.delivered_us {
                if r.state == "delivered" {
                    *batches.entry(d).or_default() += 1;
                }
            }
        }
        if !batches.is_empty() {
            let mut sizes: Vec<usize> = batches.values().copied().collect();
            sizes.sort_unstable();
            let full = sizes.iter().filter(|s| **s >= *sizes.last().unwrap()).count();
            let mut stamps: Vec<i64> = batches.keys().copied().collect();
            stamps.sort_unstable();
            let span_s = (stamps[stamps.len() - 1] - stamps[0]) as f64 / 1e6;
            println!(
                "dispatcher: {} batches recorded (events sharing one delivered_at), size p50 {} p90 {} max {} ({} at max), mean {:.1}; \
                 {:.1} batches/s over {:.1} s",
                sizes.len(),
                sizes[sizes.len() / 2],
                sizes[sizes.len() * 9 / 10],
                sizes[sizes.len() - 1],
                full,
                sizes.iter().sum::<usize>() as f64 / sizes.len() as f64,
                sizes.len() as f64 / span_s.max(1e-9),
                span_s
            );
        }
        // Where the latency goes, per event: stamped -> its write statement began (created_at = now()
        // of the writing transaction) -> arrived at the receiver -> its batch was recorded.
        let arrived: HashMap<(Uuid, u8), i64> = arrivals.iter().map(|a| ((a.uuid, a.status), a.wall_us)).collect();
        let mut stamp_to_write: Vec<Histogram<u64>> = (0..4).map(|_| hist()).collect();
        let mut write_to_arrival: Vec<Histogram<u64>> = (0..4).map(|_| hist()).collect();
        let mut arrival_to_recorded = hist();
        for r in &self.rows {
            let s = status_index(&r.kind);
            if s > 3 {
                continue;
            }
            if let Some(stamp) = r.stamp_us {
                stamp_to_write[s].saturating_record((r.created_us - stamp).max(1) as u64);
            }
            if let Some(at) = arrived.get(&(r.call_uuid, s as u8)) {
                write_to_arrival[s].saturating_record((at - r.created_us).max(1) as u64);
                if let Some(d) = r.delivered_us {
                    arrival_to_recorded.saturating_record((d - at).max(1) as u64);
                }
            }
        }
        println!(
            "latency split (p50 / p99 ms): payload timestamp -> write statement start (created_at) | created_at -> webhook arrival \
             (for `started` the API sets created_at = timestamp before its INSERT, so its commit wait shows on the right)"
        );
        for s in 0..4 {
            let (a, b) = (&stamp_to_write[s], &write_to_arrival[s]);
            if a.len() + b.len() == 0 {
                continue;
            }
            println!(
                "  {:<9} {:>8.1} / {:>8.1} | {:>8.1} / {:>8.1}",
                STATUSES[s],
                ms(a.value_at_quantile(0.5)),
                ms(a.value_at_quantile(0.99)),
                ms(b.value_at_quantile(0.5)),
                ms(b.value_at_quantile(0.99))
            );
        }
        if !arrival_to_recorded.is_empty() {
            println!(
                "  webhook arrival -> its batch recorded (delivered_at): p50 {:.1} ms p99 {:.1} ms",
                ms(arrival_to_recorded.value_at_quantile(0.5)),
                ms(arrival_to_recorded.value_at_quantile(0.99))
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Database and process measurements.

struct RowCounts {
    calls: i64,
    call_jobs: i64,
    events: i64,
    attempts: i64,
}

async fn row_counts(pool: &PgPool) -> anyhow::Result<RowCounts> {
    let (calls, call_jobs, events, attempts): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM calls), (SELECT count(*) FROM call_jobs), (SELECT count(*) FROM events),
                (SELECT count(*) FROM webhook_attempts)",
    )
    .fetch_one(pool)
    .await?;
    Ok(RowCounts { calls, call_jobs, events, attempts })
}

/// Full-page images and records written to WAL (pg_stat_wal: the whole cluster, not only this database).
async fn wal_fpi(pool: &PgPool) -> Option<(i64, i64)> {
    sqlx::query_as("SELECT wal_fpi, wal_records FROM pg_stat_wal").fetch_one(pool).await.ok()
}

async fn wal_lsn(pool: &PgPool) -> anyhow::Result<i64> {
    let (lsn,): (i64,) = sqlx::query_as("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").fetch_one(pool).await?;
    Ok(lsn)
}

struct DbStats {
    commits: i64,
    inserted: i64,
    updated: i64,
    deleted: i64,
}

async fn db_stats(pool: &PgPool, db: &str) -> anyhow::Result<DbStats> {
    let (commits, inserted, updated, deleted): (i64, i64, i64, i64) =
        sqlx::query_as("SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = $1")
            .bind(db)
            .fetch_one(pool)
            .await?;
    Ok(DbStats { commits, inserted, updated, deleted })
}

async fn checkpoint(pool: &PgPool) {
    if let Err(e) = sqlx::query("CHECKPOINT").execute(pool).await {
        println!("note: CHECKPOINT refused ({e}); a checkpoint may fall inside the run");
    }
}

async fn print_pg_settings(pool: &PgPool) {
    let names = ["server_version", "max_connections", "shared_buffers", "synchronous_commit", "fsync", "wal_sync_method", "commit_delay"];
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT name, setting FROM pg_settings WHERE name = ANY($1) ORDER BY name")
        .bind(&names[..])
        .fetch_all(pool)
        .await
        .unwrap_or_default();
    println!("postgres: {}", rows.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(" "));}
