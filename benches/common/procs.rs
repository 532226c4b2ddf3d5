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

/// Every process's name and CPU ticks (utime + stime), by pid.
pub fn all_ticks() -> HashMap<u32, (String, u64)> {
    let mut all = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Some(stat) = read_stat(&format!("/proc/{pid}/stat")) {
            all.insert(pid, stat);
        }
    }
    all
}

/// The machine's CPU ticks by kind, summed over cores (/proc/stat's first line): user (with
/// nice), system, irq + softirq, steal (taken by the hypervisor), idle (with iowait).
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineTicks {
    pub user: u64,
    pub system: u64,
    pub interrupts: u64,
    pub steal: u64,
    pub idle: u64,
}

pub fn machine_ticks() -> MachineTicks {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = text.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    MachineTicks { user: at(0) + at(1), system: at(2), idle: at(3) + at(4), interrupts: at(5) + at(6), steal: at(7) }
}
