//! Vonage's `websocket` endpoint as a leg: Outdial opens a WebSocket to the customer's server
//! and carries the leg's audio on it. The first message is text,
//! `{"event":"websocket:connected","content-type":"audio/l16;rate=16000", ...headers}`; then
//! binary messages of 20 ms of 16-bit little-endian PCM at the content-type's rate go both ways
//! (what the leg hears goes to the server; what the server sends is played into the call, in
//! order, however fast it arrives). Keys pressed in the call go as
//! `{"event":"websocket:dtmf","digit":"5","duration":260}`. The server closing the socket (or
//! the connection failing) ends the leg as `EndReason::Disconnected`, which the engine reports
//! as Vonage's `disconnected` event.
//!
//! `wss://` is TLS (the customers' client configuration, `webhooks::tls`) over the TCP
//! connection the address guard allowed, so a name cannot slip past the guard at TLS time.
//!
//! The leg's audio is a PCM media session (`MediaSession::start_pcm`): bridges, conversations,
//! recordings and talk work on it as on a SIP leg.

use super::{CarrierEvent, DialRequest, EndReason, LegHandle, MediaCommand, Reporter};
use crate::media::rate::RateConverter;
use crate::media::{Frame, MediaEvent, MediaSession, FRAME_SAMPLES, SAMPLE_RATE};
use crate::ncco::Endpoint;
use crate::webhooks::address_guard::AddressGuard;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::either::Either;

/// A ws:// connection (plain TCP) or a wss:// one (TLS over TCP).
type Transport = Either<TcpStream, TlsStream<TcpStream>>;

/// Largest message taken from a server: 1 MiB is half a minute of 16 kHz audio.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Opens websocket legs.
pub struct WebSocketCarrier {
    guard: AddressGuard,
    connect_timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
}

impl WebSocketCarrier {
    /// `tls`: how wss:// servers are verified (the roots webhooks trust).
    pub fn new(guard: AddressGuard, connect_timeout: Duration, tls: Arc<rustls::ClientConfig>) -> WebSocketCarrier {
        WebSocketCarrier { guard, connect_timeout, tls }
    }
}

impl super::Carrier for WebSocketCarrier {
    fn dial(&self, request: DialRequest) -> LegHandle {
        let (events, receiver) = Reporter::channel();
        let (control, commands) = mpsc::unbounded_channel();
        let leg = WebSocketLeg {
            request,
            events,
            commands,
            guard: self.guard.clone(),
            connect_timeout: self.connect_timeout,
            tls: self.tls.clone(),
        };
        tokio::spawn(leg.run());
        LegHandle { events: receiver, control }
    }

    fn name(&self) -> &'static str {
        "websocket"
    }

    fn plays_audio(&self) -> bool {
        true
    }
}

struct WebSocketLeg {
    request: DialRequest,
    events: Reporter,
    commands: mpsc::UnboundedReceiver<MediaCommand>,
    guard: AddressGuard,
    connect_timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
}

/// The PCM rate a content-type names (`audio/l16;rate=8000`, `16000` or `24000`; 16 kHz when
/// it names none).
pub fn rate_of(content_type: &str) -> u32 {
    let lower = content_type.to_ascii_lowercase().replace(' ', "");
    match lower.split_once("rate=").map(|(_, rate)| rate.trim_end_matches(|c: char| !c.is_ascii_digit())) {
        Some("8000") => 8000,
        Some("24000") => 24_000,
        _ => 16_000,
    }
}

impl WebSocketLeg {
    fn report(&self, event: CarrierEvent) {
        let _ = self.events.report(event);
    }

    fn fail(&self, why: String) {
        self.report(CarrierEvent::Log(why));
        self.report(CarrierEvent::Ended(EndReason::Failed("websocket_unavailable".into())));
    }

    async fn run(mut self) {
        let Endpoint::Websocket { uri, content_type, headers, .. } = self.request.to.clone() else {
            self.fail("not a websocket endpoint".into());
            return;
        };
        self.report(CarrierEvent::Ringing);
        let auth = self.request.websocket_authorization.as_deref();
        let socket = match tokio::time::timeout(self.connect_timeout, open(&uri, auth, &self.guard, &self.tls)).await {
            Ok(Ok(socket)) => socket,
            Ok(Err(why)) => return self.fail(format!("websocket {uri} not opened: {why}")),
            Err(_) => return self.fail(format!("websocket {uri} not opened within {} ms", self.connect_timeout.as_millis())),
        };
        let rate = rate_of(&content_type);
        let mut first = Map::new();
        first.insert("event".into(), json!("websocket:connected"));
        first.insert("content-type".into(), json!(content_type));
        for (key, value) in headers.unwrap_or_default() {
            first.entry(key).or_insert(value);
        }
        let (mut sink, mut stream) = socket.split();
        if let Err(e) = sink.send(Message::text(Value::Object(first).to_string())).await {
            return self.fail(format!("websocket {uri}: the first message was not sent ({e})"));
        }
        let (heard_tx, mut heard) = mpsc::channel::<Frame>(50);
        let (media, mut media_events) = MediaSession::start_pcm(heard_tx);
        self.report(CarrierEvent::Media(media.tap()));
        self.report(CarrierEvent::Log(format!("websocket {uri} open ({content_type})")));
        self.report(CarrierEvent::Answered { by_machine: false });
        // Rates are 8 or 16 kHz: the converters cannot fail to build.
        let (Ok(mut to_server), Ok(mut from_server)) = (RateConverter::new(SAMPLE_RATE, rate), RateConverter::new(rate, SAMPLE_RATE)) else {
            return self.fail("no rate converter".into());
        };
        let mut partial: Vec<i16> = Vec::new();
        let mut odd_byte: Option<u8> = None;
        let end = loop {
            tokio::select! {
                frame = heard.recv() => {
                    let Some(frame) = frame else { break None };
                    let samples = to_server.push(&frame);
                    if samples.is_empty() {
                        continue;
                    }
                    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
                    if sink.send(Message::binary(bytes)).await.is_err() {
                        break Some("the websocket failed while sending".to_string());
                    }
                }
                message = stream.next() => match message {
                    Some(Ok(Message::Binary(bytes))) => {
                        let samples = le_samples(&bytes, &mut odd_byte);
                        partial.extend(from_server.push(&samples));
                        let whole = partial.len() / FRAME_SAMPLES * FRAME_SAMPLES;
                        let frames = partial.drain(..whole).collect::<Vec<i16>>();
                        media.push_received(frames.chunks_exact(FRAME_SAMPLES).map(|c| {
                            let mut frame = [0; FRAME_SAMPLES];
                            frame.copy_from_slice(c);
                            frame
                        }));
                    }
                    Some(Ok(Message::Text(text))) => {
                        // Vonage's servers may ask to drop the audio not yet played.
                        if serde_json::from_str::<Value>(&text).is_ok_and(|v| v["action"] == "clear") {
                            media.clear_received();
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => break Some("the websocket server closed the connection".to_string()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break Some(format!("the websocket failed: {e}")),
                },
                command = self.commands.recv() => match command {
                    None | Some(MediaCommand::Hangup) => {
                        let _ = sink.send(Message::Close(None)).await;
                        break None;
                    }
                    Some(MediaCommand::SendDtmf(digits)) => {
                        for digit in digits.chars().filter(|&c| c != 'p') {
                            let event = json!({"event": "websocket:dtmf", "digit": digit.to_string(), "duration": 260});
                            let _ = sink.send(Message::text(event.to_string())).await;
                        }
                    }
                    Some(MediaCommand::Play { id, audio: Some(clip), loops, level, .. }) => media.play(id, clip, loops, level),
                    Some(MediaCommand::Play { id, .. }) => self.report(CarrierEvent::PlaybackFinished(id)),
                    Some(MediaCommand::StopPlayback { id }) => {
                        media.stop(id);
                    }
                    Some(MediaCommand::Refer(_)) => self.report(CarrierEvent::Transferred { code: 0 }),
                    Some(MediaCommand::SetMuted(on)) => media.set_mute(on),
                    Some(MediaCommand::SetEarmuffed(on)) => media.set_earmuff(on),
                    // A websocket is dialled, never an inbound call.
                    Some(MediaCommand::Ring | MediaCommand::Answer | MediaCommand::Reject(_)) => {}
                },
                event = media_events.recv() => if let Some(MediaEvent::PlaybackFinished(id)) = event {
                    self.report(CarrierEvent::PlaybackFinished(id));
                },
            }
        };
        media.close();
        if let Some(why) = end {
            self.report(CarrierEvent::Log(why));
            self.report(CarrierEvent::Ended(EndReason::Disconnected));
        }
    }
}

/// Little-endian 16-bit samples, carrying an odd trailing byte to the next message.
fn le_samples(bytes: &[u8], odd_byte: &mut Option<u8>) -> Vec<i16> {
    let mut data = Vec::with_capacity(bytes.len() + 1);
    data.extend(odd_byte.take());
    data.extend_from_slice(bytes);
    if data.len() % 2 == 1 {
        *odd_byte = data.pop();
    }
    data.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

/// Connects to a permitted address of the URL's host (the same rule as webhooks), then, for
/// wss://, verifies the server's certificate for that host, then upgrades to WebSocket.
async fn open(
    uri: &str,
    authorization: Option<&str>,
    guard: &AddressGuard,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<WebSocketStream<Transport>, String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = url::Url::parse(uri).map_err(|e| e.to_string())?;
    let secure = match url.scheme() {
        "ws" => false,
        "wss" => true,
        other => return Err(format!("{other}:// is not a WebSocket URI: use ws:// or wss://")),
    };
    let host = url.host_str().ok_or("the URI has no host")?.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url.port_or_known_default().unwrap_or(if secure { 443 } else { 80 });
    let addresses: Vec<std::net::SocketAddr> =
        tokio::net::lookup_host((host.as_str(), port)).await.map_err(|e| format!("{host}: {e}"))?.collect();
    let permitted: Vec<&std::net::SocketAddr> = addresses.iter().filter(|a| guard.permits(a.ip())).collect();
    if permitted.is_empty() {
        return Err(format!(
            "{host} resolves only to private addresses (allowed with webhooks.allow_private_addresses or webhooks.allowed_networks)"
        ));
    }
    // Each permitted address in turn (a name may have an IPv6 and an IPv4 one, the server
    // listening on one of them).
    let mut last_error = String::new();
    let mut connected = None;
    for address in permitted {
        match TcpStream::connect(address).await {
            Ok(tcp) => {
                connected = Some(tcp);
                break;
            }
            Err(e) => last_error = format!("{address}: {e}"),
        }
    }
    let tcp = connected.ok_or(last_error)?;
    let _ = tcp.set_nodelay(true);
    let transport = if secure {
        // The name the certificate must hold: the URI's host, a name or an IP address.
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await.map_err(|e| format!("TLS with {host}: {e}"))?;
        Either::Right(stream)
    } else {
        Either::Left(tcp)
    };
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let mut request = uri.into_client_request().map_err(|e| e.to_string())?;
    if let Some(value) = authorization {
        let value = value.parse().map_err(|_| "authorization.value is not a valid header value".to_string())?;
        request.headers_mut().insert("authorization", value);
    }
    let (socket, _) = tokio_tungstenite::client_async_with_config(request, transport, Some(config)).await.map_err(|e| e.to_string())?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_split_across_messages_are_kept() {
        let mut odd = None;
        assert_eq!(le_samples(&[1, 0, 2], &mut odd), vec![1]);
        assert_eq!(le_samples(&[0, 3, 0], &mut odd), vec![2, 3]);
        assert_eq!(rate_of("audio/l16;rate=8000"), 8000);
        assert_eq!(rate_of("audio/l16; rate=16000"), 16_000);
        assert_eq!(rate_of("audio/l16;rate=24000"), 24_000);
    }
}
