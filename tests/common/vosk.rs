//! A real speech server for tests: `tests/speech/vosk_server.py` (PocketSphinx behind the Vosk
//! server protocol) on a free loopback port; killed on drop. See that file for what it answers.
//!
//! ```ignore
//! if !VoskServer::available() { return; }
//! let server = VoskServer::start();
//! settings.media.speech_url = server.url().to_string();   // ws://127.0.0.1:<port>
//! // … NCCO input with speech.context ["yes please", "no thanks"]: a phrase list, which makes
//! //   PocketSphinx reliable on 8 kHz espeak-ng speech (its free dictation is not) …
//! ```
//!
//! Its Python (PyPI `pocketsphinx`, `websockets`: tests/speech/requirements.txt) lives in
//! `tests/speech/.venv`, which scripts/test.sh creates; env `OUTDIAL_SPEECH_PYTHON` names
//! another interpreter that has both.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Loading the model takes about a second; much longer on a loaded machine.
const READY_WITHIN: Duration = Duration::from_secs(90);

pub struct VoskServer {
    child: Child,
    /// Held open: the server exits when its stdin closes (if this process dies unannounced).
    _stdin: Option<ChildStdin>,
    url: String,
    log: PathBuf,
}

impl VoskServer {
    /// Whether the server's Python and packages are here. When not, prints why the test is
    /// skipped and returns false, except in CI (env CI set), where it fails the test.
    pub fn available() -> bool {
        let python = python();
        let ok = Command::new(&python)
            .args(["-c", "import pocketsphinx, websockets"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return true;
        }
        let missing = format!("{} cannot import pocketsphinx and websockets", python.display());
        let hint = "scripts/test.sh installs them, or: python3 -m venv tests/speech/.venv && \
                    tests/speech/.venv/bin/pip install -r tests/speech/requirements.txt";
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
            panic!("{missing} and CI is set ({hint})");
        }
        eprintln!("SKIPPED: {missing} ({hint})");
        false
    }

    /// Starts the server and returns once it listens (its model loaded).
    pub fn start() -> VoskServer {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let log = std::env::temp_dir().join(format!(
            "outdial-vosk-{}-{}.log",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = std::fs::File::create(&log).expect("server log file");
        let mut child = Command::new(python())
            .arg(Path::new(ROOT).join("tests/speech/vosk_server.py"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start tests/speech/vosk_server.py");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(READY_WITHIN).unwrap_or_default();
        let url = line.trim().to_string();
        let mut server = VoskServer { _stdin: child.stdin.take(), child, url, log };
        if !server.url.starts_with("ws://") {
            server.kill();
            panic!("the speech server did not start within {READY_WITHIN:?}; its log:\n{}", server.log());
        }
        server
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Ends the server at once (SIGKILL), as a crash would: its connections are dropped.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What it wrote to stderr (tracebacks).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for VoskServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("speech server log ({}):\n{}", self.log.display(), self.log());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// `OUTDIAL_SPEECH_PYTHON`, else the venv scripts/test.sh makes, else `python3`.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("OUTDIAL_SPEECH_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(python);
    }
    let venv = Path::new(ROOT).join("tests/speech/.venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}
