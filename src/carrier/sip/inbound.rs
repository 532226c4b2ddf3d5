//! Calls arriving from trunks: each INVITE outside a dialog is offered to the engine as an
//! `IncomingCall`, which refuses it (403, 404, 503…) or admits it as a leg that rings, answers
//! with our media and then lives like any other (`line::LegLine::answered`).

use super::line::{Answered, LegLine};
use super::record::{Destination, DialogRecord, SipFacts};
use super::sdp;
use super::SipShared;
use crate::carrier::{Admission, CarrierEvent, EndReason, IncomingCall, LegHandle, MediaCommand, Reporter, SipTransport, TrunkLimit};
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{prelude::HeadersExt, Header, StatusCode, ToTypedHeader};
use rsipstack::transaction::transaction::Transaction;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Offers every call-starting INVITE the stack hands over to the engine (through `offers`).
pub async fn serve(shared: Arc<SipShared>, mut invites: mpsc::UnboundedReceiver<Transaction>, offers: mpsc::UnboundedSender<IncomingCall>) {
    while let Some(tx) = invites.recv().await {
        offer(&shared, tx, &offers);
    }
}

fn offer(shared: &Arc<SipShared>, mut tx: Transaction, offers: &mpsc::UnboundedSender<IncomingCall>) {
    let request = tx.original.clone();
    let transport = match request.via_header().ok().and_then(|v| v.typed().ok()).map(|v| v.transport) {
        Some(rsipstack::sip::Transport::Tcp) => SipTransport::Tcp,
        _ => SipTransport::Udp,
    };
    let (state_sender, states) = shared.stack.dialogs.new_dialog_state_channel();
    let dialog = match shared.stack.dialogs.get_or_create_server_invite(&tx, state_sender, None, Some(shared.stack.contact_uri(transport))) {
        Ok(dialog) => dialog,
        Err(e) => {
            tracing::debug!(error = %e, "INVITE refused: no dialog");
            tokio::spawn(async move {
                let _ = tx.reply(StatusCode::BadRequest).await;
            });
            return;
        }
    };
    // The INVITE's own transaction: 100 Trying, retransmissions, then the ACK or a CANCEL.
    let mut serving = dialog.clone();
    tokio::spawn(async move {
        let _ = serving.handle(&mut tx).await;
    });
    let Some((source, source_port)) = source_of(&request) else {
        let _ = dialog.reject(Some(StatusCode::BadRequest), Some("no usable Via".into()));
        return;
    };
    // Relayed by our proxy (deploy/kamailio): the trunk is the address the proxy received it from.
    let trunk_address = match shared.trusted_proxies.contains(&source) {
        true => relayed_source(&request).unwrap_or(source),
        false => source,
    };
    let to = request.uri.user().unwrap_or_default().to_string();
    let from = request.from_header().ok().and_then(|f| f.uri().ok()).and_then(|u| u.user().map(str::to_string)).unwrap_or_default();
    let call_id = request.call_id_header().map(|c| c.value().to_string()).unwrap_or_default();
    // Where in-dialog requests go: the caller's Contact, else where the INVITE came from.
    let destination = contact_destination(&request, transport).unwrap_or(Destination { transport, host: source.to_string(), port: source_port });
    let admission = SipAdmission { shared: shared.clone(), dialog, states, offer: request.body.clone(), destination, call_id: call_id.clone() };
    let incoming = IncomingCall { source: trunk_address, to, from, call_id, admission: Box::new(admission) };
    if let Err(refused) = offers.send(incoming) {
        refused.0.admission.refuse(503);
    }
}

/// Where a request came from: the top Via's `received` (the stack adds it when the packet's
/// source differs from what the Via says), else its sent-by host.
fn source_of(request: &rsipstack::sip::Request) -> Option<(IpAddr, u16)> {
    let via = request.via_header().ok()?.typed().ok()?;
    let received = via.params.iter().find_map(|p| match p {
        rsipstack::sip::Param::Received(r) => r.value().trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>().ok(),
        _ => None,
    });
    let rport = via.params.iter().find_map(|p| match p {
        rsipstack::sip::Param::Rport(Some(port)) => Some(*port),
        _ => None,
    });
    let sent_by = via.uri.host_with_port.clone();
    let host = received.or_else(|| sent_by.host.to_string().trim_matches(|c| c == '[' || c == ']').parse().ok())?;
    let port = rport.or_else(|| sent_by.port.map(|p| p.value())).unwrap_or(5060);
    Some((host, port))
}

/// The caller's address as a trusted proxy saw it: its `X-Outdial-Source` header, the last one
/// (the proxy removes any the caller sent, and appends its own). None when missing or not an IP:
/// then the proxy's own address stands, which is no trunk's, and the call is refused 403.
fn relayed_source(request: &rsipstack::sip::Request) -> Option<IpAddr> {
    let value = request
        .headers
        .iter()
        .filter_map(|header| match header {
            Header::Other(name, value) if name.eq_ignore_ascii_case("X-Outdial-Source") => Some(value),
            _ => None,
        })
        .last()?;
    value.trim().trim_matches(|c| c == '[' || c == ']').parse().ok()
}

fn contact_destination(request: &rsipstack::sip::Request, transport: SipTransport) -> Option<Destination> {
    let contact = request.contact_header().ok()?.typed().ok()?;
    let host_with_port = contact.uri.host_with_port;
    Some(Destination { transport, host: host_with_port.host.to_string(), port: host_with_port.port.map_or(5060, |p| p.value()) })
}

struct SipAdmission {
    shared: Arc<SipShared>,
    dialog: InviteDialog,
    states: DialogStateReceiver,
    /// The INVITE's SDP offer.
    offer: Vec<u8>,
    destination: Destination,
    call_id: String,
}

impl Admission for SipAdmission {
    fn admit(self: Box<Self>, _leg_uuid: uuid::Uuid, limit: Option<TrunkLimit>) -> Result<LegHandle, u16> {
        let channel = match limit {
            Some(limit) => match self.shared.limits.take(limit.trunk_id, limit.cps, limit.max_channels) {
                Ok(channel) => Some(channel),
                Err(_) => {
                    let _ = self.dialog.reject(Some(StatusCode::ServiceUnavailable), None);
                    return Err(503);
                }
            },
            None => None,
        };
        let (events, event_rx) = Reporter::channel();
        let (control, control_rx) = mpsc::unbounded_channel();
        let call = InboundCall {
            line: LegLine { shared: self.shared.clone(), events, control: control_rx },
            dialog: self.dialog,
            states: self.states,
            offer: self.offer,
            destination: self.destination,
            call_id: self.call_id,
            trunk_id: limit.map(|l| l.trunk_id),
            channel,
        };
        tokio::spawn(call.run());
        Ok(LegHandle { events: event_rx, control })
    }

    fn refuse(self: Box<Self>, code: u16) {
        let _ = self.dialog.reject(Some(StatusCode::from(code)), None);
        self.shared.stack.forget(&self.dialog.id());
    }
}

/// An admitted inbound call: rings and answers when the engine says, then lives until either
/// side hangs up.
struct InboundCall {
    line: LegLine,
    dialog: InviteDialog,
    states: DialogStateReceiver,
    offer: Vec<u8>,
    destination: Destination,
    call_id: String,
    trunk_id: Option<uuid::Uuid>,
    channel: Option<crate::carrier::limits::Channel>,
}

impl InboundCall {
    async fn run(mut self) {
        let mut facts = SipFacts {
            call_id: Some(self.call_id.clone()),
            trunk_id: self.trunk_id,
            remote_address: Some(format!("{}:{}", super::stack::bracket(&self.destination.host), self.destination.port)),
            ..SipFacts::default()
        };
        loop {
            tokio::select! {
                state = self.states.recv() => match state {
                    Some(DialogState::Terminated(_, reason)) => {
                        let why = match reason {
                            TerminatedReason::UacCancel => "the caller cancelled (CANCEL)".to_string(),
                            other => format!("the call ended before the answer: {other:?}"),
                        };
                        self.line.log(why);
                        self.end(EndReason::RemoteHangup);
                        return;
                    }
                    Some(_) => {}
                    None => {
                        self.end(EndReason::RemoteHangup);
                        return;
                    }
                },
                command = self.line.control.recv() => match command {
                    Some(MediaCommand::Ring) => {
                        if let Err(e) = self.dialog.ringing(None, None) {
                            self.line.log(format!("180 Ringing not sent: {e}"));
                        }
                        self.line.report(CarrierEvent::Ringing);
                    }
                    Some(MediaCommand::Answer) => {
                        self.answer(facts).await;
                        return;
                    }
                    Some(MediaCommand::Reject(code)) => {
                        self.refuse(code, &mut facts);
                        return;
                    }
                    None | Some(MediaCommand::Hangup) => {
                        self.refuse(480, &mut facts);
                        return;
                    }
                    Some(_) => {}
                },
            }
        }
    }

    fn end(&self, reason: EndReason) {
        self.line.shared.stack.forget(&self.dialog.id());
        self.line.report(CarrierEvent::Ended(reason));
    }

    fn refuse(&self, code: u16, facts: &mut SipFacts) {
        let _ = self.dialog.reject(Some(StatusCode::from(code)), None);
        facts.final_code = Some(code);
        self.line.facts(facts);
        self.line.log(format!("refused the caller with {code}"));
        self.line.shared.stack.forget(&self.dialog.id());
    }

    /// 200 OK with our media, answering the INVITE's offer.
    async fn answer(mut self, mut facts: SipFacts) {
        let remote = match sdp::parse(&self.offer) {
            Ok(remote) => remote,
            Err(e) => {
                self.line.log(format!("the INVITE's SDP is unusable: {e}"));
                self.refuse(488, &mut facts);
                self.line.report(CarrierEvent::Ended(EndReason::Failed("sip_488".into())));
                return;
            }
        };
        let Some(mut rtp) = self.line.shared.rtp.open() else {
            self.line.log("no RTP port free in sip.rtp_port_min..max".into());
            self.refuse(503, &mut facts);
            self.line.report(CarrierEvent::Ended(EndReason::Failed("no_rtp_port".into())));
            return;
        };
        let our_rtp = std::net::SocketAddr::new(self.line.shared.stack.public_address().ip(), rtp.local.port());
        let session_id = rand::random::<u32>() as u64;
        let direction = sdp::direction(&self.offer);
        let body = sdp::answer(our_rtp, session_id, 1, remote.codec, remote.telephone_event, &direction);
        let headers = vec![Header::ContentType("application/sdp".to_string().into())];
        if let Err(e) = self.dialog.accept(Some(headers), Some(body.into_bytes())) {
            self.line.log(format!("200 OK not sent: {e}"));
            self.line.report(CarrierEvent::Ended(EndReason::Failed("sip_answer_failed".into())));
            return;
        }
        facts.final_code = Some(200);
        facts.final_reason = Some("OK".into());
        facts.local_rtp = Some(our_rtp.to_string());
        facts.remote_rtp = Some(remote.address.to_string());
        facts.codec = Some(remote.codec.name().into());
        let mut record = DialogRecord::from_snapshot(&self.dialog.snapshot(), self.destination.clone());
        record.server = true;
        facts.dialog = Some(record);
        self.line.facts(&facts);
        let audio = self.line.start_audio(&mut rtp, &remote);
        self.line.report(CarrierEvent::Answered { by_machine: false });
        let id = self.dialog.id();
        let channel = self.channel.take();
        let call = Answered { dialog: self.dialog, id, states: self.states, rtp, our_rtp, session_id, audio: Some(audio) };
        self.line.answered(call, facts, channel).await;
    }
}
