//! Accounts: API credentials, the signature secret for signed webhooks, and rate limits.

mod call_rate;
mod rate_limit;
pub mod repo;
mod secrets;

pub use call_rate::CallRateLimiter;
pub use rate_limit::{Bucket, RateLimited, RateLimiter};
pub use secrets::{decoy_hash, hash_secret, verify_secret};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub api_key: String,
    pub api_secret_hash: String,
    pub signature_secret: String,
    pub calls_per_second: i32,
    /// Over the call rate: "reject" (429, as Vonage) or "queue" (dialled at the account's rate).
    pub over_rate: String,
    /// Read when the account was loaded; the ledger (billing::ledger) is the truth.
    pub balance: rust_decimal::Decimal,
    pub credit_limit: rust_decimal::Decimal,
    /// May replace the global rate deck through the API (POST /v1/rates).
    pub rates_admin: bool,
}

/// What `outdial account create` prints: the only time the api_secret is shown.
#[derive(Debug, serde::Serialize)]
pub struct NewAccountCredentials {
    pub account_id: i64,
    pub name: String,
    pub api_key: String,
    pub api_secret: String,
    pub signature_secret: String,
    pub calls_per_second: i32,
    pub over_rate: String,
}
