//! /v1/calls handlers: thin, the work is in `calls`.

use super::error::ApiError;
use super::extract::{base_url, json_body, AppCaller};
use super::links::page_links;
use crate::accounts::Bucket;
use crate::calls::{self, repo::CreateOutcome, repo::IdempotencyKey, CallFilter};
use crate::ncco::Endpoint;
use crate::startup::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use std::collections::HashMap;
use uuid::Uuid;

const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

pub async fn create_call(req: HttpRequest, state: web::Data<AppState>, caller: AppCaller, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let value = json_body(&req, &body)?;
    let app = &caller.0.application;
    let call = calls::parse_create_call(&value, app).map_err(ApiError::invalid)?;
    let idempotency_key = match req.headers().get("Idempotency-Key") {
        None => None,
        Some(raw) => match raw.to_str() {
            Ok(k) if !k.trim().is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN => Some(k.trim().to_string()),
            _ => return Err(ApiError::BadRequest(format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"))),
        },
    };
    let cps = caller.0.calls_per_second.max(1) as u32;
    let dial_after = if caller.0.queue_over_rate {
        state.call_rate.reserve(caller.account_id(), cps).await?
    } else {
        state.call_rate.take(caller.account_id(), cps).await?.map_err(|limited| ApiError::RateLimited { retry_after: limited.retry_after, what: "call creations" })?;
        std::time::Duration::ZERO
    };
    // Refused before anything is stored: the account must afford the first increment. A retry
    // of a create that succeeded is not a new call: it is replayed below, never refused.
    let retry = match &idempotency_key {
        Some(key) => calls::repo::idempotency_key_used(&state.pool, caller.account_id(), key, state.settings.limits.idempotency_ttl_h).await?,
        None => false,
    };
    let credit = if retry { Ok(()) } else { state.credit.check(&state.pool, caller.account_id(), call.to.address()).await? };
    if let Err(short) = credit {
        return Err(ApiError::LowBalance(format!(
            "The account's free credit ({} {cur}: balance plus credit limit, less what running calls hold) does not cover the first billing increment of this call ({} {cur})",
            short.available.round_dp(8).normalize(),
            short.needed.normalize(),
            cur = crate::billing::CURRENCY
        )));
    }
    let from = match &call.from {
        Some(from) => from.clone(),
        None => Endpoint::Phone { number: state.random_from_number(app.id).await?, dtmf_answer: None, shaken: None, on_answer: None },
    };
    let canonical = value.to_string();
    let idempotency = idempotency_key.as_deref().map(|key| IdempotencyKey {
        key,
        canonical_body: &canonical,
        ttl_hours: state.settings.limits.idempotency_ttl_h,
    });
    match calls::repo::create(&state.pool, &state.call_writer, caller.account_id(), app.id, &call, &from, dial_after, idempotency).await? {
        CreateOutcome::Created(body) => {
            // A worker may dial and the dispatcher may send `started`.
            state.notifier.jobs();
            state.notifier.events();
            Ok(HttpResponse::Created().json(body))
        }
        CreateOutcome::Replayed(body) => Ok(HttpResponse::Created().insert_header(("Idempotent-Replayed", "true")).json(body)),
        CreateOutcome::KeyReused => Err(ApiError::Unprocessable(
            "This Idempotency-Key was already used with a different request body; use a new key for a new call".into(),
        )),
    }
}

pub async fn list_calls(req: HttpRequest, state: web::Data<AppState>, caller: AppCaller) -> Result<HttpResponse, ApiError> {
    state.rate_limit(caller.account_id(), Bucket::OtherRequests, state.settings.limits.other_requests_per_second)?;
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("The query string cannot be read: {e}")))?
        .into_inner();
    let filter: CallFilter = calls::parse_list_query(&query).map_err(ApiError::invalid)?;
    let (rows, total) = calls::repo::list(&state.pool, caller.account_id(), &filter).await?;
    let base = base_url(&req, &state);
    let embedded: Vec<_> = rows.iter().map(|c| c.to_json(&base)).collect();
    let links = page_links(&format!("{base}/v1/calls"), &query, filter.record_index, filter.page_size, total);
    Ok(HttpResponse::Ok().json(json!({
        "count": total,
        "page_size": filter.page_size,
        "record_index": filter.record_index,
        "_links": links,
        "_embedded": { "calls": embedded },
    })))
}

pub fn parse_call_uuid(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(format!("Call {raw} does not exist: a call uuid looks like 63f61863-4a51-4f6b-86e1-46edebcf9356")))
}

pub async fn get_call(req: HttpRequest, state: web::Data<AppState>, caller: AppCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.rate_limit(caller.account_id(), Bucket::OtherRequests, state.settings.limits.other_requests_per_second)?;
    let uuid = parse_call_uuid(&path)?;
    let call = calls::repo::find_for_account(&state.pool, caller.account_id(), uuid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Call {uuid} does not exist")))?;
    Ok(HttpResponse::Ok().json(call.to_json(&base_url(&req, &state))))
}
