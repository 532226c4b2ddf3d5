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
//!  5. waits until every command is applied or rejected, then prints accepted (`created_at`, the
//!     start of the API's storing transaction) -> applied: the commit of the worker's write that
//!     reports the command with its effect in the call's history, as first seen by a watcher that
//!     polls the commands outstanding every `--commit-poll-ms` (the stored `applied_at` is that
//!     write's statement start, before it ran and committed: printed too, not judged); p50/p99/max
//!     overall and per action, the ratio of its p99 to the baseline's, and the PUT round trip;
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
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use tokio_util::sync::CancellationToken;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Live call control under load: accepted -> applied (committed) latency with N live calls.
#[derive(clap::Parser, Debug)]
#[command(name = "control", after_help = "Environment: DATABASE_URL (required), OUTDIAL__SECTION__KEY overrides as for the server.")]
struct Options {
    /// Live calls the commands go to
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = common::positive::<usize>)]
    calls: usize,
    /// Commands sent [default: 7 x calls: each call gets the whole rotation]
    #[arg(long, value_name = "K", value_parser = common::positive::<usize>)]
    commands: Option<usize>,
    /// Concurrent HTTP clients sending commands
    #[arg(long, value_name = "C", default_value_t = 8, value_parser = common::positive::<usize>)]
    concurrency: usize,
    /// INSERT+NOTIFY round trips measured for the baseline
    #[arg(long, value_name = "B", default_value_t = 1000, value_parser = common::positive::<usize>)]
    baseline: usize,
    /// Simulated time runs S times faster
    #[arg(long, value_name = "S", default_value_t = 10.0, value_parser = common::positive::<f64>)]
    time_scale: f64,
    /// How often the commit watcher looks for newly applied commands, milliseconds: a command's
    /// commit is seen at most this much (plus one query) after it happened
    #[arg(long, value_name = "MS", default_value_t = 2, value_parser = common::positive::<u64>)]
    commit_poll_ms: u64,
    #[command(flatten)]
    cargo: common::CargoBench,
}

impl Options {
    fn commands(&self) -> usize {
        self.commands.unwrap_or(self.calls * ROTATION.len())
    }
}

const TARGET_P99_MS: f64 = 50.0;
/// Commands in the order they are sent to each call: every one has an effect a callee notices.
const ROTATION: [&str; 7] = ["mute", "unmute", "earmuff", "unearmuff", "dtmf", "talk", "talk stop"];

fn main() -> ExitCode {
    common::main::<Options, _, _>("control", run)
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
    let client = common::http_client(settings.http.keep_alive_s, 64)?;

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

    // 4. The commands, watched until committed.
    let watch_stop = CancellationToken::new();
    let watcher = CommitWatcher::start(&url, Duration::from_millis(o.commit_poll_ms), watch_stop.clone()).await?;
    let sent = send_commands(&client, &base, &token, &calls, o.commands(), o.concurrency).await;
    let live_after = ctx.live_legs();
    println!(
        "commands: {} sent by {} clients in {:.2} s = {:.0}/s; {} not accepted; PUT/DELETE round trip p50 {:.2} ms  p99 {:.2} ms; \
         live legs afterwards: {live_after}",
        sent.accepted + sent.refused.values().sum::<usize>(),
        o.concurrency,
        sent.elapsed.as_secs_f64(),
        o.commands() as f64 / sent.elapsed.as_secs_f64(),
        sent.refused.values().sum::<usize>(),
        ms(sent.round_trip.value_at_quantile(0.5)),
        ms(sent.round_trip.value_at_quantile(0.99)),
    );
    for ((status, body), n) in &sent.refused {
        println!("  {n} x {status}: {body}");
    }

    // 5. Accepted -> applied, from the database's own clock at both ends: `created_at` (the
    // API's transaction start) to the commit of the worker's write, as first seen by the watcher.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (pending,): (i64,) = sqlx::query_as("SELECT count(*) FROM call_commands WHERE state = 'pending'").fetch_one(&admin).await?;
        if pending == 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{pending} commands still pending after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One more look after the last command left `pending`, then the watcher stops.
    tokio::time::sleep(Duration::from_millis(o.commit_poll_ms * 5)).await;
    watch_stop.cancel();
    let watch = watcher.finish().await?;
    type Row = (i64, String, String, DateTime<Utc>, Option<DateTime<Utc>>);
    let rows: Vec<Row> =
        sqlx::query_as("SELECT id, action, state, created_at, applied_at FROM call_commands").fetch_all(&admin).await?;
    let mut overall = hist();
    let mut statement = hist();
    let mut by_action: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let (mut rejected, mut unwatched) = (0, 0);
    let micros = |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).num_microseconds().unwrap_or(i64::MAX).max(1) as u64;
    for (id, action, state, created_at, applied_at) in &rows {
        if state != "applied" {
            rejected += 1;
            continue;
        }
        if let Some(applied_at) = applied_at {
            statement.saturating_record(micros(*created_at, *applied_at));
        }
        let Some(committed) = watch.seen.get(id) else {
            unwatched += 1;
            continue;
        };
        let us = micros(*created_at, *committed);
        overall.saturating_record(us);
        by_action.entry(action.clone()).or_insert_with(hist).saturating_record(us);
    }
    println!(
        "commit watcher: {} looks, every {} ms at most while commands were outstanding; {} commands learnt of by NOTIFY; \
         {unwatched} applied commands never seen committed; each commit fell within p50 {:.2} ms, p99 {:.2} ms before the look \
         that saw it (the figures below count that whole gap: an upper bound)",
        watch.polls,
        o.commit_poll_ms,
        watch.learnt,
        ms(watch.uncertainty.value_at_quantile(0.5)),
        ms(watch.uncertainty.value_at_quantile(0.99))
    );
    println!(
        "accepted (created_at: the API's transaction start) -> applied_at as stored (the start of the worker's applying statement, \
         before it ran and committed): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        ms(statement.value_at_quantile(0.5)),
        ms(statement.value_at_quantile(0.99)),
        ms(statement.max())
    );
    println!(
        "accepted -> applied and committed (the worker's write with the effect in the call's history is visible), {} applied, \
         {rejected} rejected:",
        overall.len()
    );
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
    let ok = p99 < TARGET_P99_MS && live_ok && rejected == 0 && unwatched == 0 && sent.refused.is_empty() && !overall.is_empty();
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
        "control_calls={} commands={} applied_p50_ms={p50:.2} applied_p99_ms={p99:.2} applied_at_statement_p99_ms={:.2} \
         baseline_p99_ms={base_p99:.2} ratio={ratio:.2} put_p99_ms={:.2} target_met={ok}",
        o.calls,
        o.commands(),
        ms(statement.value_at_quantile(0.99)),
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

/// When each command was first seen committed (applied or rejected): the database's clock at the
/// watcher's query that first saw it, taken after that query's snapshot, so never before the
/// commit. The watcher learns each command's id from the API's NOTIFY (sent at the API's commit)
/// and looks only for those still outstanding.
struct CommitWatch {
    seen: HashMap<i64, DateTime<Utc>>,
    learnt: usize,
    polls: u64,
    /// Per command seen: how long before the look that saw it the previous look was, or the
    /// command was learnt of if later (its commit fell in between): how precise its time is.
    uncertainty: Histogram<u64>,
}

/// The watcher on a thread and runtime of its own, with its own connections, so its looks never
/// wait behind the instance's tasks.
struct CommitWatcher(std::thread::JoinHandle<anyhow::Result<CommitWatch>>);

impl CommitWatcher {
    /// Returns once it listens, so every command sent afterwards is learnt of.
    async fn start(url: &str, every: Duration, stop: CancellationToken) -> anyhow::Result<CommitWatcher> {
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let url = url.to_string();
        let thread = std::thread::Builder::new().name("commit-watcher".into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await?;
                let mut listener = PgListener::connect(&url).await?;
                listener.listen(outdial::engine::commands::COMMANDS_CHANNEL).await?;
                let _ = ready_tx.send(());
                watch_commits(pool, listener, every, stop).await
            })
        })?;
        if ready.await.is_err() {
            // The thread ended before listening: its error says why.
            return Err(thread.join().map_err(|_| anyhow::anyhow!("the commit watcher panicked"))?.err().unwrap_or_else(|| anyhow::anyhow!("the commit watcher stopped")));
        }
        Ok(CommitWatcher(thread))
    }

    async fn finish(self) -> anyhow::Result<CommitWatch> {
        tokio::task::spawn_blocking(move || self.0.join()).await?.map_err(|_| anyhow::anyhow!("the commit watcher panicked"))?
    }
}

async fn watch_commits(admin: PgPool, mut listener: PgListener, every: Duration, stop: CancellationToken) -> anyhow::Result<CommitWatch> {
    #[derive(serde::Deserialize)]
    struct Carried {
        id: i64,
    }
    // recv is read in a task of its own: a select! must not drop a notification half-read.
    let (ids_tx, mut ids) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Ok(n) = listener.recv().await {
            if let Ok(c) = serde_json::from_str::<Carried>(n.payload()) {
                let _ = ids_tx.send(c.id);
            }
        }
    });
    let mut watch = CommitWatch { seen: HashMap::new(), learnt: 0, polls: 0, uncertainty: hist() };
    let mut previous_look: Option<DateTime<Utc>> = None;
    // (id, when its NOTIFY arrived)
    let mut outstanding: Vec<(i64, DateTime<Utc>)> = Vec::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    loop {
        tokio::select! {
            Some(id) = ids.recv() => {
                watch.learnt += 1;
                outstanding.push((id, Utc::now()));
                continue;
            }
            _ = tick.tick() => {}
            _ = stop.cancelled(), if !stopping => stopping = true,
        }
        while let Ok(id) = ids.try_recv() {
            watch.learnt += 1;
            outstanding.push((id, Utc::now()));
        }
        if !outstanding.is_empty() {
            let (at, done): (DateTime<Utc>, Vec<i64>) = sqlx::query_as(
                "SELECT clock_timestamp(), ARRAY(SELECT id FROM call_commands WHERE id = ANY($1) AND state <> 'pending')",
            )
            .bind(outstanding.iter().map(|(id, _)| *id).collect::<Vec<i64>>())
            .fetch_one(&admin)
            .await?;
            watch.polls += 1;
            for (id, learnt) in outstanding.iter().filter(|(id, _)| done.contains(id)) {
                watch.seen.entry(*id).or_insert(at);
                let since = previous_look.map_or(*learnt, |p| p.max(*learnt));
                watch.uncertainty.saturating_record((at - since).num_microseconds().unwrap_or(i64::MAX).max(1) as u64);
            }
            previous_look = Some(at);
            outstanding.retain(|(id, _)| !done.contains(id));
        }
        if stopping {
            break;
        }
    }
    reader.abort();
    Ok(watch)
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
