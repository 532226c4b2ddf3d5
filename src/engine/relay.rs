//! Conversations across instances. A named conversation's audio is mixed by one instance, its
//! owner (`conversation_rooms`: the first instance a member joined on, or the next one when
//! that instance is gone). A member whose leg runs on another instance joins through this
//! relay: its instance sends the owner the member's voice, one UDP datagram per 20 ms frame,
//! and the owner sends back what the member hears. On the owner the member is a PCM media
//! session in the room like any local member, so canHear/canSpeak, mute and recording apply.
//!
//! Datagrams: a kind byte, the member's leg uuid (16 bytes), then
//! - `J` join: JSON `{"room", "can_speak", "can_hear"}` (member → owner; repeated each second
//!   as a keep-alive),
//! - `A` audio: 160 samples of 16-bit little-endian PCM (member → owner),
//! - `M` mix: the same (owner → member),
//! - `L` leave (member → owner).
//!
//! A member silent for `MEMBER_TIMEOUT` is dropped by the owner (its instance died). The relay
//! is a UDP port: a join must carry the room's token (chosen by the owner, kept in
//! `conversation_rooms`, so only instances reading the database know it), and audio is taken
//! only for members that joined.

use super::actions::Rooms;
use crate::media::{Frame, MediaHandle, MediaSession, MediaTap, FRAME_SAMPLES};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

const MEMBER_TIMEOUT: Duration = Duration::from_secs(3);
const KEEP_ALIVE: Duration = Duration::from_secs(1);
const HEADER: usize = 17;
const FRAME_BYTES: usize = FRAME_SAMPLES * 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub room: String,
    pub token: Uuid,
    pub can_speak: Option<Vec<String>>,
    pub can_hear: Option<Vec<String>>,
}

/// A member on another instance, as the owner holds it.
struct RemoteMember {
    session: MediaHandle,
    room: String,
    last_heard: Instant,
}

pub struct RoomRelay {
    socket: Arc<UdpSocket>,
    /// Where other instances reach this relay.
    pub address: SocketAddr,
    /// Owner side: members of this instance's rooms whose legs run elsewhere.
    remote: Mutex<HashMap<Uuid, RemoteMember>>,
    /// Member side: the mix each of this instance's remote members hears.
    mixes: Mutex<HashMap<Uuid, mpsc::Sender<Frame>>>,
    /// Owner side: the token each of this instance's rooms admits members with.
    tokens: Mutex<HashMap<String, Uuid>>,
}

impl RoomRelay {
    /// Binds on `bind` (a free port), reachable by other instances at `advertised`, and starts
    /// serving.
    pub fn start(bind: std::net::IpAddr, advertised: std::net::IpAddr, rooms: Arc<Rooms>) -> std::io::Result<Arc<RoomRelay>> {
        let std_socket = std::net::UdpSocket::bind(SocketAddr::new(bind, 0))?;
        std_socket.set_nonblocking(true)?;
        let address = SocketAddr::new(advertised, std_socket.local_addr()?.port());
        let socket = Arc::new(UdpSocket::from_std(std_socket)?);
        let relay = Arc::new(RoomRelay {
            socket,
            address,
            remote: Mutex::new(HashMap::new()),
            mixes: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        });
        tokio::spawn(serve(Arc::downgrade(&relay), relay.socket.clone(), rooms));
        Ok(relay)
    }

    /// Joins this instance's leg `leg` (audio `tap`) to a room owned at `owner`; it hears the
    /// room's mix until the returned membership is dropped.
    pub fn join_remote(self: &Arc<Self>, owner: SocketAddr, leg: Uuid, tap: &MediaTap, join: JoinRequest) -> RemoteMembership {
        let (mix_tx, mix_rx) = mpsc::channel(50);
        self.mixes.lock().unwrap_or_else(|e| e.into_inner()).insert(leg, mix_tx);
        tap.attach(ROOM_INPUT, mix_rx, 0.0);
        let mut voice = tap.subscribe_received();
        let socket = self.socket.clone();
        let join_message = datagram(b'J', leg, serde_json::to_vec(&join).unwrap_or_default().as_slice());
        let task = tokio::spawn(async move {
            let _ = socket.send_to(&join_message, owner).await;
            let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
            loop {
                tokio::select! {
                    frame = voice.recv() => match frame {
                        Some(frame) => {
                            let _ = socket.send_to(&datagram(b'A', leg, &pcm_bytes(&frame)), owner).await;
                        }
                        None => break,
                    },
                    _ = keep_alive.tick() => {
                        let _ = socket.send_to(&join_message, owner).await;
                    }
                }
            }
        });
        RemoteMembership { relay: self.clone(), leg, owner, task, tap: tap.clone() }
    }

    /// This instance owns room `key`: members from elsewhere join it with `token`.
    pub fn admit(&self, key: &str, token: Uuid) {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string(), token);
    }

    fn admits(&self, join: &JoinRequest) -> bool {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).get(&join.room) == Some(&join.token)
    }

    /// Members of this instance's rooms on other instances.
    pub fn remote_members(&self) -> usize {
        self.remote.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The live-input id under which a remote member's leg hears the room's mix.
const ROOM_INPUT: u64 = u64::MAX - 2;

/// A leg's membership of a room another instance owns; dropping it leaves.
pub struct RemoteMembership {
    relay: Arc<RoomRelay>,
    leg: Uuid,
    owner: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    tap: MediaTap,
}

impl Drop for RemoteMembership {
    fn drop(&mut self) {
        self.task.abort();
        self.tap.detach(ROOM_INPUT);
        self.relay.mixes.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.leg);
        let _ = self.relay.socket.try_send_to(&datagram(b'L', self.leg, &[]), self.owner);
    }
}

fn datagram(kind: u8, leg: Uuid, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.push(kind);
    out.extend_from_slice(leg.as_bytes());
    out.extend_from_slice(body);
    out
}

fn pcm_bytes(frame: &Frame) -> Vec<u8> {
    frame.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn pcm_frame(bytes: &[u8]) -> Option<Frame> {
    if bytes.len() != FRAME_BYTES {
        return None;
    }
    let mut frame = [0; FRAME_SAMPLES];
    for (sample, pair) in frame.iter_mut().zip(bytes.chunks_exact(2)) {
        *sample = i16::from_le_bytes([pair[0], pair[1]]);
    }
    Some(frame)
}

async fn serve(relay: std::sync::Weak<RoomRelay>, socket: Arc<UdpSocket>, rooms: Arc<Rooms>) {
    let mut buffer = [0u8; 2048];
    let mut sweep = tokio::time::interval(MEMBER_TIMEOUT / 3);
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buffer) => received,
            _ = sweep.tick() => {
                let Some(relay) = relay.upgrade() else { return };
                let gone: Vec<(Uuid, RemoteMember)> = {
                    let mut remote = relay.remote.lock().unwrap_or_else(|e| e.into_inner());
                    let stale: Vec<Uuid> = remote.iter().filter(|(_, m)| m.last_heard.elapsed() > MEMBER_TIMEOUT).map(|(id, _)| *id).collect();
                    stale.into_iter().filter_map(|id| remote.remove(&id).map(|m| (id, m))).collect()
                };
                for (leg, member) in gone {
                    rooms.leave_remote(&member.room, leg);
                }
                continue;
            }
        };
        let Some(relay) = relay.upgrade() else { return };
        let Ok((len, from)) = received else { continue };
        if len < HEADER {
            continue;
        }
        let Ok(leg) = Uuid::from_slice(&buffer[1..HEADER]) else { continue };
        let body = &buffer[HEADER..len];
        match buffer[0] {
            b'A' => {
                if let (Some(frame), Some(member)) = (pcm_frame(body), relay.remote.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&leg)) {
                    member.session.push_received([frame]);
                    member.last_heard = Instant::now();
                }
            }
            b'M' => {
                let mix = relay.mixes.lock().unwrap_or_else(|e| e.into_inner()).get(&leg).cloned();
                if let (Some(frame), Some(mix)) = (pcm_frame(body), mix) {
                    let _ = mix.try_send(frame);
                }
            }
            b'J' => {
                let Ok(join) = serde_json::from_slice::<JoinRequest>(body) else { continue };
                if !relay.admits(&join) {
                    continue;
                }
                let mut remote = relay.remote.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(member) = remote.get_mut(&leg) {
                    member.last_heard = Instant::now();
                    continue;
                }
                // What the room mixes for the member goes back to it as `M` datagrams.
                let (mix_tx, mut mix_rx) = mpsc::channel::<Frame>(50);
                let (session, _events) = MediaSession::start_pcm(mix_tx);
                rooms.join_remote(&join.room, leg, session.tap(), join.can_speak.clone(), join.can_hear.clone());
                let back = socket.clone();
                tokio::spawn(async move {
                    while let Some(frame) = mix_rx.recv().await {
                        let _ = back.send_to(&datagram(b'M', leg, &pcm_bytes(&frame)), from).await;
                    }
                });
                remote.insert(leg, RemoteMember { session, room: join.room, last_heard: Instant::now() });
            }
            b'L' => {
                let member = relay.remote.lock().unwrap_or_else(|e| e.into_inner()).remove(&leg);
                if let Some(member) = member {
                    rooms.leave_remote(&member.room, leg);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_a_join_with_the_rooms_token_is_admitted() {
        let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
        let relay = RoomRelay::start(loopback, loopback, Arc::new(Rooms::default())).unwrap();
        let token = Uuid::new_v4();
        relay.admit("app/room", token);
        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let join = |token| serde_json::to_vec(&JoinRequest { room: "app/room".into(), token, can_speak: None, can_hear: None }).unwrap();
        let (intruder, member) = (Uuid::new_v4(), Uuid::new_v4());
        stranger.send_to(&datagram(b'J', intruder, &join(Uuid::new_v4())), relay.address).await.unwrap();
        stranger.send_to(&datagram(b'A', intruder, &pcm_bytes(&[1000; FRAME_SAMPLES])), relay.address).await.unwrap();
        stranger.send_to(&datagram(b'J', member, &join(token)), relay.address).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while relay.remote_members() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let members: Vec<Uuid> = relay.remote.lock().unwrap().keys().copied().collect();
        assert_eq!(members, vec![member], "the intruder's join and audio were ignored");
    }

    #[test]
    fn frames_cross_as_little_endian_pcm() {
        let mut frame = [0i16; FRAME_SAMPLES];
        frame[0] = -2;
        frame[159] = 300;
        let leg = Uuid::new_v4();
        let message = datagram(b'A', leg, &pcm_bytes(&frame));
        assert_eq!(message.len(), HEADER + FRAME_BYTES);
        assert_eq!(Uuid::from_slice(&message[1..HEADER]).unwrap(), leg);
        assert_eq!(pcm_frame(&message[HEADER..]), Some(frame));
        assert_eq!(pcm_frame(&message[HEADER..HEADER + 10]), None);
    }
}
