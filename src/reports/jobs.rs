//! Asynchronous reports: the job rows (`report_jobs`), their files (`report_files`), and the
//! background worker every API instance runs.
//!
//! A job is claimed in one statement (`FOR UPDATE SKIP LOCKED`), so several instances share
//! the queue; the claim takes a lease (`reports.lease_ms`) that the worker extends after each
//! page of records it reads. A `PROCESSING` job whose lease expired belonged to an instance
//! that died: the next claim takes it again, up to `reports.max_attempts` claims, then it is
//! `FAILED`. The file and the job's `SUCCESS` commit together, and only while the worker still
//! holds the job (not cancelled, not taken over). Then `callback_url`, if any, gets the job's
//! body (best effort: three tries, not retried after a restart).

use super::csv::{CsvReport, FileError, CONTENT_TYPE};
use super::{format_time, parse_filter, records, Caller, Cursor, FilterError, Product, MAX_PAGE_SIZE};
use crate::config::Settings;
use crate::webhooks::{Outbound, WebhookClient};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: Uuid,
    pub account_id: i64,
    pub product: String,
    pub params: Value,
    pub callback_url: Option<String>,
    pub status: String,
    pub items_count: Option<i64>,
    pub file_id: Option<Uuid>,
    pub attempts: i32,
    pub receive_time: DateTime<Utc>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
}

const JOB_COLUMNS: &str = "id, account_id, product, params, callback_url, status, items_count, file_id, attempts, receive_time, start_time, end_time";

impl Job {
    /// The body the SDK's `AsyncReportResponse` reads: the request echoed, its state, links.
    pub fn to_json(&self, base_url: &str) -> Value {
        let mut body = match &self.params {
            Value::Object(map) => Value::Object(map.clone()),
            _ => json!({}),
        };
        body["request_id"] = json!(self.id);
        body["request_status"] = json!(self.status);
        body["receive_time"] = json!(format_time(self.receive_time));
        if let Some(t) = self.start_time {
            body["start_time"] = json!(format_time(t));
        }
        if let Some(n) = self.items_count {
            body["items_count"] = json!(n);
        }
        let mut links = json!({ "self": { "href": format!("{base_url}/v2/reports/{}", self.id) } });
        if let (Some(file), "SUCCESS" | "TRUNCATED") = (self.file_id, self.status.as_str()) {
            links["download_report"] = json!({ "href": format!("{base_url}/v3/media/{file}") });
        }
        body["_links"] = links;
        body
    }
}

pub async fn create(pool: &PgPool, account_id: i64, product: Product, params: &Value, callback_url: Option<&str>) -> Result<Job, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO report_jobs (id, account_id, product, params, callback_url) VALUES ($1, $2, $3, $4, $5) RETURNING {JOB_COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(account_id)
    .bind(product.as_str())
    .bind(params)
    .bind(callback_url)
    .fetch_one(pool)
    .await
}

/// The account's job, or None (unknown, or another account's).
pub async fn get(pool: &PgPool, account_id: i64, id: Uuid) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM report_jobs WHERE id = $1 AND account_id = $2"))
        .bind(id)
        .bind(account_id)
        .fetch_optional(pool)
        .await
}

pub enum Cancel {
    Cancelled(Job),
    /// Finished already (SUCCESS, FAILED, ABORTED, …).
    TooLate(Job),
    NotFound,
}

/// Cancels a job that has not finished: it becomes ABORTED, and a worker running it stops at
/// its next page.
pub async fn cancel(pool: &PgPool, account_id: i64, id: Uuid) -> Result<Cancel, sqlx::Error> {
    let cancelled: Option<Job> = sqlx::query_as(&format!(
        "UPDATE report_jobs SET status = 'ABORTED', end_time = now(), locked_by = NULL, locked_until = NULL
         WHERE id = $1 AND account_id = $2 AND status IN ('PENDING', 'PROCESSING') RETURNING {JOB_COLUMNS}"
    ))
    .bind(id)
    .bind(account_id)
    .fetch_optional(pool)
    .await?;
    Ok(match cancelled {
        Some(job) => Cancel::Cancelled(job),
        None => match get(pool, account_id, id).await? {
            Some(job) => Cancel::TooLate(job),
            None => Cancel::NotFound,
        },
    })
}

pub struct ReportFile {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// The account's report file, or None (unknown, or another account's).
pub async fn file(pool: &PgPool, account_id: i64, id: Uuid) -> Result<Option<ReportFile>, sqlx::Error> {
    let row: Option<(String, String, Vec<u8>)> =
        sqlx::query_as("SELECT name, content_type, bytes FROM report_files WHERE id = $1 AND account_id = $2")
            .bind(id)
            .bind(account_id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(name, content_type, bytes)| ReportFile { name, content_type, bytes }))
}

/// Claims the oldest open job: PENDING, or PROCESSING under an expired lease. A job claimed
/// more than `max_attempts` times comes back FAILED, for the caller to report.
pub async fn claim(pool: &PgPool, worker: Uuid, lease_ms: u64, max_attempts: i32) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as(&format!(
        "WITH next AS (SELECT id FROM report_jobs
                       WHERE status = 'PENDING' OR (status = 'PROCESSING' AND locked_until < now())
                       ORDER BY receive_time LIMIT 1 FOR UPDATE SKIP LOCKED)
         UPDATE report_jobs j
         SET attempts = j.attempts + 1,
             status = CASE WHEN j.attempts + 1 > $3 THEN 'FAILED' ELSE 'PROCESSING' END,
             locked_by = CASE WHEN j.attempts + 1 > $3 THEN NULL ELSE $1 END,
             locked_until = CASE WHEN j.attempts + 1 > $3 THEN NULL ELSE now() + make_interval(secs => $2::float8 / 1000) END,
             start_time = COALESCE(j.start_time, now()),
             end_time = CASE WHEN j.attempts + 1 > $3 THEN now() END,
             error = CASE WHEN j.attempts + 1 > $3 THEN COALESCE(j.error, 'the report could not be produced') ELSE j.error END
         FROM next WHERE j.id = next.id
         RETURNING {}",
        JOB_COLUMNS.split(", ").map(|c| format!("j.{c}")).collect::<Vec<_>>().join(", ")
    ))
    .bind(worker)
    .bind(lease_ms as f64)
    .bind(max_attempts)
    .fetch_optional(pool)
    .await
}

/// Extends the lease; false when the job is no longer this worker's (cancelled, taken over).
async fn extend(pool: &PgPool, job: Uuid, worker: Uuid, lease_ms: u64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE report_jobs SET locked_until = now() + make_interval(secs => $3::float8 / 1000)
         WHERE id = $1 AND locked_by = $2 AND status = 'PROCESSING'",
    )
    .bind(job)
    .bind(worker)
    .bind(lease_ms as f64)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores the file and marks the job SUCCESS, together, if the worker still holds the job.
async fn complete(pool: &PgPool, job: &Job, worker: Uuid, items: i64, name: &str, bytes: &[u8]) -> Result<Option<Job>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let file_id = Uuid::new_v4();
    let done: Option<Job> = sqlx::query_as(&format!(
        "UPDATE report_jobs SET status = 'SUCCESS', items_count = $3, file_id = $4, end_time = now(), locked_by = NULL, locked_until = NULL
         WHERE id = $1 AND locked_by = $2 AND status = 'PROCESSING' RETURNING {JOB_COLUMNS}"
    ))
    .bind(job.id)
    .bind(worker)
    .bind(items)
    .bind(file_id)
    .fetch_optional(&mut *tx)
    .await?;
    if done.is_none() {
        return Ok(None);
    }
    sqlx::query("INSERT INTO report_files (id, account_id, job_id, name, content_type, bytes) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(file_id)
        .bind(job.account_id)
        .bind(job.id)
        .bind(name)
        .bind(CONTENT_TYPE)
        .bind(bytes)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done)
}

/// After an error: back to PENDING for another try, or FAILED after the last one.
async fn fail(pool: &PgPool, job: Uuid, worker: Uuid, max_attempts: i32, error: &str) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE report_jobs SET status = CASE WHEN attempts >= $3 THEN 'FAILED' ELSE 'PENDING' END,
                end_time = CASE WHEN attempts >= $3 THEN now() END, error = $4, locked_by = NULL, locked_until = NULL
         WHERE id = $1 AND locked_by = $2 AND status = 'PROCESSING' RETURNING {JOB_COLUMNS}"
    ))
    .bind(job)
    .bind(worker)
    .bind(max_attempts)
    .bind(error)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    File(#[from] FileError),
    #[error("the job's parameters are no longer valid")]
    Params,
    /// Cancelled or taken over while running: nothing to write.
    #[error("the job is no longer held")]
    Lost,
}

struct Ctx {
    pool: PgPool,
    settings: Settings,
    base_url: String,
    client: WebhookClient,
    worker: Uuid,
}

/// The background task producing report files; stop it with `stop`.
pub struct ReportWorker {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl ReportWorker {
    /// `base_url` is where this instance is reached, for the links in callbacks.
    pub fn spawn(pool: PgPool, settings: Settings, base_url: String) -> ReportWorker {
        let shutdown = CancellationToken::new();
        let client = WebhookClient::new(&settings.webhooks);
        let ctx = Ctx { pool, settings, base_url, client, worker: Uuid::new_v4() };
        let task = tokio::spawn(run(ctx, shutdown.clone()));
        ReportWorker { shutdown, task }
    }

    /// Stops claiming; a job being produced is left to its lease (another instance retakes it).
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

async fn run(ctx: Ctx, shutdown: CancellationToken) {
    let poll = Duration::from_millis(ctx.settings.reports.poll_ms.max(10));
    let settings = &ctx.settings.reports;
    while !shutdown.is_cancelled() {
        let claimed = claim(&ctx.pool, ctx.worker, settings.lease_ms, settings.max_attempts).await;
        let job = match claimed {
            Ok(Some(job)) => job,
            Ok(None) => {
                tokio::select! { _ = shutdown.cancelled() => break, _ = tokio::time::sleep(poll) => continue }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not claim a report job");
                tokio::select! { _ = shutdown.cancelled() => break, _ = tokio::time::sleep(poll) => continue }
            }
        };
        let span = tracing::info_span!("report", report_id = %job.id, product = %job.product);
        if handle(&ctx, job, &shutdown).instrument(span).await {
            break;
        }
    }
}

/// Produces one claimed job and reports how it ended; true when shutdown interrupted it.
async fn handle(ctx: &Ctx, job: Job, shutdown: &CancellationToken) -> bool {
    let settings = &ctx.settings.reports;
    if job.status == "FAILED" {
        tracing::warn!("report job failed: claimed too many times");
        callback(ctx, &job).await;
        return false;
    }
    let ended = tokio::select! {
        _ = shutdown.cancelled() => return true,
        result = produce(ctx, &job) => result,
    };
    let finished = match ended {
        Ok(done) => Some(done),
        Err(RunError::Lost) => None,
        Err(e) => {
            tracing::warn!(error = %e, "report job failed");
            fail(&ctx.pool, job.id, ctx.worker, settings.max_attempts, &e.to_string()).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not record a report's failure");
                None
            })
        }
    };
    if let Some(done) = finished.filter(|j| j.status == "SUCCESS" || j.status == "FAILED") {
        tracing::info!(status = %done.status, items = done.items_count, "report job finished");
        callback(ctx, &done).await;
    }
    false
}

/// Reads every record of the job, page by page, into a zipped CSV; stores it.
async fn produce(ctx: &Ctx, job: &Job) -> Result<Job, RunError> {
    let api_key: String = sqlx::query_scalar("SELECT api_key FROM accounts WHERE id = $1").bind(job.account_id).fetch_one(&ctx.pool).await?;
    let params: HashMap<String, String> = match &job.params {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), plain(v))).collect(),
        _ => HashMap::new(),
    };
    let filter = parse_filter(&params, &Caller { account_id: job.account_id, api_key: &api_key }).map_err(|_: FilterError| RunError::Params)?;
    let mut report = CsvReport::new(filter.product, &api_key)?;
    let mut after: Option<Cursor> = None;
    loop {
        let page = records::page(&ctx.pool, &filter, after, MAX_PAGE_SIZE).await?;
        for leg in &page {
            report.push(leg)?;
        }
        if !extend(&ctx.pool, job.id, ctx.worker, ctx.settings.reports.lease_ms).await? {
            return Err(RunError::Lost);
        }
        match page.last() {
            Some(last) if page.len() as i64 == MAX_PAGE_SIZE => after = Some(last.cursor()),
            _ => break,
        }
    }
    let items = report.count();
    let name = format!("{}-{}", filter.product.as_str().to_ascii_lowercase(), job.id);
    let bytes = report.into_zip(&format!("{name}.csv"))?;
    complete(&ctx.pool, job, ctx.worker, items, &format!("{name}.zip"), &bytes).await?.ok_or(RunError::Lost)
}

/// A JSON parameter as the string a query parameter would be.
pub fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// POSTs the finished job to its callback_url: three tries, a second apart and more.
async fn callback(ctx: &Ctx, job: &Job) {
    let Some(url) = job.callback_url.as_deref() else { return };
    let body = job.to_json(&ctx.base_url);
    let timeout = Duration::from_millis(ctx.settings.reports.callback_timeout_ms);
    for attempt in 1..=3u32 {
        let out = Outbound { url, method: "POST", payload: &body, timeout, signer: None, body_limit: ctx.client.discard_reply() };
        match ctx.client.send(out).await {
            Ok(_) => return,
            Err((e, _)) => {
                tracing::warn!(error = %e, attempt, "report callback failed");
                if !e.is_retryable() || attempt == 3 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1000 * attempt as u64)).await;
            }
        }
    }
}
