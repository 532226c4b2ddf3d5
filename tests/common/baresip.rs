//! baresip (Debian `baresip-core` 1.0.0) as a real phone in tests: it answers calls on its own,
//! plays a prepared WAV, records what it hears, sends and reports RFC 4733 DTMF, and can place
//! calls. Driven over its ctrl_tcp socket (netstring-framed JSON); killed on drop.
//!
//! ```ignore
//! if !Baresip::available() { return; }
//! let callee = Baresip::callee("447700900777", Some(&tone_wav));  // plays the tone, then silence
//! // … point a trunk at callee.address(), place the call …
//! callee.wait_established(WAIT).await;
//! callee.send_dtmf("12#").await;                        // RFC 4733 to whoever it talks to
//! let digits = callee.wait_dtmf(3, WAIT).await;         // digits it received, in order
//! callee.wait_hangup(WAIT).await;                       // "Connection reset by peer" (a BYE)…
//! let (heard, rate) = audio::read_wav(&callee.recording_heard().await);
//! ```
//!
//! Each instance lives in its own temporary directory (config, accounts, the source WAV, the
//! recordings, baresip.log) and takes a 20-port slice of 61000-61999: RTP on the first 16, SIP
//! (UDP and TCP) on +16, its TLS listener on +17 (baresip always opens one, on the SIP port + 1)
//! and ctrl_tcp on +18. Slices are spread by pid and a process-wide counter; a slice someone
//! else holds is skipped. SDP and RTP use 127.0.0.1 (`net_interface`), never another interface.
//!
//! baresip quirks this works around:
//! - Its aufile source must be 8 kHz mono 16-bit (other rates are refused and the call has no
//!   audio): the WAV to play is converted (linear interpolation) when it is not.
//! - It hangs up when its source file ends ("end of file"): the file is padded with silence to
//!   `Options::hold` (60 s) unless `hang_up_after_play` asks for exactly that behaviour.
//! - It does not render received RFC 4733 as audio in its recording: received digits come from
//!   its ctrl_tcp events (`CALL_DTMF_START`). `CALL_DTMF_END` is missing when the end packets
//!   repeat a sequence number (SIPp's pcaps do).
//! - Its recording (`dump-<date-time>-dec.wav`, 8 kHz mono) only grows while RTP arrives: gaps in
//!   the stream are absent, not silent. The header is final once the call is closed.
//! - What is still in its jitter buffer when the call ends is not recorded: with the default
//!   depth (5-10 packets) the last 80 ms were lost; `jitter_buffer_delay 1-3` (set here; its
//!   buffer counts packets, it has no clock) loses nothing on loopback.
//! - A module that fails to start (a port taken) is only logged; the start checks the log.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::audio;

/// Where Debian and a source build put the modules.
const MODULE_DIRS: &[&str] = &["/usr/lib/baresip/modules", "/usr/local/lib/baresip/modules", "/usr/lib64/baresip/modules"];
const MODULES: &[&str] = &["g711", "aufile", "sndfile", "account", "menu", "ctrl_tcp"];
const PORTS_FIRST: u16 = 61000;
const SLICE: u16 = 20;
const SLICES: u16 = 50;
const START_ATTEMPTS: usize = 8;
const READY_WITHIN: Duration = Duration::from_secs(10);
/// baresip's source and recordings: G.711's rate.
const RATE: u32 = 8000;

/// How an instance behaves. `Options::new(user)` gives an auto-answering phone playing silence.
#[derive(Clone, Debug)]
pub struct Options {
    /// The account's user part: it answers `sip:<user>@127.0.0.1:<port>` (any user works in fact).
    pub user: String,
    /// The WAV it plays into every call (any rate, mono or not); silence when None.
    pub play: Option<PathBuf>,
    /// How long a call may last before the source ends (the file is padded with silence).
    pub hold: Duration,
    /// Play the file once and hang up at its end (BYE with reason "end of file").
    pub hang_up_after_play: bool,
    /// Codecs it accepts, in its order of preference ("PCMU,PCMA", "PCMA" …).
    pub codecs: String,
    /// Answer incoming calls at once (`answermode=auto`); otherwise they ring until `answer`.
    pub auto_answer: bool,
}

impl Options {
    pub fn new(user: &str) -> Options {
        Options {
            user: user.to_string(),
            play: None,
            hold: Duration::from_secs(60),
            hang_up_after_play: false,
            codecs: "PCMU,PCMA".to_string(),
            auto_answer: true,
        }
    }
}

pub struct Baresip {
    options: Options,
    dir: PathBuf,
    sip_port: u16,
    ctrl_port: u16,
    child: Option<Child>,
    ctrl: Mutex<TcpStream>,
    /// Every JSON message from ctrl_tcp (events and responses), in arrival order.
    messages: Arc<Mutex<Vec<Value>>>,
    tokens: AtomicU64,
}

impl Baresip {
    /// Whether baresip and the modules it needs are here. When not, prints why the test is
    /// skipped and returns false, except in CI (env CI set), where it fails the test.
    pub fn available() -> bool {
        let missing = match (installed(), module_dir()) {
            (false, _) => "baresip is not installed".to_string(),
            (true, None) => format!("baresip lacks one of the modules {MODULES:?} (looked in {MODULE_DIRS:?})"),
            (true, Some(_)) => return true,
        };
        let hint = "apt-get install baresip-core; scripts/test.sh does it when run as root";
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
            panic!("{missing} and CI is set: {hint}");
        }
        eprintln!("SKIPPED: {missing} ({hint})");
        false
    }

    /// An auto-answering callee playing `play_wav` (then silence) into each call, up to 60 s.
    pub fn callee(user: &str, play_wav: Option<&Path>) -> Baresip {
        Baresip::start(Options { play: play_wav.map(Path::to_path_buf), ..Options::new(user) })
    }

    /// A callee that answers, plays `wav` once and hangs up when it ends.
    pub fn callee_hanging_up_after(user: &str, wav: &Path) -> Baresip {
        Baresip::start(Options { play: Some(wav.to_path_buf()), hang_up_after_play: true, ..Options::new(user) })
    }

    /// Starts baresip with `options` and returns once its SIP port and ctrl_tcp are up.
    pub fn start(options: Options) -> Baresip {
        let dir = instance_dir(&options.user);
        fs::create_dir_all(dir.join("rec")).expect("baresip directory");
        write_source(&dir.join("source.wav"), &options);
        let account = format!(
            "<sip:{}@127.0.0.1>;regint=0;answermode={};audio_codecs={}\n",
            options.user,
            if options.auto_answer { "auto" } else { "manual" },
            options.codecs
        );
        fs::write(dir.join("accounts"), account).expect("baresip accounts");
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let base = next_slice();
            let (sip_port, ctrl_port) = (base + 16, base + 18);
            if let Err(taken) = ports_free(sip_port, ctrl_port) {
                last_failure = taken;
                continue;
            }
            fs::write(dir.join("config"), config(&dir, base)).expect("baresip config");
            let log = fs::File::create(dir.join("baresip.log")).expect("baresip log");
            let child = Command::new("baresip")
                .arg("-f")
                .arg(&dir)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("baresip log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start baresip (apt-get install baresip-core): {e}"));
            match until_ready(child, &dir, ctrl_port) {
                Ok((child, stream)) => {
                    let messages = Arc::new(Mutex::new(Vec::new()));
                    spawn_reader(stream.try_clone().expect("ctrl_tcp stream"), messages.clone());
                    return Baresip {
                        options,
                        dir,
                        sip_port,
                        ctrl_port,
                        child: Some(child),
                        ctrl: Mutex::new(stream),
                        messages,
                        tokens: AtomicU64::new(0),
                    };
                }
                Err(failure) => last_failure = failure,
            }
        }
        panic!("baresip did not start in {START_ATTEMPTS} attempts (dir {}): {last_failure}", dir.display());
    }

    /// Its SIP address, "127.0.0.1:port" (UDP).
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.sip_port)
    }

    pub fn port(&self) -> u16 {
        self.sip_port
    }

    /// `sip:<user>@127.0.0.1:<port>`: what to dial to reach it.
    pub fn uri(&self) -> String {
        format!("sip:{}@{}", self.options.user, self.address())
    }

    /// Its directory (config, source.wav, rec/, baresip.log); kept when a test panics.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Places a call to `uri` (e.g. another instance's `uri()`, or `sip:100@127.0.0.1:5080`).
    pub async fn dial(&self, uri: &str) {
        self.command("dial", uri).await;
    }

    /// Answers a ringing call (with `auto_answer: false`).
    pub async fn answer(&self) {
        self.command("accept", "").await;
    }

    /// Sends `digits` (0-9 * # A-D) as RFC 4733 events in the current call: 180 ms each, back
    /// to back, audio continuing between them. Returns once baresip took the command; the
    /// digits go out over the next 0.2 s per digit.
    pub async fn send_dtmf(&self, digits: &str) {
        self.command("sndcode", digits).await;
    }

    /// Hangs up the current call.
    pub async fn hangup(&self) {
        self.command("hangup", "").await;
    }

    /// The digits received so far (RFC 4733 events starting), in order.
    pub fn received_dtmf(&self) -> String {
        self.events("CALL_DTMF_START").iter().filter_map(|e| e["param"].as_str()).collect()
    }

    /// Waits until `count` digits have been received, and returns them all; panics with the
    /// log after `timeout`.
    pub async fn wait_dtmf(&self, count: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let digits = self.received_dtmf();
            if digits.chars().count() >= count {
                return digits;
            }
            if Instant::now() >= deadline {
                panic!("baresip received {digits:?}, not {count} digits, within {timeout:?}\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The ctrl_tcp events of `kind` so far (`CALL_INCOMING`, `CALL_ESTABLISHED`,
    /// `CALL_RTPESTAB`, `CALL_DTMF_START`, `CALL_CLOSED`, `AUDIO_ERROR` …), in order.
    pub fn events(&self, kind: &str) -> Vec<Value> {
        let messages = self.messages.lock().unwrap();
        messages.iter().filter(|m| m["event"] == true && m["type"] == kind).cloned().collect()
    }

    /// Waits for the `nth` (from 1) event of `kind`; panics with the log after `timeout`.
    pub async fn wait_event(&self, kind: &str, nth: usize, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.events(kind).into_iter().nth(nth.saturating_sub(1)) {
                return event;
            }
            if Instant::now() >= deadline {
                panic!("baresip: no {kind} #{nth} within {timeout:?}\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until a call is established (answered, either way).
    pub async fn wait_established(&self, timeout: Duration) -> Value {
        self.wait_event("CALL_ESTABLISHED", 1, timeout).await
    }

    /// Waits until the call ends, and returns the reason baresip gives: "Connection reset by
    /// peer" (the far end's BYE), "Connection reset by user" (`hangup`), "end of file" (the
    /// source ended), "486 Busy Here" … Panics with the log after `timeout`.
    pub async fn wait_hangup(&self, timeout: Duration) -> String {
        let closed = self.wait_event("CALL_CLOSED", 1, timeout).await;
        closed["param"].as_str().unwrap_or_default().to_string()
    }

    /// What it heard in its last call: `rec/dump-…-dec.wav` (8 kHz mono), once complete. Call
    /// it after the call ended (`wait_hangup`).
    pub async fn recording_heard(&self) -> PathBuf {
        self.recording("dec").await
    }

    /// What it sent in its last call: `rec/dump-…-enc.wav`.
    pub async fn recording_sent(&self) -> PathBuf {
        self.recording("enc").await
    }

    /// What it heard, as samples and rate (see `recording_heard`).
    pub async fn heard(&self) -> (Vec<i16>, u32) {
        audio::read_wav(&self.recording_heard().await)
    }

    /// Its stdout and stderr so far (for assertion messages).
    pub fn log(&self) -> String {
        let text = fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default();
        format!("--- baresip {} ({}) log ---\n{}", self.options.user, self.address(), text.trim_end())
    }

    /// The latest recording of `kind` ("dec"/"enc"), waiting (up to 5 s) for its header to be
    /// written: the RIFF size matches the file once sndfile closed it.
    async fn recording(&self, kind: &str) -> PathBuf {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let suffix = format!("-{kind}.wav");
            let mut files: Vec<PathBuf> = fs::read_dir(self.dir.join("rec"))
                .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            files.retain(|p| p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(&suffix)));
            files.sort();
            if let Some(last) = files.last() {
                if wav_complete(last) {
                    return last.clone();
                }
            }
            if Instant::now() >= deadline {
                panic!("baresip: no complete {kind} recording in {} ({files:?})\n{}", self.dir.join("rec").display(), self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a ctrl_tcp command and waits for its response; panics when it is refused.
    async fn command(&self, command: &str, params: &str) -> Value {
        let token = format!("t{}", self.tokens.fetch_add(1, Ordering::Relaxed));
        let body = json!({"command": command, "params": params, "token": token}).to_string();
        let frame = format!("{}:{},", body.len(), body);
        self.ctrl.lock().unwrap().write_all(frame.as_bytes()).unwrap_or_else(|e| panic!("baresip ctrl_tcp write: {e}\n{}", self.log()));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let response = {
                let messages = self.messages.lock().unwrap();
                messages.iter().find(|m| m["response"] == true && m["token"] == token.as_str()).cloned()
            };
            if let Some(response) = response {
                assert!(response["ok"] == true, "baresip refused {command} {params:?}: {response}\n{}", self.log());
                return response;
            }
            if Instant::now() >= deadline {
                panic!("baresip did not answer {command} {params:?}\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("baresip {}: files kept in {}", self.options.user, self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// `baresip -h` runs.
pub fn installed() -> bool {
    Command::new("baresip").arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// The first module directory holding every module needed.
fn module_dir() -> Option<&'static str> {
    MODULE_DIRS.iter().copied().find(|dir| MODULES.iter().all(|m| Path::new(dir).join(format!("{m}.so")).exists()))
}

fn config(dir: &Path, base: u16) -> String {
    let module_dir = module_dir().expect("baresip modules (check Baresip::available first)");
    let source = dir.join("source.wav");
    let rec = dir.join("rec");
    format!(
        "poll_method epoll\n\
         sip_listen 127.0.0.1:{sip}\n\
         net_interface 127.0.0.1\n\
         rtp_ports {rtp_min}-{rtp_max}\n\
         audio_source aufile,{source}\n\
         audio_player aufile,/dev/null\n\
         audio_alert aufile,/dev/null\n\
         module_path {module_dir}\n\
         module g711.so\n\
         module aufile.so\n\
         module sndfile.so\n\
         module account.so\n\
         module_app menu.so\n\
         module_app ctrl_tcp.so\n\
         ctrl_tcp_listen 127.0.0.1:{ctrl}\n\
         statmode_default off\n\
         jitter_buffer_delay 1-3\n\
         snd_path {rec}\n",
        sip = base + 16,
        rtp_min = base,
        rtp_max = base + 15,
        source = source.display(),
        ctrl = base + 18,
        rec = rec.display(),
    )
}

/// The WAV baresip plays: the file (or nothing) at 8 kHz mono, padded with silence to `hold`
/// unless it should hang up at the file's end.
fn write_source(path: &Path, options: &Options) {
    let mut samples = match &options.play {
        Some(wav) => {
            let (samples, rate) = audio::read_wav(wav);
            resample(&samples, rate, RATE)
        }
        None => Vec::new(),
    };
    if !options.hang_up_after_play {
        let hold = (options.hold.as_secs_f64() * RATE as f64) as usize;
        samples.resize(samples.len().max(hold), 0);
    }
    audio::write_wav(path, &samples, RATE);
}

/// Linear interpolation: enough for tones and speech in tests, not for listening.
fn resample(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || samples.is_empty() {
        return samples.to_vec();
    }
    let count = (samples.len() as u64 * to as u64 / from as u64) as usize;
    (0..count)
        .map(|i| {
            let position = i as f64 * from as f64 / to as f64;
            let index = position.floor() as usize;
            let next = samples.get(index + 1).copied().unwrap_or(samples[index.min(samples.len() - 1)]);
            let current = samples[index.min(samples.len() - 1)] as f64;
            (current + (next as f64 - current) * position.fract()).round() as i16
        })
        .collect()
}

/// The first port of the next 20-port slice of 61000-61999 (pid-spread, then in turn).
fn next_slice() -> u16 {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let turn = std::process::id().wrapping_mul(7).wrapping_add(COUNT.fetch_add(1, Ordering::Relaxed));
    PORTS_FIRST + (turn % SLICES as u32) as u16 * SLICE
}

/// Whether the SIP (UDP, TCP, TLS at +1) and ctrl_tcp ports can be bound now.
fn ports_free(sip: u16, ctrl: u16) -> Result<(), String> {
    let checks = [
        UdpSocket::bind(("127.0.0.1", sip)).err().map(|e| format!("UDP {sip}: {e}")),
        TcpListener::bind(("127.0.0.1", sip)).err().map(|e| format!("TCP {sip}: {e}")),
        TcpListener::bind(("127.0.0.1", sip + 1)).err().map(|e| format!("TCP {}: {e}", sip + 1)),
        TcpListener::bind(("127.0.0.1", ctrl)).err().map(|e| format!("TCP {ctrl}: {e}")),
    ];
    match checks.into_iter().flatten().next() {
        Some(taken) => Err(format!("port taken: {taken}")),
        None => Ok(()),
    }
}

/// Waits for "baresip is ready." in its log and a ctrl_tcp connection. Err (baresip killed)
/// when it could not bind a port or exited.
fn until_ready(mut child: Child, dir: &Path, ctrl_port: u16) -> Result<(Child, TcpStream), String> {
    let started = Instant::now();
    let fail = |child: &mut Child, why: String| {
        let _ = child.kill();
        let _ = child.wait();
        Err(why)
    };
    loop {
        let log = fs::read_to_string(dir.join("baresip.log")).unwrap_or_default();
        if log.contains("Address already in use") || log.contains("failed to listen") {
            return fail(&mut child, format!("a port was taken:\n{log}"));
        }
        if let Some(status) = child.try_wait().expect("baresip status") {
            return Err(format!("baresip exited on start ({status}):\n{log}"));
        }
        if log.contains("baresip is ready.") {
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", ctrl_port)) {
                return Ok((child, stream));
            }
        }
        if started.elapsed() > READY_WITHIN {
            return fail(&mut child, format!("not ready within {READY_WITHIN:?}:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads netstrings (`len:json,`) from ctrl_tcp into `messages` until the socket closes.
fn spawn_reader(mut stream: TcpStream, messages: Arc<Mutex<Vec<Value>>>) {
    std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
            while let Some((value, used)) = next_netstring(&buffer) {
                buffer.drain(..used);
                if let Some(value) = value {
                    messages.lock().unwrap().push(value);
                }
            }
        }
    });
}

/// One complete netstring at the start of `buffer`: its JSON (None when it is not JSON) and
/// the bytes it took.
fn next_netstring(buffer: &[u8]) -> Option<(Option<Value>, usize)> {
    let colon = buffer.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&buffer[..colon]).ok()?.trim().parse().ok()?;
    let end = colon + 1 + len;
    if buffer.len() <= end {
        return None;
    }
    Some((serde_json::from_slice(&buffer[colon + 1..end]).ok(), end + 1))
}

/// A WAV whose RIFF size matches the file: its writer has closed it.
fn wav_complete(path: &Path) -> bool {
    let Ok(bytes) = fs::read(path) else { return false };
    if bytes.len() < 44 || &bytes[..4] != b"RIFF" {
        return false;
    }
    let riff = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    riff + 8 == bytes.len()
}

fn instance_dir(user: &str) -> PathBuf {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let safe: String = user.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let dir = std::env::temp_dir().join(format!("outdial-baresip-{}-{}-{safe}", std::process::id(), COUNT.fetch_add(1, Ordering::Relaxed)));
    let _ = fs::remove_dir_all(&dir);
    dir
}
