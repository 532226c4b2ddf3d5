//! The outbox dispatcher: delivers pending events in order per call, retries with exponential
//! backoff and jitter until an event is too old, and records every attempt.
//!
//! Ordering: only the oldest pending event of a call can be claimed, so a call's events leave
//! one after another while different calls' events go out in parallel.

use super::client::{Outbound, WebhookClient};
use super::signing::Signer;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use rand::Rng;
use serde_json::Value;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;


#[derive(sqlx::FromRow)]
struct Claimed {
    id: i64,
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

struct Outcome {
    id: i64,
    /// delivered | pending (retry) | failed
    state: &'static str,
    next_attempt_at: DateTime<Utc>,
    status_code: Option<i32>,
    latency_ms: i32,
    error: Option<String>,
}

pub struct Dispatcher {
    pool: PgPool,
    client: WebhookClient,
    wake: Arc<Notify>,
}

impl Dispatcher {
    pub fn new(pool: PgPool, client: WebhookClient, wake: Arc<Notify>) -> Dispatcher {
        Dispatcher { pool, client, wake }
    }

    /// Runs until `shutdown`; woken by `wake` (NOTIFY) or the poll interval.
    pub async fn run(self, poll: Duration, shutdown: CancellationToken) {
        loop {
            let busy = match self.deliver_batch().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook dispatcher: claiming failed");
                    false
                }
            };
            if busy {
                // A delivered event may unblock the next one of its call: look again at once.
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Claims and delivers one batch; returns how many events it handled.
    pub async fn deliver_batch(&self) -> Result<usize, sqlx::Error> {
        let settings = &self.client.settings;
        let claimed: Vec<Claimed> = sqlx::query_as(
            "WITH claimed AS (
                UPDATE events SET locked_until = now() + interval '60 seconds'
                WHERE id IN (
                    SELECT e.id FROM events e
                    WHERE e.state = 'pending' AND e.next_attempt_at <= now()
                      AND (e.locked_until IS NULL OR e.locked_until < now())
                      AND NOT EXISTS (SELECT 1 FROM events p WHERE p.call_uuid = e.call_uuid AND p.state = 'pending' AND p.seq < e.seq)
                    ORDER BY e.next_attempt_at, e.id
                    LIMIT $1
                    FOR UPDATE SKIP LOCKED)
                RETURNING id, call_uuid, payload, url, method, attempts, created_at)
             SELECT claimed.id, claimed.payload, claimed.url, claimed.method, claimed.attempts, claimed.created_at,
                    a.signed_callbacks AS signed, acc.api_key, acc.signature_secret, a.id AS application_id
             FROM claimed JOIN calls c ON c.uuid = claimed.call_uuid
                          JOIN applications a ON a.id = c.application_id
                          JOIN accounts acc ON acc.id = c.account_id",
        )
        .bind(settings.batch)
        .fetch_all(&self.pool)
        .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let count = claimed.len();
        let outcomes = join_all(claimed.into_iter().map(|event| self.deliver(event))).await;
        self.record(&outcomes).await?;
        Ok(count)
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
            })
            .await;
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
                tracing::debug!(event = event.id, %error, state, "webhook delivery failed");
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
                        FROM o WHERE e.id = o.id)
             INSERT INTO webhook_attempts (event_id, status_code, latency_ms, error)
             SELECT id, status_code, latency_ms, error FROM o",
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

/// Exponential backoff with full jitter in its upper half: base·2^(attempt-1), capped.
pub fn backoff(base_ms: u64, max_ms: u64, attempt: i32) -> Duration {
    let exp = base_ms.saturating_mul(1u64 << (attempt.clamp(1, 30) - 1) as u32).min(max_ms);
    let jittered = rand::thread_rng().gen_range(exp / 2..=exp.max(1));
    Duration::from_millis(jittered)
}
