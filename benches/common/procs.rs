//! What the benches read of other processes and of the machine from /proc: open files limit,
//! CPU ticks of a process and of PostgreSQL backends, UDP drops.

use super::cpu::read_stat;
use std::collections::HashMap;

/// The soft limit on open files (from /proc/self/limits).
pub fn nofile_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// utime + stime of a process (a zombie keeps them until reaped).
pub fn proc_ticks(pid: u32) -> Option<u64> {
    read_stat(&format!("/proc/{pid}/stat")).map(|(_, ticks)| ticks)
}

/// UDP RcvbufErrors and InErrors of the machine (/proc/net/snmp).
pub fn udp_errors() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else { return (0, 0) };
    let field = |name: &str| {
        names.split_whitespace().position(|n| n == name).and_then(|i| values.split_whitespace().nth(i)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    (field("RcvbufErrors"), field("InErrors"))
}

/// Datagrams dropped so far by the UDP socket bound to `port` (/proc/net/udp, last column).
pub fn udp_socket_drops(port: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/udp").ok()?;
    let suffix = format!(":{port:04X}");
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1)?.ends_with(&suffix)).then(|| fields.last()?.parse().ok())?
    })
}

/// CPU ticks of the PostgreSQL backends connected to `db` (their command line names it).
pub fn backend_ticks(db: &str) -> HashMap<u32, u64> {
    let mut ticks = HashMap::new();
    let needle = format!(" {db} ");
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.starts_with("postgres:") && cmdline.contains(&needle) {
            if let Some(t) = proc_ticks(pid) {
                ticks.insert(pid, t);
            }
        }
    }
    ticks
}

pub fn proc_is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(true)
}
