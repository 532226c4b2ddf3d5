//! A SIP leg's live part, whichever side placed the call: its event line to the engine, its
//! audio, and the answered dialog until either side hangs up.

use super::record::SipFacts;
use super::rtp::RtpSocket;
use super::sdp;
use super::SipShared;
use crate::carrier::{CarrierEvent, EndReason, MediaCommand, Reporter};
use crate::media::{MediaEvent, MediaHandle, MediaSession};
use rsipstack::dialog::dialog::{DialogState, TerminatedReason};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::StatusCode;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What a leg shares with the engine: the stack, its events out and its commands in.
pub struct LegLine {
    pub shared: Arc<SipShared>,
    pub events: Reporter,
    pub control: mpsc::UnboundedReceiver<MediaCommand>,
}

impl LegLine {
    pub fn report(&self, event: CarrierEvent) {
        let _ = self.events.report(event);
    }

    pub fn log(&self, line: String) {
        self.report(CarrierEvent::Log(line));
    }

    pub fn facts(&self, facts: &SipFacts) {
        self.report(CarrierEvent::Sip(serde_json::to_value(facts).unwrap_or_default()));
    }

    /// Starts the leg's audio and hands the engine its tap (recording, recognition, detection).
    pub fn start_audio(&self, rtp: &mut RtpSocket, remote: &sdp::RemoteMedia) -> LegAudio {
        let codec = match remote.codec {
            sdp::Codec::Pcmu => crate::media::Codec::Pcmu,
            sdp::Codec::Pcma => crate::media::Codec::Pcma,
        };
        let (handle, events) = MediaSession::start(rtp.take_for_media(), remote.address, codec, remote.telephone_event);
        self.report(CarrierEvent::Media(handle.tap()));
        LegAudio { handle, events, codec: remote.codec, early: None }
    }

    /// The answered call: until the callee's BYE or our hang-up. Its audio runs in the media
    /// engine (`crate::media`): playbacks, DTMF both ways, mute and earmuff.
    pub async fn answered(mut self, call: Answered, mut facts: SipFacts, _channel: Option<crate::carrier::limits::Channel>) {
        let Answered { dialog, id, mut states, rtp, our_rtp, session_id, audio } = call;
        let (media, mut media_events) = match audio {
            Some(LegAudio { handle, events, .. }) => (Some(handle), Some(events)),
            None => (None, None),
        };
        // Playbacks without audio (no media session, or no samples given) last their length.
        let mut timed: HashMap<u64, Instant> = HashMap::new();
        let mut sdp_version = 1;
        // A REFER was accepted: its NOTIFYs report the transfer's progress.
        let mut referring = false;
        loop {
            let next_end = timed.iter().min_by_key(|(_, at)| **at).map(|(id, at)| (*id, *at));
            let sleep_until = next_end.map_or_else(|| Instant::now() + Duration::from_secs(86_400), |(_, at)| at);
            tokio::select! {
                state = states.recv() => match state {
                    Some(DialogState::Terminated(_, reason)) => {
                        let why = match reason {
                            TerminatedReason::UasBye | TerminatedReason::UacBye => "the other side hung up (BYE)".to_string(),
                            other => format!("the dialog ended: {other:?}"),
                        };
                        self.log(why);
                        self.shared.stack.forget(&id);
                        self.report(CarrierEvent::Ended(EndReason::RemoteHangup));
                        break;
                    }
                    Some(DialogState::Updated(_, request, handle)) => {
                        // re-INVITE / UPDATE: hold or resume, answered with our same media.
                        let direction = sdp::direction(&request.body);
                        let held = direction == "sendonly" || direction == "inactive";
                        sdp_version += 1;
                        let codec = facts.codec.as_deref().map_or(sdp::Codec::Pcmu, |c| if c == "PCMA" { sdp::Codec::Pcma } else { sdp::Codec::Pcmu });
                        let body = (!request.body.is_empty()).then(|| sdp::answer(our_rtp, session_id, sdp_version, codec, Some(sdp::TELEPHONE_EVENT_PT), &direction).into_bytes());
                        let headers = body.as_ref().map(|_| vec![rsipstack::sip::Header::ContentType("application/sdp".to_string().into())]);
                        let _ = handle.respond(StatusCode::OK, headers, body).await;
                        self.log(format!("{} from the callee: {}", request.method, if held { "call held" } else { "call resumed" }));
                        if let Ok(remote) = sdp::parse(&request.body) {
                            facts.remote_rtp = Some(remote.address.to_string());
                            if let (Some(media), false) = (&media, remote.address.ip().is_unspecified()) {
                                media.set_remote(remote.address);
                            }
                        }
                    }
                    Some(DialogState::Options(_, _, handle)) | Some(DialogState::Info(_, _, handle)) => {
                        let _ = handle.reply(StatusCode::OK).await;
                    }
                    // The progress of our REFER (RFC 3515): a sipfrag of the target's answer.
                    Some(DialogState::Notify(_, request, handle)) if referring => {
                        let _ = handle.reply(StatusCode::OK).await;
                        if let Some(code) = sipfrag_code(&request.body).filter(|&code| code >= 200) {
                            referring = false;
                            self.log(format!("transfer target answered {code}"));
                            self.report(CarrierEvent::Transferred { code });
                        }
                    }
                    Some(DialogState::Refer(_, _, handle)) | Some(DialogState::Message(_, _, handle)) | Some(DialogState::Notify(_, _, handle)) => {
                        let _ = handle.reply(StatusCode::NotImplemented).await;
                    }
                    Some(_) => {}
                    None => {
                        self.report(CarrierEvent::Ended(EndReason::RemoteHangup));
                        break;
                    }
                },
                command = self.control.recv() => match command {
                    None | Some(MediaCommand::Hangup) => {
                        match dialog.bye().await {
                            Ok(()) => self.log("BYE sent".into()),
                            Err(e) => self.log(format!("BYE failed: {e}")),
                        }
                        self.shared.stack.forget(&id);
                        break;
                    }
                    Some(MediaCommand::Play { id, duration, loops, audio, level, .. }) => match (&media, audio) {
                        (Some(media), Some(clip)) => media.play(id, clip, loops, level),
                        _ if loops > 0 => {
                            timed.insert(id, Instant::now() + duration * loops);
                        }
                        _ => {}
                    },
                    Some(MediaCommand::StopPlayback { id }) => {
                        timed.remove(&id);
                        if let Some(media) = &media {
                            media.stop(id);
                        }
                    }
                    Some(MediaCommand::Refer(uri)) => match dialog.refer(format!("<{uri}>"), None, None).await {
                        Ok(Some(response)) if response.status_code.kind() == rsipstack::sip::StatusCodeKind::Successful => {
                            self.log(format!("REFER to {uri}: {}", response.status_code));
                            referring = true;
                        }
                        Ok(Some(response)) => {
                            self.log(format!("REFER to {uri} refused: {}", response.status_code));
                            self.report(CarrierEvent::Transferred { code: response.status_code.code() });
                        }
                        Ok(None) | Err(_) => {
                            self.log(format!("REFER to {uri}: no answer"));
                            self.report(CarrierEvent::Transferred { code: 408 });
                        }
                    },
                    Some(MediaCommand::SendDtmf(digits)) => match &media {
                        Some(media) => {
                            if let Err(e) = media.send_dtmf(&digits) {
                                self.log(format!("DTMF {digits} not sent: {e}"));
                            }
                        }
                        None => self.log(format!("DTMF {digits} not sent: the call has no audio")),
                    },
                    Some(MediaCommand::SetMuted(muted)) => {
                        if let Some(media) = &media {
                            media.set_mute(muted);
                        }
                    }
                    // An answered call has nothing left to ring, answer or refuse.
                    Some(MediaCommand::Ring | MediaCommand::Answer | MediaCommand::Reject(_)) => {}
                    Some(MediaCommand::SetEarmuffed(earmuffed)) => {
                        if let Some(media) = &media {
                            media.set_earmuff(earmuffed);
                        }
                    }
                },
                event = next_media_event(&mut media_events) => match event {
                    Some(MediaEvent::PlaybackFinished(id)) => self.report(CarrierEvent::PlaybackFinished(id)),
                    Some(MediaEvent::Dtmf { digit, .. }) => self.report(CarrierEvent::Dtmf(digit)),
                    Some(MediaEvent::DtmfSent) => {}
                    None => media_events = None,
                },
                _ = tokio::time::sleep_until(sleep_until), if next_end.is_some() => {
                    if let Some((id, _)) = next_end {
                        timed.remove(&id);
                        self.report(CarrierEvent::PlaybackFinished(id));
                    }
                }
            }
        }
        match &media {
            Some(media) => {
                let stats = media.stats();
                self.log(format!(
                    "RTP: {} packets sent, {} received, {} lost; send-time deviation p99 {} ms",
                    stats.packets_sent,
                    stats.packets_received,
                    stats.packets_lost,
                    stats.send_deviation.quantile(0.99).as_millis()
                ));
                media.close();
            }
            None => {
                let packets = rtp.received.load(std::sync::atomic::Ordering::Relaxed);
                if packets > 0 {
                    self.log(format!("{packets} RTP packets received on {}", rtp.local));
                }
            }
        }
    }
}

/// An answered dialog, with the channel the stack reports its later states on.
pub struct Answered {
    pub dialog: InviteDialog,
    pub id: rsipstack::dialog::DialogId,
    pub states: rsipstack::dialog::dialog::DialogStateReceiver,
    pub rtp: RtpSocket,
    pub our_rtp: std::net::SocketAddr,
    pub session_id: u64,
    /// The leg's audio (None: no usable SDP, no audio).
    pub audio: Option<LegAudio>,
}

/// A leg's media session (the media engine's, on the leg's RTP socket) and its events.
pub struct LegAudio {
    pub handle: MediaHandle,
    pub events: mpsc::UnboundedReceiver<MediaEvent>,
    pub codec: sdp::Codec,
    /// Measures what early media brought, until the final response.
    pub early: Option<super::call::EarlyMeter>,
}

/// The next event of the leg's media session, or never without one.
async fn next_media_event(events: &mut Option<mpsc::UnboundedReceiver<MediaEvent>>) -> Option<MediaEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The status code of a `message/sipfrag` body ("SIP/2.0 200 OK").
fn sipfrag_code(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    text.trim_start().strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}
