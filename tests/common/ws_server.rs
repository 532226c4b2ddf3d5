//! A WebSocket server as a customer runs for Vonage's websocket endpoint: records what Outdial
//! sends and answers with audio; over plain TCP (ws://) or TLS (wss://).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// What the test's WebSocket server got: its first (text) message, the binary messages' sizes
/// and samples, and the text messages after the first.
#[derive(Default)]
pub struct Received {
    pub first: Option<serde_json::Value>,
    pub binary_sizes: Vec<usize>,
    pub samples: Vec<i16>,
    pub texts: Vec<serde_json::Value>,
    /// The upgrade request's Authorization header.
    pub authorization: Option<String>,
    /// The upgrade request's path.
    pub path: Option<String>,
}

/// A WebSocket server (Vonage's customer side): records what arrives, sends `reply` (16 kHz
/// PCM, all at once: Outdial must play it in order at its pace) once connected, and closes
/// after `hold`.
pub async fn start(reply: Vec<i16>, hold: Duration) -> (u16, Arc<Mutex<Received>>) {
    listen(reply, hold, None).await
}

/// As `start`, over TLS with a certificate `ca` signed for 127.0.0.1 and localhost (wss://).
pub async fn start_tls(reply: Vec<i16>, hold: Duration, ca: &super::tls::TestCa) -> (u16, Arc<Mutex<Received>>) {
    listen(reply, hold, Some(ca.acceptor())).await
}

async fn listen(reply: Vec<i16>, hold: Duration, tls: Option<tokio_rustls::TlsAcceptor>) -> (u16, Arc<Mutex<Received>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Received::default()));
    let record = received.clone();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match tls {
            Some(acceptor) => serve(acceptor.accept(tcp).await.expect("TLS handshake"), reply, hold, record).await,
            None => serve(tcp, reply, hold, record).await,
        }
    });
    (port, received)
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, reply: Vec<i16>, hold: Duration, record: Arc<Mutex<Received>>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let seen = record.clone();
    let capture = move |request: &tokio_tungstenite::tungstenite::handshake::server::Request, response| {
        let mut seen = seen.lock().unwrap();
        seen.authorization = request.headers().get("authorization").and_then(|v| v.to_str().ok()).map(String::from);
        seen.path = Some(request.uri().path().to_string());
        Ok(response)
    };
    let mut socket = tokio_tungstenite::accept_hdr_async(stream, capture).await.unwrap();
    let until = tokio::time::Instant::now() + hold;
    let mut replied = false;
    loop {
        let message = tokio::select! {
            m = socket.next() => m,
            _ = tokio::time::sleep_until(until) => break,
        };
        let Some(Ok(message)) = message else { return };
        {
            let mut got = record.lock().unwrap();
            match message {
                Message::Text(text) => {
                    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                    if got.first.is_none() {
                        got.first = Some(value)
                    } else {
                        got.texts.push(value)
                    }
                }
                Message::Binary(bytes) => {
                    got.binary_sizes.push(bytes.len());
                    got.samples.extend(bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])));
                }
                _ => {}
            }
        }
        if !replied {
            replied = true;
            for chunk in reply.chunks(320) {
                let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
                socket.send(Message::binary(bytes)).await.unwrap();
            }
        }
    }
    let _ = socket.close(None).await;
}
