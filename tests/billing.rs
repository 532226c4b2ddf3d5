//! Billing against a real database: the rate deck (CSV import and export, longest prefix,
//! effective dates, increments), routing lookup, balances (402 at creation, calls cut off when
//! the credit runs out, ledger = balance) and Vonage's get-balance.

mod common;

use common::receiver::Receiver;
use common::*;
use outdial::billing::holds::CreditHolds;
use outdial::billing::ledger::Hold;
use outdial::billing::{self, deck, ledger};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::str::FromStr;

const HEADER: &str = "prefix,country,network,price_per_minute,initial_increment_s,subsequent_increment_s,connection_fee,effective_from";

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

async fn make_rates_admin(app: &TestApp) {
    sqlx::query("UPDATE accounts SET rates_admin = true WHERE id = $1").bind(app.account.account_id).execute(&app.pool).await.unwrap();
}

async fn post_rates(app: &TestApp, csv: &str, query: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/rates{query}")))
        .basic_auth(&app.account.api_key, Some(&app.account.api_secret))
        .header("Content-Type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .unwrap()
}

async fn export(app: &TestApp) -> String {
    let response = app.client.get(app.url("/v1/rates")).basic_auth(&app.account.api_key, Some(&app.account.api_secret)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    response.text().await.unwrap()
}

/// Sets the account's balance (through the ledger) and credit limit.
async fn fund(app: &TestApp, balance: &str, credit_limit: &str) {
    let id = app.account.account_id;
    let current = ledger::funds(&app.pool, id).await.unwrap().unwrap().balance;
    if dec(balance) != current {
        ledger::add_entry(&app.pool, id, dec(balance) - current, "adjustment", Some("test")).await.unwrap();
    }
    ledger::set_credit_limit(&app.pool, id, dec(credit_limit)).await.unwrap();
}

/// A prepaid account holding `balance` and a call body to a number rated 0.6 EUR a minute,
/// billed by the second, whose NCCO waits (so only credit or a hangup ends it).
async fn prepaid_waiting_call(app: &TestApp, receiver: &Receiver, balance: &str) -> Value {
    sqlx::query("INSERT INTO rates (prefix, country, network, price_per_minute) VALUES ('4420', 'GB', 'GB-TEST', 0.6)").execute(&app.pool).await.unwrap();
    fund(app, balance, "0").await;
    json!({
        "to": [{"type": "phone", "number": "442079460000"}],
        "from": {"type": "phone", "number": "447700900001"},
        "ncco": [{"action": "wait", "timeout": 600}],
        "event_url": [receiver.url("/events")],
    })
}

/// A call placed and marked as running on `instance` (no engine runs: the test drives it).
async fn place_leg_owned_by(app: &TestApp, instance: uuid::Uuid) -> uuid::Uuid {
    let uuid: uuid::Uuid = app.place(&minimal_call()).await.parse().unwrap();
    sqlx::query("UPDATE call_jobs SET state = 'running', locked_by = $2 WHERE call_uuid = $1").bind(uuid).bind(instance).execute(&app.pool).await.unwrap();
    uuid
}

async fn assert_ledger_is_balance(pool: &PgPool, account_id: i64) -> Decimal {
    let funds = ledger::funds(pool, account_id).await.unwrap().unwrap();
    assert_eq!(ledger::ledger_sum(pool, account_id).await.unwrap(), funds.balance, "the ledger sums to the balance");
    funds.balance
}

#[sqlx::test]
async fn increments_round_up_at_the_edges(pool: PgPool) {
    let app = spawn_app(pool).await;
    make_rates_admin(&app).await;
    let csv = format!("{HEADER}\n33,FR,FR-FIXED,0.6,30,6,0.05,\n34,ES,ES-FIXED,0.6,60,60,,\n35,PT,PT-FIXED,0.6,1,1,,\n");
    assert_eq!(post_rates(&app, &csv, "").await.status(), 200);
    let rate = |n: &'static str| {
        let pool = app.pool.clone();
        async move { billing::rate_for(&pool, n, chrono::Utc::now()).await.unwrap().unwrap() }
    };
    // 30/6 with a connection fee: 0 s free, 1..30 s one initial increment, then 6 s steps.
    let fr = rate("33123456789").await;
    for (seconds, price) in [(0, "0"), (1, "0.35"), (30, "0.35"), (31, "0.41"), (36, "0.41"), (37, "0.47")] {
        assert_eq!(fr.price(seconds), dec(price), "30/6 at {seconds} s");
    }
    let es = rate("34123456789").await;
    for (seconds, price) in [(0, "0"), (1, "0.6"), (60, "0.6"), (61, "1.2")] {
        assert_eq!(es.price(seconds), dec(price), "60/60 at {seconds} s");
    }
    let pt = rate("35123456789").await;
    for (seconds, price) in [(0, "0"), (1, "0.01"), (2, "0.02"), (61, "0.61")] {
        assert_eq!(pt.price(seconds), dec(price), "1/1 at {seconds} s");
    }
    // Rounded half-up at 8 places: 0.1/min for 1 s is 0.0016666…7.
    let csv = format!("{HEADER}\n36,,X,0.1,1,1,,\n");
    assert_eq!(post_rates(&app, &csv, "").await.status(), 200);
    assert_eq!(rate("36123456789").await.price(1).to_string(), "0.00166667");
    app.stop().await;
}

#[sqlx::test]
async fn the_longest_prefix_wins_and_the_latest_effective_entry_of_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    make_rates_admin(&app).await;
    let csv = format!(
        "{HEADER}\n\
         49,DE,DE-FIXED,0.01,1,1,,\n\
         491,DE,DE-MOBILE,0.02,1,1,,\n\
         4915,DE,DE-MOBILE-T,0.03,1,1,,\n\
         4915,DE,DE-MOBILE-T2,0.04,1,1,,2020-01-01\n\
         4915,DE,DE-MOBILE-T3,0.05,1,1,,2999-01-01T00:00:00Z\n"
    );
    assert_eq!(post_rates(&app, &csv, "").await.status(), 200);
    let now = chrono::Utc::now();
    let network = |n: &'static str, at| {
        let pool = app.pool.clone();
        async move { billing::rate_for(&pool, n, at).await.unwrap().map(|r| r.network) }
    };
    assert_eq!(network("4930123456", now).await.as_deref(), Some("DE-FIXED"));
    assert_eq!(network("4917123456", now).await.as_deref(), Some("DE-MOBILE"));
    // Same prefix three times: the entry that took effect last, not one still to come.
    assert_eq!(network("4915123456", now).await.as_deref(), Some("DE-MOBILE-T2"));
    // Before 2020 only the entry in force since always applied; after 2999 the newest does.
    let before = chrono::DateTime::parse_from_rfc3339("2019-06-01T00:00:00Z").unwrap().to_utc();
    let after = chrono::DateTime::parse_from_rfc3339("2999-06-01T00:00:00Z").unwrap().to_utc();
    assert_eq!(network("4915123456", before).await.as_deref(), Some("DE-MOBILE-T"));
    assert_eq!(network("4915123456", after).await.as_deref(), Some("DE-MOBILE-T3"));
    // Nothing longer matched: the default deck's catch-all.
    assert_eq!(network("8612345678", now).await.as_deref(), Some("UNKNOWN"));
    app.stop().await;
}

#[sqlx::test]
async fn a_bad_deck_is_refused_whole_with_every_bad_row_named(pool: PgPool) {
    let app = spawn_app(pool).await;
    let before = export(&app).await;
    let csv = format!("{HEADER}\n44,GB,GB-NEW,0.5,1,1,,\n4x,GB,GB,0.1,1,1,,\n45,DK,DK,abc,0,1,,soon\n46,SE,SE\n");

    // Only a rates_admin account may change the global deck.
    let refused = post_rates(&app, &csv, "").await;
    assert_problem(refused, 403).await;
    make_rates_admin(&app).await;

    let response = post_rates(&app, &csv, "").await;
    let problem = assert_problem(response, 422).await;
    assert_eq!(problem["type"], "https://developer.vonage.com/api-errors#invalid-rows");
    let rows: Vec<(u64, Value)> = problem["invalid_rows"].as_array().unwrap().iter().map(|r| (r["line"].as_u64().unwrap(), r["column"].clone())).collect();
    assert_eq!(
        rows,
        vec![
            (3, json!("prefix")),
            (4, json!("price_per_minute")),
            (4, json!("initial_increment_s")),
            (4, json!("effective_from")),
            (5, Value::Null),
        ],
        "{problem}"
    );
    assert!(problem["invalid_rows"].as_array().unwrap().iter().all(|r| r["reason"].as_str().is_some_and(|s| !s.is_empty())));
    assert_eq!(export(&app).await, before, "nothing was imported, not even the good row");

    // A wrong header, an empty file, another content type.
    let problem = assert_problem(post_rates(&app, "prefix,price\n44,0.1\n", "").await, 422).await;
    assert_eq!(problem["invalid_rows"][0]["line"], 1);
    assert_problem(post_rates(&app, &format!("{HEADER}\n"), "").await, 422).await;
    let response = app.client.post(app.url("/v1/rates")).basic_auth(&app.account.api_key, Some(&app.account.api_secret)).json(&json!({})).send().await.unwrap();
    assert_problem(response, 415).await;
    assert_eq!(export(&app).await, before);
    app.stop().await;
}

#[sqlx::test]
async fn the_deck_exports_as_it_was_imported(pool: PgPool) {
    let app = spawn_app(pool).await;
    make_rates_admin(&app).await;
    let csv = format!("{HEADER}\n,,ANY,0.2,60,60,,\n44,GB,GB-FIXED,0.0125,30,6,0.001,2026-01-01T00:00:00Z\n");
    let response = post_rates(&app, &csv, "?mode=replace").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"imported": 2, "mode": "replace"}));
    let exported = export(&app).await;
    // Exported with the inbound price column (empty: calls to our numbers there are free).
    let expected = format!("{HEADER},inbound_price_per_minute\n,,ANY,0.2,60,60,0,,\n44,GB,GB-FIXED,0.0125,30,6,0.001,2026-01-01T00:00:00Z,\n");
    assert_eq!(exported, expected, "replace leaves only the file's rows, exported in the same form");
    assert_eq!(deck::parse(exported.as_bytes()).unwrap(), deck::all(&app.pool).await.unwrap());

    // Merge: a new row is added, one with the same prefix and effective_from is replaced.
    let csv = format!("{HEADER}\n44,GB,GB-FIXED,0.02,30,6,0.001,2026-01-01\n1,US,US,0.01,6,6,,\n");
    assert_eq!(post_rates(&app, &csv, "").await.status(), 200);
    let exported = export(&app).await;
    assert_eq!(exported.lines().count(), 4, "{exported}");
    assert!(exported.contains("44,GB,GB-FIXED,0.02,30,6,0.001,2026-01-01T00:00:00Z"), "{exported}");
    assert_problem(post_rates(&app, &csv, "?mode=wipe").await, 400).await;
    app.stop().await;
}

#[sqlx::test]
async fn routing_lookup_shows_the_rate_and_the_route_without_calling(pool: PgPool) {
    let app = spawn_app(pool).await;
    let lookup = |body: Value| {
        let app = &app;
        async move { app.client.post(app.url("/v1/routing/lookup")).bearer_auth(app.jwt()).json(&body).send().await.unwrap() }
    };
    let response = lookup(json!({"dialed_number": "+447700900486", "calling_number": "447700900001"})).await;
    assert_eq!(response.status(), 200);
    let found: Value = response.json().await.unwrap();
    assert_eq!(found["dialed_number"], "447700900486");
    assert_eq!(found["calling_number"], "447700900001");
    assert_eq!(found["prefix"], "447");
    assert_eq!(found["country"], "GB");
    assert_eq!(found["network"], "GB-MOBILE");
    assert_eq!(found["price_per_minute"], "0.02400000");
    assert_eq!((found["initial_increment_s"].as_i64(), found["subsequent_increment_s"].as_i64()), (Some(1), Some(1)));
    assert_eq!(found["connection_fee"], "0.00000000");
    assert_eq!(found["first_increment_price"], "0.00040000");
    assert_eq!(found["currency"], "EUR");
    assert_eq!(found["route"]["carrier"], "simulated");
    assert_eq!(found["route"]["source"], "suffix");
    assert_eq!(found["route"]["suffix"], "486");
    assert_eq!(found["route"]["behaviour"]["outcome"], "busy");

    // The account's sandbox setting is the route its calls would take.
    let set = app.put_json("/v1/sandbox/numbers/447700900123", &json!({"outcome": "unavailable", "ring_s": 3})).await;
    assert_eq!(set.status(), 200);
    let found: Value = lookup(json!({"dialed_number": "447700900123"})).await.json().await.unwrap();
    assert_eq!((found["route"]["source"].as_str(), found["route"]["behaviour"]["outcome"].as_str()), (Some("sandbox"), Some("unavailable")));
    assert_eq!(found["calling_number"], Value::Null);
    let found: Value = lookup(json!({"dialed_number": "12025550100"})).await.json().await.unwrap();
    assert_eq!((found["network"].as_str(), found["route"]["source"].as_str()), (Some("US-FIXED"), Some("default")));

    // Nothing was placed.
    let (calls,): (i64,) = sqlx::query_as("SELECT count(*) FROM calls").fetch_one(&app.pool).await.unwrap();
    assert_eq!(calls, 0);

    for (body, names) in [
        (json!({"dialed_number": "0123"}), vec!["dialed_number"]),
        (json!({}), vec!["dialed_number"]),
        (json!({"dialed_number": 447700900123u64, "calling_number": "abc"}), vec!["dialed_number", "calling_number"]),
    ] {
        assert_eq!(invalid_names(lookup(body.clone()).await).await, names, "{body}");
    }
    let anonymous = app.client.post(app.url("/v1/routing/lookup")).json(&json!({"dialed_number": "447700900123"})).send().await.unwrap();
    assert_problem(anonymous, 401).await;
    app.stop().await;
}

#[sqlx::test]
async fn a_call_the_account_cannot_afford_is_refused_with_402(pool: PgPool) {
    let app = spawn_app(pool).await;
    // 447… costs 0.0004 for its first 1 s increment.
    fund(&app, "0.0003", "0").await;
    let problem = assert_problem(app.post_call(&minimal_call()).await, 402).await;
    assert_eq!(problem["type"], "https://developer.vonage.com/api-errors#low-balance");
    assert_eq!(problem["title"], "Low balance");
    assert!(problem["detail"].as_str().unwrap().contains("0.0004"), "{problem}");
    let (calls,): (i64,) = sqlx::query_as("SELECT count(*) FROM calls").fetch_one(&app.pool).await.unwrap();
    assert_eq!(calls, 0, "nothing is stored");

    // The credit limit counts: a negative balance within it still calls.
    fund(&app, "-5", "5.0004").await;
    assert_eq!(app.post_call(&minimal_call()).await.status(), 201);
    fund(&app, "0.0004", "0").await;
    assert_eq!(app.post_call(&minimal_call()).await.status(), 201, "exactly the first increment is enough");
    assert_ledger_is_balance(&app.pool, app.account.account_id).await;
    app.stop().await;
}

#[sqlx::test]
async fn a_retried_create_is_replayed_even_when_credit_ran_out_since(pool: PgPool) {
    let app = spawn_app(pool).await;
    let post = |key: &'static str| {
        app.client.post(app.url("/v1/calls")).bearer_auth(app.jwt()).header("Idempotency-Key", key).json(&minimal_call()).send()
    };
    let first = post("retry-me").await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    fund(&app, "0.0003", "0").await;
    // The creation check reads free credit at most once a second (billing::gate).
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let retry = post("retry-me").await.unwrap();
    assert_eq!(retry.status(), 201, "the retry is the same call, not a new one to afford");
    assert_eq!(retry.headers()["Idempotent-Replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap()["uuid"], first["uuid"]);
    assert_problem(post("a-new-call").await.unwrap(), 402).await;
    app.stop().await;
}

#[sqlx::test]
async fn a_call_ends_when_its_credit_runs_out_and_is_debited_once(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    // 0.6 EUR a minute by the second: 0.05 EUR covers 5 s.
    let body = prepaid_waiting_call(&app, &receiver, "0.05").await;
    let uuid = app.place(&body).await;
    receiver.wait_status("/events", &uuid, "completed").await;
    let completed = receiver.requests("/events").into_iter().map(|r| r.body).find(|b| b["status"] == "completed").unwrap();
    assert_eq!(completed["detail"], "insufficient_credit", "{completed}");
    assert_eq!(completed["disconnected_by"], "platform");
    assert_eq!(completed["duration"], "5");
    assert_eq!(completed["price"], "0.05000000");
    let (detail,): (Option<String>,) = sqlx::query_as("SELECT detail FROM calls WHERE uuid = $1::uuid").bind(&uuid).fetch_one(&app.pool).await.unwrap();
    assert_eq!(detail.as_deref(), Some("insufficient_credit"));

    // Debited exactly once, in the ledger and on the balance.
    let entries: Vec<(Decimal, String)> = sqlx::query_as("SELECT amount, kind FROM account_ledger WHERE call_uuid = $1::uuid").bind(&uuid).fetch_all(&app.pool).await.unwrap();
    assert_eq!(entries, vec![(dec("-0.05"), "call".to_string())]);
    assert_eq!(assert_ledger_is_balance(&app.pool, app.account.account_id).await, Decimal::ZERO);

    // Spent: the next call is refused.
    assert_problem(app.post_call(&body).await, 402).await;
    app.stop().await;
}

#[sqlx::test]
async fn completed_calls_debit_the_ledger_which_always_sums_to_the_balance(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    let start = assert_ledger_is_balance(&app.pool, app.account.account_id).await;
    ledger::add_entry(&app.pool, app.account.account_id, dec("10"), "credit", Some("top-up")).await.unwrap();
    let mut uuids = Vec::new();
    for number in ["447700900000", "447700900486", "12025550100"] {
        let body = json!({
            "to": [{"type": "phone", "number": number}],
            "from": {"type": "phone", "number": "447700900001"},
            "ncco": [{"action": "talk", "text": "one two three four five"}],
            "event_url": [receiver.url("/events")],
        });
        uuids.push(app.place(&body).await);
    }
    let mut total = Decimal::ZERO;
    for uuid in &uuids {
        receiver.wait_status("/events", uuid, "completed").await;
        let call = app.get_json(&format!("/v1/calls/{uuid}")).await;
        total += dec(call["price"].as_str().unwrap());
    }
    assert!(total > Decimal::ZERO);
    let balance = assert_ledger_is_balance(&app.pool, app.account.account_id).await;
    assert_eq!(balance, start + dec("10") - total, "the balance moved by exactly the prices the API shows");
    let (debits,): (i64,) = sqlx::query_as("SELECT count(*) FROM account_ledger WHERE kind = 'call'").fetch_one(&app.pool).await.unwrap();
    assert_eq!(debits, 2, "the busy call cost nothing and was not debited");

    // Append-only.
    let edit = sqlx::query("UPDATE account_ledger SET amount = 0").execute(&app.pool).await;
    assert!(edit.is_err(), "the ledger refuses edits");
    assert!(sqlx::query("DELETE FROM account_ledger").execute(&app.pool).await.is_err(), "and deletions");
    app.stop().await;
}

#[sqlx::test]
async fn get_balance_answers_like_vonages_account_api(pool: PgPool) {
    let app = spawn_app(pool).await;
    fund(&app, "12.3456", "100").await;
    let (key, secret) = (&app.account.api_key, &app.account.api_secret);
    let by_query = app.client.get(app.url(&format!("/account/get-balance?api_key={key}&api_secret={secret}"))).send().await.unwrap();
    assert_eq!(by_query.status(), 200);
    assert_eq!(by_query.json::<Value>().await.unwrap(), json!({"value": 12.3456, "autoReload": false}));
    let by_basic = app.client.get(app.url("/account/get-balance")).basic_auth(key, Some(secret)).send().await.unwrap();
    assert_eq!(by_basic.json::<Value>().await.unwrap(), json!({"value": 12.3456, "autoReload": false}));
    let wrong = app.client.get(app.url(&format!("/account/get-balance?api_key={key}&api_secret=nope"))).send().await.unwrap();
    assert_problem(wrong, 401).await;
    assert_problem(app.client.get(app.url("/account/get-balance")).send().await.unwrap(), 401).await;
    app.stop().await;
}

#[sqlx::test]
async fn a_deck_larger_than_any_json_body_imports_in_one_go(pool: PgPool) {
    let app = spawn_app(pool).await;
    make_rates_admin(&app).await;
    let mut csv = format!("{HEADER}\n");
    for n in 0..20_000 {
        csv.push_str(&format!("9{n:05},ZZ,NET-{n},0.0{n:05},60,60,0.001,2026-01-01T00:00:00Z\n"));
    }
    assert!(csv.len() > 262_144, "larger than http.max_body_bytes");
    let response = post_rates(&app, &csv, "").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["imported"], 20_000);
    let rate = billing::rate_for(&app.pool, "91234567890", chrono::Utc::now()).await.unwrap().unwrap();
    assert_eq!((rate.prefix.as_str(), rate.network.as_str()), ("912345", "NET-12345"));
    app.stop().await;
}

#[sqlx::test]
async fn credit_added_during_a_call_lets_it_run_longer(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    // 0.6 EUR a minute by the second: 0.3 EUR covers 30 s (1.5 s of wall time at 20x).
    let body = prepaid_waiting_call(&app, &receiver, "0.3").await;
    let uuid = app.place(&body).await;
    app.wait_call_status(&uuid, "answered").await;
    ledger::add_entry(&app.pool, app.account.account_id, dec("0.3"), "credit", Some("top-up during the call")).await.unwrap();
    receiver.wait_status("/events", &uuid, "completed").await;
    let completed = receiver.requests("/events").into_iter().map(|r| r.body).find(|b| b["status"] == "completed").unwrap();
    assert_eq!((completed["duration"].as_str(), completed["price"].as_str()), (Some("60"), Some("0.60000000")), "{completed}");
    assert_eq!(completed["detail"], "insufficient_credit");
    assert_eq!(assert_ledger_is_balance(&app.pool, app.account.account_id).await, Decimal::ZERO);
    app.stop().await;
}

#[sqlx::test]
async fn calls_running_at_once_never_spend_the_same_credit(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    // 0.3 EUR pays for 30 s at 0.6 EUR a minute, for one call or shared: never more in all.
    let body = prepaid_waiting_call(&app, &receiver, "0.3").await;
    let uuids = vec![app.place(&body).await, app.place(&body).await, app.place(&body).await];
    let mut total = Decimal::ZERO;
    for uuid in &uuids {
        receiver.wait_status("/events", uuid, "completed").await;
        let completed = receiver.requests("/events").into_iter().map(|r| r.body).find(|b| b["uuid"] == uuid.as_str() && b["status"] == "completed").unwrap();
        assert_eq!(completed["detail"], "insufficient_credit", "{completed}");
        total += dec(completed["price"].as_str().unwrap());
    }
    assert_eq!(total, dec("0.3"), "the three calls together spent exactly the credit");
    let funds = ledger::funds(&app.pool, app.account.account_id).await.unwrap().unwrap();
    assert_eq!((funds.balance, funds.reserved), (Decimal::ZERO, Decimal::ZERO), "nothing stays held once the calls ended");
    assert_ledger_is_balance(&app.pool, app.account.account_id).await;
    app.stop().await;
}

#[sqlx::test]
async fn finished_calls_settle_into_the_account_row_and_funds_are_exact_meanwhile(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let id = app.account.account_id;
    let uuid = app.place(&minimal_call()).await;
    app.wait_call_status(&uuid, "completed").await;
    let (price,): (Decimal,) = sqlx::query_as("SELECT price FROM calls WHERE uuid = $1::uuid").bind(&uuid).fetch_one(&app.pool).await.unwrap();
    assert!(price > Decimal::ZERO);
    // The running instance's settler (every 200 ms) applies the debit to the account row.
    let row = || async {
        sqlx::query_as::<_, (Decimal, Decimal, i64)>("SELECT balance, reserved, (SELECT count(*) FROM account_settlements) FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while row().await.2 > 0 {
        assert!(std::time::Instant::now() < deadline, "settled within 5 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(row().await, (-price, Decimal::ZERO, 0));
    assert_eq!(assert_ledger_is_balance(&app.pool, id).await, -price);

    // A settlement not applied yet already counts in the funds, and settling changes nothing in them.
    // (as a leg that held 2 and cost 1.5 leaves it)
    sqlx::query("UPDATE accounts SET reserved = 2 WHERE id = $1").bind(id).execute(&app.pool).await.unwrap();
    sqlx::query("INSERT INTO account_settlements (account_id, amount, released) VALUES ($1, -1.5, 2)").bind(id).execute(&app.pool).await.unwrap();
    let pending = ledger::funds(&app.pool, id).await.unwrap().unwrap();
    assert_eq!((pending.balance, pending.reserved), (-price - dec("1.5"), Decimal::ZERO));
    ledger::settle(&app.pool).await.unwrap();
    let settled = ledger::funds(&app.pool, id).await.unwrap().unwrap();
    assert_eq!((settled.balance, settled.reserved), (pending.balance, pending.reserved));
    assert_eq!(row().await.2, 0);
    app.stop().await;
}

#[sqlx::test]
async fn a_hold_refused_on_the_account_row_is_asked_again_after_settling(pool: PgPool) {
    let app = spawn_app(pool).await;
    let id = app.account.account_id;
    let instance = uuid::Uuid::new_v4();
    let uuid = place_leg_owned_by(&app, instance).await;
    // 10 of credit, 9 still held on the row by a leg that has ended (its release pending).
    fund(&app, "0", "10").await;
    sqlx::query("UPDATE accounts SET reserved = 9 WHERE id = $1").bind(id).execute(&app.pool).await.unwrap();
    sqlx::query("INSERT INTO account_settlements (account_id, amount, released) VALUES ($1, 0, 9)").bind(id).execute(&app.pool).await.unwrap();
    // The row alone shows 1 free; in truth 10 are.
    let holds = CreditHolds::spawn(app.pool.clone(), app.pool.clone(), 64);
    let hold = |total: &str| Hold { instance, leg: uuid, account_id: id, total: dec(total), min_usable: dec(total) };
    assert!(holds.reserve(hold("5")).await.unwrap(), "settled, then held");
    let funds = ledger::funds(&app.pool, id).await.unwrap().unwrap();
    assert_eq!((funds.reserved, funds.available()), (dec("5"), dec("5")));
    // And what the credit does not cover is still refused.
    assert!(!holds.reserve(hold("10.5")).await.unwrap());
    app.stop().await;
}

/// What the running leg holds on the account (calls.credit_reserved), once it holds anything:
/// an answered leg writes `answered` first and takes its credit just after.
async fn held_by(pool: &PgPool, uuid: &str) -> Decimal {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let held: Decimal = sqlx::query_scalar("SELECT credit_reserved FROM calls WHERE uuid = $1::uuid").bind(uuid).fetch_one(pool).await.unwrap();
        if !held.is_zero() || std::time::Instant::now() > deadline {
            return held;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[sqlx::test]
async fn a_leg_is_priced_at_the_rate_in_force_when_it_was_dialled(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    let body = prepaid_waiting_call(&app, &receiver, "1000").await;
    let uuid = app.place(&body).await;
    app.wait_call_status(&uuid, "answered").await;
    // A dearer entry takes effect during the call: it prices later calls, not this one.
    sqlx::query("INSERT INTO rates (prefix, country, network, price_per_minute, effective_from) VALUES ('4420', 'GB', 'GB-DEARER', 6, now())")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(app.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": "hangup"})).await.status(), 204);
    receiver.wait_status("/events", &uuid, "completed").await;
    let call = app.wait_call_status(&uuid, "completed").await;
    let seconds: i64 = call["duration"].as_str().unwrap().parse().unwrap();
    assert_eq!((call["rate"].as_str(), call["network"].as_str()), (Some("0.60000000"), Some("GB-TEST")), "{call}");
    assert_eq!(dec(call["price"].as_str().unwrap()), dec("0.6") * Decimal::from(seconds) / Decimal::from(60));

    let later = app.place(&body).await;
    app.wait_call_status(&later, "answered").await;
    assert_eq!(app.put_json(&format!("/v1/calls/{later}"), &json!({"action": "hangup"})).await.status(), 204);
    let call = app.wait_call_status(&later, "completed").await;
    assert_eq!((call["rate"].as_str(), call["network"].as_str()), (Some("6.00000000"), Some("GB-DEARER")), "{call}");
    assert_ledger_is_balance(&app.pool, app.account.account_id).await;
    app.stop().await;
}

#[sqlx::test]
async fn an_answered_call_holds_its_whole_price_when_the_account_can_pay_ten_such_calls(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let receiver = Receiver::start().await;
    // 0.6 EUR a minute, length_timer 1000 s: the whole call costs 10 EUR.
    let mut body = prepaid_waiting_call(&app, &receiver, "100").await;
    body["length_timer"] = json!(1000);
    let whole = app.place(&body).await;
    app.wait_call_status(&whole, "answered").await;
    assert_eq!(held_by(&app.pool, &whole).await, dec("10"), "100 EUR free pays ten whole calls: held at once");

    // 90 free now: a step is what a tenth of it pays for (9 EUR = 900 s), not the whole call.
    let stepped = app.place(&body).await;
    app.wait_call_status(&stepped, "answered").await;
    assert_eq!(held_by(&app.pool, &stepped).await, dec("9"));
    let funds = ledger::funds(&app.pool, app.account.account_id).await.unwrap().unwrap();
    assert_eq!(funds.reserved, dec("19"));
    app.stop().await;
}

#[sqlx::test]
async fn holds_taken_together_never_take_more_than_the_account_has_free(pool: PgPool) {
    let app = spawn_app(pool).await;
    let id = app.account.account_id;
    let instance = uuid::Uuid::new_v4();
    let mut legs = Vec::new();
    for _ in 0..4 {
        legs.push(place_leg_owned_by(&app, instance).await);
    }
    fund(&app, "0", "10").await;
    let hold = |leg, total: &str, min_usable: &str| Hold { instance, leg, account_id: id, total: dec(total), min_usable: dec(min_usable) };
    // One statement, in order: 4 of 10, 4 of the 6 left, then 4 more do not fit in 2; the
    // last asks for 4 but only if 20 could be used: refused too.
    let taken = ledger::take_holds(
        &app.pool,
        &[hold(legs[0], "4", "4"), hold(legs[1], "4", "4"), hold(legs[2], "4", "4"), hold(legs[3], "1", "20")],
    )
    .await
    .unwrap();
    assert_eq!(taken, vec![true, true, false, false]);
    let funds = ledger::funds(&app.pool, id).await.unwrap().unwrap();
    assert_eq!((funds.reserved, funds.available()), (dec("8"), dec("2")));
    // A leg raising its own hold counts what it already holds: 4 held + 2 free covers 6.
    assert_eq!(ledger::take_holds(&app.pool, &[hold(legs[0], "6", "6")]).await.unwrap(), vec![true]);
    // And a leg this instance does not own holds nothing.
    let foreign = Hold { instance: uuid::Uuid::new_v4(), ..hold(legs[2], "0.5", "0.5") };
    assert_eq!(ledger::take_holds(&app.pool, &[foreign]).await.unwrap(), vec![false]);
    let held: Vec<Decimal> = sqlx::query_scalar("SELECT credit_reserved FROM calls WHERE uuid = ANY($1) ORDER BY array_position($1, uuid)")
        .bind(&legs)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(held, vec![dec("6"), dec("4"), dec("0"), dec("0")]);
    assert_eq!(ledger::funds(&app.pool, id).await.unwrap().unwrap().reserved, dec("10"));
    app.stop().await;
}
