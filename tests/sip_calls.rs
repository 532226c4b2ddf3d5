//! Calls through the SIP carrier, with SIPp as the trunk (tests/sip/*.xml): each test checks
//! SIPp's verdict (exit code 0 only when our messages followed its scenario and passed its
//! checks) and the webhook events the call produced.

mod common;

use common::receiver::Receiver;
use common::sipp::Sipp;
use common::{Options, TestApp};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;

const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn sip_settings(settings: &mut outdial::config::Settings) {
    settings.carrier.kind = "sip".into();
    settings.carrier.time_scale = 1.0;
    settings.sip.listen = "127.0.0.1:0".into();
    settings.sip.tcp = false;
    settings.sip.allow_private_uris = true;
    settings.sip.invite_timeout_ms = 1500;
    settings.sip.credentials_key = Some(outdial::trunks::CredentialKey::parse(KEY_HEX).unwrap());
}

/// The app with the SIP carrier, its events going to a receiver.
async fn sip_app(pool: PgPool) -> (TestApp, Receiver) {
    let events = Receiver::start().await;
    let options = Options { roles: vec!["api", "workers", "webhooks"], time_scale: 1.0, settings: sip_settings, ..Options::default() };
    let app = common::spawn_app_with(pool, options).await;
    sqlx::query("UPDATE applications SET event_url = $1").bind(events.url("/events")).execute(&app.pool).await.unwrap();
    (app, events)
}

/// One of the account's trunks, at a SIPp.
async fn add_trunk(app: &TestApp, name: &str, sipp: &Sipp, extra: Value) -> Value {
    let mut body = json!({"name": name, "host": "127.0.0.1", "port": sipp.port(), "transport": "udp"});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let response = app
        .client
        .post(app.url("/v1/trunks"))
        .basic_auth(&app.account.api_key, Some(&app.account.api_secret))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    response.json().await.unwrap()
}

fn phone_call(number: &str, ncco: Value) -> Value {
    json!({"to": [{"type": "phone", "number": number}], "from": {"type": "phone", "number": "447700900001"}, "ncco": ncco})
}

fn short_talk() -> Value {
    json!([{"action": "talk", "text": "hello"}])
}

/// Plays until the call ends.
fn endless_talk() -> Value {
    json!([{"action": "talk", "text": "please hold the line", "loop": 0}])
}

async fn verdict(sipp: &mut Sipp) {
    let (code, log) = sipp.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{log}");
}

async fn call_detail(app: &TestApp, uuid: &str) -> Value {
    app.get_json(&format!("/v1/calls/{uuid}")).await
}

fn event<'a>(events: &'a [common::receiver::Received], uuid: &str, status: &str) -> &'a Value {
    &events.iter().find(|e| e.body["uuid"] == uuid && e.body["status"] == status).unwrap_or_else(|| panic!("no {status} event")).body
}

#[sqlx::test]
async fn an_answered_call_is_hung_up_by_us_with_bye(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let mut trunk = Sipp::uas("uas_answer_wait_bye.xml", &[]);
    let (app, events) = sip_app(pool).await;
    add_trunk(&app, "carrier-a", &trunk, json!({})).await;
    let uuid = app.place(&phone_call("447700900123", short_talk())).await;
    let received = events.wait_status("/events", &uuid, "completed").await;
    verdict(&mut trunk).await;
    assert_eq!(events.statuses("/events", &uuid), ["started", "ringing", "answered", "completed"], "{received:?}");
    let all = events.requests("/events");
    assert_eq!(event(&all, &uuid, "completed")["disconnected_by"], "platform");
    let call = call_detail(&app, &uuid).await;
    let sip = &call["sip"];
    assert_eq!(sip["final_code"], 200, "{call}");
    assert_eq!(sip["codec"], "PCMU");
    assert_eq!(sip["trunk"], "carrier-a");
    assert_eq!(sip["remote_address"], trunk.address());
    assert!(sip["call_id"].as_str().unwrap().starts_with(&uuid.replace('-', "")), "{sip}");
    assert!(sip.get("dialog").is_none(), "dialog internals are not shown: {sip}");
    assert_eq!(app.instance.as_ref().unwrap().sip_dialogs(), Some(0), "an ended dialog is forgotten by the stack");
    app.stop().await;
}

#[sqlx::test]
async fn the_callee_hangs_up_with_bye(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let mut trunk = Sipp::uas("uas_answer_then_bye.xml", &[("pause_ms", "800")]);
    let (app, events) = sip_app(pool).await;
    add_trunk(&app, "carrier-a", &trunk, json!({})).await;
    let uuid = app.place(&phone_call("447700900123", endless_talk())).await;
    events.wait_status("/events", &uuid, "completed").await;
    verdict(&mut trunk).await;
    let all = events.requests("/events");
    let completed = event(&all, &uuid, "completed");
    assert_eq!(completed["disconnected_by"], "user", "{completed}");
    assert_eq!(events.statuses("/events", &uuid), ["started", "ringing", "answered", "completed"]);
    assert_eq!(app.instance.as_ref().unwrap().sip_dialogs(), Some(0), "an ended dialog is forgotten by the stack");
    app.stop().await;
}

/// The final response the trunk gives → the Vonage status, as DESIGN.md's table says.
#[sqlx::test]
async fn refusals_map_to_vonage_statuses(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let (app, events) = sip_app(pool).await;
    let cases = [
        ("uas_reject_486.xml", "busy", None),
        ("uas_reject_603.xml", "rejected", Some("declined")),
        ("uas_reject_404.xml", "failed", Some("number_out_of_service")),
        ("uas_reject_480.xml", "unanswered", Some("unavailable")),
    ];
    for (i, (scenario, status, detail)) in cases.into_iter().enumerate() {
        let mut trunk = Sipp::uas(scenario, &[]);
        let name = format!("t{i}");
        add_trunk(&app, &name, &trunk, json!({})).await;
        let body = json!({"to": [{"type": "phone", "number": "447700900123"}], "from": {"type": "phone", "number": "447700900001"},
                          "ncco": short_talk(), "sip": {"trunk": name}});
        let uuid = app.place(&body).await;
        events.wait_status("/events", &uuid, status).await;
        verdict(&mut trunk).await;
        let all = events.requests("/events");
        let ending = event(&all, &uuid, status);
        assert_eq!(ending.get("detail").and_then(Value::as_str), detail, "{scenario}: {ending}");
        let code: u16 = scenario[11..14].parse().unwrap();
        if status != "rejected" {
            events.wait_status("/events", &uuid, "completed").await;
        }
        let call = call_detail(&app, &uuid).await;
        assert_eq!(call["sip"]["final_code"], code, "{call}");
        let history = common::media_log(&app, &uuid).await;
        assert!(history.iter().any(|l| l.starts_with(&format!("SIP {code} "))), "{history:?}");
    }
    assert_eq!(app.instance.as_ref().unwrap().sip_dialogs(), Some(0), "refused INVITEs leave no dialog behind");
    app.stop().await;
}

#[sqlx::test]
async fn the_ringing_timer_cancels_the_invite(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let mut trunk = Sipp::uas("uas_ring_cancel.xml", &[]);
    let (app, events) = sip_app(pool).await;
    add_trunk(&app, "carrier-a", &trunk, json!({})).await;
    let mut body = phone_call("447700900123", short_talk());
    body["ringing_timer"] = json!(2);
    let uuid = app.place(&body).await;
    events.wait_status("/events", &uuid, "completed").await;
    verdict(&mut trunk).await;
    assert_eq!(events.statuses("/events", &uuid), ["started", "ringing", "timeout", "completed"]);
    app.stop().await;
}

#[sqlx::test]
async fn an_api_hangup_while_ringing_cancels(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let mut trunk = Sipp::uas("uas_ring_cancel.xml", &[]);
    let (app, events) = sip_app(pool).await;
    add_trunk(&app, "carrier-a", &trunk, json!({})).await;
    let uuid = app.place(&phone_call("447700900123", short_talk())).await;
    events.wait_status("/events", &uuid, "ringing").await;
    let response = app.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": "hangup"})).await;
    assert_eq!(response.status(), 204);
    events.wait_status("/events", &uuid, "completed").await;
    verdict(&mut trunk).await;
    assert_eq!(events.statuses("/events", &uuid), ["started", "ringing", "cancelled", "completed"]);
    assert_eq!(app.instance.as_ref().unwrap().sip_dialogs(), Some(0), "a cancelled INVITE leaves no dialog behind");
    app.stop().await;
}

/// Digest challenges (401 from a UAS, 407 from a proxy) are answered with the trunk's
/// credentials, stored sealed.
#[sqlx::test]
async fn digest_challenges_are_answered(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let (app, events) = sip_app(pool).await;
    for (i, scenario) in ["uas_auth_401.xml", "uas_auth_407.xml"].into_iter().enumerate() {
        let mut trunk = Sipp::uas(scenario, &[("user", "acme"), ("password", "s3cret-pw")]);
        let name = format!("auth{i}");
        add_trunk(&app, &name, &trunk, json!({"username": "acme", "password": "s3cret-pw"})).await;
        let body = json!({"to": [{"type": "phone", "number": "447700900123"}], "from": {"type": "phone", "number": "447700900001"},
                          "ncco": short_talk(), "sip": {"trunk": name}});
        let uuid = app.place(&body).await;
        events.wait_status("/events", &uuid, "completed").await;
        verdict(&mut trunk).await;
        assert_eq!(events.statuses("/events", &uuid), ["started", "ringing", "answered", "completed"], "{scenario}");
    }
    app.stop().await;
}

/// After a 407 the INVITE is sent again with a new branch: a CANCEL must use that one.
#[sqlx::test]
async fn a_cancel_after_a_challenge_uses_the_retried_invites_branch(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let mut trunk = Sipp::uas("uas_auth_cancel.xml", &[("user", "acme"), ("password", "pw")]);
    let (app, events) = sip_app(pool).await;
    add_trunk(&app, "carrier-a", &trunk, json!({"username": "acme", "password": "pw"})).await;
    let mut body = phone_call("447700900123", short_talk());
    body["ringing_timer"] = json!(2);
    let uuid = app.place(&body).await;
    events.wait_status("/events", &uuid, "completed").await;
    verdict(&mut trunk).await;
    assert_eq!(events.statuses("/events", &uuid), ["started", "ringing", "timeout", "completed"]);
    app.stop().await;
}

#[sqlx::test]
async fn a_503_trunk_fails_over_to_the_next(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let mut down = Sipp::uas("uas_reject_503.xml", &[]);
    let mut up = Sipp::uas("uas_answer_wait_bye.xml", &[]);
    let (app, events) = sip_app(pool).await;
    add_trunk(&app, "first", &down, json!({"priority": 1, "prefixes": ["44"]})).await;
    add_trunk(&app, "second", &up, json!({"priority": 2, "prefixes": ["44"]})).await;
    let uuid = app.place(&phone_call("447700900123", short_talk())).await;
    events.wait_status("/events", &uuid, "completed").await;
    verdict(&mut down).await;
    verdict(&mut up).await;
    assert_eq!(events.statuses("/events", &uuid), ["started", "ringing", "answered", "completed"]);
    let call = call_detail(&app, &uuid).await;
    let attempts: Vec<(String, Value)> =
        call["sip"]["attempts"].as_array().unwrap().iter().map(|a| (a["trunk"].as_str().unwrap().to_string(), a["code"].clone())).collect();
    assert_eq!(attempts, [("first".to_string(), json!(503)), ("second".to_string(), json!(200))], "{call}");
    assert_eq!(call["sip"]["trunk"], "second");
    let history = common::media_log(&app, &uuid).await;
    assert!(history.iter().any(|l| l == "SIP 503 Service Unavailable from trunk first"), "{history:?}");
    app.stop().await;
}

#[sqlx::test]
async fn no_route_fails_the_call(pool: PgPool) {
    let (app, events) = sip_app(pool).await;
    let uuid = app.place(&phone_call("447700900123", short_talk())).await;
    events.wait_status("/events", &uuid, "completed").await;
    let all = events.requests("/events");
    assert_eq!(event(&all, &uuid, "failed")["detail"], "no_route");
    app.stop().await;
}

/// A trunk at its channel limit is skipped; when none is left the call fails, saying why.
#[sqlx::test]
async fn a_trunk_at_its_channel_limit_is_skipped(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let mut trunk = Sipp::uas("uas_answer_wait_bye.xml", &[]);
    let (app, events) = sip_app(pool).await;
    add_trunk(&app, "one-channel", &trunk, json!({"max_channels": 1})).await;
    let first = app.place(&phone_call("447700900123", endless_talk())).await;
    events.wait_status("/events", &first, "answered").await;
    let second = app.place(&phone_call("447700900124", short_talk())).await;
    events.wait_status("/events", &second, "completed").await;
    let all = events.requests("/events");
    assert_eq!(event(&all, &second, "failed")["detail"], "trunks_at_capacity");
    let history = common::media_log(&app, &second).await;
    assert!(history.iter().any(|l| l == "trunk one-channel skipped: at its channel limit"), "{history:?}");
    app.put_json(&format!("/v1/calls/{first}"), &json!({"action": "hangup"})).await;
    events.wait_status("/events", &first, "completed").await;
    verdict(&mut trunk).await;
    app.stop().await;
}

/// The per-call SIP options reach the INVITE (SIPp fails the call when a header is missing).
#[sqlx::test]
async fn per_call_sip_options_are_in_the_invite(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let keys = [
        ("line1", "X-Customer: acme"),
        ("line2", "P-Asserted-Identity: <sip:447700900555@127.0.0.1>"),
        ("line3", "Call-Info: <sip:127.0.0.1>;answer-after=0"),
        ("has1", "Remote-Party-ID: <sip:447700900666@127.0.0.1>;party=calling"),
        ("has2", "\"Acme Support\" <sip:support@"),
    ];
    let mut trunk = Sipp::uas("uas_headers.xml", &keys);
    let (app, events) = sip_app(pool).await;
    add_trunk(&app, "carrier-a", &trunk, json!({})).await;
    let mut body = phone_call("447700900123", short_talk());
    body["sip"] = json!({"display_name": "Acme Support", "rewrite_from": "support", "pai": "447700900555", "rpi": "447700900666",
                         "headers": {"Customer": "acme"}, "auto_answer": "call_info"});
    body["user_data"] = json!("order-42");
    let uuid = app.place(&body).await;
    events.wait_status("/events", &uuid, "completed").await;
    verdict(&mut trunk).await;
    let all = events.requests("/events");
    for status in ["started", "ringing", "answered", "completed"] {
        assert_eq!(event(&all, &uuid, status)["user_data"], "order-42", "{status}");
    }
    app.stop().await;
}

/// A SIP endpoint: the INVITE goes to its URI, its headers as X- headers, User-to-User as is.
#[sqlx::test]
async fn a_sip_endpoint_is_called_at_its_uri(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let keys = [("line1", "X-Agent: 42"), ("line2", "User-to-User: 56a390f3d2b7310023a2;encoding=hex")];
    let mut pbx = Sipp::uas("uas_headers.xml", &keys);
    let (app, events) = sip_app(pool).await;
    let body = json!({
        "to": [{"type": "sip", "uri": format!("sip:agent@127.0.0.1:{}", pbx.port()), "headers": {"Agent": "42"},
                "standard_headers": {"User-to-User": "56a390f3d2b7310023a2;encoding=hex"}}],
        "from": {"type": "phone", "number": "447700900001"}, "ncco": short_talk(),
    });
    let uuid = app.place(&body).await;
    events.wait_status("/events", &uuid, "completed").await;
    verdict(&mut pbx).await;
    assert_eq!(events.statuses("/events", &uuid), ["started", "ringing", "answered", "completed"]);
    app.stop().await;
}

/// Without `sip.allow_private_uris`, a SIP URI at a private or loopback host is refused, as
/// webhooks to such addresses are.
#[sqlx::test]
async fn a_sip_uri_at_a_private_host_is_refused_by_default(pool: PgPool) {
    let events = Receiver::start().await;
    let options = Options {
        roles: vec!["api", "workers", "webhooks"],
        time_scale: 1.0,
        settings: |s| {
            sip_settings(s);
            s.sip.allow_private_uris = false;
        },
        ..Options::default()
    };
    let app = common::spawn_app_with(pool, options).await;
    sqlx::query("UPDATE applications SET event_url = $1").bind(events.url("/events")).execute(&app.pool).await.unwrap();
    let body = json!({"to": [{"type": "sip", "uri": "sip:agent@127.0.0.1:5999"}], "from": {"type": "phone", "number": "447700900001"}, "ncco": short_talk()});
    let uuid = app.place(&body).await;
    events.wait_status("/events", &uuid, "completed").await;
    let all = events.requests("/events");
    assert_eq!(event(&all, &uuid, "failed")["detail"], "sip_host_not_allowed");
    app.stop().await;
}

/// The callee holds and resumes the call (re-INVITEs answered with the mirrored direction) and
/// probes it (OPTIONS); the call goes on and ends with our BYE.
#[sqlx::test]
async fn re_invites_and_options_are_answered(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let mut trunk = Sipp::uas("uas_reinvite_hold.xml", &[]);
    let (app, events) = sip_app(pool).await;
    add_trunk(&app, "carrier-a", &trunk, json!({})).await;
    let uuid = app.place(&phone_call("447700900123", endless_talk())).await;
    events.wait_status("/events", &uuid, "answered").await;
    common::wait_log(&app, &uuid, "INVITE from the callee: call resumed").await;
    let history = common::media_log(&app, &uuid).await;
    assert!(history.iter().any(|l| l == "INVITE from the callee: call held"), "{history:?}");
    // SIPp sends its OPTIONS after the second re-INVITE; give it the moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": "hangup"})).await;
    events.wait_status("/events", &uuid, "completed").await;
    verdict(&mut trunk).await;
    app.stop().await;
}

/// Out-of-dialog requests: OPTIONS (a trunk's keep-alive) gets 200; garbage and a request
/// missing its Call-ID take nothing down; an INVITE to no number of ours is refused.
#[sqlx::test]
async fn the_sip_port_answers_options_and_survives_garbage(pool: PgPool) {
    let (app, _events) = sip_app(pool).await;
    let port = sip_port(&app);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ours = socket.local_addr().unwrap();
    socket.send_to(b"\x00\x01garbage\r\n\r\n", ("127.0.0.1", port)).await.unwrap();
    let broken = format!("OPTIONS sip:outdial@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {ours};branch=z9hG4bKbroken\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:outdial@127.0.0.1>\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
    socket.send_to(broken.as_bytes(), ("127.0.0.1", port)).await.unwrap();
    let options = format!("OPTIONS sip:outdial@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {ours};branch=z9hG4bKprobe1\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:outdial@127.0.0.1>\r\nCall-ID: probe-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
    socket.send_to(options.as_bytes(), ("127.0.0.1", port)).await.unwrap();
    let reply = first_reply_for(&socket, "probe-1").await;
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    let invite = format!("INVITE sip:447700900999@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {ours};branch=z9hG4bKinv1\r\nMax-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=9\r\nTo: <sip:447700900999@127.0.0.1>\r\nCall-ID: inbound-1\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{ours}>\r\nContent-Length: 0\r\n\r\n");
    socket.send_to(invite.as_bytes(), ("127.0.0.1", port)).await.unwrap();
    let reply = first_final_reply_for(&socket, "inbound-1").await;
    assert!(reply.starts_with("SIP/2.0 403"), "{reply}");
    // Still serving the API.
    assert_eq!(app.get("/v1/calls").await.status(), 200);
    app.stop().await;
}

fn sip_port(app: &TestApp) -> u16 {
    app.instance.as_ref().unwrap().sip_address().expect("the SIP carrier runs").port()
}

async fn first_reply_for(socket: &tokio::net::UdpSocket, call_id: &str) -> String {
    let mut buffer = vec![0u8; 4096];
    loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer)).await.expect("a reply").unwrap();
        let text = String::from_utf8_lossy(&buffer[..n]).to_string();
        if text.contains(&format!("Call-ID: {call_id}")) {
            return text;
        }
    }
}

async fn first_final_reply_for(socket: &tokio::net::UdpSocket, call_id: &str) -> String {
    loop {
        let reply = first_reply_for(socket, call_id).await;
        if !reply.starts_with("SIP/2.0 1") {
            return reply;
        }
    }
}

/// The instance driving an answered SIP call is killed (-9): the instance that takes its legs
/// over ends the dialog on the trunk with a BYE built from the stored dialog state, and the
/// call's events finish.
#[sqlx::test]
async fn a_killed_instances_call_is_ended_with_bye_by_another(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let mut trunk = Sipp::start("uas_answer_long.xml", &[], &["-timeout", "60s"]);
    // The API and webhooks here; the call is driven by the process killed below (its own
    // dispatcher would hold the events it handed itself for a while after its death).
    let events = Receiver::start().await;
    let options = Options { roles: vec!["api", "webhooks"], time_scale: 1.0, settings: sip_settings, ..Options::default() };
    let app = common::spawn_app_with(pool.clone(), options).await;
    sqlx::query("UPDATE applications SET event_url = $1").bind(events.url("/events")).execute(&app.pool).await.unwrap();
    add_trunk(&app, "carrier-a", &trunk, json!({})).await;

    let sip_port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut doomed = common::sip_app::spawn_sip_worker(&pool, sip_port, &[("OUTDIAL__SIP__CREDENTIALS_KEY", KEY_HEX)]);
    let uuid = app.place(&phone_call("447700900123", endless_talk())).await;
    let answered = tokio::time::timeout(Duration::from_secs(20), events.wait_status("/events", &uuid, "answered")).await;
    let _ = doomed.kill(); // SIGKILL: no drain, no BYE from it.
    let _ = doomed.wait();
    assert!(answered.is_ok(), "the call was not answered: {:?}", events.statuses("/events", &uuid));

    let survivor_options = Options { roles: vec!["workers"], time_scale: 1.0, settings: sip_settings, ..Options::default() };
    let (survivor, _) = common::start_instance(&pool, survivor_options).await;
    verdict(&mut trunk).await;
    events.wait_status("/events", &uuid, "completed").await;
    assert_eq!(events.statuses("/events", &uuid), ["started", "ringing", "answered", "completed"]);
    let history = common::media_log(&app, &uuid).await;
    assert!(history.iter().any(|l| l.starts_with("BYE sent for Call-ID ") && l.ends_with("(taken over)")), "{history:?}");
    survivor.stop().await;
    app.stop().await;
}

/// A graceful stop (SIGTERM) drains; a call still up at the drain deadline is hung up on the
/// trunk with BYE before its leg is released.
#[sqlx::test]
async fn a_call_still_up_at_the_drain_deadline_is_hung_up_with_bye(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let mut trunk = Sipp::uas("uas_answer_wait_bye.xml", &[]);
    let (app, events) = sip_app(pool).await;
    add_trunk(&app, "carrier-a", &trunk, json!({})).await;
    let uuid = app.place(&phone_call("447700900123", endless_talk())).await;
    events.wait_status("/events", &uuid, "answered").await;
    let stopping = std::time::Instant::now();
    app.stop().await;
    let stopped_in = stopping.elapsed();
    verdict(&mut trunk).await;
    assert!(stopped_in < Duration::from_secs(8), "the stop took {stopped_in:?}");
}
