//! `POST /v1/calls`: the request body, validated field by field (reference §2.1).

use super::sip_options::{parse_sip_options, user_data_problem, SipOptions};
use crate::applications::Application;
use crate::ncco::sip_rules::is_sip_uri;
use crate::ncco::{self, parse_advanced_machine_detection, parse_endpoint, AdvancedMachineDetection, Endpoint, SIP_URI_RULE};
use crate::validation::{Fields, InvalidParam, Problems};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookTarget {
    pub url: String,
    pub method: String,
}

/// A validated call, ready to store.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub to: Endpoint,
    /// None only with `random_from_number`, until a number is picked.
    pub from: Option<Endpoint>,
    pub random_from_number: bool,
    /// The NCCO as sent (validated); the engine runs it.
    pub ncco: Option<Value>,
    pub answer: Option<WebhookTarget>,
    pub event: Option<WebhookTarget>,
    pub fallback_url: Option<String>,
    pub machine_detection: Option<String>,
    pub advanced_machine_detection: Option<AdvancedMachineDetection>,
    pub length_timer_s: i32,
    pub ringing_timer_s: i32,
    /// The `sip` extension (None when absent or empty).
    pub sip_options: Option<SipOptions>,
    /// Kept with the call, shown by `GET /v1/calls/{uuid}` and sent in its events.
    pub user_data: Option<String>,
}

pub fn parse_create_call(body: &Value, app: &Application) -> Result<NewCall, Vec<InvalidParam>> {
    let mut problems = Problems::default();
    let Some(mut f) = Fields::of(body, "", &mut problems) else { return Err(problems.0) };

    let to = match f.array("to") {
        Some(items) if items.len() == 1 => parse_endpoint(&items[0], "to[0]", f.problems),
        Some(items) if items.is_empty() => {
            f.bad("to", "must contain one endpoint");
            None
        }
        Some(_) => {
            f.bad("to", "must contain exactly one endpoint; place one call per destination");
            None
        }
        None => {
            if !f.has("to") {
                f.missing("to");
            }
            None
        }
    };

    let random_from_number = f.boolean("random_from_number").unwrap_or(false);
    let from = match f.raw("from") {
        Some(_) if random_from_number => {
            f.bad("from", "cannot be given with random_from_number: true");
            None
        }
        // The Python SDK may send a SIP URI as a plain string.
        Some(Value::String(uri)) if uri.starts_with("sip:") || uri.starts_with("sips:") => {
            if is_sip_uri(uri) {
                Some(Endpoint::Sip { uri: uri.clone(), headers: None, standard_headers: None })
            } else {
                f.bad("from", SIP_URI_RULE);
                None
            }
        }
        Some(Value::String(_)) => {
            f.bad("from", "must be an endpoint object such as {\"type\": \"phone\", \"number\": \"447700900001\"} or a SIP URI");
            None
        }
        Some(v) => match parse_endpoint(v, "from", f.problems) {
            Some(ep @ (Endpoint::Phone { .. } | Endpoint::Sip { .. })) => Some(ep),
            Some(_) => {
                f.bad("from.type", "must be phone or sip");
                None
            }
            None => None,
        },
        None if !random_from_number => {
            f.bad("from", "is required unless random_from_number is true");
            None
        }
        None => None,
    };

    let ncco = match f.raw("ncco") {
        Some(v) => ncco::parse_ncco(v, "ncco", f.problems).map(|_| v.clone()),
        None => None,
    };
    let answer_url = if f.has("answer_url") { f.url_list("answer_url") } else { None };
    match (f.has("ncco"), f.has("answer_url")) {
        (true, true) => f.bad("answer_url", "give either ncco or answer_url, not both"),
        (false, false) => f.bad("ncco", "one of ncco or answer_url is required"),
        _ => {}
    }
    let answer_method = f.http_method("answer_method").unwrap_or_else(|| "GET".into());
    let answer = answer_url.map(|url| WebhookTarget { url, method: answer_method });

    let event_method = f.http_method("event_method");
    let event = if f.has("event_url") {
        f.url_list("event_url").map(|url| WebhookTarget { url, method: event_method.unwrap_or_else(|| "POST".into()) })
    } else {
        match &app.event_url {
            Some(url) => Some(WebhookTarget { url: url.clone(), method: event_method.unwrap_or_else(|| app.event_method.clone()) }),
            None => {
                f.bad("event_url", "is required: the application has no event_url set");
                None
            }
        }
    };
    let fallback_url = if f.has("fallback_url") { f.url_list("fallback_url") } else { app.fallback_answer_url.clone() };

    let machine_detection = f.one_of("machine_detection", &["continue", "hangup"]);
    let advanced_machine_detection = match f.raw("advanced_machine_detection") {
        Some(v) => parse_advanced_machine_detection(v, "advanced_machine_detection", f.problems),
        None => None,
    };
    let length_timer_s = f.int_in("length_timer", 1, 86400).unwrap_or(super::repo::DEFAULT_LENGTH_TIMER_S.into()) as i32;
    let ringing_timer_s = f.int_in("ringing_timer", 1, 120).unwrap_or(super::repo::DEFAULT_RINGING_TIMER_S.into()) as i32;

    // Outdial extensions (the SDKs never send them).
    let sip_options = match f.raw("sip") {
        Some(v) => parse_sip_options(v, &f.path("sip"), f.problems).filter(|o| !o.is_empty()),
        None => None,
    };
    if f.has("sip") && matches!(to, Some(Endpoint::Websocket { .. } | Endpoint::Vbc { .. } | Endpoint::App { .. })) {
        f.bad("sip", "applies only to calls whose `to` is a phone or sip endpoint");
    }
    let user_data = f.string("user_data").filter(|s| match user_data_problem(s) {
        Some(reason) => {
            f.bad("user_data", reason);
            false
        }
        None => true,
    });

    if !problems.is_empty() {
        return Err(problems.0);
    }
    Ok(NewCall {
        to: to.expect("no problems means `to` parsed"),
        from,
        random_from_number,
        ncco,
        answer,
        event,
        fallback_url,
        machine_detection,
        advanced_machine_detection,
        length_timer_s,
        ringing_timer_s,
        sip_options,
        user_data,
    })
}
