//! `GET /metrics` for Prometheus: only from `metrics.allowed_networks`, and with the bearer
//! `metrics.token` when one is configured.

use super::error::ApiError;
use super::extract::{authorization, client_address};
use crate::startup::AppState;
use actix_web::{web, HttpRequest, HttpResponse};

pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let settings = &state.settings.metrics;
    let client = client_address(&req, &state).to_canonical();
    if !settings.allowed_networks.iter().any(|network| network.contains(&client)) {
        return Err(ApiError::Forbidden(format!(
            "{client} may not read /metrics; add its network to metrics.allowed_networks"
        )));
    }
    if let Some(token) = &settings.token {
        if !authorization(&req, "Bearer").is_some_and(|offered| token.matches(&offered)) {
            return Err(ApiError::Unauthorized {
                detail: "Send Authorization: Bearer <metrics.token> to read /metrics".into(),
                challenge: "Bearer realm=\"outdial-metrics\"",
            });
        }
    }
    let body = crate::metrics::scrape::render(&state.pool).await;
    Ok(HttpResponse::Ok().content_type(crate::metrics::scrape::CONTENT_TYPE).body(body))
}
