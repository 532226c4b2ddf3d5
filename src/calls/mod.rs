//! Call legs: creating them, listing and reading them.

pub mod control;
mod create;
mod list;
mod model;
pub mod repo;
pub mod writer;

pub use create::{parse_create_call, NewCall, WebhookTarget};
pub use list::{parse_list_query, parse_time, CallFilter, Order};
pub use model::{format_time, CallRow, CallStatus};
