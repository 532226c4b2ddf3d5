//! Calls to our numbers, with SIPp as the carrier calling in (tests/sip/uac_inbound*.xml,
//! uac_call.xml, uac_cancel.xml, uac_call_rejected.xml): each test checks SIPp's verdict (exit
//! code 0 only when Outdial's answers followed its scenario) and the webhooks the call produced.

mod common;

use common::receiver::{Received, Receiver};
use common::sipp::Sipp;
use common::TestApp;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;

const NUMBER: &str = "442079460001";

/// The app on the SIP carrier with one of its numbers (NUMBER) on a trunk at `trunk_host`,
/// linked to its application, whose answer_url is the receiver's /answer.
async fn inbound_app(pool: PgPool, trunk_host: &str) -> (TestApp, Receiver) {
    inbound_app_with(pool, trunk_host, |_| {}).await
}

async fn inbound_app_with(pool: PgPool, trunk_host: &str, adjust: impl FnOnce(&mut outdial::config::Settings)) -> (TestApp, Receiver) {
    let (app, events) = common::sip_app::start_with(pool, adjust).await;
    common::sip_app::hold_number(&app, NUMBER, trunk_host, &[], &events.url("/answer")).await;
    (app, events)
}

fn sip_port(app: &TestApp) -> u16 {
    app.instance.as_ref().unwrap().sip_address().expect("the SIP carrier runs").port()
}

/// The inbound call's uuid, once its event_url got `status`.
async fn inbound_reaching(events: &Receiver, status: &str) -> String {
    let got = events.wait_for("/events", |r| r.iter().any(|e| e.body["direction"] == "inbound" && e.body["status"] == status)).await;
    got.iter().find(|e| e.body["status"] == status).unwrap().body["uuid"].as_str().unwrap().to_string()
}

fn event<'a>(events: &'a [Received], uuid: &str, status: &str) -> &'a Value {
    &events.iter().find(|e| e.body["uuid"] == uuid && e.body["status"] == status).unwrap_or_else(|| panic!("no {status} event")).body
}

async fn verdict(sipp: &mut Sipp) {
    let (code, log) = sipp.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{log}");
}

#[sqlx::test]
async fn an_answered_inbound_call_runs_the_applications_ncco_and_we_hang_up(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let (app, events) = inbound_app(pool, "127.0.0.1").await;
    events.respond("/answer", 200, &json!([{"action": "talk", "text": "thank you for calling"}]).to_string());
    let mut caller = Sipp::uac("uac_inbound.xml", &[], sip_port(&app), NUMBER);
    let uuid = inbound_reaching(&events, "completed").await;
    verdict(&mut caller).await;
    assert_eq!(events.statuses("/events", &uuid), ["started", "ringing", "answered", "completed"]);
    let all = events.requests("/events");
    for status in ["started", "ringing", "answered", "completed"] {
        let e = event(&all, &uuid, status);
        assert_eq!(e["direction"], "inbound", "{e}");
        assert_eq!(e["to"], NUMBER, "{e}");
        assert_eq!(e["from"], "447700900000", "{e}");
    }
    assert_eq!(event(&all, &uuid, "completed")["disconnected_by"], "platform");
    // The answer_url got Vonage's inbound parameters (GET query).
    let answer = &events.requests("/answer")[0];
    assert_eq!(answer.method, "GET");
    assert_eq!(answer.query["to"], NUMBER);
    assert_eq!(answer.query["from"], "447700900000");
    assert_eq!(answer.query["uuid"], uuid);
    assert_eq!(answer.query["endpoint_type"], "phone");
    assert!(answer.query["conversation_uuid"].starts_with("CON-"));
    // Listed and shown as inbound, with its SIP facts.
    let call = app.get_json(&format!("/v1/calls/{uuid}")).await;
    assert_eq!(call["direction"], "inbound", "{call}");
    assert_eq!(call["status"], "completed");
    assert_eq!(call["sip"]["codec"], "PCMU", "{call}");
    let listed = app.get_json("/v1/calls?status=completed").await;
    assert!(listed["_embedded"]["calls"].as_array().unwrap().iter().any(|c| c["uuid"] == uuid.as_str() && c["direction"] == "inbound"), "{listed}");
    // The call's history keeps the answer request with its attempt, between ringing and answered.
    let history = app.get_json(&format!("/v1/calls/{uuid}/events")).await;
    let kinds: Vec<&str> = history["_embedded"]["events"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    let at = |kind: &str| kinds.iter().position(|k| *k == kind).unwrap_or_else(|| panic!("no {kind} in {kinds:?}"));
    assert!(at("ringing") < at("answer") && at("answer") < at("answered"), "{kinds:?}");
    let answer = &history["_embedded"]["events"][at("answer")];
    assert_eq!(answer["attempts"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer["attempts"][0]["status_code"], 200, "{answer}");
    app.stop().await;
}

#[sqlx::test]
async fn a_caller_who_hangs_up_mid_ncco_completes_the_call_as_disconnected_by_user(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let (app, events) = inbound_app(pool, "127.0.0.1").await;
    events.respond("/answer", 200, &json!([{"action": "talk", "text": "please hold the line", "loop": 0}]).to_string());
    let mut caller = Sipp::uac("uac_call.xml", &[("hold_ms", "1500")], sip_port(&app), NUMBER);
    let uuid = inbound_reaching(&events, "completed").await;
    verdict(&mut caller).await;
    let all = events.requests("/events");
    let completed = event(&all, &uuid, "completed");
    assert_eq!(completed["disconnected_by"], "user", "{completed}");
    let duration: i64 = completed["duration"].as_str().unwrap().parse().unwrap();
    assert!((1..=3).contains(&duration), "{completed}");
    app.stop().await;
}

#[sqlx::test]
async fn a_caller_who_cancels_while_the_ncco_is_fetched_is_cancelled(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let (app, events) = inbound_app(pool, "127.0.0.1").await;
    events.respond("/answer", 200, &json!([{"action": "talk", "text": "too late"}]).to_string());
    events.delay("/answer", Duration::from_secs(3));
    let mut caller = Sipp::uac("uac_cancel.xml", &[], sip_port(&app), NUMBER);
    let uuid = inbound_reaching(&events, "completed").await;
    verdict(&mut caller).await;
    assert_eq!(events.statuses("/events", &uuid), ["started", "ringing", "cancelled", "completed"]);
    let call = app.get_json(&format!("/v1/calls/{uuid}")).await;
    assert_eq!(call["status"], "cancelled", "{call}");
    app.stop().await;
}

#[sqlx::test]
async fn a_call_to_a_number_we_do_not_hold_is_refused_404(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let (app, events) = inbound_app(pool, "127.0.0.1").await;
    let mut caller = Sipp::uac("uac_call_rejected.xml", &[("code", "404")], sip_port(&app), "442079460999");
    verdict(&mut caller).await;
    assert!(events.requests("/answer").is_empty());
    let calls: (i64,) = sqlx::query_as("SELECT count(*) FROM calls").fetch_one(&app.pool).await.unwrap();
    assert_eq!(calls.0, 0, "a refused call is not stored");
    app.stop().await;
}

#[sqlx::test]
async fn an_invite_from_an_address_that_is_no_trunks_is_refused_403(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    // The number's trunk is at 127.0.0.2; SIPp calls from 127.0.0.1.
    let (app, events) = inbound_app(pool, "127.0.0.2").await;
    let mut caller = Sipp::uac("uac_call_rejected.xml", &[("code", "403")], sip_port(&app), NUMBER);
    verdict(&mut caller).await;
    assert!(events.requests("/answer").is_empty());
    app.stop().await;
}

#[sqlx::test]
async fn an_answer_url_that_is_down_falls_back_then_refuses_480(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let (app, events) = inbound_app(pool, "127.0.0.1").await;
    let dead = "http://127.0.0.1:9/answer";
    sqlx::query("UPDATE applications SET answer_url = $1, fallback_answer_url = $2").bind(dead).bind(events.url("/fallback")).execute(&app.pool).await.unwrap();
    events.respond("/fallback", 200, &json!([{"action": "talk", "text": "we are having trouble"}]).to_string());
    let mut caller = Sipp::uac("uac_inbound.xml", &[], sip_port(&app), NUMBER);
    let uuid = inbound_reaching(&events, "completed").await;
    verdict(&mut caller).await;
    assert_eq!(events.statuses("/events", &uuid), ["started", "ringing", "answered", "completed"]);
    let fallback = &events.requests("/fallback")[0];
    assert_eq!(fallback.query["to"], NUMBER, "{:?}", fallback.query);

    // Neither answers: an error event, and the caller gets 480.
    sqlx::query("UPDATE applications SET fallback_answer_url = $1").bind(dead).execute(&app.pool).await.unwrap();
    let mut caller = Sipp::uac("uac_call_rejected.xml", &[("code", "480")], sip_port(&app), NUMBER);
    verdict(&mut caller).await;
    let failed = events
        .wait_for("/events", |r| r.iter().any(|e| e.body["status"] == "failed" && e.body["direction"] == "inbound"))
        .await;
    let failed = failed.iter().find(|e| e.body["status"] == "failed").unwrap();
    let uuid = failed.body["uuid"].as_str().unwrap();
    let errors = events.wait_for("/events", |r| r.iter().any(|e| e.body["uuid"] == uuid && e.body.get("reason").is_some())).await;
    let error = errors.iter().find(|e| e.body["uuid"] == uuid && e.body.get("reason").is_some()).unwrap();
    assert!(error.body["reason"].as_str().unwrap().contains("unreachable"), "{}", error.body);
    app.stop().await;
}

#[sqlx::test]
async fn the_callers_rfc2833_keys_reach_input(pool: PgPool) {
    if !Sipp::available() || !common::sipp::can_play_pcap() {
        return;
    }
    let (app, events) = inbound_app(pool, "127.0.0.1").await;
    let ncco = json!([{"action": "input", "type": ["dtmf"], "dtmf": {"maxDigits": 8, "submitOnHash": true, "timeOut": 8},
                       "eventUrl": [events.url("/input")]}]);
    events.respond("/answer", 200, &ncco.to_string());
    let mut caller = Sipp::uac_media("uac_inbound_dtmf_pcap.xml", &[], sip_port(&app), NUMBER);
    let input = events.wait_for("/input", |r| !r.is_empty()).await;
    assert_eq!(input[0].body["dtmf"]["digits"], "123", "{:?}", input[0].body);
    inbound_reaching(&events, "completed").await;
    verdict(&mut caller).await;
    app.stop().await;
}

/// A second call while the first is up: refused 503 when the trunk or the account is at its
/// concurrent-call limit.
async fn second_call_refused_while_first_is_up(app: &TestApp, events: &Receiver) {
    events.respond("/answer", 200, &json!([{"action": "talk", "text": "please hold the line", "loop": 0}]).to_string());
    let mut first = Sipp::uac("uac_call.xml", &[("hold_ms", "3000")], sip_port(app), NUMBER);
    inbound_reaching(events, "answered").await;
    let mut second = Sipp::uac("uac_call_rejected.xml", &[("code", "503")], sip_port(app), NUMBER);
    verdict(&mut second).await;
    verdict(&mut first).await;
    // The slot is free again once the first call ended.
    inbound_reaching(events, "completed").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = Sipp::uac("uac_call.xml", &[("hold_ms", "200")], sip_port(app), NUMBER);
    verdict(&mut third).await;
}

#[sqlx::test]
async fn a_trunk_at_its_channel_limit_refuses_inbound_calls_503(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let (app, events) = inbound_app(pool, "127.0.0.1").await;
    sqlx::query("UPDATE trunks SET max_channels = 1").execute(&app.pool).await.unwrap();
    second_call_refused_while_first_is_up(&app, &events).await;
    app.stop().await;
}

#[sqlx::test]
async fn an_account_at_its_inbound_limit_refuses_calls_503(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    let (app, events) = inbound_app_with(pool, "127.0.0.1", |s| s.sip.inbound_account_channels = 1).await;
    second_call_refused_while_first_is_up(&app, &events).await;
    app.stop().await;
}

/// The instance holding an answered inbound call is killed (-9): the instance that takes its
/// legs over ends the caller's dialog with a BYE built from the stored (server-side) dialog, and
/// the call's events finish.
#[sqlx::test]
async fn a_killed_instances_inbound_call_is_ended_with_bye_by_another(pool: PgPool) {
    if !Sipp::available() {
        return;
    }
    // The API and webhooks here; the call is taken by the process killed below.
    let events = Receiver::start().await;
    let options = common::Options { roles: vec!["api", "webhooks"], time_scale: 1.0, settings: common::sip_app::sip_settings, ..Default::default() };
    let app = common::spawn_app_with(pool.clone(), options).await;
    sqlx::query("UPDATE applications SET event_url = $1").bind(events.url("/events")).execute(&app.pool).await.unwrap();
    common::sip_app::hold_number(&app, NUMBER, "127.0.0.1", &[], &events.url("/answer")).await;
    events.respond("/answer", 200, &json!([{"action": "talk", "text": "please hold the line", "loop": 0}]).to_string());

    let sip_port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut doomed = common::sip_app::spawn_sip_worker(&pool, sip_port, &[]);
    // Until the process listens, its port refuses; SIPp retransmits the INVITE.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut caller = Sipp::start("uac_inbound.xml", &[], &["-timeout", "60s", "-s", NUMBER, &format!("127.0.0.1:{sip_port}")]);
    let answered = tokio::time::timeout(Duration::from_secs(20), inbound_reaching(&events, "answered")).await;
    let _ = doomed.kill(); // SIGKILL: no drain, no BYE from it.
    let _ = doomed.wait();
    let uuid = answered.expect("the inbound call was not answered");

    // The survivor takes the dead instance's SIP port: SIPp as a UAC sends its responses to
    // the address it called (-s target), not per Via as a trunk (or Kamailio in front) does.
    let survivor_options = common::Options { roles: vec!["workers"], time_scale: 1.0, settings: common::sip_app::sip_settings, ..Default::default() };
    let mut settings = common::test_settings(&survivor_options);
    settings.sip.listen = format!("127.0.0.1:{sip_port}");
    let survivor = outdial::startup::Instance::start(settings, pool.clone()).await.expect("the survivor starts");
    verdict(&mut caller).await;
    events.wait_status("/events", &uuid, "completed").await;
    assert_eq!(events.statuses("/events", &uuid), ["started", "ringing", "answered", "completed"]);
    let history = common::media_log(&app, &uuid).await;
    assert!(history.iter().any(|l| l.starts_with("BYE sent for Call-ID ") && l.ends_with("(taken over)")), "{history:?}");
    survivor.stop().await;
    app.stop().await;
}
