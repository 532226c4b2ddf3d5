//! Customer webhooks: an HTTP client that refuses private addresses, signing, and the outbox
//! dispatcher. Knows nothing of calls: it delivers whatever the outbox holds.

mod client;
pub mod dispatcher;
pub mod signing;

pub use client::{Outbound, WebhookClient, WebhookError, WebhookResponse};
