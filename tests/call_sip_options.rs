//! POST /v1/calls with the Outdial extensions `sip` (per-call SIP options) and `user_data`:
//! what is stored and shown, each bad option named in a 400, header injection refused in both
//! places headers come from, and the `sip` facts of GET /v1/calls/{uuid} (only those meant for
//! users, never the dialog).

mod common;

use common::*;
use serde_json::{json, Value};
use sqlx::PgPool;

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn with_sip(options: Value) -> Value {
    with(minimal_call(), "sip", options)
}

fn sip_to(endpoint: Value) -> Value {
    with(minimal_call(), "to", json!([endpoint]))
}

/// The invalid_parameters of a refused create, as (name, reason).
async fn refused(app: &TestApp, body: &Value) -> Vec<(String, String)> {
    let response = app.post_call(body).await;
    let problem = assert_problem(response, 400).await;
    problem["invalid_parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("no invalid_parameters: {problem}"))
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p["reason"].as_str().unwrap().to_string()))
        .collect()
}

/// Asserts the create is refused naming exactly `expected`, and that nothing was stored.
async fn assert_refused_exactly(app: &TestApp, body: Value, expected: &[&str]) {
    let problems = refused(app, &body).await;
    let names: Vec<&str> = problems.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, expected, "for {body}: {problems:?}");
    for (_, reason) in &problems {
        assert!(!reason.is_empty());
    }
}

async fn calls_stored(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM calls").fetch_one(pool).await.unwrap()
}

#[sqlx::test]
async fn options_and_user_data_are_stored_and_user_data_is_shown(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let options = json!({
        "trunk": "carrier-a",
        "display_name": "Support Desk",
        "rewrite_from": "+447700900001",
        "pai": "sip:+447700900001@example.com",
        "rpi": "tel:+447700900001",
        "headers": {"Tenant": "7", "Campaign": "spring sale"},
        "auto_answer": "answer_mode"
    });
    let body = with(with_sip(options.clone()), "user_data", json!("order-42 / ünïcode"));
    let uuid = app.place(&body).await;

    let (stored, user_data, sip): (Option<Value>, Option<String>, Option<Value>) =
        sqlx::query_as("SELECT sip_options, user_data, sip FROM calls WHERE uuid = $1::uuid").bind(&uuid).fetch_one(&pool).await.unwrap();
    assert_eq!(stored.as_ref(), Some(&options));
    assert_eq!(user_data.as_deref(), Some("order-42 / ünïcode"));
    assert_eq!(sip, None, "the engine writes the SIP facts, not the API");
    // What the engine reads back.
    let typed: outdial::calls::SipOptions = serde_json::from_value(stored.unwrap()).unwrap();
    assert_eq!(typed.trunk.as_deref(), Some("carrier-a"));
    assert_eq!(typed.auto_answer, Some(outdial::calls::AutoAnswer::AnswerMode));
    let x: Vec<(String, &str)> = typed.x_headers().collect();
    assert_eq!(x, vec![("X-Campaign".to_string(), "spring sale"), ("X-Tenant".to_string(), "7")]);

    let call = app.get_json(&format!("/v1/calls/{uuid}")).await;
    assert_eq!(call["user_data"], "order-42 / ünïcode");
    assert!(call.get("sip").is_none(), "no sip object before the carrier wrote one: {call}");
    assert!(call.get("sip_options").is_none());
    let list = app.get_json("/v1/calls").await;
    assert_eq!(list["_embedded"]["calls"][0]["user_data"], "order-42 / ünïcode");

    // The started event carries it too.
    let (payload,): (Value,) =
        sqlx::query_as("SELECT payload FROM events WHERE call_uuid = $1::uuid AND seq = 1").bind(&uuid).fetch_one(&pool).await.unwrap();
    assert_eq!(payload["user_data"], "order-42 / ünïcode");

    // Every auto_answer value, and the limits themselves, are accepted.
    for mode in ["answer_mode", "call_info", "alert_info", "alert_info_delay0", "intercom"] {
        app.place(&with_sip(json!({"auto_answer": mode}))).await;
    }
    let twenty: serde_json::Map<String, Value> = (0..20).map(|i| (format!("H{i}"), json!("v".repeat(256)))).collect();
    app.place(&with(with_sip(json!({"headers": twenty, "display_name": "d".repeat(64)})), "user_data", json!("u".repeat(128)))).await;
    app.place(&with_sip(json!({"pai": "447700900001", "rpi": "sips:bob@example.com:5061;transport=tls"}))).await;
    app.place(&with_sip(json!({"rewrite_from": "alice.smith"}))).await;
    app.place(&with(sip_to(json!({"type": "sip", "uri": "sip:bob@example.com"})), "sip", json!({"headers": {"A": "b"}}))).await;
    app.stop().await;
}

#[sqlx::test]
async fn a_call_without_extensions_stores_none_and_shows_none(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let uuid = app.place(&minimal_call()).await;
    let empty = app.place(&with_sip(json!({}))).await;
    for uuid in [&uuid, &empty] {
        let (options, user_data): (Option<Value>, Option<String>) =
            sqlx::query_as("SELECT sip_options, user_data FROM calls WHERE uuid = $1::uuid").bind(uuid).fetch_one(&pool).await.unwrap();
        assert_eq!((options, user_data), (None, None));
        let call = app.get_json(&format!("/v1/calls/{uuid}")).await;
        assert!(call.get("user_data").is_none() && call.get("sip").is_none(), "{call}");
        let (payload,): (Value,) =
            sqlx::query_as("SELECT payload FROM events WHERE call_uuid = $1::uuid AND seq = 1").bind(uuid).fetch_one(&pool).await.unwrap();
        assert!(payload.get("user_data").is_none());
    }
    app.stop().await;
}

#[sqlx::test]
async fn each_bad_option_is_named(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let cases: Vec<(Value, &[&str])> = vec![
        (with_sip(json!({"trunc": "carrier-a"})), &["sip.trunc"]),
        (with_sip(json!({"trunk": "carrier-a", "header": {"A": "b"}, "pai": "1234"})), &["sip.header"]),
        (with_sip(json!("sip:carrier-a")), &["sip"]),
        (with_sip(json!({"trunk": ""})), &["sip.trunk"]),
        (with_sip(json!({"trunk": 7})), &["sip.trunk"]),
        (with_sip(json!({"trunk": "a\u{0007}b"})), &["sip.trunk"]),
        (with_sip(json!({"display_name": "d".repeat(65)})), &["sip.display_name"]),
        (with_sip(json!({"display_name": "Bob\" <sip:evil@x>"})), &["sip.display_name"]),
        (with_sip(json!({"display_name": "a\\b"})), &["sip.display_name"]),
        (with_sip(json!({"display_name": "line\u{0001}"})), &["sip.display_name"]),
        (with_sip(json!({"rewrite_from": "sip:alice@example.com"})), &["sip.rewrite_from"]),
        (with_sip(json!({"rewrite_from": "alice smith"})), &["sip.rewrite_from"]),
        (with_sip(json!({"rewrite_from": ""})), &["sip.rewrite_from"]),
        (with_sip(json!({"rewrite_from": "a".repeat(65)})), &["sip.rewrite_from"]),
        (with_sip(json!({"pai": "Alice <sip:alice@example.com>"})), &["sip.pai"]),
        (with_sip(json!({"pai": "http://example.com"})), &["sip.pai"]),
        (with_sip(json!({"pai": "12ab"})), &["sip.pai"]),
        (with_sip(json!({"rpi": "sip:@example.com"})), &["sip.rpi"]),
        (with_sip(json!({"rpi": "tel:"})), &["sip.rpi"]),
        (with_sip(json!({"headers": {"Foo": 5}})), &["sip.headers.Foo"]),
        (with_sip(json!({"headers": {"Foo": ""}})), &["sip.headers.Foo"]),
        (with_sip(json!({"headers": {"Foo": "v".repeat(257)}})), &["sip.headers.Foo"]),
        (with_sip(json!({"headers": {"Foo:Bar": "v"}})), &["sip.headers.Foo:Bar"]),
        (with_sip(json!({"headers": {"": "v"}})), &["sip.headers."]),
        (with_sip(json!({"headers": ["Foo: v"]})), &["sip.headers"]),
        (with_sip(json!({"auto_answer": "auto"})), &["sip.auto_answer"]),
        (with_sip(json!({"auto_answer": true})), &["sip.auto_answer"]),
        (with(minimal_call(), "user_data", json!("u".repeat(129))), &["user_data"]),
        (with(minimal_call(), "user_data", json!({"order": 42})), &["user_data"]),
        // The options mean nothing to a websocket or in-app destination.
        (with(sip_to(json!({"type": "app", "user": "alice"})), "sip", json!({"trunk": "a"})), &["sip"]),
    ];
    for (body, expected) in cases {
        assert_refused_exactly(&app, body, expected).await;
    }
    let too_many: serde_json::Map<String, Value> = (0..21).map(|i| (format!("H{i}"), json!("v"))).collect();
    assert_refused_exactly(&app, with_sip(json!({"headers": too_many})), &["sip.headers"]).await;
    // Names differ only in case: the same SIP header twice.
    let problems = refused(&app, &with_sip(json!({"headers": {"Tenant": "1", "tenant": "2"}}))).await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].0 == "sip.headers.tenant" || problems[0].0 == "sip.headers.Tenant");
    // All problems at once, together with the rest of the body's.
    let mut body = with_sip(json!({"pai": "x y", "auto_answer": "no", "unknown": 1}));
    body["ringing_timer"] = json!(500);
    let mut names: Vec<String> = refused(&app, &body).await.into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, ["ringing_timer", "sip.auto_answer", "sip.pai", "sip.unknown"]);
    assert_eq!(calls_stored(&pool).await, 0, "a refused call is not stored");
    app.stop().await;
}

#[sqlx::test]
async fn header_injection_is_refused_in_sip_options_and_in_sip_endpoints(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    // (NUL is refused before any field is read: the whole body, tests/errors.rs.)
    let injections = ["x\r\nContact: <sip:evil@attacker.example>", "x\nVia: SIP/2.0/UDP evil", "x\rX"];
    assert_problem(app.post_call(&with_sip(json!({"headers": {"Tenant": "x\u{0000}y"}}))).await, 400).await;
    for value in injections {
        assert_refused_exactly(&app, with_sip(json!({"headers": {"Tenant": value}})), &["sip.headers.Tenant"]).await;
        let endpoint = json!({"type": "sip", "uri": "sip:bob@example.com", "headers": {"Tenant": value}});
        assert_refused_exactly(&app, sip_to(endpoint), &["to[0].headers.Tenant"]).await;
        let endpoint = json!({"type": "sip", "uri": "sip:bob@example.com", "standard_headers": {"User-to-User": value}});
        assert_refused_exactly(&app, sip_to(endpoint), &["to[0].standard_headers.User-to-User"]).await;
        for key in ["display_name", "pai", "rpi", "rewrite_from", "trunk"] {
            assert_refused_exactly(&app, with_sip(json!({ key: format!("a{value}") })), &[format!("sip.{key}").as_str()]).await;
        }
    }
    // The header's name is as dangerous as its value.
    let endpoint = json!({"type": "sip", "uri": "sip:bob@example.com", "headers": {"A: b\r\nEvil": "v"}});
    assert_refused_exactly(&app, sip_to(endpoint), &["to[0].headers.A: b\r\nEvil"]).await;
    // And the URI the INVITE goes to, in `to`, in `from` (object or the Python SDK's string) and
    // in a connect action's endpoint.
    assert_refused_exactly(&app, sip_to(json!({"type": "sip", "uri": "sip:bob@example.com\r\nX-Evil: 1"})), &["to[0].uri"]).await;
    assert_refused_exactly(&app, sip_to(json!({"type": "sip", "uri": "sip:bob@exa mple.com"})), &["to[0].uri"]).await;
    assert_refused_exactly(&app, sip_to(json!({"type": "sip", "uri": "sip:bob@example.com>;x=<y"})), &["to[0].uri"]).await;
    assert_refused_exactly(&app, with(minimal_call(), "from", json!("sip:alice@example.com\r\nX-Evil: 1")), &["from"]).await;
    assert_refused_exactly(&app, with(minimal_call(), "from", json!({"type": "sip", "uri": "sips:alice@\"x\""})), &["from.uri"]).await;
    let connect = json!([{"action": "connect", "endpoint": [{"type": "sip", "uri": "sip:bob@example.com", "headers": {"K": "a\r\nb"}}]}]);
    let names = invalid_names(app.post_call(&with(minimal_call(), "ncco", connect)).await).await;
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with("headers.K"), "{names:?}");

    // Only User-to-User among the standard headers; the other endpoint rules.
    let endpoint = json!({"type": "sip", "uri": "sip:bob@example.com", "standard_headers": {"Contact": "<sip:evil@x>"}});
    assert_refused_exactly(&app, sip_to(endpoint), &["to[0].standard_headers.Contact"]).await;
    let endpoint = json!({"type": "sip", "uri": "sip:bob@example.com", "standardHeaders": {"User-to-User": 5}});
    assert_refused_exactly(&app, sip_to(endpoint), &["to[0].standardHeaders.User-to-User"]).await;
    let endpoint = json!({"type": "sip", "uri": "sip:bob@example.com", "headers": {"Nested": {"a": 1}}});
    assert_refused_exactly(&app, sip_to(endpoint), &["to[0].headers.Nested"]).await;
    assert_eq!(calls_stored(&pool).await, 0);

    // What SIP allows still goes through: tabs and spaces inside a value, numbers and booleans
    // (Vonage sends them as text), User-to-User in any case, URIs with ports, params and IPv6.
    let endpoint = json!({"type": "sip", "uri": "sip:bob@[2001:db8::1]:5060;transport=tcp",
                          "headers": {"Tenant": "a\tb c", "Count": 3, "Vip": true},
                          "standard_headers": {"user-to-user": "56a390f3d2b7310023a2;encoding=hex"}});
    let uuid = app.place(&sip_to(endpoint.clone())).await;
    let (to,): (Value,) = sqlx::query_as("SELECT to_endpoint FROM calls WHERE uuid = $1::uuid").bind(&uuid).fetch_one(&pool).await.unwrap();
    assert_eq!(to, endpoint);
    app.stop().await;
}

#[sqlx::test]
async fn the_sip_object_shows_only_the_facts_meant_for_users(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let uuid = app.place(&minimal_call()).await;
    let stored = json!({
        "call_id": "4f1c0e2a9b@203.0.113.10",
        "trunk": "carrier-a",
        "remote_address": "203.0.113.5:5060",
        "codec": "PCMU",
        "final_code": 200,
        "final_reason": "OK",
        "attempts": [{"trunk": "carrier-b", "final_code": 503, "final_reason": "Service Unavailable"},
                     {"trunk": "carrier-a", "final_code": 200, "final_reason": "OK"}],
        "dialog": {"local_tag": "as8f7", "remote_tag": "9c1", "cseq": 2, "route_set": ["<sip:p1.example.com;lr>"],
                   "remote_target": "sip:bob@203.0.113.5:5060", "rtp_address": "198.51.100.2:31000"},
        "cseq": 2,
        "local_tag": "as8f7"
    });
    sqlx::query("UPDATE calls SET sip = $2 WHERE uuid = $1::uuid").bind(&uuid).bind(&stored).execute(&pool).await.unwrap();

    let call = app.get_json(&format!("/v1/calls/{uuid}")).await;
    let mut expected = stored.clone();
    for internal in ["dialog", "cseq", "local_tag"] {
        expected.as_object_mut().unwrap().remove(internal);
    }
    assert_eq!(call["sip"], expected);
    let text = call.to_string();
    for secret in ["as8f7", "route_set", "remote_target", "rtp_address", "dialog"] {
        assert!(!text.contains(secret), "{secret} leaked: {call}");
    }
    // The list stays lean: no SIP facts per call.
    let list = app.get_json("/v1/calls").await;
    assert!(list["_embedded"]["calls"][0].get("sip").is_none());

    // Partial facts (a call still ringing): only what is there. Only the dialog: no sip object.
    sqlx::query("UPDATE calls SET sip = $2 WHERE uuid = $1::uuid")
        .bind(&uuid)
        .bind(json!({"call_id": "abc@host", "trunk": "carrier-a", "final_code": null, "dialog": {"local_tag": "t"}}))
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(app.get_json(&format!("/v1/calls/{uuid}")).await["sip"], json!({"call_id": "abc@host", "trunk": "carrier-a"}));
    sqlx::query("UPDATE calls SET sip = $2 WHERE uuid = $1::uuid").bind(&uuid).bind(json!({"dialog": {"local_tag": "t"}})).execute(&pool).await.unwrap();
    assert!(app.get_json(&format!("/v1/calls/{uuid}")).await.get("sip").is_none());
    app.stop().await;
}

#[sqlx::test]
async fn the_cdr_export_carries_user_data(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let tagged = app.place(&with(minimal_call(), "user_data", json!("crm,\"7\""))).await;
    let plain = app.place(&minimal_call()).await;
    let response = app
        .client
        .get(app.url("/v1/reports/calls?date_start=2000-01-01T00:00:00Z&date_end=2100-01-01T00:00:00Z&group_by=day"))
        .basic_auth(&app.account.api_key, Some(&app.account.api_secret))
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(header.last().map(String::as_str), Some("user_data"), "appended last: {header:?}");
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let find = |uuid: &str| rows.iter().find(|r| &r[at("uuid")] == uuid).unwrap().clone();
    assert_eq!(&find(&tagged)[at("user_data")], "crm,\"7\"");
    assert_eq!(&find(&plain)[at("user_data")], "");
    app.stop().await;
}
