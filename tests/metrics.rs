//! `GET /metrics`: valid Prometheus text, figures that move as calls run and webhooks go out,
//! and the guard (allowed networks, bearer token).

mod common;

use common::receiver::Receiver;
use common::*;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// One sample: its labels (sorted) and value.
type Samples = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

/// Parses a scrape as the Prometheus text format (0.0.4) says, panicking at any line that breaks
/// it: `# HELP` then `# TYPE` for each family, every sample after its family's TYPE and named
/// as its type allows, labels quoted, values numbers, histogram buckets cumulative up to `+Inf`
/// = `_count`. Returns the samples by name and each family's type.
fn parse(text: &str) -> (Samples, HashMap<String, String>) {
    let sample = regex::Regex::new(r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$"#).unwrap();
    let label = regex::Regex::new(r#"^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"$"#).unwrap();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped: Option<String> = None;
    let mut current: Option<(String, String)> = None;
    let mut samples = Samples::new();
    assert!(text.ends_with('\n'), "the scrape ends with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or_else(|| panic!("HELP without text: {line}"));
            assert!(!help.trim().is_empty(), "empty HELP: {line}");
            assert!(name.starts_with("outdial_"), "every metric is outdial_*: {line}");
            helped = Some(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("TYPE without type: {line}"));
            assert_eq!(helped.take().as_deref(), Some(name), "HELP comes right before TYPE: {line}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "type {kind}: {line}");
            assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "a second TYPE for {name}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counters end in _total: {name}");
            }
            current = Some((name.to_string(), kind.to_string()));
        } else {
            assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line: {line:?}");
            let caps = sample.captures(line).unwrap_or_else(|| panic!("not a sample line: {line}"));
            let name = &caps[1];
            let (family, kind) = current.as_ref().unwrap_or_else(|| panic!("a sample before any TYPE: {line}"));
            let allowed = match kind.as_str() {
                "histogram" => [format!("{family}_bucket"), format!("{family}_sum"), format!("{family}_count")].contains(&name.to_string()),
                _ => name == family,
            };
            assert!(allowed, "sample {name} under the {kind} {family}");
            let mut labels = BTreeMap::new();
            if let Some(list) = caps.get(3).filter(|l| !l.as_str().is_empty()) {
                // Label values in this exporter hold no commas.
                for pair in list.as_str().split(',') {
                    let l = label.captures(pair).unwrap_or_else(|| panic!("bad label {pair} in {line}"));
                    labels.insert(l[1].to_string(), l[2].to_string());
                }
            }
            let value: f64 = match &caps[4] {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("not a number: {line}")),
            };
            samples.entry(name.to_string()).or_default().push((labels, value));
        }
    }
    // Histograms: buckets rise to +Inf, which is _count.
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for (labels, value) in samples.get(&format!("{family}_bucket")).into_iter().flatten() {
            let mut rest = labels.clone();
            let le = rest.remove("le").expect("a bucket has le");
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
            series.entry(rest).or_default().push((le, *value));
        }
        for (labels, buckets) in series {
            assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{family}{labels:?} buckets rise: {buckets:?}");
            let (last_le, last) = *buckets.last().unwrap();
            assert_eq!(last_le, f64::INFINITY, "{family}{labels:?} ends with +Inf");
            let count = value_of(&samples, &format!("{family}_count"), &labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>());
            assert_eq!(Some(last), count, "{family}{labels:?}: +Inf is _count");
        }
    }
    (samples, types)
}

/// The value of `name` with exactly `labels`.
fn value_of(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    samples.get(name)?.iter().find(|(l, _)| *l == wanted).map(|(_, v)| *v)
}

async fn scrape(app: &TestApp) -> (Samples, HashMap<String, String>) {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    parse(&response.text().await.unwrap())
}

/// Scrapes until `done` holds of the samples (they are counted just after what the test sees).
async fn scrape_until(app: &TestApp, what: &str, done: impl Fn(&Samples) -> bool) -> Samples {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (samples, _) = scrape(app).await;
        if done(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "{what} never showed in /metrics: {samples:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn call_to(number: &str, receiver: &Receiver) -> Value {
    json!({
        "to": [{"type": "phone", "number": number}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [{"action": "talk", "text": "Hello"}],
        "event_url": [receiver.url("/events")],
    })
}

#[sqlx::test]
async fn a_scrape_is_prometheus_text_and_its_figures_follow_the_calls(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let (samples, types) = scrape(&app).await;
    // Labelled series counted as things happen (legs ended, SIP responses, deliveries) show
    // once there is one; these are always there.
    for (family, kind) in [
        ("outdial_live_legs", "gauge"),
        ("outdial_live_calls", "gauge"),
        ("outdial_webhook_outbox_pending", "gauge"),
        ("outdial_webhook_outbox_oldest_seconds", "gauge"),
        ("outdial_report_jobs", "gauge"),
        ("outdial_db_pool_connections", "gauge"),
        ("outdial_db_pool_max_connections", "gauge"),
        ("outdial_media_sessions", "gauge"),
        ("outdial_rtp_packets_sent_total", "counter"),
        ("outdial_rtp_packets_received_total", "counter"),
        ("outdial_rtp_packets_lost_total", "counter"),
        ("outdial_rtp_send_deviation_seconds", "histogram"),
        ("outdial_rtp_jitter_seconds", "histogram"),
        ("outdial_media_tick_work_seconds", "histogram"),
        ("outdial_database_up", "gauge"),
    ] {
        assert_eq!(types.get(family).map(String::as_str), Some(kind), "{family} is a {kind}");
    }
    assert_eq!(value_of(&samples, "outdial_database_up", &[]), Some(1.0));
    assert_eq!(value_of(&samples, "outdial_live_legs", &[]), Some(0.0));
    assert!(value_of(&samples, "outdial_db_pool_max_connections", &[]).is_some_and(|n| n >= 1.0));
    assert!(value_of(&samples, "outdial_db_pool_connections", &[("state", "in_use")]).is_some());
    assert_eq!(value_of(&samples, "outdial_rtp_send_deviation_seconds_count", &[]), Some(0.0), "no media on the simulated network");

    // A call that rings until its ringing timer (6 s at 20x): live, ringing, on this instance.
    let receiver = Receiver::start().await;
    let mut ringing = call_to("447700900408", &receiver);
    ringing["ringing_timer"] = json!(120);
    let ringing_uuid = app.place(&ringing).await;
    receiver.wait_status("/events", &ringing_uuid, "ringing").await;
    scrape_until(&app, "a live ringing call", |s| {
        value_of(s, "outdial_live_calls", &[("status", "ringing"), ("direction", "outbound")]) == Some(1.0)
            && value_of(s, "outdial_live_legs", &[]) == Some(1.0)
    })
    .await;

    // An answered call and a busy one end; their events are delivered.
    let answered = app.place(&call_to("447700900000", &receiver)).await;
    let busy = app.place(&call_to("447700900486", &receiver)).await;
    receiver.wait_status("/events", &answered, "completed").await;
    receiver.wait_status("/events", &busy, "completed").await;
    let delivered = receiver.requests("/events").len() as f64;
    let samples = scrape_until(&app, "the ended legs and their deliveries", |s| {
        value_of(s, "outdial_legs_ended_total", &[("status", "completed"), ("direction", "outbound")]) == Some(1.0)
            && value_of(s, "outdial_legs_ended_total", &[("status", "busy"), ("direction", "outbound")]) == Some(1.0)
            && value_of(s, "outdial_webhook_delivery_duration_seconds_count", &[("outcome", "delivered")]).is_some_and(|n| n >= delivered)
    })
    .await;
    let (_, types) = scrape(&app).await;
    assert_eq!(types["outdial_legs_ended_total"], "counter");
    assert_eq!(types["outdial_webhook_delivery_duration_seconds"], "histogram");
    assert!(!types.contains_key("outdial_sip_responses_total"), "no SIP on the simulated network");
    let latency_sum = value_of(&samples, "outdial_webhook_delivery_duration_seconds_sum", &[("outcome", "delivered")]).unwrap();
    assert!(latency_sum > 0.0 && latency_sum < delivered * 2.0, "delivery latencies add up to {latency_sum} s");
    assert_eq!(value_of(&samples, "outdial_live_calls", &[("status", "completed"), ("direction", "outbound")]), None, "ended calls are not live");

    // An event whose receiver fails waits in the outbox, and its attempts count as retries.
    receiver.respond("/failing", 500, "no");
    let mut failing = call_to("447700900000", &receiver);
    failing["event_url"] = json!([receiver.url("/failing")]);
    app.place(&failing).await;
    scrape_until(&app, "a pending event and its retried attempts", |s| {
        value_of(s, "outdial_webhook_outbox_pending", &[]).is_some_and(|n| n >= 1.0)
            && value_of(s, "outdial_webhook_outbox_oldest_seconds", &[]).is_some_and(|age| age > 0.0)
            && value_of(s, "outdial_webhook_delivery_duration_seconds_count", &[("outcome", "retry")]).is_some_and(|n| n >= 1.0)
    })
    .await;

    // A report job counts by its status.
    let response = app
        .client
        .post(app.url("/v2/reports"))
        .basic_auth(&app.account.api_key, Some(&app.account.api_secret))
        .json(&json!({"product": "VOICE-CALL", "account_id": app.account.api_key}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    scrape_until(&app, "the report job", |s| s.get("outdial_report_jobs").is_some_and(|jobs| jobs.iter().map(|(_, n)| n).sum::<f64>() == 1.0)).await;
    app.stop().await;
}

#[sqlx::test]
async fn metrics_ask_for_the_token_when_one_is_set(pool: PgPool) {
    let options = Options { settings: |s| s.metrics.token = Some(outdial::config::MetricsToken("s3cret-token".into())), ..Options::default() };
    let app = spawn_app_with(pool, options).await;
    let url = app.url("/metrics");
    let problem = assert_problem(app.client.get(&url).send().await.unwrap(), 401).await;
    assert!(problem["detail"].as_str().unwrap().contains("metrics.token"), "{problem}");
    let wrong = app.client.get(&url).bearer_auth("s3cret-toke").send().await.unwrap();
    assert_eq!(wrong.headers()["www-authenticate"], "Bearer realm=\"outdial-metrics\"");
    assert_problem(wrong, 401).await;
    // An application JWT is no metrics token.
    assert_problem(app.client.get(&url).bearer_auth(app.jwt()).send().await.unwrap(), 401).await;
    let response = app.client.get(&url).bearer_auth("s3cret-token").send().await.unwrap();
    assert_eq!(response.status(), 200);
    parse(&response.text().await.unwrap());
    app.stop().await;
}

#[sqlx::test]
async fn metrics_refuse_clients_outside_the_allowed_networks(pool: PgPool) {
    let options = Options {
        settings: |s| {
            s.metrics.allowed_networks = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
            s.metrics.token = Some(outdial::config::MetricsToken("s3cret-token".into()));
        },
        ..Options::default()
    };
    let app = spawn_app_with(pool, options).await;
    // From 127.0.0.1, even with the right token.
    let response = app.client.get(app.url("/metrics")).bearer_auth("s3cret-token").send().await.unwrap();
    let problem = assert_problem(response, 403).await;
    assert!(problem["detail"].as_str().unwrap().contains("127.0.0.1"), "{problem}");
    app.stop().await;
}

#[sqlx::test]
async fn by_default_only_loopback_may_scrape(pool: PgPool) {
    let settings = outdial::config::Settings::load(None).unwrap();
    assert!(settings.metrics.token.is_none());
    let loopback: Vec<String> = settings.metrics.allowed_networks.iter().map(|n| n.to_string()).collect();
    assert_eq!(loopback, ["127.0.0.0/8", "::1/128"]);
    let app = spawn_app(pool).await;
    let response = app.client.post(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET");
    assert_problem(response, 405).await;
    app.stop().await;
}

/// Through the SIP carrier, SIPp as the trunk: its responses by code and trunk, the post-dial
/// delay, and the call's RTP.
#[sqlx::test]
async fn sip_responses_post_dial_delay_and_rtp_are_counted(pool: PgPool) {
    use common::sipp::Sipp;
    if !Sipp::available() {
        return;
    }
    let mut trunk = Sipp::uas("uas_answer_wait_bye.xml", &[]);
    let (app, events) = common::sip_app::start(pool).await;
    let response = app
        .client
        .post(app.url("/v1/trunks"))
        .basic_auth(&app.account.api_key, Some(&app.account.api_secret))
        .json(&json!({"name": "carrier-a", "host": "127.0.0.1", "port": trunk.port(), "transport": "udp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let (before, _) = scrape(&app).await;
    assert_eq!(value_of(&before, "outdial_sip_responses_total", &[("code", "200"), ("trunk", "carrier-a")]), None);
    let call = json!({"to": [{"type": "phone", "number": "447700900123"}], "from": {"type": "phone", "number": "447700900001"},
                      "ncco": [{"action": "talk", "text": "hello"}]});
    let uuid = app.place(&call).await;
    events.wait_status("/events", &uuid, "completed").await;
    let (code, log) = trunk.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{log}");
    let samples = scrape_until(&app, "the ended SIP leg", |s| {
        value_of(s, "outdial_legs_ended_total", &[("status", "completed"), ("direction", "outbound")]) == Some(1.0)
    })
    .await;
    let trunk_a = [("trunk", "carrier-a")];
    assert_eq!(value_of(&samples, "outdial_sip_responses_total", &[("code", "180"), ("trunk", "carrier-a")]), Some(1.0));
    assert_eq!(value_of(&samples, "outdial_sip_responses_total", &[("code", "200"), ("trunk", "carrier-a")]), Some(1.0));
    assert_eq!(value_of(&samples, "outdial_sip_post_dial_delay_seconds_count", &trunk_a), Some(1.0));
    let delay = value_of(&samples, "outdial_sip_post_dial_delay_seconds_sum", &trunk_a).unwrap();
    assert!(delay > 0.0 && delay < 2.0, "post-dial delay {delay} s (SIPp rings at once)");
    let sent = value_of(&samples, "outdial_rtp_packets_sent_total", &[]).unwrap();
    assert!(sent >= 10.0, "the talk went out as RTP: {sent} packets");
    assert_eq!(value_of(&samples, "outdial_rtp_send_deviation_seconds_count", &[]), Some(sent));
    assert!(value_of(&samples, "outdial_media_tick_work_seconds_count", &[]).is_some_and(|n| n >= sent));
    assert_eq!(value_of(&samples, "outdial_live_legs", &[]), Some(0.0));
    app.stop().await;
}

/// The far end's audio (SIPp plays a recording as early media): received packets, and the
/// session's peak interarrival jitter once it has ended.
#[sqlx::test]
async fn the_far_ends_rtp_and_its_jitter_are_counted(pool: PgPool) {
    use common::sipp::Sipp;
    if !Sipp::available() || !common::sipp::can_play_pcap() {
        return;
    }
    let mut trunk = Sipp::uas_media("uas_early_media.xml", &[("early_ms", "1500")]);
    let (app, events) = common::sip_app::start(pool).await;
    let ncco = json!([{"action": "wait", "timeout": 1}]);
    let uuid = app.place(&common::sip_app::call_to(&format!("sip:trunk@{}", trunk.address()), ncco)).await;
    events.wait_status("/events", &uuid, "completed").await;
    let (code, log) = trunk.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{log}");
    let samples = scrape_until(&app, "the ended session's jitter", |s| value_of(s, "outdial_rtp_jitter_seconds_count", &[]) == Some(1.0)).await;
    let received = value_of(&samples, "outdial_rtp_packets_received_total", &[]).unwrap();
    assert!(received >= 25.0, "1.5 s of early media at least half heard: {received} packets");
    // Played from a capture over loopback: evenly paced, well under 20 ms.
    let jitter = value_of(&samples, "outdial_rtp_jitter_seconds_sum", &[]).unwrap();
    assert!(jitter < 0.02, "peak jitter {jitter} s");
    assert_eq!(value_of(&samples, "outdial_media_sessions", &[]), Some(0.0));
    app.stop().await;
}
