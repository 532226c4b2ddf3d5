//! `notify`, and posting any event that may answer with an NCCO (input, notify, synchronous
//! connect): two attempts, then two at the fallback URL; a failure continues the NCCO.

use super::Flow;
use crate::engine::answer::{self, Reply, Target};
use crate::engine::leg::{Leg, Step};
use crate::engine::store::Change;
use crate::ncco::Notify;
use serde_json::Value;

pub async fn notify(leg: &mut Leg, notify: &Notify) -> Step<Flow> {
    post_for_ncco(leg, "notify", notify.payload.clone(), Some(notify.event.url.clone()), &notify.event.method).await
}

pub async fn post_for_ncco(leg: &mut Leg, kind: &str, payload: Value, url: Option<String>, method: &str) -> Step<Flow> {
    let Some(url) = url else {
        let event = leg.event_to(kind, payload, None, method, "failed");
        leg.write(Change { events: vec![event], ..Default::default() }).await?;
        return Ok(Flow::Next);
    };
    let signer = leg.signer();
    let fallback = leg.row.fallback_url.clone();
    let (reply, attempts) = answer::fetch(
        &leg.ctx.client,
        Target { url: &url, method },
        fallback.as_deref().map(|f| Target { url: f, method: "GET" }),
        &payload,
        "event",
        signer.as_ref(),
    )
    .await;
    let state = if matches!(reply, Reply::Unreachable) { "failed" } else { "sent_inline" };
    let mut event = leg.event_to(kind, payload, Some(url), method, state);
    event.attempts = attempts;
    leg.write(Change { events: vec![event], ..Default::default() }).await?;
    Ok(match reply {
        Reply::Ncco(ncco) => Flow::Replace(ncco),
        _ => Flow::Next,
    })
}
