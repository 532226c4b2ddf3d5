//! JSON → typed NCCO, with every problem reported under its path (`ncco[2].timeOut`).

use super::action::*;
use super::endpoint::parse_endpoint;
use crate::validation::{is_e164, Fields, Problems};
use serde_json::Value;

pub const MAX_ACTIONS: usize = 100;
const MAX_TALK_CHARS: usize = 1500;
const ACTIONS: &str = "talk, stream, input, record, notify, wait, connect, conversation, transfer";

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AdvancedMachineDetection {
    pub behavior: String,
    pub mode: String,
    pub beep_timeout: u32,
}

/// Parses an NCCO found at `path` (e.g. `ncco`). Problems are added to `problems`.
pub fn parse_ncco(value: &Value, path: &str, problems: &mut Problems) -> Option<Ncco> {
    let Some(items) = value.as_array() else {
        problems.add(path, "must be an array of NCCO actions");
        return None;
    };
    if items.is_empty() {
        problems.add(path, "must contain at least one action");
        return None;
    }
    if items.len() > MAX_ACTIONS {
        problems.add(path, format!("may contain at most {MAX_ACTIONS} actions"));
        return None;
    }
    let before = problems.0.len();
    let actions: Vec<Option<Action>> =
        items.iter().enumerate().map(|(i, item)| parse_action(item, &format!("{path}[{i}]"), problems)).collect();
    if problems.0.len() > before {
        return None;
    }
    let ncco = Ncco(actions.into_iter().flatten().collect());
    for (index, reason) in ncco.ordering_problems() {
        problems.add(format!("{path}[{index}]"), reason);
    }
    (problems.0.len() == before).then_some(ncco)
}

fn parse_action(value: &Value, path: &str, problems: &mut Problems) -> Option<Action> {
    let mut f = Fields::of(value, path, problems)?;
    let name = f.required_string("action")?;
    match name.as_str() {
        "talk" => talk(&mut f).map(Action::Talk),
        "stream" => stream(&mut f).map(Action::Stream),
        "input" => input(&mut f).map(Action::Input),
        "record" => record(&mut f).map(Action::Record),
        "notify" => notify(&mut f).map(Action::Notify),
        "wait" => Some(Action::Wait(Wait { timeout_s: f.number_clamped("timeout", 0.1, 7200.0).unwrap_or(10.0) })),
        "connect" => connect(&mut f).map(Action::Connect),
        "conversation" => conversation(&mut f).map(Action::Conversation),
        "transfer" => transfer(&mut f).map(Action::Transfer),
        _ => {
            f.bad("action", format!("unknown action '{name}'; must be one of {ACTIONS}"));
            None
        }
    }
}

/// Collects a field's problems without stopping at the first: each reader records its own.
fn all_ok(f: &Fields, before: usize) -> bool {
    f.problems.0.len() == before
}

fn language(f: &mut Fields, key: &str) -> String {
    match f.string(key) {
        Some(code) if is_language_tag(&code) => code,
        Some(_) => {
            f.bad(key, "must be a BCP-47 language code such as en-US");
            "en-US".into()
        }
        None => "en-US".into(),
    }
}

fn is_language_tag(code: &str) -> bool {
    let mut parts = code.split('-');
    let primary = parts.next().unwrap_or("");
    (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn event_webhook(f: &mut Fields) -> Option<Webhook> {
    let url = f.url_list("eventUrl");
    let method = f.http_method("eventMethod").unwrap_or_else(|| "POST".into());
    url.map(|url| Webhook { url, method })
}

fn uuid_list(f: &mut Fields, key: &str) -> Option<Vec<String>> {
    let items = f.array(key)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item.as_str() {
            Some(s) => out.push(s.to_string()),
            None => f.bad(&format!("{key}[{i}]"), "must be a leg uuid string"),
        }
    }
    Some(out)
}

fn text_without_tags_len(text: &str) -> usize {
    let mut inside = false;
    text.chars()
        .filter(|c| match c {
            '<' => {
                inside = true;
                false
            }
            '>' => {
                inside = false;
                false
            }
            _ => !inside,
        })
        .count()
}

fn talk(f: &mut Fields) -> Option<Talk> {
    let before = f.problems.0.len();
    let text = f.required_string("text");
    if let Some(t) = &text {
        if text_without_tags_len(t) > MAX_TALK_CHARS {
            f.bad("text", format!("must be at most {MAX_TALK_CHARS} characters, not counting SSML tags"));
        }
    }
    let talk = Talk {
        text: text.unwrap_or_default(),
        barge_in: f.boolean("bargeIn").unwrap_or(false),
        loop_count: f.int_in("loop", 0, 100).unwrap_or(1) as u32,
        level: f.number_in("level", -1.0, 1.0).unwrap_or(0.0),
        language: language(f, "language"),
        style: f.int_in("style", 0, 100).unwrap_or(0) as u32,
        premium: f.boolean("premium").unwrap_or(false),
        voice_name: f.string("voiceName"),
    };
    all_ok(f, before).then_some(talk)
}

fn stream(f: &mut Fields) -> Option<Stream> {
    let before = f.problems.0.len();
    if !f.has("streamUrl") {
        f.missing("streamUrl");
    }
    let stream = Stream {
        stream_url: f.url_list("streamUrl").unwrap_or_default(),
        level: f.number_in("level", -1.0, 1.0).unwrap_or(0.0),
        barge_in: f.boolean("bargeIn").unwrap_or(false),
        loop_count: f.int_in("loop", 0, 100).unwrap_or(1) as u32,
    };
    all_ok(f, before).then_some(stream)
}

fn input(f: &mut Fields) -> Option<Input> {
    let before = f.problems.0.len();
    let (mut dtmf_enabled, mut speech_enabled) = (false, false);
    match f.array("type") {
        Some(types) if !types.is_empty() => {
            for (i, t) in types.iter().enumerate() {
                match t.as_str() {
                    Some("dtmf") => dtmf_enabled = true,
                    Some("speech") => speech_enabled = true,
                    _ => f.bad(&format!("type[{i}]"), "must be \"dtmf\" or \"speech\""),
                }
            }
        }
        Some(_) => f.bad("type", "must name at least one of \"dtmf\", \"speech\""),
        None if !f.has("type") => f.bad("type", "is required: [\"dtmf\"], [\"speech\"] or [\"dtmf\", \"speech\"]"),
        None => {}
    }
    let asynchronous = f.one_of("mode", &["synchronous", "asynchronous"]).is_some_and(|m| m == "asynchronous");
    let mut dtmf = DtmfSettings::default();
    if let Some(obj) = f.object("dtmf") {
        if asynchronous {
            f.bad("dtmf", "must not be given with mode asynchronous");
        }
        let path = f.path("dtmf");
        if let Some(mut d) = Fields::of(obj, &path, f.problems) {
            dtmf.time_out_s = d.int_in("timeOut", 0, 10).unwrap_or(3) as u32;
            dtmf.max_digits = d.int_in("maxDigits", 1, 20).unwrap_or(4) as u32;
            dtmf.submit_on_hash = d.boolean("submitOnHash").unwrap_or(false);
        }
    }
    if asynchronous && speech_enabled {
        f.bad("mode", "asynchronous input supports dtmf only");
    }
    let speech = match f.object("speech") {
        Some(obj) => {
            let path = f.path("speech");
            Fields::of(obj, &path, f.problems).map(|mut s| SpeechSettings {
                uuid: uuid_list(&mut s, "uuid").unwrap_or_default(),
                end_on_silence_s: s.number_in("endOnSilence", 0.4, 10.0).unwrap_or(2.0),
                language: language(&mut s, "language"),
                context: uuid_list(&mut s, "context").unwrap_or_default(),
                start_timeout_s: s.int_in("startTimeout", 1, 60).unwrap_or(10) as u32,
                max_duration_s: s.int_in("maxDuration", 1, 60).unwrap_or(60) as u32,
                save_audio: s.boolean("saveAudio").unwrap_or(false),
                sensitivity: s.int_in("sensitivity", 0, 100).unwrap_or(90) as u32,
            })
        }
        None if speech_enabled => Some(SpeechSettings {
            uuid: vec![],
            end_on_silence_s: 2.0,
            language: "en-US".into(),
            context: vec![],
            start_timeout_s: 10,
            max_duration_s: 60,
            save_audio: false,
            sensitivity: 90,
        }),
        None => None,
    };
    let input = Input { dtmf_enabled, speech_enabled, dtmf, speech, asynchronous, event: event_webhook(f) };
    all_ok(f, before).then_some(input)
}

fn record(f: &mut Fields) -> Option<Record> {
    let before = f.problems.0.len();
    let split = match f.string("split") {
        Some(s) if s == "conversation" => true,
        Some(_) => {
            f.bad("split", "must be \"conversation\"");
            false
        }
        None => false,
    };
    let channels = f.int_in("channels", 1, 32).map(|n| n as u32);
    if channels.is_some() && !split {
        f.bad("channels", "needs split: \"conversation\"");
    }
    let end_on_key = f.string("endOnKey").and_then(|k| {
        let mut chars = k.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#' => Some(c),
            _ => {
                f.bad("endOnKey", "must be one key: 0-9, * or #");
                None
            }
        }
    });
    let default_format = if channels.unwrap_or(1) > 2 { "wav" } else { "mp3" };
    let record = Record {
        format: f.one_of("format", &["mp3", "wav", "ogg"]).unwrap_or_else(|| default_format.into()),
        split,
        channels,
        end_on_silence_s: f.int_in("endOnSilence", 3, 10).map(|n| n as u32),
        end_on_key,
        time_out_s: f.int_in("timeOut", 3, 7200).unwrap_or(7200) as u32,
        beep_start: f.boolean("beepStart").unwrap_or(false),
        event: event_webhook(f),
        transcription: f.object("transcription").cloned(),
    };
    all_ok(f, before).then_some(record)
}

fn notify(f: &mut Fields) -> Option<Notify> {
    let before = f.problems.0.len();
    let payload = match f.raw("payload") {
        Some(_) => f.object("payload").cloned(),
        None => {
            f.missing("payload");
            None
        }
    };
    if !f.has("eventUrl") {
        f.missing("eventUrl");
    }
    let event = event_webhook(f);
    if !all_ok(f, before) {
        return None;
    }
    Some(Notify { payload: payload?, event: event? })
}

fn connect(f: &mut Fields) -> Option<Connect> {
    let before = f.problems.0.len();
    let endpoint = match f.array("endpoint") {
        Some(items) if items.len() == 1 => {
            let path = format!("{}[0]", f.path("endpoint"));
            parse_endpoint(&items[0], &path, f.problems)
        }
        Some(_) => {
            f.bad("endpoint", "must hold exactly one endpoint");
            None
        }
        None => {
            if !f.has("endpoint") {
                f.missing("endpoint");
            }
            None
        }
    };
    let from = f.string("from").filter(|n| {
        let ok = is_e164(n);
        if !ok {
            f.bad("from", "must be an E.164 number: 7 to 15 digits, no leading 0");
        }
        ok
    });
    let random_from_number = f.boolean("randomFromNumber").unwrap_or(false);
    if from.is_some() && random_from_number {
        f.bad("randomFromNumber", "cannot be true when from is given");
    }
    let synchronous_events = match f.string("eventType") {
        Some(t) if t == "synchronous" => true,
        Some(_) => {
            f.bad("eventType", "must be \"synchronous\" when given");
            false
        }
        None => false,
    };
    let amd = match f.raw("advancedMachineDetection") {
        Some(v) => parse_advanced_machine_detection(v, &f.path("advancedMachineDetection"), f.problems),
        None => None,
    };
    let refer = f.one_of("method", &["invite", "refer"]).is_some_and(|m| m == "refer");
    if refer && !matches!(endpoint, Some(super::Endpoint::Sip { .. })) {
        f.bad("method", "\"refer\" transfers to a sip endpoint only");
    }
    let connect = Connect {
        endpoint: endpoint.clone().unwrap_or(super::Endpoint::App { user: String::new() }),
        from: from.map(|n| n.trim_start_matches('+').to_string()),
        random_from_number,
        synchronous_events,
        timeout_s: f.int_in("timeout", 3, 7200).unwrap_or(60) as u32,
        limit_s: f.int_in("limit", 1, 7200).unwrap_or(7200) as u32,
        machine_detection: f.one_of("machineDetection", &["continue", "hangup"]),
        advanced_machine_detection: amd,
        event: event_webhook(f),
        ringback_tone: if f.has("ringbackTone") { f.url_list("ringbackTone") } else { None },
        refer,
    };
    (all_ok(f, before) && endpoint.is_some()).then_some(connect)
}

fn conversation(f: &mut Fields) -> Option<Conversation> {
    let before = f.problems.0.len();
    let can_speak = uuid_list(f, "canSpeak");
    let mute = f.boolean("mute").unwrap_or(false);
    if mute && can_speak.is_some() {
        f.bad("mute", "cannot be combined with canSpeak");
    }
    let conversation = Conversation {
        name: f.required_string("name").unwrap_or_default(),
        music_on_hold_url: if f.has("musicOnHoldUrl") { f.url_list("musicOnHoldUrl") } else { None },
        start_on_enter: f.boolean("startOnEnter").unwrap_or(true),
        end_on_exit: f.boolean("endOnExit").unwrap_or(false),
        record: f.boolean("record").unwrap_or(false),
        can_speak,
        can_hear: uuid_list(f, "canHear"),
        mute,
        event: event_webhook(f),
        transcription: f.object("transcription").cloned(),
    };
    if conversation.transcription.is_some() && !conversation.record {
        f.bad("transcription", "needs record: true");
    }
    all_ok(f, before).then_some(conversation)
}

fn transfer(f: &mut Fields) -> Option<Transfer> {
    let before = f.problems.0.len();
    let can_speak = uuid_list(f, "canSpeak");
    let mute = f.boolean("mute").unwrap_or(false);
    if mute && can_speak.is_some() {
        f.bad("mute", "cannot be combined with canSpeak");
    }
    let transfer = Transfer {
        conversation_id: f.required_string("conversationId").unwrap_or_default(),
        can_hear: uuid_list(f, "canHear"),
        can_speak,
        mute,
    };
    all_ok(f, before).then_some(transfer)
}

/// `advanced_machine_detection` (create call) / `advancedMachineDetection` (connect).
pub fn parse_advanced_machine_detection(
    value: &Value,
    path: &str,
    problems: &mut Problems,
) -> Option<AdvancedMachineDetection> {
    let mut f = Fields::of(value, path, problems)?;
    let before = f.problems.0.len();
    let amd = AdvancedMachineDetection {
        behavior: f.one_of("behavior", &["continue", "hangup"]).unwrap_or_else(|| "continue".into()),
        mode: f.one_of("mode", &["default", "detect", "detect_beep"]).unwrap_or_else(|| "detect".into()),
        beep_timeout: f.int_in("beep_timeout", 45, 120).unwrap_or(45) as u32,
    };
    all_ok(&f, before).then_some(amd)
}
