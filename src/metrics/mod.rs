//! What `GET /metrics` exports (Prometheus text format). Two kinds of figures:
//! - counted here as things happen, per process: SIP responses, post-dial delay, webhook
//!   attempts, legs started and ended. The instruments are process-wide (like `media::totals`),
//!   so the SIP carrier, the engine and the dispatcher count without anything passed down to
//!   them; an increment is an atomic add (a labelled one first finds its series under a read
//!   lock, a histogram takes a short mutex: once per call or delivery, never per packet);
//! - read at scrape time: the media totals, the database pool, and a few cluster-wide counts
//!   from PostgreSQL (calls not yet ended, the outbox backlog, report jobs) in one cheap query
//!   (`scrape`), so nothing queries the database per event.

pub mod scrape;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::LazyLock;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SipResponseLabels {
    pub code: u16,
    pub trunk: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrunkLabels {
    pub trunk: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LegLabels {
    pub status: String,
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

fn post_dial_delay_histogram() -> Histogram {
    Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0])
}

fn webhook_latency_histogram() -> Histogram {
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

/// The process's instruments; `scrape` registers clones of them (they share their values).
pub struct Instruments {
    pub sip_responses: Family<SipResponseLabels, Counter>,
    pub post_dial_delay: Family<TrunkLabels, Histogram, fn() -> Histogram>,
    pub webhook_attempts: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    pub legs_ended: Family<LegLabels, Counter>,
    pub live_legs: Gauge,
}

static INSTRUMENTS: LazyLock<Instruments> = LazyLock::new(|| Instruments {
    sip_responses: Family::default(),
    post_dial_delay: Family::new_with_constructor(post_dial_delay_histogram as fn() -> Histogram),
    webhook_attempts: Family::new_with_constructor(webhook_latency_histogram as fn() -> Histogram),
    legs_ended: Family::default(),
    live_legs: Gauge::default(),
});

pub fn instruments() -> &'static Instruments {
    &INSTRUMENTS
}

/// A response (provisional or final) to one of our INVITEs, from `trunk`.
pub fn sip_response(trunk: &str, code: u16) {
    INSTRUMENTS.sip_responses.get_or_create(&SipResponseLabels { code, trunk: trunk.to_string() }).inc();
}

/// INVITE sent → its first 180/183 or 200, through `trunk`.
pub fn post_dial_delay(trunk: &str, delay: Duration) {
    INSTRUMENTS.post_dial_delay.get_or_create(&TrunkLabels { trunk: trunk.to_string() }).observe(delay.as_secs_f64());
}

/// One webhook delivery attempt from the outbox: `delivered`, `retry` (failed, to be tried
/// again) or `failed` (given up), and how long the request took.
pub fn webhook_attempt(outcome: &'static str, latency: Duration) {
    INSTRUMENTS.webhook_attempts.get_or_create(&OutcomeLabels { outcome }).observe(latency.as_secs_f64());
}

/// A leg this instance drove ended, stored with its final status (the ending: completed,
/// busy, failed, timeout, unanswered, rejected, cancelled).
pub fn leg_ended(status: &str, direction: &str) {
    INSTRUMENTS.legs_ended.get_or_create(&LegLabels { status: status.to_string(), direction: direction.to_string() }).inc();
}

/// Counts a leg live on this instance while it is held (the engine holds one per leg it drives).
pub struct LiveLeg(());

impl LiveLeg {
    pub fn start() -> LiveLeg {
        INSTRUMENTS.live_legs.inc();
        LiveLeg(())
    }
}

impl Drop for LiveLeg {
    fn drop(&mut self) {
        INSTRUMENTS.live_legs.dec();
    }
}
