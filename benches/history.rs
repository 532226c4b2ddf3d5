//! Queries over a large call history: reports, deep pages of `GET /v1/calls`, and the CDR export.
//!
//!   . scripts/db-env.sh outdial_history_bench && cargo bench --bench history -- [--legs 5000000]
//!
//! One run, in order:
//!  1. resets the bench database (DATABASE_URL; its name must contain "bench") and generates
//!     `--legs` finished legs of one account over `--months` months (statuses, countries, networks,
//!     durations and prices varied), unless `--reuse` finds that many already there;
//!  2. seals the history into the hourly rollup (what the running server does every minute);
//!  3. starts the API and measures, through HTTP, `--samples` requests each of:
//!     the report over one month for every `group_by`, and a 100-row page of `GET /v1/calls` with
//!     filters (status + one month) at random `record_index`, ascending and descending;
//!     each against a baseline in the same run: the same answer from plain SQL over `calls`
//!     (GROUP BY over the month; count(*) + ORDER BY … OFFSET);
//!  4. exports the CDR CSV of a window holding ~`--export-rows` legs through HTTP, counting rows
//!     and sampling this process's RSS, against a baseline of the same COPY read straight from
//!     PostgreSQL in this process (what the HTTP streaming costs on top).
//!
//! The last line is machine-readable: `history_legs=… report_p99_ms=… page_p99_ms=… csv_rows_per_s=… …`.

mod common;

use chrono::{DateTime, Duration as Days, Utc};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use outdial::applications::{self, keys, ApplicationSpec};
use outdial::auth::mint_application_jwt;
use outdial::config::Settings;
use outdial::startup::Instance;
use rand::Rng;
use sqlx::postgres::PgPoolCopyExt;
use sqlx::PgPool;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Queries over a large call history: reports, deep pages of `GET /v1/calls`, the CDR export.
#[derive(clap::Parser, Debug)]
#[command(name = "history", after_help = "Environment: DATABASE_URL (required).")]
struct Options {
    /// Legs generated (at least 1000)
    #[arg(long, value_name = "N", default_value_t = 5_000_000, value_parser = clap::value_parser!(i64).range(1000..))]
    legs: i64,
    /// Months of history they span
    #[arg(long, value_name = "M", default_value_t = 6, value_parser = clap::value_parser!(i64).range(1..))]
    months: i64,
    /// Requests measured per kind, ours and the baseline's alike
    #[arg(long, value_name = "S", default_value_t = 100, value_parser = common::positive::<usize>)]
    samples: usize,
    /// Rows in the CSV export window, about
    #[arg(long, value_name = "R", default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(1..))]
    export_rows: i64,
    /// Keep an existing bench history of N legs instead of regenerating it
    #[arg(long)]
    reuse: bool,
    #[command(flatten)]
    cargo: common::CargoBench,
}

const TARGET_REPORT_MS: f64 = 1000.0;
const TARGET_PAGE_MS: f64 = 20.0;
const TARGET_CSV_ROWS_PER_S: f64 = 200_000.0;
const GROUPS: [&str; 6] = ["day", "month", "country", "network", "status", "application"];
const CHUNK: i64 = 250_000;

fn main() -> ExitCode {
    common::main::<Options, _, _>("history", run)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// The bench account, its application's id and private key: found again with `--reuse`.
struct Fixture {
    account_id: i64,
    app_id: Uuid,
    private_pem: String,
}

async fn run(o: Options) -> anyhow::Result<ExitCode> {
    let url = std::env::var("DATABASE_URL").map_err(|_| anyhow::anyhow!("DATABASE_URL is not set; run `. scripts/db-env.sh outdial_history_bench` first"))?;
    let mut settings = Settings::load(None)?;
    settings.database.url = url.clone();
    settings.http.host = "127.0.0.1".into();
    settings.http.port = 0;
    settings.limits.other_requests_per_second = 1_000_000;
    settings.engine.roles = vec!["api".into()];
    settings.log.filter = "warn,sqlx=error".into();
    // Sealed explicitly below, timed.
    settings.history.seal_interval_s = 3600;
    outdial::telemetry::init(&settings.log);

    let (fixture, pool, first) = prepare(&o, &settings).await?;

    // 2. Seal.
    let started = Instant::now();
    outdial::history::rollup::seal(&pool, Duration::from_secs(300)).await?;
    let (rollup_rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM call_rollup").fetch_one(&pool).await?;
    println!("seal: {} legs into {rollup_rows} rollup rows in {:.1} s", o.legs, started.elapsed().as_secs_f64());
    sqlx::raw_sql("ANALYZE call_rollup; ANALYZE call_counts").execute(&pool).await?;

    let instance = Instance::start(settings.clone(), pool.clone()).await?;
    let port = instance.port.ok_or_else(|| anyhow::anyhow!("the instance has no API"))?;
    let base = format!("http://127.0.0.1:{port}");
    let token = mint_application_jwt(fixture.app_id, &fixture.private_pem, 3600)?;
    let client = common::http_client(settings.http.keep_alive_s, 8)?;

    // 3a. Reports over one month (the third, or the last when fewer), every group_by.
    let month_start = first + Days::days(30 * (o.months.min(3) - 1)) + Days::hours(5) + Days::minutes(17);
    let month_end = month_start + Days::days(30);
    let window = format!("date_start={}&date_end={}", iso(month_start), iso(month_end));
    // Ours and the baseline alike: one untimed pass over every group_by first (both warm), then
    // the same number of samples, taken in turn so both see the same machine.
    let report_url = |group_by: &str| format!("{base}/v1/reports/calls?{window}&group_by={group_by}");
    for group_by in GROUPS {
        let r = client.get(report_url(group_by)).bearer_auth(&token).send().await?;
        anyhow::ensure!(r.status() == 200, "report {group_by}: {}", r.text().await?);
        let body: serde_json::Value = r.json().await?;
        if group_by == GROUPS[0] {
            println!("report: one month ({} .. {}) holds {} legs", iso(month_start), iso(month_end), body["totals"]["count"]);
        }
        sqlx::query(&plain_report_sql(group_by)).bind(fixture.account_id).bind(month_start).bind(month_end).fetch_all(&pool).await?;
    }
    let report_samples = o.samples.max(GROUPS.len());
    let (mut report, mut report_baseline) = (histogram(), histogram());
    for i in 0..report_samples {
        let group_by = GROUPS[i % GROUPS.len()];
        let t = Instant::now();
        let r = client.get(report_url(group_by)).bearer_auth(&token).send().await?;
        anyhow::ensure!(r.status() == 200, "report {group_by}: {}", r.text().await?);
        r.bytes().await?;
        report.record(t.elapsed().as_micros() as u64)?;
        let t = Instant::now();
        sqlx::query(&plain_report_sql(group_by)).bind(fixture.account_id).bind(month_start).bind(month_end).fetch_all(&pool).await?;
        report_baseline.record(t.elapsed().as_micros() as u64)?;
    }
    println!(
        "report: {} requests (group_by {}), after one warm-up pass: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms | baseline (plain GROUP BY over calls, as many, warmed alike): p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms | ratio baseline/ours at p50 {:.0}x",
        report.len(),
        GROUPS.join("|"),
        quantile_ms(&report, 0.5),
        quantile_ms(&report, 0.99),
        quantile_ms(&report, 1.0),
        quantile_ms(&report_baseline, 0.5),
        quantile_ms(&report_baseline, 0.99),
        quantile_ms(&report_baseline, 1.0),
        quantile_ms(&report_baseline, 0.5) / quantile_ms(&report, 0.5).max(0.001),
    );

    // 3b. Pages with filters: completed calls of that month, 100 a page, anywhere in the list;
    // the baseline fetches the same pages, each right after ours.
    let filter = format!("status=completed&{window}&page_size=100");
    let count: i64 = {
        let r: serde_json::Value = client.get(format!("{base}/v1/calls?{filter}")).bearer_auth(&token).send().await?.json().await?;
        r["count"].as_i64().ok_or_else(|| anyhow::anyhow!("no count in {r}"))?
    };
    plain_page(&pool, fixture.account_id, month_start, month_end, 0, "asc").await?;
    let (mut page, mut page_baseline) = (histogram(), histogram());
    for i in 0..o.samples {
        let index = rand::thread_rng().gen_range(0..count.max(1));
        let order = if i % 2 == 0 { "asc" } else { "desc" };
        let t = Instant::now();
        let r = client.get(format!("{base}/v1/calls?{filter}&order={order}&record_index={index}")).bearer_auth(&token).send().await?;
        anyhow::ensure!(r.status() == 200, "page: {}", r.text().await?);
        let body: serde_json::Value = r.json().await?;
        page.record(t.elapsed().as_micros() as u64)?;
        anyhow::ensure!(body["_embedded"]["calls"].as_array().is_some_and(|c| !c.is_empty()), "an empty page at {index}");
        let t = Instant::now();
        plain_page(&pool, fixture.account_id, month_start, month_end, index, order).await?;
        page_baseline.record(t.elapsed().as_micros() as u64)?;
    }
    println!(
        "page: {} pages of 100 (status=completed, one month: {count} legs, random record_index, asc and desc), after one warm-up \
         page (the first request above): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms | baseline (count(*) + OFFSET, the same pages, \
         warmed alike): p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms | ratio {:.0}x",
        page.len(),
        quantile_ms(&page, 0.5),
        quantile_ms(&page, 0.99),
        quantile_ms(&page, 1.0),
        quantile_ms(&page_baseline, 0.5),
        quantile_ms(&page_baseline, 0.99),
        quantile_ms(&page_baseline, 1.0),
        quantile_ms(&page_baseline, 0.5) / quantile_ms(&page, 0.5).max(0.001),
    );

    // 4. CSV export of ~export_rows legs from the start of the history: the window's rows read
    // once untimed (both sides warm), then our export through HTTP, then its COPY read raw.
    let span = Days::seconds((30 * 86_400 * o.months) * o.export_rows.min(o.legs) / o.legs);
    let (lo, hi) = (first, first + span);
    let copy = outdial::history::cdr::copy_statement(fixture.account_id, outdial::history::Window { start: Some(lo), end: Some(hi) });
    let (expected_rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM calls WHERE account_id = $1 AND created_at >= $2 AND created_at <= $3")
        .bind(fixture.account_id)
        .bind(lo)
        .bind(hi)
        .fetch_one(&pool)
        .await?;
    copy_rows(&pool, &copy).await?;
    let rss_before = common::memory().rss_kb;
    let t = Instant::now();
    let response = client
        .get(format!("{base}/v1/reports/calls?date_start={}&date_end={}", iso(lo), iso(hi)))
        .bearer_auth(&token)
        .header("Accept", "text/csv")
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "export: {}", response.status());
    let (mut bytes, mut records, mut rss_peak) = (0u64, CsvRecords::default(), rss_before);
    let mut response = response;
    while let Some(chunk) = response.chunk().await? {
        bytes += chunk.len() as u64;
        records.feed(&chunk);
        rss_peak = rss_peak.max(common::memory().rss_kb);
    }
    let export = t.elapsed();
    // The header is a record too.
    let rows = records.count.saturating_sub(1);
    let rows_per_s = rows as f64 / export.as_secs_f64();
    let t = Instant::now();
    let baseline_rows = copy_rows(&pool, &copy).await?;
    let baseline_rows_per_s = baseline_rows as f64 / t.elapsed().as_secs_f64();
    println!(
        "csv: {rows} rows (CSV records less the header; the window holds {expected_rows}), {:.0} MB in {:.2} s = {:.0} rows/s; RSS {:.1} MB before, {:.1} MB at most while streaming (+{:.1} MB) | baseline (the export's binary COPY read raw from PostgreSQL, no HTTP, rows counted from its framing: {baseline_rows}): {:.0} rows/s | ratio {:.2}",
        bytes as f64 / 1e6,
        export.as_secs_f64(),
        rows_per_s,
        rss_before as f64 / 1024.0,
        rss_peak as f64 / 1024.0,
        (rss_peak - rss_before) as f64 / 1024.0,
        baseline_rows_per_s,
        rows_per_s / baseline_rows_per_s,
    );
    let rows_ok = rows as i64 == expected_rows && baseline_rows as i64 == expected_rows;
    if !rows_ok {
        println!("csv: ROW COUNT WRONG: the export gave {rows} rows and the raw COPY {baseline_rows}, the window holds {expected_rows}");
    }

    let (report_p99, page_p99) = (quantile_ms(&report, 0.99), quantile_ms(&page, 0.99));
    println!(
        "targets: report p99 < {TARGET_REPORT_MS} ms: {} | page p99 < {TARGET_PAGE_MS} ms: {} | csv >= {TARGET_CSV_ROWS_PER_S} rows/s: {}",
        verdict(report_p99 < TARGET_REPORT_MS),
        verdict(page_p99 < TARGET_PAGE_MS),
        if rows_ok { verdict(rows_per_s >= TARGET_CSV_ROWS_PER_S) } else { "NOT met (wrong row count)" }
    );
    println!(
        "history_legs={} report_p99_ms={report_p99:.1} page_p99_ms={page_p99:.1} csv_rows={rows} csv_rows_per_s={rows_per_s:.0} csv_rss_growth_mb={:.1}",
        o.legs,
        (rss_peak - rss_before) as f64 / 1024.0
    );
    instance.stop().await;
    Ok(if rows_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The bench database with its history: reused when `--reuse` finds it, else generated.
/// Returns the fixture, a pool, and when the history starts.
async fn prepare(o: &Options, settings: &Settings) -> anyhow::Result<(Fixture, PgPool, DateTime<Utc>)> {
    // Ends two days ago, so every hour of it may be sealed.
    let first = (Utc::now() - Days::days(2 + 30 * o.months)).date_naive().and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    if o.reuse {
        let pool = outdial::db::connect(&settings.database).await?;
        let found: Option<(i64, Uuid, String, i64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT f.account_id, f.app_id, f.private_pem, (SELECT count(*) FROM calls), f.first FROM bench_fixture f",
        )
        .fetch_optional(&pool)
        .await
        .unwrap_or(None);
        if let Some((account_id, app_id, private_pem, legs, first)) = found {
            if legs == o.legs {
                println!("history: reusing {legs} legs from {}", iso(first));
                // Reports must be timed from a cold rollup, as after a fresh seal.
                sqlx::raw_sql("TRUNCATE call_rollup, call_counts; UPDATE call_rollup_state SET sealed_until = '-infinity'").execute(&pool).await?;
                return Ok((Fixture { account_id, app_id, private_pem }, pool, first));
            }
        }
        println!("history: --reuse found no history of {} legs; generating", o.legs);
    }
    let (_, admin, _) = common::reset_bench_database("history-bench", "outdial_history_bench").await?;
    drop(admin);
    let pool = outdial::db::connect(&settings.database).await?;
    outdial::db::migrate(&pool).await?;
    let account = outdial::accounts::repo::create(&pool, "history bench", 1000).await?;
    let pair = keys::generate();
    let spec = ApplicationSpec { name: "history bench".into(), public_key_pem: Some(pair.public_pem.clone()), ..Default::default() };
    let app = applications::repo::insert(&pool, account.account_id, &spec, &pair.public_pem).await?;
    let other = applications::repo::insert(&pool, account.account_id, &ApplicationSpec { name: "history bench 2".into(), ..spec }, &pair.public_pem).await?;
    sqlx::query("CREATE TABLE bench_fixture (account_id BIGINT, app_id UUID, private_pem TEXT, first TIMESTAMPTZ)").execute(&pool).await?;
    sqlx::query("INSERT INTO bench_fixture VALUES ($1, $2, $3, $4)")
        .bind(account.account_id)
        .bind(app.id)
        .bind(&pair.private_pem)
        .bind(first)
        .execute(&pool)
        .await?;

    let started = Instant::now();
    let step_us = 30 * 86_400 * 1_000_000 * o.months / o.legs;
    let mut done = 0;
    while done < o.legs {
        let n = CHUNK.min(o.legs - done);
        generate_legs(&pool, account.account_id, app.id, other.id, first, step_us, done, n).await?;
        done += n;
        eprint!("\rhistory: {done} legs generated");
    }
    // What an operator does after a bulk load; also lets both sides use index-only scans.
    sqlx::query("VACUUM (ANALYZE) calls").execute(&pool).await?;
    eprintln!();
    println!(
        "history: {} legs over {} months generated in {:.0} s ({:.0} legs/s, three indexes + BRIN)",
        o.legs,
        o.months,
        started.elapsed().as_secs_f64(),
        o.legs as f64 / started.elapsed().as_secs_f64()
    );
    Ok((Fixture { account_id: account.account_id, app_id: app.id, private_pem: pair.private_pem }, pool, first))
}

/// Legs `from..from+n`, created `step_us` apart: 60% answered, the rest ending busy, failed,
/// timeout, unanswered, rejected or cancelled (status `completed` but for rejected, as the engine writes); eight destinations with their country, network and rate.
#[allow(clippy::too_many_arguments)]
async fn generate_legs(pool: &PgPool, account_id: i64, app: Uuid, other: Uuid, first: DateTime<Utc>, step_us: i64, from: i64, n: i64) -> anyhow::Result<()> {
    sqlx::query(
        "WITH d(k, prefix, country, network, rate) AS (VALUES
             (0, '44770', 'GB', 'GB-MOBILE', 0.0450), (1, '4420', 'GB', 'GB-FIXED', 0.0120), (2, '3361', 'FR', 'FR-MOBILE', 0.0520),
             (3, '331', 'FR', 'FR-FIXED', 0.0150), (4, '4915', 'DE', 'DE-MOBILE', 0.0610), (5, '4930', 'DE', 'DE-FIXED', 0.0140),
             (6, '1212', 'US', 'US-FIXED', 0.0090), (7, '3469', 'ES', 'ES-MOBILE', 0.0480))
         INSERT INTO calls (uuid, conversation_uuid, account_id, application_id, status, ending, to_endpoint, from_endpoint,
                            created_at, updated_at, start_time, end_time, duration_s, billed_s, rate, price, network, country)
         SELECT gen_random_uuid(), 'CON-' || gen_random_uuid(), $1, CASE WHEN i % 4 = 0 THEN $3 ELSE $2 END,
                CASE WHEN s.ending = 'rejected' THEN 'rejected' ELSE 'completed' END, s.ending,
                jsonb_build_object('type', 'phone', 'number', d.prefix || lpad((i % 1000000)::text, 7, '0')),
                jsonb_build_object('type', 'phone', 'number', '447700900001'),
                t, t + interval '1 minute', CASE WHEN answered THEN t + interval '6 s' END, t + make_interval(secs => 6 + dur),
                CASE WHEN answered THEN dur ELSE 0 END, CASE WHEN answered THEN 60 * ceil(dur / 60.0)::int ELSE 0 END, d.rate,
                CASE WHEN answered THEN round(d.rate * ceil(dur / 60.0), 8) ELSE 0 END, d.network, d.country
         FROM generate_series($5::bigint, $5 + $6 - 1) AS i
              CROSS JOIN LATERAL (SELECT $4::timestamptz + make_interval(secs => i * $7 / 1e6) AS t,
                                         (i * 7919) % 100 AS roll, 1 + (i * 104729) % 600 AS dur) r
              CROSS JOIN LATERAL (SELECT CASE WHEN roll < 60 THEN 'completed' WHEN roll < 70 THEN 'busy' WHEN roll < 78 THEN 'failed'
                                              WHEN roll < 85 THEN 'timeout' WHEN roll < 95 THEN 'unanswered'
                                              WHEN roll < 98 THEN 'rejected' ELSE 'cancelled' END AS ending) s
              CROSS JOIN LATERAL (SELECT s.ending = 'completed' AS answered) a
              JOIN d ON d.k = i % 8",
    )
    .bind(account_id)
    .bind(app)
    .bind(other)
    .bind(first)
    .bind(from)
    .bind(n)
    .bind(step_us as f64)
    .execute(pool)
    .await?;
    Ok(())
}

/// CSV records (RFC 4180: a line break inside quotes is part of a field), fed in chunks.
#[derive(Default)]
struct CsvRecords {
    count: u64,
    in_quotes: bool,
}

impl CsvRecords {
    fn feed(&mut self, chunk: &[u8]) {
        if !self.in_quotes && !chunk.contains(&b'"') {
            self.count += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            return;
        }
        for b in chunk {
            match b {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => self.count += 1,
                _ => {}
            }
        }
    }
}

/// Runs a binary COPY and counts its rows from the format's framing (header, then per row a
/// 16-bit field count and each field's 32-bit length and bytes, then a -1 trailer): a binary row
/// holds any byte, newlines included.
async fn copy_rows(pool: &PgPool, copy: &str) -> anyhow::Result<u64> {
    let mut raw = pool.copy_out_raw(copy).await?;
    let mut rows = BinaryCopyRows::default();
    while let Some(chunk) = raw.next().await {
        rows.feed(&chunk?)?;
    }
    anyhow::ensure!(rows.finished, "the binary COPY ended without its trailer");
    Ok(rows.count)
}

#[derive(Default)]
struct BinaryCopyRows {
    pending: Vec<u8>,
    header_seen: bool,
    finished: bool,
    count: u64,
}

impl BinaryCopyRows {
    const SIGNATURE: &'static [u8] = b"PGCOPY\n\xff\r\n\0";

    fn feed(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        self.pending.extend_from_slice(chunk);
        let buf = &self.pending[..];
        let mut at = 0;
        if !self.header_seen {
            let fixed = Self::SIGNATURE.len() + 8;
            if buf.len() < fixed {
                return Ok(());
            }
            anyhow::ensure!(&buf[..Self::SIGNATURE.len()] == Self::SIGNATURE, "no PGCOPY signature");
            let extension = u32::from_be_bytes(buf[fixed - 4..fixed].try_into()?) as usize;
            if buf.len() < fixed + extension {
                return Ok(());
            }
            at = fixed + extension;
            self.header_seen = true;
        }
        // Whole rows only; a row cut by the chunk's end waits for the next chunk.
        while !self.finished && buf.len() >= at + 2 {
            let fields = i16::from_be_bytes([buf[at], buf[at + 1]]);
            if fields == -1 {
                self.finished = true;
                at += 2;
                break;
            }
            let mut end = at + 2;
            let mut whole = true;
            for _ in 0..fields {
                if buf.len() < end + 4 {
                    whole = false;
                    break;
                }
                let len = i32::from_be_bytes(buf[end..end + 4].try_into()?);
                end += 4 + len.max(0) as usize;
            }
            if !whole || buf.len() < end {
                break;
            }
            self.count += 1;
            at = end;
        }
        self.pending.drain(..at);
        Ok(())
    }
}

/// The report the obvious way: one GROUP BY over the month's legs.
fn plain_report_sql(group_by: &str) -> String {
    let key = match group_by {
        "day" => "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        "month" => "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM')",
        "application" => "application_id::text",
        other => other,
    };
    format!(
        "SELECT {key}, count(*), count(start_time), sum(billed_s), sum(price), sum(duration_s)
         FROM calls WHERE account_id = $1 AND created_at >= $2 AND created_at <= $3 GROUP BY 1"
    )
}

/// A page the obvious way: count(*) and ORDER BY … OFFSET over the filtered legs.
async fn plain_page(pool: &PgPool, account_id: i64, lo: DateTime<Utc>, hi: DateTime<Utc>, index: i64, order: &str) -> anyhow::Result<()> {
    let filter = "account_id = $1 AND COALESCE(ending, status) = 'completed' AND created_at >= $2 AND created_at <= $3";
    sqlx::query(&format!("SELECT count(*) FROM calls WHERE {filter}")).bind(account_id).bind(lo).bind(hi).fetch_one(pool).await?;
    sqlx::query(&format!("SELECT * FROM calls WHERE {filter} ORDER BY created_at {order}, uuid {order} LIMIT 100 OFFSET {index}"))
        .bind(account_id)
        .bind(lo)
        .bind(hi)
        .fetch_all(pool)
        .await?;
    Ok(())
}
