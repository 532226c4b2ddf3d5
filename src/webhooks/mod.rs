//! Customer webhooks: an HTTP client that refuses private addresses, signing, TLS to customers
//! (also used by websocket endpoints), and the outbox dispatcher. Knows nothing of calls: it
//! delivers whatever the outbox holds.

pub mod address_guard;
mod client;
pub mod dispatcher;
mod failures;
pub mod signing;
pub mod tls;

pub use client::{BodyLimit, Outbound, WebhookClient, WebhookError, WebhookResponse};
