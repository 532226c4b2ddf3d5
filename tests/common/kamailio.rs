//! Kamailio (Debian `kamailio`, 5.6) running deploy/kamailio/kamailio.cfg in front of test
//! instances: its own runtime directory, dispatcher list and control socket, so it never meets
//! another Kamailio on the machine. Stopped (SIGTERM, then SIGKILL) when dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Kamailio {
    child: Option<Child>,
    dir: PathBuf,
    /// Where it listens (UDP).
    pub ip: String,
    pub port: u16,
}

/// The kamailio program: in PATH, else Debian's /usr/sbin (not in a normal user's PATH).
fn program(name: &str) -> Option<PathBuf> {
    let sbin = Path::new("/usr/sbin").join(name);
    if sbin.exists() {
        return Some(sbin);
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(name)).find(|p| p.exists())
}

impl Kamailio {
    /// Whether Kamailio can run here. When it is missing this prints why the test is skipped and
    /// returns false, except in CI (env CI set), where a missing Kamailio fails the test.
    pub fn available() -> bool {
        if program("kamailio").is_some() && program("kamcmd").is_some() {
            return true;
        }
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
            panic!("kamailio is not installed and CI is set: install it (apt-get install kamailio; scripts/test.sh does it when run as root)");
        }
        eprintln!("SKIPPED: kamailio is not installed (apt-get install kamailio; scripts/test.sh does it when run as root)");
        false
    }

    /// Kamailio on `ip`:`port` (UDP) dispatching to `instances` (SIP "ip:port" of Outdial
    /// instances), probing them every second. Returns once it answers an OPTIONS.
    pub fn start(ip: &str, port: u16, instances: &[String]) -> Kamailio {
        let dir = std::env::temp_dir().join(format!("outdial-kamailio-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let list: String = instances.iter().map(|i| format!("2 sip:{i}\n")).collect();
        std::fs::write(dir.join("dispatcher.list"), list).unwrap();
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kamailio/kamailio.cfg");
        let log = std::fs::File::create(dir.join("kamailio.log")).unwrap();
        let child = Command::new(program("kamailio").expect("kamailio installed"))
            .arg("-f")
            .arg(&config)
            .args(["-DD", "-E", "-n", "2", "-m", "32", "-M", "8"])
            .arg("-Y")
            .arg(&dir)
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .arg("-A")
            .arg(format!("LISTEN=udp:{ip}:{port}"))
            .arg("-A")
            .arg(format!("DISPATCHER_LIST=\"{}\"", dir.join("dispatcher.list").display()))
            .arg("-A")
            .arg(format!("CTL_SOCKET=\"unix:{}\"", dir.join("ctl").display()))
            .args(["-A", "DS_PING_INTERVAL=1"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("kamailio starts");
        let mut kamailio = Kamailio { child: Some(child), dir, ip: ip.to_string(), port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while kamailio.rpc("core.uptime").is_none() {
            if let Some(status) = kamailio.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("kamailio exited ({status}):\n{}", kamailio.log());
            }
            assert!(Instant::now() < deadline, "kamailio did not start:\n{}", kamailio.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        kamailio
    }

    pub fn address(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// Its log (stderr), for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }

    /// An RPC command through kamcmd and the control socket; None when it fails.
    pub fn rpc(&self, command: &str) -> Option<String> {
        let output = Command::new(program("kamcmd")?)
            .arg("-s")
            .arg(format!("unix:{}", self.dir.join("ctl").display()))
            .args(command.split(' '))
            .output()
            .ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).to_string())
    }

    /// The dispatcher's flags for instance `address` ("AP" active and probed, "IP" inactive).
    pub fn instance_flags(&self, address: &str) -> String {
        let list = self.rpc("dispatcher.list").unwrap_or_default();
        let uri = format!("URI: sip:{address}");
        let mut lines = list.lines().skip_while(|l| l.trim() != uri);
        lines.find_map(|l| l.trim().strip_prefix("FLAGS: ").map(str::to_string)).unwrap_or_default()
    }

    /// Waits (up to `within`) until the dispatcher's flags for `address` start with `state`
    /// ('A' active, 'I' inactive).
    pub async fn wait_instance(&self, address: &str, state: char, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let flags = self.instance_flags(address);
            if flags.starts_with(state) {
                return;
            }
            assert!(Instant::now() < deadline, "instance {address} stays {flags:?}, not {state}: {}", self.rpc("dispatcher.list").unwrap_or_default());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: the main process stops its children too.
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
