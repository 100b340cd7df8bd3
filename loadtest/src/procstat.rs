//! CPU time and memory of a process, from /proc.

use std::fs;

use anyhow::Context as _;
use serde::Serialize;

/// Cumulative CPU time of a process at one instant.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CpuSample {
    /// utime + stime from /proc/PID/stat, in clock ticks (1/CLK_TCK s; 10 ms at 100 Hz).
    pub ticks: u64,
    /// Sum of on-CPU ns over live threads from /proc/PID/task/*/schedstat (ns precision).
    pub sched_ns: Option<u64>,
}

/// CPU consumed between two samples.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CpuDelta {
    /// From utime+stime (coarse: one tick = 10 ms at CLK_TCK=100).
    pub stat_us: f64,
    /// From schedstat (ns precision), when the kernel exposes it.
    pub sched_us: Option<f64>,
}

pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

/// Parses utime+stime (fields 14 and 15) from a /proc/PID/stat line.
pub fn parse_stat_ticks(stat: &str) -> anyhow::Result<u64> {
    // comm (field 2) may contain spaces and parens: split after the last ')'.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14 → index 11.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

fn sched_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = entry.ok()?.path().join("schedstat");
        let text = fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

pub fn cpu_sample(pid: u32) -> anyhow::Result<CpuSample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    Ok(CpuSample {
        ticks: parse_stat_ticks(&stat)?,
        sched_ns: sched_ns(pid),
    })
}

pub fn cpu_delta(before: &CpuSample, after: &CpuSample) -> CpuDelta {
    let ticks = after.ticks.saturating_sub(before.ticks);
    CpuDelta {
        stat_us: ticks as f64 * 1e6 / clk_tck() as f64,
        sched_us: match (before.sched_ns, after.sched_ns) {
            (Some(a), Some(b)) if b >= a => Some((b - a) as f64 / 1e3),
            _ => None,
        },
    }
}

/// Resident memory, KiB.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Mem {
    pub rss_kb: u64,
    /// Peak RSS (VmHWM).
    pub hwm_kb: u64,
}

pub fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub fn mem(pid: u32) -> anyhow::Result<Mem> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(Mem {
        rss_kb: parse_status_kb(&status, "VmRSS").context("no VmRSS")?,
        hwm_kb: parse_status_kb(&status, "VmHWM").context("no VmHWM")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat() {
        let line = "1234 (tokio (rt) x) S 1 1234 1234 0 -1 4194560 300 0 0 0 17 4 0 0 20 0 2 0 100 1000 200";
        assert_eq!(parse_stat_ticks(line).ok(), Some(21));
    }

    #[test]
    fn parses_status() {
        let s = "Name:\tx\nVmHWM:\t   12345 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(parse_status_kb(s, "VmHWM"), Some(12345));
        assert_eq!(parse_status_kb(s, "VmRSS"), Some(2048));
    }

    #[test]
    fn samples_self() {
        let pid = std::process::id();
        let a = cpu_sample(pid);
        assert!(a.is_ok());
        let m = mem(pid).unwrap_or_default();
        assert!(m.hwm_kb >= m.rss_kb && m.rss_kb > 0);
    }
}
