//! The wire meter: N UDP sockets on 127.0.0.1, each the far end of one RTP stream, read on a
//! thread of their own. The kernel stamps each datagram as it reaches its socket
//! (SO_TIMESTAMPNS, CLOCK_REALTIME), so when the meter's thread gets to run does not count, and
//! it reads in sweeps every 2 ms (epoll, then every ready socket drained): some 100 packets a
//! wake-up at 50,000 a second instead of a wake-up each, to take as little CPU from what it
//! measures as it can.
//!
//! Deviation: a packet's offset is its arrival minus its RTP timestamp's time since the stream's
//! first packet (8 kHz: 125 µs a sample); its deviation is that offset minus the stream's smallest,
//! i.e. how much later than the stream's most punctual packet it arrived, on the 20 ms grid of the
//! sender's own clock. On loopback that is how late it was sent. A tick the sender skipped is a
//! timestamp jump without a sequence gap (counted as skipped, not as deviation); a sequence gap
//! is loss.
//!
//! A talking far end (`Meter::start` with a `Talk`): each socket, once the first packet has come,
//! also sends 20 ms RTP packets of the far end's voice (a tone) back to where those packets come
//! from, every 20 ms on a grid of its own, from a second thread, until the sender has been quiet
//! for 1 s; as a phone would, from the address the SDP answer named, so the sender's symmetric
//! RTP keeps sending to this socket. Given the far ends' tone to listen for, the meter sorts
//! what it receives: silence, that tone (by its zero crossings), or other audio: whether a
//! bridge or a conversation carried the other side's voice.

use hdrhistogram::Histogram;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// RTP header (12 bytes) + 20 ms of G.711 (160 bytes): what both senders send.
pub const PACKET_BYTES: usize = 172;
const SAMPLE_NS: i64 = 125_000;
const FRAME_SAMPLES: i64 = 160;
/// The pause between sweeps: packets wait in their sockets meanwhile, already stamped.
const SWEEP: Duration = Duration::from_millis(2);
const FRAME: Duration = Duration::from_millis(20);
/// A talking far end stops once the sender has been quiet this long (its call ended).
const QUIET_NS: i64 = 1_000_000_000;
/// A talking far end more than this late skips ahead (as a phone's clock would) instead of bursting.
const MAX_BURST: Duration = Duration::from_millis(60);

/// What the meter has seen so far, for the bench to watch while streams run.
pub struct Live {
    /// Sockets that have received a packet.
    pub streams_started: AtomicUsize,
    pub packets: AtomicU64,
    /// Kernel stamp (ns since the epoch) of the first packet on any socket; i64::MAX before.
    pub first_ns: AtomicI64,
    /// Packets the talking far ends sent.
    pub far_end_packets: AtomicU64,
}

/// What the far ends say (`Meter::start`): one 20 ms PCMU payload, sent in every packet.
#[derive(Clone, Copy)]
pub struct Talk {
    pub payload: [u8; 160],
    /// The name of the thread that sends it (its CPU shows apart).
    pub thread: &'static str,
}

/// A socket's sender as the meter saw it: where its packets come from, and when the last came
/// (kernel stamp, ns since the epoch).
#[derive(Default)]
struct Peer {
    addr: OnceLock<SocketAddr>,
    last_ns: AtomicI64,
}

pub struct Meter {
    pub addrs: Vec<SocketAddr>,
    pub live: Arc<Live>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Stream>>,
    talker: Option<std::thread::JoinHandle<()>>,
}

impl Meter {
    /// Binds `n` sockets and starts reading them on a thread named `name`; with `talk`, each
    /// socket's far end also talks back (see the module's doc); with `tone_hz`, the meter sorts
    /// what each packet carries (`Heard`: a tone of that frequency or not).
    pub fn start(n: usize, name: &str, talk: Option<Talk>, tone_hz: Option<f64>) -> anyhow::Result<Meter> {
        let mut sockets = Vec::with_capacity(n);
        let mut addrs = Vec::with_capacity(n);
        for _ in 0..n {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            socket.set_nonblocking(true)?;
            stamp_arrivals(socket.as_raw_fd())?;
            addrs.push(socket.local_addr()?);
            sockets.push(socket);
        }
        let sockets = Arc::new(sockets);
        let live = Arc::new(Live {
            streams_started: AtomicUsize::new(0),
            packets: AtomicU64::new(0),
            first_ns: AtomicI64::new(i64::MAX),
            far_end_packets: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let peers: Option<Arc<[Peer]>> = talk.map(|_| (0..n).map(|_| Peer::default()).collect());
        let talker = match (talk, &peers) {
            (Some(talk), Some(peers)) => {
                let (sockets, peers, live, stop) = (sockets.clone(), peers.clone(), live.clone(), stop.clone());
                Some(std::thread::Builder::new().name(talk.thread.into()).spawn(move || far_ends(&sockets, &peers, talk.payload, &live, &stop))?)
            }
            _ => None,
        };
        let (thread_live, thread_stop) = (live.clone(), stop.clone());
        let tone = tone_hz.map(tone_crossings);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || read(&sockets, peers.as_deref(), tone, &thread_live, &thread_stop))?;
        Ok(Meter { addrs, live, stop, thread, talker })
    }

    /// Stops reading (and talking); every socket's stream, in the order of `addrs`.
    pub fn finish(self) -> Vec<Stream> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(talker) = self.talker {
            talker.join().expect("far-end thread");
        }
        self.thread.join().expect("meter thread")
    }
}

/// Sign changes a 20 ms packet of a `hz` tone has (two a period), give or take a tenth.
fn tone_crossings(hz: f64) -> RangeInclusive<u32> {
    let expected = 2.0 * hz * FRAME.as_secs_f64();
    (expected * 0.9).floor() as u32..=(expected * 1.1).ceil() as u32
}

/// SO_TIMESTAMPNS: every datagram comes with the kernel's receive time.
fn stamp_arrivals(fd: RawFd) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and an int option of the right size.
    let rc = unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, (&on as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as u32)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One datagram, its kernel receive time (ns since the epoch) and its source, without blocking.
fn recv_stamped(fd: RawFd, buffer: &mut [u8]) -> std::io::Result<(usize, i64, Option<SocketAddr>)> {
    let mut iov = libc::iovec { iov_base: buffer.as_mut_ptr().cast(), iov_len: buffer.len() };
    // Room for one cmsg with a timespec, u64-aligned as cmsghdr wants.
    let mut control = [0u64; 8];
    // SAFETY: both are plain data; zeroed is their empty value.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    let mut from: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    message.msg_name = (&mut from as *mut libc::sockaddr_in).cast();
    message.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: the iovec and control buffers outlive the call.
    let len = unsafe { libc::recvmsg(fd, &mut message, libc::MSG_DONTWAIT) };
    if len < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: the kernel filled the control buffer; the CMSG_* walk stays within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&message);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                stamp = Some(ts.tv_sec * 1_000_000_000 + ts.tv_nsec);
            }
            cmsg = libc::CMSG_NXTHDR(&message, cmsg);
        }
    }
    let from = (from.sin_family == libc::AF_INET as libc::sa_family_t)
        .then(|| SocketAddr::from((Ipv4Addr::from(u32::from_be(from.sin_addr.s_addr)), u16::from_be(from.sin_port))));
    Ok((len as usize, stamp.unwrap_or_else(realtime_ns), from))
}

/// Now, in the kernel stamps' clock (CLOCK_REALTIME, ns).
pub fn realtime_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// Sweeps the sockets until `stop`: waits for one to be readable (epoll, level-triggered),
/// drains every ready one, pauses `SWEEP`, again. With `peers` (a talking far end), notes where
/// each socket's packets come from; with `tone`, sorts what they carry (see `Heard`).
fn read(sockets: &[UdpSocket], peers: Option<&[Peer]>, tone: Option<RangeInclusive<u32>>, live: &Live, stop: &AtomicBool) -> Vec<Stream> {
    let mut streams: Vec<Stream> = sockets.iter().map(|_| Stream::default()).collect();
    // SAFETY: plain epoll calls on descriptors this thread owns until it returns.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(epoll >= 0, "epoll_create1: {}", std::io::Error::last_os_error());
    for (i, socket) in sockets.iter().enumerate() {
        let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: i as u64 };
        let rc = unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, socket.as_raw_fd(), &mut event) };
        assert!(rc == 0, "epoll_ctl: {}", std::io::Error::last_os_error());
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; sockets.len().max(1)];
    let mut buffer = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        // At most 100 ms asleep, to see `stop`.
        let ready = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, 100) };
        for event in &events[..ready.max(0) as usize] {
            let i = event.u64 as usize;
            let fd = sockets[i].as_raw_fd();
            loop {
                match recv_stamped(fd, &mut buffer) {
                    Ok((len, at_ns, from)) => {
                        if let (Some(peer), Some(from)) = (peers.map(|p| &p[i]), from) {
                            peer.last_ns.store(at_ns, Ordering::Relaxed);
                            if peer.addr.get().is_none() {
                                let _ = peer.addr.set(from);
                            }
                        }
                        streams[i].on_datagram(&buffer[..len], at_ns, tone.as_ref(), live);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        streams[i].errors += 1;
                        break;
                    }
                }
            }
        }
        if ready > 0 {
            std::thread::sleep(SWEEP);
        }
    }
    unsafe { libc::close(epoll) };
    streams
}

/// One far end's voice: its RTP clock and numbering.
struct Voice {
    next: Instant,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    first: bool,
    done: bool,
}

/// The talking far ends (see the module's doc): every `SWEEP`, each socket whose sender is known
/// sends the packets it has due, until its sender has been quiet for `QUIET_NS` or `stop`.
fn far_ends(sockets: &[UdpSocket], peers: &[Peer], payload: [u8; 160], live: &Live, stop: &AtomicBool) {
    let mut voices: Vec<Option<Voice>> = sockets.iter().map(|_| None).collect();
    let mut packet = [0u8; PACKET_BYTES];
    packet[0] = 0x80; // version 2
    packet[12..].copy_from_slice(&payload);
    while !stop.load(Ordering::Relaxed) {
        let (now, now_ns) = (Instant::now(), realtime_ns());
        for (i, voice) in voices.iter_mut().enumerate() {
            let Some(to) = peers[i].addr.get() else { continue };
            let voice = voice.get_or_insert_with(|| Voice {
                next: now,
                seq: rand::random(),
                timestamp: rand::random(),
                ssrc: rand::random(),
                first: true,
                done: false,
            });
            if voice.done || voice.next > now {
                continue;
            }
            if now_ns - peers[i].last_ns.load(Ordering::Relaxed) > QUIET_NS {
                voice.done = true;
                continue;
            }
            while now.duration_since(voice.next) > MAX_BURST {
                voice.next += FRAME;
                voice.timestamp = voice.timestamp.wrapping_add(FRAME_SAMPLES as u32);
            }
            while voice.next <= now {
                packet[1] = if voice.first { 0x80 } else { 0 }; // PCMU, the marker on the first
                packet[2..4].copy_from_slice(&voice.seq.to_be_bytes());
                packet[4..8].copy_from_slice(&voice.timestamp.to_be_bytes());
                packet[8..12].copy_from_slice(&voice.ssrc.to_be_bytes());
                if sockets[i].send_to(&packet, to).is_ok() {
                    live.far_end_packets.fetch_add(1, Ordering::Relaxed);
                }
                voice.first = false;
                voice.seq = voice.seq.wrapping_add(1);
                voice.timestamp = voice.timestamp.wrapping_add(FRAME_SAMPLES as u32);
                voice.next += FRAME;
            }
        }
        std::thread::sleep(SWEEP);
    }
}

/// What a packet's audio was, when the meter listens for the far ends' tone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    NotChecked,
    Silence,
    /// The far ends' tone (one far end's through a bridge, the sum of several in a conversation).
    FarEnd,
    Other,
}

/// Sorts a PCMU payload: silence (every byte a zero), the far ends' tone (its sign changes in
/// `tone`), or other audio (ringback, say).
fn hear(payload: &[u8], tone: &RangeInclusive<u32>) -> Heard {
    // µ-law: the top bit set is a positive sample, 0xFF and 0x7F are the two zeros.
    let mut changes = 0;
    let mut last = None;
    for &byte in payload {
        if byte & 0x7F == 0x7F {
            continue;
        }
        let positive = byte & 0x80 != 0;
        changes += u32::from(last.is_some_and(|l| l != positive));
        last = Some(positive);
    }
    match last {
        None => Heard::Silence,
        Some(_) if tone.contains(&changes) => Heard::FarEnd,
        Some(_) => Heard::Other,
    }
}

/// What one socket received.
#[derive(Default)]
pub struct Stream {
    pub ssrcs: Vec<u32>,
    pub packets: u64,
    /// Datagrams that were not RTP, or not 172 bytes.
    pub odd: u64,
    pub errors: u64,
    /// Ticks skipped by the sender (timestamp steps past 20 ms with no sequence gap): when the
    /// packet after them arrived, and how many.
    pub skips: Vec<(i64, u64)>,
    /// Sequence gaps: when the packet after one arrived, and how many numbers it jumped.
    pub gaps: Vec<(i64, u64)>,
    /// Packets out of order (a sequence number below the highest seen).
    pub reordered: u64,
    /// (sequence, timestamp) of the last packet, and both extended from the first packet's.
    last: Option<(u16, u32)>,
    seq: i64,
    highest_seq: i64,
    ts: i64,
    /// (kernel arrival ns, arrival − timestamp's time since the first packet ns, what it carried)
    pub arrivals: Vec<(i64, i64, Heard)>,
}

impl Stream {
    fn on_datagram(&mut self, data: &[u8], at_ns: i64, tone: Option<&RangeInclusive<u32>>, live: &Live) {
        if data.len() < 12 || data[0] >> 6 != 2 {
            self.odd += 1;
            return;
        }
        if data.len() != PACKET_BYTES {
            self.odd += 1;
        }
        let seq = u16::from_be_bytes([data[2], data[3]]);
        let ts = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        if !self.ssrcs.contains(&ssrc) {
            self.ssrcs.push(ssrc);
        }
        match self.last {
            None => {
                live.streams_started.fetch_add(1, Ordering::Relaxed);
                live.first_ns.fetch_min(at_ns, Ordering::Relaxed);
                self.arrivals.reserve(64 * 50);
            }
            Some((last_seq, last_ts)) => {
                let seq_step = i64::from(seq.wrapping_sub(last_seq) as i16);
                let ts_step = i64::from(ts.wrapping_sub(last_ts) as i32);
                if seq_step == 1 && ts_step > FRAME_SAMPLES {
                    self.skips.push((at_ns, ((ts_step - FRAME_SAMPLES) / FRAME_SAMPLES) as u64));
                }
                if seq_step > 1 {
                    self.gaps.push((at_ns, (seq_step - 1) as u64));
                }
                self.seq += seq_step;
                self.ts += ts_step;
                if self.seq < self.highest_seq {
                    self.reordered += 1;
                }
                self.highest_seq = self.highest_seq.max(self.seq);
            }
        }
        self.last = Some((seq, ts));
        self.packets += 1;
        live.packets.fetch_add(1, Ordering::Relaxed);
        let heard = tone.map_or(Heard::NotChecked, |tone| hear(&data[12..], tone));
        self.arrivals.push((at_ns, at_ns - self.ts * SAMPLE_NS, heard));
    }

    pub fn first_ns(&self) -> Option<i64> {
        self.arrivals.first().map(|a| a.0)
    }

    pub fn last_ns(&self) -> Option<i64> {
        self.arrivals.last().map(|a| a.0)
    }
}

/// Packets in one part of a run: before the window (calls starting), in it, after it (ending).
pub struct Part {
    pub packets: u64,
    /// Deviation, µs.
    pub deviation: Histogram<u64>,
    pub skipped_ticks: u64,
    /// Sequence numbers jumped over (a late packet still counts as lost here).
    pub lost: u64,
    /// Packets by what they carried (indexed by `Heard`).
    pub heard: [u64; 4],
}

impl Part {
    fn new() -> Part {
        Part { packets: 0, deviation: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram"), skipped_ticks: 0, lost: 0, heard: [0; 4] }
    }

    /// The share of packets that carried the far ends' tone (None when not listened for).
    pub fn far_end_share(&self) -> Option<f64> {
        let checked = self.packets - self.heard[Heard::NotChecked as usize];
        (checked > 0).then(|| self.heard[Heard::FarEnd as usize] as f64 / checked as f64)
    }

    /// Deviation quantile `q` in ms.
    pub fn ms(&self, q: f64) -> f64 {
        self.deviation.value_at_quantile(q) as f64 / 1000.0
    }
}

/// The streams as measured over a window of the run (and before and after it).
pub struct Wire {
    pub streams: usize,
    /// Streams flowing through the whole window (first packet before it, last after it).
    pub concurrent: usize,
    pub seconds: f64,
    /// Before the window, in it, after it.
    pub parts: [Part; 3],
    /// Each second from the first packet of any stream: when trouble came.
    pub by_second: Vec<Part>,
    /// The first packet's kernel stamp, and the window's bounds, ns.
    pub first_ns: i64,
    pub from_ns: i64,
    pub to_ns: i64,
    /// Over whole streams: packets out of order, odd datagrams, streams with more than one
    /// SSRC, read errors.
    pub reordered: u64,
    pub odd: u64,
    pub mixed: usize,
    pub errors: u64,
}

impl Wire {
    pub fn measure(streams: &[Stream], from_ns: i64, to_ns: i64) -> Wire {
        let mut wire = Wire {
            streams: streams.iter().filter(|s| s.packets > 0).count(),
            concurrent: 0,
            seconds: (to_ns - from_ns) as f64 / 1e9,
            parts: [Part::new(), Part::new(), Part::new()],
            by_second: Vec::new(),
            first_ns: streams.iter().filter_map(Stream::first_ns).min().unwrap_or(from_ns),
            from_ns,
            to_ns,
            reordered: 0,
            odd: 0,
            mixed: 0,
            errors: 0,
        };
        let part = |at: i64| usize::from(at >= from_ns) + usize::from(at >= to_ns);
        let last_ns = streams.iter().filter_map(Stream::last_ns).max().unwrap_or(to_ns);
        wire.by_second = (0..=((last_ns - wire.first_ns) / 1_000_000_000).max(0)).map(|_| Part::new()).collect();
        let second = |at: i64| ((at - wire.first_ns).max(0) / 1_000_000_000) as usize;
        for stream in streams {
            wire.reordered += stream.reordered;
            wire.odd += stream.odd;
            wire.errors += stream.errors;
            wire.mixed += usize::from(stream.ssrcs.len() > 1);
            let (Some(first), Some(last)) = (stream.first_ns(), stream.last_ns()) else { continue };
            wire.concurrent += usize::from(first <= from_ns && last >= to_ns);
            let best = stream.arrivals.iter().map(|a| a.1).min().unwrap_or(0);
            for &(at, offset, heard) in &stream.arrivals {
                let us = ((offset - best) / 1_000) as u64;
                let part = &mut wire.parts[part(at)];
                part.packets += 1;
                part.heard[heard as usize] += 1;
                part.deviation.saturating_record(us);
                let by_second = &mut wire.by_second[second(at)];
                by_second.packets += 1;
                by_second.deviation.saturating_record(us);
            }
            for &(at, n) in &stream.skips {
                wire.parts[part(at)].skipped_ticks += n;
                wire.by_second[second(at)].skipped_ticks += n;
            }
            for &(at, n) in &stream.gaps {
                wire.parts[part(at)].lost += n;
                wire.by_second[second(at)].lost += n;
            }
        }
        wire
    }

    pub fn window(&self) -> &Part {
        &self.parts[1]
    }

    pub fn packets_per_s(&self) -> f64 {
        self.window().packets as f64 / self.seconds.max(1e-9)
    }

    /// Deviation quantile `q` in the window, ms.
    pub fn ms(&self, q: f64) -> f64 {
        self.window().ms(q)
    }
}
