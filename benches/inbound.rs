//! Calls to one of our numbers, SIPp calling in at a steady rate (the engine's inbound mode).
//!
//!   . scripts/db-env.sh outdial_inbound_bench && cargo bench --bench inbound -- [--rate 300 --seconds 20 --hold-seconds 2]
//!
//! One run, in order:
//!  1. the baseline: the same SIPp carrier (benches/inbound/uac.xml, at `--rate` for `--seconds`,
//!     each call held `--hold-seconds` then ended by the caller's BYE) calling SIPp's built-in
//!     uas, which answers at once: its calls/s and INVITE -> 200 latency;
//!  2. resets the bench database (DATABASE_URL; its name must contain "bench"), migrates, creates
//!     an account, an application whose answer_url (GET, the bench's receiver) answers at once
//!     with a `talk` of a fixed greeting (synthesized once, then from the cache) played in a loop,
//!     a trunk at 127.0.0.1 and one number linked to the application;
//!  3. starts the receiver and one Instance (roles api,workers,webhooks; carrier.kind "sip");
//!  4. SIPp calls the number at `--rate`: every call is admitted (trunk address, number), stored,
//!     rung, its answer_url fetched, answered with our SDP and its audio played until the caller
//!     hangs up;
//!  5. prints calls/s, INVITE -> answer_url request and INVITE -> 200 p50/p99/max (from SIPp's log
//!     and the receiver, joined by the Call-ID Outdial stored), failed calls, every call's four
//!     statuses, CPU per call, and the ratios to the baseline.
//!
//! Target (issue 15): 300 inbound calls/s with INVITE -> 200 p99 < 100 ms. Judged on a clean run
//! only (every call answered and completed with its four statuses); otherwise "not judged", exit 1.
//! The last line is machine-readable: `inbound_calls=… calls_per_s=… …`.

mod common;

use common::cpu::{CpuSnapshot, HZ};
use common::load::{hist, ms};
use common::procs::{proc_is_zombie, proc_ticks};
use common::receiver::Receiver;
use common::sipp::{sipp_installed, sipp_stat_last, Sipp};
use hdrhistogram::Histogram;
use outdial::applications::{self, keys, ApplicationSpec};
use outdial::config::Settings;
use outdial::startup::Instance;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(clap::Parser, Debug, Clone)]
#[command(name = "inbound", after_help = "Environment: DATABASE_URL (required), OUTDIAL__SECTION__KEY overrides as for the server.")]
struct Options {
    /// Calls per second SIPp places to our number
    #[arg(long, value_name = "R", default_value_t = 300.0, value_parser = common::positive::<f64>)]
    rate: f64,
    /// Seconds of calling (rate x seconds calls)
    #[arg(long, value_name = "S", default_value_t = 20.0, value_parser = common::positive::<f64>)]
    seconds: f64,
    /// Seconds each call stays up after the answer (then the caller sends BYE)
    #[arg(long, value_name = "H", default_value_t = 2, value_parser = common::positive::<u32>)]
    hold_seconds: u32,
    /// UDP port of the calling SIPp (the baseline's uas uses the next one)
    #[arg(long, value_name = "P", default_value_t = 15090)]
    sipp_port: u16,
    /// Server database pool size
    #[arg(long, value_name = "M", default_value_t = 32, value_parser = common::positive::<u32>)]
    max_connections: u32,
    /// Skip the baseline (SIPp calling SIPp)
    #[arg(long)]
    no_baseline: bool,
    #[command(flatten)]
    cargo: common::CargoBench,
}

impl Options {
    fn calls(&self) -> u64 {
        (self.rate * self.seconds).round() as u64
    }
}

fn main() -> ExitCode {
    common::main::<Options, _, _>("inbound", run)
}

const TARGET_CALLS_PER_S: f64 = 300.0;
/// A paced run cannot take more than it is offered: the calls/s target is met at 99% of it.
const RATE_SLACK: f64 = 0.99;
const TARGET_INVITE_200_P99_MS: f64 = 100.0;
const NUMBER: &str = "442079460100";

/// One SIPp carrier run: its counts, how long it took, and each call's INVITE and 200 times.
struct CarrierRun {
    successful: u64,
    failed: u64,
    elapsed_s: f64,
    cpu_s: f64,
    /// Call-ID -> (INVITE sent, 200 received), wall microseconds.
    calls: HashMap<String, (i64, Option<i64>)>,
}

impl CarrierRun {
    fn calls_per_s(&self, hold_s: u32) -> f64 {
        self.successful as f64 / (self.elapsed_s - f64::from(hold_s)).max(1e-9)
    }

    fn invite_to_200(&self) -> Histogram<u64> {
        let mut h = hist();
        for (sent, ok) in self.calls.values() {
            if let Some(ok) = ok {
                let _ = h.record((ok - sent).max(0) as u64);
            }
        }
        h
    }
}

/// SIPp calling `target` with benches/inbound/uac.xml until it has placed every call and they
/// ended (or the time runs out).
async fn carrier(o: &Options, target: &str, dir: &Path) -> anyhow::Result<CarrierRun> {
    let calls = o.calls();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/inbound/uac.xml");
    let mut command = Command::new("sipp");
    command
        .arg("-sf")
        .arg(&scenario)
        .args(["-s", NUMBER, "-r", &o.rate.to_string(), "-m", &calls.to_string()])
        .args(["-key", "hold_ms", &(u64::from(o.hold_seconds) * 1000).to_string()])
        .arg(target);
    std::fs::create_dir_all(dir)?;
    let started = Instant::now();
    let mut sipp = Sipp::spawn(command, o.sipp_port, dir)?;
    let pid = sipp.pid();
    let limit = Duration::from_secs_f64(o.seconds + f64::from(o.hold_seconds) * 2.0 + 60.0);
    let mut ticks = 0;
    loop {
        if let Some(t) = proc_ticks(pid) {
            ticks = t;
        }
        if proc_is_zombie(pid) || started.elapsed() > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let result = sipp.stop().await;
    let stat = sipp_stat_last(&sipp.stat_file()).unwrap_or_default();
    Ok(CarrierRun {
        successful: result.successful.max(stat.successful),
        failed: result.failed.max(stat.failed),
        elapsed_s,
        cpu_s: ticks as f64 / HZ,
        calls: read_carrier_log(&sipp.log_file()),
    })
}

/// "INVITE <Call-ID> <date>\t<time>\t<epoch s.us>" and "OK <Call-ID> …" lines.
fn read_carrier_log(path: &Path) -> HashMap<String, (i64, Option<i64>)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut calls: HashMap<String, (i64, Option<i64>)> = HashMap::new();
    for line in text.lines() {
        let Some((kind, rest)) = line.split_once(' ') else { continue };
        let Some((call_id, stamp)) = rest.split_once(' ') else { continue };
        let Some(epoch) = stamp.split('\t').nth(2) else { continue };
        let Some((s, us)) = epoch.trim().split_once('.') else { continue };
        let (Ok(s), Ok(us)) = (s.parse::<i64>(), us.parse::<i64>()) else { continue };
        let at = s * 1_000_000 + us;
        match kind {
            "INVITE" => {
                calls.entry(call_id.to_string()).or_insert((at, None));
            }
            "OK" => {
                if let Some(call) = calls.get_mut(call_id) {
                    call.1.get_or_insert(at);
                }
            }
            _ => {}
        }
    }
    calls
}

fn quantiles(h: &Histogram<u64>) -> String {
    format!("p50 {:.1} ms p99 {:.1} ms max {:.1} ms", ms(h.value_at_quantile(0.5)), ms(h.value_at_quantile(0.99)), ms(h.max()))
}

async fn run(o: Options) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(sipp_installed(), "sipp is not installed (Debian package sip-tester)");
    let calls = o.calls();
    let work = std::env::temp_dir().join(format!("outdial-inbound-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;

    // 1. The baseline: the same carrier calling SIPp's built-in uas.
    let baseline = if o.no_baseline {
        None
    } else {
        let uas_port = o.sipp_port + 1;
        let mut uas_command = Command::new("sipp");
        uas_command.args(["-sn", "uas"]);
        std::fs::create_dir_all(work.join("baseline-uas"))?;
        let mut uas = Sipp::spawn(uas_command, uas_port, &work.join("baseline-uas"))?;
        let run = carrier(&o, &format!("127.0.0.1:{uas_port}"), &work.join("baseline-uac")).await?;
        let _ = uas.stop().await;
        println!(
            "baseline: SIPp -> SIPp uas, {calls} calls at {}/s held {} s: {} successful, {} failed, {:.0} calls/s; INVITE -> 200 {}",
            o.rate,
            o.hold_seconds,
            run.successful,
            run.failed,
            run.calls_per_s(o.hold_seconds),
            quantiles(&run.invite_to_200())
        );
        Some(run)
    };

    // 2. Database, settings, account, application, trunk, number.
    let (url, _admin, _db_name) = common::reset_bench_database("inbound-bench", "outdial_inbound_bench").await?;
    let mut settings = Settings::load(None)?;
    settings.database.url = url;
    settings.database.max_connections = o.max_connections;
    settings.http.host = "127.0.0.1".into();
    settings.http.port = 0;
    settings.engine.roles = vec!["api".into(), "workers".into(), "webhooks".into()];
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
    let account = outdial::accounts::repo::create(&pool, "bench", 1_000).await?;

    // 3. Receiver (answer_url and event_url), application, instance.
    let ncco = serde_json::json!([{"action": "talk", "text": "Thank you for calling. Please hold.", "loop": 0}]).to_string();
    let receiver = Receiver::serving(calls as usize, vec![("/answer".into(), "application/json", bytes::Bytes::from(ncco))])?;
    let answer_url = format!("http://127.0.0.1:{}/answer", receiver.port);
    let event_url = format!("http://127.0.0.1:{}/events", receiver.port);
    let pair = keys::generate();
    let spec = ApplicationSpec {
        name: "inbound bench".into(),
        public_key_pem: Some(pair.public_pem.clone()),
        answer: Some((answer_url.clone(), "GET".into())),
        event: Some((event_url.clone(), "POST".into())),
        ..Default::default()
    };
    let app = applications::repo::insert(&pool, account.account_id, &spec, &pair.public_pem).await?;
    sqlx::query("INSERT INTO trunks (id, account_id, name, host, port) VALUES ($1, $2, 'carrier', '127.0.0.1', $3)")
        .bind(uuid::Uuid::new_v4())
        .bind(account.account_id)
        .bind(i32::from(o.sipp_port))
        .execute(&pool)
        .await?;
    sqlx::query("INSERT INTO numbers (msisdn, country, trunk_id, account_id, application_id) SELECT $1, 'GB', id, $2, $3 FROM trunks")
        .bind(NUMBER)
        .bind(account.account_id)
        .bind(app.id)
        .execute(&pool)
        .await?;
    let instance = Instance::start(settings.clone(), pool.clone()).await?;
    let ctx = instance.engine.as_ref().ok_or_else(|| anyhow::anyhow!("the instance has no engine"))?.ctx.clone();
    let sip_address = ctx.carrier.signalling_address().ok_or_else(|| anyhow::anyhow!("the SIP carrier has no address"))?;
    println!(
        "instance: in process, roles api,workers,webhooks, SIP at {sip_address} (UDP); number {NUMBER} linked to an application whose \
         answer_url ({answer_url}, GET) answers at once with a looped talk; database pool max {}",
        settings.database.max_connections
    );

    // 4. The run: SIPp calls our number.
    // The greeting is synthesized once (espeak-ng), then played from the cache: warm it.
    let warm = carrier(&Options { rate: 1.0, seconds: 1.0, ..o.clone() }, &sip_address.to_string(), &work.join("warm")).await?;
    anyhow::ensure!(warm.successful == 1, "a first call to the number failed: see {}", work.join("warm").display());
    while receiver.state.completed.load(Ordering::Relaxed) < 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    receiver.state.arrivals.lock().unwrap().clear();
    receiver.state.fetches.lock().unwrap().clear();
    receiver.state.completed.store(0, Ordering::Relaxed);
    println!("carrier: SIPp calls {NUMBER} at {}/s for {} s ({calls} calls), each held {} s then ended by the caller", o.rate, o.seconds, o.hold_seconds);
    let cpu_before = CpuSnapshot::take();
    let ours = carrier(&o, &sip_address.to_string(), &work.join("carrier")).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while (receiver.state.completed.load(Ordering::Relaxed) as u64) < ours.successful && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = CpuSnapshot::take().since(&cpu_before);

    // 5. Results.
    let call_ids: Vec<(uuid::Uuid, Option<String>)> = sqlx::query_as("SELECT uuid, sip->>'call_id' FROM calls").fetch_all(&pool).await?;
    let by_uuid: HashMap<uuid::Uuid, String> = call_ids.into_iter().filter_map(|(u, c)| c.map(|c| (u, c))).collect();
    let mut to_answer_url = hist();
    for (uuid, at) in receiver.state.fetches.lock().unwrap().iter() {
        if let Some((sent, _)) = by_uuid.get(uuid).and_then(|call_id| ours.calls.get(call_id)) {
            let _ = to_answer_url.record((at - sent).max(0) as u64);
        }
    }
    let invite_200 = ours.invite_to_200();
    let arrivals = receiver.state.arrivals.lock().unwrap().clone();
    let mut statuses: HashMap<uuid::Uuid, Vec<u8>> = HashMap::new();
    for a in &arrivals {
        statuses.entry(a.uuid).or_default().push(a.status);
    }
    let in_order = statuses.values().filter(|s| s.as_slice() == [0, 1, 2, 3]).count() as u64;
    let calls_per_s = ours.calls_per_s(o.hold_seconds);
    println!("--- results ---");
    println!(
        "calls: {} successful, {} failed of {calls}; {calls_per_s:.0} calls/s; {in_order} calls with started, ringing, answered, completed in order",
        ours.successful, ours.failed
    );
    println!("INVITE -> answer_url request: {} ({} requests)", quantiles(&to_answer_url), to_answer_url.len());
    println!("INVITE -> 200: {}", quantiles(&invite_200));
    // Outdial's threads: everything in this process but the receiver and the bench's own thread.
    let our_cpu_s: f64 = cpu.groups.iter().filter(|(g, _)| g.as_str() != "webhook receiver" && g.as_str() != "bench main thread").map(|(_, s)| s).sum();
    cpu.report("inbound run", ours.successful);
    println!("SIPp (the carrier) used {:.2} s of CPU", ours.cpu_s);
    let baseline_line = match &baseline {
        Some(b) => {
            let b200 = b.invite_to_200();
            let ratio_cps = calls_per_s / b.calls_per_s(o.hold_seconds).max(1e-9);
            let ratio_p99 = ms(invite_200.value_at_quantile(0.99)) / ms(b200.value_at_quantile(0.99)).max(1e-3);
            println!(
                "vs baseline (SIPp -> SIPp): calls/s {calls_per_s:.0} vs {:.0} ({ratio_cps:.2}x); INVITE -> 200 p99 {:.1} ms vs {:.1} ms ({ratio_p99:.1}x)",
                b.calls_per_s(o.hold_seconds),
                ms(invite_200.value_at_quantile(0.99)),
                ms(b200.value_at_quantile(0.99))
            );
            format!(" baseline_calls_per_s={:.0} baseline_invite_200_p99_ms={:.1}", b.calls_per_s(o.hold_seconds), ms(b200.value_at_quantile(0.99)))
        }
        None => String::new(),
    };
    let clean = ours.failed == 0 && ours.successful == calls && in_order == calls;
    let met = calls_per_s >= TARGET_CALLS_PER_S * RATE_SLACK && ms(invite_200.value_at_quantile(0.99)) < TARGET_INVITE_200_P99_MS;
    if !clean {
        println!("not judged: the run was not clean (every call answered and completed with its four statuses)");
    } else if met {
        println!("target met: >= {TARGET_CALLS_PER_S} inbound calls/s with INVITE -> 200 p99 < {TARGET_INVITE_200_P99_MS} ms");
    } else {
        println!("target NOT met: {TARGET_CALLS_PER_S} inbound calls/s with INVITE -> 200 p99 < {TARGET_INVITE_200_P99_MS} ms");
    }
    println!(
        "inbound_calls={} failed={} calls_per_s={calls_per_s:.0} invite_answer_url_p99_ms={:.1} invite_200_p50_ms={:.1} invite_200_p99_ms={:.1} \
         cpu_us_per_call={:.0} postgres_us_per_call={:.0}{baseline_line}",
        ours.successful,
        ours.failed,
        ms(to_answer_url.value_at_quantile(0.99)),
        ms(invite_200.value_at_quantile(0.5)),
        ms(invite_200.value_at_quantile(0.99)),
        our_cpu_s * 1e6 / ours.successful.max(1) as f64,
        cpu.postgres * 1e6 / ours.successful.max(1) as f64
    );
    instance.stop().await;
    let _ = std::fs::remove_dir_all(&work);
    Ok(if clean && met { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
