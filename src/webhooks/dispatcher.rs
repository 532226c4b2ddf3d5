//! The outbox dispatcher: delivers pending events in order per call, retries with exponential
//! backoff and jitter until an event is too old, and records every attempt.
//!
//! Ordering: only the oldest pending event of a call can be claimed, so a call's events leave
//! one after another while different calls' events go out in parallel. Events a leg hands over
//! from memory join their call's lane: one task delivers a call's events here in order, so a
//! chain written while its predecessor is in flight follows it without waiting for a claim.

use super::client::{Outbound, WebhookClient};
use super::signing::Signer;
use crate::cache::{Changed, Invalidations, SharedCache};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(sqlx::FromRow)]
struct Claimed {
    id: i64,
    call_uuid: Uuid,
    payload: Value,
    url: Option<String>,
    method: String,
    attempts: i32,
    created_at: DateTime<Utc>,
    signed: bool,
    api_key: String,
    signature_secret: String,
    application_id: Uuid,
}

enum Admission {
    Start(HandOff),
    Queued,
    Refused(HandOff),
}

struct Outcome {
    id: i64,
    /// delivered | pending (retry) | failed
    state: &'static str,
    next_attempt_at: DateTime<Utc>,
    status_code: Option<i32>,
    latency_ms: i32,
    error: Option<String>,
}

/// Events a leg of this instance just wrote and locked for this dispatcher, oldest first: sent
/// from memory at once, without waiting for a claim; or, when an older event of the call
/// (`after`) was still in flight, right after this dispatcher has delivered that one.
pub struct HandOff {
    pub call_uuid: Uuid,
    pub application_id: Uuid,
    pub after: Option<i64>,
    pub events: Vec<HandedEvent>,
}

/// The way to this instance's dispatcher for events written here (by legs, by the API's
/// creates): empty until the dispatcher runs, and in an instance without the webhooks role.
#[derive(Clone, Default)]
pub struct HandOffs(Arc<std::sync::OnceLock<mpsc::UnboundedSender<HandOff>>>);

impl HandOffs {
    pub fn connect(&self, dispatcher: mpsc::UnboundedSender<HandOff>) {
        let _ = self.0.set(dispatcher);
    }

    /// How long to lock `pending` new events for this dispatcher: long enough to send them one
    /// after another. None: no dispatcher here, or nothing to send.
    pub fn lock_s(&self, event_timeout_ms: u64, pending: usize) -> Option<i64> {
        let per_event_s = event_timeout_ms.div_ceil(1000) as i64;
        (pending > 0 && self.0.get().is_some()).then(|| pending as i64 * per_event_s + 30)
    }

    /// Gives the chain to the dispatcher; hands it back if the dispatcher has stopped (its
    /// events are locked: the caller unlocks them for the claim path).
    pub fn send(&self, chain: HandOff) -> Result<(), HandOff> {
        match self.0.get() {
            Some(dispatcher) => dispatcher.send(chain).map_err(|e| e.0),
            None => Err(chain),
        }
    }
}

/// A call's events delivered by this dispatcher: one after another, by one task at a time.
struct Lane {
    /// The newest event given to the lane (being delivered, queued, or delivered last).
    last_id: i64,
    busy: bool,
    queue: std::collections::VecDeque<HandOff>,
    idle_since: Instant,
}

/// A lane is kept this long after its last delivery, for a chain written meanwhile.
const IDLE_LANE_TTL: Duration = Duration::from_secs(10);

pub struct HandedEvent {
    pub id: i64,
    pub payload: Value,
    pub url: Option<String>,
    pub method: String,
}

/// How an application's webhooks are signed; cached for handed-off events until the application
/// or its account changes (see `cache`).
#[derive(Clone, sqlx::FromRow)]
struct Signing {
    account_id: i64,
    signed: bool,
    api_key: String,
    signature_secret: String,
}

const SIGNING_CACHE_TTL: Duration = Duration::from_secs(30);

/// How long an outcome waits for others to be recorded with it. Deliveries never wait on it: only
/// a claimed (not handed-off) call's next event, which is claimable once this one is recorded.
const RECORD_GATHER: Duration = Duration::from_millis(5);
/// Recording outcomes is retried from this interval, doubling up to the maximum.
const RECORD_RETRY_MIN: Duration = Duration::from_millis(50);
const RECORD_RETRY_MAX: Duration = Duration::from_secs(2);

/// Claims up to $1 deliverable events: due, not locked by another delivery, and the oldest
/// pending event of their call (so a call's events leave in order). Public for the engine
/// benchmark, which watches how PostgreSQL plans it.
pub const CLAIM_SQL: &str = "WITH claimed AS (
        UPDATE events SET locked_until = now() + interval '60 seconds'
        WHERE id IN (
            SELECT e.id FROM events e
            WHERE e.state = 'pending' AND e.next_attempt_at <= now()
              AND (e.locked_until IS NULL OR e.locked_until < now())
              -- The oldest pending event of its call. A scalar subquery, not NOT EXISTS:
              -- it runs as one index probe per candidate whatever the statistics say (an
              -- anti-join planned on stale ones rescanned every pending event per candidate).
              AND e.seq = (SELECT p.seq FROM events p WHERE p.call_uuid = e.call_uuid AND p.state = 'pending' ORDER BY p.seq LIMIT 1)
            ORDER BY e.next_attempt_at, e.id
            LIMIT $1
            FOR UPDATE SKIP LOCKED)
        RETURNING id, call_uuid, payload, url, method, attempts, created_at)
     SELECT claimed.id, claimed.call_uuid, claimed.payload, claimed.url, claimed.method, claimed.attempts, claimed.created_at,
            a.signed_callbacks AS signed, acc.api_key, acc.signature_secret, a.id AS application_id
     FROM claimed JOIN calls c ON c.uuid = claimed.call_uuid
                  JOIN applications a ON a.id = c.application_id
                  JOIN accounts acc ON acc.id = c.account_id";

pub struct Dispatcher {
    /// Its own small pool, so claiming and recording never queue behind thousands of legs.
    pool: PgPool,
    client: WebhookClient,
    wake: Arc<Notify>,
    signing: Arc<SharedCache<Uuid, Signing>>,
    lanes: Mutex<HashMap<Uuid, Lane>>,
    /// When idle lanes were last dropped (at most once a second, not on every hand-off).
    lanes_pruned_at: Mutex<Instant>,
}

impl Dispatcher {
    pub fn new(pool: PgPool, client: WebhookClient, wake: Arc<Notify>, invalidations: &Invalidations) -> Dispatcher {
        let signing = SharedCache::registered(SIGNING_CACHE_TTL, invalidations);
        Dispatcher { pool, client, wake, signing, lanes: Mutex::new(HashMap::new()), lanes_pruned_at: Mutex::new(Instant::now()) }
    }

    /// Runs until `shutdown`; woken by `wake` (NOTIFY, new events; or the recorder, a delivered
    /// event may unblock its call's next) or the poll interval.
    ///
    /// A pipeline rather than batch-by-batch: claims go on while earlier deliveries are still in
    /// flight (up to `max_in_flight`), and each finished delivery is recorded with whatever else
    /// finished meanwhile, so one slow receiver never holds up the others.
    pub async fn run(self, hand_offs: mpsc::UnboundedReceiver<HandOff>, poll: Duration, shutdown: CancellationToken) {
        let settings = self.client.settings.clone();
        let dispatcher = Arc::new(self);
        let in_flight = Arc::new(Semaphore::new(settings.max_in_flight.max(1)));
        let (finished, outcomes) = mpsc::unbounded_channel::<Outcome>();
        let recorder = tokio::spawn(dispatcher.clone().record_loop(outcomes));
        tokio::spawn(dispatcher.clone().hand_off_loop(hand_offs, in_flight.clone(), finished.clone(), shutdown.clone()));
        while !shutdown.is_cancelled() {
            let free = in_flight.available_permits().min(settings.batch.max(1) as usize);
            if free == 0 {
                // Every slot busy: wait for one delivery to finish.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    permit = in_flight.clone().acquire_owned() => drop(permit),
                }
                continue;
            }
            let claimed = match dispatcher.claim(free as i64).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook dispatcher: claiming failed");
                    Vec::new()
                }
            };
            let more_waiting = claimed.len() == free;
            for event in claimed {
                let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
                let (dispatcher, finished) = (dispatcher.clone(), finished.clone());
                tokio::spawn(async move {
                    if dispatcher.open_lane(event.call_uuid, event.id) {
                        dispatcher.run_lane(event.call_uuid, vec![event], &finished).await;
                    } else {
                        let outcome = dispatcher.deliver(event).await;
                        let _ = finished.send(outcome);
                    }
                    drop(permit);
                });
            }
            if more_waiting {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = dispatcher.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
        // Let deliveries in flight finish and be recorded; unrecorded ones are retried by
        // whichever dispatcher claims them once their lock expires.
        drop(finished);
        let _ = tokio::time::timeout(Duration::from_millis(settings.event_timeout_ms + 1000), recorder).await;
    }

    /// Claims up to `limit` deliverable events: due, not locked by another delivery, and the
    /// oldest pending event of their call (so a call's events leave in order).
    async fn claim(&self, limit: i64) -> Result<Vec<Claimed>, sqlx::Error> {
        sqlx::query_as(
            CLAIM_SQL,
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Sends each handed-off chain as it comes, its events one after another, in its call's lane.
    async fn hand_off_loop(
        self: Arc<Self>,
        mut hand_offs: mpsc::UnboundedReceiver<HandOff>,
        in_flight: Arc<Semaphore>,
        finished: mpsc::UnboundedSender<Outcome>,
        shutdown: CancellationToken,
    ) {
        loop {
            let chain = tokio::select! {
                _ = shutdown.cancelled() => return,
                chain = hand_offs.recv() => match chain { Some(chain) => chain, None => return },
            };
            let chain = match self.admit(chain) {
                Admission::Start(chain) => chain,
                Admission::Queued => continue,
                Admission::Refused(chain) => {
                    self.unlock(chain.events.iter().map(|e| e.id).collect()).await;
                    continue;
                }
            };
            let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
            let (dispatcher, finished) = (self.clone(), finished.clone());
            tokio::spawn(async move {
                let call = chain.call_uuid;
                if let Some(events) = dispatcher.claimed_from(chain).await {
                    dispatcher.run_lane(call, events, &finished).await;
                }
                drop(permit);
            });
        }
    }

    /// Where a handed-off chain goes: out now (nothing of its call is pending before it, or
    /// what was is delivered), behind its call's delivery in flight here, or back to the claim
    /// path (its predecessor is in flight elsewhere, or was not delivered).
    fn admit(&self, chain: HandOff) -> Admission {
        let mut lanes = self.lanes.lock().unwrap();
        let mut pruned_at = self.lanes_pruned_at.lock().unwrap();
        if pruned_at.elapsed() > Duration::from_secs(1) {
            lanes.retain(|_, lane| lane.busy || lane.idle_since.elapsed() < IDLE_LANE_TTL);
            *pruned_at = Instant::now();
        }
        drop(pruned_at);
        let last_id = chain.events.last().map_or(0, |e| e.id);
        let lane = lanes.get_mut(&chain.call_uuid);
        match (chain.after, lane) {
            (Some(after), Some(lane)) if lane.last_id == after => {
                lane.last_id = last_id;
                if lane.busy {
                    lane.queue.push_back(chain);
                    return Admission::Queued;
                }
                lane.busy = true;
                Admission::Start(chain)
            }
            (None, Some(lane)) if !lane.busy => {
                lane.last_id = last_id;
                lane.busy = true;
                Admission::Start(chain)
            }
            (None, None) => {
                lanes.insert(chain.call_uuid, Lane { last_id, busy: true, queue: Default::default(), idle_since: Instant::now() });
                Admission::Start(chain)
            }
            _ => Admission::Refused(chain),
        }
    }

    /// Opens the lane of a claimed event's call; false if the call already has a delivery in
    /// flight here (then the event goes out on its own).
    fn open_lane(&self, call: Uuid, event_id: i64) -> bool {
        let mut lanes = self.lanes.lock().unwrap();
        if lanes.get(&call).is_some_and(|lane| lane.busy) {
            return false;
        }
        lanes.insert(call, Lane { last_id: event_id, busy: true, queue: Default::default(), idle_since: Instant::now() });
        true
    }

    /// Delivers `events`, then each chain queued in the call's lane meanwhile. After the first
    /// event that is not delivered, the rest (queued chains included) go back to the claim
    /// path, which keeps the call's order behind the retried one.
    async fn run_lane(&self, call: Uuid, mut events: Vec<Claimed>, finished: &mpsc::UnboundedSender<Outcome>) {
        loop {
            let mut rest = events.into_iter();
            while let Some(event) = rest.next() {
                let outcome = self.deliver(event).await;
                let delivered = outcome.state == "delivered";
                let _ = finished.send(outcome);
                if !delivered {
                    let mut ids: Vec<i64> = rest.map(|e| e.id).collect();
                    ids.extend(self.close_lane(call));
                    self.unlock(ids).await;
                    return;
                }
            }
            let next = {
                let mut lanes = self.lanes.lock().unwrap();
                let Some(lane) = lanes.get_mut(&call) else { return };
                let next = lane.queue.pop_front();
                if next.is_none() {
                    lane.busy = false;
                    lane.idle_since = Instant::now();
                }
                next
            };
            match next {
                Some(chain) => match self.claimed_from(chain).await {
                    Some(claimed) => events = claimed,
                    // Unlocked, lane closed.
                    None => return,
                },
                None => return,
            }
        }
    }

    /// Removes the call's lane; the ids of the events still queued in it.
    fn close_lane(&self, call: Uuid) -> Vec<i64> {
        let lane = self.lanes.lock().unwrap().remove(&call);
        lane.map(|lane| lane.queue.into_iter().flat_map(|c| c.events.into_iter().map(|e| e.id)).collect()).unwrap_or_default()
    }

    /// A handed-off chain's events as deliverable ones (with the application's signing); None,
    /// with the chain unlocked, if the signing settings cannot be read.
    async fn claimed_from(&self, chain: HandOff) -> Option<Vec<Claimed>> {
        let signing = match self.signing_of(chain.application_id).await {
            Ok(signing) => signing,
            Err(e) => {
                tracing::warn!(error = %e, "webhook dispatcher: reading the application's signing settings failed");
                let mut ids: Vec<i64> = chain.events.iter().map(|e| e.id).collect();
                ids.extend(self.close_lane(chain.call_uuid));
                self.unlock(ids).await;
                return None;
            }
        };
        let events = chain
            .events
            .into_iter()
            .map(|event| Claimed {
                id: event.id,
                call_uuid: chain.call_uuid,
                payload: event.payload,
                url: event.url,
                method: event.method,
                attempts: 0,
                created_at: Utc::now(),
                signed: signing.signed,
                api_key: signing.api_key.clone(),
                signature_secret: signing.signature_secret.clone(),
                application_id: chain.application_id,
            })
            .collect();
        Some(events)
    }

    /// Gives events back to the claim path.
    pub async fn unlock(&self, ids: Vec<i64>) {
        if ids.is_empty() {
            return;
        }
        if let Err(e) = unlock_events(&self.pool, &ids).await {
            // They stay locked until the lock expires, then any dispatcher delivers them.
            tracing::warn!(error = %e, "webhook dispatcher: unlocking events failed");
        }
        self.wake.notify_one();
    }

    async fn signing_of(&self, application_id: Uuid) -> Result<Signing, sqlx::Error> {
        if let Some(signing) = self.signing.get(&application_id) {
            return Ok(signing);
        }
        let read_at = self.signing.generation();
        let signing: Signing = sqlx::query_as(
            "SELECT acc.id AS account_id, a.signed_callbacks AS signed, acc.api_key, acc.signature_secret
             FROM applications a JOIN accounts acc ON acc.id = a.account_id WHERE a.id = $1",
        )
        .bind(application_id)
        .fetch_one(&self.pool)
        .await?;
        let read_from = vec![Changed::Application(application_id), Changed::Account(signing.account_id)];
        self.signing.insert(application_id, signing.clone(), read_from, read_at);
        Ok(signing)
    }

    /// Records finished deliveries, together with whatever else finished meanwhile, then wakes
    /// the claim loop: each delivered event may have unblocked the next of its call.
    async fn record_loop(self: Arc<Self>, mut outcomes: mpsc::UnboundedReceiver<Outcome>) {
        const MAX_PER_WRITE: usize = 1000;
        while let Some(first) = outcomes.recv().await {
            // Outcomes that arrive within RECORD_GATHER share the write (and the claim it wakes):
            // one statement per delivery cost the database more than the rows themselves.
            let mut batch = vec![first];
            let gathered = tokio::time::Instant::now() + RECORD_GATHER;
            while batch.len() < MAX_PER_WRITE {
                match tokio::time::timeout_at(gathered, outcomes.recv()).await {
                    Ok(Some(outcome)) => batch.push(outcome),
                    Ok(None) | Err(_) => break,
                }
            }
            // Never given up: an outcome not recorded leaves its event pending, and it would be
            // delivered again once its lock expires, only because our bookkeeping failed.
            let mut attempt = 0u32;
            while let Err(e) = self.record(&batch).await {
                attempt += 1;
                tracing::warn!(error = %e, attempt, events = batch.len(), "webhook dispatcher: recording outcomes failed; retrying");
                tokio::time::sleep(RECORD_RETRY_MIN.saturating_mul(1 << attempt.min(6)).min(RECORD_RETRY_MAX)).await;
            }
            self.wake.notify_one();
        }
    }

    async fn deliver(&self, event: Claimed) -> Outcome {
        let settings = &self.client.settings;
        let now = Utc::now();
        let Some(url) = event.url.as_deref() else {
            return Outcome { id: event.id, state: "failed", next_attempt_at: now, status_code: None, latency_ms: 0, error: Some("no event_url".into()) };
        };
        let signer = event.signed.then(|| Signer {
            api_key: event.api_key.clone(),
            application_id: event.application_id,
            secret: event.signature_secret.clone(),
        });
        let result = self
            .client
            .send(Outbound {
                url,
                method: &event.method,
                payload: &event.payload,
                timeout: Duration::from_millis(settings.event_timeout_ms),
                signer: signer.as_ref(),
                body_limit: self.client.discard_reply(),
            })
            .await;
        if let Ok(response) = &result {
            crate::metrics::webhook_attempt("delivered", response.latency);
        }
        match result {
            Ok(response) => Outcome {
                id: event.id,
                state: "delivered",
                next_attempt_at: now,
                status_code: Some(i32::from(response.status)),
                latency_ms: response.latency.as_millis() as i32,
                error: None,
            },
            Err((error, latency)) => {
                let status_code = match error {
                    super::WebhookError::Status(code) => Some(i32::from(code)),
                    _ => None,
                };
                let attempt = event.attempts + 1;
                let backoff = backoff(settings.retry_base_ms, settings.retry_max_ms, attempt);
                let next = now + chrono::Duration::from_std(backoff).unwrap_or_default();
                let too_old = (next - event.created_at).num_seconds() > settings.max_age_s;
                let state = if error.is_retryable() && !too_old { "pending" } else { "failed" };
                crate::metrics::webhook_attempt(if state == "pending" { "retry" } else { "failed" }, latency);
                tracing::debug!(event = event.id, %error, state, "webhook delivery failed");
                super::failures::delivery_failed(event.call_uuid, url, &error, state == "pending");
                Outcome { id: event.id, state, next_attempt_at: next, status_code, latency_ms: latency.as_millis() as i32, error: Some(error.to_string()) }
            }
        }
    }

    /// Writes every outcome and attempt of a batch in one statement.
    async fn record(&self, outcomes: &[Outcome]) -> Result<(), sqlx::Error> {
        let ids: Vec<i64> = outcomes.iter().map(|o| o.id).collect();
        let states: Vec<&str> = outcomes.iter().map(|o| o.state).collect();
        let next: Vec<DateTime<Utc>> = outcomes.iter().map(|o| o.next_attempt_at).collect();
        let codes: Vec<Option<i32>> = outcomes.iter().map(|o| o.status_code).collect();
        let latencies: Vec<i32> = outcomes.iter().map(|o| o.latency_ms).collect();
        let errors: Vec<Option<String>> = outcomes.iter().map(|o| o.error.clone()).collect();
        sqlx::query(
            "WITH o AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::int[], $5::int[], $6::text[])
                        AS t(id, state, next_attempt_at, status_code, latency_ms, error)),
                  u AS (UPDATE events e SET state = o.state, attempts = e.attempts + 1, next_attempt_at = o.next_attempt_at,
                               locked_until = NULL, delivered_at = CASE WHEN o.state = 'delivered' THEN now() END
                        FROM o WHERE e.id = o.id RETURNING e.id)
             -- Only events that still exist (an archived call's are gone): the statement cannot
             -- fail on a row, so retrying it until the database takes it always ends.
             INSERT INTO webhook_attempts (event_id, status_code, latency_ms, error)
             SELECT o.id, o.status_code, o.latency_ms, o.error FROM o JOIN u ON u.id = o.id",
        )
        .bind(&ids)
        .bind(&states)
        .bind(&next)
        .bind(&codes)
        .bind(&latencies)
        .bind(&errors)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Gives locked events back to the claim path at once.
pub async fn unlock_events(pool: &PgPool, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE events SET locked_until = NULL WHERE id = ANY($1)").bind(ids).execute(pool).await?;
    Ok(())
}

/// The wait before retry `attempt` (1 after the first failure): exponential backoff with jitter
/// in its upper half, between half of base·2^(attempt-1) and all of it, capped at max. backon's
/// jitter adds up to one more delay, so its schedule runs at half; it has no formula for the
/// n-th delay, so each call walks a fresh schedule (past 30 doublings every wait is capped).
pub fn backoff(base_ms: u64, max_ms: u64, attempt: i32) -> Duration {
    use backon::{BackoffBuilder, ExponentialBuilder};
    let cap = Duration::from_millis(max_ms);
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(base_ms).min(cap) / 2)
        .with_max_delay(cap / 2)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempt.clamp(1, 30) as usize - 1)
        .unwrap_or(cap)
}
