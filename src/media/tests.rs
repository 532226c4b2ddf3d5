//! Two sessions talking over loopback UDP (no SIP): what one plays, the other hears.

use super::*;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};

/// Fraction of a frame's energy at `freq` (a clean tone gives ~1.0).
fn goertzel_ratio(frame: &[i16], freq: f32) -> f32 {
    let n = frame.len() as f32;
    let k = n * freq / SAMPLE_RATE as f32; // not rounded: also off-bin tones (DTMF)
    let coeff = 2.0 * (2.0 * std::f32::consts::PI * k / n).cos();
    let (mut s1, mut s2, mut energy) = (0.0f32, 0.0f32, 0.0f32);
    for &x in frame {
        let x = x as f32;
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
        energy += x * x;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    if energy == 0.0 {
        0.0
    } else {
        2.0 * power / (n * energy)
    }
}

fn is_tone(frame: &[i16], freq: f32) -> bool {
    rms_dbfs(frame) > -40.0 && goertzel_ratio(frame, freq) > 0.5
}

async fn socket() -> (Arc<UdpSocket>, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    (Arc::new(socket), addr)
}

struct Leg {
    handle: MediaHandle,
    events: mpsc::UnboundedReceiver<MediaEvent>,
    addr: SocketAddr,
}

async fn pair(codec: Codec) -> (Leg, Leg) {
    let (a_socket, a_addr) = socket().await;
    let (b_socket, b_addr) = socket().await;
    let (a, a_events) = MediaSession::start(a_socket, b_addr, codec, Some(101));
    let (b, b_events) = MediaSession::start(b_socket, a_addr, codec, Some(101));
    (Leg { handle: a, events: a_events, addr: a_addr }, Leg { handle: b, events: b_events, addr: b_addr })
}

/// The next `n` frames of a tap.
async fn frames(rx: &mut mpsc::Receiver<Frame>, n: usize) -> Vec<Frame> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(timeout(Duration::from_secs(2), rx.recv()).await.expect("a frame every 20 ms").unwrap());
    }
    out
}

/// Forgets what the tap holds and the next `settle` frames (audio in flight and in the
/// jitter buffer), so what follows reflects a change just made.
async fn settle(rx: &mut mpsc::Receiver<Frame>, settle: usize) {
    while rx.try_recv().is_ok() {}
    frames(rx, settle).await;
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<MediaEvent>) -> MediaEvent {
    timeout(Duration::from_secs(3), events.recv()).await.expect("an event").expect("session running")
}

async fn tone_arrives_with_its_length(codec: Codec) {
    let (mut a, b) = pair(codec).await;
    let mut heard = b.handle.subscribe_received();
    sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    a.handle.play(1, Clip::tone(1000.0, Duration::from_secs(1), 0.5), 1, 0.0);
    assert_eq!(next_event(&mut a.events).await, MediaEvent::PlaybackFinished(1));
    let played_for = started.elapsed();
    let received = frames(&mut heard, 90).await;
    let tone_ms = received.iter().filter(|f| is_tone(&f[..], 1000.0)).count() * 20;
    println!("{codec:?}: 1 s of 1 kHz heard as {tone_ms} ms of tone; PlaybackFinished after {played_for:?}");
    assert!((960..=1040).contains(&tone_ms), "{codec:?}: heard {tone_ms} ms of tone");
    assert!(played_for >= Duration::from_millis(960) && played_for < Duration::from_millis(1200), "{played_for:?}");
    // Nothing but the tone and silence.
    assert!(received.iter().all(|f| is_tone(&f[..], 1000.0) || rms_dbfs(&f[..]) < -60.0));
}

#[tokio::test]
async fn a_tone_played_on_one_leg_is_heard_on_the_other_pcmu() {
    tone_arrives_with_its_length(Codec::Pcmu).await;
}

#[tokio::test]
async fn a_tone_played_on_one_leg_is_heard_on_the_other_pcma() {
    tone_arrives_with_its_length(Codec::Pcma).await;
}

#[tokio::test]
async fn dtmf_sent_as_rfc4733_events_is_received_once_per_digit() {
    let (mut a, mut b) = pair(Codec::Pcmu).await;
    assert_eq!(a.handle.send_dtmf("12x"), Err(MediaError::InvalidDigit('x')));
    a.handle.send_dtmf("12#").unwrap();
    let mut digits = Vec::new();
    while digits.len() < 3 {
        match next_event(&mut b.events).await {
            MediaEvent::Dtmf { digit, duration_ms } => digits.push((digit, duration_ms)),
            other => panic!("unexpected {other:?}"),
        }
    }
    println!("received {digits:?}");
    assert_eq!(digits.iter().map(|d| d.0).collect::<String>(), "12#");
    assert!(digits.iter().all(|d| (80..=120).contains(&d.1)), "{digits:?}");
    assert_eq!(next_event(&mut a.events).await, MediaEvent::DtmfSent);
    // The end packets' repeats and later audio bring nothing more.
    sleep(Duration::from_millis(300)).await;
    assert!(b.events.try_recv().is_err());
}

#[tokio::test]
async fn without_telephone_event_dtmf_goes_in_band() {
    let (a_socket, _) = socket().await;
    let (b_socket, b_addr) = socket().await;
    let a_addr = a_socket.local_addr().unwrap();
    let (a, mut a_events) = MediaSession::start(a_socket, b_addr, Codec::Pcma, None);
    let (b, _b_events) = MediaSession::start(b_socket, a_addr, Codec::Pcma, None);
    let mut heard = b.subscribe_received();
    a.send_dtmf("5").unwrap();
    let received = frames(&mut heard, 20).await;
    // '5' is 770 Hz + 1336 Hz.
    let tone = received.iter().filter(|f| goertzel_ratio(&f[..], 770.0) > 0.3 && goertzel_ratio(&f[..], 1336.0) > 0.3);
    assert!((4..=6).contains(&tone.count()));
    assert_eq!(next_event(&mut a_events).await, MediaEvent::DtmfSent);
}

#[tokio::test]
async fn symmetric_rtp_answers_where_the_packets_come_from() {
    let (a_socket, a_addr) = socket().await;
    let (b_socket, b_addr) = socket().await;
    // B is told a wrong address (a socket that only counts what reaches it).
    let (wrong, wrong_addr) = socket().await;
    let (a, _a_events) = MediaSession::start(a_socket, b_addr, Codec::Pcmu, Some(101));
    let (b, _b_events) = MediaSession::start(b_socket, wrong_addr, Codec::Pcmu, Some(101));
    let mut heard_by_a = a.subscribe_received();
    b.play(1, Clip::tone(1000.0, Duration::from_secs(10), 0.5), 0, 0.0);
    sleep(Duration::from_millis(300)).await;
    assert_eq!(b.remote(), a_addr, "B learned A's address from A's packets");
    settle(&mut heard_by_a, 5).await;
    let tone = frames(&mut heard_by_a, 25).await.iter().filter(|f| is_tone(&f[..], 1000.0)).count();
    assert!(tone >= 24, "A hears B's tone ({tone}/25 frames)");
    // Nothing more reaches the wrong address.
    let mut buffer = [0u8; 2048];
    while wrong.try_recv_from(&mut buffer).is_ok() {}
    sleep(Duration::from_millis(100)).await;
    assert!(wrong.try_recv_from(&mut buffer).is_err());
    // Another source does not take over while A keeps sending.
    let (intruder, _) = socket().await;
    let mut rtp = rtp::RtpSender::new();
    let mut packet = [0u8; rtp::MAX_PACKET];
    let len = rtp.build(0, 0, true, &[0xFF; 160], &mut packet);
    intruder.send_to(&packet[..len], b_addr).await.unwrap();
    sleep(Duration::from_millis(50)).await;
    assert_eq!(b.remote(), a_addr);
    assert!(b.stats().packets_ignored >= 1);
}

#[tokio::test]
async fn comfort_silence_keeps_fifty_packets_a_second_flowing() {
    let (a, b) = pair(Codec::Pcma).await;
    let mut heard = b.handle.subscribe_received();
    sleep(Duration::from_millis(200)).await;
    let before = b.handle.stats().packets_received;
    sleep(Duration::from_secs(1)).await;
    let during = b.handle.stats().packets_received - before;
    let received = frames(&mut heard, 50).await;
    println!("1 s of nothing playing: {during} packets");
    assert!((45..=55).contains(&during), "{during} packets in 1 s");
    assert!(received.iter().all(|f| f.iter().all(|&s| s.abs() <= 8)), "silence decodes to silence");
    let sent = a.handle.stats();
    assert_eq!(sent.packets_lost, 0);
    assert!(sent.packets_sent >= 55);
    assert_eq!(b.addr, a.handle.remote());
}

#[tokio::test]
async fn mute_and_earmuff_silence_the_right_direction() {
    let (a, b) = pair(Codec::Pcmu).await;
    a.handle.play(1, Clip::tone(1000.0, Duration::from_secs(1), 0.5), 0, 0.0);
    b.handle.play(1, Clip::tone(1400.0, Duration::from_secs(1), 0.5), 0, 0.0);
    let mut a_hears = a.handle.subscribe_received();
    let mut b_hears = b.handle.subscribe_received();
    let count = |frames: &[Frame], freq: f32| frames.iter().filter(|f| is_tone(&f[..], freq)).count();

    settle(&mut a_hears, 10).await;
    settle(&mut b_hears, 10).await;
    assert!(count(&frames(&mut a_hears, 25).await, 1400.0) >= 24);
    assert!(count(&frames(&mut b_hears, 25).await, 1000.0) >= 24);

    // Earmuffed, A hears nothing: we send it silence. What it says still reaches us.
    b.handle.set_earmuff(true);
    assert!(b.handle.is_earmuffed());
    settle(&mut a_hears, 5).await;
    settle(&mut b_hears, 5).await;
    let (a_heard, b_heard) = (frames(&mut a_hears, 25).await, frames(&mut b_hears, 25).await);
    assert_eq!(count(&a_heard, 1400.0), 0, "an earmuffed leg is sent silence");
    assert!(a_heard.iter().all(|f| rms_dbfs(&f[..]) < -60.0));
    assert!(count(&b_heard, 1000.0) >= 24, "an earmuffed leg is still heard");
    b.handle.set_earmuff(false);

    // Muted, what B receives from A is silence to every tap; A still hears B.
    b.handle.set_mute(true);
    settle(&mut a_hears, 5).await;
    settle(&mut b_hears, 5).await;
    let (a_heard, b_heard) = (frames(&mut a_hears, 25).await, frames(&mut b_hears, 25).await);
    assert!(b_heard.iter().all(|f| f.iter().all(|&s| s == 0)), "a muted leg's audio goes nowhere");
    assert!(count(&a_heard, 1400.0) >= 24, "a muted leg still hears");
    b.handle.set_mute(false);
    settle(&mut b_hears, 5).await;
    assert!(count(&frames(&mut b_hears, 25).await, 1000.0) >= 24);
}

#[tokio::test]
async fn the_clock_paces_packets_without_drift() {
    let (sink, sink_addr) = socket().await;
    let (socket, _) = socket().await;
    let (session, _events) = MediaSession::start(socket, sink_addr, Codec::Pcmu, Some(101));
    session.play(1, Clip::tone(1000.0, Duration::from_secs(1), 0.5), 0, 0.0);
    let started = Instant::now();
    let mut buffer = [0u8; 2048];
    let mut arrived = 0;
    while started.elapsed() < Duration::from_secs(5) {
        if timeout(Duration::from_millis(100), sink.recv_from(&mut buffer)).await.is_ok() {
            arrived += 1;
        }
    }
    let stats = session.stats();
    let deviation = &stats.send_deviation;
    println!(
        "5 s: {} packets sent, {arrived} arrived, {} ticks skipped; send-time deviation p50 {:?} p99 {:?} max {:?}",
        stats.packets_sent,
        stats.ticks_skipped,
        deviation.quantile(0.5),
        deviation.quantile(0.99),
        deviation.max()
    );
    // 250 packets in 5 s: a clock, not sleeps, so no drift however long the call.
    assert!((248..=253).contains(&stats.packets_sent), "{} packets in 5 s", stats.packets_sent);
    assert!(deviation.quantile(0.99) < Duration::from_millis(20));
    // A tick's work is measured once a tick, from its wake-up (at or after the deadline) to
    // where the deviation is taken: never more than the deviation.
    let work = &stats.tick_work;
    assert_eq!(work.count(), deviation.count());
    assert!(work.max() <= deviation.max() && work.mean() > Duration::ZERO, "{work:?} vs {deviation:?}");
}

#[tokio::test]
async fn a_reordered_stream_plays_in_order() {
    let (far, far_addr) = socket().await;
    let (b_socket, b_addr) = socket().await;
    let (b, _events) = MediaSession::start(b_socket, far_addr, Codec::Pcmu, Some(101));
    let mut heard = b.subscribe_received();
    // Packet k is a constant level of 200·(k+1); sent in the order 0 2 1 4 3 … with 20 ms
    // between sends, then packet 5 again (a duplicate) and an old packet under a new sequence
    // number (late). Paced by a clock like a real sender (sleeps would drift late).
    let count = 20u16;
    let mut order: Vec<u16> = vec![0];
    for k in (1..count - 1).step_by(2) {
        order.extend([k + 1, k]);
    }
    order.push(count - 1);
    let mut encoder = Codec::Pcmu.encoder();
    let packet = |k: u16, seq: u16, encoder: &mut codec::G711Encoder| {
        let mut payload = [0u8; FRAME_SAMPLES];
        encoder.encode(&[200 * (k as i16 + 1); FRAME_SAMPLES], &mut payload);
        rtp_rs::RtpPacketBuilder::new()
            .payload_type(0)
            .ssrc(7)
            .sequence(seq.into())
            .timestamp(50_000 + k as u32 * FRAME_SAMPLES as u32)
            .payload(&payload)
            .build()
            .unwrap()
    };
    let start = Instant::now();
    for (slot, &k) in order.iter().enumerate() {
        tokio::time::sleep_until(start + FRAME_DURATION * slot as u32).await;
        far.send_to(&packet(k, 300 + k, &mut encoder), b_addr).await.unwrap();
        if k == 5 {
            far.send_to(&packet(k, 300 + k, &mut encoder), b_addr).await.unwrap();
        }
        if k == 10 {
            far.send_to(&packet(2, 300 + count, &mut encoder), b_addr).await.unwrap();
        }
    }
    sleep(Duration::from_millis(100)).await;
    let mut levels = Vec::new();
    while let Ok(frame) = heard.try_recv() {
        if frame.iter().any(|&s| s != 0) {
            levels.push(frame.iter().map(|&s| s as i32).sum::<i32>() / FRAME_SAMPLES as i32);
        }
    }
    let steps: Vec<i32> = levels.iter().map(|l| (l + 100) / 200).collect();
    assert_eq!(steps, (1..=count as i32).collect::<Vec<_>>(), "levels heard: {levels:?}");
    let stats = b.stats();
    assert_eq!((stats.packets_duplicate, stats.packets_late, stats.packets_lost), (1, 1, 0));
    // B answers the far end where its packets came from.
    let mut buffer = [0u8; 2048];
    let (_, from) = timeout(Duration::from_secs(1), far.recv_from(&mut buffer)).await.unwrap().unwrap();
    assert_eq!(from, b_addr);
}

#[tokio::test]
async fn a_stopped_session_stops_sending_and_ends_its_events() {
    let (sink, sink_addr) = socket().await;
    let (socket, _) = socket().await;
    let (session, mut events) = MediaSession::start(socket, sink_addr, Codec::Pcmu, Some(101));
    let mut buffer = [0u8; 2048];
    timeout(Duration::from_secs(1), sink.recv_from(&mut buffer)).await.unwrap().unwrap();
    drop(session);
    assert_eq!(timeout(Duration::from_secs(1), events.recv()).await.unwrap(), None);
    while sink.try_recv_from(&mut buffer).is_ok() {}
    sleep(Duration::from_millis(100)).await;
    assert!(sink.try_recv_from(&mut buffer).is_err());
}

/// The process's totals count a session's packets while it runs, the far end's loss, and its
/// close; a window of them is the difference of two snapshots. (Other tests' sessions run at the
/// same time and add to them too: hence lower bounds.)
#[tokio::test]
async fn the_process_totals_count_live_and_closed_sessions() {
    let before = totals();
    let (far, far_addr) = socket().await;
    let (socket, addr) = socket().await;
    let (session, mut events) = MediaSession::start(socket, far_addr, Codec::Pcmu, None);
    // The far end sends 4 packets of 5: the third is lost.
    let mut sender = rtp::RtpSender::new();
    let mut packet = [0u8; rtp::MAX_PACKET];
    for i in 0..5u32 {
        let len = sender.build(Codec::Pcmu.payload_type(), i * FRAME_SAMPLES as u32, false, &[0xff; FRAME_SAMPLES], &mut packet);
        if i != 2 {
            far.send_to(&packet[..len], addr).await.unwrap();
        }
    }
    sleep(Duration::from_millis(300)).await;
    let stats = session.stats();
    let live = totals();
    let window = live.since(&before);
    assert!(live.live_sessions() >= 1);
    assert!(window.sessions_started >= 1);
    assert!(stats.packets_sent >= 10, "{stats:?}");
    assert!(window.packets_sent >= stats.packets_sent, "{window:?} vs {stats:?}");
    assert!(window.send_deviation.count() >= stats.send_deviation.count());
    assert!(window.tick_work.count() >= stats.tick_work.count() && stats.tick_work.count() == stats.send_deviation.count());
    assert_eq!((stats.packets_received, stats.packets_lost), (4, 1));
    assert!(window.packets_received >= 4 && window.packets_lost >= 1, "{window:?}");

    drop(session);
    assert_eq!(timeout(Duration::from_secs(1), events.recv()).await.unwrap(), None);
    sleep(Duration::from_millis(50)).await;
    assert!(totals().since(&before).sessions_closed >= 1);
}
