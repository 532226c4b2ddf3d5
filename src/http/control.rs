//! Modifying live calls: `PUT /v1/calls/{uuid}` and its media, DTMF and subscription routes.
//! Each answers once the command is stored; the leg's owner applies it, wherever it runs.

use super::calls::parse_call_uuid;
use super::error::ApiError;
use super::extract::{json_body, AppCaller};
use crate::accounts::Bucket;
use crate::calls::control::{self, Command};
use crate::calls::repo::{self, CommandOutcome};
use crate::startup::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use uuid::Uuid;

async fn send(state: &AppState, caller: &AppCaller, raw_uuid: &str, command: Command) -> Result<Uuid, ApiError> {
    send_for_account(state, caller.account_id(), raw_uuid, command).await
}

/// Stores `command` for the account's call, as `PUT /v1/calls/{uuid}` does (the console's hang
/// up and mute go through here too).
pub(super) async fn send_for_account(state: &AppState, account_id: i64, raw_uuid: &str, command: Command) -> Result<Uuid, ApiError> {
    state.rate_limit(account_id, Bucket::OtherRequests, state.settings.limits.other_requests_per_second)?;
    let uuid = parse_call_uuid(raw_uuid)?;
    match repo::send_command(&state.pool, account_id, uuid, &command).await? {
        CommandOutcome::Accepted => Ok(uuid),
        CommandOutcome::NoSuchCall => Err(ApiError::NotFound(format!("Call {uuid} does not exist"))),
        // Vonage answers 400 for a call that cannot take the action in its state.
        CommandOutcome::WrongState(status) if repo::ENDED_STATUSES.contains(&status.as_str()) => {
            Err(ApiError::BadRequest(format!("Call {uuid} has ended ({status}); it can no longer be modified")))
        }
        CommandOutcome::WrongState(status) => Err(ApiError::BadRequest(format!(
            "Call {uuid} is {status}: {} needs an answered call",
            command.name()
        ))),
    }
}

fn parsed(req: &HttpRequest, body: &[u8], parse: fn(&serde_json::Value) -> Result<Command, Vec<crate::validation::InvalidParam>>) -> Result<Command, ApiError> {
    parse(&json_body(req, body)?).map_err(ApiError::invalid)
}

pub async fn modify(req: HttpRequest, state: web::Data<AppState>, caller: AppCaller, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let command = parsed(&req, &body, control::parse_modify)?;
    send(&state, &caller, &path, command).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn message(text: &str, uuid: Uuid) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "message": text, "uuid": uuid }))
}

pub async fn stream_start(req: HttpRequest, state: web::Data<AppState>, caller: AppCaller, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let command = parsed(&req, &body, control::parse_stream)?;
    Ok(message("Stream started", send(&state, &caller, &path, command).await?))
}

pub async fn stream_stop(state: web::Data<AppState>, caller: AppCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(message("Stream stopped", send(&state, &caller, &path, Command::StreamStop).await?))
}

pub async fn talk_start(req: HttpRequest, state: web::Data<AppState>, caller: AppCaller, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let command = parsed(&req, &body, control::parse_talk)?;
    Ok(message("Talk started", send(&state, &caller, &path, command).await?))
}

pub async fn talk_stop(state: web::Data<AppState>, caller: AppCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(message("Talk stopped", send(&state, &caller, &path, Command::TalkStop).await?))
}

pub async fn dtmf(req: HttpRequest, state: web::Data<AppState>, caller: AppCaller, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let command = parsed(&req, &body, control::parse_dtmf)?;
    Ok(message("DTMF sent", send(&state, &caller, &path, command).await?))
}

pub async fn subscribe_dtmf(req: HttpRequest, state: web::Data<AppState>, caller: AppCaller, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let command = parsed(&req, &body, control::parse_dtmf_subscription)?;
    send(&state, &caller, &path, command).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn unsubscribe_dtmf(state: web::Data<AppState>, caller: AppCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    send(&state, &caller, &path, Command::UnsubscribeDtmf).await?;
    Ok(HttpResponse::NoContent().finish())
}
