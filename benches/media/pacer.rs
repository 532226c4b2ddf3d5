//! The baseline: a bare UDP pacer, the simplest honest one. One tokio task and one UDP socket
//! per stream, as the media engine has one session per leg: a `tokio::time::interval` of 20 ms
//! (deadlines on the stream's own grid, start + 20 ms × tick, never the last wake-up + 20 ms; a
//! late tick is sent at once, `MissedTickBehavior::Burst`), send a 172-byte RTP packet (the same
//! µ-law tone, already encoded), repeat. No mixing, no locks, no encoding: what pacing alone
//! costs and how exact it is with this machine's tokio timer. With `receive` (when the far ends
//! talk back, as in the bench's bridges and conference modes), the same task also reads its
//! socket and drops what comes: the least a leg with audio both ways costs.

use super::meter::PACKET_BYTES;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const FRAME: Duration = Duration::from_millis(20);

/// Streams to `targets`, stream i starting at `start` + i / `rate` seconds (plus a random part of
/// a frame: calls are answered at any moment, so their clocks tick at every phase of the 20 ms)
/// and lasting `hold`; each task returns the packets it sent and received. Sockets are bound
/// before this returns.
pub async fn start(
    targets: &[SocketAddr],
    start: Instant,
    rate: f64,
    hold: Duration,
    payloads: Arc<Vec<[u8; 160]>>,
    receive: bool,
) -> anyhow::Result<Vec<JoinHandle<(u64, u64)>>> {
    let mut tasks = Vec::with_capacity(targets.len());
    for (i, &target) in targets.iter().enumerate() {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let phase = FRAME.mul_f64(rand::random::<f64>());
        let begin = start + Duration::from_secs_f64(i as f64 / rate) + phase;
        tasks.push(tokio::spawn(stream(socket, target, begin, hold, payloads.clone(), receive)));
    }
    Ok(tasks)
}

async fn stream(socket: UdpSocket, target: SocketAddr, start: Instant, hold: Duration, payloads: Arc<Vec<[u8; 160]>>, receive: bool) -> (u64, u64) {
    let ssrc: u32 = rand::random();
    let (mut seq, timestamp_base): (u16, u32) = (rand::random(), rand::random());
    let mut packet = [0u8; PACKET_BYTES];
    packet[0] = 0x80; // version 2, no padding, extension or CSRC
    packet[1] = 0; // PCMU
    packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
    let ticks = (hold.as_micros() / FRAME.as_micros()) as u32;
    let mut clock = tokio::time::interval_at(start, FRAME);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut sent, mut received) = (0, 0);
    let mut buffer = [0u8; 2048];
    for tick in 0..ticks {
        loop {
            tokio::select! {
                biased;
                _ = clock.tick() => break,
                Ok(_) = socket.recv_from(&mut buffer), if receive => received += 1,
            }
        }
        packet[1] = if tick == 0 { 0x80 } else { 0 }; // marker on the first packet
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        packet[4..8].copy_from_slice(&timestamp_base.wrapping_add(tick * 160).to_be_bytes());
        packet[12..].copy_from_slice(&payloads[tick as usize % payloads.len()]);
        if socket.send_to(&packet, target).await.is_ok() {
            sent += 1;
        }
        seq = seq.wrapping_add(1);
    }
    (sent, received)
}
