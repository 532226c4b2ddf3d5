//! Outdial: a self-hosted, Vonage-compatible outbound voice platform.

pub mod accounts;
pub mod applications;
pub mod auth;
pub mod billing;
pub mod cache;
pub mod calls;
pub mod carrier;
pub mod clock;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod engine;
pub mod group_commit;
pub mod history;
pub mod http;
pub mod media;
pub mod ncco;
pub mod notify;
pub mod reports;
pub mod sandbox;
pub mod startup;
pub mod telemetry;
pub mod trunks;
pub mod validation;
pub mod webhooks;
