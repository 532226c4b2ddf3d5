//! The live-calls console (/console): sign-in and its refusals, the session cookie, CSRF
//! refusals, the event stream following a call to its end, and the operators' view. The page
//! itself is driven in a real browser by tests/sdk/node/test/console.test.mjs.

mod common;

use common::*;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::{Duration, Instant};

/// A signed-in console: its cookie (name=value) and CSRF token.
struct Console {
    cookie: String,
    csrf: String,
}

async fn sign_in(app: &TestApp) -> Console {
    let response = app
        .client
        .post(app.url("/console/api/session"))
        .json(&json!({"api_key": app.account.api_key, "api_secret": app.account.api_secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
    let body: Value = response.json().await.unwrap();
    Console { cookie: set_cookie.split(';').next().unwrap().to_string(), csrf: body["csrf_token"].as_str().unwrap().to_string() }
}

fn console_settings() -> Options {
    Options {
        roles: vec!["api", "workers", "webhooks"],
        settings: |s| s.console.poll_ms = 200,
        ..Options::default()
    }
}

#[sqlx::test]
async fn wrong_credentials_are_refused_with_a_message_and_no_session(pool: PgPool) {
    let app = spawn_app(pool).await;
    let attempts = [
        json!({"api_key": app.account.api_key, "api_secret": "wrong-secret"}),
        json!({"api_key": "nosuchkey", "api_secret": app.account.api_secret}),
    ];
    for body in attempts {
        let response = app.client.post(app.url("/console/api/session")).json(&body).send().await.unwrap();
        assert!(response.headers().get("set-cookie").is_none(), "no cookie for a refused sign-in");
        let problem = assert_problem(response, 401).await;
        assert_eq!(problem["detail"], "The api_key or api_secret is wrong");
    }
    let empty = app.client.post(app.url("/console/api/session")).json(&json!({"api_key": ""})).send().await.unwrap();
    assert_problem(empty, 400).await;
    let not_json = app.client.post(app.url("/console/api/session")).body("api_key=a&api_secret=b")
        .header("content-type", "application/x-www-form-urlencoded").send().await.unwrap();
    assert_problem(not_json, 415).await;
    // Still signed out: no session to read, no stream to open.
    for path in ["/console/api/session", "/console/api/stream"] {
        assert_problem(app.client.get(app.url(path)).send().await.unwrap(), 401).await;
        let forged = app.client.get(app.url(path)).header("cookie", "outdial_console=forged").send().await.unwrap();
        assert_problem(forged, 401).await;
    }
    app.stop().await;
}

#[sqlx::test]
async fn the_page_and_its_files_are_served_with_a_strict_policy(pool: PgPool) {
    let app = spawn_app(pool).await;
    for (path, content_type) in [("/console", "text/html"), ("/console/console.js", "text/javascript"), ("/console/console.css", "text/css")] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with(content_type), "{path}: {:?}", headers["content-type"]);
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = response.text().await.unwrap();
        if path == "/console" {
            // Nothing inline: the policy would block it.
            let handler = regex::Regex::new(r"\son[a-z]+\s*=").unwrap();
            assert!(!body.contains("<script>") && !body.contains("style=") && !handler.is_match(&body), "inline code in the page");
            assert!(body.contains(r#"<script src="/console/console.js""#));
        }
    }
    app.stop().await;
}

#[sqlx::test]
async fn a_session_cookie_is_strict_and_sign_out_ends_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    let response = app
        .client
        .post(app.url("/console/api/session"))
        .json(&json!({"api_key": app.account.api_key, "api_secret": app.account.api_secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set_cookie.contains(attribute), "{set_cookie} lacks {attribute}");
    }
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["account"]["api_key"], app.account.api_key.as_str());
    let console = Console { cookie: set_cookie.split(';').next().unwrap().to_string(), csrf: body["csrf_token"].as_str().unwrap().to_string() };

    let me = app.client.get(app.url("/console/api/session")).header("cookie", &console.cookie).send().await.unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<Value>().await.unwrap()["csrf_token"], console.csrf.as_str());

    // Signing out changes state: without the token it is refused, and the session lives on.
    let refused = app.client.delete(app.url("/console/api/session")).header("cookie", &console.cookie).send().await.unwrap();
    assert_problem(refused, 403).await;
    let out = app
        .client
        .delete(app.url("/console/api/session"))
        .header("cookie", &console.cookie)
        .header("x-csrf-token", &console.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let gone = app.client.get(app.url("/console/api/session")).header("cookie", &console.cookie).send().await.unwrap();
    assert_problem(gone, 401).await;
    app.stop().await;
}

#[sqlx::test]
async fn requests_that_change_state_need_the_csrf_token(pool: PgPool) {
    let app = spawn_app(pool).await;
    let uuid = app.create_call().await;
    let console = sign_in(&app).await;
    let path = app.url(&format!("/console/api/calls/{uuid}"));
    for token in [None, Some("not-the-token")] {
        let mut request = app.client.post(&path).header("cookie", &console.cookie).json(&json!({"action": "hangup"}));
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        let problem = assert_problem(request.send().await.unwrap(), 403).await;
        assert!(problem["detail"].as_str().unwrap().contains("CSRF"), "{problem}");
    }
    let commands: i64 = sqlx::query_scalar("SELECT count(*) FROM call_commands").fetch_one(&app.pool).await.unwrap();
    assert_eq!(commands, 0, "a refused request stores nothing");
    // With the token the hang-up is stored, as PUT /v1/calls/{uuid} stores it.
    let accepted = app.client.post(&path).header("cookie", &console.cookie).header("x-csrf-token", &console.csrf)
        .json(&json!({"action": "hangup"})).send().await.unwrap();
    assert_eq!(accepted.status(), 200);
    let action: String = sqlx::query_scalar("SELECT action FROM call_commands").fetch_one(&app.pool).await.unwrap();
    assert_eq!(action, "hangup");
    // Another site's page cannot sign in here.
    let cross_site = app.client.post(app.url("/console/api/session")).header("origin", "https://evil.example")
        .json(&json!({"api_key": app.account.api_key, "api_secret": app.account.api_secret})).send().await.unwrap();
    assert_problem(cross_site, 403).await;
    app.stop().await;
}

/// Reads the event stream until `found` holds for a call event, returning that call.
async fn next_call(response: &mut reqwest::Response, buffer: &mut String, found: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let data = message.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or("{}");
            let parsed: Value = serde_json::from_str(data).unwrap();
            for call in parsed["calls"].as_array().into_iter().flatten() {
                if found(call) {
                    return call.clone();
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the stream did not deliver the call; left over: {buffer}");
        let chunk = tokio::time::timeout(left, response.chunk()).await.expect("an event in time").unwrap().expect("the stream stays open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[sqlx::test]
async fn the_stream_shows_a_call_answered_then_hung_up_from_the_console(pool: PgPool) {
    let app = spawn_app_with(pool, console_settings()).await;
    let console = sign_in(&app).await;
    let mut stream = app.client.get(app.url("/console/api/stream")).header("cookie", &console.cookie).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut buffer = String::new();

    let mut body = minimal_call();
    body["ncco"] = json!([{"action": "wait", "timeout": 600}]);
    let uuid = app.place(&body).await;
    let answered = next_call(&mut stream, &mut buffer, |c| c["uuid"] == uuid.as_str() && c["status"] == "answered").await;
    assert_eq!(answered["direction"], "outbound");
    assert_eq!(answered["to"]["number"], "447700900000");

    // The call's detail: its events so far.
    let detail: Value = app.client.get(app.url(&format!("/console/api/calls/{uuid}"))).header("cookie", &console.cookie)
        .send().await.unwrap().json().await.unwrap();
    assert_eq!(detail["live"], true);
    let kinds: Vec<&str> = detail["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"started") && kinds.contains(&"answered"), "{kinds:?}");

    let hangup = app.client.post(app.url(&format!("/console/api/calls/{uuid}"))).header("cookie", &console.cookie)
        .header("x-csrf-token", &console.csrf).json(&json!({"action": "hangup"})).send().await.unwrap();
    assert_eq!(hangup.status(), 200);
    let ended = next_call(&mut stream, &mut buffer, |c| c["uuid"] == uuid.as_str() && c["status"] == "completed").await;
    assert!(ended["end_time"].is_string(), "{ended}");
    drop(stream);
    app.stop().await;
}

#[sqlx::test]
async fn the_stream_starts_with_the_accounts_recent_calls_only(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mine = app.create_call().await;
    let other = outdial::accounts::repo::create(&app.pool, "other", 10).await.unwrap();
    let other_app = create_application(&app.pool, other.account_id, Some("http://127.0.0.1:9/events")).await;
    let theirs = app.post_call_as(&app.jwt_for(other_app), &minimal_call()).await;
    assert_eq!(theirs.status(), 201);
    let theirs: Value = theirs.json().await.unwrap();
    let console = sign_in(&app).await;
    let mut stream = app.client.get(app.url("/console/api/stream")).header("cookie", &console.cookie).send().await.unwrap();
    let mut buffer = String::new();
    let first = next_call(&mut stream, &mut buffer, |_| true).await;
    assert_eq!(first["uuid"], mine.as_str());
    assert!(!buffer.contains(theirs["uuid"].as_str().unwrap()), "another account's call was shown");
    drop(stream);
    app.stop().await;
}

#[sqlx::test]
async fn operators_see_trunks_and_instances_and_others_may_not(pool: PgPool) {
    let app = spawn_app_with(pool, console_settings()).await;
    let console = sign_in(&app).await;
    let refused = app.client.get(app.url("/console/api/operator")).header("cookie", &console.cookie).send().await.unwrap();
    assert_problem(refused, 403).await;

    sqlx::query("UPDATE accounts SET rates_admin = true WHERE id = $1").bind(app.account.account_id).execute(&app.pool).await.unwrap();
    sqlx::query("INSERT INTO trunks (id, name, host) VALUES (gen_random_uuid(), 'carrier-a', '127.0.0.1')").execute(&app.pool).await.unwrap();
    let mut body = minimal_call();
    body["ncco"] = json!([{"action": "wait", "timeout": 600}]);
    let uuid = app.place(&body).await;
    app.wait_call_status(&uuid, "answered").await;
    let view: Value = app.client.get(app.url("/console/api/operator")).header("cookie", &console.cookie)
        .send().await.unwrap().json().await.unwrap();
    let trunk = &view["trunks"][0];
    assert_eq!(trunk["name"], "carrier-a");
    assert_eq!(trunk["live_calls"], 0);
    let instances = view["instances"].as_array().unwrap();
    let running = instances.iter().find(|i| i["live_legs"] == 1).unwrap_or_else(|| panic!("no instance runs the call: {view}"));
    assert_eq!(running["legs"][0]["uuid"], uuid.as_str());
    app.stop().await;
}

/// A SIP call's SIP ladder: every message of its dialog, each way, in order, with its time.
#[sqlx::test]
async fn a_sip_calls_detail_shows_its_sip_ladder(pool: PgPool) {
    if !common::sipp::Sipp::available() {
        return;
    }
    let mut callee = common::sipp::Sipp::uas("uas_answer_wait_bye.xml", &[]);
    let (app, events) = common::sip_app::start(pool).await;
    let console = sign_in(&app).await;
    let uuid = app.place(&common::sip_app::call_to(&format!("sip:callee@{}", callee.address()), json!([{"action": "wait", "timeout": 600}]))).await;
    events.wait_status("/events", &uuid, "answered").await;
    let path = app.url(&format!("/console/api/calls/{uuid}"));
    let hangup = app.client.post(&path).header("cookie", &console.cookie).header("x-csrf-token", &console.csrf)
        .json(&json!({"action": "hangup"})).send().await.unwrap();
    assert_eq!(hangup.status(), 200);
    events.wait_status("/events", &uuid, "completed").await;
    let (code, log) = callee.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{log}");

    // Stored in batches: the BYE's 200 arrives within a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ladder = loop {
        let detail: Value = app.client.get(&path).header("cookie", &console.cookie).send().await.unwrap().json().await.unwrap();
        let ladder: Vec<(String, String)> = detail["sip_ladder"].as_array().unwrap().iter()
            .map(|m| (m["dir"].as_str().unwrap().to_string(), m["msg"].as_str().unwrap().to_string())).collect();
        if ladder.iter().any(|(dir, msg)| dir == "in" && msg.starts_with("200") && ladder.iter().any(|(_, m)| m == "BYE")) || Instant::now() > deadline {
            break (ladder, detail);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (ladder, detail) = ladder;
    let shown: Vec<String> = ladder.iter().map(|(dir, msg)| format!("{dir} {msg}")).collect();
    let position = |wanted: &str| shown.iter().position(|s| s == wanted).unwrap_or_else(|| panic!("no '{wanted}' in {shown:?}"));
    let invite = position("out INVITE");
    let ok = shown.iter().position(|s| s.starts_with("in 200")).unwrap_or_else(|| panic!("no 200 in {shown:?}"));
    let ack = position("out ACK");
    let bye = position("out BYE");
    assert!(invite < ok && ok < ack && ack < bye, "{shown:?}");
    assert!(shown[bye + 1..].iter().any(|s| s.starts_with("in 200")), "the BYE's 200: {shown:?}");
    let first = &detail["sip_ladder"][0];
    assert!(first["at"].is_string() && first["cseq"].as_str().unwrap().ends_with("INVITE"), "{first}");
    app.stop().await;
}

/// An operator sees each trunk's live calls and its last failures, from real SIP calls.
#[sqlx::test]
async fn operators_see_a_trunks_live_calls_and_last_errors(pool: PgPool) {
    if !common::sipp::Sipp::available() {
        return;
    }
    let mut answering = common::sipp::Sipp::uas("uas_answer_wait_bye.xml", &[]);
    let mut busy = common::sipp::Sipp::uas("uas_reject_486.xml", &[]);
    let (app, events) = common::sip_app::start(pool).await;
    sqlx::query("UPDATE accounts SET rates_admin = true WHERE id = $1").bind(app.account.account_id).execute(&app.pool).await.unwrap();
    for (name, sipp, prefix) in [("answering", &answering, "4477009001"), ("busy", &busy, "4477009002")] {
        let trunk = json!({"name": name, "host": "127.0.0.1", "port": sipp.port(), "transport": "udp", "prefixes": [prefix]});
        let created = app.client.post(app.url("/v1/trunks")).basic_auth(&app.account.api_key, Some(&app.account.api_secret))
            .json(&trunk).send().await.unwrap();
        assert_eq!(created.status(), 201, "{:?}", created.text().await);
    }
    let call = |number: &str| json!({"to": [{"type": "phone", "number": number}], "from": {"type": "phone", "number": "447700900001"},
                                     "ncco": [{"action": "wait", "timeout": 600}]});
    let live = app.place(&call("447700900100")).await;
    let refused = app.place(&call("447700900200")).await;
    events.wait_status("/events", &live, "answered").await;
    events.wait_status("/events", &refused, "completed").await;
    let console = sign_in(&app).await;
    let view: Value = app.client.get(app.url("/console/api/operator")).header("cookie", &console.cookie)
        .send().await.unwrap().json().await.unwrap();
    let trunk = |name: &str| view["trunks"].as_array().unwrap().iter().find(|t| t["name"] == name).cloned().unwrap_or_else(|| panic!("no {name}: {view}"));
    assert_eq!(trunk("answering")["live_calls"], 1, "{view}");
    assert!(trunk("answering")["cps"].as_f64().unwrap() > 0.0, "{view}");
    assert_eq!(trunk("answering")["last_errors"], json!([]));
    assert_eq!(trunk("busy")["live_calls"], 0);
    let error = &trunk("busy")["last_errors"][0];
    assert_eq!(error["code"], 486, "{view}");
    assert_eq!(error["call_uuid"], refused.as_str());

    let hangup = app.client.post(app.url(&format!("/console/api/calls/{live}"))).header("cookie", &console.cookie)
        .header("x-csrf-token", &console.csrf).json(&json!({"action": "hangup"})).send().await.unwrap();
    assert_eq!(hangup.status(), 200);
    events.wait_status("/events", &live, "completed").await;
    for sipp in [&mut answering, &mut busy] {
        let (code, log) = sipp.wait(Duration::from_secs(30)).await;
        assert_eq!(code, 0, "{log}");
    }
    app.stop().await;
}

#[sqlx::test]
async fn a_calls_recordings_are_served_to_its_account_only(pool: PgPool) {
    let app = spawn_app_with(pool, console_settings()).await;
    let sandbox = json!({"ring_s": 1.0, "dtmf": [{"after_s": 3.0, "value": "#"}]});
    assert_eq!(app.put_json("/v1/sandbox/numbers/447700900557", &sandbox).await.status(), 200);
    let mut body = minimal_call();
    body["to"] = json!([{"type": "phone", "number": "447700900557"}]);
    body["ncco"] = json!([{"action": "record", "endOnKey": "#"}, {"action": "talk", "text": "bye"}]);
    let uuid = app.place(&body).await;
    let console = sign_in(&app).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let recording = loop {
        let detail: Value = app.client.get(app.url(&format!("/console/api/calls/{uuid}"))).header("cookie", &console.cookie)
            .send().await.unwrap().json().await.unwrap();
        if let Some(r) = detail["recordings"].as_array().and_then(|r| r.first()) {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "no recording: {detail}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let href = recording["href"].as_str().unwrap();
    assert!(href.ends_with(&format!("/console/api/recordings/{}", recording["id"].as_str().unwrap())), "{href}");
    let wav = app.client.get(href).header("cookie", &console.cookie).send().await.unwrap();
    assert_eq!(wav.status(), 200);
    assert_eq!(wav.headers()["content-type"], "audio/wav");
    let bytes = wav.bytes().await.unwrap();
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(bytes.len() as u64, recording["size"].as_u64().unwrap());

    // Another account's console finds neither the call nor its recording.
    let other = outdial::accounts::repo::create(&app.pool, "other", 10).await.unwrap();
    let response = app.client.post(app.url("/console/api/session"))
        .json(&json!({"api_key": other.api_key, "api_secret": other.api_secret})).send().await.unwrap();
    let cookie = response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert_problem(app.client.get(href).header("cookie", &cookie).send().await.unwrap(), 404).await;
    let call = app.client.get(app.url(&format!("/console/api/calls/{uuid}"))).header("cookie", &cookie).send().await.unwrap();
    assert_problem(call, 404).await;
    app.stop().await;
}
