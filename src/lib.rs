//! Outdial: a self-hosted, Vonage-compatible outbound voice platform.

pub mod accounts;
pub mod applications;
pub mod auth;
pub mod calls;
pub mod cli;
pub mod config;
pub mod db;
pub mod http;
pub mod ncco;
pub mod startup;
pub mod telemetry;
pub mod validation;
