//! SIPp as a bench's trunk or baseline: started with its statistics, logs and errors in a
//! directory, stopped gracefully, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn sipp_installed() -> bool {
    Command::new("sipp").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// The last row of a SIPp statistics file (-trace_stat -stf F -fd 1).
#[derive(Debug, Clone, Copy, Default)]
pub struct SippStat {
    pub current: u64,
    pub successful: u64,
    pub failed: u64,
}

pub fn sipp_stat_last(path: &Path) -> Option<SippStat> {
    let text = std::fs::read_to_string(path).ok()?;
    let header: Vec<&str> = text.lines().next()?.split(';').collect();
    let last: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).last()?.split(';').collect();
    if last.first() == header.first() {
        return None;
    }
    let col = |name: &str| header.iter().position(|h| *h == name).and_then(|i| last.get(i)).and_then(|v| v.trim().parse::<u64>().ok());
    Some(SippStat {
        current: col("CurrentCall")?,
        successful: col("SuccessfulCall(C)").unwrap_or(0),
        failed: col("FailedCall(C)").unwrap_or(0),
    })
}

pub struct Sipp {
    child: Child,
    dir: PathBuf,
}

pub struct SippResult {
    pub exit: Option<i32>,
    pub successful: u64,
    pub failed: u64,
}

impl SippResult {
    pub fn summary(&self) -> String {
        format!(
            "SIPp counted {} successful and {} failed calls (exit {})",
            self.successful,
            self.failed,
            self.exit.map_or("killed".to_string(), |c| c.to_string())
        )
    }
}

impl Sipp {
    /// A bench's trunk: `scenario` (under benches/) on 127.0.0.1:port, its files in `dir`, with
    /// `extra` arguments (an injection file, say).
    pub fn trunk(scenario: &str, port: u16, dir: &Path, extra: &[&std::ffi::OsStr]) -> anyhow::Result<Sipp> {
        std::fs::create_dir_all(dir)?;
        let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches").join(scenario);
        let mut command = Command::new("sipp");
        command.arg("-sf").arg(&scenario).args(extra);
        Sipp::spawn(command, port, dir)
    }

    pub fn spawn(mut command: Command, port: u16, dir: &Path) -> anyhow::Result<Sipp> {
        command
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin", "-trace_stat", "-fd", "1", "-trace_logs", "-trace_err"])
            // 4 MiB socket buffers (SIPp's default is 64 KiB), as Outdial's SIP socket has.
            .args(["-buff_size", "4194304"])
            .arg("-stf")
            .arg(dir.join("stat.csv"))
            .arg("-log_file")
            .arg(dir.join("log.txt"))
            .arg("-error_file")
            .arg(dir.join("errors.txt"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("screen.txt"))?)
            .stderr(std::fs::File::create(dir.join("stderr.txt"))?);
        let mut child = command.spawn().map_err(|e| anyhow::anyhow!("cannot start sipp: {e}"))?;
        // Listening once its statistics file has its header (or it exited: port taken, bad scenario).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dir.join("stat.csv").exists() {
            if let Some(status) = child.try_wait()? {
                let err = std::fs::read_to_string(dir.join("stderr.txt")).unwrap_or_default();
                anyhow::bail!("sipp exited at start ({status}) on port {port}: {}", err.trim());
            }
            anyhow::ensure!(Instant::now() < deadline, "sipp did not start within 10 s on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
        Ok(Sipp { child, dir: dir.to_path_buf() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stat_file(&self) -> PathBuf {
        self.dir.join("stat.csv")
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.join("log.txt")
    }

    /// SIGUSR1 (SIPp: stop taking calls, quit when the current ones end), then SIGKILL after 10 s.
    pub async fn stop(&mut self) -> SippResult {
        let _ = Command::new("kill").arg("-USR1").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        let exit = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let stat = sipp_stat_last(&self.stat_file()).unwrap_or_default();
        SippResult { exit, successful: stat.successful, failed: stat.failed }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
