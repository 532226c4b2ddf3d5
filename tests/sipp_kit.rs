//! The SIPp test kit (tests/sip/*.xml and tests/common/sipp.rs) checked by SIPp calling SIPp:
//! each trunk scenario passes against a well-behaved caller, and the checking ones fail (exit
//! code 1, the reason in the log) against a caller that breaks the rule they check.
//! Skipped, with a message, when sipp is not installed, unless env CI is set.

mod common;

use common::sipp::Sipp;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(25);

struct Outcome {
    uas: i32,
    uas_log: String,
    uac: i32,
    uac_log: String,
}

/// Starts the trunk scenario, calls it with the caller scenario, waits for both.
async fn call(uas: &str, uas_keys: &[(&str, &str)], uac: &str, uac_keys: &[(&str, &str)]) -> Outcome {
    let mut trunk = Sipp::uas(uas, uas_keys);
    let mut caller = Sipp::uac(uac, uac_keys, trunk.port(), "447700900001");
    let (uac, uac_log) = caller.wait(WAIT).await;
    let (uas, uas_log) = trunk.wait(WAIT).await;
    Outcome { uas, uas_log, uac, uac_log }
}

fn both_pass(outcome: &Outcome) {
    assert_eq!(outcome.uas, 0, "trunk scenario failed:\n{}\n\ncaller:\n{}", outcome.uas_log, outcome.uac_log);
    assert_eq!(outcome.uac, 0, "caller scenario failed:\n{}\n\ntrunk:\n{}", outcome.uac_log, outcome.uas_log);
}

/// The trunk fails the call (exit 1) and its log says why.
fn trunk_fails(outcome: &Outcome, reason: &str) {
    assert_eq!(outcome.uas, 1, "the trunk should have failed the call:\n{}", outcome.uas_log);
    assert!(outcome.uas_log.contains(reason), "the trunk log should mention {reason:?}:\n{}", outcome.uas_log);
}

const PLAIN_HEADERS: &[(&str, &str)] = &[];

const AUTO_ANSWER_HEADERS: &[(&str, &str)] = &[
    ("h1", "X-Customer: acme"),
    ("h2", "P-Asserted-Identity: <sip:+447700900000@outdial.test>"),
    ("h3", "Call-Info: <sip:127.0.0.1>;answer-after=0"),
    ("h4", "Alert-Info: <http://127.0.0.1>;info=alert-autoanswer"),
];

#[tokio::test]
async fn answered_then_our_bye() {
    if !Sipp::available() {
        return;
    }
    let outcome = call("uas_answer_wait_bye.xml", &[], "uac_call.xml", PLAIN_HEADERS).await;
    both_pass(&outcome);
    // The log shows the dialog: the answer with PCMU, then our BYE.
    assert!(outcome.uas_log.contains("m=audio") && outcome.uas_log.contains("RTP/AVP 0\r\n"), "{}", outcome.uas_log);
    assert!(outcome.uas_log.contains("BYE sip:"), "{}", outcome.uas_log);
}

#[tokio::test]
async fn an_offer_without_pcmu_is_refused_by_the_answering_scenarios() {
    if !Sipp::available() {
        return;
    }
    // A caller offering PCMA only: the bench trunk (no checks) answers it, the answering
    // scenarios refuse to, since their answer is PCMU.
    let control = call("uas_bench.xml", &[], "uac_call_pcma.xml", &[]).await;
    both_pass(&control);
    let checked = call("uas_answer_wait_bye.xml", &[], "uac_call_pcma.xml", &[]).await;
    trunk_fails(&checked, "RTP/AVP");
}

#[tokio::test]
async fn answered_then_the_callee_hangs_up() {
    if !Sipp::available() {
        return;
    }
    let outcome = call("uas_answer_then_bye.xml", &[("pause_ms", "200")], "uac_call_wait_bye.xml", &[]).await;
    both_pass(&outcome);
}

#[tokio::test]
async fn every_refusal_code_reaches_the_caller_and_is_acknowledged() {
    if !Sipp::available() {
        return;
    }
    for code in ["404", "480", "486", "503", "603"] {
        let outcome = call(&format!("uas_reject_{code}.xml"), &[], "uac_call_rejected.xml", &[("code", code)]).await;
        both_pass(&outcome);
        assert!(outcome.uas_log.contains(&format!("SIP/2.0 {code} ")), "{}", outcome.uas_log);
    }
    // The caller's check is real: a 486 where 603 is expected fails it.
    let outcome = call("uas_reject_486.xml", &[], "uac_call_rejected.xml", &[("code", "603")]).await;
    assert_eq!(outcome.uac, 1, "{}", outcome.uac_log);
}

#[tokio::test]
async fn a_cancel_in_the_invite_transaction_is_answered_with_487() {
    if !Sipp::available() {
        return;
    }
    let outcome = call("uas_ring_cancel.xml", &[], "uac_cancel.xml", &[]).await;
    both_pass(&outcome);
    assert!(outcome.uas_log.contains("SIP/2.0 487 Request Terminated"), "{}", outcome.uas_log);
}

#[tokio::test]
async fn a_cancel_with_a_new_via_branch_fails_the_trunk_scenario() {
    if !Sipp::available() {
        return;
    }
    let outcome = call("uas_ring_cancel.xml", &[], "uac_cancel_new_branch.xml", &[]).await;
    trunk_fails(&outcome, "strcmp cancel_branch");
}

#[tokio::test]
async fn digest_401_accepts_the_right_password_only() {
    if !Sipp::available() {
        return;
    }
    both_pass(&call("uas_auth_401.xml", &[], "uac_auth.xml", &[]).await);
    // uac_auth answers with outdial/s3cret: a trunk expecting another password refuses it.
    let outcome = call("uas_auth_401.xml", &[("password", "other")], "uac_auth.xml", &[]).await;
    trunk_fails(&outcome, "auth_ok_number");
    assert!(outcome.uas_log.contains("SIP/2.0 403 Forbidden"), "{}", outcome.uas_log);
    let outcome = call("uas_auth_401.xml", &[("user", "someone")], "uac_auth.xml", &[]).await;
    trunk_fails(&outcome, "want_user:\"someone\"");
}

#[tokio::test]
async fn digest_407_accepts_the_right_password_only() {
    if !Sipp::available() {
        return;
    }
    let outcome = call("uas_auth_407.xml", &[], "uac_auth.xml", &[]).await;
    both_pass(&outcome);
    assert!(outcome.uas_log.contains("Proxy-Authorization: Digest"), "{}", outcome.uas_log);
    let outcome = call("uas_auth_407.xml", &[("password", "other")], "uac_auth.xml", &[]).await;
    trunk_fails(&outcome, "auth_ok_number");
    let outcome = call("uas_auth_407.xml", &[("user", "someone")], "uac_auth.xml", &[]).await;
    trunk_fails(&outcome, "want_user:\"someone\"");
}

#[tokio::test]
async fn a_cancel_after_a_407_must_be_in_the_retried_invite_transaction() {
    if !Sipp::available() {
        return;
    }
    both_pass(&call("uas_auth_cancel.xml", &[], "uac_auth_cancel.xml", &[]).await);
    let outcome = call("uas_auth_cancel.xml", &[], "uac_auth_cancel_first_branch.xml", &[]).await;
    trunk_fails(&outcome, "strcmp cancel_branch");
}

#[tokio::test]
async fn the_headers_scenario_checks_lines_text_and_absent_headers() {
    if !Sipp::available() {
        return;
    }
    let expected = [
        ("line1", "X-Customer: acme"),
        ("line2", "P-Asserted-Identity: <sip:+447700900000@outdial.test>"),
        ("has1", "answer-after=0"),
        ("has2", "alert-autoanswer"),
        ("absent1", "Remote-Party-ID"),
    ];
    both_pass(&call("uas_headers.xml", &expected, "uac_call.xml", AUTO_ANSWER_HEADERS).await);

    // A missing header.
    let without_customer = [("h1", "X-Other: 1"), AUTO_ANSWER_HEADERS[1], AUTO_ANSWER_HEADERS[2], AUTO_ANSWER_HEADERS[3]];
    let outcome = call("uas_headers.xml", &expected, "uac_call.xml", &without_customer).await;
    trunk_fails(&outcome, "Failed regexp match: looking in 'X-Customer: acme@@@");
    // A line must match exactly.
    let other_value = [("h1", "X-Customer: acme2"), AUTO_ANSWER_HEADERS[1], AUTO_ANSWER_HEADERS[2], AUTO_ANSWER_HEADERS[3]];
    let outcome = call("uas_headers.xml", &[expected[0]], "uac_call.xml", &other_value).await;
    trunk_fails(&outcome, "looking in 'X-Customer: acme@@@");
    // Text that no header line contains (the SDP body does not count).
    let outcome = call("uas_headers.xml", &[("has3", "m=audio")], "uac_call.xml", AUTO_ANSWER_HEADERS).await;
    trunk_fails(&outcome, "looking in 'm=audio@@@");
    // A header that must be absent.
    let with_rpi = [("h1", "Remote-Party-ID: <sip:447700900000@outdial.test>;party=calling"), AUTO_ANSWER_HEADERS[1], AUTO_ANSWER_HEADERS[2], AUTO_ANSWER_HEADERS[3]];
    let outcome = call("uas_headers.xml", &[("absent1", "Remote-Party-ID")], "uac_call.xml", &with_rpi).await;
    trunk_fails(&outcome, "Regexp matched but should not: looking in 'Remote-Party-ID@@@");
}

#[tokio::test]
async fn the_long_call_and_bench_trunks_answer_and_take_our_bye() {
    if !Sipp::available() {
        return;
    }
    both_pass(&call("uas_answer_long.xml", &[], "uac_call.xml", &[("hold_ms", "50")]).await);
    both_pass(&call("uas_bench.xml", &[], "uac_call.xml", &[("hold_ms", "0")]).await);
}

/// The kill -9 case: one caller answers and vanishes, another ends the call from elsewhere.
async fn bye_from_another_caller(trunk_tag: impl Fn(&Sipp) -> String) -> (Outcome, (i32, String)) {
    let mut trunk = Sipp::uas("uas_answer_long.xml", &[]);
    let call_id = format!("kill9-{}-{}@outdial.test", std::process::id(), trunk.port());
    let address = trunk.address();
    let mut first = Sipp::start("uac_call_no_bye.xml", &[], &["-cid_str", &call_id, "-s", "447700900001", &address]);
    let (first_code, first_log) = first.wait(WAIT).await;
    assert_eq!(first_code, 0, "{first_log}");
    let caller_tag = format!("{}Out1", first.pid());
    let trunk_tag = trunk_tag(&trunk);
    let keys = [("caller_tag", caller_tag.as_str()), ("trunk_tag", trunk_tag.as_str())];
    let mut second = Sipp::start("uac_bye_elsewhere.xml", &keys, &["-cid_str", &call_id, "-s", "447700900001", &address]);
    assert_ne!(second.port(), first.port());
    let (uac, uac_log) = second.wait(WAIT).await;
    let (uas, uas_log) = trunk.wait(WAIT).await;
    (Outcome { uas, uas_log, uac, uac_log }, (first_code, first_log))
}

#[tokio::test]
async fn a_bye_from_another_instance_ends_the_long_call_and_gets_its_200() {
    if !Sipp::available() {
        return;
    }
    // The second caller passes only if the 200 reaches its own address.
    let (outcome, _) = bye_from_another_caller(|trunk| format!("{}Trunk1", trunk.pid())).await;
    both_pass(&outcome);
    // Outside the dialog (wrong To tag): the trunk fails the call.
    let (outcome, _) = bye_from_another_caller(|_| "1Trunk1".to_string()).await;
    trunk_fails(&outcome, "strcmp bye_to_tag");
}

#[tokio::test]
async fn wait_kills_a_sipp_that_is_still_waiting_and_says_so() {
    if !Sipp::available() {
        return;
    }
    let mut trunk = Sipp::uas("uas_answer_wait_bye.xml", &[]);
    assert!(trunk.port() > 0);
    let (code, log) = trunk.wait(Duration::from_millis(300)).await;
    assert_eq!(code, -1, "{log}");
    assert!(log.contains("still running after 300ms: killed"), "{log}");
}

#[test]
#[should_panic(expected = "uas_reject_486.xml has no key \"code\"")]
fn a_key_the_scenario_does_not_declare_is_refused() {
    // Checked before SIPp starts: no need for sipp here.
    let _ = Sipp::uas("uas_reject_486.xml", &[("code", "486")]);
}

#[test]
fn a_port_sipp_cannot_bind_is_detected_and_retried() {
    if !Sipp::available() {
        return;
    }
    // Force every attempt onto a port we hold (a later -p wins): each SIPp exits 254, the helper
    // tries again, then gives up saying why.
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let failure = std::panic::catch_unwind(|| Sipp::start("uas_bench.xml", &[], &["-p", &port])).err().expect("SIPp cannot bind a held port");
    let message = failure.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("could not bind a UDP port in 5 attempts") && message.contains("Address already in use"), "{message}");
}

#[test]
fn a_scenario_sipp_refuses_fails_at_start_with_sipp_s_reason() {
    if !Sipp::available() {
        return;
    }
    // An injection file that is not there.
    let failure = std::panic::catch_unwind(|| Sipp::start("uas_bench.xml", &[], &["-inf", "/nonexistent.csv"])).err().expect("SIPp refuses a missing file");
    let message = failure.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("exited on start") && message.contains("Unable to open file /nonexistent.csv"), "{message}");
}
