//! The figures a `peers` run compares contestants by, each read the same way
//! for every contestant, so a goal against a peer and a goal against the bare
//! proxy use one definition. Pure: a report in, a number out.

use super::model::{cpu_per_req, PeersReport};
use crate::workload::Scenario;

/// The rate at which added latency is compared (when it was offered).
pub const COMMON_RATE: f64 = 50.0;

/// Which direction of a metric is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// CPU µs per request in the closed-loop max-throughput run.
    CpuAtSaturation,
    /// Requests per second in the closed-loop max-throughput run.
    MaxThroughput,
    /// Added latency (contestant − direct) at the common open-loop rate.
    AddedP50,
    AddedP99,
    /// Peak RSS of the whole process tree over the whole run (one value, no scenario).
    PeakRss,
}

impl Metric {
    /// The label used in goals tables (and stored in peers.json).
    pub fn label(self, rate: f64) -> String {
        match self {
            Metric::CpuAtSaturation => "CPU µs/request at saturation (max-throughput run)".into(),
            Metric::MaxThroughput => "max throughput (closed loop)".into(),
            Metric::AddedP50 => format!("added p50 latency at {rate:.0} req/s"),
            Metric::AddedP99 => format!("added p99 latency at {rate:.0} req/s"),
            Metric::PeakRss => "peak RSS (whole process tree, whole run)".into(),
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Metric::CpuAtSaturation | Metric::AddedP50 | Metric::AddedP99 => "µs",
            Metric::MaxThroughput => "req/s",
            Metric::PeakRss => "KiB",
        }
    }

    pub fn better(self) -> Better {
        match self {
            Metric::MaxThroughput => Better::Higher,
            _ => Better::Lower,
        }
    }

    /// Whether the metric is read per scenario (everything but memory).
    pub fn per_scenario(self) -> bool {
        self != Metric::PeakRss
    }

    /// `name`'s value in `r` (`sc` is ignored for memory), at the common `rate`.
    pub fn value(self, r: &PeersReport, name: &str, sc: Scenario, rate: f64) -> Option<f64> {
        match self {
            Metric::CpuAtSaturation => r.max(name, sc).and_then(cpu_per_req),
            Metric::MaxThroughput => r.max(name, sc).map(|m| m.achieved_rps),
            Metric::AddedP50 => r
                .open(name, sc, rate)
                .and_then(|m| m.added_latency_us)
                .map(|a| a.p50),
            Metric::AddedP99 => r
                .open(name, sc, rate)
                .and_then(|m| m.added_latency_us)
                .map(|a| a.p99),
            Metric::PeakRss => r
                .contestant(name)
                .and_then(|c| c.peak_rss_kb)
                .map(|v| v as f64),
        }
    }
}

/// The rate added latency is compared at: `COMMON_RATE` when it was offered,
/// else the lowest rate of the run.
pub fn common_rate(r: &PeersReport) -> f64 {
    if r.settings.rates.contains(&COMMON_RATE) {
        COMMON_RATE
    } else {
        r.settings
            .rates
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
    }
}
