//! A call leg as stored, and as the REST API shows it (reference §2.3).

use super::sip_options::shown_sip;
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

pub const STATUSES: [&str; 11] =
    ["started", "ringing", "answered", "machine", "completed", "busy", "cancelled", "failed", "rejected", "timeout", "unanswered"];

pub struct CallStatus;

impl CallStatus {
    pub fn is_known(s: &str) -> bool {
        STATUSES.contains(&s)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CallRow {
    pub uuid: Uuid,
    pub conversation_uuid: String,
    pub account_id: i64,
    pub application_id: Uuid,
    pub direction: String,
    pub status: String,
    pub to_endpoint: Value,
    pub from_endpoint: Option<Value>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub duration_s: Option<i32>,
    pub rate: Option<Decimal>,
    pub price: Option<Decimal>,
    pub network: Option<String>,
    pub created_at: DateTime<Utc>,
    pub user_data: Option<String>,
    /// `calls.sip` as stored (facts and dialog); read for one call only, absent from lists.
    #[sqlx(default)]
    pub sip: Option<Value>,
}

/// How a leg shows its status: a finished leg by how it ended (`busy`, `timeout`, …, or
/// `completed` when it was answered), though its stored status reads `completed` after most
/// endings; a live leg by its status. `GET /v1/calls?status=` filters on the same.
pub const SHOWN_STATUS: &str = "COALESCE(ending, status)";

pub const CALL_COLUMNS: &str = "uuid, conversation_uuid, account_id, application_id, direction, COALESCE(ending, status) AS status, \
     to_endpoint, from_endpoint, start_time, end_time, duration_s, rate, price, network, created_at, user_data";

/// ISO-8601 with milliseconds and `Z`, as the live API shows times.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl CallRow {
    pub fn to_json(&self, base_url: &str) -> Value {
        let mut call = json!({
            "_links": { "self": { "href": format!("{base_url}/v1/calls/{}", self.uuid) } },
            "uuid": self.uuid,
            "conversation_uuid": self.conversation_uuid,
            "to": self.to_endpoint,
            "from": self.from_endpoint,
            "status": self.status,
            "direction": self.direction,
        });
        let extra = [
            ("rate", self.rate.map(|r| format!("{:.8}", r))),
            ("price", self.price.map(|p| format!("{:.8}", p))),
            ("duration", self.duration_s.map(|d| d.to_string())),
            ("start_time", self.start_time.map(format_time)),
            ("end_time", self.end_time.map(format_time)),
            ("network", self.network.clone()),
            ("user_data", self.user_data.clone()),
        ];
        for (key, value) in extra {
            if let Some(v) = value {
                call[key] = Value::String(v);
            }
        }
        // Only the facts meant for users: the dialog the engine keeps beside them stays inside.
        if let Some(sip) = self.sip.as_ref().and_then(shown_sip) {
            call["sip"] = sip;
        }
        call
    }
}
