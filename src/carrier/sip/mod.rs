//! The SIP carrier: calls leave through SIP trunks (RFC 3261) chosen by the engine, and calls
//! from trunks to our numbers are offered to it (`inbound`). Knows SIP
//! and nothing else: no SQL, no webhooks. The stack itself sits behind `stack`.

mod call;
mod inbound;
mod line;
pub mod record;
mod rtp;
pub mod sdp;
mod stack;
mod status;
pub mod trace;

use super::{Carrier, DialRequest, LegHandle, Reporter};
use crate::config::SipSettings;
use record::SipFacts;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub use stack::StackError;

/// What every SIP leg of this instance shares.
pub struct SipShared {
    stack: Arc<stack::SipStack>,
    rtp: rtp::RtpPorts,
    limits: crate::carrier::limits::CallLimits<uuid::Uuid>,
    invite_timeout: Duration,
    /// Our host, for Call-Info answer-after URIs.
    user_agent_host: String,
    /// `sip.trusted_proxies`: INVITEs from these are admitted by their X-Outdial-Source.
    trusted_proxies: Vec<std::net::IpAddr>,
}

pub struct SipCarrier {
    shared: Arc<SipShared>,
    /// Calls from trunks, until the engine takes them.
    incoming: std::sync::Mutex<Option<mpsc::UnboundedReceiver<super::IncomingCall>>>,
    /// Our calls' SIP messages, until the engine takes them to store (`sip.record_messages`).
    messages: std::sync::Mutex<Option<mpsc::Receiver<trace::SipMessageRecord>>>,
}

impl SipCarrier {
    /// Listens on `sip.listen` (UDP, and TCP when enabled) and is ready to place calls.
    pub async fn start(settings: &SipSettings) -> Result<SipCarrier, StackError> {
        let listen: SocketAddr = settings.listen.parse().map_err(|_| StackError::Sip(format!("sip.listen {:?} is not ip:port", settings.listen)))?;
        let public = public_address(settings, listen)?;
        let outbound_proxy = outbound_proxy(&settings.outbound_proxy)?;
        let (invites, invite_rx) = mpsc::unbounded_channel();
        let (tracer, messages) = match settings.record_messages {
            true => {
                let (tracer, messages) = trace::Tracer::new();
                (Some(tracer), Some(messages))
            }
            false => (None, None),
        };
        let stack = stack::SipStack::start(stack::StackOptions {
            listen,
            public,
            tcp: settings.tcp,
            user_agent: settings.user_agent.clone(),
            invites,
            tracer,
            outbound_proxy,
        })
        .await?;
        let shared = Arc::new(SipShared {
            stack,
            rtp: rtp::RtpPorts::new(listen.ip(), settings.rtp_port_min, settings.rtp_port_max),
            limits: Default::default(),
            invite_timeout: Duration::from_millis(settings.invite_timeout_ms),
            user_agent_host: public.ip().to_string(),
            trusted_proxies: settings.trusted_proxies.clone(),
        });
        let (offers, incoming) = mpsc::unbounded_channel();
        tokio::spawn(inbound::serve(shared.clone(), invite_rx, offers));
        Ok(SipCarrier { shared, incoming: std::sync::Mutex::new(Some(incoming)), messages: std::sync::Mutex::new(messages) })
    }

    pub fn local_address(&self) -> SocketAddr {
        self.shared.stack.public_address()
    }
}

/// `sip.outbound_proxy`: "" for none, else "host:port" (UDP; the port defaults to 5060).
fn outbound_proxy(text: &str) -> Result<Option<record::Destination>, StackError> {
    let text = text.trim().trim_start_matches("sip:");
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || StackError::Sip(format!("sip.outbound_proxy {text:?} is not host:port"));
    let (host, port) = match text.rsplit_once(':') {
        // An IPv6 literal without a port has colons too: only "]:port" or a single colon is a port.
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => (host, port.parse::<u16>().map_err(|_| bad())?),
        _ => (text, 5060),
    };
    let host = host.trim_matches(|c| c == '[' || c == ']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Some(record::Destination { transport: crate::carrier::SipTransport::Udp, host: host.to_string(), port }))
}

/// `sip.public_address` ("" = the listen address; its port defaults to the listen port).
fn public_address(settings: &SipSettings, listen: SocketAddr) -> Result<SocketAddr, StackError> {
    let text = settings.public_address.trim();
    if text.is_empty() {
        if listen.ip().is_unspecified() {
            return Err(StackError::Sip(format!(
                "sip.listen is {listen}: set sip.public_address (OUTDIAL__SIP__PUBLIC_ADDRESS) to the address trunks reach this instance at"
            )));
        }
        return Ok(listen);
    }
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, listen.port()))
        .map_err(|_| StackError::Sip(format!("sip.public_address {text:?} is not an IP address (with or without :port)")))
}

impl Carrier for SipCarrier {
    fn take_sip_messages(&self) -> Option<mpsc::Receiver<trace::SipMessageRecord>> {
        self.messages.lock().unwrap().take()
    }

    fn dial(&self, request: DialRequest) -> LegHandle {
        let (events_tx, events) = Reporter::channel();
        let (control, control_rx) = mpsc::unbounded_channel();
        let call = call::OutboundCall { line: line::LegLine { shared: self.shared.clone(), events: events_tx, control: control_rx }, request };
        tokio::spawn(call.run());
        LegHandle { events, control }
    }

    fn name(&self) -> &'static str {
        "sip"
    }

    fn plays_audio(&self) -> bool {
        true
    }

    fn signalling_address(&self) -> Option<SocketAddr> {
        Some(self.local_address())
    }

    fn take_incoming(&self) -> Option<mpsc::UnboundedReceiver<super::IncomingCall>> {
        self.incoming.lock().ok()?.take()
    }

    fn live_dialogs(&self) -> Option<usize> {
        Some(self.shared.stack.dialogs.len())
    }

    fn shutdown(&self, wait: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let hangups = self.shared.stack.hang_up_all();
            if tokio::time::timeout(wait, hangups).await.is_err() {
                tracing::warn!("some calls were not hung up before shutdown");
            }
            self.shared.stack.stop();
        })
    }

    fn release(&self, sip: serde_json::Value) -> Pin<Box<dyn Future<Output = Option<String>> + Send>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            let facts: SipFacts = serde_json::from_value(sip).ok()?;
            if let Some(dialog) = &facts.dialog {
                return Some(match shared.stack.bye_recorded(dialog).await {
                    Ok(()) => format!("BYE sent for Call-ID {} (taken over)", dialog.call_id),
                    Err(e) => format!("BYE for Call-ID {} failed: {e}", dialog.call_id),
                });
            }
            let invite = facts.invite.as_ref()?;
            Some(match shared.stack.cancel_recorded(invite).await {
                Ok(code) => format!("CANCEL sent for Call-ID {} (taken over): {code}", facts.call_id.unwrap_or_default()),
                Err(e) => format!("CANCEL for Call-ID {} failed: {e}", facts.call_id.unwrap_or_default()),
            })
        })
    }
}

/// How a phone that takes it answers by itself (an Outdial extension, `sip.auto_answer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoAnswer {
    /// RFC 5373 `Answer-Mode: Auto`.
    AnswerMode,
    /// `Call-Info: <sip:host>;answer-after=0` (Polycom, Yealink, Grandstream…).
    CallInfo,
    /// `Alert-Info: <…>;info=alert-autoanswer`.
    AlertInfo,
    /// The same with `delay=0`.
    AlertInfoDelay0,
    /// `Alert-Info: <…>;info=intercom`.
    Intercom,
}

/// The per-call SIP options the engine passes to the carrier.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SipCallOptions {
    pub display_name: Option<String>,
    /// The From user instead of the call's `from`.
    pub from_user: Option<String>,
    /// P-Asserted-Identity (a URI or digits).
    pub pai: Option<String>,
    /// Remote-Party-ID (a URI or digits).
    pub rpi: Option<String>,
    /// X- headers (names without the prefix), from `sip.headers` and a SIP endpoint's `headers`.
    pub x_headers: Vec<(String, String)>,
    pub user_to_user: Option<String>,
    pub auto_answer: Option<AutoAnswer>,
}

impl SipCallOptions {
    /// The extra headers of the INVITE.
    pub fn headers(&self, our_host: &str) -> Vec<(String, String)> {
        let as_uri = |value: &str, host: &str| {
            if value.starts_with("sip:") || value.starts_with("sips:") || value.starts_with("tel:") {
                format!("<{value}>")
            } else {
                format!("<sip:{value}@{host}>")
            }
        };
        let mut headers: Vec<(String, String)> = self.x_headers.iter().map(|(k, v)| (format!("X-{k}"), v.clone())).collect();
        if let Some(pai) = &self.pai {
            headers.push(("P-Asserted-Identity".into(), as_uri(pai, our_host)));
        }
        if let Some(rpi) = &self.rpi {
            headers.push(("Remote-Party-ID".into(), format!("{};party=calling;screen=yes;privacy=off", as_uri(rpi, our_host))));
        }
        if let Some(uu) = &self.user_to_user {
            headers.push(("User-to-User".into(), uu.clone()));
        }
        match self.auto_answer {
            Some(AutoAnswer::AnswerMode) => headers.push(("Answer-Mode".into(), "Auto".into())),
            Some(AutoAnswer::CallInfo) => headers.push(("Call-Info".into(), format!("<sip:{our_host}>;answer-after=0"))),
            Some(AutoAnswer::AlertInfo) => headers.push(("Alert-Info".into(), "<http://localhost>;info=alert-autoanswer".into())),
            Some(AutoAnswer::AlertInfoDelay0) => headers.push(("Alert-Info".into(), "<http://localhost>;info=alert-autoanswer;delay=0".into())),
            Some(AutoAnswer::Intercom) => headers.push(("Alert-Info".into(), "<http://localhost>;info=intercom".into())),
            None => {}
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::outbound_proxy;

    #[test]
    fn the_outbound_proxy_setting_reads_host_and_port() {
        let read = |text: &str| outbound_proxy(text).unwrap().map(|d| (d.host, d.port));
        assert_eq!(read(""), None);
        assert_eq!(read("127.0.0.1:5060"), Some(("127.0.0.1".into(), 5060)));
        assert_eq!(read("sip:kamailio:5070"), Some(("kamailio".into(), 5070)));
        assert_eq!(read("kamailio"), Some(("kamailio".into(), 5060)));
        assert_eq!(read("[::1]:5062"), Some(("::1".into(), 5062)));
        assert_eq!(read("::1"), Some(("::1".into(), 5060)));
        assert!(outbound_proxy("kamailio:port").is_err());
        assert!(outbound_proxy(":5060").is_err());
    }
}
