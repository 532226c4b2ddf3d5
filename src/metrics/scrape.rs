//! One scrape: the process's instruments and media totals, this instance's database pool, and
//! the cluster-wide counts read from PostgreSQL at that moment, in the Prometheus text format.

use super::instruments;
use crate::media::{self, MediaTotals};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The bucket edges media histograms are exported with (seconds): the media module keeps
/// finer buckets, summed into these at scrape time.
const SEND_DEVIATION_EDGES_S: [f64; 10] = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05];
const TICK_WORK_EDGES_S: [f64; 12] = [1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 2e-2];

/// What PostgreSQL says about the whole cluster at this scrape.
#[derive(Debug, Default)]
struct ClusterCounts {
    /// Calls not yet ended (a job queued or running), by status and direction.
    live_calls: Vec<(String, String, i64)>,
    outbox_pending: i64,
    /// Age of the oldest pending event, seconds (0 when none).
    outbox_oldest_s: f64,
    report_jobs: Vec<(String, i64)>,
}

async fn cluster_counts(pool: &PgPool) -> Result<ClusterCounts, sqlx::Error> {
    // The two partial indexes of call_jobs (queued, running) find the live legs; each is
    // joined to its call for its status. Its cost grows with live calls, not with history.
    let live_calls: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT c.status, c.direction, count(*)
         FROM (SELECT call_uuid FROM call_jobs WHERE state = 'queued'
               UNION ALL SELECT call_uuid FROM call_jobs WHERE state = 'running') j
         JOIN calls c ON c.uuid = j.call_uuid
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await?;
    let (outbox_pending, outbox_oldest_s): (i64, f64) = sqlx::query_as(
        "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at))::float8, 0)
         FROM events WHERE state = 'pending'",
    )
    .fetch_one(pool)
    .await?;
    let report_jobs: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM report_jobs GROUP BY 1 ORDER BY 1").fetch_all(pool).await?;
    Ok(ClusterCounts { live_calls, outbox_pending, outbox_oldest_s, report_jobs })
}

/// Renders the metrics of this process, with `pool`'s use and the cluster's counts from it.
pub async fn render(pool: &PgPool) -> String {
    let cluster = match cluster_counts(pool).await {
        Ok(counts) => Some(counts),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the database counts could not be read");
            None
        }
    };
    let pool_use = PoolUse { size: pool.size(), idle: pool.num_idle() as u32, max: pool.options().get_max_connections() };
    let mut registry = Registry::default();
    let i = instruments();
    registry.register("outdial_live_legs", "Legs this instance drives now", i.live_legs.clone());
    registry.register("outdial_legs_ended", "Legs this instance drove that ended, by final status (how they ended) and direction", i.legs_ended.clone());
    registry.register("outdial_sip_responses", "SIP responses to our INVITEs, by code and trunk", i.sip_responses.clone());
    registry.register(
        "outdial_sip_post_dial_delay_seconds",
        "From INVITE sent to its first 180, 183 or 200, by trunk",
        i.post_dial_delay.clone(),
    );
    registry.register(
        "outdial_webhook_delivery_duration_seconds",
        "Webhook delivery attempts from the outbox and how long each took, by outcome (delivered, retry, failed)",
        i.webhook_attempts.clone(),
    );
    registry.register_collector(Box::new(ScrapeTime { cluster, pool_use, media: media::totals() }));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct PoolUse {
    size: u32,
    idle: u32,
    max: u32,
}

/// Figures read at scrape time, written as the registry is encoded.
#[derive(Debug)]
struct ScrapeTime {
    cluster: Option<ClusterCounts>,
    pool_use: PoolUse,
    media: MediaTotals,
}

/// The highest packet loss exported so far: a session's loss shrinks when a packet counted
/// lost arrives late, but a counter must never go down (Prometheus would read a reset).
static LOSS_EXPORTED: AtomicU64 = AtomicU64::new(0);

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue>(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: N) -> std::fmt::Result {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, &format!("{help}."), None, MetricType::Gauge)?)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    ConstCounter::new(value).encode(encoder.encode_descriptor(name, &format!("{help}."), None, MetricType::Counter)?)
}

/// A histogram of `count` values and their `sum` (seconds), with `below(edge)` the values
/// below each edge.
fn histogram(encoder: &mut DescriptorEncoder, name: &str, help: &str, edges: &[f64], below: impl Fn(Duration) -> u64, count: u64, sum_s: f64) -> std::fmt::Result {
    let mut previous = 0;
    let buckets: Vec<(f64, u64)> = edges
        .iter()
        .map(|&edge| {
            let cumulative = below(Duration::from_secs_f64(edge));
            let in_bucket = cumulative.saturating_sub(previous);
            previous = cumulative;
            (edge, in_bucket)
        })
        .collect();
    let mut metric = encoder.encode_descriptor(name, &format!("{help}."), None, MetricType::Histogram)?;
    metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum_s, count, &buckets, None)
}

impl Collector for ScrapeTime {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let e = &mut encoder;
        gauge(e, "outdial_database_up", "1 when this scrape could read the cluster's counts from PostgreSQL, else 0", i64::from(self.cluster.is_some()))?;
        if let Some(cluster) = &self.cluster {
            let mut family = e.encode_descriptor(
                "outdial_live_calls",
                "Calls not yet ended in the whole cluster (read from PostgreSQL; every instance reports the same), by status and direction.",
                None,
                MetricType::Gauge,
            )?;
            for (status, direction, n) in &cluster.live_calls {
                let labels = [("status", status.as_str()), ("direction", direction.as_str())];
                ConstGauge::new(*n).encode(family.encode_family(&labels)?)?;
            }
            gauge(e, "outdial_webhook_outbox_pending", "Events waiting in the outbox to be delivered, in the whole cluster", cluster.outbox_pending)?;
            gauge(e, "outdial_webhook_outbox_oldest_seconds", "Age of the oldest event waiting in the outbox (0 when none), in the whole cluster", cluster.outbox_oldest_s)?;
            let mut family = e.encode_descriptor("outdial_report_jobs", "Report jobs (POST /v2/reports) in the whole cluster, by status.", None, MetricType::Gauge)?;
            for (status, n) in &cluster.report_jobs {
                ConstGauge::new(*n).encode(family.encode_family(&[("status", status.as_str())])?)?;
            }
        }
        let pool = &self.pool_use;
        let mut family = e.encode_descriptor(
            "outdial_db_pool_connections",
            "This instance's main PostgreSQL pool: connections open, by state (idle, in_use).",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(pool.idle)).encode(family.encode_family(&[("state", "idle")])?)?;
        ConstGauge::new(i64::from(pool.size.saturating_sub(pool.idle))).encode(family.encode_family(&[("state", "in_use")])?)?;
        gauge(e, "outdial_db_pool_max_connections", "Most connections this instance's main PostgreSQL pool opens", i64::from(pool.max))?;

        let m = &self.media;
        gauge(e, "outdial_media_sessions", "RTP media sessions open on this instance", m.live_sessions())?;
        counter(e, "outdial_rtp_packets_sent", "RTP packets this instance sent", m.packets_sent)?;
        counter(e, "outdial_rtp_send_errors", "RTP packets this instance could not send", m.send_errors)?;
        counter(e, "outdial_rtp_packets_received", "RTP packets this instance accepted from far ends", m.packets_received)?;
        let lost = LOSS_EXPORTED.fetch_max(m.packets_lost, Ordering::Relaxed).max(m.packets_lost);
        counter(e, "outdial_rtp_packets_lost", "RTP packets far ends sent that never arrived (sequence numbers never seen, RFC 3550)", lost)?;
        counter(e, "outdial_media_ticks_skipped", "20 ms media ticks skipped because a session's clock woke more than three frames late", m.ticks_skipped)?;
        let deviation = &m.send_deviation;
        histogram(
            e,
            "outdial_rtp_send_deviation_seconds",
            "How late each RTP packet left after its 20 ms deadline: our send jitter (the sum is estimated from 50 us buckets)",
            &SEND_DEVIATION_EDGES_S,
            |edge| deviation.count_below(edge),
            deviation.count(),
            deviation.sum_estimate().as_secs_f64(),
        )?;
        let jitter = &m.jitter;
        let edges_s: Vec<f64> = media::JITTER_EDGES_MS.iter().map(|&ms| ms as f64 / 1000.0).collect();
        let buckets: Vec<(f64, u64)> = edges_s.iter().copied().zip(jitter.buckets).collect();
        e.encode_descriptor(
            "outdial_rtp_jitter_seconds",
            "Each ended RTP session's peak interarrival jitter (RFC 3550) of the audio its far end sent.",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(jitter.sum.as_secs_f64(), jitter.count(), &buckets, None)?;
        let work = &m.tick_work;
        histogram(
            e,
            "outdial_media_tick_work_seconds",
            "CPU time of each 20 ms media tick (mixing, encoding, taps), from the clock's wake-up to the packet built",
            &TICK_WORK_EDGES_S,
            |edge| work.count_below(edge),
            work.count(),
            work.total().as_secs_f64(),
        )?;
        Ok(())
    }
}
