//! Calls through the SIP carrier in steady state, to a SIPp trunk (no media).
//!
//!   . scripts/db-env.sh outdial_sip_bench && cargo bench --bench sip -- [--rate 500 --hold-seconds 21 --seconds 45]
//!
//! One run, in order:
//!  1. the baselines, SIPp calling SIPp on loopback (INVITE/100/180/200/ACK/BYE/200, no media):
//!     its ceiling (`/work/shared/tools/sipp-baseline --ceiling-rate 10`: the highest rate is what
//!     it reports as held with 0 failed), then the same workload as ours (SIPp's built-in uac at
//!     `--rate` for `--seconds`, each call held `--hold-seconds`, to its built-in uas), with the CPU
//!     both SIPp processes used;
//!  2. resets the bench database (DATABASE_URL; its name must contain "bench"), migrates, creates
//!     an account, an application and one trunk (serving every number) at a SIPp running
//!     benches/sip/uas.xml (answers with 100, 180, 200; logs each INVITE's Call-ID and arrival time;
//!     waits for our BYE);
//!  3. starts the webhook receiver (benches/common/receiver.rs) and one Instance (roles
//!     api,workers,webhooks; carrier.kind "sip" on 127.0.0.1; RTP ports 20000-59999, one per leg);
//!  4. pre-mints one application JWT per call, then places rate x seconds calls at `--rate` with
//!     `--concurrency` HTTP clients: each an endless `talk` with `length_timer` = hold seconds, so
//!     Outdial itself ends the call with BYE after the hold;
//!  5. waits for every `completed` webhook, stops SIPp, and prints: calls/s in the steady state
//!     (from the first `completed` to the last call placed, while calls start and end together),
//!     live dialogs (peak: the engine's live legs and SIPp's current calls), POST -> INVITE at SIPp
//!     and INVITE at SIPp -> `answered` (the carrier's stamp of the 200) p50/p99, state change ->
//!     webhook p99, every call's events in order, CPU per call (this process, SIPp, PostgreSQL),
//!     and the ratios to SIPp calling SIPp.
//!
//! Targets are judged on a clean run only (every call placed, answered by SIPp and completed with
//! its four statuses in order, once; no timeout): otherwise the run prints "not judged" and exits 1.
//! This process holds one UDP socket per live leg (RTP): `ulimit -n` must exceed the live calls
//! by a margin (it checks; raise it with `ulimit -n 65536` if your shell's is lower).
//!
//! The last line is machine-readable: `sip_calls=… calls_per_s=… peak_live=… …`.

mod common;

use chrono::{DateTime, Utc};
use common::cpu::{CpuSnapshot, HZ};
use common::load::{hist, ms, place_calls, Minter, TOKEN_TTL_S};
use common::pg::pg_sampler;
use common::procs::{backend_ticks, nofile_limit, proc_is_zombie, proc_ticks, udp_errors, udp_socket_drops};
use common::receiver::{Arrival, Receiver, STATUSES};
use common::sipp::{sipp_installed, sipp_stat_last, Sipp};
use hdrhistogram::Histogram;
use outdial::applications::{self, keys, ApplicationSpec};
use outdial::config::Settings;
use outdial::startup::Instance;
use outdial::trunks::model::PasswordChange;
use outdial::trunks::TrunkSpec;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Calls through the SIP carrier to a SIPp trunk, in steady state.
#[derive(clap::Parser, Debug)]
#[command(name = "sip", after_help = "Environment: DATABASE_URL (required), OUTDIAL__SECTION__KEY overrides as for the server.")]
struct Options {
    /// Calls placed per second
    #[arg(long, value_name = "R", default_value_t = 500.0, value_parser = common::positive::<f64>)]
    rate: f64,
    /// Seconds of placing calls (rate x seconds calls)
    #[arg(long, value_name = "S", default_value_t = 45.0, value_parser = common::positive::<f64>)]
    seconds: f64,
    /// Seconds each call stays up after the answer (its `length_timer`: Outdial sends BYE);
    /// 21 so that about rate x 21 = 10,500 dialogs are live at once at the default rate
    #[arg(long, value_name = "H", default_value_t = 21, value_parser = common::positive::<u32>)]
    hold_seconds: u32,
    /// Concurrent HTTP clients placing calls
    #[arg(long, short = 'c', value_name = "C", default_value_t = 32, value_parser = common::positive::<usize>)]
    concurrency: usize,
    /// Server database pool size
    #[arg(long, value_name = "M", default_value_t = 32, value_parser = common::positive::<u32>)]
    max_connections: u32,
    /// UDP port of the SIPp trunk (the baselines use the next three)
    #[arg(long, value_name = "P", default_value_t = 15070)]
    sipp_port: u16,
    /// Rate given to /work/shared/tools/sipp-baseline for SIPp's ceiling (10 s; 0 = skip)
    #[arg(long, value_name = "R", default_value_t = 3000)]
    ceiling_rate: u32,
    /// Skip the same-workload baseline (SIPp uac -> uas at --rate, held as ours)
    #[arg(long)]
    no_baseline: bool,
    /// Do not sample pg_stat_activity
    #[arg(long)]
    no_pg_sample: bool,
    /// Give up waiting for `completed` webhooks after T s [default: hold + 60]
    #[arg(long, value_name = "T", value_parser = common::positive::<f64>)]
    timeout_seconds: Option<f64>,
    #[command(flatten)]
    cargo: common::CargoBench,
}

impl Options {
    fn calls(&self) -> usize {
        (self.rate * self.seconds).round() as usize
    }
}

fn main() -> ExitCode {
    common::main::<Options, _, _>("sip", run)
}

const TARGET_CALLS_PER_S: f64 = 500.0;
/// A paced run cannot place more than it is offered: the calls/s target is met at 99% of it.
const RATE_SLACK: f64 = 0.99;
const TARGET_LIVE: usize = 10_000;
const TARGET_POST_INVITE_P99_MS: f64 = 50.0;
const STEADY_MIN_S: f64 = 10.0;
const BASELINE_TOOL: &str = "/work/shared/tools/sipp-baseline";

async fn run(o: Options) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(sipp_installed(), "sipp is not installed (Debian package sip-tester)");
    let calls = o.calls();
    let expected_live = (o.rate * (f64::from(o.hold_seconds) + 0.5)).ceil() as u64;
    let nofile = nofile_limit();
    println!(
        "file descriptors: limit {} (this process holds one UDP socket per live leg, ~{expected_live} at the peak)",
        nofile.map_or("unknown".to_string(), |n| n.to_string())
    );
    if let Some(n) = nofile {
        anyhow::ensure!(n > expected_live + 2_000, "raise the open files limit first: ulimit -n 65536 (now {n})");
    }
    let work = std::env::temp_dir().join(format!("outdial-sip-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;

    // 1. Baselines: SIPp calling SIPp.
    let ceiling = if o.ceiling_rate > 0 { Some(ceiling_baseline(o.ceiling_rate, o.sipp_port + 1)?) } else { None };
    let same = if o.no_baseline { None } else { Some(same_workload_baseline(&o, &work).await?) };

    // 2. Database, settings, account, application, trunk.
    let (url, admin, db_name) = common::reset_bench_database("sip-bench", "outdial_sip_bench").await?;
    let mut settings = Settings::load(None)?;
    settings.database.url = url.clone();
    settings.database.max_connections = o.max_connections;
    settings.http.host = "127.0.0.1".into();
    settings.http.port = 0;
    settings.limits.other_requests_per_second = 1_000_000;
    settings.engine.roles = vec!["api".into(), "workers".into(), "webhooks".into()];
    settings.engine.max_live_legs = settings.engine.max_live_legs.max(calls);
    settings.webhooks.allow_private_addresses = true;
    settings.carrier.kind = "sip".into();
    settings.carrier.time_scale = 1.0;
    settings.sip.listen = "127.0.0.1:0".into();
    settings.sip.tcp = false;
    settings.sip.rtp_port_min = 20000;
    settings.sip.rtp_port_max = 59999;
    settings.log.filter = "warn".into();
    outdial::telemetry::init(&settings.log);

    let pool = outdial::db::connect(&settings.database).await?;
    outdial::db::migrate(&pool).await?;
    let account = outdial::accounts::repo::create(&pool, "bench", 1_000_000).await?;
    outdial::billing::ledger::set_credit_limit(&pool, account.account_id, rust_decimal::Decimal::from(1_000_000_000)).await?;
    let trunk_spec = TrunkSpec {
        name: "sipp".into(),
        host: "127.0.0.1".into(),
        port: i32::from(o.sipp_port),
        transport: "udp".into(),
        username: None,
        password: PasswordChange::Clear,
        from_domain: None,
        prefixes: vec![],
        priority: 0,
        cps: None,
        max_channels: None,
        enabled: true,
    };
    outdial::trunks::repo::insert(&pool, None, Some(account.account_id), &trunk_spec)
        .await
        .map_err(|e| anyhow::anyhow!("trunk: {e}"))?;

    // The trunk: SIPp answering every call, until told to stop.
    let mut trunk = Sipp::trunk("sip/uas.xml", o.sipp_port, &work.join("trunk"), &[])?;
    println!("trunk: SIPp (pid {}) at 127.0.0.1:{} running benches/sip/uas.xml", trunk.pid(), o.sipp_port);

    // 3. Receiver, application, instance.
    let receiver = Receiver::start(calls)?;
    let event_url = format!("http://127.0.0.1:{}/events", receiver.port);
    let pair = keys::generate();
    let spec = ApplicationSpec {
        name: "sip bench".into(),
        public_key_pem: Some(pair.public_pem.clone()),
        event: Some((event_url.clone(), "POST".into())),
        ..Default::default()
    };
    let app = applications::repo::insert(&pool, account.account_id, &spec, &pair.public_pem).await?;
    let instance = Instance::start(settings.clone(), pool.clone()).await?;
    let port = instance.port.ok_or_else(|| anyhow::anyhow!("the instance has no API"))?;
    let ctx = instance.engine.as_ref().ok_or_else(|| anyhow::anyhow!("the instance has no engine"))?.ctx.clone();
    let sip_address = ctx.carrier.signalling_address().map_or("?".to_string(), |a| a.to_string());
    let base = format!("http://127.0.0.1:{port}");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "instance: in process at {base}, roles api,workers,webhooks, carrier {} at {sip_address} (UDP), RTP 20000-59999, database \
         pool max {} connections, max_live_legs {}; receiver at {event_url}; machine has {cores} cores",
        ctx.carrier.name(),
        settings.database.max_connections,
        settings.engine.max_live_legs,
    );

    // 4. Tokens and the request body.
    let minter = Minter { app_id: app.id, pem: Arc::new(pair.private_pem) };
    let t = Instant::now();
    let tokens = Arc::new(minter.mint_parallel(calls).await?);
    println!("tokens: {} JWTs pre-minted in {:.1} s (RS256, one per call, exp {} min)", tokens.len(), t.elapsed().as_secs_f64(), TOKEN_TTL_S / 60);
    let body = serde_json::json!({
        "to": [{"type": "phone", "number": "447700900000"}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [{"action": "talk", "text": "please hold the line", "loop": 0}],
        "length_timer": o.hold_seconds,
        "event_url": [event_url],
    })
    .to_string();
    println!(
        "calls: {calls} = {} calls/s for {} s through trunk sipp, each an endless talk ended by Outdial's BYE at length_timer {} s; \
         {} clients POST /v1/calls",
        o.rate, o.seconds, o.hold_seconds, o.concurrency
    );
    let client = common::http_client(settings.http.keep_alive_s, o.concurrency * 2)?;

    // 5. The run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu_before = CpuSnapshot::take();
    let sipp_before = proc_ticks(trunk.pid()).unwrap_or(0);
    let backends_before = backend_ticks(&db_name);
    let udp_before = udp_errors();
    let (epoch_at, epoch_wall) = (Instant::now(), Utc::now());
    let to_wall_us = move |t: Instant| epoch_wall.timestamp_micros() + t.saturating_duration_since(epoch_at).as_micros() as i64;
    let stop = CancellationToken::new();
    let posted_ok = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let peak_live = Arc::new(AtomicUsize::new(0));
    let sampler = tokio::spawn(sampler(
        ctx.clone(),
        trunk.stat_file(),
        receiver.state.clone(),
        posted_ok.clone(),
        samples.clone(),
        peak_live.clone(),
        epoch_at,
        stop.clone(),
    ));
    let placing = Arc::new(AtomicBool::new(true));
    let pg_task = (!o.no_pg_sample).then(|| tokio::spawn(pg_sampler(admin.clone(), pool.clone(), placing.clone(), stop.clone())));

    let load = place_calls(&client, &base, tokens, &body, calls, o.concurrency, Some(o.rate), posted_ok.clone()).await;
    placing.store(false, Ordering::Relaxed);
    println!(
        "placed: {} created (201), {} errors in {:.2} s = {:.0} creates/s; POST latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
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

    let expected = load.created.len();
    let timeout = Duration::from_secs_f64(o.timeout_seconds.unwrap_or(f64::from(o.hold_seconds) + 60.0));
    let mut timed_out = false;
    while receiver.state.completed.load(Ordering::Relaxed) < expected {
        if load.end.elapsed() > timeout {
            timed_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu_after = CpuSnapshot::take();
    let sipp_after = proc_ticks(trunk.pid()).unwrap_or(0);
    let udp_after = udp_errors();
    let sip_port = ctx.carrier.signalling_address().map_or(0, |a| a.port());
    let socket_drops = (udp_socket_drops(sip_port), udp_socket_drops(o.sipp_port));
    let backends_s = backend_ticks(&db_name)
        .iter()
        .map(|(pid, t)| t.saturating_sub(*backends_before.get(pid).unwrap_or(&0)))
        .sum::<u64>() as f64
        / HZ;
    stop.cancel();
    sampler.await?;
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
    let sip_rows: Vec<(Uuid, Option<serde_json::Value>)> = sqlx::query_as("SELECT uuid, sip FROM calls").fetch_all(&admin).await?;
    // Where POST -> INVITE goes: the API's insert (the `started` event's created_at = its stamp)
    // and the worker's claim of the leg (call_jobs.claimed_at), both on PostgreSQL's clock (this machine's).
    let steps: Vec<(Uuid, Option<DateTime<Utc>>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT j.call_uuid, (SELECT min(e.created_at) FROM events e WHERE e.call_uuid = j.call_uuid AND e.kind = 'started'), j.claimed_at
         FROM call_jobs j",
    )
    .fetch_all(&admin)
    .await?;
    instance.stop().await;
    pool.close().await;
    let sipp_result = trunk.stop().await;

    // 6. Figures.
    let arrivals: Vec<Arrival> = receiver.state.arrivals.lock().unwrap().clone();
    let invites = read_invite_log(&trunk.log_file());
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let report = Report::build(&load.created, &arrivals, &invites, load.end, &to_wall_us);

    println!("--- timeline (t from the first POST; live = the engine's live legs, sipp = SIPp's current calls, from its 1 s statistics) ---");
    println!("{:>6} {:>7} {:>7} {:>7} {:>8} {:>7}", "t s", "placed", "live", "sipp", "deliv'd", "done");
    let k = samples.len().div_ceil(60).max(1);
    for (i, s) in samples.iter().enumerate() {
        if i % k == 0 || i + 1 == samples.len() {
            println!("{:>6.1} {:>7} {:>7} {:>7} {:>8} {:>7}", s.t, s.posted, s.live, s.sipp_current.map_or("?".into(), |n| n.to_string()), s.delivered, s.completed);
        }
    }

    println!("--- results ---");
    let sipp_peak = samples.iter().filter_map(|s| s.sipp_current).max().unwrap_or(0);
    let peak = peak_live.load(Ordering::Relaxed);
    println!(
        "completed: {} of {} calls ({} saw started,ringing,answered,completed in order; {} duplicate and {} unparsed webhooks; {} \
         webhooks for other statuses); SIPp received {} INVITEs ({} of ours matched by Call-ID), {}",
        report.completed_calls,
        expected,
        report.in_order,
        report.duplicates,
        receiver.state.unparsed.load(Ordering::Relaxed),
        report.by_status[4],
        invites.len(),
        report.post_invite.len(),
        sipp_result.summary()
    );
    let sip_ok = sip_rows.iter().filter(|(_, sip)| sip.as_ref().and_then(|s| s.get("final_code")).and_then(|c| c.as_i64()) == Some(200)).count();
    println!("calls.sip: {} of {} legs have final_code 200", sip_ok, sip_rows.len());
    match report.steady {
        Some(s) => println!(
            "calls/s in the steady state (t={:.1}..{:.1} s, {:.1} s: from the first `completed` to the last call placed): {:.1} answered/s \
             (`answered` stamps in it), {:.1} INVITEs/s at SIPp, {:.1} completed/s; offered {}/s",
            s.from_s,
            s.to_s,
            s.seconds(),
            s.answered_per_s(),
            s.invites_per_s(),
            s.completed_per_s(),
            o.rate
        ),
        None => println!("calls/s in the steady state: none (every call was placed before the first ended: --seconds must exceed --hold-seconds)"),
    }
    println!(
        "live dialogs: peak {peak} (the engine's live legs, 20 ms samples), SIPp's current calls peak {sipp_peak} (1 s statistics)"
    );
    let q = |h: &Histogram<u64>, p: f64| if h.is_empty() { f64::NAN } else { ms(h.value_at_quantile(p)) };
    println!(
        "POST sent -> INVITE at SIPp: p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms ({} calls)",
        q(&report.post_invite, 0.5),
        q(&report.post_invite, 0.9),
        q(&report.post_invite, 0.99),
        ms(report.post_invite.max()),
        report.post_invite.len()
    );
    let mut split = [hist(), hist(), hist()];
    let posted_wall: HashMap<Uuid, i64> = load.created.iter().map(|(u, t)| (*u, to_wall_us(*t))).collect();
    for (uuid, started, claimed) in &steps {
        let (Some(post), Some(invite)) = (posted_wall.get(uuid), invites.get(uuid)) else { continue };
        if let (Some(started), Some(claimed)) = (started, claimed) {
            let (started, claimed) = (started.timestamp_micros(), claimed.timestamp_micros());
            split[0].saturating_record((started - post).max(1) as u64);
            split[1].saturating_record((claimed - started).max(1) as u64);
            split[2].saturating_record((invite - claimed).max(1) as u64);
        }
    }
    println!(
        "  split p50 / p99: POST sent -> the API's `started` stamp {:.1} / {:.1} ms | -> the worker's claim (call_jobs.claimed_at) {:.1} / {:.1} ms \
         | -> INVITE at SIPp {:.1} / {:.1} ms",
        q(&split[0], 0.5),
        q(&split[0], 0.99),
        q(&split[1], 0.5),
        q(&split[1], 0.99),
        q(&split[2], 0.5),
        q(&split[2], 0.99)
    );
    let unanswered: Vec<String> = sip_rows
        .iter()
        .filter(|(_, sip)| sip.as_ref().and_then(|s| s.get("final_code")).and_then(|c| c.as_i64()) != Some(200))
        .take(5)
        .map(|(uuid, sip)| format!("{uuid}: {}", sip.as_ref().map_or("no sip facts".to_string(), |s| s.to_string())))
        .collect();
    for line in &unanswered {
        println!("  not answered: {line}");
    }
    println!(
        "UDP on this machine during the run: {} datagrams dropped for a full receive buffer (RcvbufErrors), {} receive errors in all",
        udp_after.0.saturating_sub(udp_before.0),
        udp_after.1.saturating_sub(udp_before.1)
    );
    println!(
        "  of which on the SIP sockets (their `drops` in /proc/net/udp, since they opened): Outdial's {}, SIPp's {}",
        socket_drops.0.map_or("?".to_string(), |d| d.to_string()),
        socket_drops.1.map_or("?".to_string(), |d| d.to_string())
    );
    println!(
        "INVITE at SIPp -> 200 (the carrier's `answered` stamp, ms precision): p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms ({} calls)",
        q(&report.invite_answer, 0.5),
        q(&report.invite_answer, 0.9),
        q(&report.invite_answer, 0.99),
        ms(report.invite_answer.max()),
        report.invite_answer.len()
    );
    println!(
        "state change -> webhook arrival (payload timestamp vs arrival wall clock): p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms ({} events)",
        q(&report.latency, 0.5),
        q(&report.latency, 0.9),
        q(&report.latency, 0.99),
        ms(report.latency.max()),
        report.latency.len()
    );
    for (i, h) in report.latency_by_status.iter().enumerate().take(4) {
        if !h.is_empty() {
            println!("  {:<9} p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms", STATUSES[i], q(h, 0.5), q(h, 0.99), ms(h.max()));
        }
    }

    // CPU.
    let delta = cpu_after.since(&cpu_before);
    let n = expected.max(1) as f64;
    let ours_s: f64 = delta.groups.values().sum();
    let sipp_s = sipp_after.saturating_sub(sipp_before) as f64 / HZ;
    delta.report("during the run", arrivals.len() as u64);
    println!(
        "CPU per call: this process (Outdial + the bench's clients and receiver) {:.0} us, SIPp trunk {:.0} us, PostgreSQL {:.0} us \
         (all its processes; {:.0} us in the backends of {db_name}); {:.0} us in all ({:.1} s wall, {} calls)",
        ours_s * 1e6 / n,
        sipp_s * 1e6 / n,
        delta.postgres * 1e6 / n,
        backends_s * 1e6 / n,
        (ours_s + sipp_s + delta.postgres) * 1e6 / n,
        delta.wall,
        expected
    );
    if let Some(profile) = &pg_profile {
        profile.report();
    }

    // Baselines and ratios.
    let calls_per_s = report.steady.map_or(0.0, |s| s.answered_per_s());
    if let Some(c) = &ceiling {
        println!(
            "baseline, SIPp's ceiling: {BASELINE_TOOL} {} 10 -> {} calls/s ({} failed); ratio ours/SIPp {:.2}",
            o.ceiling_rate,
            c.cps,
            c.failed,
            calls_per_s / c.cps.max(1) as f64
        );
    }
    if let Some(b) = &same {
        println!(
            "baseline, the same workload (SIPp uac -> uas, {}/s for {} s, held {} s): {} calls, {} successful, {} failed, {:.1} calls/s \
             (calls over the placing time), peak {} live; CPU per call: uac {:.0} us + uas {:.0} us = {:.0} us; ratio of CPU per call, \
             Outdial (this process) / SIPp's uac: {:.1}x, everything (this process + SIPp trunk + PostgreSQL) / both SIPps: {:.1}x",
            o.rate,
            o.seconds,
            o.hold_seconds,
            b.calls,
            b.successful,
            b.failed,
            b.calls_per_s,
            b.peak_current,
            b.uac_cpu_s * 1e6 / b.calls.max(1) as f64,
            b.uas_cpu_s * 1e6 / b.calls.max(1) as f64,
            (b.uac_cpu_s + b.uas_cpu_s) * 1e6 / b.calls.max(1) as f64,
            (ours_s / n) / (b.uac_cpu_s / b.calls.max(1) as f64).max(1e-9),
            ((ours_s + sipp_s + delta.postgres) / n) / ((b.uac_cpu_s + b.uas_cpu_s) / b.calls.max(1) as f64).max(1e-9),
        );
    }

    // Targets, judged on a clean run only.
    let mut faults = Vec::new();
    if load.errors > 0 {
        faults.push(format!("{} POST errors", load.errors));
    }
    if timed_out {
        faults.push("timed out waiting for `completed` webhooks".to_string());
    }
    if report.in_order < calls {
        faults.push(format!("{} of {calls} calls lack started,ringing,answered,completed in order", calls - report.in_order));
    }
    if report.duplicates > 0 {
        faults.push(format!("{} duplicate webhooks", report.duplicates));
    }
    if report.post_invite.len() < calls as u64 {
        faults.push(format!("SIPp logged the INVITE of {} of {calls} calls", report.post_invite.len()));
    }
    if sipp_result.failed > 0 {
        faults.push(format!("SIPp counted {} failed calls", sipp_result.failed));
    }
    let clean = faults.is_empty();
    if !clean {
        println!("targets: NOT judged, the run was not clean: {}", faults.join("; "));
    }
    let verdict = |ok: bool| match (clean, ok) {
        (false, _) => "not judged",
        (true, true) => "met",
        (true, false) => "NOT met",
    };
    let steady_ok = report.steady.is_some_and(|s| s.seconds() >= STEADY_MIN_S);
    let rate_ok = steady_ok && calls_per_s >= TARGET_CALLS_PER_S * RATE_SLACK;
    let live_ok = peak >= TARGET_LIVE;
    let in_order_ok = report.in_order == calls && report.duplicates == 0;
    let p99 = q(&report.post_invite, 0.99);
    let p99_ok = p99 < TARGET_POST_INVITE_P99_MS;
    println!(
        "targets: {TARGET_CALLS_PER_S} calls/s (>= {:.0} answered/s over a steady state of >= {STEADY_MIN_S} s): {} ({calls_per_s:.1}/s); \
         {TARGET_LIVE} live dialogs: {} (peak {peak}); every call's events in order: {} ({} of {calls}); POST -> INVITE p99 < \
         {TARGET_POST_INVITE_P99_MS} ms: {} ({p99:.1} ms)",
        TARGET_CALLS_PER_S * RATE_SLACK,
        verdict(rate_ok),
        verdict(live_ok),
        verdict(in_order_ok),
        report.in_order,
        verdict(p99_ok),
    );
    let all_ok = clean && rate_ok && live_ok && in_order_ok && p99_ok;
    println!(
        "sip_calls={calls} completed={} errors={} rate={} hold_s={} calls_per_s={calls_per_s:.1} peak_live={peak} sipp_peak_current={sipp_peak} \
         post_invite_p50_ms={:.1} post_invite_p99_ms={p99:.1} invite_answer_p50_ms={:.1} invite_answer_p99_ms={:.1} event_p99_ms={:.1} \
         in_order={} cpu_us_per_call_outdial={:.0} cpu_us_per_call_sipp={:.0} cpu_us_per_call_postgres={:.0} baseline_ceiling_cps={} \
         baseline_same_cps={} baseline_same_cpu_us_per_call={} clean={clean} targets_met={all_ok}",
        report.completed_calls,
        load.errors,
        o.rate,
        o.hold_seconds,
        q(&report.post_invite, 0.5),
        q(&report.invite_answer, 0.5),
        q(&report.invite_answer, 0.99),
        q(&report.latency, 0.99),
        report.in_order,
        ours_s * 1e6 / n,
        sipp_s * 1e6 / n,
        delta.postgres * 1e6 / n,
        ceiling.as_ref().map_or("NA".to_string(), |c| c.cps.to_string()),
        same.as_ref().map_or("NA".to_string(), |b| format!("{:.1}", b.calls_per_s)),
        same.as_ref().map_or("NA".to_string(), |b| format!("{:.0}", (b.uac_cpu_s + b.uas_cpu_s) * 1e6 / b.calls.max(1) as f64)),
    );
    if clean {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        println!("SIPp's files (statistics, INVITE log, errors) kept in {}", work.display());
    }
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

// ---------------------------------------------------------------------------------------------
// Analysis.

#[derive(Debug, Clone, Copy)]
struct Steady {
    from_s: f64,
    to_s: f64,
    answered: usize,
    invites: usize,
    completed: usize,
}

impl Steady {
    fn seconds(&self) -> f64 {
        (self.to_s - self.from_s).max(1e-9)
    }
    fn answered_per_s(&self) -> f64 {
        self.answered as f64 / self.seconds()
    }
    fn invites_per_s(&self) -> f64 {
        self.invites as f64 / self.seconds()
    }
    fn completed_per_s(&self) -> f64 {
        self.completed as f64 / self.seconds()
    }
}

struct Report {
    completed_calls: usize,
    in_order: usize,
    duplicates: usize,
    by_status: [usize; 5],
    steady: Option<Steady>,
    post_invite: Histogram<u64>,
    invite_answer: Histogram<u64>,
    latency: Histogram<u64>,
    latency_by_status: Vec<Histogram<u64>>,
}

impl Report {
    fn build(
        created: &[(Uuid, Instant)],
        arrivals: &[Arrival],
        invites: &HashMap<Uuid, i64>,
        last_posted: Instant,
        to_wall_us: &dyn Fn(Instant) -> i64,
    ) -> Report {
        let first_post = created.iter().map(|(_, t)| *t).min().unwrap_or(last_posted);
        let (origin_us, last_posted_us) = (to_wall_us(first_post), to_wall_us(last_posted));
        let mut by_status = [0usize; 5];
        let mut latency = hist();
        let mut latency_by_status: Vec<Histogram<u64>> = (0..5).map(|_| hist()).collect();
        let mut per_call: HashMap<Uuid, Vec<u8>> = HashMap::with_capacity(created.len());
        let mut answered_at: HashMap<Uuid, i64> = HashMap::with_capacity(created.len());
        let mut completed_at: Vec<i64> = Vec::with_capacity(created.len());
        for a in arrivals {
            by_status[a.status as usize] += 1;
            per_call.entry(a.uuid).or_default().push(a.status);
            if a.status == 3 {
                completed_at.push(a.wall_us);
            }
            if a.stamp_us != i64::MIN {
                let us = (a.wall_us - a.stamp_us).max(1) as u64;
                latency.saturating_record(us);
                latency_by_status[a.status as usize].saturating_record(us);
                if a.status == 2 {
                    answered_at.insert(a.uuid, a.stamp_us);
                }
            }
        }
        let (mut duplicates, mut in_order, mut completed_calls) = (0, 0, 0);
        for statuses in per_call.values() {
            let mut seen = [false; 5];
            for s in statuses {
                if seen[*s as usize] && *s != 4 {
                    duplicates += 1;
                }
                seen[*s as usize] = true;
            }
            completed_calls += usize::from(seen[3]);
            in_order += usize::from(statuses.as_slice() == [0, 1, 2, 3]);
        }
        let mut post_invite = hist();
        let mut invite_answer = hist();
        for (uuid, t) in created {
            if let Some(invite_us) = invites.get(uuid) {
                post_invite.saturating_record((invite_us - to_wall_us(*t)).max(1) as u64);
                if let Some(answer_us) = answered_at.get(uuid) {
                    invite_answer.saturating_record((answer_us - invite_us).max(1) as u64);
                }
            }
        }
        let first_completed = completed_at.iter().copied().min().filter(|t| *t < last_posted_us);
        let steady = first_completed.map(|from| {
            let within = |t: i64| t >= from && t <= last_posted_us;
            Steady {
                from_s: (from - origin_us) as f64 / 1e6,
                to_s: (last_posted_us - origin_us) as f64 / 1e6,
                answered: answered_at.values().filter(|t| within(**t)).count(),
                invites: invites.values().filter(|t| within(**t)).count(),
                completed: completed_at.iter().filter(|t| within(**t)).count(),
            }
        });
        Report { completed_calls, in_order, duplicates, by_status, steady, post_invite, invite_answer, latency, latency_by_status }
    }
}

// ---------------------------------------------------------------------------------------------
// Sampling while the calls run.

struct Sample {
    t: f64,
    posted: usize,
    live: usize,
    sipp_current: Option<u64>,
    delivered: usize,
    completed: usize,
}

/// Live legs every 20 ms (for the peak); a timeline row every second with SIPp's current calls.
#[allow(clippy::too_many_arguments)]
async fn sampler(
    ctx: Arc<outdial::engine::EngineCtx>,
    sipp_stat: PathBuf,
    recv: Arc<common::receiver::RecvState>,
    posted: Arc<AtomicUsize>,
    samples: Arc<Mutex<Vec<Sample>>>,
    peak: Arc<AtomicUsize>,
    start: Instant,
    stop: CancellationToken,
) {
    let mut next_row = start + Duration::from_secs(1);
    loop {
        peak.fetch_max(ctx.live_legs(), Ordering::Relaxed);
        if Instant::now() >= next_row {
            next_row += Duration::from_secs(1);
            samples.lock().unwrap().push(Sample {
                t: start.elapsed().as_secs_f64(),
                posted: posted.load(Ordering::Relaxed),
                live: ctx.live_legs(),
                sipp_current: sipp_stat_last(&sipp_stat).map(|s| s.current),
                delivered: recv.events.load(Ordering::Relaxed),
                completed: recv.completed.load(Ordering::Relaxed),
            });
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

/// Each INVITE's arrival at SIPp (epoch microseconds), by our leg's uuid (its Call-ID's user part).
fn read_invite_log(path: &Path) -> HashMap<Uuid, i64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut invites = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("INVITE ") else { continue };
        let Some((call_id, stamp)) = rest.split_once(' ') else { continue };
        let Some(uuid) = call_id.split('@').next().and_then(|u| Uuid::parse_str(u).ok()) else { continue };
        let Some(epoch) = stamp.split('\t').nth(2) else { continue };
        let Some((s, us)) = epoch.trim().split_once('.') else { continue };
        if let (Ok(s), Ok(us)) = (s.parse::<i64>(), us.parse::<i64>()) {
            invites.entry(uuid).or_insert(s * 1_000_000 + us);
        }
    }
    invites
}

// ---------------------------------------------------------------------------------------------
// Baselines.

struct Ceiling {
    cps: u64,
    failed: u64,
}

/// /work/shared/tools/sipp-baseline RATE 10 (SIPp's built-in uac -> uas, no hold): its last line.
fn ceiling_baseline(rate: u32, port: u16) -> anyhow::Result<Ceiling> {
    let output = Command::new(BASELINE_TOOL)
        .args([rate.to_string(), "10".to_string(), port.to_string()])
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {BASELINE_TOOL}: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let last = text.lines().last().unwrap_or_default();
    let field = |name: &str| {
        last.split_whitespace().find_map(|kv| kv.strip_prefix(name)).and_then(|v| v.parse::<u64>().ok())
    };
    let (Some(cps), Some(failed)) = (field("baseline_sip_cps="), field("failed=")) else {
        anyhow::bail!("{BASELINE_TOOL} printed no result: {text}{}", String::from_utf8_lossy(&output.stderr));
    };
    for line in text.lines() {
        println!("baseline ceiling: {line}");
    }
    Ok(Ceiling { cps, failed })
}

struct SameWorkload {
    calls: u64,
    successful: u64,
    failed: u64,
    calls_per_s: f64,
    peak_current: u64,
    uac_cpu_s: f64,
    uas_cpu_s: f64,
}

/// SIPp's built-in uac calling its built-in uas at our rate, for as many calls, each held as ours.
async fn same_workload_baseline(o: &Options, work: &Path) -> anyhow::Result<SameWorkload> {
    let calls = o.calls() as u64;
    let (uas_port, uac_port) = (o.sipp_port + 2, o.sipp_port + 3);
    let uas_dir = work.join("baseline-uas");
    let uac_dir = work.join("baseline-uac");
    std::fs::create_dir_all(&uas_dir)?;
    std::fs::create_dir_all(&uac_dir)?;
    let mut uas_command = Command::new("sipp");
    uas_command.args(["-sn", "uas"]);
    let mut uas = Sipp::spawn(uas_command, uas_port, &uas_dir)?;
    let uas_before = proc_ticks(uas.pid()).unwrap_or(0);
    let mut uac_command = Command::new("sipp");
    uac_command
        .args(["-sn", "uac", "-r", &o.rate.to_string(), "-m", &calls.to_string(), "-d", &(u64::from(o.hold_seconds) * 1000).to_string()])
        .arg(format!("127.0.0.1:{uas_port}"));
    let started = Instant::now();
    let mut uac = Sipp::spawn(uac_command, uac_port, &uac_dir)?;
    let uac_pid = uac.pid();
    let limit = Duration::from_secs_f64(o.seconds + f64::from(o.hold_seconds) * 2.0 + 60.0);
    let mut peak_current = 0;
    let mut uac_ticks = 0;
    // Until the uac is done (a zombie: its CPU times still readable) or out of time.
    loop {
        if let Some(t) = proc_ticks(uac_pid) {
            uac_ticks = t;
        }
        if let Some(s) = sipp_stat_last(&uac.stat_file()) {
            peak_current = peak_current.max(s.current);
        }
        if proc_is_zombie(uac_pid) || started.elapsed() > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let uas_ticks = proc_ticks(uas.pid()).unwrap_or(0).saturating_sub(uas_before);
    let uac_result = uac.stop().await;
    let _ = uas.stop().await;
    let placing_s = (elapsed - f64::from(o.hold_seconds)).max(1e-9);
    let result = SameWorkload {
        calls,
        successful: uac_result.successful,
        failed: uac_result.failed,
        calls_per_s: uac_result.successful as f64 / placing_s,
        peak_current,
        uac_cpu_s: uac_ticks as f64 / HZ,
        uas_cpu_s: uas_ticks as f64 / HZ,
    };
    println!(
        "baseline same workload: SIPp uac -> uas, {} calls at {}/s held {} s: {} successful, {} failed in {elapsed:.1} s; peak {} live",
        calls, o.rate, o.hold_seconds, result.successful, result.failed, peak_current
    );
    Ok(result)
}
