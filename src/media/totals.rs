//! The process's media totals: sessions, packets, send-time deviation and tick work of every
//! session, live and closed. Sessions add to them as they go (relaxed atomics, a few adds per
//! 20 ms packet), so a snapshot is the whole process at that moment without a list of sessions.
//! Counters only grow (loss can shrink when a late packet turns up): a window is the difference
//! of two snapshots. The media benchmark reads them; `/metrics` exports them (metrics::scrape).

use super::deviation::{AtomicDeviation, DeviationHistogram};
use super::interarrival::{AtomicJitter, JitterHistogram};
use super::work::{AtomicWork, WorkHistogram};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A snapshot of the process's media counters (`totals()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaTotals {
    pub sessions_started: u64,
    pub sessions_closed: u64,
    pub packets_sent: u64,
    pub send_errors: u64,
    /// Accepted packets from far ends (audio and telephone-events).
    pub packets_received: u64,
    /// Sequence numbers never seen, summed over sessions (RFC 3550 cumulative loss).
    pub packets_lost: u64,
    /// Ticks clocks skipped because they woke more than three frames late.
    pub ticks_skipped: u64,
    /// Every packet's send time − its clock's deadline.
    pub send_deviation: DeviationHistogram,
    /// Every tick's work: from its clock's wake-up to its packet built (mixing, earmuff,
    /// encoding, the received frame handed to the taps; waiting for the session's lock counts,
    /// the send does not). In a conversation, its members' add up to the room's mixing.
    pub tick_work: WorkHistogram,
    /// Each ended session's peak interarrival jitter of the far end's audio (RFC 3550).
    pub jitter: JitterHistogram,
}

impl MediaTotals {
    pub fn live_sessions(&self) -> u64 {
        self.sessions_started.saturating_sub(self.sessions_closed)
    }

    /// What happened after `earlier` (a snapshot taken before this one).
    pub fn since(&self, earlier: &MediaTotals) -> MediaTotals {
        MediaTotals {
            sessions_started: self.sessions_started.saturating_sub(earlier.sessions_started),
            sessions_closed: self.sessions_closed.saturating_sub(earlier.sessions_closed),
            packets_sent: self.packets_sent.saturating_sub(earlier.packets_sent),
            send_errors: self.send_errors.saturating_sub(earlier.send_errors),
            packets_received: self.packets_received.saturating_sub(earlier.packets_received),
            packets_lost: self.packets_lost.saturating_sub(earlier.packets_lost),
            ticks_skipped: self.ticks_skipped.saturating_sub(earlier.ticks_skipped),
            send_deviation: self.send_deviation.since(&earlier.send_deviation),
            tick_work: self.tick_work.since(&earlier.tick_work),
            jitter: JitterHistogram {
                buckets: std::array::from_fn(|i| self.jitter.buckets[i].saturating_sub(earlier.jitter.buckets[i])),
                sum: self.jitter.sum.saturating_sub(earlier.jitter.sum),
            },
        }
    }
}

/// The media counters of this process now.
pub fn totals() -> MediaTotals {
    let t = &TOTALS;
    MediaTotals {
        sessions_started: t.sessions_started.load(Ordering::Relaxed),
        sessions_closed: t.sessions_closed.load(Ordering::Relaxed),
        packets_sent: t.packets_sent.load(Ordering::Relaxed),
        send_errors: t.send_errors.load(Ordering::Relaxed),
        packets_received: t.packets_received.load(Ordering::Relaxed),
        packets_lost: t.packets_lost.load(Ordering::Relaxed).max(0) as u64,
        ticks_skipped: t.ticks_skipped.load(Ordering::Relaxed),
        send_deviation: t.send_deviation.snapshot(),
        tick_work: t.tick_work.snapshot(),
        jitter: t.jitter.snapshot(),
    }
}

struct Totals {
    sessions_started: AtomicU64,
    sessions_closed: AtomicU64,
    packets_sent: AtomicU64,
    send_errors: AtomicU64,
    packets_received: AtomicU64,
    packets_lost: AtomicI64,
    ticks_skipped: AtomicU64,
    send_deviation: AtomicDeviation,
    tick_work: AtomicWork,
    jitter: AtomicJitter,
}

static TOTALS: Totals = Totals {
    sessions_started: AtomicU64::new(0),
    sessions_closed: AtomicU64::new(0),
    packets_sent: AtomicU64::new(0),
    send_errors: AtomicU64::new(0),
    packets_received: AtomicU64::new(0),
    packets_lost: AtomicI64::new(0),
    ticks_skipped: AtomicU64::new(0),
    send_deviation: AtomicDeviation::new(),
    tick_work: AtomicWork::new(),
    jitter: AtomicJitter::new(),
};

/// Counts a session from its start until it is dropped (with the session's clock task, which
/// holds it, however that task ends).
pub(super) struct SessionCount(());

impl SessionCount {
    pub fn start() -> SessionCount {
        TOTALS.sessions_started.fetch_add(1, Ordering::Relaxed);
        SessionCount(())
    }
}

impl Drop for SessionCount {
    fn drop(&mut self) {
        TOTALS.sessions_closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// One tick's send: its deviation, its work, and whether the packet went out (None: nowhere to
/// send).
pub(super) fn tick_sent(deviation: Duration, work: Duration, sent: Option<bool>) {
    TOTALS.send_deviation.record(deviation);
    TOTALS.tick_work.record(work);
    match sent {
        Some(true) => TOTALS.packets_sent.fetch_add(1, Ordering::Relaxed),
        Some(false) => TOTALS.send_errors.fetch_add(1, Ordering::Relaxed),
        None => 0,
    };
}

pub(super) fn ticks_skipped(n: u64) {
    TOTALS.ticks_skipped.fetch_add(n, Ordering::Relaxed);
}

pub(super) fn packet_received() {
    TOTALS.packets_received.fetch_add(1, Ordering::Relaxed);
}

/// A session's cumulative loss moved by `delta` (negative when a packet counted lost arrived).
pub(super) fn loss_changed(delta: i64) {
    TOTALS.packets_lost.fetch_add(delta, Ordering::Relaxed);
}

/// An ended session's peak interarrival jitter.
pub(super) fn session_jitter(peak: Duration) {
    TOTALS.jitter.record(peak);
}
