//! Calls to our numbers. The carrier offers each call arriving from the network; it is admitted
//! when it comes from a trunk's address, to a number linked to an application, within the
//! trunk's limits; then it is stored as an inbound leg (its job running here) and driven by this
//! instance, which holds the caller's dialog.

use super::leg::{self, LegRow};
use super::EngineCtx;
use crate::calls::repo::CallInsert;
use crate::calls::writer::CallWriter;
use crate::carrier::limits::CallLimits;
use crate::numbers::repo::InboundRoute;
use serde_json::json;
use crate::carrier::{IncomingCall, MediaCommand, TrunkLimit};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub async fn serve(ctx: Arc<EngineCtx>, mut incoming: mpsc::UnboundedReceiver<IncomingCall>, shutdown: CancellationToken) {
    let accounts: Arc<CallLimits<i64>> = Arc::default();
    let writer = CallWriter::spawn(ctx.pool.clone(), &ctx.settings, ctx.hand_offs.clone());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            call = incoming.recv() => match call {
                Some(call) => {
                    tokio::spawn(take(ctx.clone(), accounts.clone(), writer.clone(), call));
                }
                None => return,
            },
        }
    }
    // Shutting down: calls that arrive now are refused, so the caller tries elsewhere.
    while let Some(call) = incoming.recv().await {
        call.admission.refuse(503);
    }
}

/// The number a call is for, as stored: the digits of the Request-URI's user part.
fn number_called(to: &str) -> String {
    crate::trunks::routing::digits(to)
}

async fn take(ctx: Arc<EngineCtx>, accounts: Arc<CallLimits<i64>>, writer: CallWriter, call: IncomingCall) {
    let trunk = match ctx.trunks.by_source(&ctx.pool, call.source).await {
        Ok(Some(trunk)) => trunk,
        Ok(None) => {
            tracing::warn!(source = %call.source, to = %call.to, from = %call.from, call_id = %call.call_id, "INVITE from an address that is no trunk's: refused 403");
            call.admission.refuse(403);
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "inbound call: reading trunks failed: refused 500");
            call.admission.refuse(500);
            return;
        }
    };
    let msisdn = number_called(&call.to);
    let route = match crate::numbers::repo::inbound_route(&ctx.pool, &msisdn).await {
        Ok(Some(route)) => route,
        Ok(None) => {
            tracing::info!(to = %call.to, trunk = %trunk.name, "inbound call to a number not linked to an application: 404");
            call.admission.refuse(404);
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "inbound call: reading numbers failed: refused 500");
            call.admission.refuse(500);
            return;
        }
    };
    let sip = &ctx.settings.sip;
    let some = |n: u32| (n > 0).then_some(n);
    let account_id = route.app.account_id;
    let _account_slot = match accounts.take(account_id, some(sip.inbound_account_cps), some(sip.inbound_account_channels)) {
        Ok(slot) => slot,
        Err(refused) => {
            tracing::info!(account_id, ?refused, "inbound call refused 503: the account is at its inbound limit");
            call.admission.refuse(503);
            return;
        }
    };
    let uuid = Uuid::new_v4();
    let limit = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok());
    let limit = TrunkLimit { trunk_id: trunk.id, cps: limit(trunk.cps), max_channels: limit(trunk.max_channels) };
    let from = call.from.clone();
    let handle = match call.admission.admit(uuid, Some(limit)) {
        Ok(handle) => handle,
        Err(code) => {
            tracing::info!(trunk = %trunk.name, code, "inbound call refused: the trunk is at a limit");
            return;
        }
    };
    // Stored ringing with other calls arriving at the same moment, in one commit (the started
    // and ringing events go to this instance's dispatcher once committed).
    let insert = CallInsert::inbound(uuid, &route.app, &msisdn, &from, None, Some(ctx.instance_id));
    let row = leg_row(&insert, &route, &msisdn, &from);
    if let Err(e) = writer.insert(insert).await {
        tracing::error!(error = %e, "inbound call not stored: refused 500");
        let _ = handle.control.send(MediaCommand::Reject(500));
        return;
    }
    let line = ctx.commands.register_quietly(uuid);
    ctx.live_legs.fetch_add(1, Ordering::Relaxed);
    let _live = crate::metrics::LiveLeg::start();
    leg::drive_with(ctx.clone(), row, None, line, Some(handle)).await;
    ctx.live_legs.fetch_sub(1, Ordering::Relaxed);
}

/// The inbound leg as this instance drives it: what was stored, read back from memory.
fn leg_row(insert: &CallInsert, route: &InboundRoute, to: &str, from: &str) -> LegRow {
    LegRow {
        uuid: insert.uuid(),
        conversation_uuid: insert.conversation_uuid().to_string(),
        account_id: route.app.account_id,
        application_id: route.app.application_id,
        direction: "inbound".into(),
        status: if insert.rung() { "ringing" } else { "started" }.into(),
        to_endpoint: json!({"type": "phone", "number": to}),
        from_endpoint: Some(json!({"type": "phone", "number": from})),
        ncco: None,
        answer_url: route.app.answer_url.clone(),
        answer_method: route.app.answer_method.clone(),
        event_url: route.app.event_url.clone(),
        event_method: route.app.event_method.clone(),
        fallback_url: route.app.fallback_answer_url.clone(),
        machine_detection: None,
        advanced_machine_detection: None,
        length_timer_s: crate::calls::repo::DEFAULT_LENGTH_TIMER_S,
        ringing_timer_s: crate::calls::repo::DEFAULT_RINGING_TIMER_S,
        answered_at: None,
        last_seq: if insert.rung() { 2 } else { 1 },
        signed_callbacks: route.signed_callbacks,
        api_key: route.api_key.clone(),
        signature_secret: route.signature_secret.clone(),
        sandbox_behaviour: None,
        user_data: None,
        sip_options: None,
        sip: None,
    }
}
