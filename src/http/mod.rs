//! The HTTP surface: routes, and the guarantee that every error is problem JSON.

mod applications;
mod billing;
mod call_reports;
/// The live-calls console: a web page, outside the API and its OpenAPI document.
pub mod console;
mod control;
pub(crate) mod endpoint;
pub(crate) mod calls;
pub mod error;
mod extract;
mod health;
mod history;
mod links;
mod metrics;
mod numbers;
mod reports;
mod trunks;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::{header, StatusCode};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use endpoint::endpoint;
use error::{problem, ApiError, PROBLEM_JSON};

pub const OPENAPI: &str = include_str!("openapi.json");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/health").get(health::health));
    cfg.service(endpoint("/metrics").get(metrics::metrics));
    cfg.service(endpoint("/v1/openapi.json").get(openapi));
    cfg.service(endpoint("/v1/calls").post(calls::create_call).get(calls::list_calls));
    cfg.service(endpoint("/v1/calls/{uuid}").get(calls::get_call).put(control::modify));
    cfg.service(endpoint("/v1/calls/{uuid}/stream").put(control::stream_start).delete(control::stream_stop));
    cfg.service(endpoint("/v1/calls/{uuid}/talk").put(control::talk_start).delete(control::talk_stop));
    cfg.service(endpoint("/v1/calls/{uuid}/dtmf").put(control::dtmf));
    cfg.service(endpoint("/v1/calls/{uuid}/input/dtmf").put(control::subscribe_dtmf).delete(control::unsubscribe_dtmf));
    cfg.service(endpoint("/v1/calls/{uuid}/events").get(history::call_events));
    cfg.service(endpoint("/v1/files/{id}").get(history::recording));
    cfg.service(endpoint("/v1/sandbox/inbound").post(history::inbound_call));
    cfg.service(endpoint("/v1/sandbox/numbers/{number}").put(history::set_number).get(history::get_number).delete(history::delete_number));
    cfg.service(endpoint("/v1/rates").get(billing::export).post(billing::import));
    cfg.service(endpoint("/v1/trunks").get(trunks::list).post(trunks::create));
    cfg.service(endpoint("/v1/trunks/{id}").get(trunks::get).put(trunks::update).delete(trunks::delete));
    cfg.service(endpoint("/v1/routing/lookup").post(billing::lookup));
    cfg.service(endpoint("/v1/reports/calls").get(call_reports::calls_report));
    cfg.service(endpoint("/v2/reports/records").get(reports::records));
    cfg.service(endpoint("/v2/reports").post(reports::create));
    cfg.service(endpoint("/v2/reports/{id}").get(reports::get).delete(reports::cancel));
    cfg.service(endpoint("/v3/media/{id}").get(reports::media));
    cfg.service(endpoint("/account/get-balance").get(billing::balance));
    cfg.service(endpoint("/account/numbers").get(numbers::owned));
    cfg.service(endpoint("/number/search").get(numbers::search));
    cfg.service(endpoint("/number/update").post(numbers::update));
    cfg.service(endpoint("/number/buy").post(numbers::buy));
    cfg.service(endpoint("/number/cancel").post(numbers::cancel));
    cfg.service(endpoint("/v2/applications").post(applications::create).get(applications::list));
    cfg.service(endpoint("/v2/applications/{id}").get(applications::get).put(applications::update).delete(applications::delete));
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(OPENAPI)
}

/// Whether a query string carries U+0000 (`%00`), which no parameter may hold (see
/// `extract::NUL_REFUSED`): startup answers such requests 400 before any handler reads them.
pub fn query_holds_nul(query: &str) -> bool {
    query.as_bytes().windows(3).any(|w| w == b"%00")
}

pub fn nul_refused() -> HttpResponse {
    ApiError::BadRequest(extract::NUL_REFUSED.into()).error_response()
}

pub async fn unknown_route(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound(format!("There is no {} {}; see /v1/openapi.json for the API", req.method(), req.path())).error_response()
}

/// Any error response not already problem JSON (e.g. one produced inside actix) is rewritten
/// as one, so clients never see plain text.
pub fn problem_json_guard<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|res: ServiceResponse<B>| {
        // Our own errors are problem JSON already; /health's 503 is a JSON report worth keeping.
        let is_json = res.headers().get(header::CONTENT_TYPE).is_some_and(|ct| {
            let ct = ct.as_bytes();
            ct.starts_with(PROBLEM_JSON.as_bytes()) || ct.starts_with(b"application/json")
        });
        if is_json {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let status = res.status();
        let detail = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "The request body is too large".to_string(),
            s if s.is_server_error() => "Something went wrong on our side; retry the request".to_string(),
            s => format!("The request could not be handled ({})", s.canonical_reason().unwrap_or("error")),
        };
        let title = status.canonical_reason().unwrap_or("Error");
        let code = title.to_ascii_lowercase().replace(' ', "-");
        let (req, _) = res.into_parts();
        let response: HttpResponse<BoxBody> = problem(status, &code, title, &detail, None);
        Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, response).map_into_right_body()))
    })
}
