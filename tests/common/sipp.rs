//! SIPp as the SIP trunk (or as a caller): runs a scenario from tests/sip/ on a free loopback UDP
//! port, and gives back its verdict (exit code: 0 only if the call followed the scenario and every
//! check passed) with its logs for assertion messages. The SIPp process is killed on drop.
//!
//! ```ignore
//! if !Sipp::available() { return; }
//! let mut trunk = Sipp::uas("uas_reject_486.xml", &[]);
//! // … point a trunk at 127.0.0.1:{trunk.port()}, place the call …
//! let (code, log) = trunk.wait(Duration::from_secs(20)).await;
//! assert_eq!(code, 0, "{log}");
//! ```
//!
//! Keys: a scenario declares its `-key` names and defaults in its leading comment
//! (`key: name = default`); keys a test leaves out get the default, keys the scenario does not
//! declare are a test bug (panic). See tests/sip/README.md.
#![allow(dead_code)]

use std::fs;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// SIPp's exit code when it could not bind its SIP socket (another process took the port).
const EXIT_BIND_FAILED: i32 = 254;
const START_ATTEMPTS: usize = 5;
/// How long SIPp may take to bind its socket after being started.
const READY_WITHIN: Duration = Duration::from_secs(10);

pub struct Sipp {
    scenario: String,
    port: u16,
    pid: u32,
    media_port: Option<u16>,
    dir: PathBuf,
    child: Option<Child>,
    verdict: Option<(i32, String)>,
}

impl Sipp {
    /// Whether SIPp can run here. When it is missing this prints why the test is skipped and
    /// returns false, except in CI (env CI set), where a missing SIPp fails the test.
    pub fn available() -> bool {
        if installed() {
            return true;
        }
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
            panic!("sipp is not installed and CI is set: install it (apt-get install sip-tester; scripts/test.sh does it when run as root)");
        }
        eprintln!("SKIPPED: sipp is not installed (apt-get install sip-tester; scripts/test.sh does it when run as root)");
        false
    }

    /// SIPp waiting for one call: `sipp -sf tests/sip/<scenario> -i 127.0.0.1 -p <free port> -m 1
    /// -nostdin -timeout 30s -timeout_error -trace_err -trace_msg`, keys as `-key name value`.
    /// Returns once SIPp listens; panics if SIPp refuses the scenario.
    pub fn uas(scenario: &str, keys: &[(&str, &str)]) -> Sipp {
        Sipp::start(scenario, keys, &[])
    }

    /// As `uas`, with a media port of its own (`-mi 127.0.0.1 -mp <port>`, from 62000-62999),
    /// for scenarios that play RTP (`play_pcap_audio`). SIPp binds that port and the one two
    /// above even when a scenario plays nothing; its default, 6000, is often taken.
    pub fn uas_media(scenario: &str, keys: &[(&str, &str)]) -> Sipp {
        Sipp::start_with(scenario, keys, &[], true)
    }

    /// SIPp placing one call to `127.0.0.1:target_port`, Request-URI user `service`.
    pub fn uac(scenario: &str, keys: &[(&str, &str)], target_port: u16, service: &str) -> Sipp {
        let target = format!("127.0.0.1:{target_port}");
        Sipp::start(scenario, keys, &["-s", service, &target])
    }

    /// As `uac`, with a media port of its own (as `uas_media`), for scenarios that play RTP.
    pub fn uac_media(scenario: &str, keys: &[(&str, &str)], target_port: u16, service: &str) -> Sipp {
        let target = format!("127.0.0.1:{target_port}");
        Sipp::start_with(scenario, keys, &["-s", service, &target], true)
    }

    /// As `uas`, with more SIPp arguments after the usual ones (a later option wins, e.g.
    /// `["-timeout", "60s"]`; a remote host for a UAC goes last).
    pub fn start(scenario: &str, keys: &[(&str, &str)], extra: &[&str]) -> Sipp {
        Sipp::start_with(scenario, keys, extra, false)
    }

    fn start_with(scenario: &str, keys: &[(&str, &str)], extra: &[&str], media: bool) -> Sipp {
        let path = scenario_path(scenario);
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let keys = with_defaults(scenario, &text, keys);
        let dir = log_dir(scenario);
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_udp_port();
            let media_port = media.then(free_media_port);
            let mut command = Command::new("sipp");
            command
                .arg("-sf")
                .arg(&path)
                .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m", "1", "-nostdin"])
                .args(["-timeout", "30s", "-timeout_error", "-trace_err", "-trace_msg"])
                .arg("-message_file")
                .arg(dir.join("messages.log"))
                .arg("-error_file")
                .arg(dir.join("errors.log"));
            for (name, value) in &keys {
                command.arg("-key").arg(name).arg(value);
            }
            if let Some(media_port) = media_port {
                command.args(["-mi", "127.0.0.1", "-mp", &media_port.to_string()]);
            }
            command.args(extra);
            let screen = fs::File::create(dir.join("screen.log")).expect("SIPp screen log");
            let stderr = fs::File::create(dir.join("stderr.log")).expect("SIPp stderr log");
            let child = command
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(screen)
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start sipp (apt-get install sip-tester): {e}"));
            let pid = child.id();
            let mut sipp = Sipp { scenario: scenario.to_string(), port, pid, media_port, dir: dir.clone(), child: Some(child), verdict: None };
            match sipp.until_listening() {
                Ok(()) => return sipp,
                Err(failure) => {
                    // Keep the directory for the next attempt.
                    sipp.dir = PathBuf::new();
                    last_failure = failure;
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
        panic!("SIPp {scenario} could not bind a UDP port in {START_ATTEMPTS} attempts: {last_failure}");
    }

    /// The UDP port SIPp listens on, at 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIPp's process id: the scenarios' tags use it (`[pid]Trunk[call_number]`, so a trunk's
    /// To tag for its first call is "<pid>Trunk1").
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The RTP port of `uas_media` (None for the others).
    pub fn media_port(&self) -> Option<u16> {
        self.media_port
    }

    /// "127.0.0.1:port".
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits for SIPp to finish its call and exit: its exit code (-1 if it was still running
    /// after `timeout` and got killed) and its logs (errors, then every SIP message sent and
    /// received) to show in assertion messages.
    pub async fn wait(&mut self, timeout: Duration) -> (i32, String) {
        if let Some(verdict) = &self.verdict {
            return verdict.clone();
        }
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("a started SIPp");
        let code = loop {
            match child.try_wait().expect("SIPp status") {
                Some(status) => break status.code().unwrap_or(-1),
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break -1;
                }
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        self.child = None;
        let mut log = format!("SIPp {} on {}: exit code {code}", self.scenario, self.address());
        if code == -1 {
            log.push_str(&format!(" (still running after {timeout:?}: killed)"));
        }
        for (title, file) in [("stderr", "stderr.log"), ("errors", "errors.log"), ("messages", "messages.log")] {
            let text = fs::read_to_string(self.dir.join(file)).unwrap_or_default();
            if !text.trim().is_empty() {
                log.push_str(&format!("\n--- SIPp {title} ---\n{}", text.trim_end()));
            }
        }
        self.verdict = Some((code, log));
        self.verdict.clone().unwrap()
    }

    /// Polls until SIPp holds its port. Err when it exited because it could not bind it; panics
    /// when it exited for another reason.
    fn until_listening(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let child = self.child.as_mut().expect("a started SIPp");
        loop {
            if let Some(status) = child.try_wait().expect("SIPp status") {
                let code = status.code().unwrap_or(-1);
                let stderr = fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
                if code == EXIT_BIND_FAILED || stderr.contains("Unable to bind") {
                    self.child = None;
                    return Err(stderr.trim().to_string());
                }
                // Exited for another reason: a broken scenario (SIPp checks it on start).
                let errors = fs::read_to_string(self.dir.join("errors.log")).unwrap_or_default();
                panic!("SIPp {} exited on start with code {code}:\n{}\n{}", self.scenario, stderr.trim(), errors.trim());
            }
            // SIPp binds without SO_REUSEADDR: our bind fails once SIPp has the port.
            if UdpSocket::bind(("127.0.0.1", self.port)).is_err() {
                return Ok(());
            }
            if started.elapsed() > READY_WITHIN {
                panic!("SIPp {} did not bind 127.0.0.1:{} within {READY_WITHIN:?}", self.scenario, self.port);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether SIPp can play the shipped RFC 2833 pcaps here (`tests/sip/uas_answer_dtmf_pcap.xml`):
/// they are installed (Debian path) and we are root (`play_pcap_audio` sends through a raw
/// socket). When not, prints why the test is skipped and returns false, except in CI (env CI
/// set), where it fails the test.
pub fn can_play_pcap() -> bool {
    let root = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| status.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false);
    let missing = if !Path::new("/usr/share/sip-tester/dtmf_2833_1.pcap").exists() {
        "SIPp's pcaps are not in /usr/share/sip-tester (apt-get install sip-tester)"
    } else if !root {
        "SIPp's play_pcap_audio needs root (a raw socket)"
    } else {
        return true;
    };
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{missing}, and CI is set");
    }
    eprintln!("SKIPPED: {missing}");
    false
}

/// `sipp -v` runs.
pub fn installed() -> bool {
    Command::new("sipp").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

pub fn scenario_path(scenario: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sip").join(scenario)
}

/// The keys a scenario declares in its comments (`key: name = default`), in order.
pub fn declared_keys(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("key:"))
        .filter_map(|rest| rest.split_once('='))
        .map(|(name, default)| (name.trim().to_string(), default.trim().to_string()))
        .collect()
}

/// The test's keys, then the declared defaults of the others. SIPp takes the first `-key` of a
/// name, and stops at a `[name]` nobody gave: every declared key must be passed.
fn with_defaults(scenario: &str, text: &str, keys: &[(&str, &str)]) -> Vec<(String, String)> {
    let declared = declared_keys(text);
    for (name, _) in keys {
        if !declared.iter().any(|(known, _)| known == name) {
            let names: Vec<&str> = declared.iter().map(|(known, _)| known.as_str()).collect();
            panic!("{scenario} has no key {name:?}; its keys: {names:?}");
        }
    }
    let mut all: Vec<(String, String)> = keys.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    for (name, default) in declared {
        if !keys.iter().any(|(given, _)| *given == name) {
            all.push((name, default));
        }
    }
    all
}

fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("a free UDP port");
    socket.local_addr().expect("its address").port()
}

/// A port of 62000-62999 whose UDP port and the one two above are free now (pid-spread, then in
/// turn; SIPp's media sockets).
fn free_media_port() -> u16 {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    for _ in 0..250 {
        let turn = std::process::id().wrapping_mul(13).wrapping_add(COUNT.fetch_add(1, Ordering::Relaxed));
        let port = 62000 + (turn % 250) as u16 * 4;
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port + 2)).is_ok() {
            return port;
        }
    }
    panic!("no free SIPp media port in 62000-62999");
}

fn log_dir(scenario: &str) -> PathBuf {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let stem = scenario.trim_end_matches(".xml");
    let dir = std::env::temp_dir().join(format!("outdial-sipp-{}-{}-{stem}", std::process::id(), COUNT.fetch_add(1, Ordering::Relaxed)));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("SIPp log directory");
    dir
}
