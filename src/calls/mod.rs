//! Call legs: creating them, listing and reading them.

pub mod control;
mod create;
mod list;
mod model;
pub mod repo;
pub mod sip_messages;
pub mod sip_options;
pub mod writer;

pub use create::{parse_create_call, NewCall, WebhookTarget};
pub use list::{parse_list_query, parse_time, CallFilter, Order};
pub use model::{format_time, CallRow, CallStatus};
pub use sip_options::{parse_sip_options, shown_sip, AutoAnswer, SipOptions, SHOWN_SIP_KEYS};
