//! The telephone network as the call engine sees it: dial a leg, then exchange media commands
//! and network events with it. Telephony only: no SQL, no webhooks.

mod behaviour;
pub mod limits;
mod route;
mod simulated;
pub mod sip;
pub mod websocket;

pub use behaviour::{Answerer, BehaviourTable, CalleeBehaviour, Outcome, Timed};
pub use route::{SipTransport, TrunkRoute};
pub use simulated::SimulatedNetwork;

use crate::ncco::Endpoint;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct DialRequest {
    pub leg_uuid: Uuid,
    pub account_id: i64,
    pub to: Endpoint,
    pub from: String,
    /// The callee's behaviour when the carrier is simulated (from the sandbox); None = defaults.
    pub behaviour: Option<CalleeBehaviour>,
    /// Where a real network sends the call, in the order to try (empty: no route). Ignored by
    /// the simulated network.
    pub routes: Vec<TrunkRoute>,
    pub sip: sip::SipCallOptions,
    /// The leg is a call to one of our numbers (the simulated network's sandbox caller): the
    /// network does not ring anyone, it waits for `Ring`, `Answer` or `Reject`.
    pub inbound: bool,
    /// The Authorization header of a websocket endpoint's upgrade request: the endpoint's custom
    /// value, or the token the engine signed for `{"type": "vonage"}`.
    pub websocket_authorization: Option<String>,
}

/// Why a leg ended on the network's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    Busy,
    Declined,
    OutOfService,
    Unavailable,
    /// The callee hung up after answering.
    RemoteHangup,
    /// The customer's application closed the connection after answering (a websocket
    /// endpoint): Vonage reports `disconnected`, then `completed`.
    Disconnected,
    /// The network could not place the call; the detail says why (no_route, sip_503…).
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum CarrierEvent {
    Ringing,
    Answered { by_machine: bool },
    /// An answering machine's beep.
    Beep,
    Dtmf(char),
    Speech(String),
    PlaybackFinished(u64),
    Ended(EndReason),
    /// What the callee heard or how its audio was switched, for the call's history.
    Log(String),
    /// The leg's audio started (early media or the answer; before `Answered`): the engine
    /// reads it through this tap (recording, speech recognition, machine detection).
    Media(crate::media::MediaTap),
    /// How a `Refer` ended: the final status of the transfer (the REFER's own refusal, or the
    /// transfer target's answer reported by NOTIFY), 0 when the network cannot transfer.
    Transferred { code: u16 },
    /// The leg's SIP facts changed (Call-ID, trunk, codec, dialog state): the leg stores them
    /// so another instance can end the dialog after a takeover.
    Sip(serde_json::Value),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Media {
    Tts { text: String, language: String },
    Audio { url: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum MediaCommand {
    /// Play `media` lasting `duration` per loop, `loops` times (0 = until stopped); the carrier
    /// answers with `PlaybackFinished(id)`. `audio` is the media as 8 kHz samples, for a carrier
    /// that plays real audio (`plays_audio`); `level` is Vonage's -1..1.
    Play { id: u64, media: Media, duration: Duration, loops: u32, audio: Option<crate::media::Clip>, level: f32 },
    StopPlayback { id: u64 },
    SendDtmf(String),
    SetMuted(bool),
    SetEarmuffed(bool),
    /// Blind transfer (SIP REFER) of the answered call to `uri`; the carrier answers with
    /// `Transferred`.
    Refer(String),
    /// Hang up (answered) or cancel (ringing); an inbound call not answered yet is refused.
    Hangup,
    /// Inbound: tell the caller it rings (180).
    Ring,
    /// Inbound: answer (200 with our media); the carrier reports `Answered` once it is.
    Answer,
    /// Inbound: refuse the call with this SIP status (480, 500, 503…).
    Reject(u16),
}

/// A network event and the moment the network reported it. The leg may get to it later (while
/// it writes an earlier change, or holds credit at answer): the webhook's `timestamp`, the
/// call's start and end times and its duration count from this moment, not from the leg's.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    pub event: CarrierEvent,
    /// Wall clock, for timestamps.
    pub wall: DateTime<Utc>,
    /// Monotonic clock, for durations.
    pub at: Instant,
}

/// The carrier's end of a leg's event line: stamps each event as it is reported.
#[derive(Clone)]
pub struct Reporter(mpsc::UnboundedSender<Reported>);

impl Reporter {
    pub fn channel() -> (Reporter, mpsc::UnboundedReceiver<Reported>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Reporter(tx), rx)
    }

    /// False when the leg no longer listens.
    pub fn report(&self, event: CarrierEvent) -> bool {
        self.0.send(Reported { event, wall: Utc::now(), at: Instant::now() }).is_ok()
    }
}

pub struct LegHandle {
    pub events: mpsc::UnboundedReceiver<Reported>,
    pub control: mpsc::UnboundedSender<MediaCommand>,
}

/// A call arriving from the network for one of our numbers, waiting for the engine to admit
/// or refuse it (the caller hears nothing but `100 Trying` until then).
pub struct IncomingCall {
    /// Where the request came from (the trunk's address).
    pub source: std::net::IpAddr,
    /// The number called (the Request-URI's user part, digits as sent).
    pub to: String,
    /// The caller (the From user, or the P-Asserted-Identity's when given).
    pub from: String,
    pub call_id: String,
    pub admission: Box<dyn Admission>,
}

/// A trunk's limits that an admitted call takes a slot of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrunkLimit {
    pub trunk_id: Uuid,
    pub cps: Option<u32>,
    pub max_channels: Option<u32>,
}

/// The carrier's side of an incoming call's admission.
pub trait Admission: Send {
    /// Takes the call as leg `leg_uuid` (one slot of `limit`'s trunk): its events and controls,
    /// or the SIP status it was refused with (503 when the trunk is at a limit).
    fn admit(self: Box<Self>, leg_uuid: Uuid, limit: Option<TrunkLimit>) -> Result<LegHandle, u16>;
    /// Refuses the call with a final status (403, 404, 480, 503…).
    fn refuse(self: Box<Self>, code: u16);
}

pub trait Carrier: Send + Sync {
    fn dial(&self, request: DialRequest) -> LegHandle;
    fn name(&self) -> &'static str;

    /// Ends on the network a leg another instance was driving, from the facts it stored
    /// (`CarrierEvent::Sip`): BYE or CANCEL. Says what it did, for the call's history.
    fn release(&self, _facts: serde_json::Value) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send>> {
        Box::pin(async { None })
    }

    /// Whether `Play` needs the audio itself (`audio`): a real network does, the simulated one
    /// times media by their length.
    fn plays_audio(&self) -> bool {
        false
    }

    /// Where this carrier takes SIP requests (None: it has no network address).
    fn signalling_address(&self) -> Option<std::net::SocketAddr> {
        None
    }

    /// Calls arriving from the network, handed over once (None: the network sends none).
    fn take_incoming(&self) -> Option<mpsc::UnboundedReceiver<IncomingCall>> {
        None
    }

    /// The SIP messages of its calls, handed over once to be stored (None: it records none).
    fn take_sip_messages(&self) -> Option<mpsc::Receiver<sip::trace::SipMessageRecord>> {
        None
    }

    /// Dialogs the carrier holds open on the network (None: it has none to count).
    fn live_dialogs(&self) -> Option<usize> {
        None
    }

    /// Shutting down: ends every call still up on the network (waiting at most `wait`), then
    /// stops listening.
    fn shutdown(&self, _wait: Duration) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}

/// The carrier `carrier.kind` names; None for the simulated network (the engine builds it
/// with its clock).
pub async fn from_settings(settings: &crate::config::Settings) -> Result<Option<std::sync::Arc<dyn Carrier>>, String> {
    match settings.carrier.kind.as_str() {
        "simulated" => Ok(None),
        "sip" => {
            let carrier = sip::SipCarrier::start(&settings.sip).await.map_err(|e| e.to_string())?;
            tracing::info!(address = %carrier.local_address(), "SIP carrier listening");
            Ok(Some(std::sync::Arc::new(carrier)))
        }
        other => Err(format!("carrier.kind {other:?} is neither \"simulated\" nor \"sip\"")),
    }
}
