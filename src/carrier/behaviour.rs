//! How a simulated callee behaves: by the dialled number's last three digits, or as the sandbox
//! API set it for that number.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answerer {
    Human,
    Machine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Answer,
    Busy,
    Decline,
    OutOfService,
    Unavailable,
    /// Rings until the caller gives up (ringing_timer).
    RingForever,
}

/// Something the callee does some seconds after answering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timed {
    pub after_s: f64,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalleeBehaviour {
    #[serde(default = "default_outcome")]
    pub outcome: Outcome,
    /// Seconds of ringing before the outcome.
    #[serde(default = "default_ring_s")]
    pub ring_s: f64,
    #[serde(default = "default_answerer")]
    pub answered_by: Answerer,
    /// A machine beeps this many seconds after answering.
    #[serde(default)]
    pub beep_after_s: Option<f64>,
    /// DTMF keys the callee presses (each `value` a string of keys), timed from answer.
    #[serde(default)]
    pub dtmf: Vec<Timed>,
    /// Things the callee says, timed from answer.
    #[serde(default)]
    pub speech: Vec<Timed>,
    /// The callee hangs up this many seconds after answering.
    #[serde(default)]
    pub hangup_after_s: Option<f64>,
}

fn default_outcome() -> Outcome {
    Outcome::Answer
}
fn default_ring_s() -> f64 {
    2.0
}
fn default_answerer() -> Answerer {
    Answerer::Human
}

/// The longest time a sandbox behaviour may name: a day of simulated time.
pub const MAX_BEHAVIOUR_S: f64 = 86_400.0;

impl CalleeBehaviour {
    /// Every problem with the times given, as (field, reason).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut times: Vec<(String, f64)> = vec![("ring_s".into(), self.ring_s)];
        times.extend(self.beep_after_s.map(|t| ("beep_after_s".to_string(), t)));
        times.extend(self.hangup_after_s.map(|t| ("hangup_after_s".to_string(), t)));
        for (name, list) in [("dtmf", &self.dtmf), ("speech", &self.speech)] {
            times.extend(list.iter().enumerate().map(|(i, t)| (format!("{name}[{i}].after_s"), t.after_s)));
        }
        let mut problems: Vec<(String, String)> = times
            .into_iter()
            .filter(|(_, t)| !(0.0..=MAX_BEHAVIOUR_S).contains(t))
            .map(|(name, _)| (name, format!("must be between 0 and {MAX_BEHAVIOUR_S} seconds")))
            .collect();
        for (i, press) in self.dtmf.iter().enumerate() {
            if !crate::validation::is_dtmf(&press.value) || press.value.contains('p') {
                problems.push((format!("dtmf[{i}].value"), "may only contain 0-9, * and #".into()));
            }
        }
        problems
    }
}

impl Default for CalleeBehaviour {
    fn default() -> Self {
        CalleeBehaviour {
            outcome: Outcome::Answer,
            ring_s: 2.0,
            answered_by: Answerer::Human,
            beep_after_s: None,
            dtmf: vec![],
            speech: vec![],
            hangup_after_s: None,
        }
    }
}

/// The default table, keyed by the last three digits (like SIP codes); configurable.
#[derive(Debug, Clone, Deserialize)]
pub struct BehaviourTable {
    pub by_suffix: std::collections::HashMap<String, CalleeBehaviour>,
    pub default: CalleeBehaviour,
}

impl BehaviourTable {
    pub fn for_address(&self, address: &str) -> CalleeBehaviour {
        let digits: String = address.chars().filter(char::is_ascii_digit).collect();
        let suffix = &digits[digits.len().saturating_sub(3)..];
        self.by_suffix.get(suffix).cloned().unwrap_or_else(|| self.default.clone())
    }
}
