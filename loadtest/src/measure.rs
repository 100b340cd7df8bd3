//! Turns what a generator recorded into a `Measurement` (the report's row),
//! and fills in "added" latency against the direct path of the same run.

use crate::report::{Measurement, Mode};
use crate::stats::{Percentiles, Recorder};
use crate::workload::Scenario;

/// What one or more merged runs of one subject × scenario × load recorded.
pub struct Recorded<'a> {
    pub subject: &'a str,
    pub scenario: Scenario,
    pub mode: Mode,
    pub target_rps: Option<f64>,
    pub connections: usize,
    pub rounds: usize,
    pub rec: &'a Recorder,
    /// Sum of the measured windows (s).
    pub window_s: f64,
    /// Subject CPU over the windows: /proc stat and schedstat (µs).
    pub cpu_stat_us: Option<f64>,
    pub cpu_sched_us: Option<f64>,
    pub connections_lost: usize,
}

impl Recorded<'_> {
    pub fn measurement(&self) -> Measurement {
        let rec = self.rec;
        let total = rec.total();
        let per_req = |v: Option<f64>| v.filter(|_| rec.ok > 0).map(|v| v / rec.ok as f64);
        Measurement {
            subject: self.subject.to_string(),
            scenario: self.scenario,
            mode: self.mode,
            target_rps: self.target_rps,
            connections: self.connections,
            rounds: self.rounds,
            requests: total,
            ok: rec.ok,
            non_200: rec.non_200,
            errors: rec.errors,
            success_rate: if total > 0 {
                rec.ok as f64 / total as f64
            } else {
                0.0
            },
            late_sends: rec.late_sends,
            achieved_rps: if self.window_s > 0.0 {
                rec.ok as f64 / self.window_s
            } else {
                0.0
            },
            latency_us: Percentiles::from_ns(&rec.latency),
            ttfb_us: self
                .scenario
                .is_stream()
                .then(|| Percentiles::from_ns(&rec.ttfb))
                .flatten(),
            added_latency_us: None,
            added_ttfb_us: None,
            sched_lag_us: Percentiles::from_ns(&rec.sched_lag),
            cpu_us_per_req: per_req(self.cpu_stat_us),
            cpu_us_per_req_schedstat: per_req(self.cpu_sched_us),
            overhead_header_us: Percentiles::from_us(&rec.overhead_header_us),
            connections_lost: self.connections_lost,
            upstream_attempts: None,
            retried_latency_us: rec.retried_latency.as_ref().and_then(Percentiles::from_ns),
        }
    }
}

/// Sets added latency and TTFB (subject − `direct_name`, same scenario and
/// rate) on every open-loop measurement of another subject.
pub fn fill_added(ms: &mut [Measurement], direct_name: &str) {
    let direct: Vec<Measurement> = ms
        .iter()
        .filter(|m| m.subject == direct_name && m.mode == Mode::Open)
        .cloned()
        .collect();
    for m in ms
        .iter_mut()
        .filter(|m| m.subject != direct_name && m.mode == Mode::Open)
    {
        if let Some(d) = direct
            .iter()
            .find(|d| d.scenario == m.scenario && d.target_rps == m.target_rps)
        {
            if let (Some(l), Some(dl)) = (m.latency_us, d.latency_us) {
                m.added_latency_us = Some(l.minus(&dl));
            }
            if let (Some(t), Some(dt)) = (m.ttfb_us, d.ttfb_us) {
                m.added_ttfb_us = Some(t.minus(&dt));
            }
        }
    }
}
