//! CPU time by thread group of this process, of every `postgres` process, and of the machine.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// CPU time of this process's threads and of every `postgres` process, and of the machine.
pub struct CpuSnapshot {
    pub threads: HashMap<u64, (String, u64)>,
    pub procs: HashMap<u64, u64>,
    pub machine: (u64, u64),
    pub at: Instant,
}

pub struct CpuDelta {
    pub groups: BTreeMap<String, f64>,
    pub postgres: f64,
    pub machine_busy_frac: f64,
    pub wall: f64,
}

pub fn read_stat(path: &str) -> Option<(String, u64)> {
    let s = std::fs::read_to_string(path).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let fields: Vec<&str> = s[close + 2..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

pub const HZ: f64 = 100.0;

impl CpuSnapshot {
    pub fn take() -> CpuSnapshot {
        let mut threads = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let (Ok(tid), Some(stat)) = (name.parse::<u64>(), read_stat(&format!("/proc/self/task/{name}/stat"))) {
                    threads.insert(tid, stat);
                }
            }
        }
        let mut procs = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Ok(pid) = name.parse::<u64>() {
                    if let Some((comm, ticks)) = read_stat(&format!("/proc/{pid}/stat")) {
                        if comm == "postgres" {
                            procs.insert(pid, ticks);
                        }
                    }
                }
            }
        }
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let v: Vec<u64> = s.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
                let total: u64 = v.iter().take(8).sum();
                let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
                Some((total - idle, total))
            })
            .unwrap_or((0, 0));
        CpuSnapshot { threads, procs, machine, at: Instant::now() }
    }

    pub fn since(&self, before: &CpuSnapshot) -> CpuDelta {
        let mut groups: BTreeMap<String, f64> = BTreeMap::new();
        for (tid, (comm, ticks)) in &self.threads {
            let prev = before.threads.get(tid).map_or(0, |(_, t)| *t);
            let group = if *tid == u64::from(std::process::id()) {
                "bench main thread".to_string()
            } else if comm.starts_with("actix-server wo") || comm.starts_with("actix-rt") {
                "API HTTP workers (actix)".to_string()
            } else if comm.starts_with("tokio-r") {
                "tokio runtime (engine legs, dispatcher, sqlx, POST clients)".to_string()
            } else if comm == "receiver" {
                "webhook receiver".to_string()
            } else {
                format!("other: {comm}")
            };
            *groups.entry(group).or_default() += ticks.saturating_sub(prev) as f64 / HZ;
        }
        let postgres = self.procs.iter().map(|(pid, t)| t.saturating_sub(*before.procs.get(pid).unwrap_or(&0)) as f64 / HZ).sum();
        let (busy, total) = (self.machine.0 - before.machine.0, self.machine.1 - before.machine.1);
        CpuDelta {
            groups,
            postgres,
            machine_busy_frac: if total > 0 { busy as f64 / total as f64 } else { 0.0 },
            wall: self.at.duration_since(before.at).as_secs_f64(),
        }
    }
}

impl CpuDelta {
    pub fn report(&self, label: &str, events: u64) {
        let cores = |s: f64| s / self.wall;
        let per_event = |s: f64| if events > 0 { s * 1e6 / events as f64 } else { 0.0 };
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let mut parts = Vec::new();
        for (g, s) in self.groups.iter().filter(|(_, s)| **s > 0.0) {
            parts.push(format!("{g} {:.2} cores = {:.0} us/event", cores(*s), per_event(*s)));
        }
        parts.push(format!("postgres {:.2} cores = {:.0} us/event", cores(self.postgres), per_event(self.postgres)));
        let seen = self.groups.values().sum::<f64>() + self.postgres;
        let unaccounted = (self.machine_busy_frac * cpus as f64 * self.wall - seen).max(0.0);
        parts.push(format!("rest of machine {:.2} cores", cores(unaccounted)));
        println!(
            "cpu {label} ({:.1} s): {}; machine busy {:.0}% of {cpus} cores",
            self.wall,
            parts.join(", "),
            self.machine_busy_frac * 100.0
        );
    }
}
