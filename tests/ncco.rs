//! NCCO parsing: each action's options, ranges and ordering rules, with problems named by path.

use outdial::ncco::{parse_ncco, Action};
use outdial::validation::Problems;
use serde_json::{json, Value};

fn problems_of(ncco: Value) -> Vec<String> {
    let mut problems = Problems::default();
    let parsed = parse_ncco(&ncco, "ncco", &mut problems);
    assert_eq!(parsed.is_none(), !problems.is_empty());
    problems.0.into_iter().map(|p| p.name).collect()
}

fn parse_ok(ncco: Value) -> Vec<Action> {
    let mut problems = Problems::default();
    let parsed = parse_ncco(&ncco, "ncco", &mut problems);
    assert!(problems.is_empty(), "{:?}", problems.0);
    parsed.unwrap().0
}

#[test]
fn all_nine_actions_parse_with_defaults() {
    let actions = parse_ok(json!([
        {"action": "record", "eventUrl": ["https://e.com/rec"]},
        {"action": "talk", "text": "hi"},
        {"action": "stream", "streamUrl": ["https://e.com/a.mp3"]},
        {"action": "input", "type": ["dtmf"]},
        {"action": "notify", "payload": {"k": 1}, "eventUrl": ["https://e.com/n"]},
        {"action": "wait"},
        {"action": "connect", "endpoint": [{"type": "phone", "number": "447700900000"}]},
        {"action": "conversation", "name": "room"}
    ]));
    assert_eq!(actions.len(), 8);
    let Action::Talk(talk) = &actions[1] else { panic!() };
    assert_eq!((talk.loop_count, talk.level, talk.language.as_str(), talk.style), (1, 0.0, "en-US", 0));
    let Action::Input(input) = &actions[3] else { panic!() };
    assert_eq!((input.dtmf.time_out_s, input.dtmf.max_digits, input.dtmf.submit_on_hash), (3, 4, false));
    let Action::Wait(wait) = &actions[5] else { panic!() };
    assert_eq!(wait.timeout_s, 10.0);
    let Action::Connect(connect) = &actions[6] else { panic!() };
    assert_eq!((connect.timeout_s, connect.limit_s), (60, 7200));
    let Action::Record(record) = &actions[0] else { panic!() };
    assert_eq!((record.format.as_str(), record.is_synchronous()), ("mp3", false));
    let transfer = parse_ok(json!([{"action": "transfer", "conversationId": "CON-1"}]));
    assert!(matches!(transfer[0], Action::Transfer(_)));
}

#[test]
fn option_ranges_are_enforced_with_paths() {
    assert_eq!(problems_of(json!([{"action": "talk", "text": "hi"}, {"action": "input", "type": ["dtmf"], "dtmf": {"timeOut": 11}}])),
        vec!["ncco[1].dtmf.timeOut"]);
    assert_eq!(problems_of(json!([{"action": "input", "type": ["dtmf"], "dtmf": {"maxDigits": 21}}])), vec!["ncco[0].dtmf.maxDigits"]);
    assert_eq!(problems_of(json!([{"action": "input", "type": ["speech"], "speech": {"endOnSilence": 0.1, "maxDuration": 61}}])),
        vec!["ncco[0].speech.endOnSilence", "ncco[0].speech.maxDuration"]);
    assert_eq!(problems_of(json!([{"action": "talk", "text": "x", "level": 2}])), vec!["ncco[0].level"]);
    assert_eq!(problems_of(json!([{"action": "talk", "text": "x".repeat(1501)}])), vec!["ncco[0].text"]);
    assert!(problems_of(json!([{"action": "talk", "text": format!("<speak>{}</speak>", "x".repeat(1500))}])).is_empty(), "SSML tags do not count");
    assert_eq!(problems_of(json!([{"action": "record", "endOnSilence": 2, "timeOut": 7201, "endOnKey": "ab", "format": "flac"}])),
        vec!["ncco[0].endOnKey", "ncco[0].format", "ncco[0].endOnSilence", "ncco[0].timeOut"]);
    assert_eq!(problems_of(json!([{"action": "connect", "endpoint": [{"type": "phone", "number": "447700900000"}], "timeout": 2, "limit": 7201}])),
        vec!["ncco[0].timeout", "ncco[0].limit"]);
    assert_eq!(problems_of(json!([{"action": "connect", "endpoint": [{"type": "phone", "number": "x"}]}])), vec!["ncco[0].endpoint[0].number"]);
    assert_eq!(problems_of(json!([{"action": "stream"}])), vec!["ncco[0].streamUrl"]);
    assert_eq!(problems_of(json!([{"action": "notify", "payload": 3}])), vec!["ncco[0].payload", "ncco[0].eventUrl"]);
    assert_eq!(problems_of(json!([{"action": "conversation"}])), vec!["ncco[0].name"]);
    assert_eq!(problems_of(json!([{"action": "transfer", "conversationId": ""}])), vec!["ncco[0].conversationId"]);
    assert_eq!(problems_of(json!([{"action": "talk", "text": "hi", "eventUrl": "x"}])), Vec::<String>::new(), "unknown keys are ignored");
    assert_eq!(problems_of(json!([{"action": "record", "eventUrl": ["x"]}])), vec!["ncco[0].eventUrl"]);
}

#[test]
fn wait_timeout_is_clamped_not_refused() {
    let Action::Wait(w) = &parse_ok(json!([{"action": "wait", "timeout": 99999}]))[0] else { panic!() };
    assert_eq!(w.timeout_s, 7200.0);
    let Action::Wait(w) = &parse_ok(json!([{"action": "wait", "timeout": 0.01}]))[0] else { panic!() };
    assert_eq!(w.timeout_s, 0.1);
}

#[test]
fn ordering_rules() {
    // bargeIn needs an input after the talk/stream run.
    assert_eq!(problems_of(json!([{"action": "talk", "text": "a", "bargeIn": true}, {"action": "wait"}])), vec!["ncco[0]"]);
    assert!(problems_of(json!([{"action": "talk", "text": "a", "bargeIn": true}, {"action": "talk", "text": "b"}, {"action": "input", "type": ["dtmf"]}])).is_empty());
    assert_eq!(problems_of(json!([{"action": "stream", "streamUrl": ["https://e.com/a"], "bargeIn": true}])), vec!["ncco[0]"]);
    // Nothing runs after conversation or transfer.
    assert_eq!(problems_of(json!([{"action": "conversation", "name": "r"}, {"action": "talk", "text": "never"}])), vec!["ncco[1]"]);
    // asynchronous input takes no dtmf settings and no speech.
    assert_eq!(problems_of(json!([{"action": "input", "type": ["dtmf"], "mode": "asynchronous", "dtmf": {"maxDigits": 2}}])), vec!["ncco[0].dtmf"]);
    assert_eq!(problems_of(json!([{"action": "input", "type": ["speech"], "mode": "asynchronous"}])), vec!["ncco[0].mode"]);
    // record.channels needs split.
    assert_eq!(problems_of(json!([{"action": "record", "channels": 2}])), vec!["ncco[0].channels"]);
    // mute is not combined with canSpeak.
    assert_eq!(problems_of(json!([{"action": "conversation", "name": "r", "mute": true, "canSpeak": ["a"]}])), vec!["ncco[0].mute"]);
    // connect: from xor randomFromNumber.
    assert_eq!(problems_of(json!([{"action": "connect", "endpoint": [{"type": "phone", "number": "447700900000"}], "from": "447700900001", "randomFromNumber": true}])),
        vec!["ncco[0].randomFromNumber"]);
}

#[test]
fn sdk_shapes_are_tolerated() {
    // Node sends level as a string, Python as a number; style may be a numeric string.
    let actions = parse_ok(json!([
        {"action": "talk", "text": "a", "level": "0.5", "style": "3", "premium": true},
        {"action": "stream", "streamUrl": "https://e.com/a.wav", "level": -0.2},
        {"action": "connect", "endpoint": [{"type": "websocket", "uri": "wss://e.com/s", "content-type": "audio/l16;rate=16000"}],
         "advancedMachineDetection": {"behavior": "hangup", "mode": "detect", "beep_timeout": 60}},
        {"action": "conversation", "name": "r", "musicOnHoldUrl": ["https://e.com/m.mp3"]}
    ]));
    let Action::Talk(t) = &actions[0] else { panic!() };
    assert_eq!((t.level, t.style, t.premium), (0.5, 3, true));
    let Action::Stream(s) = &actions[1] else { panic!() };
    assert_eq!((s.stream_url.as_str(), s.level), ("https://e.com/a.wav", -0.2));
    let Action::Connect(c) = &actions[2] else { panic!() };
    assert_eq!(c.advanced_machine_detection.as_ref().unwrap().mode, "detect");
    let Action::Conversation(conv) = &actions[3] else { panic!() };
    assert_eq!(conv.music_on_hold_url.as_deref(), Some("https://e.com/m.mp3"));
}

#[test]
fn bad_shapes_are_named() {
    assert_eq!(problems_of(json!({"action": "talk"})), vec!["ncco"]);
    assert_eq!(problems_of(json!([])), vec!["ncco"]);
    assert_eq!(problems_of(json!(["talk"])), vec!["ncco[0]"]);
    assert_eq!(problems_of(json!([{"text": "hi"}])), vec!["ncco[0].action"]);
    assert_eq!(problems_of(json!([{"action": "pay"}])), vec!["ncco[0].action"]);
    assert_eq!(problems_of(json!([{"action": "input"}])), vec!["ncco[0].type"]);
    assert_eq!(problems_of(json!([{"action": "input", "type": ["fax"]}])), vec!["ncco[0].type[0]"]);
}

#[test]
fn connect_by_refer_needs_a_sip_endpoint() {
    let refer = |endpoint: Value| json!([{"action": "connect", "method": "refer", "endpoint": [endpoint]}]);
    match &parse_ok(refer(json!({"type": "sip", "uri": "sip:agent@pbx.example.com"})))[0] {
        Action::Connect(c) => assert!(c.refer),
        other => panic!("{other:?}"),
    }
    assert_eq!(problems_of(refer(json!({"type": "phone", "number": "447700900001"}))), vec!["ncco[0].method"]);
    assert_eq!(problems_of(json!([{"action": "connect", "method": "fax", "endpoint": [{"type": "phone", "number": "447700900001"}]}])), vec!["ncco[0].method"]);
}
