//! CPU time and memory of a whole process tree: a gateway plus whatever it
//! spawns (uvicorn workers, node's helpers), read from /proc.
//!
//! Listing a tree scans every /proc/PID, which takes a millisecond or two, so
//! it is done outside timed loops; the samples taken inside a measurement read
//! only the PIDs listed beforehand.

use std::collections::HashMap;
use std::fs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;

use crate::procstat::{parse_status_kb, CpuSample};

/// The fields of /proc/PID/stat this module uses (times in clock ticks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatFields {
    pub ppid: u32,
    /// utime + stime of the process itself (all of its threads).
    pub own_ticks: u64,
    /// cutime + cstime: children that exited and were reaped.
    pub reaped_children_ticks: u64,
}

/// Parses ppid (field 4) and utime, stime, cutime, cstime (fields 14–17).
pub fn parse_stat(stat: &str) -> Option<StatFields> {
    // comm (field 2) may contain spaces and parens: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3, so field N is at index N − 3.
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(StatFields {
        ppid: u32::try_from(num(1)?).ok()?,
        own_ticks: num(11)? + num(12)?,
        reaped_children_ticks: num(13)? + num(14)?,
    })
}

fn read_stat(pid: u32) -> Option<StatFields> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `root` followed by all of its live descendants (breadth first).
pub fn list(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if let Some(s) = read_stat(pid) {
                children.entry(s.ppid).or_default().push(pid);
            }
        }
    }
    descendants(root, &children)
}

/// Breadth-first walk of a ppid → children map (pure, for tests).
pub fn descendants(root: u32, children: &HashMap<u32, Vec<u32>>) -> Vec<u32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(kids) = children.get(&out[i]) {
            for &k in kids {
                if !out.contains(&k) {
                    out.push(k);
                }
            }
        }
        i += 1;
    }
    out
}

fn sched_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let text = fs::read_to_string(entry.ok()?.path().join("schedstat")).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Cumulative CPU of the listed processes. The first PID (the root) must be
/// readable; a descendant that has gone is skipped (its time moves to its
/// parent's cutime/cstime once reaped, which is counted too).
pub fn cpu_sample(pids: &[u32]) -> anyhow::Result<CpuSample> {
    let (&root, rest) = pids.split_first().context("empty process list")?;
    let first = read_stat(root).with_context(|| format!("reading /proc/{root}/stat"))?;
    let mut ticks = first.own_ticks + first.reaped_children_ticks;
    let mut sched = sched_ns(root);
    for &pid in rest {
        if let Some(s) = read_stat(pid) {
            ticks += s.own_ticks + s.reaped_children_ticks;
            sched = sched.zip(sched_ns(pid)).map(|(a, b)| a + b);
        }
    }
    Ok(CpuSample {
        ticks,
        sched_ns: sched,
    })
}

/// Resident memory of a tree at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeMem {
    /// Sum of VmRSS over the processes (KiB).
    pub rss_kb: u64,
    /// Largest single-process VmHWM (KiB): exact peak for a one-process tree.
    pub max_hwm_kb: u64,
    pub processes: usize,
}

pub fn mem(pids: &[u32]) -> TreeMem {
    let mut m = TreeMem::default();
    for &pid in pids {
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        m.rss_kb += parse_status_kb(&status, "VmRSS").unwrap_or(0);
        m.max_hwm_kb = m
            .max_hwm_kb
            .max(parse_status_kb(&status, "VmHWM").unwrap_or(0));
        m.processes += 1;
    }
    m
}

/// Samples a tree's summed RSS in a background thread and keeps the maximum.
/// The peak it reports is max(sampled Σ VmRSS, largest single VmHWM): both
/// are lower bounds of the true peak, and the second one is exact for a
/// single process, so the figure never overstates anyone's memory.
pub struct RssWatch {
    stop: Arc<AtomicBool>,
    peak_kb: Arc<AtomicU64>,
    max_processes: Arc<AtomicU64>,
    root: u32,
    handle: Option<JoinHandle<()>>,
}

impl RssWatch {
    /// Samples every `every`; re-lists the tree every 20 samples.
    pub fn start(root: u32, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kb = Arc::new(AtomicU64::new(0));
        let max_processes = Arc::new(AtomicU64::new(0));
        let handle = {
            let (stop, peak_kb, max_processes) =
                (stop.clone(), peak_kb.clone(), max_processes.clone());
            std::thread::spawn(move || {
                let mut pids = list(root);
                let mut until_relist = 20u32;
                while !stop.load(Ordering::Relaxed) {
                    until_relist -= 1;
                    if until_relist == 0 {
                        pids = list(root);
                        until_relist = 20;
                    }
                    let m = mem(&pids);
                    peak_kb.fetch_max(m.rss_kb.max(m.max_hwm_kb), Ordering::Relaxed);
                    max_processes.fetch_max(m.processes as u64, Ordering::Relaxed);
                    std::thread::sleep(every);
                }
            })
        };
        Self {
            stop,
            peak_kb,
            max_processes,
            root,
            handle: Some(handle),
        }
    }

    /// Peak so far, including one fresh sample.
    pub fn peak_kb(&self) -> u64 {
        let m = mem(&list(self.root));
        self.peak_kb
            .load(Ordering::Relaxed)
            .max(m.rss_kb)
            .max(m.max_hwm_kb)
    }

    /// Most processes seen in the tree at once.
    pub fn max_processes(&self) -> u64 {
        self.max_processes.load(Ordering::Relaxed)
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Waits until the tree uses less than `max_share` of one CPU over a
/// `window`, or `limit` has passed. Returns how long it waited. Used after a
/// run that overloaded a gateway, which may still be working through
/// requests the generator gave up on.
pub fn wait_quiet(
    pids: &[u32],
    window: Duration,
    max_share: f64,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let start = std::time::Instant::now();
    let mut before = cpu_sample(pids)?;
    loop {
        std::thread::sleep(window);
        crate::signals::check()?;
        let after = cpu_sample(pids)?;
        let d = crate::procstat::cpu_delta(&before, &after);
        let used_us = d.sched_us.unwrap_or(d.stat_us);
        if used_us < max_share * window.as_secs_f64() * 1e6 || start.elapsed() >= limit {
            return Ok(start.elapsed());
        }
        before = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_fields() {
        let line = "1234 (node (main) x) S 77 1234 1234 0 -1 4194560 300 0 0 0 17 4 6 2 20 0 2 0 100 1000 200";
        assert_eq!(
            parse_stat(line),
            Some(StatFields {
                ppid: 77,
                own_ticks: 21,
                reaped_children_ticks: 8
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn walks_descendants() {
        let mut m: HashMap<u32, Vec<u32>> = HashMap::new();
        m.insert(1, vec![10, 11]);
        m.insert(10, vec![100]);
        m.insert(5, vec![50]);
        assert_eq!(descendants(1, &m), vec![1, 10, 11, 100]);
        assert_eq!(descendants(7, &m), vec![7]);
    }

    #[test]
    fn samples_self() {
        let pids = list(std::process::id());
        assert_eq!(pids.first().copied(), Some(std::process::id()));
        assert!(cpu_sample(&pids).is_ok());
        let m = mem(&pids);
        assert!(m.rss_kb > 0 && m.processes >= 1);
    }
}
