//! Where a leg goes out on a real network: the trunks routing picks for its number, or the
//! host of its SIP URI; and the per-call SIP options of the INVITE.

use super::leg::Leg;
use crate::carrier::sip::{AutoAnswer, SipCallOptions};
use crate::carrier::{SipTransport, TrunkRoute};
use crate::ncco::Endpoint;
use serde_json::Value;

/// Why a leg has no route: the `failed` event's `detail`, and a line for its history.
pub struct NoRoute {
    pub detail: &'static str,
    pub why: String,
}

impl NoRoute {
    fn new(detail: &'static str, why: impl Into<String>) -> NoRoute {
        NoRoute { detail, why: why.into() }
    }
}

/// The routes of a leg (empty: none serves its number; the carrier says `no_route`).
pub async fn routes(leg: &Leg, to: &Endpoint, options: &crate::calls::SipOptions) -> Result<Vec<TrunkRoute>, NoRoute> {
    use crate::trunks::RoutingError;
    match to {
        Endpoint::Sip { uri, .. } => sip_uri_route(uri, leg.ctx.settings.sip.allow_private_uris).await.map(|r| vec![r]),
        Endpoint::Phone { number, .. } => {
            let key = leg.ctx.settings.sip.credentials_key.as_ref();
            leg.ctx.trunks.routes_for(&leg.ctx.pool, key, leg.row.account_id, number, options.trunk.as_deref()).await.map_err(|e| {
                let detail = match &e {
                    RoutingError::UnknownTrunk(_) => "unknown_trunk",
                    RoutingError::DisabledTrunk(_) => "trunk_disabled",
                    RoutingError::NoKey(_) | RoutingError::Undecryptable(_) => "trunk_credentials_unavailable",
                    RoutingError::Database(_) => "routing_failed",
                };
                NoRoute::new(detail, e.to_string())
            })
        }
        // Websocket, app and vbc endpoints have no SIP route.
        _ => Ok(Vec::new()),
    }
}

/// A SIP endpoint's URI as a route of its own: its host, port and transport. Private and
/// loopback hosts only when `sip.allow_private_uris` is set (the webhooks' SSRF rule).
async fn sip_uri_route(uri: &str, allow_private: bool) -> Result<TrunkRoute, NoRoute> {
    let parsed = SipUri::parse(uri).ok_or_else(|| NoRoute::new("invalid_sip_uri", format!("{uri} is not a sip: URI with a host")))?;
    let not_found = || NoRoute::new("sip_host_not_found", format!("{} does not resolve", parsed.host));
    let addresses: Vec<std::net::SocketAddr> =
        tokio::net::lookup_host((parsed.host.as_str(), parsed.port)).await.map_err(|_| not_found())?.collect();
    let Some(first) = addresses.first() else { return Err(not_found()) };
    if !allow_private && addresses.iter().any(|a| crate::webhooks::address_guard::is_private(a.ip())) {
        let why = format!("{} is a private or loopback address (sip.allow_private_uris is off)", parsed.host);
        return Err(NoRoute::new("sip_host_not_allowed", why));
    }
    Ok(TrunkRoute {
        trunk_id: uuid::Uuid::nil(),
        name: format!("sip:{}", parsed.host),
        host: first.ip().to_string(),
        port: first.port(),
        transport: parsed.transport,
        username: None,
        password: None,
        from_domain: None,
        cps: None,
        max_channels: None,
    })
}

struct SipUri {
    host: String,
    port: u16,
    transport: SipTransport,
}

impl SipUri {
    /// `sip:user@host[:port][;params]` (sips: and TLS are not offered yet).
    fn parse(uri: &str) -> Option<SipUri> {
        let rest = uri.strip_prefix("sip:")?;
        let (address, params) = rest.split_once(';').unwrap_or((rest, ""));
        let host_port = address.rsplit_once('@').map_or(address, |(_, h)| h);
        let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            (host.to_string(), after.strip_prefix(':').map(str::parse).transpose().ok()?.unwrap_or(5060))
        } else {
            match host_port.split_once(':') {
                Some((host, port)) => (host.to_string(), port.parse().ok()?),
                None => (host_port.to_string(), 5060),
            }
        };
        if host.is_empty() {
            return None;
        }
        let transport = if params.split(';').any(|p| p.eq_ignore_ascii_case("transport=tcp")) { SipTransport::Tcp } else { SipTransport::Udp };
        Some(SipUri { host, port, transport })
    }
}

/// The INVITE's options: the call's `sip` extension and a SIP endpoint's headers.
pub fn call_options(options: &crate::calls::SipOptions, to: &Endpoint) -> SipCallOptions {
    let mut call = SipCallOptions {
        display_name: options.display_name.clone(),
        from_user: options.rewrite_from.clone(),
        pai: options.pai.clone(),
        rpi: options.rpi.clone(),
        x_headers: options.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        user_to_user: None,
        auto_answer: options.auto_answer.map(|a| match a {
            crate::calls::AutoAnswer::AnswerMode => AutoAnswer::AnswerMode,
            crate::calls::AutoAnswer::CallInfo => AutoAnswer::CallInfo,
            crate::calls::AutoAnswer::AlertInfo => AutoAnswer::AlertInfo,
            crate::calls::AutoAnswer::AlertInfoDelay0 => AutoAnswer::AlertInfoDelay0,
            crate::calls::AutoAnswer::Intercom => AutoAnswer::Intercom,
        }),
    };
    if let Endpoint::Sip { headers, standard_headers, .. } = to {
        for (key, value) in headers.iter().flatten() {
            call.x_headers.push((key.clone(), text(value)));
        }
        call.user_to_user = standard_headers.as_ref().and_then(|h| h.get("User-to-User")).map(text);
    }
    call
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uris() {
        let u = SipUri::parse("sip:alice@10.0.0.1:5070;transport=tcp").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.transport), ("10.0.0.1", 5070, SipTransport::Tcp));
        let u = SipUri::parse("sip:pbx.example.com").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.transport), ("pbx.example.com", 5060, SipTransport::Udp));
        let u = SipUri::parse("sip:bob@[::1]:5080").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 5080));
        assert!(SipUri::parse("http://x").is_none());
        assert!(SipUri::parse("sip:bob@").is_none());
    }
}
