//! Reports API v2 for voice against a real database and server: synchronous records of both
//! products, their filters and cursor paging, other accounts kept out, asynchronous jobs
//! (zipped CSV, download, callback, cancel, takeover of a dead instance's job) and bad input.
//! Legs are inserted finished, with SQL, to control their dates and prices.

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::receiver::Receiver;
use common::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::io::Read;
use std::str::FromStr;
use uuid::Uuid;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

struct Leg {
    created_at: DateTime<Utc>,
    to: &'static str,
    /// answered, or how it ended: busy, rejected, timeout, …
    ending: &'static str,
    /// Store the failure as status `completed` + an ending event (what the engine writes),
    /// rather than as the status itself.
    via_event: bool,
    duration_s: i32,
    price: &'static str,
    country: Option<&'static str>,
    network: Option<&'static str>,
}

fn answered(created_at: DateTime<Utc>, to: &'static str, duration_s: i32, price: &'static str) -> Leg {
    Leg { created_at, to, ending: "answered", via_event: false, duration_s, price, country: Some("GB"), network: Some("GB-MOBILE") }
}

fn failed(created_at: DateTime<Utc>, to: &'static str, ending: &'static str, via_event: bool) -> Leg {
    Leg { created_at, to, ending, via_event, duration_s: 0, price: "0", country: Some("FR"), network: Some("FR-FIXED") }
}

/// Inserts a finished leg (and, for a failure stored as the engine does, its ending event).
async fn insert_leg(pool: &PgPool, account_id: i64, app_id: Uuid, leg: &Leg) -> Uuid {
    let uuid = Uuid::new_v4();
    let is_answered = leg.ending == "answered";
    let status = if is_answered || leg.via_event { "completed" } else { leg.ending };
    let start = is_answered.then(|| leg.created_at + Duration::seconds(2));
    let end = leg.created_at + Duration::seconds(2 + leg.duration_s as i64);
    let detail = (leg.ending == "unanswered").then_some("unavailable");
    sqlx::query(
        "INSERT INTO calls (uuid, conversation_uuid, account_id, application_id, direction, status, detail, to_endpoint, from_endpoint,
                            start_time, answered_at, end_time, duration_s, billed_s, rate, price, network, country, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'outbound', $5, $6, $7, $8, $9, $9, $10, $11, $11, 0.024, $12::numeric, $13, $14, $15, $15)",
    )
    .bind(uuid)
    .bind(format!("CON-{}", Uuid::new_v4()))
    .bind(account_id)
    .bind(app_id)
    .bind(status)
    .bind(detail)
    .bind(json!({"type": "phone", "number": leg.to}))
    .bind(json!({"type": "phone", "number": "447700900001"}))
    .bind(start)
    .bind(end)
    .bind(leg.duration_s)
    .bind(leg.price)
    .bind(leg.network)
    .bind(leg.country)
    .bind(leg.created_at)
    .execute(pool)
    .await
    .unwrap();
    if leg.via_event {
        for (seq, kind) in [(1, "started"), (2, leg.ending), (3, "completed")] {
            sqlx::query("INSERT INTO events (call_uuid, seq, kind, payload, state) VALUES ($1, $2, $3, '{}', 'delivered')")
                .bind(uuid)
                .bind(seq)
                .bind(kind)
                .execute(pool)
                .await
                .unwrap();
        }
    }
    uuid
}

/// A leg still ringing: in no report.
async fn insert_running(pool: &PgPool, account_id: i64, app_id: Uuid, created_at: DateTime<Utc>) -> Uuid {
    let uuid = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO calls (uuid, conversation_uuid, account_id, application_id, status, to_endpoint, created_at, updated_at)
         VALUES ($1, 'CON-x', $2, $3, 'ringing', '{\"type\":\"phone\",\"number\":\"447700900099\"}', $4, $4)",
    )
    .bind(uuid)
    .bind(account_id)
    .bind(app_id)
    .bind(created_at)
    .execute(pool)
    .await
    .unwrap();
    uuid
}

async fn get_basic(app: &TestApp, path_and_query: &str, key: &str, secret: &str) -> reqwest::Response {
    let url = if path_and_query.starts_with("http") { path_and_query.to_string() } else { app.url(path_and_query) };
    app.client.get(url).basic_auth(key, Some(secret)).send().await.unwrap()
}

async fn records(app: &TestApp, query: &str) -> Value {
    let response = get_basic(app, &format!("/v2/reports/records?account_id={}&{query}", app.account.api_key), &app.account.api_key, &app.account.api_secret).await;
    assert_eq!(response.status(), 200, "records?{query}: {:?}", response.text().await);
    response.json().await.unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["records"].as_array().unwrap().iter().map(|r| r["call_id"].as_str().unwrap().to_string()).collect()
}

#[sqlx::test]
async fn both_products_list_their_legs_with_the_sdk_field_names(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (acc, aid, p) = (app.account.account_id, app.app_id, &app.pool);
    let a1 = insert_leg(p, acc, aid, &answered(t0(), "447700900100", 61, "0.02440000")).await;
    let a2 = insert_leg(p, acc, aid, &answered(t0() + Duration::minutes(1), "447700900101", 5, "0.00200000")).await;
    let busy = insert_leg(p, acc, aid, &failed(t0() + Duration::minutes(2), "33100000486", "busy", true)).await;
    let rejected = insert_leg(p, acc, aid, &failed(t0() + Duration::minutes(3), "33100000603", "rejected", false)).await;
    let unanswered = insert_leg(p, acc, aid, &failed(t0() + Duration::minutes(4), "33100000480", "unanswered", true)).await;
    insert_running(p, acc, aid, t0() + Duration::minutes(5)).await;

    let page = records(&app, "product=VOICE-CALL").await;
    assert_eq!(page["product"], "VOICE-CALL");
    assert_eq!(page["request_status"], "SUCCESS");
    assert_eq!(page["items_count"], 2);
    assert!(page["_links"]["self"]["href"].as_str().unwrap().contains("/v2/reports/records?"));
    assert!(page["_links"].get("next").is_none() && page.get("cursor").is_none(), "one page only");
    assert_eq!(ids(&page), vec![a1.to_string(), a2.to_string()]);
    let r = &page["records"][0];
    assert_eq!(r["account_id"], app.account.api_key);
    assert_eq!(r["id"], a1.to_string());
    assert_eq!(r["to"], "447700900100");
    assert_eq!(r["from"], "447700900001");
    assert_eq!(r["direction"], "outbound");
    assert_eq!(r["country"], "GB");
    assert_eq!(r["network"], "GB-MOBILE");
    assert_eq!(r["date_start"], "2026-11-01T12:00:02+00:00");
    assert_eq!(r["date_end"], "2026-11-01T12:01:03+00:00");
    assert_eq!(r["duration"], "61");
    assert_eq!(r["price"], "0.02400000", "price is the rate per minute");
    assert_eq!(r["total_price"], "0.02440000");
    assert_eq!(r["currency"], "EUR");
    assert_eq!(r["status"], "ANSWERED");

    let page = records(&app, "product=VOICE-FAILED").await;
    assert_eq!(ids(&page), vec![busy.to_string(), rejected.to_string(), unanswered.to_string()]);
    let codes: Vec<(&str, &str)> = page["records"].as_array().unwrap().iter().map(|r| (r["status"].as_str().unwrap(), r["status_code"].as_str().unwrap())).collect();
    assert_eq!(codes, vec![("FAILED", "486"), ("FAILED", "603"), ("FAILED", "480")]);
    assert_eq!(page["records"][0]["status_description"], "busy");
    assert_eq!(page["records"][2]["status_description"], "unanswered: unavailable");
    assert_eq!(page["records"][0]["date_start"], "2026-11-01T12:02:00+00:00", "a failed leg runs from its creation");
    assert!(page["records"][0].get("total_price").is_none(), "failed records carry no price");
    app.stop().await;
}

#[sqlx::test]
async fn filters_narrow_the_records(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (acc, aid, p) = (app.account.account_id, app.app_id, &app.pool);
    let a1 = insert_leg(p, acc, aid, &answered(t0(), "447700900100", 10, "0.004")).await;
    let a2 = insert_leg(p, acc, aid, &answered(t0() + Duration::hours(1), "447700900200", 10, "0.004")).await;
    let mut fr = answered(t0() + Duration::hours(2), "33100000100", 10, "0.01");
    fr.country = Some("FR");
    fr.network = Some("FR-FIXED");
    let a3 = insert_leg(p, acc, aid, &fr).await;
    let busy = insert_leg(p, acc, aid, &failed(t0(), "33100000486", "busy", true)).await;
    let timeout = insert_leg(p, acc, aid, &failed(t0() + Duration::hours(1), "33100000408", "timeout", false)).await;

    let q = |s: &str| s.replace('+', "%2B");
    let page = records(&app, &q("product=VOICE-CALL&date_start=2026-11-01T12:30:00Z&date_end=2026-11-01T14:00:00+00:00")).await;
    assert_eq!(ids(&page), vec![a2.to_string()], "date_end is exclusive; offsets are read");
    assert_eq!(page["date_start"], "2026-11-01T12:30:00Z");
    let page = records(&app, "product=VOICE-CALL&direction=inbound").await;
    assert_eq!(page["items_count"], 0, "Outdial places outbound calls only");
    assert_eq!(records(&app, "product=VOICE-CALL&direction=outbound").await["items_count"], 3);
    assert_eq!(ids(&records(&app, "product=VOICE-CALL&country=fr").await), vec![a3.to_string()]);
    assert_eq!(ids(&records(&app, "product=VOICE-CALL&network=GB-MOBILE").await), vec![a1.to_string(), a2.to_string()]);
    assert_eq!(ids(&records(&app, &q("product=VOICE-CALL&to=+447700900200")).await), vec![a2.to_string()]);
    assert_eq!(records(&app, "product=VOICE-CALL&from=447700900002").await["items_count"], 0);
    assert_eq!(records(&app, "product=VOICE-CALL&status=ANSWERED").await["items_count"], 3);
    assert_eq!(records(&app, "product=VOICE-CALL&status=ERROR").await["items_count"], 0);
    assert_eq!(ids(&records(&app, "product=VOICE-FAILED&status=busy").await), vec![busy.to_string()]);
    assert_eq!(ids(&records(&app, "product=VOICE-FAILED&status=TIMEOUT").await), vec![timeout.to_string()]);
    assert_eq!(records(&app, "product=VOICE-FAILED&status=FAILED").await["items_count"], 2);

    // By id (call_id is what the SDK's callId sends): a failed leg is not a VOICE-CALL record.
    let unknown = Uuid::new_v4();
    let page = records(&app, &format!("product=VOICE-CALL&call_id={a3}&id={busy},{unknown}")).await;
    assert_eq!(ids(&page), vec![a3.to_string()]);
    let not_found: Vec<&str> = page["ids_not_found"].as_str().unwrap().split(',').collect();
    assert_eq!(not_found, vec![busy.to_string(), unknown.to_string()]);
    app.stop().await;
}

#[sqlx::test]
async fn the_cursor_pages_through_every_record_once_in_order(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (acc, aid, p) = (app.account.account_id, app.app_id, &app.pool);
    // 23 legs; groups of three share a creation time, so pages split ties on the uuid.
    for i in 0..23 {
        insert_leg(p, acc, aid, &answered(t0() + Duration::seconds(i / 3), "447700900100", 3, "0.0012")).await;
    }
    insert_leg(p, acc, aid, &failed(t0(), "33100000486", "busy", false)).await;
    let expected: Vec<String> = sqlx::query_scalar::<_, Uuid>(
        "SELECT uuid FROM calls WHERE account_id = $1 AND status = 'completed' AND start_time IS NOT NULL ORDER BY created_at, uuid",
    )
    .bind(acc)
    .fetch_all(p)
    .await
    .unwrap()
    .iter()
    .map(Uuid::to_string)
    .collect();
    assert_eq!(expected.len(), 23);

    let mut seen = Vec::new();
    let mut page = records(&app, "product=VOICE-CALL&page_size=5").await;
    let mut pages = 1;
    loop {
        assert!(page["items_count"].as_u64().unwrap() <= 5);
        seen.extend(ids(&page));
        let Some(next) = page["_links"]["next"]["href"].as_str() else { break };
        assert!(next.contains("cursor=") && next.contains("page_size=5") && next.contains("product=VOICE-CALL"), "{next}");
        assert_eq!(Some(page["cursor"].as_str().unwrap()), url::Url::parse(next).unwrap().query_pairs().find(|(k, _)| k == "cursor").map(|(_, v)| v.into_owned()).as_deref());
        let response = get_basic(&app, next, &app.account.api_key, &app.account.api_secret).await;
        assert_eq!(response.status(), 200);
        page = response.json().await.unwrap();
        pages += 1;
    }
    assert_eq!(pages, 5);
    assert_eq!(seen, expected, "every record once, no gaps, in (created_at, uuid) order");
    app.stop().await;
}

#[sqlx::test]
async fn other_accounts_records_reports_and_files_stay_out_of_reach(pool: PgPool) {
    let app = spawn_app(pool).await;
    let other = outdial::accounts::repo::create(&app.pool, "other", 10).await.unwrap();
    let other_app = create_application(&app.pool, other.account_id, None).await;
    let mine = insert_leg(&app.pool, app.account.account_id, app.app_id, &answered(t0(), "447700900100", 3, "0.0012")).await;
    insert_leg(&app.pool, other.account_id, other_app, &answered(t0(), "447700900100", 3, "0.0012")).await;

    assert_eq!(ids(&records(&app, "product=VOICE-CALL").await), vec![mine.to_string()]);
    // Asking about the other account with my credentials.
    let response = get_basic(&app, &format!("/v2/reports/records?product=VOICE-CALL&account_id={}", other.api_key), &app.account.api_key, &app.account.api_secret).await;
    assert_problem(response, 403).await;

    // My finished report: the other account sees neither it nor its file.
    let job = create_report(&app, json!({"product": "VOICE-CALL", "account_id": app.account.api_key})).await;
    let done = wait_report(&app, job["request_id"].as_str().unwrap()).await;
    let file = done["_links"]["download_report"]["href"].as_str().unwrap().to_string();
    let id = done["request_id"].as_str().unwrap();
    assert_problem(get_basic(&app, &format!("/v2/reports/{id}"), &other.api_key, &other.api_secret).await, 404).await;
    assert_problem(get_basic(&app, &file, &other.api_key, &other.api_secret).await, 404).await;
    let response = app.client.delete(app.url(&format!("/v2/reports/{id}"))).basic_auth(&other.api_key, Some(&other.api_secret)).send().await.unwrap();
    assert_problem(response, 404).await;
    let response = app.client.get(&file).bearer_auth(app.jwt_for(other_app)).send().await.unwrap();
    assert_problem(response, 404).await;
    assert_eq!(get_basic(&app, &file, &app.account.api_key, &app.account.api_secret).await.status(), 200);
    app.stop().await;
}

async fn create_report(app: &TestApp, body: Value) -> Value {
    let response = app.client.post(app.url("/v2/reports")).basic_auth(&app.account.api_key, Some(&app.account.api_secret)).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    response.json().await.unwrap()
}

/// Polls the report until it has finished; returns its body.
async fn wait_report(app: &TestApp, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let response = get_basic(app, &format!("/v2/reports/{id}"), &app.account.api_key, &app.account.api_secret).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        if !matches!(body["request_status"].as_str(), Some("PENDING" | "PROCESSING")) {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "report {id} stuck at {}", body["request_status"]);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The one CSV inside a zip archive, as rows of (header → value).
fn unzip_csv(bytes: &[u8]) -> (String, Vec<std::collections::HashMap<String, String>>) {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip archive");
    assert_eq!(archive.len(), 1);
    let mut file = archive.by_index(0).unwrap();
    let name = file.name().unwrap().to_string();
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let rows = reader.records().map(|r| headers.iter().zip(r.unwrap().iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect()).collect();
    (name, rows)
}

#[sqlx::test]
async fn a_report_job_produces_a_zipped_csv_of_every_record_and_calls_back(pool: PgPool) {
    let app = spawn_app(pool).await;
    let receiver = Receiver::start().await;
    let (acc, aid, p) = (app.account.account_id, app.app_id, &app.pool);
    // More than one page of the worker's reads (1000), so the job pages too.
    for i in 0..1203 {
        let price = ["0.0012", "0.01", "1.23456789"][i % 3];
        insert_leg(p, acc, aid, &answered(t0() + Duration::seconds(i as i64 / 2), "447700900100", 3 + (i as i32 % 50), price)).await;
    }
    insert_leg(p, acc, aid, &answered(t0() - Duration::days(1), "447700900100", 3, "9")).await; // before date_start
    insert_leg(p, acc, aid, &failed(t0(), "33100000486", "busy", true)).await;

    let job = create_report(
        &app,
        json!({"product": "VOICE-CALL", "account_id": app.account.api_key, "date_start": "2026-11-01T00:00:00Z",
               "date_end": "2026-11-02T00:00:00Z", "direction": "outbound", "include_subaccounts": false,
               "callback_url": receiver.url("/reports")}),
    )
    .await;
    assert_eq!(job["request_status"], "PENDING");
    assert_eq!(job["product"], "VOICE-CALL");
    assert_eq!(job["callback_url"], receiver.url("/reports"));
    let id = job["request_id"].as_str().unwrap().to_string();
    assert_eq!(job["_links"]["self"]["href"], app.url(&format!("/v2/reports/{id}")));
    assert!(job["receive_time"].is_string());

    let done = wait_report(&app, &id).await;
    assert_eq!(done["request_status"], "SUCCESS", "{done}");
    assert_eq!(done["items_count"], 1203);
    let href = done["_links"]["download_report"]["href"].as_str().unwrap();
    assert!(href.starts_with(&app.url("/v3/media/")), "{href}");

    let response = get_basic(&app, href, &app.account.api_key, &app.account.api_secret).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    let bytes = response.bytes().await.unwrap();
    let (name, rows) = unzip_csv(&bytes);
    assert!(name.ends_with(".csv"), "{name}");

    let expected: Vec<(Uuid, i32, Decimal)> = sqlx::query_as(
        "SELECT uuid, duration_s, price FROM calls
         WHERE account_id = $1 AND status = 'completed' AND start_time IS NOT NULL
           AND created_at >= '2026-11-01T00:00:00Z' AND created_at < '2026-11-02T00:00:00Z'
         ORDER BY created_at, uuid",
    )
    .bind(acc)
    .fetch_all(p)
    .await
    .unwrap();
    assert_eq!(rows.len(), expected.len());
    for (row, (uuid, duration, price)) in rows.iter().zip(&expected) {
        assert_eq!(row["call_id"], uuid.to_string());
        assert_eq!(row["duration"], duration.to_string());
        assert_eq!(Decimal::from_str(&row["total_price"]).unwrap(), *price);
        assert_eq!(row["currency"], "EUR");
        assert_eq!(row["status"], "ANSWERED");
        assert_eq!(row["account_id"], app.account.api_key);
    }

    // The same file to an application JWT of the account.
    let response = app.client.get(href).bearer_auth(app.jwt()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), bytes);

    // The callback got the finished job.
    let calls = receiver.wait_for("/reports", |r| !r.is_empty()).await;
    assert_eq!(calls[0].method, "POST");
    assert_eq!(calls[0].body["request_id"], id);
    assert_eq!(calls[0].body["request_status"], "SUCCESS");
    assert_eq!(calls[0].body["items_count"], 1203);
    assert_eq!(calls[0].body["_links"]["download_report"]["href"].as_str().unwrap().rsplit('/').next(), href.rsplit('/').next());

    // A finished report cannot be cancelled.
    let response = app.client.delete(app.url(&format!("/v2/reports/{id}"))).basic_auth(&app.account.api_key, Some(&app.account.api_secret)).send().await.unwrap();
    assert_problem(response, 409).await;
    app.stop().await;
}

#[sqlx::test]
async fn a_failed_calls_report_and_an_empty_one(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (acc, aid, p) = (app.account.account_id, app.app_id, &app.pool);
    let busy = insert_leg(p, acc, aid, &failed(t0(), "33100000486", "busy", true)).await;
    insert_leg(p, acc, aid, &answered(t0(), "447700900100", 3, "0.0012")).await;
    let job = create_report(&app, json!({"product": "VOICE-FAILED", "account_id": app.account.api_key, "filters": {"status": "busy"}})).await;
    let done = wait_report(&app, job["request_id"].as_str().unwrap()).await;
    assert_eq!(done["items_count"], 1);
    let bytes = get_basic(&app, done["_links"]["download_report"]["href"].as_str().unwrap(), &app.account.api_key, &app.account.api_secret).await.bytes().await.unwrap();
    let (_, rows) = unzip_csv(&bytes);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["call_id"], busy.to_string());
    assert_eq!(rows[0]["status_code"], "486");

    let job = create_report(&app, json!({"product": "VOICE-CALL", "account_id": app.account.api_key, "direction": "inbound"})).await;
    let done = wait_report(&app, job["request_id"].as_str().unwrap()).await;
    assert_eq!((done["request_status"].as_str(), done["items_count"].as_i64()), (Some("SUCCESS"), Some(0)));
    let bytes = get_basic(&app, done["_links"]["download_report"]["href"].as_str().unwrap(), &app.account.api_key, &app.account.api_secret).await.bytes().await.unwrap();
    assert!(unzip_csv(&bytes).1.is_empty(), "a header and no rows");
    app.stop().await;
}

/// Inserts a job another instance holds (PROCESSING, leased until `locked_until`).
async fn insert_held_job(app: &TestApp, locked_until: DateTime<Utc>) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO report_jobs (id, account_id, product, params, status, attempts, locked_by, locked_until, start_time)
         VALUES ($1, $2, 'VOICE-CALL', $3, 'PROCESSING', 1, $4, $5, now())",
    )
    .bind(id)
    .bind(app.account.account_id)
    .bind(json!({"product": "VOICE-CALL", "account_id": app.account.api_key}))
    .bind(Uuid::new_v4())
    .bind(locked_until)
    .execute(&app.pool)
    .await
    .unwrap();
    id
}

#[sqlx::test]
async fn a_dead_instances_job_is_taken_over_and_a_running_one_can_be_cancelled(pool: PgPool) {
    let app = spawn_app(pool).await;
    insert_leg(&app.pool, app.account.account_id, app.app_id, &answered(t0(), "447700900100", 3, "0.0012")).await;
    // Its instance died: the lease ran out.
    let orphan = insert_held_job(&app, Utc::now() - Duration::seconds(5)).await;
    let done = wait_report(&app, &orphan.to_string()).await;
    assert_eq!(done["request_status"], "SUCCESS");
    assert_eq!(done["items_count"], 1);
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM report_jobs WHERE id = $1").bind(orphan).fetch_one(&app.pool).await.unwrap();
    assert_eq!(attempts, 2);

    // Held by a live instance: left alone, and cancellable.
    let held = insert_held_job(&app, Utc::now() + Duration::hours(1)).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let response = app.client.delete(app.url(&format!("/v2/reports/{held}"))).basic_auth(&app.account.api_key, Some(&app.account.api_secret)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["request_status"], "ABORTED");
    assert!(body["_links"].get("download_report").is_none());
    assert_eq!(wait_report(&app, &held.to_string()).await["request_status"], "ABORTED");
    app.stop().await;
}

#[sqlx::test]
async fn bad_requests_get_problem_json(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (key, secret) = (app.account.api_key.clone(), app.account.api_secret.clone());
    let base = format!("/v2/reports/records?account_id={key}");

    assert_problem(app.client.get(app.url(&format!("{base}&product=VOICE-CALL"))).send().await.unwrap(), 401).await;
    assert_problem(get_basic(&app, &format!("{base}&product=VOICE-CALL"), &key, "wrong").await, 401).await;
    for (query, name) in [
        ("&product=SMS", "product"),
        ("", "product"),
        ("&product=VOICE-CALL&date_start=yesterday", "date_start"),
        ("&product=VOICE-CALL&date_start=2026-11-02T00:00:00Z&date_end=2026-11-01T00:00:00Z", "date_end"),
        ("&product=VOICE-CALL&cursor=bm90LWEtY3Vyc29y", "cursor"),
        ("&product=VOICE-CALL&page_size=0", "page_size"),
        ("&product=VOICE-CALL&page_size=1001", "page_size"),
        ("&product=VOICE-CALL&status=busy", "status"),
        ("&product=VOICE-CALL&direction=sideways", "direction"),
        ("&product=VOICE-CALL&id=42", "id"),
        ("&product=VOICE-CALL&country=GBR", "country"),
    ] {
        let names = invalid_names(get_basic(&app, &format!("{base}{query}"), &key, &secret).await).await;
        assert!(names.contains(&name.to_string()), "{query}: {names:?}");
    }
    let names = invalid_names(get_basic(&app, "/v2/reports/records?product=VOICE-CALL", &key, &secret).await).await;
    assert_eq!(names, vec!["account_id"]);

    let post = |body: &'static str| {
        app.client.post(app.url("/v2/reports")).basic_auth(&key, Some(&secret)).header("Content-Type", "application/json").body(body).send()
    };
    assert_problem(post("{not json").await.unwrap(), 400).await;
    assert_problem(post("[1]").await.unwrap(), 400).await;
    let body = json!({"product": "VOICE-CALL", "account_id": key, "callback_url": "ftp://example.com/x"}).to_string();
    let response = app.client.post(app.url("/v2/reports")).basic_auth(&key, Some(&secret)).header("Content-Type", "application/json").body(body).send().await.unwrap();
    assert_eq!(invalid_names(response).await, vec!["callback_url"]);
    let response = app.client.post(app.url("/v2/reports")).basic_auth(&key, Some(&secret)).json(&json!({"product": "VOICE-TTS", "account_id": key})).send().await.unwrap();
    assert_eq!(invalid_names(response).await, vec!["product"]);
    let response = app.client.post(app.url("/v2/reports")).json(&json!({"product": "VOICE-CALL", "account_id": key})).send().await.unwrap();
    assert_problem(response, 401).await;

    for id in [Uuid::new_v4().to_string(), "not-a-uuid".into()] {
        assert_problem(get_basic(&app, &format!("/v2/reports/{id}"), &key, &secret).await, 404).await;
        assert_problem(get_basic(&app, &format!("/v3/media/{id}"), &key, &secret).await, 404).await;
    }
    assert_problem(app.client.get(app.url(&format!("/v3/media/{}", Uuid::new_v4()))).send().await.unwrap(), 401).await;
    app.stop().await;
}

/// MACHINE is a VOICE-CALL leg answered by a machine per answering-machine detection: the
/// record's status says MACHINE, and status=MACHINE / status=ANSWERED split the records the
/// same way. Through the engine, so the detection's events are the real ones.
#[sqlx::test]
async fn machine_records_are_legs_detection_found_a_machine_and_filter_and_field_agree(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let call = |number: &str, detection: Option<&str>| {
        let mut body = json!({"to": [{"type": "phone", "number": number}], "from": {"type": "phone", "number": "447700900001"},
                              "ncco": [{"action": "talk", "text": "hello"}]});
        if let Some(d) = detection {
            body["machine_detection"] = json!(d);
        }
        body
    };
    let machine = app.place(&call("447700900777", Some("continue"))).await;
    let human = app.place(&call("447700900000", Some("continue"))).await;
    // The 777 callee is a machine, but nobody asked: an ordinary answered call.
    let undetected = app.place(&call("447700900777", None)).await;
    for uuid in [&machine, &human, &undetected] {
        app.wait_call_status(uuid, "completed").await;
    }
    let status_of = |page: &Value| -> Vec<(String, String)> {
        page["records"].as_array().unwrap().iter().map(|r| (r["call_id"].as_str().unwrap().to_string(), r["status"].as_str().unwrap().to_string())).collect()
    };
    let all = status_of(&records(&app, "product=VOICE-CALL").await);
    let mut expected = vec![(machine.clone(), "MACHINE".to_string()), (human.clone(), "ANSWERED".to_string()), (undetected.clone(), "ANSWERED".to_string())];
    expected.sort();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    assert_eq!(status_of(&records(&app, "product=VOICE-CALL&status=MACHINE").await), [(machine.clone(), "MACHINE".to_string())]);
    let answered = status_of(&records(&app, "product=VOICE-CALL&status=answered").await);
    assert_eq!(answered.len(), 2);
    assert!(answered.iter().all(|(id, status)| status == "ANSWERED" && *id != machine), "{answered:?}");
    app.stop().await;
}
