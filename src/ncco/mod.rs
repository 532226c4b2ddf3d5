//! NCCO: the JSON call-control script, parsed into typed actions at the API edge.
//! Pure types and validation; no I/O.

mod action;
mod endpoint;
mod parse;
pub mod sip_rules;

pub use action::*;
pub use endpoint::{parse_endpoint, Endpoint, OnAnswer, SIP_URI_RULE};
pub use parse::{parse_advanced_machine_detection, parse_ncco, AdvancedMachineDetection};
