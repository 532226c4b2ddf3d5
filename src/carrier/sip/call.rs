//! One outbound SIP leg: INVITE through each route in turn until one answers or refuses for
//! good, then the dialog until either side hangs up. Every step is reported to the leg as a
//! `CarrierEvent`, stamped when it happened.

use super::record::{Attempt, DialogRecord, InviteRecord, SipFacts};
use super::rtp::RtpSocket;
use super::sdp;
use super::stack::{InviteSpec, Invitation};
use super::status::{refusal, Refusal};
use super::line::{Answered, LegAudio, LegLine};
use crate::carrier::{CarrierEvent, DialRequest, EndReason, MediaCommand, SipTransport, TrunkRoute};
use crate::media::MediaHandle;
use crate::ncco::Endpoint;
use rsipstack::dialog::dialog::DialogState;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::StatusCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long a CANCEL waits for the INVITE's 487 before the leg lets go.
const CANCEL_WAIT: Duration = Duration::from_secs(4);

pub struct OutboundCall {
    pub line: LegLine,
    pub request: DialRequest,
}

/// How an INVITE attempt ended.
enum AttemptEnd {
    Answered(InviteDialog, rsipstack::dialog::DialogId, Vec<u8>, rsipstack::dialog::dialog::DialogStateReceiver),
    Refused(u16, String),
    /// No final response (transport error, timeout).
    NoAnswer(String),
    /// We hung up before the answer: CANCEL sent.
    Cancelled,
}

impl OutboundCall {
    pub async fn run(mut self) {
        let Some(mut rtp) = self.line.shared.rtp.open() else {
            self.line.log("no RTP port free in sip.rtp_port_min..max".into());
            self.line.report(CarrierEvent::Ended(EndReason::Failed("no_rtp_port".into())));
            return;
        };
        let our_rtp = std::net::SocketAddr::new(self.line.shared.stack.public_address().ip(), rtp.local.port());
        let mut facts = SipFacts { local_rtp: Some(our_rtp.to_string()), ..SipFacts::default() };
        let routes = std::mem::take(&mut self.request.routes);
        if routes.is_empty() {
            self.line.report(CarrierEvent::Ended(EndReason::Failed("no_route".into())));
            return;
        }
        let session_id = rand::random::<u32>() as u64;
        let offer = sdp::offer(our_rtp, session_id, 1);
        let mut rang = false;
        // The leg's audio, from early media (183 with SDP) or the answer.
        let mut audio: Option<LegAudio> = None;
        let mut last_failure = "trunks_at_capacity".to_string();
        for (attempt, route) in routes.iter().enumerate() {
            // Behind an outbound proxy the proxy holds the trunk's limits for the whole
            // cluster (a 503 from it fails over like the trunk's own); counted here all the same.
            let (cps, max_channels) = if self.line.shared.stack.has_outbound_proxy() { (None, None) } else { (route.cps, route.max_channels) };
            let channel = match self.line.shared.limits.take(route.trunk_id, cps, max_channels) {
                Ok(channel) => channel,
                Err(refused) => {
                    let why = match refused {
                        crate::carrier::limits::Refused::Cps => "at its calls-per-second limit",
                        crate::carrier::limits::Refused::Channels => "at its channel limit",
                    };
                    self.line.log(format!("trunk {} skipped: {why}", route.name));
                    facts.attempts.push(Attempt { trunk: route.name.clone(), code: None, reason: format!("skipped: {why}"), at: chrono::Utc::now() });
                    continue;
                }
            };
            let spec = self.invite_spec(route, offer.clone(), attempt);
            let invitation = match self.line.shared.stack.invite(spec) {
                Ok(invitation) => invitation,
                Err(e) => {
                    self.line.log(format!("INVITE via trunk {} not sent: {e}", route.name));
                    facts.attempts.push(Attempt { trunk: route.name.clone(), code: None, reason: e.to_string(), at: chrono::Utc::now() });
                    last_failure = "sip_invite_not_sent".into();
                    continue;
                }
            };
            let destination = self.line.shared.stack.next_hop(route);
            facts.call_id = Some(invitation.dialog.id().call_id.clone());
            facts.trunk = Some(route.name.clone());
            facts.remote_address = Some(format!("{}:{}", super::stack::bracket(&route.host), route.port));
            facts.trunk_id = (!route.trunk_id.is_nil()).then_some(route.trunk_id);
            facts.invite = Some(InviteRecord::of(&invitation.dialog.initial_request(), destination.clone()));
            facts.dialog = None;
            // Stored before the far end can answer: an instance taking the leg over can CANCEL.
            self.line.facts(&facts);
            self.line.log(format!("INVITE {} via trunk {} ({}:{})", target_of(&self.request.to, route), route.name, route.host, route.port));
            let outcome = self.attempt(invitation, &route.name, &mut rang, &mut rtp, &mut audio).await;
            if let Some(early) = audio.as_mut().and_then(|a| a.early.take()) {
                let heard = early.finish();
                facts.early_media_ms = Some(heard.as_millis() as u64);
                self.line.log(format!("early media: {} ms of audio heard before the final response", heard.as_millis()));
            }
            match outcome {
                AttemptEnd::Answered(dialog, id, body, states) => {
                    facts.final_code = Some(200);
                    facts.final_reason = Some("OK".into());
                    facts.attempts.push(Attempt { trunk: route.name.clone(), code: Some(200), reason: "OK".into(), at: chrono::Utc::now() });
                    match sdp::parse(&body) {
                        Ok(remote) => {
                            facts.remote_rtp = Some(remote.address.to_string());
                            facts.codec = Some(remote.codec.name().into());
                            match audio.as_ref() {
                                // Early media's session goes on, to the answer's address.
                                Some(early) if early.codec == remote.codec => early.handle.set_remote(remote.address),
                                _ => audio = Some(self.line.start_audio(&mut rtp, &remote)),
                            }
                        }
                        // A 200 without SDP keeps the 183's (its answer was the early one).
                        Err(_) if body.is_empty() && audio.is_some() => {}
                        Err(e) => {
                            audio = None;
                            self.line.log(format!("the answer's SDP is unusable ({e}); the call stays up without audio"));
                        }
                    }
                    facts.invite = None;
                    facts.dialog = Some(DialogRecord::from_snapshot(&dialog.snapshot(), destination));
                    self.line.facts(&facts);
                    if !rang {
                        // Answered without a 180/183: ringing all the same, as every call's
                        // events have it.
                        self.line.report(CarrierEvent::Ringing);
                    }
                    self.line.report(CarrierEvent::Answered { by_machine: false });
                    self.line.answered(Answered { dialog, id, states, rtp, our_rtp, session_id, audio }, facts, Some(channel)).await;
                    return;
                }
                AttemptEnd::Refused(code, reason) => {
                    facts.attempts.push(Attempt { trunk: route.name.clone(), code: Some(code), reason: reason.clone(), at: chrono::Utc::now() });
                    facts.final_code = Some(code);
                    facts.final_reason = Some(reason.clone());
                    facts.invite = None;
                    self.line.log(format!("SIP {code} {reason} from trunk {}", route.name));
                    match refusal(code) {
                        Refusal::End(end) => {
                            self.line.facts(&facts);
                            self.line.report(CarrierEvent::Ended(end));
                            return;
                        }
                        Refusal::TryNext => last_failure = format!("sip_{code}"),
                    }
                }
                AttemptEnd::NoAnswer(why) => {
                    facts.attempts.push(Attempt { trunk: route.name.clone(), code: None, reason: why.clone(), at: chrono::Utc::now() });
                    facts.invite = None;
                    self.line.log(format!("no answer from trunk {}: {why}", route.name));
                    last_failure = "no_response".into();
                }
                AttemptEnd::Cancelled => {
                    facts.invite = None;
                    self.line.facts(&facts);
                    return;
                }
            }
            // The next trunk's call has its own media.
            audio = None;
            drop(channel);
        }
        self.line.facts(&facts);
        self.line.report(CarrierEvent::Ended(EndReason::Failed(last_failure)));
        drop(rtp);
    }

    fn invite_spec<'a>(&self, route: &'a TrunkRoute, sdp: String, attempt: usize) -> InviteSpec<'a> {
        let options = &self.request.sip;
        let from_user = options.from_user.clone().unwrap_or_else(|| self.request.from.clone());
        let from_host = route.from_domain.clone().unwrap_or_else(|| self.line.shared.stack.public_address().ip().to_string());
        let from_user = if from_user.is_empty() { "anonymous".to_string() } else { from_user };
        InviteSpec {
            route,
            target: target_of(&self.request.to, route),
            from: format!("sip:{from_user}@{}", super::stack::bracket(&from_host)),
            display_name: options.display_name.clone(),
            headers: options.headers(&self.line.shared.user_agent_host),
            sdp,
            // The leg's uuid, so a trunk's logs and ours meet; a new one per failover attempt.
            call_id: match attempt {
                0 => format!("{}@{}", self.request.leg_uuid.simple(), self.line.shared.user_agent_host),
                n => format!("{}-{n}@{}", self.request.leg_uuid.simple(), self.line.shared.user_agent_host),
            },
        }
    }

    /// One INVITE until its final response, or until the leg hangs up (CANCEL).
    /// Responses are counted by code and `trunk`, and the first 180/183/200 gives the post-dial
    /// delay (`metrics`).
    async fn attempt(&mut self, mut invitation: Invitation, trunk: &str, rang: &mut bool, rtp: &mut RtpSocket, audio: &mut Option<LegAudio>) -> AttemptEnd {
        let sent = Instant::now();
        let mut timed = false;
        let post_dial_delay = |timed: &mut bool| {
            if !std::mem::replace(timed, true) {
                crate::metrics::post_dial_delay(trunk, sent.elapsed());
            }
        };
        let deadline = Instant::now() + self.line.shared.invite_timeout;
        let mut responded = false;
        let mut states_open = true;
        loop {
            // States first: a 180 and the 200 after it can both be waiting.
            tokio::select! {
                biased;
                state = invitation.states.recv(), if states_open => match state {
                    Some(DialogState::Trying(_)) => responded = true,
                    Some(DialogState::Early(_, response)) => {
                        responded = true;
                        let code = response.status_code.code();
                        crate::metrics::sip_response(trunk, code);
                        if code == 180 || code == 183 {
                            post_dial_delay(&mut timed);
                        }
                        if !*rang && (code == 180 || code == 183) {
                            *rang = true;
                            self.line.report(CarrierEvent::Ringing);
                        }
                        if code == 183 && !response.body.is_empty() && audio.is_none() {
                            match sdp::parse(&response.body) {
                                Ok(remote) => {
                                    self.line.log(format!("183 Session Progress with SDP: early media from {}", remote.address));
                                    let mut early = self.line.start_audio(rtp, &remote);
                                    early.early = Some(EarlyMeter::start(&early.handle));
                                    *audio = Some(early);
                                }
                                Err(e) => self.line.log(format!("183 Session Progress with unusable SDP ({e}): no early media")),
                            }
                        }
                    }
                    Some(_) => {}
                    None => states_open = false,
                },
                outcome = &mut invitation.outcome => {
                    if let Ok(Ok((_, Some(response)))) = &outcome {
                        let code = response.status_code.code();
                        crate::metrics::sip_response(trunk, code);
                        if (200..300).contains(&code) {
                            post_dial_delay(&mut timed);
                        }
                    }
                    return match outcome {
                        Ok(Ok((id, Some(response)))) if response.status_code.kind() == rsipstack::sip::StatusCodeKind::Successful => {
                            AttemptEnd::Answered(invitation.dialog, id, response.body, invitation.states)
                        }
                        Ok(Ok((_, Some(response)))) => {
                            let code = response.status_code.code();
                            AttemptEnd::Refused(code, reason_phrase(&response.status_code))
                        }
                        Ok(Ok((_, None))) => AttemptEnd::NoAnswer("no final response".into()),
                        Ok(Err(e)) => AttemptEnd::NoAnswer(e.to_string()),
                        Err(e) => AttemptEnd::NoAnswer(e.to_string()),
                    };
                }
                command = self.line.control.recv() => match command {
                    None | Some(MediaCommand::Hangup) => {
                        self.cancel(invitation).await;
                        return AttemptEnd::Cancelled;
                    }
                    Some(_) => {}
                },
                _ = tokio::time::sleep_until(deadline), if !responded => {
                    invitation.outcome.abort();
                    return AttemptEnd::NoAnswer(format!("no response in {} ms", self.line.shared.invite_timeout.as_millis()));
                }
            }
        }
    }

    /// CANCEL (same Via branch as the INVITE, also after a digest retry: the stack keeps the
    /// retried request), then wait for the INVITE's final response (487, or a 200 that
    /// crossed the CANCEL, which the stack ACKs and ends with BYE).
    async fn cancel(&self, mut invitation: Invitation) {
        if let Err(e) = invitation.dialog.cancel().await {
            self.line.log(format!("CANCEL failed: {e}"));
        }
        match tokio::time::timeout(CANCEL_WAIT, &mut invitation.outcome).await {
            Ok(Ok(Ok((_, Some(response))))) => self.line.log(format!("CANCEL sent; INVITE ended {}", response.status_code.code())),
            Ok(_) => self.line.log("CANCEL sent; INVITE ended without a final response".into()),
            Err(_) => {
                invitation.outcome.abort();
                self.line.log(format!("CANCEL sent; no final response to the INVITE in {} s", CANCEL_WAIT.as_secs()));
            }
        }
    }
}

/// Counts the audible part of early media (ringback, announcements), measured on the audio.
pub struct EarlyMeter {
    audible_frames: Arc<std::sync::atomic::AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl EarlyMeter {
    /// Louder than this a frame is audible (a quiet line is below -50 dBFS).
    const AUDIBLE_DBFS: f32 = -45.0;

    pub fn start(handle: &MediaHandle) -> EarlyMeter {
        let mut frames = handle.subscribe_received();
        let audible_frames = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = audible_frames.clone();
        let task = tokio::spawn(async move {
            while let Some(frame) = frames.recv().await {
                if crate::media::rms_dbfs(&frame) > Self::AUDIBLE_DBFS {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        EarlyMeter { audible_frames, task }
    }

    pub fn finish(self) -> Duration {
        self.task.abort();
        crate::media::FRAME_DURATION * self.audible_frames.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The Request-URI: a phone number at the trunk's host, or the SIP endpoint's own URI.
fn target_of(to: &Endpoint, route: &TrunkRoute) -> String {
    match to {
        Endpoint::Sip { uri, .. } => uri.clone(),
        other => {
            let number = other.address().trim_start_matches('+');
            let transport = if route.transport == SipTransport::Tcp { ";transport=tcp" } else { "" };
            format!("sip:{number}@{}:{}{transport}", super::stack::bracket(&route.host), route.port)
        }
    }
}

fn reason_phrase(code: &StatusCode) -> String {
    let text = code.to_string();
    // The stack prints "486 Busy Here"; keep the phrase.
    text.split_once(' ').map_or(text.clone(), |(_, phrase)| phrase.to_string())
}

