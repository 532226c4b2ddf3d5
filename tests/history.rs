//! Queries over call history against a real database: `GET /v1/calls` counts and pages and
//! `GET /v1/reports/calls` (JSON and CSV) must equal straightforward SQL over `calls`, whether
//! the window is read from the legs, from sealed rollup hours, or from both.

mod common;

use chrono::{DateTime, Utc};
use common::*;
use outdial::history::rollup;
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::str::FromStr;
use uuid::Uuid;

/// Endings, in turn; the status reads `completed` after every ending but `rejected`.
const ENDINGS: &str = "ARRAY['completed','completed','busy','failed','timeout','completed','unanswered','rejected','cancelled']";

/// `n` finished legs from `first`, one every `step_s` seconds, with varied status, country,
/// network, duration and price; every third on a second application.
async fn insert_legs(app: &TestApp, other_app: Uuid, first: DateTime<Utc>, n: i32, step_s: i32) {
    sqlx::query(&format!(
        "INSERT INTO calls (uuid, conversation_uuid, account_id, application_id, status, ending, to_endpoint, from_endpoint,
                            created_at, updated_at, start_time, end_time, duration_s, billed_s, rate, price, network, country)
         SELECT gen_random_uuid(), 'CON-' || i, $1, CASE WHEN i % 3 = 0 THEN $3 ELSE $2 END,
                CASE WHEN s.ending = 'rejected' THEN 'rejected' ELSE 'completed' END,
                -- legs stored before endings were recorded have none
                CASE WHEN i % 11 <> 0 THEN s.ending END,
                jsonb_build_object('type', 'phone', 'number', (ARRAY['4477009','3361234','1212555'])[1 + i % 3] || lpad(i::text, 5, '0')),
                jsonb_build_object('type', 'phone', 'number', '447700900001'),
                t, t, CASE WHEN s.ending = 'completed' THEN t + interval '5 s' END, t + interval '90 s',
                CASE WHEN s.ending = 'completed' THEN 1 + i % 200 ELSE 0 END,
                CASE WHEN s.ending = 'completed' THEN 60 * ceil((1 + i % 200) / 60.0) ELSE 0 END,
                0.01, CASE WHEN s.ending = 'completed' THEN round((1 + i % 200) * 0.000333, 8) ELSE 0 END,
                (ARRAY['GB-MOBILE','FR-FIXED',NULL])[1 + i % 3], (ARRAY['GB','FR',NULL])[1 + i % 3]
         FROM generate_series(0, $4 - 1) AS i,
              LATERAL (SELECT $5::timestamptz + make_interval(secs => i * $6) AS t) tt,
              LATERAL (SELECT ({ENDINGS})[1 + i % 9] AS ending) s"
    ))
    .bind(app.account.account_id)
    .bind(app.app_id)
    .bind(other_app)
    .bind(n)
    .bind(first)
    .bind(step_s)
    .execute(&app.pool)
    .await
    .unwrap();
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A history of 2,000 legs over ~2.3 days, on two applications.
async fn app_with_history(pool: PgPool) -> TestApp {
    let app = spawn_app(pool).await;
    let other = create_application(&app.pool, app.account.account_id, None).await;
    insert_legs(&app, other, t("2026-10-01T00:07:30Z"), 2000, 101).await;
    app
}

async fn seal(pool: &PgPool) {
    rollup::seal(pool, std::time::Duration::from_secs(300)).await.unwrap();
}

fn report_url(start: &str, end: &str, group_by: &str) -> String {
    format!("/v1/reports/calls?date_start={start}&date_end={end}&group_by={group_by}")
}

/// The report as key → (count, answered, billed_s, total_price) from the API.
async fn api_report(app: &TestApp, start: &str, end: &str, group_by: &str) -> BTreeMap<String, (i64, i64, i64, Decimal)> {
    let body = app.get_json(&report_url(start, end, group_by)).await;
    body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let price = Decimal::from_str(g["total_price"].as_str().unwrap()).unwrap();
            (g["key"].as_str().unwrap().to_string(), (g["count"].as_i64().unwrap(), g["answered"].as_i64().unwrap(), g["billed_seconds"].as_i64().unwrap(), price))
        })
        .collect()
}

/// The same report computed the obvious way.
async fn sql_report(app: &TestApp, start: &str, end: &str, group_by: &str) -> BTreeMap<String, (i64, i64, i64, Decimal)> {
    let key = match group_by {
        "day" => "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        "month" => "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM')",
        "country" => "COALESCE(country, '')",
        "network" => "COALESCE(network, '')",
        "status" => "COALESCE(ending, status)",
        _ => "application_id::text",
    };
    let rows: Vec<(String, i64, i64, i64, Decimal)> = sqlx::query_as(&format!(
        "SELECT {key}, count(*), count(start_time), COALESCE(sum(billed_s), 0)::bigint, COALESCE(sum(price), 0)
         FROM calls WHERE account_id = $1 AND created_at >= $2 AND created_at <= $3 GROUP BY 1"
    ))
    .bind(app.account.account_id)
    .bind(t(start))
    .bind(t(end))
    .fetch_all(&app.pool)
    .await
    .unwrap();
    rows.into_iter().map(|(k, c, a, b, p)| (k, (c, a, b, p))).collect()
}

const WINDOWS: [(&str, &str); 3] = [
    ("2026-10-01T00:00:00Z", "2026-10-05T00:00:00Z"),
    // ragged at both ends, inside sealed history
    ("2026-10-01T03:17:00Z", "2026-10-02T14:43:21Z"),
    // inside one hour
    ("2026-10-01T05:10:00Z", "2026-10-01T05:40:00Z"),
];

async fn assert_reports_match(app: &TestApp) {
    for (start, end) in WINDOWS {
        for group_by in ["day", "month", "country", "network", "status", "application"] {
            let expected = sql_report(app, start, end, group_by).await;
            assert!(!expected.is_empty(), "window {start}..{end} holds legs");
            assert_eq!(api_report(app, start, end, group_by).await, expected, "{group_by} over {start}..{end}");
        }
    }
}

#[sqlx::test]
async fn reports_equal_sql_before_and_after_sealing(pool: PgPool) {
    let app = app_with_history(pool).await;
    assert_reports_match(&app).await;
    seal(&app.pool).await;
    let (sealed,): (i64,) = sqlx::query_as("SELECT count(*) FROM call_rollup").fetch_one(&app.pool).await.unwrap();
    assert!(sealed > 0, "the history was sealed into the rollup");
    assert_reports_match(&app).await;
    app.stop().await;
}

#[sqlx::test]
async fn a_running_leg_holds_back_sealing_from_its_hour(pool: PgPool) {
    let app = app_with_history(pool).await;
    // A leg of 2026-10-02T04:xx still has a job queued: that hour and later stay unsealed.
    let (live,): (Uuid,) = sqlx::query_as(
        "SELECT uuid FROM calls WHERE created_at >= '2026-10-02T04:00:00Z' ORDER BY created_at LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO call_jobs (call_uuid, state) VALUES ($1, 'queued')").bind(live).execute(&app.pool).await.unwrap();
    seal(&app.pool).await;
    let (until,): (DateTime<Utc>,) = sqlx::query_as("SELECT sealed_until FROM call_rollup_state").fetch_one(&app.pool).await.unwrap();
    assert_eq!(until, t("2026-10-02T04:00:00Z"));
    // Half sealed, half read from the legs: still exact.
    assert_reports_match(&app).await;
    assert_pages_match(&app).await;
    app.stop().await;
}

/// The uuids `GET /v1/calls` returns for a query, and its count.
async fn api_page(app: &TestApp, query: &str) -> (i64, Vec<String>) {
    let body = app.get_json(&format!("/v1/calls?{query}")).await;
    let uuids = body["_embedded"]["calls"].as_array().unwrap().iter().map(|c| c["uuid"].as_str().unwrap().to_string()).collect();
    (body["count"].as_i64().unwrap(), uuids)
}

/// The same page by plain OFFSET.
async fn sql_page(app: &TestApp, status: Option<&str>, start: Option<&str>, end: Option<&str>, desc: bool, index: i64, size: i64) -> (i64, Vec<String>) {
    // The status the API shows: a finished leg's ending.
    let filter = "account_id = $1 AND ($2::text IS NULL OR COALESCE(ending, status) = $2) AND created_at >= COALESCE($3, '-infinity') AND created_at <= COALESCE($4, 'infinity')";
    let bind = |sql: String| {
        sqlx::query_as::<_, (String,)>(Box::leak(sql.into_boxed_str()))
            .bind(app.account.account_id)
            .bind(status.map(str::to_string))
            .bind(start.map(t))
            .bind(end.map(t))
    };
    let order = if desc { "DESC" } else { "ASC" };
    let rows = bind(format!("SELECT uuid::text FROM calls WHERE {filter} ORDER BY created_at {order}, uuid {order} LIMIT {size} OFFSET {index}"))
        .fetch_all(&app.pool)
        .await
        .unwrap();
    let (count,): (String,) = bind(format!("SELECT count(*)::text FROM calls WHERE {filter}")).fetch_one(&app.pool).await.unwrap();
    (count.parse().unwrap(), rows.into_iter().map(|r| r.0).collect())
}

async fn assert_pages_match(app: &TestApp) {
    let filters: [(Option<&str>, Option<&str>, Option<&str>); 5] = [
        (None, None, None),
        (Some("completed"), None, None),
        (Some("busy"), None, None),
        (None, Some("2026-10-01T03:17:00Z"), Some("2026-10-02T14:43:21Z")),
        (Some("rejected"), Some("2026-10-01T05:10:00Z"), Some("2026-10-03T00:00:00Z")),
    ];
    for (status, start, end) in filters {
        for desc in [false, true] {
            for index in [0, 7, 99, 250, 777, 1100, 1713, 1990, 5000] {
                let mut query = format!("page_size=25&record_index={index}&order={}", if desc { "desc" } else { "asc" });
                for (k, v) in [("status", status), ("date_start", start), ("date_end", end)] {
                    if let Some(v) = v {
                        query.push_str(&format!("&{k}={v}"));
                    }
                }
                let expected = sql_page(app, status, start, end, desc, index, 25).await;
                assert_eq!(api_page(app, &query).await, expected, "GET /v1/calls?{query}");
            }
        }
    }
}

#[sqlx::test]
async fn list_counts_and_deep_pages_equal_plain_offset_paging(pool: PgPool) {
    let app = app_with_history(pool).await;
    assert_pages_match(&app).await;
    seal(&app.pool).await;
    assert_pages_match(&app).await;
    app.stop().await;
}

/// Hours sealed before the list filtered on how legs ended were counted by stored status
/// (`completed` for a busy leg): the migration recounts them from the rollup.
#[sqlx::test]
async fn hours_counted_by_stored_status_are_recounted_by_how_legs_ended(pool: PgPool) {
    let app = app_with_history(pool).await;
    seal(&app.pool).await;
    sqlx::query("DELETE FROM call_counts WHERE status <> ''").execute(&app.pool).await.unwrap();
    sqlx::query(
        "INSERT INTO call_counts (account_id, hour, status, calls)
         SELECT account_id, date_trunc('hour', created_at, 'UTC'), status, count(*) FROM calls
         WHERE created_at < (SELECT sealed_until FROM call_rollup_state) GROUP BY 1, 2, 3",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::raw_sql(include_str!("../migrations/20261122000019_counts_by_ending.sql")).execute(&app.pool).await.unwrap();
    assert_pages_match(&app).await;
    app.stop().await;
}

#[sqlx::test]
async fn csv_export_streams_every_leg_of_the_window(pool: PgPool) {
    let app = app_with_history(pool).await;
    seal(&app.pool).await;
    let (start, end) = WINDOWS[1];
    let response = app
        .client
        .get(app.url(&report_url(start, end, "day")))
        .basic_auth(&app.account.api_key, Some(&app.account.api_secret))
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let body = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(header[0], "uuid");
    assert!(header.contains(&"price".to_string()) && header.contains(&"billed_seconds".to_string()));
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let expected: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT uuid::text, to_endpoint->>'number', price::text, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
         FROM calls WHERE account_id = $1 AND created_at >= $2 AND created_at <= $3 ORDER BY created_at, uuid",
    )
    .bind(app.account.account_id)
    .bind(t(start))
    .bind(t(end))
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), expected.len());
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    for (row, (uuid, to, price, created)) in rows.iter().zip(&expected) {
        assert_eq!(&row[column("uuid")], uuid);
        assert_eq!(&row[column("to")], to);
        assert_eq!(&row[column("price")], price.as_deref().unwrap_or(""));
        assert_eq!(&row[column("created_at")], created);
        assert_eq!(&row[column("currency")], "EUR");
    }
    app.stop().await;
}

#[sqlx::test]
async fn reports_are_the_callers_account_only_and_need_credentials(pool: PgPool) {
    let app = app_with_history(pool).await;
    let (start, end) = WINDOWS[0];
    // Another account sees nothing of this one's legs.
    let other = outdial::accounts::repo::create(&app.pool, "other", 10).await.unwrap();
    let response = app
        .client
        .get(app.url(&report_url(start, end, "status")))
        .basic_auth(&other.api_key, Some(&other.api_secret))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["groups"].as_array().unwrap().len(), 0);
    assert_eq!(body["totals"]["count"], 0);
    // JWT and Basic give the same report.
    let by_jwt = app.get_json(&report_url(start, end, "status")).await;
    let by_basic: Value = app
        .client
        .get(app.url(&report_url(start, end, "status")))
        .basic_auth(&app.account.api_key, Some(&app.account.api_secret))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_jwt, by_basic);
    assert_eq!(by_jwt["totals"]["count"], 2000);
    let anonymous = app.client.get(app.url(&report_url(start, end, "status"))).send().await.unwrap();
    assert_problem(anonymous, 401).await;
    app.stop().await;
}

#[sqlx::test]
async fn bad_report_queries_name_the_parameter(pool: PgPool) {
    let app = spawn_app(pool).await;
    let cases = [
        ("/v1/reports/calls?date_end=2026-10-02T00:00:00Z", "date_start"),
        ("/v1/reports/calls?date_start=yesterday&date_end=2026-10-02T00:00:00Z", "date_start"),
        ("/v1/reports/calls?date_start=2026-10-03T00:00:00Z&date_end=2026-10-02T00:00:00Z", "date_end"),
        ("/v1/reports/calls?date_start=2026-10-01T00:00:00Z&date_end=2026-10-02T00:00:00Z&group_by=week", "group_by"),
    ];
    for (path, name) in cases {
        let names = invalid_names(app.get(path).await).await;
        assert_eq!(names, vec![name.to_string()], "{path}");
    }
    app.stop().await;
}

#[sqlx::test]
async fn real_calls_record_how_they_ended_and_what_they_cost_for_reports(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let call = |number: &str| {
        serde_json::json!({
            "to": [{"type": "phone", "number": number}],
            "from": {"type": "phone", "number": "447700900001"},
            "ncco": [{"action": "talk", "text": "Hello from Outdial, this is a test"}],
        })
    };
    let answered = app.place(&call("447700900000")).await;
    let busy = app.place(&call("447700900486")).await;
    app.wait_call_status(&answered, "completed").await;
    app.wait_call_status(&busy, "busy").await;
    let row = |uuid: String| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>, Option<String>, Option<String>, Option<i32>, Option<i32>)>(
                "SELECT status, ending, country, network, duration_s, billed_s FROM calls WHERE uuid = $1::uuid",
            )
            .bind(uuid)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (status, ending, country, network, duration, billed) = row(answered).await;
    assert_eq!((status.as_str(), ending.as_deref(), country.as_deref(), network.as_deref()), ("completed", Some("completed"), Some("GB"), Some("GB-MOBILE")));
    assert!(billed.unwrap() >= duration.unwrap() && duration.unwrap() > 0, "billed {billed:?} covers duration {duration:?}");
    let (status, ending, country, _, _, billed) = row(busy).await;
    assert_eq!((status.as_str(), ending.as_deref(), country.as_deref(), billed), ("completed", Some("busy"), Some("GB"), Some(0)));

    let start = (Utc::now() - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let end = (Utc::now() + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let by_status = api_report(&app, &start, &end, "status").await;
    assert_eq!(by_status.keys().collect::<Vec<_>>(), ["busy", "completed"]);
    assert_eq!((by_status["busy"].0, by_status["busy"].1), (1, 0));
    assert_eq!((by_status["completed"].0, by_status["completed"].1), (1, 1));
    let by_country = api_report(&app, &start, &end, "country").await;
    assert_eq!(by_country["GB"].0, 2);
    app.stop().await;
}

#[sqlx::test]
async fn archiving_exports_then_removes_old_legs_and_reports_still_total_them(pool: PgPool) {
    let app = app_with_history(pool).await;
    let window = ("2026-10-01T00:00:00Z", "2026-10-05T00:00:00Z");
    let before_report = sql_report(&app, window.0, window.1, "status").await;
    let (old,): (i64,) = sqlx::query_as("SELECT count(*) FROM calls WHERE created_at < '2026-10-02T00:00:00Z'").fetch_one(&app.pool).await.unwrap();
    let dir = std::env::temp_dir().join(format!("outdial-archive-{}", Uuid::new_v4()));

    // Asked for 00:30: whole hours only, so legs before midnight go.
    let archived = outdial::history::archive::archive(&app.pool, t("2026-10-02T00:30:00Z"), std::time::Duration::from_secs(300), Some(&dir))
        .await
        .unwrap();
    assert_eq!(archived.before, Some(t("2026-10-02T00:00:00Z")));
    assert_eq!(archived.legs, old as u64);
    assert_eq!(archived.files.len(), 1);
    let csv = std::fs::read_to_string(&archived.files[0]).unwrap();
    assert_eq!(csv.lines().count() as i64, old + 1, "a header and every archived leg");

    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM calls WHERE created_at < '2026-10-02T00:00:00Z'").fetch_one(&app.pool).await.unwrap();
    assert_eq!(left, 0);
    // The list shows what is left; its count agrees.
    assert_eq!(api_page(&app, "page_size=10").await.0, 2000 - old);
    assert_pages_match(&app).await;
    // Reports over whole hours still see the archived legs, from the rollup.
    assert_eq!(api_report(&app, window.0, window.1, "status").await, before_report);
    std::fs::remove_dir_all(dir).unwrap();
    app.stop().await;
}

/// Runs `outdial history …` against the test's database.
fn run_history_cli(pool: &PgPool, args: &[&str]) -> std::process::Output {
    let mut url = url::Url::parse(&std::env::var("DATABASE_URL").unwrap()).unwrap();
    url.set_path(pool.connect_options().get_database().unwrap());
    std::process::Command::new(env!("CARGO_BIN_EXE_outdial"))
        .arg("history")
        .args(args)
        .env("DATABASE_URL", url.to_string())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// `outdial history …`'s JSON output; it must succeed.
fn history_cli(pool: &PgPool, args: &[&str]) -> Value {
    let out = run_history_cli(pool, args);
    assert!(out.status.success(), "outdial history {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[sqlx::test]
async fn the_cli_seals_and_archives(pool: PgPool) {
    let app = app_with_history(pool).await;
    let sealed = history_cli(&app.pool, &["seal"]);
    let (until,): (DateTime<Utc>,) = sqlx::query_as("SELECT sealed_until FROM call_rollup_state").fetch_one(&app.pool).await.unwrap();
    assert_eq!(sealed["sealed_until"], outdial::calls::format_time(until));
    let dir = std::env::temp_dir().join(format!("outdial-cli-archive-{}", Uuid::new_v4()));
    let archived = history_cli(&app.pool, &["archive", "--before", "2026-10-02", "--export-dir", dir.to_str().unwrap()]);
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM calls").fetch_one(&app.pool).await.unwrap();
    assert_eq!(archived["legs"].as_i64().unwrap() + left, 2000);
    assert_eq!(archived["files"].as_array().unwrap().len(), 1);
    let bad = run_history_cli(&app.pool, &["archive", "--before", "soon"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--before soon"));
    std::fs::remove_dir_all(dir).unwrap();
    app.stop().await;
}

/// An API instance whose clock lags the database's by two hours (run under faketime) creates a
/// call after history is sealed up to the current hour: the leg is stamped by the database's
/// clock, in the hour not yet sealed, so sealing will count it (stamped by the instance's clock,
/// it landed in a sealed hour and never reached the rollup).
#[sqlx::test]
async fn a_lagging_instance_writes_no_leg_into_a_sealed_hour(pool: PgPool) {
    let faketime = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("libfaketime is needed (apt-get install faketime; scripts/test.sh installs it)");
    let app = spawn_app(pool.clone()).await;
    let (sealed_until,): (DateTime<Utc>,) =
        sqlx::query_as("UPDATE call_rollup_state SET sealed_until = date_trunc('hour', now(), 'UTC') RETURNING sealed_until")
            .fetch_one(&pool)
            .await
            .unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut url = url::Url::parse(&std::env::var("DATABASE_URL").unwrap()).unwrap();
    url.set_path(pool.connect_options().get_database().unwrap());
    let mut lagging = std::process::Command::new(env!("CARGO_BIN_EXE_outdial"))
        .arg("serve")
        .env("DATABASE_URL", url.to_string())
        .env("OUTDIAL__HTTP__PORT", port.to_string())
        .env("OUTDIAL__ENGINE__ROLES", "api")
        .env("OUTDIAL__HISTORY__SEAL_INTERVAL_S", "3600")
        .env("RUST_LOG", "warn")
        .env("LD_PRELOAD", faketime)
        .env("FAKETIME", "-2h")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = common::http_client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while client.get(format!("{base}/health")).send().await.map(|r| !r.status().is_success()).unwrap_or(true) {
        assert!(std::time::Instant::now() < deadline, "the lagging instance did not start");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A token minted on the lagging instance's clock (the server refuses one from its future).
    let iat = Utc::now().timestamp() - 7200;
    let claims = serde_json::json!({"application_id": app.app_id, "iat": iat, "exp": iat + 900, "jti": Uuid::new_v4()});
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(PRIVATE_KEY.as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key).unwrap();
    let created = client.post(format!("{base}/v1/calls")).bearer_auth(token).json(&minimal_call()).send().await.unwrap();
    let status = created.status();
    let body: Value = created.json().await.unwrap();
    let _ = lagging.kill();
    let _ = lagging.wait();
    assert_eq!(status, 201, "{body}");

    let uuid = Uuid::parse_str(body["uuid"].as_str().unwrap()).unwrap();
    let (created_at, started): (DateTime<Utc>, Value) = sqlx::query_as(
        "SELECT c.created_at, e.payload FROM calls c JOIN events e ON e.call_uuid = c.uuid AND e.kind = 'started' WHERE c.uuid = $1",
    )
    .bind(uuid)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(created_at >= sealed_until, "the leg was stamped {created_at}, inside history sealed until {sealed_until}");
    assert_eq!(started["timestamp"], outdial::calls::format_time(created_at), "the started event carries the same moment");
    app.stop().await;
}
