//! One leg's RTP session: a clock task that sends one packet per 20 ms tick and plays the
//! received audio out to the taps, and a receive task that reads the socket. They share the
//! leg's state behind a mutex held only for the work of one packet or one tick.
//!
//! Send path per tick: sources mixed (each at its level) → earmuff gate → G.711 → RTP (or a
//! telephone-event packet instead while a digit is sent). Receive path: RTP → symmetric-RTP
//! latch → DTMF events or G.711 decode → jitter buffer → (per tick) mute gate → taps.
//!
//! `mute` and `earmuff` follow Vonage (`PUT /v1/calls/{uuid}` actions): a muted leg's audio is
//! not sent into the call, so what we receive from it is replaced by silence before any tap
//! (recording, speech, detection; DTMF still counts: keys are not audio); an earmuffed leg
//! hears nothing, so we send it silence (the clock keeps sending, and DTMF still goes out).

use super::codec::Codec;
use super::deviation::DeviationHistogram;
use super::dtmf::{DtmfReceiver, DtmfSender, ReceivedDigit};
use super::jitter::{Insert, JitterBuffer, SeqCounter};
use super::rtp::{self, RtpSender, MAX_PACKET};
use super::source::{Clip, Mixer};
use super::tap::{FramePair, Taps};
use super::totals::{self, SessionCount};
use super::work::WorkHistogram;
use super::{Frame, MediaError, MediaEvent, FRAME_DURATION, FRAME_SAMPLES};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Behind by more than this many frames, the clock skips ahead instead of bursting.
const MAX_BURST_FRAMES: u32 = 3;
/// Packets from another address than the latched one are ignored unless the latched address
/// has been silent this long (the far end moved, e.g. a NAT rebinding).
const RELATCH_AFTER: Duration = Duration::from_secs(2);
/// The playback id of in-band DTMF when no telephone-event payload type was negotiated.
const INBAND_DTMF_ID: u64 = u64::MAX;

/// Counters of a session (a snapshot from `MediaHandle::stats`).
#[derive(Debug, Clone)]
pub struct MediaStats {
    pub packets_sent: u64,
    pub send_errors: u64,
    /// Accepted packets from the far end (audio and telephone-events).
    pub packets_received: u64,
    /// Sequence numbers never seen (RFC 3550 cumulative loss).
    pub packets_lost: u64,
    /// Audio packets that arrived after their turn to play.
    pub packets_late: u64,
    pub packets_duplicate: u64,
    /// Datagrams that were not RTP, had another payload type, or came from another address.
    pub packets_ignored: u64,
    /// Ticks the clock skipped because it woke more than `MAX_BURST_FRAMES` late.
    pub ticks_skipped: u64,
    /// Frames dropped because a tap subscriber did not keep up.
    pub tap_frames_dropped: u64,
    pub send_deviation: DeviationHistogram,
    /// Each tick's work, from the clock's wake-up to its packet built (see `MediaTotals`).
    pub tick_work: WorkHistogram,
}

impl MediaStats {
    fn new() -> MediaStats {
        MediaStats {
            packets_sent: 0,
            send_errors: 0,
            packets_received: 0,
            packets_lost: 0,
            packets_late: 0,
            packets_duplicate: 0,
            packets_ignored: 0,
            ticks_skipped: 0,
            tap_frames_dropped: 0,
            send_deviation: DeviationHistogram::new(),
            tick_work: WorkHistogram::new(),
        }
    }
}

struct State {
    codec: Codec,
    telephone_event: Option<u8>,
    mixer: Mixer,
    dtmf_out: DtmfSender,
    dtmf_out_busy: bool,
    muted: bool,
    earmuffed: bool,
    remote: SocketAddr,
    latched: bool,
    last_from_remote: Option<Instant>,
    jitter: JitterBuffer,
    seqs: SeqCounter,
    /// The loss last added to the process's totals.
    lost_counted: u64,
    /// RFC 3550 interarrival jitter of the far end's audio.
    interarrival: super::interarrival::InterarrivalJitter,
    dtmf_in: DtmfReceiver,
    taps: Taps,
    stats: MediaStats,
    /// A PCM session's received audio (see `start_pcm`), played out one frame per tick.
    pcm_in: std::collections::VecDeque<Frame>,
}

/// Where a session's audio goes: RTP to the far end, or 20 ms PCM frames to a local consumer.
enum Outbound {
    Rtp(Arc<UdpSocket>),
    Pcm(mpsc::Sender<Frame>),
}

/// Received PCM a session holds at most (1,024 frames, 20 s, as Vonage buffers a WebSocket's):
/// a peer may send faster than real time.
const PCM_IN_MAX_FRAMES: usize = 1024;

struct Shared {
    state: Mutex<State>,
    cancel: CancellationToken,
    local: Option<SocketAddr>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters at worst; keep the call's audio going.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Starts media sessions.
pub struct MediaSession;

impl MediaSession {
    /// Starts sending to `remote` and receiving on `socket` (which the session now reads:
    /// nothing else may). `telephone_event` is the negotiated RFC 4733 payload type; without
    /// one, DTMF goes out in-band as tones and none is detected. Must be called inside a tokio
    /// runtime. The session runs until the handle is closed or dropped; then the event stream
    /// ends and the socket is no longer read.
    pub fn start(
        socket: Arc<UdpSocket>,
        remote: SocketAddr,
        codec: Codec,
        telephone_event: Option<u8>,
    ) -> (MediaHandle, mpsc::UnboundedReceiver<MediaEvent>) {
        let local = socket.local_addr().ok();
        let (shared, events, events_rx) = Shared::new(remote, codec, telephone_event, local);
        // The tasks hold the event senders, so the stream ends when both have stopped.
        let count = SessionCount::start();
        tokio::spawn(clock_loop(shared.clone(), Outbound::Rtp(socket.clone()), events.clone(), count));
        tokio::spawn(receive_loop(shared.clone(), socket, events));
        (MediaHandle { shared }, events_rx)
    }

    /// A session without RTP, for a leg whose audio is carried another way (a WebSocket): each
    /// tick's sent frame goes to `outbound` (dropped when it is full), and what `push_received`
    /// gives is played out as received audio, one frame per tick, in order. Mixer, taps, mute
    /// and earmuff work as for RTP; DTMF goes out in-band.
    pub fn start_pcm(outbound: mpsc::Sender<Frame>) -> (MediaHandle, mpsc::UnboundedReceiver<MediaEvent>) {
        let nowhere = SocketAddr::from(([0, 0, 0, 0], 0));
        let (shared, events, events_rx) = Shared::new(nowhere, Codec::Pcmu, None, None);
        tokio::spawn(clock_loop(shared.clone(), Outbound::Pcm(outbound), events, SessionCount::start()));
        (MediaHandle { shared }, events_rx)
    }
}

impl Shared {
    #[allow(clippy::type_complexity)]
    fn new(
        remote: SocketAddr,
        codec: Codec,
        telephone_event: Option<u8>,
        local: Option<SocketAddr>,
    ) -> (Arc<Shared>, mpsc::UnboundedSender<MediaEvent>, mpsc::UnboundedReceiver<MediaEvent>) {
        let (events, events_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                codec,
                telephone_event,
                mixer: Mixer::default(),
                dtmf_out: DtmfSender::default(),
                dtmf_out_busy: false,
                muted: false,
                earmuffed: false,
                remote,
                latched: false,
                last_from_remote: None,
                jitter: JitterBuffer::new(),
                seqs: SeqCounter::default(),
                lost_counted: 0,
                interarrival: Default::default(),
                dtmf_in: DtmfReceiver::default(),
                taps: Taps::default(),
                stats: MediaStats::new(),
                pcm_in: std::collections::VecDeque::new(),
            }),
            cancel: CancellationToken::new(),
            local,
        });
        (shared, events, events_rx)
    }
}

/// Controls a running session; dropping it stops the session.
pub struct MediaHandle {
    shared: Arc<Shared>,
}

impl Drop for MediaHandle {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

impl MediaHandle {
    /// Plays `clip` `loops` times (0 = until stopped) at Vonage `level` (-1..=1, 0 = as is),
    /// mixed with whatever else plays. Replaces what played under the same `id`. When a
    /// finite playback's last audio has been sent: `MediaEvent::PlaybackFinished(id)`.
    pub fn play(&self, id: u64, clip: Clip, loops: u32, level: f32) {
        self.shared.lock().mixer.play(id, clip, loops, level);
    }

    /// Stops `id` at once (no event); true if it was playing.
    pub fn stop(&self, id: u64) -> bool {
        self.shared.lock().mixer.stop(id)
    }

    pub fn stop_all(&self) {
        self.shared.lock().mixer.stop_all();
    }

    pub fn is_playing(&self, id: u64) -> bool {
        self.shared.lock().mixer.is_playing(id)
    }

    /// Queues digits (`0-9 * # A-D`, `p` = 500 ms pause) after any still being sent;
    /// `MediaEvent::DtmfSent` when the queue has gone out.
    pub fn send_dtmf(&self, digits: &str) -> Result<(), MediaError> {
        if let Some(bad) = digits.chars().find(|&c| !super::dtmf::valid_digit(c)) {
            return Err(MediaError::InvalidDigit(bad));
        }
        let mut state = self.shared.lock();
        if state.telephone_event.is_some() {
            state.dtmf_out.push(digits);
            state.dtmf_out_busy = true;
        } else {
            // Replaces in-band digits still playing.
            let clip = super::dtmf::tones(digits);
            state.mixer.play(INBAND_DTMF_ID, clip, 1, 0.0);
        }
        Ok(())
    }

    /// Mute (Vonage): the leg's audio is not sent into the call; taps get silence.
    pub fn set_mute(&self, muted: bool) {
        self.shared.lock().muted = muted;
    }

    /// Earmuff (Vonage): the leg hears nothing; it is sent silence.
    pub fn set_earmuff(&self, earmuffed: bool) {
        self.shared.lock().earmuffed = earmuffed;
    }

    pub fn is_muted(&self) -> bool {
        self.shared.lock().muted
    }

    pub fn is_earmuffed(&self) -> bool {
        self.shared.lock().earmuffed
    }

    /// Received audio after the mute gate: one frame per 20 ms tick, silence where nothing
    /// arrived. Frames are dropped for a subscriber that falls 10 s behind.
    pub fn subscribe_received(&self) -> mpsc::Receiver<Frame> {
        self.shared.lock().taps.subscribe_received()
    }

    /// Received and sent audio per tick, aligned (for a two-channel recording).
    pub fn subscribe_pairs(&self) -> mpsc::Receiver<FramePair> {
        self.shared.lock().taps.subscribe_pairs()
    }

    /// Where packets go: the address given at start until the far end's first packet, then
    /// where its packets come from (symmetric RTP).
    pub fn remote(&self) -> SocketAddr {
        self.shared.lock().remote
    }

    /// A new far-end address (a re-INVITE, or the answer after early media); packets from the
    /// far end latch again.
    pub fn set_remote(&self, remote: SocketAddr) {
        let mut state = self.shared.lock();
        state.remote = remote;
        state.latched = false;
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.local
    }

    pub fn stats(&self) -> MediaStats {
        let state = self.shared.lock();
        let mut stats = state.stats.clone();
        stats.packets_lost = state.seqs.lost();
        stats.tap_frames_dropped = state.taps.dropped;
        stats
    }

    /// A second reader of the session's audio (the engine's recorder, recognizer, detector):
    /// it subscribes to taps and never stops the session.
    pub fn tap(&self) -> MediaTap {
        MediaTap { shared: self.shared.clone() }
    }

    /// A PCM session's received audio (see `MediaSession::start_pcm`): queued after what is
    /// still waiting, played out one frame per tick. Beyond 1,024 frames (20 s), the oldest go.
    pub fn push_received(&self, frames: impl IntoIterator<Item = Frame>) {
        let mut state = self.shared.lock();
        state.pcm_in.extend(frames);
        let excess = state.pcm_in.len().saturating_sub(PCM_IN_MAX_FRAMES);
        state.pcm_in.drain(..excess);
    }

    /// Drops received PCM still waiting (a WebSocket's `clear`).
    pub fn clear_received(&self) {
        self.shared.lock().pcm_in.clear();
    }

    /// Stops both tasks (as dropping the handle does); the event stream then ends.
    pub fn close(&self) {
        self.shared.cancel.cancel();
    }

    pub fn is_closed(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }
}

/// `_count` keeps the session counted as live in the process's totals until this task ends.
async fn clock_loop(shared: Arc<Shared>, outbound: Outbound, events: mpsc::UnboundedSender<MediaEvent>, _count: SessionCount) {
    let mut rtp = RtpSender::new();
    let (codec, mut encoder) = {
        let state = shared.lock();
        (state.codec, state.codec.encoder())
    };
    let timestamp_base: u32 = rand::random();
    let start = Instant::now();
    let mut tick: u32 = 0;
    let mut first = true;
    let mut packet = [0u8; MAX_PACKET];
    let mut finished = Vec::new();
    let mut digits = Vec::new();
    // One cancellation wait and one timer for the whole session, reset each tick: a new sleep
    // per tick takes the runtime's timer lock twice (register, then deregister on drop), a
    // reset once; a new cancellation wait per tick joins and leaves the token's waiter list.
    let cancelled = shared.cancel.clone().cancelled_owned();
    let sleep = tokio::time::sleep_until(start);
    tokio::pin!(cancelled, sleep);
    loop {
        let deadline = start + FRAME_DURATION * tick;
        sleep.as_mut().reset(deadline);
        tokio::select! {
            // The timer first, in this order (no random pick per tick): polling the cancellation
            // takes its token's lock, so it is polled only when the tick is not due, which is
            // when its close woke the task.
            biased;
            _ = &mut sleep => {}
            _ = &mut cancelled => break,
        }
        let woke = Instant::now();
        let late = woke.saturating_duration_since(deadline);
        let behind = (late.as_micros() / FRAME_DURATION.as_micros()) as u32;
        if behind > MAX_BURST_FRAMES {
            // Skip to the frame due now; the skipped ticks still play the received audio out
            // so the taps keep wall time.
            let mut state = shared.lock();
            for _ in 0..behind {
                receive_tick(&mut state, &[0; FRAME_SAMPLES], &mut digits);
            }
            state.stats.ticks_skipped += behind as u64;
            totals::ticks_skipped(behind as u64);
            tick += behind;
        }
        let deadline = start + FRAME_DURATION * tick;
        let timestamp = timestamp_base.wrapping_add(tick.wrapping_mul(FRAME_SAMPLES as u32));

        let (len, remote, dtmf_done, sent_frame) = {
            let mut state = shared.lock();
            let mut sent: Frame = [0; FRAME_SAMPLES];
            let event = state.telephone_event.and_then(|pt| state.dtmf_out.next(timestamp).map(|e| (pt, e)));
            let len = match event {
                Some((payload_type, event)) => {
                    rtp.build(payload_type, event.timestamp, event.marker || first, &event.payload, &mut packet)
                }
                None => {
                    state.mixer.next_frame(&mut sent, &mut finished);
                    if state.earmuffed {
                        sent = [0; FRAME_SAMPLES];
                    }
                    let mut payload = [codec.silence_byte(); FRAME_SAMPLES];
                    if sent.iter().any(|&s| s != 0) {
                        encoder.encode(&sent, &mut payload);
                    }
                    rtp.build(codec.payload_type(), timestamp, first, &payload, &mut packet)
                }
            };
            receive_tick(&mut state, &sent, &mut digits);
            let dtmf_done = state.dtmf_out_busy && state.dtmf_out.is_idle();
            if dtmf_done {
                state.dtmf_out_busy = false;
            }
            (len, state.remote, dtmf_done, sent)
        };

        let sendable = !remote.ip().is_unspecified() && remote.port() != 0;
        let built = Instant::now();
        let deviation = built.saturating_duration_since(deadline);
        let work = built.saturating_duration_since(woke);
        let result = match &outbound {
            Outbound::Rtp(socket) if sendable => socket.send_to(&packet[..len], remote).await.map(|_| ()),
            Outbound::Rtp(_) => Ok(()),
            Outbound::Pcm(frames) => {
                // A consumer that fell behind loses frames, never the clock.
                let _ = frames.try_send(sent_frame);
                Ok(())
            }
        };
        totals::tick_sent(deviation, work, sendable.then_some(result.is_ok()));
        {
            let mut state = shared.lock();
            state.stats.send_deviation.record(deviation);
            state.stats.tick_work.record(work);
            match result {
                Ok(()) if sendable => state.stats.packets_sent += 1,
                Ok(()) => {}
                Err(_) => state.stats.send_errors += 1,
            }
        }
        first = false;
        for id in finished.drain(..) {
            let event = if id == INBAND_DTMF_ID { MediaEvent::DtmfSent } else { MediaEvent::PlaybackFinished(id) };
            let _ = events.send(event);
        }
        for d in digits.drain(..) {
            let _ = events.send(MediaEvent::Dtmf { digit: d.digit, duration_ms: d.duration_ms });
        }
        if dtmf_done {
            let _ = events.send(MediaEvent::DtmfSent);
        }
        tick = tick.wrapping_add(1);
    }
    // Subscribers (a recorder, a recognizer) see the end of the audio.
    shared.lock().taps.close();
}

/// The receive half of a tick: the next received frame through the mute gate to the taps,
/// and digits whose end packets never came.
fn receive_tick(state: &mut State, sent: &Frame, digits: &mut Vec<ReceivedDigit>) {
    let mut heard: Frame = [0; FRAME_SAMPLES];
    match state.pcm_in.pop_front() {
        Some(frame) => heard = frame,
        None => {
            state.jitter.pop(&mut heard);
        }
    }
    if state.muted {
        heard = [0; FRAME_SAMPLES];
    }
    state.taps.deliver(&heard, sent);
    state.dtmf_in.on_tick(std::time::Instant::now(), digits);
}

async fn receive_loop(shared: Arc<Shared>, socket: Arc<UdpSocket>, events: mpsc::UnboundedSender<MediaEvent>) {
    let mut buffer = [0u8; 2048];
    let mut decoder = shared.lock().codec.decoder();
    let mut digits = Vec::new();
    let cancelled = shared.cancel.clone().cancelled_owned();
    tokio::pin!(cancelled);
    loop {
        let (len, from) = tokio::select! {
            // The cancellation first: a far end flooding the socket must not keep a closed
            // session reading it.
            biased;
            _ = &mut cancelled => break,
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                // ICMP errors surface here on some platforms; the next datagram may be fine.
                Err(_) => continue,
            },
        };
        let now = Instant::now();
        let mut state = shared.lock();
        let Some(packet) = rtp::parse(&buffer[..len]) else {
            state.stats.packets_ignored += 1;
            continue;
        };
        let is_audio = packet.payload_type == state.codec.payload_type();
        let is_event = Some(packet.payload_type) == state.telephone_event;
        if !is_audio && !is_event {
            state.stats.packets_ignored += 1;
            continue;
        }
        // Symmetric RTP: latch to the first valid packet's source; follow another source only
        // when the latched one has gone quiet.
        if from != state.remote || !state.latched {
            let quiet = state.last_from_remote.is_none_or(|t| now.duration_since(t) >= RELATCH_AFTER);
            if state.latched && !quiet {
                state.stats.packets_ignored += 1;
                continue;
            }
            state.remote = from;
            state.latched = true;
        }
        state.last_from_remote = Some(now);
        state.stats.packets_received += 1;
        state.seqs.record(packet.seq);
        totals::packet_received();
        let lost = state.seqs.lost();
        if lost != state.lost_counted {
            totals::loss_changed(lost as i64 - state.lost_counted as i64);
            state.lost_counted = lost;
        }
        if is_event {
            state.dtmf_in.on_packet(packet.timestamp, packet.payload, now.into_std(), &mut digits);
            for d in digits.drain(..) {
                let _ = events.send(MediaEvent::Dtmf { digit: d.digit, duration_ms: d.duration_ms });
            }
            continue;
        }
        state.interarrival.on_packet(packet.ssrc, packet.timestamp, now);
        let samples = decoder.decode(packet.payload);
        match state.jitter.insert(packet.ssrc, packet.seq, packet.timestamp, samples) {
            Insert::Queued => {}
            Insert::Late => state.stats.packets_late += 1,
            Insert::Duplicate => state.stats.packets_duplicate += 1,
        }
    }
    // The session is over: its peak jitter joins the process's totals.
    if let Some(peak) = shared.lock().interarrival.peak() {
        totals::session_jitter(peak);
    }
}
/// Reads a session's audio without owning it (see `MediaHandle::tap`). Subscriptions end when
/// the session stops.
#[derive(Clone)]
pub struct MediaTap {
    shared: Arc<Shared>,
}

impl MediaTap {
    /// As `MediaHandle::subscribe_received`.
    pub fn subscribe_received(&self) -> mpsc::Receiver<Frame> {
        self.shared.lock().taps.subscribe_received()
    }

    /// As `MediaHandle::subscribe_pairs`.
    pub fn subscribe_pairs(&self) -> mpsc::Receiver<FramePair> {
        self.shared.lock().taps.subscribe_pairs()
    }

    pub fn is_closed(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }

    /// Plays live audio into the leg (another leg's voice for a bridge or a conversation, a
    /// WebSocket's): `frames` are mixed one per tick, at `level`, until they end or `detach`.
    /// The leg's earmuff silences them as all it hears.
    pub fn attach(&self, id: u64, frames: mpsc::Receiver<Frame>, level: f32) {
        self.shared.lock().mixer.attach(id, frames, level);
    }

    pub fn detach(&self, id: u64) -> bool {
        self.shared.lock().mixer.detach(id)
    }
}

impl PartialEq for MediaTap {
    fn eq(&self, other: &MediaTap) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl std::fmt::Debug for MediaTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MediaTap({:?})", self.shared.local)
    }
}
