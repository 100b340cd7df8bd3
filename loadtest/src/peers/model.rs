//! The result of a `peers` run, as written to peers.json and read back by
//! `loadtest report`.

use serde::{Deserialize, Serialize};

use super::bare::BareGoal;
use super::goals::GoalResult;
use super::sustain::{RateStatus, SustainRule};
use crate::report::{Measurement, Mode};
use crate::sysinfo::Machine;
use crate::workload::Scenario;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeersReport {
    pub machine: Machine,
    /// MemTotal, KiB.
    pub mem_total_kb: Option<u64>,
    /// The command line that produced this report.
    pub command: String,
    pub settings: PeersSettings,
    pub contestants: Vec<ContestantInfo>,
    pub measurements: Vec<Measurement>,
    pub rates: Vec<RateOutcome>,
    pub goals: Vec<GoalResult>,
    /// ferrogate within 10% of the bare proxy, figure by figure (empty for
    /// runs without the bare proxy).
    #[serde(default)]
    pub bare_goals: Vec<BareGoal>,
    pub notes: Vec<String>,
    /// Whole run, start-up and shut-down included (s).
    pub wall_time_s: f64,
    /// /proc/loadavg (1, 5, 15 min) when the run started and ended: other
    /// work on the machine shows up here.
    #[serde(default)]
    pub loadavg_start: Option<String>,
    #[serde(default)]
    pub loadavg_end: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeersSettings {
    pub scenarios: Vec<Scenario>,
    pub rates: Vec<f64>,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub max_duration_s: f64,
    pub drain_s: f64,
    pub timeout_s: f64,
    pub connections: usize,
    pub max_connections: usize,
    pub chunks: usize,
    pub pinned: bool,
    pub rule: SustainRule,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ContestantInfo {
    pub name: String,
    /// e.g. `litellm 1.106.2 (Python 3.11.7)`.
    pub version: String,
    pub command: String,
    /// Seconds from spawn to the first 200 on its readiness URL.
    pub ready_after_s: Option<f64>,
    /// Most processes seen in its tree at once.
    pub processes: Option<u64>,
    /// CPU share of one core while idle, measured over 1 s after warm-up.
    pub idle_cpu_share: Option<f64>,
    /// Σ VmRSS of the tree after start-up, before any traffic (KiB).
    pub idle_rss_kb: Option<u64>,
    /// Peak of the tree's RSS over the whole run (KiB); see `proctree::RssWatch`.
    pub peak_rss_kb: Option<u64>,
    /// Σ VmRSS at the end of the run (KiB).
    pub end_rss_kb: Option<u64>,
    /// Why it was not (fully) measured, when it was not.
    pub error: Option<String>,
}

/// What happened to one contestant at one offered open-loop rate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RateOutcome {
    pub contestant: String,
    pub scenario: Scenario,
    pub rate: f64,
    pub status: RateStatus,
    pub reasons: Vec<String>,
}

impl PeersReport {
    pub fn contestant(&self, name: &str) -> Option<&ContestantInfo> {
        self.contestants.iter().find(|c| c.name == name)
    }

    pub fn open(&self, name: &str, scenario: Scenario, rate: f64) -> Option<&Measurement> {
        self.measurements.iter().find(|m| {
            m.subject == name
                && m.scenario == scenario
                && m.mode == Mode::Open
                && m.target_rps == Some(rate)
        })
    }

    pub fn max(&self, name: &str, scenario: Scenario) -> Option<&Measurement> {
        self.measurements
            .iter()
            .find(|m| m.subject == name && m.scenario == scenario && m.mode == Mode::Max)
    }

    /// Highest offered rate the contestant sustained in `scenario`.
    pub fn highest_sustained(&self, name: &str, scenario: Scenario) -> Option<f64> {
        self.rates
            .iter()
            .filter(|r| {
                r.contestant == name && r.scenario == scenario && r.status == RateStatus::Sustained
            })
            .map(|r| r.rate)
            .fold(None, |acc: Option<f64>, r| {
                Some(acc.map_or(r, |a| a.max(r)))
            })
    }
}

/// CPU µs per successful request: /proc stat (counts exited threads and
/// reaped children too), else schedstat.
pub fn cpu_per_req(m: &Measurement) -> Option<f64> {
    m.cpu_us_per_req.or(m.cpu_us_per_req_schedstat)
}
