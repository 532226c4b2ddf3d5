//! Calls to our numbers. The carrier offers each call arriving from the network; it is admitted
//! when it comes from a trunk's address, to a number linked to an application, within the
//! trunk's limits; then it is stored as an inbound leg (its job running here) and driven by this
//! instance, which holds the caller's dialog.

use super::leg::{self, LegRow};
use super::EngineCtx;
use crate::carrier::limits::CallLimits;
use crate::carrier::{IncomingCall, MediaCommand, TrunkLimit};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub async fn serve(ctx: Arc<EngineCtx>, mut incoming: mpsc::UnboundedReceiver<IncomingCall>, shutdown: CancellationToken) {
    let accounts: Arc<CallLimits<i64>> = Arc::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            call = incoming.recv() => match call {
                Some(call) => {
                    tokio::spawn(take(ctx.clone(), accounts.clone(), call));
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

async fn take(ctx: Arc<EngineCtx>, accounts: Arc<CallLimits<i64>>, call: IncomingCall) {
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
    let target = crate::numbers::repo::inbound_target(&ctx.pool, &msisdn).await;
    let (account_id, application_id) = match target.map(|t| t.and_then(|t| Some((t.account_id?, t.application_id?)))) {
        Ok(Some(target)) => target,
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
    let row = match store(&ctx, uuid, &msisdn, &from, application_id).await {
        Ok(row) => row,
        Err(e) => {
            tracing::error!(error = %e, "inbound call not stored: refused 500");
            let _ = handle.control.send(MediaCommand::Reject(500));
            return;
        }
    };
    ctx.wake_dispatchers();
    let line = ctx.commands.register_quietly(uuid);
    ctx.live_legs.fetch_add(1, Ordering::Relaxed);
    leg::drive_with(ctx.clone(), row, None, line, Some(handle)).await;
    ctx.live_legs.fetch_sub(1, Ordering::Relaxed);
}

/// Stores the inbound leg with its `started` event and its job, running here; returns it as a
/// leg to drive.
async fn store(ctx: &EngineCtx, uuid: Uuid, to: &str, from: &str, application_id: Uuid) -> Result<LegRow, sqlx::Error> {
    let caller = crate::calls::repo::InboundCaller { to, from, behaviour: None };
    crate::calls::repo::insert_inbound(&ctx.pool, uuid, application_id, &caller, Some(ctx.instance_id)).await?;
    sqlx::query_as(&format!("SELECT {} FROM calls c {} WHERE c.uuid = $1", leg::LEG_COLUMNS, leg::LEG_JOINS))
        .bind(uuid)
        .fetch_one(&ctx.pool)
        .await
}
