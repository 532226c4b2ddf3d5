//! Live call control under load: how long from a `PUT /v1/calls/{uuid}…` being accepted to the
//! leg's worker having applied it, with N live calls.
//!
//!   . scripts/db-env.sh outdial_control_bench && cargo bench --bench control -- [--calls 1000]
//!
//! One run, in order:
//!  1. resets the bench database (DATABASE_URL; its name must contain "bench"), migrates, creates an
//!     account and an application whose event_url is a local receiver answering 200;
//!  2. baseline, same database, same run: a row INSERTed and NOTIFYed in one statement (what the API
//!     does to accept a command) until a LISTENing connection receives it, `--baseline` times;
//!  3. places N calls (NCCO `wait`, so they stay up) and waits until all N are answered;
//!  4. sends `--commands` commands from `--concurrency` clients, round-robin over the live calls and
//!     over mute, unmute, earmuff, unearmuff, dtmf, talk start, talk stop;
//!  5. waits until every command is applied or rejected, then prints, from `call_commands`:
//!     accepted (`created_at`, when the API stored it) -> applied (`applied_at`, set by the worker
//!     after the effect is written to the call's history), p50/p99/max overall and per action, the
//!     ratio of its p99 to the baseline's, and the PUT round trip seen by the clients;
//!  6. hangs every call up.
//!
//! The last line is machine-readable: `control_calls=… applied_p50_ms=… applied_p99_ms=… …`.

mod common;
#[path = "../tests/common/receiver.rs"]
mod receiver;

use hdrhistogram::Histogram;
use outdial::applications::{self, keys, ApplicationSpec};
use outdial::auth::mint_application_jwt;
use outdial::config::Settings;
use outdial::startup::Instance;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const USAGE: &str = "\
usage: cargo bench --bench control -- [options]
  --calls N          live calls the commands go to (default 1000)
  --commands K       commands sent (default 7 x calls: each call gets the whole rotation)
  --concurrency C    concurrent HTTP clients sending commands (default 8)
  --baseline B       INSERT+NOTIFY round trips measured for the baseline (default 1000)
  --time-scale S     simulated time runs S times faster (default 10)
Environment: DATABASE_URL (required), OUTDIAL__SECTION__KEY overrides as for the server.";

const TARGET_P99_MS: f64 = 50.0;
/// Commands in the order they are sent to each call: every one has an effect a callee notices.
const ROTATION: [&str; 7] = ["mute", "unmute", "earmuff", "unearmuff", "dtmf", "talk", "talk stop"];

struct Options {
    calls: usize,
    commands: usize,
    concurrency: usize,
    baseline: usize,
    time_scale: f64,
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options { calls: 1000, commands: 0, concurrency: 8, baseline: 1000, time_scale: 10.0 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{name} needs a value"));
        fn num<T: FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{name}: '{v}' is not a valid number"))
        }
        match name.as_str() {
            // cargo bench passes --bench to every harness = false target.
            "--bench" => {}
            "--calls" => o.calls = num(&name, value()?)?,
            "--commands" => o.commands = num(&name, value()?)?,
            "--concurrency" => o.concurrency = num(&name, value()?)?,
            "--baseline" => o.baseline = num(&name, value()?)?,
            "--time-scale" => o.time_scale = num(&name, value()?)?,
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.commands == 0 {
        o.commands = o.calls * ROTATION.len();
    }
    if o.calls == 0 || o.concurrency == 0 || o.baseline == 0 || !(o.time_scale > 0.0) {
        return Err("--calls, --concurrency, --baseline and --time-scale must be positive".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    common::main("control", USAGE, parse_options, run)
}

async fn run(o: Options) -> anyhow::Result<ExitCode> {
    let (url, admin, _) = common::reset_bench_database("control-bench", "outdial_control_bench").await?;

    // 1. Server, account, application.
    let mut settings = Settings::load(None)?;
    settings.database.url = url.clone();
    settings.http.host = "127.0.0.1".into();
    settings.http.port = 0;
    settings.limits.other_requests_per_second = 1_000_000;
    settings.carrier.time_scale = o.time_scale;
    settings.engine.roles = vec!["api".into(), "workers".into(), "webhooks".into()];
    settings.engine.max_live_legs = settings.engine.max_live_legs.max(o.calls);
    settings.webhooks.allow_private_addresses = true;
    settings.log.filter = "warn".into();
    outdial::telemetry::init(&settings.log);
    let pool = outdial::db::connect(&settings.database).await?;
    outdial::db::migrate(&pool).await?;
    let account = outdial::accounts::repo::create(&pool, "control bench", 1_000_000).await?;
    // Credit is not what is measured here.
    outdial::billing::ledger::set_credit_limit(&pool, account.account_id, rust_decimal::Decimal::from(1_000_000_000)).await?;
    let receiver = receiver::Receiver::start().await;
    let pair = keys::generate();
    let spec = ApplicationSpec {
        name: "control bench".into(),
        public_key_pem: Some(pair.public_pem.clone()),
        event: Some((receiver.url("/events"), "POST".into())),
        ..Default::default()
    };
    let app = applications::repo::insert(&pool, account.account_id, &spec, &pair.public_pem).await?;

    // 2. Baseline: the database's own accept-and-signal round trip.
    let baseline = notify_round_trips(&admin, &url, o.baseline).await?;
    println!(
        "baseline: INSERT + NOTIFY in one statement -> received by a LISTENing connection, {} times: p50 {:.2} ms  p99 {:.2} ms",
        o.baseline,
        ms(baseline.value_at_quantile(0.5)),
        ms(baseline.value_at_quantile(0.99))
    );

    let instance = Instance::start(settings.clone(), pool.clone()).await?;
    let port = instance.port.ok_or_else(|| anyhow::anyhow!("the instance has no API"))?;
    let ctx = instance.engine.as_ref().ok_or_else(|| anyhow::anyhow!("the instance has no engine"))?.ctx.clone();
    let base = format!("http://127.0.0.1:{port}");
    let token = mint_application_jwt(app.id, &pair.private_pem, 3600)?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;

    // 3. N live calls.
    let started = Instant::now();
    let calls = place_calls(&client, &base, &token, o.calls).await?;
    let deadline = Instant::now() + Duration::from_secs(120 + o.calls as u64 / 20);
    loop {
        let (answered,): (i64,) = sqlx::query_as("SELECT count(*) FROM calls WHERE status = 'answered'").fetch_one(&admin).await?;
        if answered as usize >= o.calls {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {answered} of {} calls answered in time", o.calls);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "calls: {} placed and answered in {:.1} s (NCCO wait 7200 simulated s, time_scale {}); live legs on the worker: {}",
        calls.len(),
        started.elapsed().as_secs_f64(),
        o.time_scale,
        ctx.live_legs()
    );

    // 4. The commands.
    let sent = send_commands(&client, &base, &token, &calls, o.commands, o.concurrency).await;
    let live_after = ctx.live_legs();
    println!(
        "commands: {} sent by {} clients in {:.2} s = {:.0}/s; {} not accepted; PUT/DELETE round trip p50 {:.2} ms  p99 {:.2} ms; \
         live legs afterwards: {live_after}",
        sent.accepted + sent.refused.values().sum::<usize>(),
        o.concurrency,
        sent.elapsed.as_secs_f64(),
        o.commands as f64 / sent.elapsed.as_secs_f64(),
        sent.refused.values().sum::<usize>(),
        ms(sent.round_trip.value_at_quantile(0.5)),
        ms(sent.round_trip.value_at_quantile(0.99)),
    );
    for ((status, body), n) in &sent.refused {
        println!("  {n} x {status}: {body}");
    }

    // 5. Accepted -> applied, from the database's own clock at both ends.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (pending,): (i64,) = sqlx::query_as("SELECT count(*) FROM call_commands WHERE state = 'pending'").fetch_one(&admin).await?;
        if pending == 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{pending} commands still pending after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT action, state, (EXTRACT(EPOCH FROM applied_at - created_at) * 1000000)::bigint FROM call_commands",
    )
    .fetch_all(&admin)
    .await?;
    let mut overall = hist();
    let mut by_action: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut rejected = 0;
    for (action, state, us) in &rows {
        if state != "applied" {
            rejected += 1;
            continue;
        }
        let us = (*us).max(1) as u64;
        overall.saturating_record(us);
        by_action.entry(action.clone()).or_insert_with(hist).saturating_record(us);
    }
    println!("accepted (command stored) -> applied by the worker (effect in the call's history), {} applied, {rejected} rejected:", overall.len());
    println!(
        "  all        p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        ms(overall.value_at_quantile(0.5)),
        ms(overall.value_at_quantile(0.99)),
        ms(overall.max())
    );
    for (action, h) in &by_action {
        println!(
            "  {action:<10} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({})",
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
            h.len()
        );
    }
    let p50 = ms(overall.value_at_quantile(0.5));
    let p99 = ms(overall.value_at_quantile(0.99));
    let base_p99 = ms(baseline.value_at_quantile(0.99));
    let ratio = p99 / base_p99.max(0.001);
    let live_ok = live_after >= o.calls;
    let ok = p99 < TARGET_P99_MS && live_ok && rejected == 0 && sent.refused.is_empty() && overall.len() > 0;
    println!(
        "ratio: accepted->applied p99 / baseline INSERT+NOTIFY p99 = {ratio:.1}x\n\
         target: p99 < {TARGET_P99_MS} ms with {} live calls: {} ({p99:.2} ms; {live_after} live when the last command was sent)",
        o.calls,
        if ok { "yes" } else { "NO" }
    );

    // 6. Clean up: hang every call up.
    let _ = hang_up_all(&client, &base, &token, &calls).await;
    instance.stop().await;
    println!(
        "control_calls={} commands={} applied_p50_ms={p50:.2} applied_p99_ms={p99:.2} baseline_p99_ms={base_p99:.2} ratio={ratio:.2} \
         put_p99_ms={:.2} target_met={ok}",
        o.calls,
        o.commands,
        ms(sent.round_trip.value_at_quantile(0.99))
    );
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Round trips of a row stored and signalled in one statement, as the API accepts a command.
async fn notify_round_trips(admin: &PgPool, url: &str, n: usize) -> anyhow::Result<Histogram<u64>> {
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS bench_baseline (id BIGSERIAL PRIMARY KEY, body JSONB NOT NULL)")
        .execute(admin)
        .await?;
    let mut listener = PgListener::connect(url).await?;
    listener.listen("bench_baseline").await?;
    let mut h = hist();
    for _ in 0..n {
        let t = Instant::now();
        sqlx::query("WITH i AS (INSERT INTO bench_baseline (body) VALUES ('{\"action\":\"mute\"}') RETURNING id) SELECT pg_notify('bench_baseline', id::text) FROM i")
            .execute(admin)
            .await?;
        listener.recv().await?;
        h.saturating_record((t.elapsed().as_micros() as u64).max(1));
    }
    sqlx::raw_sql("DROP TABLE bench_baseline").execute(admin).await?;
    Ok(h)
}

async fn place_calls(client: &reqwest::Client, base: &str, token: &str, n: usize) -> anyhow::Result<Vec<Uuid>> {
    #[derive(serde::Deserialize)]
    struct Created {
        uuid: Uuid,
    }
    let body = serde_json::json!({
        "to": [{"type": "phone", "number": "447700900000"}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [{"action": "wait", "timeout": 7200}],
    });
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16.min(n) {
        let (client, next, url, token, body) = (client.clone(), next.clone(), format!("{base}/v1/calls"), token.to_string(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut created = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let resp = client.post(&url).bearer_auth(&token).json(&body).send().await?;
                anyhow::ensure!(resp.status().as_u16() == 201, "POST /v1/calls: {} {}", resp.status(), resp.text().await.unwrap_or_default());
                created.push(resp.json::<Created>().await?.uuid);
            }
            Ok(created)
        }));
    }
    let mut calls = Vec::with_capacity(n);
    for task in tasks {
        calls.extend(task.await??);
    }
    Ok(calls)
}

struct Sent {
    accepted: usize,
    refused: BTreeMap<(u16, String), usize>,
    round_trip: Histogram<u64>,
    elapsed: Duration,
}

/// Command i goes to call i mod N, and is the (i div N)-th of the rotation: each call gets its
/// commands in rotation order, spread over the whole run.
async fn send_commands(client: &reqwest::Client, base: &str, token: &str, calls: &[Uuid], k: usize, concurrency: usize) -> Sent {
    let next = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(calls.to_vec());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, calls, base, token) = (client.clone(), next.clone(), calls.clone(), base.to_string(), token.to_string());
        tasks.push(tokio::spawn(async move {
            let mut h = hist();
            let mut refused: BTreeMap<(u16, String), usize> = BTreeMap::new();
            let mut accepted = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= k {
                    break;
                }
                let uuid = calls[i % calls.len()];
                let request = match ROTATION[(i / calls.len()) % ROTATION.len()] {
                    "dtmf" => client.put(format!("{base}/v1/calls/{uuid}/dtmf")).json(&serde_json::json!({"digits": "1"})),
                    "talk" => client.put(format!("{base}/v1/calls/{uuid}/talk")).json(&serde_json::json!({"text": "hello there", "loop": 0})),
                    "talk stop" => client.delete(format!("{base}/v1/calls/{uuid}/talk")),
                    action => client.put(format!("{base}/v1/calls/{uuid}")).json(&serde_json::json!({"action": action})),
                };
                let t = Instant::now();
                match request.bearer_auth(&token).send().await {
                    Ok(resp) if resp.status().is_success() => {
                        h.saturating_record((t.elapsed().as_micros() as u64).max(1));
                        accepted += 1;
                    }
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let body: String = resp.text().await.unwrap_or_default().chars().take(200).collect();
                        *refused.entry((status, body)).or_default() += 1;
                    }
                    Err(e) => *refused.entry((0, e.to_string())).or_default() += 1,
                }
            }
            (accepted, refused, h)
        }));
    }
    let mut sent = Sent { accepted: 0, refused: BTreeMap::new(), round_trip: hist(), elapsed: Duration::ZERO };
    for task in tasks {
        let (accepted, refused, h) = task.await.expect("command client");
        sent.accepted += accepted;
        for (kind, n) in refused {
            *sent.refused.entry(kind).or_default() += n;
        }
        sent.round_trip.add(h).expect("histogram bounds");
    }
    sent.elapsed = start.elapsed();
    sent
}

async fn hang_up_all(client: &reqwest::Client, base: &str, token: &str, calls: &[Uuid]) -> anyhow::Result<()> {
    for chunk in calls.chunks(16) {
        let puts = chunk.iter().map(|uuid| {
            client.put(format!("{base}/v1/calls/{uuid}")).bearer_auth(token).json(&serde_json::json!({"action": "hangup"})).send()
        });
        futures_util::future::join_all(puts).await;
    }
    Ok(())
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}
