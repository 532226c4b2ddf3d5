//! Where PostgreSQL spends its time while calls are placed: pg_stat_activity sampled every 100 ms.

use sqlx::PgPool;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// pg_stat_activity every 100 ms: the server's backends that are active, by statement and wait
/// event, while the calls are being placed (the loaded phase); and the whole run's average.
#[derive(Default)]
pub struct PgProfile {
    pub samples: u64,
    /// (statement, wait) -> backend-samples
    pub by: BTreeMap<(String, String), u64>,
    pub max_active: u64,
    /// The server pool's checked-out connections, and the backends busy in the server, summed over samples.
    pub in_use_sum: u64,
    pub busy_sum: u64,
    pub all_samples: u64,
    pub all_busy: u64,
}

pub fn statement_label(q: &str) -> &'static str {
    let q = q.trim_start();
    // pg_stat_activity keeps the first 1,024 bytes of a statement: match on its start.
    if q.contains("UPDATE accounts SET reserved") || q.contains("set_config('synchronous_commit', 'off'") {
        "billing reserve (credit hold)"
    } else if q.starts_with("WITH w AS") {
        "engine store::apply (status + events)"
    } else if q.contains("UPDATE events SET locked_until") {
        "dispatcher claim"
    } else if q.starts_with("WITH o AS") {
        "dispatcher record outcomes"
    } else if q.contains("INSERT INTO calls") {
        "api insert call"
    } else if q.contains("UPDATE call_jobs SET state = 'running'") {
        "engine claim legs"
    } else if q.contains("FROM rates") {
        "engine rate lookup (claim batch, funds)"
    } else if q.contains("UPDATE instances") {
        "engine heartbeat/reap"
    } else if q.contains("record_attempts") || q.contains("INSERT INTO webhook_attempts") {
        "engine record_attempts"
    } else if q.contains("pg_notify") {
        "pg_notify (own statement)"
    } else if q.starts_with("COMMIT") || q.starts_with("BEGIN") {
        "BEGIN/COMMIT"
    } else {
        "other"
    }
}

pub async fn pg_sampler(admin: PgPool, server_pool: PgPool, placing: Arc<AtomicBool>, stop: CancellationToken) -> PgProfile {
    let mut profile = PgProfile::default();
    loop {
        let in_use = (server_pool.size() as usize).saturating_sub(server_pool.num_idle()) as u64;
        // The NOTIFY lock: a heavyweight lock on "object 0 of class pg_database in database 0"
        // (async.c PreCommit_Notify), taken before commit and held until after the commit's WAL flush.
        // (state, wait_event_type, wait_event, query, waits for the NOTIFY lock)
        type Activity = (String, Option<String>, Option<String>, String, bool);
        let rows: Vec<Activity> = sqlx::query_as(
            "SELECT a.state, a.wait_event_type, a.wait_event, a.query,
                    EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted AND l.locktype = 'object'
                            AND l.database = 0 AND l.classid = 'pg_database'::regclass AND l.objid = 0)
             FROM pg_stat_activity a
             WHERE a.datname = current_database() AND a.application_name = 'outdial' AND a.state <> 'idle'",
        )
        .fetch_all(&admin)
        .await
        .unwrap_or_default();
        let during_placing = placing.load(Ordering::Relaxed);
        profile.all_samples += 1;
        profile.all_busy += rows.len() as u64;
        if !during_placing {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            continue;
        }
        profile.samples += 1;
        profile.in_use_sum += in_use;
        profile.busy_sum += rows.len() as u64;
        let mut active = 0;
        for (state, wait_type, wait, query, notify_lock) in rows {
            active += 1;
            let wait = match (wait_type, wait) {
                _ if notify_lock => "Lock:object=NOTIFY lock".to_string(),
                (Some(t), Some(w)) => format!("{t}:{w}"),
                _ if state == "active" => "CPU".to_string(),
                _ => state.clone(),
            };
            *profile.by.entry((statement_label(&query).to_string(), wait)).or_default() += 1;
        }
        profile.max_active = profile.max_active.max(active);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    profile
}

impl PgProfile {
    pub fn report(&self) {
        let total: u64 = self.by.values().sum();
        if self.samples == 0 || total == 0 {
            println!("postgres activity: nothing sampled");
            return;
        }
        println!(
            "postgres activity while the calls were being placed ({} samples of pg_stat_activity, 100 ms apart): {:.1} server \
             backends busy on average (max {}), while the server pool had {:.1} connections checked out (so {:.1} were held by \
             the process but idle in the server: acquire ping, response in flight, task not yet polled); whole run: {:.1} busy \
             on average. Share of busy backend-samples by statement, then by wait event (CPU = running):",
            self.samples,
            total as f64 / self.samples as f64,
            self.max_active,
            self.in_use_sum as f64 / self.samples as f64,
            (self.in_use_sum as f64 - self.busy_sum as f64).max(0.0) / self.samples as f64,
            self.all_busy as f64 / self.all_samples.max(1) as f64
        );
        let mut by_statement: BTreeMap<&str, u64> = BTreeMap::new();
        for ((statement, _), n) in &self.by {
            *by_statement.entry(statement).or_default() += n;
        }
        let mut statements: Vec<_> = by_statement.into_iter().collect();
        statements.sort_by_key(|s| std::cmp::Reverse(s.1));
        for (statement, n) in statements {
            let mut waits: Vec<(&str, u64)> =
                self.by.iter().filter(|((s, _), _)| s == statement).map(|((_, w), n)| (w.as_str(), *n)).collect();
            waits.sort_by_key(|w| std::cmp::Reverse(w.1));
            let waits = waits.iter().take(5).map(|(w, k)| format!("{w} {:.0}%", *k as f64 * 100.0 / n as f64)).collect::<Vec<_>>();
            println!(
                "  {:<38} {:>5.1}% ({:.2} backends avg): {}",
                statement,
                n as f64 * 100.0 / total as f64,
                n as f64 / self.samples as f64,
                waits.join(", ")
            );
        }
        let notify: u64 = self.by.iter().filter(|((_, w), _)| w.ends_with("NOTIFY lock")).map(|(_, n)| n).sum();
        if notify > 0 {
            println!(
                "  waiting for the NOTIFY lock: {:.1}% of busy backend-samples ({:.1} backends on average). PostgreSQL lets one \
                 transaction that called pg_notify commit at a time, holding the lock through its WAL flush (async.c, \
                 PreCommit_Notify), so these commits do not share fsyncs",
                notify as f64 * 100.0 / total as f64,
                notify as f64 / self.samples as f64
            );
        }
    }
}
