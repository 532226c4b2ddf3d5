//! What a SIP leg's dialog needs to be ended by another instance: stored with the leg (the
//! engine writes it in the leg's `sip` column), read back after a takeover.

use crate::carrier::SipTransport;
use serde::{Deserialize, Serialize};

/// Where requests of the call go (the trunk or SIP URI host we sent the INVITE to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub transport: SipTransport,
    pub host: String,
    pub port: u16,
}

/// A confirmed dialog (RFC 3261 §12): enough to send its BYE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialogRecord {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    pub from: String,
    pub to: String,
    pub local_cseq: u32,
    pub remote_cseq: u32,
    pub local_contact: Option<String>,
    /// The remote target (the Contact of the 200 OK).
    pub remote_uri: String,
    pub route_set: Vec<String>,
    pub destination: Destination,
    /// We answered the INVITE (an inbound call): our BYE goes From our To.
    #[serde(default)]
    pub server: bool,
}

/// An INVITE still waiting for its final response: enough to CANCEL it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRecord {
    /// The INVITE as sent (headers only).
    pub request: String,
    pub destination: Destination,
}

/// One INVITE attempt of a call, for its history and `GET /v1/calls/{uuid}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub trunk: String,
    /// The final SIP code (None: no final response, or skipped before sending).
    pub code: Option<u16>,
    pub reason: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// The SIP facts of a leg, as stored in its `sip` column. `invite` is set while the INVITE is
/// pending, `dialog` once answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipFacts {
    pub call_id: Option<String>,
    pub trunk: Option<String>,
    pub trunk_id: Option<uuid::Uuid>,
    /// Where the call's SIP requests go (host:port).
    pub remote_address: Option<String>,
    /// Where the far end wants our RTP (from its SDP).
    pub remote_rtp: Option<String>,
    pub codec: Option<String>,
    pub final_code: Option<u16>,
    pub final_reason: Option<String>,
    pub local_rtp: Option<String>,
    /// Audible early media (183 with SDP) before the final response, measured on the audio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_media_ms: Option<u64>,
    pub attempts: Vec<Attempt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invite: Option<InviteRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialog: Option<DialogRecord>,
}
