//! Applications: the public key that verifies an application's JWTs and its voice webhooks.
//! The request/response shapes follow Vonage's Applications API v2.

pub mod keys;
mod model;
pub mod repo;

pub use model::*;
