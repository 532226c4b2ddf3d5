//! The audio test kit (tests/common/audio.rs, tests/common/baresip.rs and
//! tests/sip/uas_answer_dtmf_pcap.xml) checked against independent sources: sox writes the
//! reference files, baresip calls baresip, SIPp plays its shipped RFC 2833 pcaps to baresip.
//! Skipped, with a message, when sox, baresip or SIPp (or root, for the pcaps) are missing,
//! unless env CI is set.

mod common;

use common::audio::{self, SILENCE_RMS};
use common::baresip::{Baresip, Options};
use common::sipp::{self, Sipp};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

/// A temporary directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("outdial-audio-kit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sox_available() -> bool {
    if Command::new("sox").arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("sox is not installed and CI is set: apt-get install sox (scripts/test.sh does it when run as root)");
    }
    eprintln!("SKIPPED: sox is not installed (apt-get install sox; scripts/test.sh does it when run as root)");
    false
}

/// Runs `sox <args>` and panics with its stderr when it fails.
fn sox(args: &[&str]) {
    let output = Command::new("sox").args(args).output().expect("sox runs");
    assert!(output.status.success(), "sox {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A DTMF key as sox's two sines, `ms` long, at 8 kHz: one per channel of a stereo file, so
/// that `read_wav`'s mono mix has them at equal levels.
fn sox_key(path: &Path, key: char, ms: u32) {
    let (low, high) = match key {
        '1' => (697, 1209),
        '2' => (697, 1336),
        '3' => (697, 1477),
        'A' => (697, 1633),
        '4' => (770, 1209),
        '5' => (770, 1336),
        '6' => (770, 1477),
        'B' => (770, 1633),
        '7' => (852, 1209),
        '8' => (852, 1336),
        '9' => (852, 1477),
        'C' => (852, 1633),
        '*' => (941, 1209),
        '0' => (941, 1336),
        '#' => (941, 1477),
        'D' => (941, 1633),
        other => panic!("not a DTMF key: {other}"),
    };
    let seconds = format!("{}", ms as f64 / 1000.0);
    let (low, high) = (low.to_string(), high.to_string());
    sox(&["-n", "-r", "8000", "-c", "2", "-b", "16", p(path), "synth", &seconds, "sine", &low, "sine", &high, "vol", "0.5"]);
}

#[test]
fn tone_spans_find_where_sox_tones_are_and_how_long() {
    if !sox_available() {
        return;
    }
    let dir = Scratch::new("spans");
    // 2 s of 1 kHz, 1 s of silence, 1 s of 1.5 kHz, 0.5 s of 1 kHz at -43 dBFS.
    sox(&["-n", "-r", "8000", "-c", "1", "-b", "16", p(&dir.path("a.wav")), "synth", "2", "sine", "1000", "vol", "0.5"]);
    sox(&["-n", "-r", "8000", "-c", "1", "-b", "16", p(&dir.path("b.wav")), "trim", "0", "1"]);
    sox(&["-n", "-r", "8000", "-c", "1", "-b", "16", p(&dir.path("c.wav")), "synth", "1", "sine", "1500", "vol", "0.5"]);
    sox(&["-n", "-r", "8000", "-c", "1", "-b", "16", p(&dir.path("d.wav")), "synth", "0.5", "sine", "1000", "vol", "0.01"]);
    let all = dir.path("all.wav");
    sox(&[p(&dir.path("a.wav")), p(&dir.path("b.wav")), p(&dir.path("c.wav")), p(&dir.path("d.wav")), p(&all)]);

    let (samples, rate) = audio::read_wav(&all);
    assert_eq!((rate, audio::duration_ms(&samples, rate)), (8000, 4500));
    assert_eq!(audio::tone_spans(&samples, rate, 1000.0, 0.5), vec![(0, 2000), (4000, 4500)]);
    assert_eq!(audio::tone_spans(&samples, rate, 1500.0, 0.5), vec![(3000, 4000)]);
    // 1050 Hz is one DFT bin away from 1 kHz: not the tone.
    assert_eq!(audio::tone_spans(&samples, rate, 1050.0, 0.5), vec![]);
    assert_eq!(audio::non_silent_ms(&samples, rate, SILENCE_RMS), 3500, "all but the silence");
    // The quiet tail (RMS 231) is under a threshold of 300.
    assert_eq!(audio::non_silent_ms(&samples, rate, 300.0), 3000);
    let frames: Vec<&[i16]> = audio::frames(&samples, rate).collect();
    assert!((audio::rms_dbfs(frames[10]) - -9.0).abs() < 0.2, "{}", audio::rms_dbfs(frames[10]));
    assert!(audio::goertzel_ratio(frames[10], 1000.0, rate) > 0.99);
    assert!(audio::rms(frames[120]) < 5.0, "sox's silence is dither at most");
}

#[test]
fn read_wav_takes_any_rate_depth_and_channel_count_and_goertzel_any_frequency() {
    if !sox_available() {
        return;
    }
    let dir = Scratch::new("formats");
    // 44.1 kHz, 24-bit, stereo, 1234 Hz (not on a 20 ms bin).
    let stereo = dir.path("stereo.wav");
    sox(&["-n", "-r", "44100", "-c", "2", "-b", "24", p(&stereo), "synth", "1.5", "sine", "1234", "vol", "0.5"]);
    let (samples, rate) = audio::read_wav(&stereo);
    assert_eq!((rate, samples.len()), (44100, 66150));
    assert_eq!(audio::tone_spans(&samples, rate, 1234.0, 0.9), vec![(0, 1500)]);
    assert!((audio::rms_dbfs(&samples) - -9.0).abs() < 0.2);
    // 16 kHz float.
    let float = dir.path("float.wav");
    sox(&["-n", "-r", "16000", "-c", "1", "-e", "floating-point", "-b", "32", p(&float), "synth", "0.5", "sine", "440", "vol", "0.5"]);
    let (samples, rate) = audio::read_wav(&float);
    assert_eq!(rate, 16000);
    assert_eq!(audio::tone_spans(&samples, rate, 440.0, 0.9), vec![(0, 500)]);
    // White noise and speech-like noise hold no tone.
    let noise = dir.path("noise.wav");
    sox(&["-n", "-r", "8000", "-c", "1", "-b", "16", p(&noise), "synth", "1", "pinknoise", "vol", "0.5"]);
    let (samples, rate) = audio::read_wav(&noise);
    assert_eq!(audio::tone_spans(&samples, rate, 1000.0, 0.5), vec![]);
    assert_eq!(audio::non_silent_ms(&samples, rate, SILENCE_RMS), 1000);
    assert_eq!(audio::dtmf_digits(&samples, rate), "");
}

#[test]
fn the_kit_writes_tones_and_silence_sox_agrees_with() {
    if !sox_available() {
        return;
    }
    let dir = Scratch::new("write");
    let tone = dir.path("tone.wav");
    audio::write_tone_wav(&tone, 1000.0, 1.25, 8000);
    let silence = dir.path("silence.wav");
    audio::write_silence_wav(&silence, 0.75, 16000);
    for (file, length) in [(&tone, "1.250000"), (&silence, "0.750000")] {
        let soxi = Command::new("soxi").arg("-D").arg(file).output().expect("soxi runs");
        assert_eq!(String::from_utf8_lossy(&soxi.stdout).trim(), length);
    }
    // sox's own analysis: the tone peaks at half scale, the silence is zero.
    let stat = Command::new("sox").arg(&tone).args(["-n", "stat"]).output().unwrap();
    let stat = String::from_utf8_lossy(&stat.stderr);
    assert!(stat.contains("Maximum amplitude:     0.5"), "{stat}");
    let (samples, rate) = audio::read_wav(&tone);
    assert_eq!(audio::tone_spans(&samples, rate, 1000.0, 0.5), vec![(0, 1240)], "the last 10 ms are not a whole frame");
    let (samples, rate) = audio::read_wav(&silence);
    assert_eq!((rate, samples.len(), audio::non_silent_ms(&samples, rate, 1.0)), (16000, 12000, 0));
}

#[test]
fn dtmf_digits_decodes_every_key_sox_plays_in_band() {
    if !sox_available() {
        return;
    }
    let dir = Scratch::new("dtmf");
    // Each key 100 ms, 60 ms of silence between; "11" and "55" are two presses each.
    let keys = "123A456B789C*0#D11550";
    let gap = dir.path("gap.wav");
    sox(&["-n", "-r", "8000", "-c", "2", "-b", "16", p(&gap), "trim", "0", "0.06"]);
    let mut parts = Vec::new();
    for (i, key) in keys.chars().enumerate() {
        let part = dir.path(&format!("key{i}.wav"));
        sox_key(&part, key, 100);
        parts.push(part);
        parts.push(gap.clone());
    }
    let all = dir.path("all.wav");
    let mut args: Vec<&str> = parts.iter().map(|part| p(part)).collect();
    args.push(p(&all));
    sox(&args);
    let (samples, rate) = audio::read_wav(&all);
    assert_eq!(audio::dtmf_digits(&samples, rate), keys);

    // The shortest key the ITU requires a receiver to take (40 ms; here 45), with 40 ms of
    // silence around it, at 16 kHz, the high tone 6 dB under the low one (sox's `mix`): still
    // found.
    let short = dir.path("short.wav");
    sox(&["-n", "-r", "16000", "-c", "1", "-b", "16", p(&short), "synth", "0.045", "sine", "852", "sine", "mix", "1477", "vol", "0.5", "pad", "0.04", "0.04"]);
    let (samples, rate) = audio::read_wav(&short);
    assert_eq!(audio::dtmf_digits(&samples, rate), "9");
    // A 1 kHz tone, pink noise and a single sine of a key are no digit.
    let single = dir.path("single.wav");
    sox(&["-n", "-r", "8000", "-c", "1", "-b", "16", p(&single), "synth", "0.5", "sine", "697", "vol", "0.5"]);
    let (samples, rate) = audio::read_wav(&single);
    assert_eq!(audio::dtmf_digits(&samples, rate), "");
    assert_eq!(audio::dtmf_digits(&audio::tone(1000.0, 1.0, 8000), 8000), "");
}

/// What a caller hears from a callee playing a 3 s 1 kHz tone: the tone, about 3 s, then the
/// padding silence; DTMF the caller sends arrives in order, repeated keys included; the callee
/// does not render received RFC 4733 events as audio in its recording.
#[tokio::test]
async fn baresip_hears_baresip_play_a_tone_and_gets_its_dtmf() {
    if !Baresip::available() {
        return;
    }
    let dir = Scratch::new("baresip-tone");
    let tone = dir.path("tone.wav");
    audio::write_tone_wav(&tone, 1000.0, 3.0, 8000);
    let callee = Baresip::callee("447700900777", Some(&tone));
    let caller = Baresip::start(Options::new("447700900001"));
    caller.dial(&callee.uri()).await;
    caller.wait_established(WAIT).await;
    callee.wait_established(WAIT).await;
    let established = Instant::now();

    tokio::time::sleep(Duration::from_millis(500)).await;
    caller.send_dtmf("12#*0").await;
    assert_eq!(callee.wait_dtmf(5, WAIT).await, "12#*0");
    caller.send_dtmf("99").await;
    assert_eq!(callee.wait_dtmf(7, WAIT).await, "12#*099");
    // The tone lasts 3 s; hang up a second after it.
    tokio::time::sleep(Duration::from_millis(4000).saturating_sub(established.elapsed())).await;
    caller.hangup().await;
    assert_eq!(caller.wait_hangup(WAIT).await, "Connection reset by user");
    assert_eq!(callee.wait_hangup(WAIT).await, "Connection reset by peer");

    let (heard, rate) = caller.heard().await;
    let spans = audio::tone_spans(&heard, rate, 1000.0, 0.5);
    let total = audio::duration_ms(&heard, rate);
    assert_eq!(spans.len(), 1, "one tone: {spans:?} in {total} ms\n{}", caller.log());
    let (start, end) = spans[0];
    assert!(start <= 200 && (2940..=3020).contains(&(end - start)), "a 3 s tone from the start: {spans:?}");
    assert!(total >= 3800, "the call lasted about 4 s: {total} ms heard");
    assert_eq!(audio::non_silent_ms(&heard, rate, SILENCE_RMS), end - start, "silence after the tone");
    // The callee's recording of the caller (silence) holds no in-band DTMF.
    let (callee_heard, rate) = callee.heard().await;
    assert_eq!(audio::non_silent_ms(&callee_heard, rate, SILENCE_RMS), 0);
    assert_eq!(audio::dtmf_digits(&callee_heard, rate), "");
    // What the callee sent starts with the tone too.
    let (sent, rate) = audio::read_wav(&callee.recording_sent().await);
    assert_eq!(audio::tone_spans(&sent, rate, 1000.0, 0.5).first(), Some(&(0, 3000)));
}

/// A callee that plays its file once hangs up at its end ("end of file"), and the caller heard
/// all of it.
#[tokio::test]
async fn a_callee_hanging_up_after_its_file_plays_it_whole() {
    if !Baresip::available() {
        return;
    }
    let dir = Scratch::new("baresip-eof");
    let tone = dir.path("tone.wav");
    // 16 kHz on purpose: converted to 8 kHz for baresip.
    audio::write_tone_wav(&tone, 1400.0, 1.0, 16000);
    let callee = Baresip::callee_hanging_up_after("447700900777", &tone);
    let caller = Baresip::start(Options::new("447700900001"));
    caller.dial(&callee.uri()).await;
    assert_eq!(callee.wait_hangup(WAIT).await, "end of file");
    assert_eq!(caller.wait_hangup(WAIT).await, "Connection reset by peer");
    let (heard, rate) = caller.heard().await;
    let spans = audio::tone_spans(&heard, rate, 1400.0, 0.5);
    assert!(spans.len() == 1 && (960..=1020).contains(&audio::spans_ms(&spans)), "{spans:?}\n{}", caller.log());
}

/// SIPp's uas_answer_dtmf_pcap answers baresip and presses 1 2 3 # with the shipped pcaps;
/// baresip reports them, then hangs up and SIPp passes.
#[tokio::test]
async fn the_pcap_dtmf_scenario_presses_123_pound_to_a_caller() {
    if !Sipp::available() || !sipp::can_play_pcap() || !Baresip::available() {
        return;
    }
    let mut trunk = Sipp::uas_media("uas_answer_dtmf_pcap.xml", &[("delay_ms", "500"), ("gap_ms", "300")]);
    let caller = Baresip::start(Options::new("447700900001"));
    caller.dial(&format!("sip:100@{}", trunk.address())).await;
    caller.wait_established(WAIT).await;
    assert_eq!(caller.wait_dtmf(4, WAIT).await, "123#");
    // The last pcap plays for 140 ms after its start packet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    caller.hangup().await;
    let (code, log) = trunk.wait(WAIT).await;
    assert_eq!(code, 0, "{log}\n{}", caller.log());
    assert!(caller.log().contains(&format!("receiving from 127.0.0.1:{}", trunk.media_port().unwrap())), "RTP from SIPp's media port\n{}", caller.log());
}

/// The same scenario against SIPp's own caller (which offers PCMU, PCMA, telephone-event 101):
/// it waits out the digits and takes the caller's BYE.
#[tokio::test]
async fn the_pcap_dtmf_scenario_passes_with_a_sipp_caller() {
    if !Sipp::available() || !sipp::can_play_pcap() {
        return;
    }
    let mut trunk = Sipp::uas_media("uas_answer_dtmf_pcap.xml", &[("delay_ms", "200"), ("gap_ms", "200")]);
    let mut caller = Sipp::uac("uac_call.xml", &[("hold_ms", "1500")], trunk.port(), "447700900001");
    let (uac, uac_log) = caller.wait(WAIT).await;
    let (uas, uas_log) = trunk.wait(WAIT).await;
    assert_eq!((uas, uac), (0, 0), "trunk:\n{uas_log}\n\ncaller:\n{uac_log}");
}

/// Instances side by side take distinct ports, and a slice whose SIP port someone holds is
/// skipped (the first slice of this process is known: the pid picks it).
#[tokio::test]
async fn baresip_instances_take_distinct_free_ports() {
    if !Baresip::available() {
        return;
    }
    let first_sip_port = 61000 + (std::process::id().wrapping_mul(7) % 50) as u16 * 20 + 16;
    let holder = std::net::UdpSocket::bind(("127.0.0.1", first_sip_port));
    let phones: Vec<Baresip> = (0..4).map(|i| Baresip::start(Options::new(&format!("44770090010{i}")))).collect();
    let mut ports: Vec<u16> = phones.iter().map(Baresip::port).collect();
    if holder.is_ok() {
        assert!(!ports.contains(&first_sip_port), "{ports:?} took the held {first_sip_port}");
    }
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 4);
    // Each one is up and answers: the last calls the first.
    phones[3].dial(&phones[0].uri()).await;
    phones[0].wait_established(WAIT).await;
    phones[3].hangup().await;
    phones[0].wait_hangup(WAIT).await;
}
