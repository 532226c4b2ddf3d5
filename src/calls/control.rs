//! Live call control: the commands `PUT /v1/calls/{uuid}…` accept, validated, as stored for the
//! engine to apply in order (reference §2.4–2.8).

use crate::ncco::parse_ncco;
use crate::validation::{is_dtmf, Fields, InvalidParam, Problems};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Hangup,
    Mute,
    Unmute,
    Earmuff,
    Unearmuff,
    /// Replace the running NCCO with `ncco`, or with what `url` answers.
    Transfer { ncco: Option<Value>, url: Option<String> },
    StreamStart { url: String, loop_count: u32, level: f64 },
    StreamStop,
    TalkStart { text: String, language: String, style: u32, premium: bool, loop_count: u32, level: f64 },
    TalkStop,
    SendDtmf { digits: String },
    SubscribeDtmf { url: String, method: String },
    UnsubscribeDtmf,
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Hangup => "hangup",
            Command::Mute => "mute",
            Command::Unmute => "unmute",
            Command::Earmuff => "earmuff",
            Command::Unearmuff => "unearmuff",
            Command::Transfer { .. } => "transfer",
            Command::StreamStart { .. } => "stream",
            Command::StreamStop => "stream_stop",
            Command::TalkStart { .. } => "talk",
            Command::TalkStop => "talk_stop",
            Command::SendDtmf { .. } => "dtmf",
            Command::SubscribeDtmf { .. } => "input_dtmf",
            Command::UnsubscribeDtmf => "input_dtmf_stop",
        }
    }

    /// Media into the call and NCCO transfers need an answered leg; hanging up, muting and
    /// subscribing work while it rings too.
    pub fn needs_answer(&self) -> bool {
        matches!(
            self,
            Command::Transfer { .. } | Command::StreamStart { .. } | Command::StreamStop | Command::TalkStart { .. } | Command::TalkStop | Command::SendDtmf { .. }
        )
    }
}

fn finish(problems: Problems, command: Option<Command>) -> Result<Command, Vec<InvalidParam>> {
    match (problems.is_empty(), command) {
        (true, Some(c)) => Ok(c),
        _ => Err(problems.0),
    }
}

/// `PUT /v1/calls/{uuid}`: `{action}` or `{action: "transfer", destination: {type: "ncco", ncco | url}}`.
pub fn parse_modify(body: &Value) -> Result<Command, Vec<InvalidParam>> {
    let mut problems = Problems::default();
    let command = Fields::of(body, "", &mut problems).and_then(|mut f| {
        if !f.has("action") {
            f.missing("action");
            return None;
        }
        let action = f.one_of("action", &["hangup", "mute", "unmute", "earmuff", "unearmuff", "transfer"])?;
        Some(match action.as_str() {
            "hangup" => Command::Hangup,
            "mute" => Command::Mute,
            "unmute" => Command::Unmute,
            "earmuff" => Command::Earmuff,
            "unearmuff" => Command::Unearmuff,
            _ => {
                let Some(destination) = f.object("destination") else {
                    if !f.has("destination") {
                        f.missing("destination");
                    }
                    return None;
                };
                let mut d = Fields::of(destination, "destination", f.problems)?;
                if d.one_of("type", &["ncco"]).is_none() && !d.has("type") {
                    d.missing("type");
                }
                let ncco = d.raw("ncco").cloned();
                if let Some(n) = &ncco {
                    parse_ncco(n, "destination.ncco", d.problems);
                }
                let url = if d.has("url") { d.url_list("url") } else { None };
                match (ncco.is_some(), d.has("url")) {
                    (true, true) => d.bad("url", "give either ncco or url, not both"),
                    (false, false) => d.bad("ncco", "one of ncco or url is required"),
                    _ => {}
                }
                Command::Transfer { ncco, url }
            }
        })
    });
    finish(problems, command)
}

/// `PUT /v1/calls/{uuid}/stream`.
pub fn parse_stream(body: &Value) -> Result<Command, Vec<InvalidParam>> {
    let mut problems = Problems::default();
    let command = Fields::of(body, "", &mut problems).and_then(|mut f| {
        if !f.has("stream_url") {
            f.missing("stream_url");
        }
        let url = f.url_list("stream_url");
        let loop_count = f.int_in("loop", 0, 100).unwrap_or(1) as u32;
        let level = f.number_in("level", -1.0, 1.0).unwrap_or(0.0);
        url.map(|url| Command::StreamStart { url, loop_count, level })
    });
    finish(problems, command)
}

/// `PUT /v1/calls/{uuid}/talk`.
pub fn parse_talk(body: &Value) -> Result<Command, Vec<InvalidParam>> {
    let mut problems = Problems::default();
    let command = Fields::of(body, "", &mut problems).and_then(|mut f| {
        let text = f.required_string("text");
        if text.as_ref().is_some_and(|t| t.chars().count() > 1500) {
            f.bad("text", "must be at most 1500 characters");
        }
        let language = f.string("language").unwrap_or_else(|| "en-US".into());
        let style = f.int_in("style", 0, 100).unwrap_or(0) as u32;
        let premium = f.boolean("premium").unwrap_or(false);
        let _legacy_voice = f.string("voice_name");
        let loop_count = f.int_in("loop", 0, 100).unwrap_or(1) as u32;
        let level = f.number_in("level", -1.0, 1.0).unwrap_or(0.0);
        text.map(|text| Command::TalkStart { text, language, style, premium, loop_count, level })
    });
    finish(problems, command)
}

/// `PUT /v1/calls/{uuid}/dtmf`.
pub fn parse_dtmf(body: &Value) -> Result<Command, Vec<InvalidParam>> {
    let mut problems = Problems::default();
    let command = Fields::of(body, "", &mut problems).and_then(|mut f| {
        let digits = f.required_string("digits")?;
        if !is_dtmf(&digits) {
            f.bad("digits", "may only contain 0-9, *, # and p (a 500 ms pause)");
            return None;
        }
        Some(Command::SendDtmf { digits })
    });
    finish(problems, command)
}

/// `PUT /v1/calls/{uuid}/input/dtmf`.
pub fn parse_dtmf_subscription(body: &Value) -> Result<Command, Vec<InvalidParam>> {
    let mut problems = Problems::default();
    let command = Fields::of(body, "", &mut problems).and_then(|mut f| {
        if !f.has("event_url") {
            f.missing("event_url");
        }
        let url = f.url_list("event_url");
        let method = f.http_method("event_method").unwrap_or_else(|| "POST".into());
        url.map(|url| Command::SubscribeDtmf { url, method })
    });
    finish(problems, command)
}
