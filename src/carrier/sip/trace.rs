//! A compact record of the SIP messages of our calls (method or status, direction, time), for
//! a call's SIP ladder. The stack's inspector sees every message sent and received; each one
//! of a call's dialog (not OPTIONS or REGISTER) becomes a small record handed on through a
//! bounded channel. Never blocks the SIP path: when whoever stores them lags, records are
//! dropped (and counted).

use rsipstack::sip::{prelude::HeadersExt, SipMessage};
use rsipstack::transaction::endpoint::MessageInspector;
use rsipstack::transport::SipAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// One message of a call, as its ladder shows it.
#[derive(Debug, Clone)]
pub struct SipMessageRecord {
    pub call_id: String,
    /// We sent it (else we received it).
    pub outbound: bool,
    /// The method of a request, or the code and reason of a response ("180 Ringing").
    pub message: String,
    /// The CSeq header ("1 INVITE").
    pub cseq: String,
    /// The other side's address.
    pub peer: Option<String>,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Records waiting to be stored, at most (about 10 s of a busy instance's messages).
pub const BACKLOG: usize = 20_000;

pub struct Tracer {
    records: mpsc::Sender<SipMessageRecord>,
    dropped: AtomicU64,
}

impl Tracer {
    pub fn new() -> (Tracer, mpsc::Receiver<SipMessageRecord>) {
        let (records, rx) = mpsc::channel(BACKLOG);
        (Tracer { records, dropped: AtomicU64::new(0) }, rx)
    }

    fn record(&self, msg: &SipMessage, outbound: bool, peer: Option<&SipAddr>) {
        let (message, cseq, call_id) = match msg {
            SipMessage::Request(r) => (r.method.to_string(), r.cseq_header().map(|c| c.value().to_string()), r.call_id_header().map(|c| c.value().to_string())),
            SipMessage::Response(r) => (r.status_code.to_string(), r.cseq_header().map(|c| c.value().to_string()), r.call_id_header().map(|c| c.value().to_string())),
        };
        let (Ok(cseq), Ok(call_id)) = (cseq, call_id) else { return };
        // Keep-alive probes (a proxy's OPTIONS every few seconds) belong to no call.
        if cseq.ends_with("OPTIONS") || cseq.ends_with("REGISTER") {
            return;
        }
        let record = SipMessageRecord { call_id, outbound, message, cseq, peer: peer.map(|p| p.to_string()), at: chrono::Utc::now() };
        if self.records.try_send(record).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "SIP ladder records dropped: they are stored slower than calls make them");
            }
        }
    }
}

impl MessageInspector for Tracer {
    fn before_send(&self, msg: SipMessage, dest: Option<&SipAddr>) -> SipMessage {
        self.record(&msg, true, dest);
        msg
    }

    fn after_received(&self, msg: SipMessage, from: Option<&SipAddr>) -> SipMessage {
        self.record(&msg, false, from);
        msg
    }
}
