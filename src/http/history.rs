//! A call's history (`/v1/calls/{uuid}/events`), recordings (`/v1/files/{id}`) and the sandbox.

use super::calls::parse_call_uuid;
use super::error::ApiError;
use super::extract::{json_body, AppCaller};
use crate::accounts::Bucket;
use crate::carrier::CalleeBehaviour;
use crate::startup::AppState;
use crate::{calls, sandbox};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

pub async fn call_events(state: web::Data<AppState>, caller: AppCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.rate_limit(caller.account_id(), Bucket::OtherRequests, state.settings.limits.other_requests_per_second)?;
    let uuid = parse_call_uuid(&path)?;
    let events = calls::repo::history(&state.pool, caller.account_id(), uuid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Call {uuid} does not exist")))?;
    Ok(HttpResponse::Ok().json(json!({ "uuid": uuid, "count": events.len(), "_embedded": { "events": events } })))
}

pub async fn recording(state: web::Data<AppState>, caller: AppCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::NotFound(format!("File {} does not exist", path.as_str()));
    let id = uuid::Uuid::parse_str(&path).map_err(|_| not_found())?;
    let (content_type, bytes) = calls::repo::recording(&state.pool, caller.0.application.id, id).await?.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().content_type(content_type).body(bytes))
}

fn sandbox_enabled(state: &AppState) -> Result<(), ApiError> {
    if state.settings.carrier.kind == "simulated" {
        Ok(())
    } else {
        Err(ApiError::NotFound("The sandbox exists only with the simulated carrier".into()))
    }
}

fn number(raw: &str) -> Result<String, ApiError> {
    let digits = raw.strip_prefix('+').unwrap_or(raw);
    if crate::validation::is_e164(digits) {
        Ok(digits.to_string())
    } else {
        Err(ApiError::invalid(vec![crate::validation::InvalidParam { name: "number".into(), reason: "must be an E.164 number".into() }]))
    }
}

pub async fn set_number(req: HttpRequest, state: web::Data<AppState>, caller: AppCaller, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    sandbox_enabled(&state)?;
    let number = number(&path)?;
    let value = json_body(&req, &body)?;
    let behaviour: CalleeBehaviour = serde_json::from_value(value).map_err(|e| {
        ApiError::invalid(vec![crate::validation::InvalidParam { name: "body".into(), reason: e.to_string() }])
    })?;
    let problems = behaviour.problems();
    if !problems.is_empty() {
        return Err(ApiError::invalid(
            problems.into_iter().map(|(name, reason)| crate::validation::InvalidParam { name, reason }).collect(),
        ));
    }
    sandbox::set(&state.pool, caller.account_id(), &number, &behaviour).await?;
    Ok(HttpResponse::Ok().json(json!({ "number": number, "behaviour": behaviour, "source": "sandbox", "suffix": null })))
}

/// The behaviour in force, and whose it is (`source`, as routing lookup says it): the
/// number's own (`sandbox`), the configured table's for its last digits (`suffix`), or the
/// table's `default`.
pub async fn get_number(state: web::Data<AppState>, caller: AppCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    sandbox_enabled(&state)?;
    let number = number(&path)?;
    let carrier = &state.settings.carrier;
    let route = crate::billing::routing::route_for(&state.pool, &carrier.kind, &carrier.simulated, caller.account_id(), &number).await?;
    Ok(HttpResponse::Ok().json(json!({ "number": number, "behaviour": route.behaviour, "source": route.source, "suffix": route.suffix })))
}

pub async fn delete_number(state: web::Data<AppState>, caller: AppCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    sandbox_enabled(&state)?;
    let number = number(&path)?;
    if !sandbox::delete(&state.pool, caller.account_id(), &number).await? {
        return Err(ApiError::NotFound(format!("No sandbox behaviour is set for {number}")));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/sandbox/inbound`: a simulated caller (`from`, behaving as `caller` says, like a
/// sandbox number's callee) rings `to`, one of the account's numbers: its application answers
/// as it would a call from a trunk.
pub async fn inbound_call(req: HttpRequest, state: web::Data<AppState>, caller: AppCaller, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    sandbox_enabled(&state)?;
    let value = json_body(&req, &body)?;
    let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str).map(str::to_string);
    let invalid = |name: &str, reason: String| ApiError::invalid(vec![crate::validation::InvalidParam { name: name.into(), reason }]);
    let to = field("to").ok_or_else(|| invalid("to", "is required: one of your numbers, E.164".into()))?;
    let to = number(&to).map_err(|_| invalid("to", "must be an E.164 number".into()))?;
    let from = field("from").ok_or_else(|| invalid("from", "is required: the caller's number".into()))?;
    let behaviour: CalleeBehaviour = match value.get("caller") {
        None => serde_json::from_value(json!({})).expect("the default behaviour"),
        Some(b) => serde_json::from_value(b.clone()).map_err(|e| invalid("caller", e.to_string()))?,
    };
    let problems = behaviour.problems();
    if !problems.is_empty() {
        return Err(ApiError::invalid(
            problems.into_iter().map(|(name, reason)| crate::validation::InvalidParam { name: format!("caller.{name}"), reason }).collect(),
        ));
    }
    let target = crate::numbers::repo::inbound_target(&state.pool, &to).await?.filter(|t| t.account_id == Some(caller.account_id()));
    let application_id = match target {
        None => return Err(ApiError::NotFound(format!("{to} is not one of your numbers (an operator adds it: outdial number add)"))),
        Some(target) => target
            .application_id
            .ok_or_else(|| invalid("to", format!("{to} is not linked to an application: link it with POST /number/update")))?,
    };
    let route = crate::numbers::repo::inbound_route(&state.pool, &to)
        .await?
        .filter(|r| r.app.application_id == application_id)
        .ok_or_else(|| ApiError::NotFound(format!("the application {to} is linked to no longer exists")))?;
    let uuid = uuid::Uuid::new_v4();
    let leg = calls::repo::CallInsert::inbound(uuid, &route.app, &to, &from, Some(serde_json::to_value(&behaviour).unwrap_or_default()), None);
    let conversation_uuid = leg.conversation_uuid().to_string();
    state.call_writer.insert(leg).await?;
    state.notifier.jobs();
    Ok(HttpResponse::Created().json(json!({ "uuid": uuid, "status": "started", "direction": "inbound", "conversation_uuid": conversation_uuid })))
}
