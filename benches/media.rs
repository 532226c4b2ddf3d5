//! Media at scale: N concurrent SIP calls to a SIPp trunk, each playing a looped stream and
//! recording (`--mode stream`, the default), or N two-party bridges (`--mode bridges`), or one
//! conversation of N members (`--mode conference`), measured at the wire, against a bare UDP
//! pacer sending as many streams as there are legs.
//!
//!   . scripts/db-env.sh outdial_media_bench && cargo bench --bench media -- [--calls 1000 --rate 200 --hold-seconds 35]
//!   . scripts/db-env.sh outdial_media_bench && cargo bench --bench media -- --mode bridges [--calls 200]
//!   . scripts/db-env.sh outdial_media_bench && cargo bench --bench media -- --mode conference [--calls 50]
//!
//! The other modes differ from `stream` in what the calls do and in the far end, which talks:
//!  - bridges: each call's NCCO is `[connect to a phone number]`, which Outdial dials through the
//!    same trunk: 2N SIP legs (SIPp answers each with a meter socket of its own), N bridges, each
//!    leg hearing the other's far end;
//!  - conference: each call's NCCO is `[conversation "bench"]`: N members of one conversation,
//!    each hearing the sum of the others (the room's mixing: N − 1 live inputs in each member's
//!    mixer, N (N − 1) in all);
//!  - the far end talks: each meter socket, once Outdial's first packet has come, sends a 1 kHz
//!    tone back in 20 ms PCMU packets to where Outdial's packets come from (meter.rs, `Talk`).
//!    Not SIPp: its audio (pcap play, rtp_stream) leaves from SIPp's media port, and Outdial's
//!    symmetric RTP would then send there instead of to the meter. The meter sorts every packet
//!    it gets (silence, the far ends' tone, other audio): a bridge or a conversation that carries
//!    the other side's voice shows as the tone at the other leg's socket;
//!  - what is printed besides: CPU per bridged call (and per leg) or per member, and Outdial's
//!    tick work (`media::totals().tick_work`: from a session clock's wake-up to its packet built,
//!    the mixing of what plays and of what it hears live, encoding, the taps) per tick p50 / p99
//!    / max, and all sessions' added up per 20 ms frame (in a conversation: its mixing per frame).
//!
//! One run, in order:
//!  1. the baseline: a bare UDP pacer in this process (benches/media/pacer.rs: one tokio task
//!     and socket per stream, a 20 ms interval on the stream's own grid, send) sends N streams of
//!     172-byte RTP packets, started at `--rate` a second (at random phases of the frame) and each
//!     lasting `--hold-seconds`, to N sockets of a wire meter (benches/media/meter.rs);
//!  2. resets the bench database (DATABASE_URL; its name must contain "bench"), migrates, creates
//!     an account, an application and one trunk at a SIPp running benches/media/uas.xml, which
//!     answers call i with the address of the meter's socket i (an injection file), so each
//!     call's RTP lands on a socket of its own;
//!  3. starts the webhook receiver (benches/common/receiver.rs), which also serves `/tone.wav`
//!     (1 s of 440 Hz, 8 kHz 16-bit), and one Instance (roles api,workers,webhooks; carrier.kind
//!     "sip" on 127.0.0.1; RTP ports 20000-32767, one per leg);
//!  4. places N calls at `--rate`, each `[record (in the background), stream tone.wav loop 0]`
//!     with `length_timer` = hold, so Outdial's media engine plays the tone in G.711 20 ms packets
//!     until it hangs up;
//!  5. waits for every `completed` and `record` webhook (a `record` event comes once its file
//!     is encoded, one per core at a time, so they trail the hang-ups), and prints for both runs,
//!     over the same kind of window (from 1 s after every stream flows to 1 s before the first one's hold ends):
//!     concurrent calls, packets/s, loss, send-time deviation p50/p99 at the wire, CPU per call,
//!     and the ratios of ours to the pacer's; and Outdial's own measure (`media::totals()`).
//!
//! Deviation at the wire (the meter's doc says more): the kernel stamps each packet as it
//! reaches its socket; per stream, deviation = (arrival − RTP timestamp's time) − the stream's
//! smallest such offset: how much later than its most punctual packet a packet came, on the
//! 20 ms grid of the sender's own clock. Ticks a clock skipped and lost packets are counted apart.
//! CPU per call: CPU time over the window ÷ window ÷ calls, in µs per second of call; for us this
//! process without the meter's and the receiver's threads (the media engine, the recorders, the
//! SIP stack, idle legs), for the pacer the same threads; SIPp and PostgreSQL apart.
//!
//! Targets are judged on a clean run only (every call placed, answered, completed and recorded,
//! one stream per meter socket, the pacer's streams all measured, a window of at least 10 s, and
//! a quiet machine: other processes took under 0.2 cores in each window): otherwise the run
//! prints "not judged" and exits 1 (a run whose targets are not met exits 1 too). Open files:
//! Outdial holds one UDP socket per leg and the meter one per stream, so `ulimit -n` must exceed
//! 2 × legs by a margin (it checks; `ulimit -n 65536` if your shell's is lower).
//!
//! The last line is machine-readable: `media_calls=… concurrent=… packets_per_s=… dev_p99_ms=… …`.

mod common;
#[path = "media/meter.rs"]
mod meter;
#[path = "media/pacer.rs"]
mod pacer;

use common::cpu::{CpuDelta, CpuSnapshot, HZ};
use common::load::{ms, place_calls, Minter};
use common::procs::{all_ticks, backend_ticks, machine_ticks, nofile_limit, proc_ticks, udp_errors, MachineTicks};
use common::receiver::Receiver;
use common::sipp::{sipp_installed, sipp_stat_last, Sipp};
use meter::{realtime_ns, Heard, Live, Meter, Talk, Wire};
use outdial::applications::{self, keys, ApplicationSpec};
use outdial::config::Settings;
use outdial::media::{totals, MediaTotals};
use outdial::startup::Instance;
use outdial::trunks::model::PasswordChange;
use outdial::trunks::TrunkSpec;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Concurrent SIP calls streaming (and recording), bridged or in one conversation, measured at the wire.
#[derive(clap::Parser, Debug)]
#[command(name = "media", after_help = "Environment: DATABASE_URL (required), OUTDIAL__SECTION__KEY overrides as for the server.")]
struct Options {
    /// What the calls do
    #[arg(long, value_enum, default_value_t = Mode::Stream)]
    mode: Mode,
    /// Calls placed: streams, bridges (of two legs each) or conversation members [default: 1000,
    /// 200, 50 by mode]. The pacer sends as many streams as there are legs
    #[arg(long, value_name = "N", value_parser = common::positive::<usize>)]
    calls: Option<usize>,
    /// Calls placed (and pacer streams started) per second
    #[arg(long, value_name = "R", default_value_t = 200.0, value_parser = common::positive::<f64>)]
    rate: f64,
    /// Seconds each call (and stream) lasts: its `length_timer`. The window is what is left after
    /// the ramp (calls / rate) and 1 s at each end; it must be 10 s at least
    #[arg(long, value_name = "H", default_value_t = 35, value_parser = common::positive::<u32>)]
    hold_seconds: u32,
    /// Concurrent HTTP clients placing calls
    #[arg(long, short = 'c', value_name = "C", default_value_t = 16, value_parser = common::positive::<usize>)]
    concurrency: usize,
    /// Server database pool size
    #[arg(long, value_name = "M", default_value_t = 16, value_parser = common::positive::<u32>)]
    max_connections: u32,
    /// UDP port of the SIPp trunk
    #[arg(long, value_name = "P", default_value_t = 15090)]
    sipp_port: u16,
    /// Skip the bare UDP pacer baseline
    #[arg(long)]
    no_baseline: bool,
    /// Give up waiting for `completed` and `record` webhooks after T s [default: hold + 60 +
    /// calls / 10: recordings are encoded one per core at a time]
    #[arg(long, value_name = "T", value_parser = common::positive::<f64>)]
    timeout_seconds: Option<f64>,
    #[command(flatten)]
    cargo: common::CargoBench,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Each call records and streams a looped tone; the far end is silent
    Stream,
    /// Each call connects a second SIP leg and the two are bridged; the far ends talk
    Bridges,
    /// Every call joins one conversation; the far ends talk
    Conference,
}

impl Mode {
    fn default_calls(self) -> usize {
        match self {
            Mode::Stream => 1000,
            Mode::Bridges => 200,
            Mode::Conference => 50,
        }
    }

    /// SIP legs for `calls` calls.
    fn legs(self, calls: usize) -> usize {
        match self {
            Mode::Bridges => 2 * calls,
            Mode::Stream | Mode::Conference => calls,
        }
    }

    /// What a leg is called in the figures.
    fn unit(self) -> &'static str {
        match self {
            Mode::Stream => "call",
            Mode::Bridges => "leg",
            Mode::Conference => "member",
        }
    }
}

fn main() -> ExitCode {
    common::main::<Options, _, _>("media", run)
}

/// FreeSWITCH's default session limit (`max-sessions` 1000).
const TARGET_CALLS: usize = 1000;
const TARGET_P99_MS: f64 = 5.0;
/// Left out at each end of the window: streams starting, the first ones ending.
const SETTLE: Duration = Duration::from_secs(1);
const MIN_WINDOW_S: f64 = 10.0;
/// A run is judged only when other processes took less than this from the machine in each window.
const MAX_OTHERS_CORES: f64 = 0.2;
/// Outdial's RTP ports: below the kernel's ephemeral range, where the meter's sockets are.
const RTP_PORTS: (u16, u16) = (20000, 32767);
const METER_THREAD: &str = "rtp-meter";
const FAR_END_THREAD: &str = "rtp-far-end";
/// What the far ends say in the bridges and conference modes: a 1 kHz tone at -20 dBFS (a
/// speaking level), its phase off the samples' grid so that no sample is zero.
const FAR_END_HZ: f64 = 1000.0;
const FAR_END_AMPLITUDE: f64 = 3277.0;
/// In the bridges and conference modes, a run is judged only when at least this share of the
/// window's packets carried the far ends' tone (the other side's voice got through).
const MIN_FAR_END_SHARE: f64 = 0.99;

async fn run(o: Options) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(sipp_installed(), "sipp is not installed (Debian package sip-tester)");
    let n = o.calls.unwrap_or(o.mode.default_calls());
    let legs = o.mode.legs(n);
    let unit = o.mode.unit();
    let hold = Duration::from_secs(u64::from(o.hold_seconds));
    let ramp_s = n as f64 / o.rate;
    // Calls are answered some 100 ms after their POST: a margin on top of the ramp.
    let expected_window_s = hold.as_secs_f64() - ramp_s - 2.0 * SETTLE.as_secs_f64() - 0.5;
    anyhow::ensure!(
        expected_window_s >= MIN_WINDOW_S,
        "--hold-seconds {} leaves a window of {expected_window_s:.1} s after a ramp of {ramp_s:.1} s ({n} calls at {}/s): \
         it must be {MIN_WINDOW_S} s at least (raise --hold-seconds or --rate)",
        o.hold_seconds,
        o.rate
    );
    let nofile = nofile_limit();
    println!(
        "file descriptors: limit {} (Outdial holds one UDP socket per leg and the meter one per stream: ~{} at the peak)",
        nofile.map_or("unknown".to_string(), |l| l.to_string()),
        2 * legs
    );
    if let Some(limit) = nofile {
        anyhow::ensure!(limit > 2 * legs as u64 + 1_000, "raise the open files limit first: ulimit -n 65536 (now {limit})");
    }
    println!("machine: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    let work = std::env::temp_dir().join(format!("outdial-media-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let payloads = Arc::new(tone_payloads());

    // 1. The baseline: the bare pacer.
    let talk = (o.mode != Mode::Stream).then(|| Talk { payload: far_end_payload(), thread: FAR_END_THREAD });
    let pacer = if o.no_baseline { None } else { Some(pacer_run(&o, legs, talk, payloads.clone()).await?) };
    if let Some(p) = &pacer {
        p.print("pacer", legs, "stream");
    }

    // 2. Database, settings, account, application, trunk.
    let (url, admin, db_name) = common::reset_bench_database("media-bench", "outdial_media_bench").await?;
    let mut settings = Settings::load(None)?;
    settings.database.url = url.clone();
    settings.database.max_connections = o.max_connections;
    settings.http.host = "127.0.0.1".into();
    settings.http.port = 0;
    settings.limits.other_requests_per_second = 1_000_000;
    settings.engine.roles = vec!["api".into(), "workers".into(), "webhooks".into()];
    settings.engine.max_live_legs = settings.engine.max_live_legs.max(legs);
    settings.webhooks.allow_private_addresses = true;
    settings.carrier.kind = "sip".into();
    settings.carrier.time_scale = 1.0;
    settings.sip.listen = "127.0.0.1:0".into();
    settings.sip.tcp = false;
    settings.sip.rtp_port_min = RTP_PORTS.0;
    settings.sip.rtp_port_max = RTP_PORTS.1;
    // The pool's slow-acquire warnings (one per query) would bury the figures when the calls end.
    settings.log.filter = "warn,sqlx::pool::acquire=error".into();
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

    // The meter's sockets, one per leg, and the trunk answering leg i with socket i.
    let meter = Meter::start(legs, METER_THREAD, talk, talk.map(|_| FAR_END_HZ))?;
    let ports_csv = work.join("ports.csv");
    let mut csv = String::from("SEQUENTIAL\n");
    for addr in &meter.addrs {
        csv.push_str(&format!("{};{}\n", addr.ip(), addr.port()));
    }
    std::fs::write(&ports_csv, csv)?;
    let mut trunk = Sipp::trunk("media/uas.xml", o.sipp_port, &work.join("trunk"), &["-inf".as_ref(), ports_csv.as_os_str()])?;
    println!(
        "trunk: SIPp (pid {}) at 127.0.0.1:{} running benches/media/uas.xml, answering leg i with meter socket i ({} sockets, {}..){}",
        trunk.pid(),
        o.sipp_port,
        meter.addrs.len(),
        meter.addrs[0],
        if talk.is_some() {
            format!(
                "; each socket talks back once Outdial's packets come (a {FAR_END_HZ} Hz tone in 20 ms PCMU packets from thread {FAR_END_THREAD})"
            )
        } else {
            String::new()
        }
    );

    // 3. Receiver (serving the tone), application, instance.
    let receiver = Receiver::serving(legs, vec![("/tone.wav".into(), "audio/wav", tone_wav().into())])?;
    let event_url = format!("http://127.0.0.1:{}/events", receiver.port);
    let tone_url = format!("http://127.0.0.1:{}/tone.wav", receiver.port);
    let pair = keys::generate();
    let spec = ApplicationSpec {
        name: "media bench".into(),
        public_key_pem: Some(pair.public_pem.clone()),
        event: Some((event_url.clone(), "POST".into())),
        ..Default::default()
    };
    let app = applications::repo::insert(&pool, account.account_id, &spec, &pair.public_pem).await?;
    let instance = Instance::start(settings.clone(), pool.clone()).await?;
    let port = instance.port.ok_or_else(|| anyhow::anyhow!("the instance has no API"))?;
    let ctx = instance.engine.as_ref().ok_or_else(|| anyhow::anyhow!("the instance has no engine"))?.ctx.clone();
    let base = format!("http://127.0.0.1:{port}");
    let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
    println!(
        "instance: in process at {base}, roles api,workers,webhooks, carrier {} at {} (UDP), RTP {}-{}; receiver at {event_url}, \
         serving {tone_url}; machine has {cores} cores",
        ctx.carrier.name(),
        ctx.carrier.signalling_address().map_or("?".to_string(), |a| a.to_string()),
        RTP_PORTS.0,
        RTP_PORTS.1,
    );

    // 4. Tokens, then the calls.
    let minter = Minter { app_id: app.id, pem: Arc::new(pair.private_pem) };
    let tokens = Arc::new(minter.mint_parallel(n).await?);
    let (ncco, what) = match o.mode {
        Mode::Stream => (
            serde_json::json!([{"action": "record"}, {"action": "stream", "streamUrl": [tone_url], "loop": 0}]),
            "[record, stream tone.wav loop 0]",
        ),
        Mode::Bridges => (
            serde_json::json!([{"action": "connect", "endpoint": [{"type": "phone", "number": "447700900002"}]}]),
            "[connect to 447700900002 through the same trunk] (two legs bridged)",
        ),
        Mode::Conference => (serde_json::json!([{"action": "conversation", "name": "bench"}]), "[conversation bench] (one room)"),
    };
    let body = serde_json::json!({
        "to": [{"type": "phone", "number": "447700900000"}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": ncco,
        "length_timer": o.hold_seconds,
        "event_url": [event_url],
    })
    .to_string();
    println!(
        "calls: {n} at {}/s through trunk sipp, each {what}, ended by Outdial's BYE at length_timer {} s: {legs} SIP legs; \
         {} clients POST /v1/calls ({} JWTs pre-minted)",
        o.rate,
        o.hold_seconds,
        o.concurrency,
        tokens.len()
    );
    let client = common::http_client(settings.http.keep_alive_s, o.concurrency * 2)?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stop = CancellationToken::new();
    let rows = Arc::new(Mutex::new(Vec::new()));
    let sampler_task = tokio::spawn(sampler(Some(ctx.clone()), meter.live.clone(), rows.clone(), stop.clone()));
    let posted_ok = Arc::new(AtomicUsize::new(0));
    let load = place_calls(&client, &base, tokens, &body, n, o.concurrency, Some(o.rate), posted_ok).await;
    println!(
        "placed: {} created (201), {} errors in {:.2} s; POST latency p50 {:.1} ms p99 {:.1} ms",
        load.created.len(),
        load.errors,
        (load.end - load.start).as_secs_f64(),
        ms(load.hist.value_at_quantile(0.5)),
        ms(load.hist.value_at_quantile(0.99)),
    );
    if load.errors > 0 {
        println!("errors:\n{}", load.error_report());
    }
    let sipp = (trunk.pid(), trunk.stat_file());
    let take = || Mark::take(Some(&ctx), Some((sipp.0, &sipp.1)), Some(&db_name));
    let marks = window(&meter.live, o.mode.legs(load.created.len()), hold, Instant::now() + Duration::from_secs(30), take).await;

    // 5. Every leg ends (Outdial's BYE at the call's length_timer), in the stream mode with its
    // call's `record` event.
    let expected = load.created.len();
    let expected_legs = o.mode.legs(expected);
    let expected_recordings = if o.mode == Mode::Stream { expected } else { 0 };
    let timeout = Duration::from_secs_f64(o.timeout_seconds.unwrap_or(hold.as_secs_f64() + 60.0 + n as f64 / 10.0));
    let mut timed_out = false;
    while receiver.state.completed.load(Ordering::Relaxed) < expected_legs
        || receiver.state.recordings.load(Ordering::Relaxed) < expected_recordings
    {
        if load.end.elapsed() > timeout {
            timed_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let live_after = totals().live_sessions();
    stop.cancel();
    sampler_task.await?;
    let far_end_packets = meter.live.far_end_packets.load(Ordering::Relaxed);
    let streams = meter.finish();
    instance.stop().await;
    pool.close().await;
    let sipp_result = trunk.stop().await;
    drop(admin);

    // Figures.
    let arrivals = receiver.state.arrivals.lock().unwrap().clone();
    let mut per_call: HashMap<Uuid, [usize; 6]> = HashMap::new();
    for a in &arrivals {
        let counts = per_call.entry(a.uuid).or_default();
        if a.recording {
            counts[5] += 1;
        } else {
            counts[a.status as usize] += 1;
        }
    }
    let created: Vec<Uuid> = load.created.iter().map(|(u, _)| *u).collect();
    let answered = created.iter().filter(|u| per_call.get(*u).is_some_and(|c| c[2] == 1)).count();
    let completed = created.iter().filter(|u| per_call.get(*u).is_some_and(|c| c[3] == 1)).count();
    let recorded = created.iter().filter(|u| per_call.get(*u).is_some_and(|c| c[5] == 1)).count();
    // The legs `connect` dialled: every other uuid the events name.
    let placed: std::collections::HashSet<Uuid> = created.iter().copied().collect();
    let connected = per_call.iter().filter(|(u, _)| !placed.contains(*u));
    let (connected_answered, connected_completed) =
        connected.fold((0, 0), |(a, c), (_, counts)| (a + usize::from(counts[2] == 1), c + usize::from(counts[3] == 1)));
    println!("--- timeline (t from the first POST; streams = meter sockets that have received a packet) ---");
    println!("{:>6} {:>9} {:>9} {:>8} {:>10}", "t s", "live legs", "media", "streams", "packets/s");
    let rows = std::mem::take(&mut *rows.lock().unwrap());
    let k = rows.len().div_ceil(40).max(1);
    for (i, r) in rows.iter().enumerate() {
        if i % k == 0 || i + 1 == rows.len() {
            println!(
                "{:>6.1} {:>9} {:>9} {:>8} {:>10.0}",
                r.t,
                r.live_legs.map_or("-".into(), |l| l.to_string()),
                r.media_live,
                r.streams,
                r.packets_per_s
            );
        }
    }
    println!("--- results ---");
    println!(
        "calls: {expected} placed, {answered} answered, {completed} completed, {recorded} with their `record` event (one each){}; \
         {} GETs of tone.wav (the audio cache fetches a URL once); {}; media sessions still live after the run: {live_after}{}",
        if o.mode == Mode::Bridges {
            format!("; legs dialled by connect: {connected_answered} answered, {connected_completed} completed")
        } else {
            String::new()
        },
        receiver.state.files_served.load(Ordering::Relaxed),
        sipp_result.summary(),
        if talk.is_some() { format!("; the talking far ends sent {far_end_packets} packets") } else { String::new() }
    );
    let ours = match &marks {
        Ok((start, end)) => Some(Run::build(&streams, start, end)),
        Err(e) => {
            println!("no window: {e}");
            None
        }
    };
    if let Some(r) = &ours {
        r.print("outdial", legs, unit);
        if let Some(m) = &r.media {
            let d = &m.send_deviation;
            println!(
                "  Outdial's own measure (media::totals() over the window: send time − the clock's deadline, 50 µs buckets): {} packets sent \
                 ({:.0}/s), {} send errors, {} ticks skipped; deviation p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max ≤ {:.2} ms",
                m.packets_sent,
                m.packets_sent as f64 / r.wire.seconds.max(1e-9),
                m.send_errors,
                m.ticks_skipped,
                d.quantile(0.5).as_secs_f64() * 1e3,
                d.quantile(0.99).as_secs_f64() * 1e3,
                d.quantile(0.999).as_secs_f64() * 1e3,
                d.max().as_secs_f64() * 1e3,
            );
            let w = &m.tick_work;
            let per_frame = w.total().as_secs_f64() / (r.wire.seconds.max(1e-9) / 0.020);
            println!(
                "  tick work (media::totals().tick_work over the window: from a session clock's wake-up to its packet built: mixing, \
                 encoding, the taps; buckets within 6.25%): {} ticks; per tick p50 {:.1} µs  p99 {:.1} µs  max ≤ {:.0} µs  mean {:.1} µs; \
                 all {legs} sessions' per 20 ms frame: {:.3} ms ({:.1}% of a core){}",
                w.count(),
                w.quantile(0.5).as_secs_f64() * 1e6,
                w.quantile(0.99).as_secs_f64() * 1e6,
                w.max().as_secs_f64() * 1e6,
                w.mean().as_secs_f64() * 1e6,
                per_frame * 1e3,
                per_frame / 0.020 * 100.0,
                if o.mode == Mode::Conference {
                    format!(": the conversation's mixing, each member hearing the sum of the {} others", legs.saturating_sub(1))
                } else {
                    String::new()
                }
            );
        }
        if o.mode == Mode::Bridges {
            println!(
                "  CPU per bridged call (two legs, a bridge): {:.0} µs of CPU per second of bridged call ({:.0} per leg); {:.0} bridged calls per core",
                r.us_per_call_s(n),
                r.us_per_call_s(legs),
                n as f64 * r.wire.seconds / r.process_s.max(1e-9)
            );
        }
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    if let (Some(r), Some(p)) = (&ours, &pacer) {
        println!(
            "ratios ours / pacer: deviation p50 {:.2}x, p99 {:.2}x; CPU per {unit} {:.1}x ({:.0} / {:.0} µs per second of {unit} / of stream)",
            ratio(r.wire.ms(0.5), p.wire.ms(0.5)),
            ratio(r.wire.ms(0.99), p.wire.ms(0.99)),
            ratio(r.us_per_call_s(legs), p.us_per_call_s(legs)),
            r.us_per_call_s(legs),
            p.us_per_call_s(legs),
        );
    }

    // Targets, judged on a clean run only.
    let mut faults = Vec::new();
    if load.errors > 0 {
        faults.push(format!("{} POST errors", load.errors));
    }
    if timed_out {
        faults.push("timed out waiting for `completed` and `record` webhooks".to_string());
    }
    if answered < n || completed < n || (o.mode == Mode::Stream && recorded < n) {
        faults.push(format!("of {n} calls {answered} answered, {completed} completed, {recorded} recorded (once each)"));
    }
    if o.mode == Mode::Bridges && (connected_answered < n || connected_completed < n) {
        faults.push(format!("of the {n} legs connect dials {connected_answered} answered, {connected_completed} completed"));
    }
    if sipp_result.failed > 0 {
        faults.push(format!("SIPp counted {} failed calls", sipp_result.failed));
    }
    for (name, run) in [("outdial", ours.as_ref()), ("pacer", pacer.as_ref())] {
        let Some(r) = run else {
            if name == "outdial" || !o.no_baseline {
                faults.push(format!("{name}: no measured window"));
            }
            continue;
        };
        if r.wire.streams != legs || r.wire.mixed > 0 {
            faults.push(format!("{name}: {} of {legs} meter sockets received a stream, {} more than one", r.wire.streams, r.wire.mixed));
        }
        if r.wire.seconds < MIN_WINDOW_S {
            faults.push(format!("{name}: a window of {:.1} s (< {MIN_WINDOW_S} s)", r.wire.seconds));
        }
        if r.others_cores() > MAX_OTHERS_CORES {
            faults.push(format!(
                "{name}: the machine was not quiet (other processes took {:.2} cores in the window; at most {MAX_OTHERS_CORES})",
                r.others_cores()
            ));
        }
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
    let concurrent = ours.as_ref().map_or(0, |r| r.wire.concurrent);
    let p99 = ours.as_ref().map_or(f64::NAN, |r| r.wire.ms(0.99));
    let whole = ours.as_ref().is_some_and(|r| r.wire.window().lost == 0 && r.wire.window().skipped_ticks == 0);
    // The stream mode's target is FreeSWITCH's 1,000 sessions; the others', every leg asked for.
    let target_legs = if o.mode == Mode::Stream { TARGET_CALLS } else { legs };
    let (concurrent_ok, p99_ok) = (concurrent >= target_legs, p99 < TARGET_P99_MS);
    let far_end_share = ours.as_ref().and_then(|r| r.wire.window().far_end_share());
    let heard_ok = far_end_share.is_none_or(|share| share >= MIN_FAR_END_SHARE);
    println!(
        "targets: {target_legs} concurrent {unit}s: {} ({concurrent} streams through the whole window); send-time deviation p99 < {TARGET_P99_MS} ms \
         at the wire: {} ({p99:.2} ms); every packet of the window sent (no loss, no skipped tick): {}{}",
        verdict(concurrent_ok),
        verdict(p99_ok),
        verdict(whole),
        far_end_share.map_or(String::new(), |share| format!(
            "; the other side's voice heard (at least {:.0}% of the window's packets carry the far ends' tone): {} ({:.2}%)",
            MIN_FAR_END_SHARE * 100.0,
            verdict(heard_ok),
            share * 100.0
        )),
    );
    let all_ok = clean && concurrent_ok && p99_ok && whole && heard_ok;
    let field = |r: Option<&Run>, f: &dyn Fn(&Run) -> String| r.map_or("NA".to_string(), f);
    let tick_work = |f: &dyn Fn(&outdial::media::WorkHistogram) -> String| {
        ours.as_ref().and_then(|r| r.media.as_ref()).map_or("NA".to_string(), |m| f(&m.tick_work))
    };
    println!(
        "media_calls={n} concurrent={concurrent} window_s={} packets_per_s={} lost={} skipped_ticks={} skipped_ticks_outside={} \
         dev_p50_ms={} dev_p99_ms={p99:.2} \
         own_dev_p99_ms={} cpu_us_per_call_s={} cpu_us_per_call_s_sipp={} cpu_us_per_call_s_postgres={} pacer_packets_per_s={} \
         pacer_dev_p50_ms={} pacer_dev_p99_ms={} pacer_cpu_us_per_call_s={} recorded={recorded} \
         mode={} legs={legs} tick_work_p50_us={} tick_work_p99_us={} tick_work_max_us={} tick_work_per_frame_ms={} \
         cpu_us_per_bridge_s={} far_end_share={} clean={clean} targets_met={all_ok}",
        field(ours.as_ref(), &|r| format!("{:.1}", r.wire.seconds)),
        field(ours.as_ref(), &|r| format!("{:.0}", r.wire.packets_per_s())),
        field(ours.as_ref(), &|r| r.wire.window().lost.to_string()),
        field(ours.as_ref(), &|r| r.wire.window().skipped_ticks.to_string()),
        field(ours.as_ref(), &|r| (r.wire.parts[0].skipped_ticks + r.wire.parts[2].skipped_ticks).to_string()),
        field(ours.as_ref(), &|r| format!("{:.2}", r.wire.ms(0.5))),
        field(ours.as_ref(), &|r| r.media.as_ref().map_or("NA".into(), |m| format!("{:.2}", m.send_deviation.quantile(0.99).as_secs_f64() * 1e3))),
        field(ours.as_ref(), &|r| format!("{:.0}", r.us_per_call_s(legs))),
        field(ours.as_ref(), &|r| r.sipp_s.map_or("NA".into(), |s| format!("{:.1}", s * 1e6 / r.wire.seconds / legs as f64))),
        field(ours.as_ref(), &|r| format!("{:.1}", r.backends_s * 1e6 / r.wire.seconds / legs as f64)),
        field(pacer.as_ref(), &|r| format!("{:.0}", r.wire.packets_per_s())),
        field(pacer.as_ref(), &|r| format!("{:.2}", r.wire.ms(0.5))),
        field(pacer.as_ref(), &|r| format!("{:.2}", r.wire.ms(0.99))),
        field(pacer.as_ref(), &|r| format!("{:.0}", r.us_per_call_s(legs))),
        format!("{:?}", o.mode).to_lowercase(),
        tick_work(&|w| format!("{:.1}", w.quantile(0.5).as_secs_f64() * 1e6)),
        tick_work(&|w| format!("{:.1}", w.quantile(0.99).as_secs_f64() * 1e6)),
        tick_work(&|w| format!("{:.0}", w.max().as_secs_f64() * 1e6)),
        field(ours.as_ref(), &|r| r.media.as_ref().map_or("NA".into(), |m| {
            format!("{:.3}", m.tick_work.total().as_secs_f64() * 1e3 / (r.wire.seconds / 0.020))
        })),
        field(ours.as_ref(), &|r| if o.mode == Mode::Bridges { format!("{:.0}", r.us_per_call_s(n)) } else { "NA".into() }),
        far_end_share.map_or("NA".into(), |share| format!("{share:.4}")),
    );
    if clean {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        println!("SIPp's files (statistics, errors, the injection file) kept in {}", work.display());
    }
    Ok(if clean && all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

// ---------------------------------------------------------------------------------------------
// The baseline.

/// The bare pacer's `n` streams to a meter of their own, measured as ours are; with `talk`, the
/// meter's sockets talk back and the pacer reads (and drops) what they say.
async fn pacer_run(o: &Options, n: usize, talk: Option<Talk>, payloads: Arc<Vec<[u8; 160]>>) -> anyhow::Result<Run> {
    let hold = Duration::from_secs(u64::from(o.hold_seconds));
    let meter = Meter::start(n, METER_THREAD, talk, None)?;
    let start = Instant::now() + Duration::from_millis(200);
    println!(
        "baseline: a bare UDP pacer in this process sends {n} streams (172-byte RTP every 20 ms, one task and socket each), \
         started at {}/s and each lasting {} s, to {n} meter sockets{}",
        o.rate,
        o.hold_seconds,
        if talk.is_some() { ", which talk back (each task also reads its socket and drops what comes)" } else { "" }
    );
    let tasks = pacer::start(&meter.addrs, start, o.rate, hold, payloads, talk.is_some()).await?;
    let stop = CancellationToken::new();
    let rows = Arc::new(Mutex::new(Vec::new()));
    let sampler_task = tokio::spawn(sampler(None, meter.live.clone(), rows, stop.clone()));
    let marks = window(&meter.live, n, hold, Instant::now() + Duration::from_secs_f64(n as f64 / o.rate + 30.0), || Mark::take(None, None, None)).await;
    let (mut sent, mut received) = (0, 0);
    for task in tasks {
        let (s, r) = task.await?;
        sent += s;
        received += r;
    }
    stop.cancel();
    sampler_task.await?;
    let streams = meter.finish();
    let (start, end) = marks?;
    let run = Run::build(&streams, &start, &end);
    println!("baseline: the pacer sent {sent} packets in all and received {received}");
    Ok(run)
}

// ---------------------------------------------------------------------------------------------
// The window and what is measured over it.

/// What the bench notes at each end of the window.
struct Mark {
    cpu: CpuSnapshot,
    ns: i64,
    sipp_pid: Option<u32>,
    sipp_ticks: Option<u64>,
    /// SIPp's current calls (its statistics file, written every second).
    sipp_current: Option<u64>,
    backends: HashMap<u32, u64>,
    media: MediaTotals,
    live_legs: Option<usize>,
    udp: (u64, u64),
    /// Every process (to name what else ran), and the machine's ticks by kind.
    procs: HashMap<u32, (String, u64)>,
    machine: MachineTicks,
    /// /proc/loadavg's first three fields.
    loadavg: String,
}

impl Mark {
    fn take(ctx: Option<&Arc<outdial::engine::EngineCtx>>, sipp: Option<(u32, &PathBuf)>, db: Option<&str>) -> Mark {
        Mark {
            ns: realtime_ns(),
            media: totals(),
            live_legs: ctx.map(|c| c.live_legs()),
            sipp_pid: sipp.map(|(pid, _)| pid),
            sipp_ticks: sipp.and_then(|(pid, _)| proc_ticks(pid)),
            sipp_current: sipp.and_then(|(_, stat)| sipp_stat_last(stat)).map(|s| s.current),
            backends: db.map(backend_ticks).unwrap_or_default(),
            udp: udp_errors(),
            procs: all_ticks(),
            machine: machine_ticks(),
            loadavg: std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" "),
            cpu: CpuSnapshot::take(),
        }
    }
}

/// Waits until `n` streams flow, then marks the window: from SETTLE after that until SETTLE
/// before the first stream's hold ends (when the first calls start hanging up).
async fn window(live: &Live, n: usize, hold: Duration, deadline: Instant, mark: impl Fn() -> Mark) -> anyhow::Result<(Mark, Mark)> {
    while live.streams_started.load(Ordering::Relaxed) < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {n} streams reached the meter",
            live.streams_started.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let start = mark();
    let end_ns = live.first_ns.load(Ordering::Relaxed) + (hold - SETTLE).as_nanos() as i64;
    let wait_ns = end_ns - realtime_ns();
    if wait_ns > 0 {
        tokio::time::sleep(Duration::from_nanos(wait_ns as u64)).await;
    }
    Ok((start, mark()))
}

/// One run (ours or the pacer's) over its window.
struct Run {
    wire: Wire,
    cpu: CpuDelta,
    /// This process's CPU seconds without the meter's, the far ends' and the receiver's threads.
    process_s: f64,
    meter_s: f64,
    far_end_s: f64,
    sipp_s: Option<f64>,
    backends_s: f64,
    media: Option<MediaTotals>,
    live_legs: (Option<usize>, Option<usize>),
    sipp_current: (Option<u64>, Option<u64>),
    media_live: (u64, u64),
    udp_drops: u64,
    /// The busiest other processes (not this one, SIPp or PostgreSQL): name, CPU seconds.
    others: Vec<(String, f64)>,
    /// The machine's CPU seconds: interrupts (softirq: loopback delivery), steal, all busy.
    interrupts_s: f64,
    steal_s: f64,
    busy_s: f64,
    /// The load averages at the window's end (1, 5, 15 min).
    loadavg: String,
}

impl Run {
    fn build(streams: &[meter::Stream], start: &Mark, end: &Mark) -> Run {
        let cpu = end.cpu.since(&start.cpu);
        let (meter_group, far_end_group) = (format!("other: {METER_THREAD}"), format!("other: {FAR_END_THREAD}"));
        let process_s =
            cpu.groups.iter().filter(|(g, _)| **g != meter_group && **g != far_end_group && *g != "webhook receiver").map(|(_, s)| s).sum();
        let meter_s = cpu.groups.get(&meter_group).copied().unwrap_or(0.0);
        let far_end_s = cpu.groups.get(&far_end_group).copied().unwrap_or(0.0);
        let backends_s =
            end.backends.iter().map(|(pid, t)| t.saturating_sub(*start.backends.get(pid).unwrap_or(&0))).sum::<u64>() as f64 / HZ;
        let media = end.media.since(&start.media);
        let own = std::process::id();
        let mut others: Vec<(String, f64)> = end
            .procs
            .iter()
            .filter(|(pid, (comm, _))| **pid != own && Some(**pid) != start.sipp_pid && comm != "postgres")
            .map(|(pid, (comm, t))| (comm.clone(), t.saturating_sub(start.procs.get(pid).map_or(0, |p| p.1)) as f64 / HZ))
            .filter(|(_, s)| *s > 0.0)
            .collect();
        others.sort_by(|a, b| b.1.total_cmp(&a.1));
        others.truncate(4);
        let (m0, m1) = (start.machine, end.machine);
        let busy = |m: MachineTicks| m.user + m.system + m.interrupts + m.steal;
        Run {
            others,
            interrupts_s: m1.interrupts.saturating_sub(m0.interrupts) as f64 / HZ,
            steal_s: m1.steal.saturating_sub(m0.steal) as f64 / HZ,
            busy_s: busy(m1).saturating_sub(busy(m0)) as f64 / HZ,
            loadavg: end.loadavg.clone(),
            wire: Wire::measure(streams, start.ns, end.ns),
            cpu,
            process_s,
            meter_s,
            far_end_s,
            sipp_s: start.sipp_ticks.zip(end.sipp_ticks).map(|(a, b)| b.saturating_sub(a) as f64 / HZ),
            backends_s,
            media: (media.packets_sent > 0).then_some(media),
            live_legs: (start.live_legs, end.live_legs),
            sipp_current: (start.sipp_current, end.sipp_current),
            media_live: (start.media.live_sessions(), end.media.live_sessions()),
            udp_drops: end.udp.0.saturating_sub(start.udp.0),
        }
    }

    /// Cores that other processes took from the machine in the window.
    fn others_cores(&self) -> f64 {
        let ours = self.cpu.groups.values().sum::<f64>() + self.sipp_s.unwrap_or(0.0) + self.cpu.postgres + self.interrupts_s;
        ((self.busy_s - ours) / self.cpu.wall.max(1e-9)).max(0.0)
    }

    /// This process's CPU per call (or leg, or stream: `n` of them): µs of CPU per second of it.
    fn us_per_call_s(&self, n: usize) -> f64 {
        self.process_s * 1e6 / self.wire.seconds.max(1e-9) / n as f64
    }

    /// The figures of a run of `n` streams, each a `unit` (call, leg, member or stream).
    fn print(&self, name: &str, n: usize, unit: &str) {
        let w = &self.wire;
        let legs = |l: Option<usize>| l.map_or("-".to_string(), |l| l.to_string());
        let sipp = |l: Option<u64>| l.map_or("-".to_string(), |l| l.to_string());
        println!(
            "{name}: window {:.1} s; concurrent: {} of {} streams flowing through all of it{}",
            w.seconds,
            w.concurrent,
            w.streams,
            if self.live_legs.0.is_some() {
                format!(
                    " (at its start / end: engine live legs {} / {}, media sessions {} / {}, SIPp's current calls {} / {})",
                    legs(self.live_legs.0),
                    legs(self.live_legs.1),
                    self.media_live.0,
                    self.media_live.1,
                    sipp(self.sipp_current.0),
                    sipp(self.sipp_current.1)
                )
            } else {
                String::new()
            }
        );
        let window = w.window();
        println!(
            "  at the wire: {:.0} packets/s ({} in the window; {:.1} per stream per second), {} lost, {} ticks skipped; \
             UDP receive-buffer drops on the machine in the window: {}",
            w.packets_per_s(),
            window.packets,
            w.packets_per_s() / n.max(1) as f64,
            window.lost,
            window.skipped_ticks,
            self.udp_drops
        );
        println!(
            "  send-time deviation at the wire: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
            w.ms(0.5),
            w.ms(0.9),
            w.ms(0.99),
            w.ms(0.999),
            window.deviation.max() as f64 / 1000.0
        );
        println!(
            "  by second (t from the first packet; the window is {:.0}..{:.0} s): t packets p50/p99/max ms, skipped ticks — {}",
            (w.from_ns - w.first_ns) as f64 / 1e9,
            (w.to_ns - w.first_ns) as f64 / 1e9,
            w.by_second
                .iter()
                .enumerate()
                .filter(|(_, p)| p.packets > 0)
                .map(|(t, p)| format!(
                    "{t} {} {:.1}/{:.1}/{:.0}{}",
                    p.packets,
                    p.ms(0.5),
                    p.ms(0.99),
                    p.deviation.max() as f64 / 1000.0,
                    if p.skipped_ticks > 0 { format!(" {}", p.skipped_ticks) } else { String::new() }
                ))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let [before, _, after] = &w.parts;
        println!(
            "  outside the window, before it (streams starting) / after it (ending): {} / {} packets, deviation p99 {:.2} / {:.2} ms, \
             max {:.2} / {:.2} ms, {} / {} ticks skipped, {} / {} lost; whole streams: {} reordered, {} odd datagrams, {} read errors",
            before.packets,
            after.packets,
            before.ms(0.99),
            after.ms(0.99),
            before.deviation.max() as f64 / 1000.0,
            after.deviation.max() as f64 / 1000.0,
            before.skipped_ticks,
            after.skipped_ticks,
            before.lost,
            after.lost,
            w.reordered,
            w.odd,
            w.errors
        );
        if let Some(share) = window.far_end_share() {
            let heard = |h: Heard| window.heard[h as usize];
            println!(
                "  what the window's packets carried: the far ends' tone {} ({:.2}%), silence {}, other audio {}",
                heard(Heard::FarEnd),
                share * 100.0,
                heard(Heard::Silence),
                heard(Heard::Other),
            );
        }
        let per_call = |s: f64| s * 1e6 / w.seconds.max(1e-9) / n.max(1) as f64;
        let cores = |s: f64| s / self.cpu.wall.max(1e-9);
        let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
        println!(
            "  CPU per {unit} (µs of CPU per second of {unit}): this process {:.0} ({:.2} cores for {n} {unit}s{}), the meter {:.0}{}{}, \
             PostgreSQL {:.1} (backends of the bench database; all postgres processes {:.1}); machine busy {:.0}% of {cpus} cores",
            per_call(self.process_s),
            self.process_s / w.seconds.max(1e-9),
            if self.process_s > 0.0 { format!(": {:.0} {unit}s per core", n as f64 * w.seconds / self.process_s) } else { String::new() },
            per_call(self.meter_s),
            if self.far_end_s > 0.0 { format!(", the talking far ends {:.0}", per_call(self.far_end_s)) } else { String::new() },
            self.sipp_s.map_or(String::new(), |s| format!(", SIPp {:.1}", per_call(s))),
            per_call(self.backends_s),
            per_call(self.cpu.postgres),
            self.cpu.machine_busy_frac * 100.0
        );
        let others: Vec<String> = self.others.iter().map(|(comm, s)| format!("{comm} {:.2}", cores(*s))).collect();
        println!(
            "  the machine in the window: {:.2} cores busy, of which interrupts (softirq: loopback delivery) {:.2}, stolen by the \
             hypervisor {:.2}, other processes {:.2} (what the bench, SIPp and PostgreSQL did not use; also processes that \
             exited meanwhile, a build's compiler runs); busiest other processes still running (cores): {}; load average at its end {}",
            cores(self.busy_s),
            cores(self.interrupts_s),
            cores(self.steal_s),
            self.others_cores(),
            if others.is_empty() { "none".to_string() } else { others.join(", ") },
            self.loadavg
        );
        let groups: Vec<String> = self.cpu.groups.iter().filter(|(_, s)| **s > 0.0).map(|(g, s)| format!("{g} {:.2}", s / w.seconds.max(1e-9))).collect();
        println!("  cores by thread group of this process: {}", groups.join(", "));
    }
}

// ---------------------------------------------------------------------------------------------
// Sampling while the streams run.

struct Row {
    t: f64,
    live_legs: Option<usize>,
    media_live: u64,
    streams: usize,
    packets_per_s: f64,
}

/// A timeline row every second.
async fn sampler(
    ctx: Option<Arc<outdial::engine::EngineCtx>>,
    live: Arc<Live>,
    rows: Arc<Mutex<Vec<Row>>>,
    stop: CancellationToken,
) {
    let start = Instant::now();
    let mut last = (start, live.packets.load(Ordering::Relaxed));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let (now, packets) = (Instant::now(), live.packets.load(Ordering::Relaxed));
        rows.lock().unwrap().push(Row {
            t: start.elapsed().as_secs_f64(),
            live_legs: ctx.as_ref().map(|c| c.live_legs()),
            media_live: totals().live_sessions(),
            streams: live.streams_started.load(Ordering::Relaxed),
            packets_per_s: (packets - last.1) as f64 / (now - last.0).as_secs_f64(),
        });
        last = (now, packets);
    }
}

// ---------------------------------------------------------------------------------------------
// The audio.

const TONE_HZ: f64 = 440.0;
const TONE_RATE: u32 = 8000;

fn tone_samples() -> Vec<i16> {
    (0..TONE_RATE).map(|i| ((2.0 * std::f64::consts::PI * TONE_HZ * f64::from(i) / f64::from(TONE_RATE)).sin() * 16_000.0) as i16).collect()
}

/// What the calls stream: 1 s of 440 Hz, 8 kHz 16-bit mono WAV.
fn tone_wav() -> Vec<u8> {
    let spec = hound::WavSpec { channels: 1, sample_rate: TONE_RATE, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut wav = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut wav, spec).expect("a WAV header in memory");
    for s in tone_samples() {
        writer.write_sample(s).expect("WAV samples in memory");
    }
    writer.finalize().expect("a WAV file in memory");
    wav.into_inner()
}

/// What the talking far ends send in every packet: 20 ms of the 1 kHz tone (20 whole periods,
/// so every packet is the same), µ-law.
fn far_end_payload() -> [u8; 160] {
    use audio_codec::Encoder;
    let phase = std::f64::consts::PI / 8.0;
    let samples: Vec<i16> = (0..160)
        .map(|i| (FAR_END_AMPLITUDE * (2.0 * std::f64::consts::PI * FAR_END_HZ * f64::from(i) / f64::from(TONE_RATE) + phase).sin()) as i16)
        .collect();
    let mut payload = [0u8; 160];
    audio_codec::pcmu::PcmuEncoder::new().encode_into(&samples, &mut payload).expect("160 bytes for 160 samples");
    payload
}

/// The same second of tone as the pacer sends it: 50 µ-law payloads of 20 ms.
fn tone_payloads() -> Vec<[u8; 160]> {
    use audio_codec::Encoder;
    let mut encoder = audio_codec::pcmu::PcmuEncoder::new();
    tone_samples()
        .chunks(160)
        .map(|frame| {
            let mut payload = [0u8; 160];
            encoder.encode_into(frame, &mut payload).expect("160 bytes for 160 samples");
            payload
        })
        .collect()
}
