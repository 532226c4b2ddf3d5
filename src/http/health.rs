//! `GET /health` for load balancers: 200 while the database answers, 503 when it does not.

use crate::startup::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;

pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let active: Result<(i64,), _> =
        sqlx::query_as("SELECT count(*) FROM call_jobs WHERE state <> 'done'").fetch_one(&state.pool).await;
    let (database, active_calls) = match active {
        Ok((n,)) => ("reachable", Some(n)),
        Err(_) => ("unreachable", None),
    };
    let body = json!({
        "status": if active_calls.is_some() { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started_at.elapsed().as_secs(),
        "database": database,
        "active_calls": active_calls,
    });
    if active_calls.is_some() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
