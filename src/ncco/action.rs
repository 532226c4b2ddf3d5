//! The nine NCCO actions and their options, with Vonage's defaults applied.

use super::endpoint::Endpoint;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Ncco(pub Vec<Action>);

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Talk(Talk),
    Stream(Stream),
    Input(Input),
    Record(Record),
    Notify(Notify),
    Wait(Wait),
    Connect(Connect),
    Conversation(Conversation),
    Transfer(Transfer),
}

/// Where an action posts its webhook: `eventUrl` + `eventMethod`, or the call's event_url.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub url: String,
    pub method: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Talk {
    pub text: String,
    pub barge_in: bool,
    /// 0 = until something else happens.
    pub loop_count: u32,
    pub level: f64,
    pub language: String,
    pub style: u32,
    pub premium: bool,
    pub voice_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub stream_url: String,
    pub level: f64,
    pub barge_in: bool,
    pub loop_count: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub dtmf_enabled: bool,
    pub speech_enabled: bool,
    pub dtmf: DtmfSettings,
    pub speech: Option<SpeechSettings>,
    pub asynchronous: bool,
    pub event: Option<Webhook>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DtmfSettings {
    pub time_out_s: u32,
    pub max_digits: u32,
    pub submit_on_hash: bool,
}

impl Default for DtmfSettings {
    fn default() -> Self {
        DtmfSettings { time_out_s: 3, max_digits: 4, submit_on_hash: false }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpeechSettings {
    pub uuid: Vec<String>,
    pub end_on_silence_s: f64,
    pub language: String,
    pub context: Vec<String>,
    pub start_timeout_s: u32,
    pub max_duration_s: u32,
    pub save_audio: bool,
    pub sensitivity: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub format: String,
    pub split: bool,
    pub channels: Option<u32>,
    pub end_on_silence_s: Option<u32>,
    pub end_on_key: Option<char>,
    pub time_out_s: u32,
    pub beep_start: bool,
    pub event: Option<Webhook>,
    pub transcription: Option<Value>,
}

impl Record {
    /// With `endOnSilence` or `endOnKey` the NCCO waits for the recording (voicemail style).
    pub fn is_synchronous(&self) -> bool {
        self.end_on_silence_s.is_some() || self.end_on_key.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    pub payload: Value,
    pub event: Webhook,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    pub timeout_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Connect {
    pub endpoint: Endpoint,
    pub from: Option<String>,
    pub random_from_number: bool,
    pub synchronous_events: bool,
    pub timeout_s: u32,
    pub limit_s: u32,
    pub machine_detection: Option<String>,
    pub advanced_machine_detection: Option<super::AdvancedMachineDetection>,
    pub event: Option<Webhook>,
    pub ringback_tone: Option<String>,
    /// `"method": "refer"` (an Outdial extension, SIP endpoints only): a blind transfer by SIP
    /// REFER instead of a second leg; the call leaves Outdial.
    pub refer: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub name: String,
    pub music_on_hold_url: Option<String>,
    pub start_on_enter: bool,
    pub end_on_exit: bool,
    pub record: bool,
    pub can_speak: Option<Vec<String>>,
    pub can_hear: Option<Vec<String>>,
    pub mute: bool,
    pub event: Option<Webhook>,
    pub transcription: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    pub conversation_id: String,
    pub can_hear: Option<Vec<String>>,
    pub can_speak: Option<Vec<String>>,
    pub mute: bool,
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Talk(_) => "talk",
            Action::Stream(_) => "stream",
            Action::Input(_) => "input",
            Action::Record(_) => "record",
            Action::Notify(_) => "notify",
            Action::Wait(_) => "wait",
            Action::Connect(_) => "connect",
            Action::Conversation(_) => "conversation",
            Action::Transfer(_) => "transfer",
        }
    }

    fn barge_in(&self) -> bool {
        match self {
            Action::Talk(t) => t.barge_in,
            Action::Stream(s) => s.barge_in,
            _ => false,
        }
    }

    /// Actions after which nothing in the same NCCO can run.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Action::Conversation(_) | Action::Transfer(_))
    }
}

impl Ncco {
    /// The NCCO-wide rules of Vonage's reference, as (action index, reason) pairs.
    pub(super) fn ordering_problems(&self) -> Vec<(usize, String)> {
        let mut problems = Vec::new();
        for (i, action) in self.0.iter().enumerate() {
            if action.barge_in() {
                let next = self.0[i + 1..].iter().find(|a| !matches!(a, Action::Talk(_) | Action::Stream(_)));
                if !matches!(next, Some(Action::Input(_))) {
                    problems.push((i, "bargeIn needs an input action after the talk and stream actions that follow it".to_string()));
                }
            }
            if action.is_terminal() && i + 1 < self.0.len() {
                problems.push((
                    i + 1,
                    format!("no action can run after a {} action; move it before ncco[{i}]", action.name()),
                ));
            }
        }
        problems
    }
}
