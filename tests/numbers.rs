//! Numbers: the operator's CLI (`outdial number add|list|remove`), Vonage's Numbers API as the
//! SDKs call it (owned numbers with filters and pages, link/unlink, buy/cancel, search), what
//! inbound calls read (`inbound_target`, `billing::inbound_rate`, the deck's inbound column)
//! and `random_from_number` picking the application's numbers.

mod common;

use common::*;
use outdial::numbers::{self, repo, NewNumber};
use outdial::{billing, trunks};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::str::FromStr;
use uuid::Uuid;

// ---- Helpers ---------------------------------------------------------------------------------

/// A platform trunk (`account_id` None) or an account's own.
async fn trunk(pool: &PgPool, account_id: Option<i64>, name: &str) -> Uuid {
    let input = trunks::TrunkInput { name: Some(name.into()), host: Some("sip.carrier.example".into()), ..Default::default() };
    trunks::repo::insert(pool, None, account_id, &input.into_spec(None).unwrap()).await.unwrap().id
}

async fn add(pool: &PgPool, msisdn: &str, country: &str, trunk_id: Uuid, account_id: Option<i64>, application_id: Option<Uuid>) {
    let new = NewNumber { msisdn: msisdn.into(), country: country.into(), trunk_id: Some(trunk_id), account_id, application_id, kind: "landline".into() };
    repo::insert(pool, &new).await.unwrap();
}

struct Creds {
    key: String,
    secret: String,
}

fn creds_of(app: &TestApp) -> Creds {
    Creds { key: app.account.api_key.clone(), secret: app.account.api_secret.clone() }
}

async fn another_account(pool: &PgPool) -> (i64, Creds) {
    let other = outdial::accounts::repo::create(pool, "other", 10).await.unwrap();
    (other.account_id, Creds { key: other.api_key, secret: other.api_secret })
}

/// `GET /account/numbers?query` (or another listing path) with Basic credentials.
async fn list(app: &TestApp, creds: &Creds, path_and_query: &str) -> reqwest::Response {
    app.client.get(app.url(path_and_query)).basic_auth(&creds.key, Some(&creds.secret)).send().await.unwrap()
}

async fn owned(app: &TestApp, creds: &Creds, query: &str) -> Value {
    let response = list(app, creds, &format!("/account/numbers{query}")).await;
    assert_eq!(response.status(), 200, "{query}");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    response.json().await.unwrap()
}

fn msisdns(page: &Value) -> Vec<String> {
    page["numbers"].as_array().unwrap().iter().map(|n| n["msisdn"].as_str().unwrap().to_string()).collect()
}

/// A form-encoded POST, as the SDKs send Numbers API changes.
async fn post_form(app: &TestApp, creds: &Creds, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    app.client
        .post(app.url(path))
        .basic_auth(&creds.key, Some(&creds.secret))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn assert_success(response: reqwest::Response) {
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"error-code": "200", "error-code-label": "success"}));
}

/// A refusal as Vonage sends it (HTTP 420, error-code "420") that is problem JSON too; returns
/// its label.
async fn assert_refused(response: reqwest::Response) -> String {
    let body = assert_problem(response, 420).await;
    assert_eq!(body["error-code"], "420", "{body}");
    assert_eq!(body["type"], "https://developer.vonage.com/api-errors#method-failed");
    let label = body["error-code-label"].as_str().unwrap().to_string();
    assert_eq!(body["detail"], label.as_str());
    label
}

async fn owner_of(pool: &PgPool, msisdn: &str) -> (Option<i64>, Option<Uuid>) {
    let n = repo::find(pool, msisdn).await.unwrap().unwrap();
    (n.account_id, n.application_id)
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

// ---- The CLI ---------------------------------------------------------------------------------

fn database_url(pool: &PgPool) -> String {
    let mut url = url::Url::parse(&std::env::var("DATABASE_URL").expect("DATABASE_URL")).unwrap();
    url.set_path(pool.connect_options().get_database().unwrap());
    url.to_string()
}

fn outdial(pool: &PgPool, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outdial")).args(args).env("DATABASE_URL", database_url(pool)).env("RUST_LOG", "warn").output().expect("outdial runs")
}

fn json_out(output: &Output) -> Value {
    assert!(output.status.success(), "exit {:?}; stderr: {}", output.status, String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn refused_saying(output: &Output, words: &[&str]) {
    assert!(!output.status.success(), "succeeded: {}", String::from_utf8_lossy(&output.stdout));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for word in words {
        assert!(stderr.contains(word), "the error should say {word:?}: {stderr}");
    }
}

#[sqlx::test]
async fn the_operator_adds_lists_and_removes_numbers(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let key = app.account.api_key.as_str();
    json_out(&outdial(&pool, &["trunk", "create", "--name", "carrier", "--host", "sip.carrier.example"]));
    json_out(&outdial(&pool, &["trunk", "create", "--name", "office", "--host", "pbx.example", "--api-key", key]));
    // The default deck names GB for 44 and 447, and no country for 33; a longer prefix naming
    // none is passed over.
    sqlx::query("INSERT INTO rates (prefix, country, network, price_per_minute) VALUES ('4477', NULL, 'GB-MOBILE-X', 0.02)").execute(&pool).await.unwrap();

    // The country comes from the longest deck prefix that names one; linked to the account's app.
    let app_id = app.app_id.to_string();
    let added = json_out(&outdial(&pool, &["number", "add", "--msisdn", "+447700900123", "--trunk", "carrier", "--api-key", key, "--app-id", &app_id]));
    assert_eq!(added["msisdn"], "447700900123");
    assert_eq!(added["country"], "GB");
    assert_eq!(added["type"], "landline");
    assert_eq!(added["features"], json!(["VOICE"]));
    assert_eq!(added["trunk"], "carrier");
    assert_eq!(added["api_key"], key);
    assert_eq!(added["available"], false);
    assert_eq!(added["app_id"], app_id.as_str());

    // No deck country for 33: --country is needed; without --api-key the number is for sale.
    refused_saying(&outdial(&pool, &["number", "add", "--msisdn", "33123456789", "--trunk", "carrier"]), &["--country"]);
    let available = json_out(&outdial(&pool, &["number", "add", "--msisdn", "33123456789", "--trunk", "carrier", "--country", "fr", "--type", "mobile-lvn"]));
    assert_eq!((&available["country"], &available["type"], &available["available"], &available["api_key"]), (&json!("FR"), &json!("mobile-lvn"), &json!(true), &Value::Null));

    // The account's own trunk, by name, for its own numbers only.
    let own = json_out(&outdial(&pool, &["number", "add", "--msisdn", "447700900999", "--trunk", "office", "--api-key", key]));
    assert_eq!(own["trunk"], "office");
    refused_saying(&outdial(&pool, &["number", "add", "--msisdn", "447700900998", "--trunk", "office"]), &["no platform trunk", "office"]);

    // Clear refusals.
    refused_saying(&outdial(&pool, &["number", "add", "--msisdn", "0447700900123", "--trunk", "carrier", "--country", "GB"]), &["--msisdn", "E.164"]);
    refused_saying(&outdial(&pool, &["number", "add", "--msisdn", "447700900124", "--trunk", "nowhere", "--country", "GB"]), &["nowhere"]);
    refused_saying(&outdial(&pool, &["number", "add", "--msisdn", "+447700900123", "--trunk", "carrier"]), &["447700900123", "already exists"]);
    refused_saying(&outdial(&pool, &["number", "add", "--msisdn", "447700900124", "--trunk", "carrier", "--country", "GBR"]), &["--country"]);
    refused_saying(&outdial(&pool, &["number", "add", "--msisdn", "447700900124", "--trunk", "carrier", "--api-key", "nobody"]), &["nobody"]);
    let (other_id, _) = another_account(&pool).await;
    let foreign_app = create_application(&pool, other_id, None).await.to_string();
    refused_saying(&outdial(&pool, &["number", "add", "--msisdn", "447700900124", "--trunk", "carrier", "--api-key", key, "--app-id", &foreign_app]), &[&foreign_app]);
    let keyless = outdial(&pool, &["number", "add", "--msisdn", "447700900124", "--trunk", "carrier", "--app-id", &app_id]);
    assert_eq!(keyless.status.code(), Some(2), "--app-id needs --api-key: a usage error");
    refused_saying(&outdial(&pool, &["number", "add", "--msisdn", "447700900124", "--trunk", "carrier", "--type", "fax"]), &["fax"]);
    assert!(repo::find(&pool, "447700900124").await.unwrap().is_none(), "nothing was added by the refusals");

    // A number on no trunk, for the sandbox: listed with no trunk.
    let sandboxed = json_out(&outdial(&pool, &["number", "add", "--msisdn", "447700900555", "--api-key", key, "--country", "GB"]));
    assert_eq!((&sandboxed["trunk"], &sandboxed["trunk_id"]), (&Value::Null, &Value::Null), "{sandboxed}");

    let all = json_out(&outdial(&pool, &["number", "list"]));
    let listed: Vec<&str> = all.as_array().unwrap().iter().map(|n| n["msisdn"].as_str().unwrap()).collect();
    assert_eq!(listed, ["33123456789", "447700900123", "447700900555", "447700900999"]);
    let mine = json_out(&outdial(&pool, &["number", "list", "--api-key", key]));
    assert_eq!(mine.as_array().unwrap().len(), 3);

    assert_eq!(json_out(&outdial(&pool, &["number", "remove", "--msisdn", "+33123456789"])), json!({"removed": "33123456789"}));
    refused_saying(&outdial(&pool, &["number", "remove", "--msisdn", "33123456789"]), &["no number 33123456789"]);
    assert_eq!(json_out(&outdial(&pool, &["number", "list"])).as_array().unwrap().len(), 3);

    // A trunk holding numbers stays until they are removed (calls to them arrive on it).
    refused_saying(&outdial(&pool, &["trunk", "delete", "carrier"]), &["holds numbers"]);
    json_out(&outdial(&pool, &["number", "remove", "--msisdn", "447700900123"]));
    json_out(&outdial(&pool, &["trunk", "delete", "carrier"]));
    app.stop().await;
}

// ---- GET /account/numbers --------------------------------------------------------------------

#[sqlx::test]
async fn owned_numbers_are_listed_as_vonage_lists_them_with_filters_and_pages(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let me = creds_of(&app);
    let account = app.account.account_id;
    let carrier = trunk(&pool, None, "carrier").await;
    let second_app = create_application(&pool, account, None).await;
    // 12 GB numbers (the first three linked to the app, the next to another), 1 FR; others' and
    // available numbers are not listed.
    for i in 0..12 {
        let linked = match i {
            0..=2 => Some(app.app_id),
            3 => Some(second_app),
            _ => None,
        };
        add(&pool, &format!("4477009001{i:02}"), "GB", carrier, Some(account), linked).await;
    }
    add(&pool, "33123456789", "FR", carrier, Some(account), None).await;
    let (other, other_creds) = another_account(&pool).await;
    add(&pool, "447700900500", "GB", carrier, Some(other), None).await;
    add(&pool, "447700900600", "GB", carrier, None, None).await;

    // Default page: 10, by msisdn; count is all of them.
    let first = owned(&app, &me, "").await;
    assert_eq!(first["count"], 13);
    assert_eq!(msisdns(&first), ["33123456789", "447700900100", "447700900101", "447700900102", "447700900103", "447700900104", "447700900105", "447700900106", "447700900107", "447700900108"]);
    assert_eq!(msisdns(&owned(&app, &me, "?index=2").await), ["447700900109", "447700900110", "447700900111"]);
    let page = owned(&app, &me, "?size=5&index=3").await;
    assert_eq!((page["count"].clone(), msisdns(&page).len()), (json!(13), 3));
    let beyond = owned(&app, &me, "?size=100&index=2").await;
    assert_eq!((beyond["count"].clone(), beyond["numbers"].clone()), (json!(13), json!([])));

    // Vonage's shape: linked numbers name their application, the others do not.
    let linked = &first["numbers"][1];
    assert_eq!(
        linked,
        &json!({"country": "GB", "msisdn": "447700900100", "type": "landline", "features": ["VOICE"],
                "app_id": app.app_id, "voiceCallbackType": "app", "voiceCallbackValue": app.app_id})
    );
    assert_eq!(first["numbers"][0], json!({"country": "FR", "msisdn": "33123456789", "type": "landline", "features": ["VOICE"]}));

    // Filters.
    let with_app = owned(&app, &me, &format!("?application_id={}", app.app_id)).await;
    assert_eq!(msisdns(&with_app), ["447700900100", "447700900101", "447700900102"]);
    assert_eq!(owned(&app, &me, "?has_application=true").await["count"], 4);
    assert_eq!(owned(&app, &me, "?has_application=False&size=100").await["count"], 9, "Python sends False");
    assert_eq!(msisdns(&owned(&app, &me, "?country=fr").await), ["33123456789"]);
    assert_eq!(msisdns(&owned(&app, &me, "?pattern=3312").await), ["33123456789"], "search_pattern defaults to 0: starts with");
    assert_eq!(msisdns(&owned(&app, &me, "?pattern=%2B3312&search_pattern=0").await), ["33123456789"], "a leading + is dropped");
    assert_eq!(msisdns(&owned(&app, &me, "?pattern=0011&search_pattern=1").await), ["447700900110", "447700900111"]);
    assert_eq!(msisdns(&owned(&app, &me, "?pattern=789&search_pattern=2").await), ["33123456789"]);
    assert_eq!(msisdns(&owned(&app, &me, "?pattern=011&search_pattern=0").await), Vec::<String>::new());
    let combined = owned(&app, &me, &format!("?country=GB&has_application=true&pattern=2&search_pattern=2&application_id={}", app.app_id)).await;
    assert_eq!(msisdns(&combined), ["447700900102"]);

    // The other account sees its own only; api_key/api_secret work as query parameters too.
    let theirs = owned(&app, &other_creds, "").await;
    assert_eq!(msisdns(&theirs), ["447700900500"]);
    let by_query = app.client.get(app.url(&format!("/account/numbers?api_key={}&api_secret={}&size=1", me.key, me.secret))).send().await.unwrap();
    assert_eq!(by_query.status(), 200);
    assert_eq!(by_query.json::<Value>().await.unwrap()["count"], 13);

    // Bad filters: 400, every one named; no credentials: 401.
    let names = invalid_names(list(&app, &me, "/account/numbers?size=101&index=0&search_pattern=3&pattern=4x&country=GBR&has_application=maybe&application_id=1").await).await;
    assert_eq!(names, ["application_id", "has_application", "country", "search_pattern", "pattern", "index", "size"]);
    assert_problem(app.client.get(app.url("/account/numbers")).send().await.unwrap(), 401).await;
    let wrong = Creds { key: me.key.clone(), secret: "wrong".into() };
    assert_problem(list(&app, &wrong, "/account/numbers").await, 401).await;
    app.stop().await;
}

// ---- POST /number/update ---------------------------------------------------------------------

#[sqlx::test]
async fn numbers_link_and_unlink_only_to_the_accounts_own_applications(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let me = creds_of(&app);
    let account = app.account.account_id;
    let carrier = trunk(&pool, None, "carrier").await;
    add(&pool, "447700900123", "GB", carrier, Some(account), None).await;
    let (other, other_creds) = another_account(&pool).await;
    add(&pool, "447700900500", "GB", carrier, Some(other), None).await;
    let foreign_app = create_application(&pool, other, None).await;
    let app_id = app.app_id.to_string();

    // Form-encoded, as the SDKs send it: linked, and inbound calls now find the application.
    assert_success(post_form(&app, &me, "/number/update", &[("country", "GB"), ("msisdn", "447700900123"), ("app_id", &app_id)]).await).await;
    assert_eq!(owner_of(&pool, "447700900123").await, (Some(account), Some(app.app_id)));
    let target = repo::inbound_target(&pool, "447700900123").await.unwrap().unwrap();
    assert_eq!(
        target,
        numbers::InboundTarget { msisdn: "447700900123".into(), country: "GB".into(), trunk_id: Some(carrier), account_id: Some(account), application_id: Some(app.app_id) }
    );
    assert_eq!(repo::inbound_target(&pool, "447700900124").await.unwrap(), None);
    let listed = owned(&app, &me, "").await;
    assert_eq!(listed["numbers"][0]["app_id"], app_id.as_str());

    // Absent (or empty) app_id unlinks; JSON bodies and Vonage's older voiceCallbackType=app link too.
    assert_success(post_form(&app, &me, "/number/update", &[("country", "GB"), ("msisdn", "447700900123")]).await).await;
    assert_eq!(owner_of(&pool, "447700900123").await.1, None);
    let json_body = app.client.post(app.url("/number/update")).basic_auth(&me.key, Some(&me.secret)).json(&json!({"msisdn": 447700900123u64, "app_id": app_id})).send().await.unwrap();
    assert_success(json_body).await;
    assert_eq!(owner_of(&pool, "447700900123").await.1, Some(app.app_id));
    assert_success(post_form(&app, &me, "/number/update", &[("msisdn", "447700900123"), ("app_id", "")]).await).await;
    assert_eq!(owner_of(&pool, "447700900123").await.1, None);
    assert_success(post_form(&app, &me, "/number/update", &[("msisdn", "+447700900123"), ("voiceCallbackType", "app"), ("voiceCallbackValue", &app_id)]).await).await;
    assert_eq!(owner_of(&pool, "447700900123").await.1, Some(app.app_id));

    // Refusals, in Vonage's shape; nothing changes.
    let label = assert_refused(post_form(&app, &me, "/number/update", &[("msisdn", "447700900123"), ("app_id", &foreign_app.to_string())]).await).await;
    assert!(label.contains(&foreign_app.to_string()) && label.contains("not yours"), "{label}");
    assert_refused(post_form(&app, &me, "/number/update", &[("msisdn", "447700900123"), ("app_id", &Uuid::new_v4().to_string())]).await).await;
    let label = assert_refused(post_form(&app, &me, "/number/update", &[("msisdn", "447700900500"), ("app_id", &app_id)]).await).await;
    assert!(label.contains("do not own"), "{label}");
    assert_eq!(owner_of(&pool, "447700900500").await, (Some(other), None));
    assert_refused(post_form(&app, &me, "/number/update", &[("msisdn", "447700900999")]).await).await;
    let label = assert_refused(post_form(&app, &me, "/number/update", &[("country", "FR"), ("msisdn", "447700900123")]).await).await;
    assert!(label.contains("GB"), "{label}");
    let label = assert_refused(post_form(&app, &me, "/number/update", &[("msisdn", "447700900123"), ("voiceCallbackType", "sip"), ("voiceCallbackValue", "sip:a@b")]).await).await;
    assert!(label.contains("sip"), "{label}");
    let missing = post_form(&app, &me, "/number/update", &[("app_id", "not-a-uuid")]).await;
    let body = assert_problem(missing, 420).await;
    let names: Vec<&str> = body["invalid_parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["msisdn", "app_id"], "{body}");
    assert_eq!(owner_of(&pool, "447700900123").await.1, Some(app.app_id), "still linked after the refusals");
    // The other account cannot unlink it either.
    assert_refused(post_form(&app, &other_creds, "/number/update", &[("msisdn", "447700900123")]).await).await;
    assert_eq!(owner_of(&pool, "447700900123").await.1, Some(app.app_id));

    // Not form or JSON: 415; no credentials: 401.
    let xml = app.client.post(app.url("/number/update")).basic_auth(&me.key, Some(&me.secret)).header("Content-Type", "text/xml").body("<x/>").send().await.unwrap();
    assert_problem(xml, 415).await;
    assert_problem(app.client.post(app.url("/number/update")).send().await.unwrap(), 401).await;

    // Deleting the application unlinks its numbers.
    let deleted = app.client.delete(app.url(&format!("/v2/applications/{app_id}"))).basic_auth(&me.key, Some(&me.secret)).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(owner_of(&pool, "447700900123").await, (Some(account), None));
    assert_refused(post_form(&app, &me, "/number/update", &[("msisdn", "447700900123"), ("app_id", &app_id)]).await).await;
    app.stop().await;
}

// ---- POST /number/buy, /number/cancel, GET /number/search ------------------------------------

#[sqlx::test]
async fn an_account_buys_only_available_numbers_and_cancelling_makes_them_available_again(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let me = creds_of(&app);
    let account = app.account.account_id;
    let carrier = trunk(&pool, None, "carrier").await;
    let office = trunk(&pool, Some(account), "office").await;
    add(&pool, "447700900600", "GB", carrier, None, None).await;
    add(&pool, "447700900601", "GB", carrier, None, None).await;
    add(&pool, "15550001111", "US", carrier, None, None).await;
    add(&pool, "447700900999", "GB", office, Some(account), None).await;
    let (other, other_creds) = another_account(&pool).await;
    add(&pool, "447700900500", "GB", carrier, Some(other), None).await;

    // What is for sale, by country: only numbers without an owner.
    let search = list(&app, &me, "/number/search?country=GB").await;
    assert_eq!(search.status(), 200);
    let search: Value = search.json().await.unwrap();
    assert_eq!(search["count"], 2);
    assert_eq!(search["numbers"][0], json!({"country": "GB", "msisdn": "447700900600", "type": "landline", "features": ["VOICE"], "cost": "0.00", "initialPrice": "0.00"}));
    let search: Value = list(&app, &me, "/number/search?country=GB&pattern=601&search_pattern=2&features=VOICE&type=landline").await.json().await.unwrap();
    assert_eq!(msisdns(&search), ["447700900601"]);
    let search: Value = list(&app, &me, "/number/search?country=GB&features=SMS").await.json().await.unwrap();
    assert_eq!(search["count"], 0, "no number has SMS");
    assert_eq!(invalid_names(list(&app, &me, "/number/search").await).await, ["country"]);

    // Buying: the right country, an available number.
    let label = assert_refused(post_form(&app, &me, "/number/buy", &[("country", "FR"), ("msisdn", "447700900600")]).await).await;
    assert!(label.contains("GB"), "{label}");
    let body = assert_problem(post_form(&app, &me, "/number/buy", &[("msisdn", "447700900600")]).await, 420).await;
    assert_eq!(body["invalid_parameters"][0]["name"], "country", "{body}");
    assert_success(post_form(&app, &me, "/number/buy", &[("country", "GB"), ("msisdn", "447700900600")]).await).await;
    assert_eq!(owner_of(&pool, "447700900600").await, (Some(account), None));
    assert_eq!(msisdns(&owned(&app, &me, "?country=GB").await), ["447700900600", "447700900999"]);
    let label = assert_refused(post_form(&app, &me, "/number/buy", &[("country", "GB"), ("msisdn", "447700900600")]).await).await;
    assert!(label.contains("already own"), "{label}");
    for taken in ["447700900500", "447700900777"] {
        let label = assert_refused(post_form(&app, &me, "/number/buy", &[("country", "GB"), ("msisdn", taken)]).await).await;
        assert!(label.contains("not available"), "{taken}: {label}");
    }
    let label = assert_refused(post_form(&app, &other_creds, "/number/buy", &[("country", "GB"), ("msisdn", "447700900999")]).await).await;
    assert!(label.contains("not available"), "{label}");
    assert_refused(post_form(&app, &other_creds, "/number/buy", &[("country", "GB"), ("msisdn", "447700900600")]).await).await;
    assert_eq!(owner_of(&pool, "447700900600").await.0, Some(account));
    // No subaccounts: a target_api_key other than one's own is refused.
    let body = assert_problem(post_form(&app, &me, "/number/buy", &[("country", "US"), ("msisdn", "15550001111"), ("target_api_key", &other_creds.key)]).await, 420).await;
    assert_eq!(body["invalid_parameters"][0]["name"], "target_api_key");
    assert_success(post_form(&app, &me, "/number/buy", &[("country", "US"), ("msisdn", "15550001111"), ("target_api_key", &me.key)]).await).await;

    // Cancelling: only one's own, back to the pool, unlinked; not a number on one's own trunk.
    let app_id = app.app_id.to_string();
    assert_success(post_form(&app, &me, "/number/update", &[("msisdn", "447700900600"), ("app_id", &app_id)]).await).await;
    assert_refused(post_form(&app, &other_creds, "/number/cancel", &[("country", "GB"), ("msisdn", "447700900600")]).await).await;
    assert_refused(post_form(&app, &me, "/number/cancel", &[("country", "US"), ("msisdn", "447700900600")]).await).await;
    assert_eq!(owner_of(&pool, "447700900600").await, (Some(account), Some(app.app_id)));
    assert_success(post_form(&app, &me, "/number/cancel", &[("country", "GB"), ("msisdn", "447700900600")]).await).await;
    assert_eq!(owner_of(&pool, "447700900600").await, (None, None));
    let search: Value = list(&app, &other_creds, "/number/search?country=GB").await.json().await.unwrap();
    assert_eq!(msisdns(&search), ["447700900600", "447700900601"]);
    let label = assert_refused(post_form(&app, &me, "/number/cancel", &[("msisdn", "447700900999")]).await).await;
    assert!(label.contains("own trunk"), "{label}");
    assert_eq!(owner_of(&pool, "447700900999").await.0, Some(account));
    assert_refused(post_form(&app, &me, "/number/cancel", &[("msisdn", "447700900600")]).await).await;

    // And the other account may buy it now.
    assert_success(post_form(&app, &other_creds, "/number/buy", &[("country", "GB"), ("msisdn", "447700900600")]).await).await;
    assert_eq!(owner_of(&pool, "447700900600").await.0, Some(other));
    app.stop().await;
}

// ---- random_from_number ----------------------------------------------------------------------

#[sqlx::test]
async fn random_from_number_picks_the_applications_numbers_first(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let account = app.account.account_id;
    let carrier = trunk(&pool, None, "carrier").await;
    let random_call = json!({"to": [{"type": "phone", "number": "447700900000"}], "random_from_number": true,
                             "ncco": [{"action": "talk", "text": "hi"}]});
    let from_of = |jwt: String| {
        let (client, url, body) = (app.client.clone(), app.url("/v1/calls"), random_call.clone());
        let get = app.url("/v1/calls/");
        async move {
            let created: Value = client.post(url).bearer_auth(&jwt).json(&body).send().await.unwrap().json().await.unwrap();
            let uuid = created["uuid"].as_str().unwrap_or_else(|| panic!("created: {created}"));
            let call: Value = client.get(format!("{get}{uuid}")).bearer_auth(&jwt).send().await.unwrap().json().await.unwrap();
            call["from"]["number"].as_str().unwrap().to_string()
        }
    };

    // No linked number: the configured pool.
    let configured = test_settings(&Options::default()).calls.random_from_numbers;
    assert!(configured.contains(&from_of(app.jwt()).await));

    // Linked numbers come first: only those of this application.
    let other_app = create_application(&pool, account, Some("http://127.0.0.1:9/events")).await;
    add(&pool, "447700900201", "GB", carrier, Some(account), Some(app.app_id)).await;
    add(&pool, "447700900202", "GB", carrier, Some(account), Some(app.app_id)).await;
    add(&pool, "447700900203", "GB", carrier, Some(account), Some(other_app)).await;
    add(&pool, "447700900204", "GB", carrier, Some(account), None).await;
    let mut picked = BTreeSet::new();
    for _ in 0..20 {
        picked.insert(from_of(app.jwt()).await);
    }
    assert!(picked.iter().all(|n| n == "447700900201" || n == "447700900202"), "{picked:?}");
    assert_eq!(picked.len(), 2, "both linked numbers are picked (at random) in 20 calls: {picked:?}");
    assert_eq!(from_of(app.jwt_for(other_app)).await, "447700900203");
    app.stop().await;
}

// ---- Inbound prices --------------------------------------------------------------------------

async fn make_rates_admin(app: &TestApp) {
    sqlx::query("UPDATE accounts SET rates_admin = true WHERE id = $1").bind(app.account.account_id).execute(&app.pool).await.unwrap();
}

async fn post_rates(app: &TestApp, csv: &str, query: &str) -> reqwest::Response {
    let request = app.client.post(app.url(&format!("/v1/rates{query}"))).basic_auth(&app.account.api_key, Some(&app.account.api_secret));
    request.header("Content-Type", "text/csv").body(csv.to_string()).send().await.unwrap()
}

async fn export(app: &TestApp) -> String {
    app.client.get(app.url("/v1/rates")).basic_auth(&app.account.api_key, Some(&app.account.api_secret)).send().await.unwrap().text().await.unwrap()
}

const OUTBOUND_ONLY: &str = "prefix,country,network,price_per_minute,initial_increment_s,subsequent_increment_s,connection_fee,effective_from";
const WITH_INBOUND: &str = "prefix,country,network,price_per_minute,initial_increment_s,subsequent_increment_s,connection_fee,effective_from,inbound_price_per_minute";

#[sqlx::test]
async fn inbound_legs_are_priced_by_the_deck_column_of_the_number_called(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    make_rates_admin(&app).await;
    let deck = format!(
        "{WITH_INBOUND}\n\
         ,,ANY,0.2,60,60,,,\n\
         44,GB,GB-FIXED,0.012,60,60,0.05,,0.006\n\
         447,GB,GB-MOBILE,0.024,30,6,0.01,,\n\
         4420,GB,GB-LONDON,0.01,1,1,0,,0.0012\n\
         4420,GB,GB-LONDON,0.01,1,1,0,2999-01-01,0.9\n"
    );
    let response = post_rates(&app, &deck, "?mode=replace").await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let now = chrono::Utc::now();
    let inbound = |n: &'static str| {
        let pool = pool.clone();
        async move { billing::inbound_rate(&pool, n, now).await.unwrap() }
    };

    // The longest prefix of the number called, its inbound price, its increments, no connection fee.
    let london = inbound("442071234567").await.unwrap();
    assert_eq!((london.prefix.as_str(), london.network.as_str()), ("4420", "GB-LONDON"));
    assert_eq!((london.price_per_minute, london.connection_fee), (dec("0.0012"), Decimal::ZERO));
    assert_eq!(london.price(61), dec("0.00122"), "61 s at 0.0012/min, 1/1 increments");
    let fixed = inbound("441632960000").await.unwrap();
    assert_eq!((fixed.price_per_minute, fixed.initial_increment_s), (dec("0.006"), 60));
    assert_eq!(fixed.price(61), dec("0.012"), "two 60 s increments, and no 0.05 connection fee");
    // An empty inbound price: calls to those numbers are free (still rated: the row is known).
    let mobile = inbound("447700900123").await.unwrap();
    assert_eq!((mobile.network.as_str(), mobile.price(100)), ("GB-MOBILE", Decimal::ZERO));
    // The catch-all matches everything else; without any row, no rate.
    assert_eq!(inbound("15550001111").await.unwrap().network, "ANY");
    sqlx::query("DELETE FROM rates WHERE prefix = ''").execute(&pool).await.unwrap();
    assert_eq!(inbound("15550001111").await, None);
    // Outbound rating of the same number is unchanged: its own price, its connection fee.
    let outbound = billing::rate_for(&pool, "441632960000", now).await.unwrap().unwrap();
    assert_eq!((outbound.price_per_minute, outbound.connection_fee), (dec("0.012"), dec("0.05")));

    // Export writes the column; merging an old 8-column file keeps the inbound prices of the rows
    // it replaces (and adds rows without one); replacing with it clears them.
    let exported = export(&app).await;
    assert!(exported.starts_with(&format!("{WITH_INBOUND}\n")), "{exported}");
    assert!(exported.contains("\n44,GB,GB-FIXED,0.012,60,60,0.05,,0.006\n"), "{exported}");
    let old = format!("{OUTBOUND_ONLY}\n44,GB,GB-FIXED,0.015,60,60,0.05,\n33,FR,FR,0.03,60,60,,\n");
    assert_eq!(post_rates(&app, &old, "").await.status(), 200);
    let fixed = inbound("441632960000").await.unwrap();
    assert_eq!(fixed.price_per_minute, dec("0.006"), "kept by a merge without the column");
    assert_eq!(billing::rate_for(&pool, "441632960000", now).await.unwrap().unwrap().price_per_minute, dec("0.015"), "the outbound price changed");
    assert_eq!(inbound("33123456789").await.unwrap().price(60), Decimal::ZERO);
    // A file with the column sets it, empty included.
    let new = format!("{WITH_INBOUND}\n44,GB,GB-FIXED,0.015,60,60,0.05,,\n");
    assert_eq!(post_rates(&app, &new, "").await.status(), 200);
    assert_eq!(inbound("441632960000").await.unwrap().price_per_minute, Decimal::ZERO);
    assert_eq!(post_rates(&app, &format!("{WITH_INBOUND}\n44,GB,GB-FIXED,0.015,60,60,0.05,,0.007\n"), "").await.status(), 200);
    assert_eq!(post_rates(&app, &old, "?mode=replace").await.status(), 200);
    assert_eq!(inbound("441632960000").await.unwrap().price_per_minute, Decimal::ZERO, "replace makes the old file the whole deck");

    // A bad inbound price is named by line and column.
    let bad = format!("{WITH_INBOUND}\n44,GB,GB-FIXED,0.015,60,60,0.05,,-1\n");
    let problem = assert_problem(post_rates(&app, &bad, "").await, 422).await;
    assert_eq!(problem["invalid_rows"][0], json!({"line": 2, "column": "inbound_price_per_minute", "reason": "must not be negative"}));
    app.stop().await;
}
