//! `GET /v1/reports/calls`: grouped totals as JSON, or with `Accept: text/csv` the CDR of every
//! leg in the window, streamed.

use super::error::ApiError;
use super::extract::ReportCaller;
use crate::accounts::Bucket;
use crate::billing::CURRENCY;
use crate::calls::{format_time, parse_time};
use crate::history::report::{self, GroupBy, Totals, GROUP_BY_NAMES};
use crate::history::{cdr, Window};
use crate::startup::AppState;
use crate::validation::Problems;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::TryStreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;

fn wants_csv(req: &HttpRequest) -> bool {
    req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("text/csv"))
}

fn totals_json(t: &Totals) -> Value {
    json!({
        "count": t.calls,
        "answered": t.answered,
        "billed_seconds": t.billed_s,
        "duration_seconds": t.duration_s,
        "total_price": format!("{:.8}", t.price),
        "average_duration": t.average_duration().map(|d| (d * 100.0).round() / 100.0),
    })
}

pub async fn calls_report(req: HttpRequest, state: web::Data<AppState>, caller: ReportCaller) -> Result<HttpResponse, ApiError> {
    state.rate_limit(caller.0, Bucket::OtherRequests, state.settings.limits.other_requests_per_second)?;
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("The query string cannot be read: {e}")))?
        .into_inner();
    let mut problems = Problems::default();
    let mut time = |key: &str| match query.get(key).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => {
            problems.add(key, "is required: an ISO-8601 date-time such as 2026-10-01T00:00:00Z");
            None
        }
        Some(raw) => parse_time(raw).or_else(|| {
            problems.add(key, "must be an ISO-8601 date-time such as 2026-10-01T00:00:00Z");
            None
        }),
    };
    let (start, end) = (time("date_start"), time("date_end"));
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            problems.add("date_end", "must not be before date_start");
        }
    }
    let group_by = match query.get("group_by").map(String::as_str) {
        None => Some(GroupBy::Day),
        Some(raw) => GroupBy::parse(raw).or_else(|| {
            problems.add("group_by", format!("must be one of {}", GROUP_BY_NAMES.join(", ")));
            None
        }),
    };
    problems.into_result(()).map_err(ApiError::invalid)?;
    let window = Window { start, end };
    let (start, end) = (start.expect("checked"), end.expect("checked"));

    if wants_csv(&req) {
        let rows = cdr::export(&state.pool, caller.0, window).await?;
        let name = format!("calls-{}-{}.csv", start.format("%Y%m%dT%H%M%SZ"), end.format("%Y%m%dT%H%M%SZ"));
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")))
            .streaming(rows.map_err(|e| {
                tracing::warn!(error = %e, "CDR export stopped mid-stream");
                actix_web::error::ErrorInternalServerError("the export stopped")
            })));
    }

    let group_by = group_by.expect("checked");
    let groups = report::summarise(&state.pool, caller.0, window, group_by).await?;
    let mut total = Totals::default();
    for g in &groups {
        total.add(g);
    }
    let rows: Vec<Value> = groups
        .iter()
        .map(|g| {
            let mut row = totals_json(g);
            row["key"] = json!(g.key);
            row
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "date_start": format_time(start),
        "date_end": format_time(end),
        "group_by": GROUP_BY_NAMES[group_by as usize],
        "currency": CURRENCY,
        "groups": rows,
        "totals": totals_json(&total),
    })))
}
