//! /v2/applications: Vonage's Applications API, as far as voice needs it.

use super::error::ApiError;
use super::extract::{base_url, json_body, AccountCaller};
use crate::applications::{self, keys, ApplicationSpec};
use crate::cache::Changed;
use crate::startup::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use std::collections::HashMap;
use uuid::Uuid;

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(format!("Application {raw} does not exist")))
}

pub async fn create(req: HttpRequest, state: web::Data<AppState>, caller: AccountCaller, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let spec = ApplicationSpec::parse(&json_body(&req, &body)?).map_err(ApiError::invalid)?;
    let (public_pem, private_pem) = match &spec.public_key_pem {
        Some(pem) => (pem.clone(), None),
        None => {
            let pair = web::block(keys::generate).await.map_err(|e| ApiError::Internal(e.to_string()))?;
            (pair.public_pem, Some(pair.private_pem))
        }
    };
    let app = applications::repo::insert(&state.pool, caller.0.id, &spec, &public_pem).await?;
    Ok(HttpResponse::Created().json(app.to_json(&base_url(&req, &state), private_pem.as_deref())))
}

pub async fn get(req: HttpRequest, state: web::Data<AppState>, caller: AccountCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let app = applications::repo::find_for_account(&state.pool, caller.0.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Application {id} does not exist")))?;
    Ok(HttpResponse::Ok().json(app.to_json(&base_url(&req, &state), None)))
}

pub async fn update(req: HttpRequest, state: web::Data<AppState>, caller: AccountCaller, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let spec = ApplicationSpec::parse(&json_body(&req, &body)?).map_err(ApiError::invalid)?;
    let app = applications::repo::update(&state.pool, caller.0.id, id, &spec)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Application {id} does not exist")))?;
    // Other instances hear of it by NOTIFY; this one must not wait for its own.
    state.invalidations.invalidate(Changed::Application(id));
    Ok(HttpResponse::Ok().json(app.to_json(&base_url(&req, &state), None)))
}

pub async fn delete(state: web::Data<AppState>, caller: AccountCaller, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    if !applications::repo::delete(&state.pool, caller.0.id, id).await? {
        return Err(ApiError::NotFound(format!("Application {id} does not exist")));
    }
    state.invalidations.invalidate(Changed::Application(id));
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v2/applications?page_size=&page=` (page is 1-based, as in Vonage's API).
pub async fn list(req: HttpRequest, state: web::Data<AppState>, caller: AccountCaller) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("The query string cannot be read: {e}")))?;
    let mut problems = crate::validation::Problems::default();
    let mut number = |key: &str, min: i64, max: i64, default: i64| match query.get(key).map(|s| s.parse::<i64>()) {
        None => default,
        Some(Ok(n)) if (min..=max).contains(&n) => n,
        Some(_) => {
            problems.add(key, format!("must be a whole number from {min} to {max}"));
            default
        }
    };
    let page_size = number("page_size", 1, 100, 10);
    let page = number("page", 1, i64::from(i32::MAX), 1);
    problems.into_result(()).map_err(ApiError::invalid)?;
    let (apps, total) = applications::repo::page(&state.pool, caller.0.id, page - 1, page_size).await?;
    let base = base_url(&req, &state);
    let total_pages = (total + page_size - 1) / page_size;
    let link = |p: i64| json!({ "href": format!("{base}/v2/applications?page_size={page_size}&page={p}") });
    let mut links = json!({ "self": link(page), "first": link(1), "last": link(total_pages.max(1)) });
    if page > 1 {
        links["prev"] = link(page - 1);
    }
    if page < total_pages {
        links["next"] = link(page + 1);
    }
    Ok(HttpResponse::Ok().json(json!({
        "page_size": page_size,
        "page": page,
        "total_items": total,
        "total_pages": total_pages,
        "_embedded": { "applications": apps.iter().map(|a| a.to_json(&base, None)).collect::<Vec<_>>() },
        "_links": links,
    })))
}
