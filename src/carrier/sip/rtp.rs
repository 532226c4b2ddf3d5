//! RTP ports: each SIP leg holds one UDP socket (an even port, RTP convention) from the
//! configured range for its whole life, so the address in our SDP is really open. The media
//! engine reads and writes it; until then what arrives is counted and dropped.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::UdpSocket;

pub struct RtpPorts {
    ip: IpAddr,
    min: u16,
    max: u16,
    next: AtomicU16,
}

/// A leg's RTP socket; the port is free again when it is dropped.
pub struct RtpSocket {
    pub socket: Arc<UdpSocket>,
    pub local: SocketAddr,
    /// Packets received so far.
    pub received: Arc<AtomicU64>,
    drain: tokio::task::JoinHandle<()>,
}

impl RtpSocket {
    /// The socket for the media engine: nothing else reads it from now on.
    pub fn take_for_media(&mut self) -> Arc<UdpSocket> {
        self.drain.abort();
        self.socket.clone()
    }
}

impl Drop for RtpSocket {
    fn drop(&mut self) {
        self.drain.abort();
    }
}

impl RtpPorts {
    pub fn new(ip: IpAddr, min: u16, max: u16) -> RtpPorts {
        let min = min + min % 2;
        RtpPorts { ip, min, max: max.max(min), next: AtomicU16::new(min) }
    }

    /// Binds the next free even port of the range (None: every port is taken).
    pub fn open(&self) -> Option<RtpSocket> {
        let slots = ((self.max - self.min) / 2 + 1) as usize;
        for _ in 0..slots {
            let port = self.next_port();
            let Ok(std_socket) = std::net::UdpSocket::bind(SocketAddr::new(self.ip, port)) else { continue };
            if std_socket.set_nonblocking(true).is_err() {
                continue;
            }
            let Ok(socket) = UdpSocket::from_std(std_socket) else { continue };
            let socket = Arc::new(socket);
            let received = Arc::new(AtomicU64::new(0));
            let drain = tokio::spawn(drain(socket.clone(), received.clone()));
            return Some(RtpSocket { local: SocketAddr::new(self.ip, port), socket, received, drain });
        }
        None
    }

    fn next_port(&self) -> u16 {
        let span = self.max - self.min + 1;
        let n = self.next.fetch_add(2, Ordering::Relaxed);
        self.min + (n.wrapping_sub(self.min)) % span / 2 * 2
    }
}

async fn drain(socket: Arc<UdpSocket>, received: Arc<AtomicU64>) {
    let mut buffer = [0u8; 2048];
    while socket.recv_from(&mut buffer).await.is_ok() {
        received.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn even_ports_from_the_range_and_reused_after_drop() {
        let ports = RtpPorts::new("127.0.0.1".parse().unwrap(), 41000, 41003);
        let a = ports.open().unwrap();
        let b = ports.open().unwrap();
        assert_eq!((a.local.port(), b.local.port()), (41000, 41002));
        assert!(ports.open().is_none(), "the range holds two even ports");
        drop(a);
        // The drain task lets go of the socket when the runtime next polls it.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(ports.open().unwrap().local.port(), 41000);
    }
}
