//! The HTTP surface: routes, and the guarantee that every error is problem JSON.

mod applications;
mod billing;
mod call_reports;
/// The live-calls console: a web page, outside the API and its OpenAPI document.
pub mod console;
mod control;
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
use error::{problem, ApiError, PROBLEM_JSON};

pub const OPENAPI: &str = include_str!("openapi.json");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/health").route(web::get().to(health::health)).default_service(web::to(method_not_allowed)))
        .service(web::resource("/metrics").route(web::get().to(metrics::metrics)).default_service(web::to(method_not_allowed)))
        .service(web::resource("/v1/openapi.json").route(web::get().to(openapi)).default_service(web::to(method_not_allowed)))
        .service(
            web::resource("/v1/calls")
                .route(web::post().to(calls::create_call))
                .route(web::get().to(calls::list_calls))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/calls/{uuid}")
                .route(web::get().to(calls::get_call))
                .route(web::put().to(control::modify))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/calls/{uuid}/stream")
                .route(web::put().to(control::stream_start))
                .route(web::delete().to(control::stream_stop))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/calls/{uuid}/talk")
                .route(web::put().to(control::talk_start))
                .route(web::delete().to(control::talk_stop))
                .default_service(web::to(method_not_allowed)),
        )
        .service(web::resource("/v1/calls/{uuid}/dtmf").route(web::put().to(control::dtmf)).default_service(web::to(method_not_allowed)))
        .service(
            web::resource("/v1/calls/{uuid}/input/dtmf")
                .route(web::put().to(control::subscribe_dtmf))
                .route(web::delete().to(control::unsubscribe_dtmf))
                .default_service(web::to(method_not_allowed)),
        )
        .service(web::resource("/v1/calls/{uuid}/events").route(web::get().to(history::call_events)).default_service(web::to(method_not_allowed)))
        .service(web::resource("/v1/files/{id}").route(web::get().to(history::recording)).default_service(web::to(method_not_allowed)))
        .service(web::resource("/v1/sandbox/inbound").route(web::post().to(history::inbound_call)).default_service(web::to(method_not_allowed)))
        .service(
            web::resource("/v1/sandbox/numbers/{number}")
                .route(web::put().to(history::set_number))
                .route(web::get().to(history::get_number))
                .route(web::delete().to(history::delete_number))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/rates")
                .route(web::get().to(billing::export))
                .route(web::post().to(billing::import))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/trunks")
                .route(web::get().to(trunks::list))
                .route(web::post().to(trunks::create))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/trunks/{id}")
                .route(web::get().to(trunks::get))
                .route(web::put().to(trunks::update))
                .route(web::delete().to(trunks::delete))
                .default_service(web::to(method_not_allowed)),
        )
        .service(web::resource("/v1/routing/lookup").route(web::post().to(billing::lookup)).default_service(web::to(method_not_allowed)))
        .service(web::resource("/v1/reports/calls").route(web::get().to(call_reports::calls_report)).default_service(web::to(method_not_allowed)))
        .service(web::resource("/v2/reports/records").route(web::get().to(reports::records)).default_service(web::to(method_not_allowed)))
        .service(web::resource("/v2/reports").route(web::post().to(reports::create)).default_service(web::to(method_not_allowed)))
        .service(
            web::resource("/v2/reports/{id}")
                .route(web::get().to(reports::get))
                .route(web::delete().to(reports::cancel))
                .default_service(web::to(method_not_allowed)),
        )
        .service(web::resource("/v3/media/{id}").route(web::get().to(reports::media)).default_service(web::to(method_not_allowed)))
        .service(web::resource("/account/get-balance").route(web::get().to(billing::balance)).default_service(web::to(method_not_allowed)))
        .service(web::resource("/account/numbers").route(web::get().to(numbers::owned)).default_service(web::to(method_not_allowed)))
        .service(web::resource("/number/search").route(web::get().to(numbers::search)).default_service(web::to(method_not_allowed)))
        .service(web::resource("/number/update").route(web::post().to(numbers::update)).default_service(web::to(method_not_allowed)))
        .service(web::resource("/number/buy").route(web::post().to(numbers::buy)).default_service(web::to(method_not_allowed)))
        .service(web::resource("/number/cancel").route(web::post().to(numbers::cancel)).default_service(web::to(method_not_allowed)))
        .service(
            web::resource("/v2/applications")
                .route(web::post().to(applications::create))
                .route(web::get().to(applications::list))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v2/applications/{id}")
                .route(web::get().to(applications::get))
                .route(web::put().to(applications::update))
                .route(web::delete().to(applications::delete))
                .default_service(web::to(method_not_allowed)),
        );
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(OPENAPI)
}

/// The methods each path takes, as `Allow` header values, read from the OpenAPI document (a
/// test keeps it equal to the routes above, so the two cannot disagree).
static ALLOWED: std::sync::LazyLock<std::collections::HashMap<String, String>> = std::sync::LazyLock::new(|| {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    paths
        .into_iter()
        .map(|(path, item)| {
            let methods: Vec<String> = ["get", "post", "put", "delete", "patch"].iter().filter(|m| item.get(**m).is_some()).map(|m| m.to_uppercase()).collect();
            (path, methods.join(", "))
        })
        .collect()
});

/// 405, with the `Allow` header RFC 9110 asks for.
async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let mut response = ApiError::MethodNotAllowed(format!("{} is not supported on {}", req.method(), req.path())).error_response();
    let allow = req.match_pattern().and_then(|pattern| ALLOWED.get(&pattern)).and_then(|a| header::HeaderValue::from_str(a).ok());
    if let Some(allow) = allow {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
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
