//! What a final SIP response to our INVITE means for the call (DESIGN.md § Telephony).

use crate::carrier::EndReason;

/// The outcome of one INVITE attempt that did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The callee's answer: the call ends with this reason.
    End(EndReason),
    /// The trunk failed (408, 5xx, no response): the next trunk is tried.
    TryNext,
}

/// 486/600 busy; 603 declined; 404/484/410/604 out of service; 480 unavailable; 408, 5xx and
/// anything a trunk could not handle → the next trunk; other 4xx/6xx end the call as failed.
pub fn refusal(code: u16) -> Refusal {
    match code {
        486 | 600 => Refusal::End(EndReason::Busy),
        603 => Refusal::End(EndReason::Declined),
        404 | 484 | 410 | 604 => Refusal::End(EndReason::OutOfService),
        480 => Refusal::End(EndReason::Unavailable),
        408 | 500..=599 => Refusal::TryNext,
        _ => Refusal::End(EndReason::Failed(format!("sip_{code}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_design_table() {
        assert_eq!(refusal(486), Refusal::End(EndReason::Busy));
        assert_eq!(refusal(600), Refusal::End(EndReason::Busy));
        assert_eq!(refusal(603), Refusal::End(EndReason::Declined));
        for code in [404, 484, 410, 604] {
            assert_eq!(refusal(code), Refusal::End(EndReason::OutOfService));
        }
        assert_eq!(refusal(480), Refusal::End(EndReason::Unavailable));
        for code in [408, 500, 502, 503, 504] {
            assert_eq!(refusal(code), Refusal::TryNext);
        }
        assert_eq!(refusal(403), Refusal::End(EndReason::Failed("sip_403".into())));
    }
}
