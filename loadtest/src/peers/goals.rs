//! Issue #3's goals for ferrogate against its peers, and the measured ratio
//! for each. Pure: a report's measurements in, a verdict per goal out.

use serde::{Deserialize, Serialize};

use super::model::{cpu_per_req, PeersReport};
use crate::workload::Scenario;

/// The contestant the goals are about.
pub const OURS: &str = "ferrogate";
/// The rate at which added latency is compared (when it was offered).
pub const COMMON_RATE: f64 = 50.0;

/// Which direction of a metric is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// How many times better `ours` is than `theirs`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Advantage {
    Ratio(f64),
    /// Lower is better and ours is ≤ 0 (e.g. added latency within the noise
    /// of the direct path) while theirs is > 0: unboundedly better.
    OursNotAboveZero,
    /// A value is missing, not finite, or the comparison means nothing.
    Unmeasurable,
}

pub fn advantage(ours: f64, theirs: f64, better: Better) -> Advantage {
    if !ours.is_finite() || !theirs.is_finite() {
        return Advantage::Unmeasurable;
    }
    match better {
        Better::Lower if theirs <= 0.0 => Advantage::Unmeasurable,
        Better::Lower if ours <= 0.0 => Advantage::OursNotAboveZero,
        Better::Lower => Advantage::Ratio(theirs / ours),
        Better::Higher if ours <= 0.0 || theirs <= 0.0 => Advantage::Unmeasurable,
        Better::Higher => Advantage::Ratio(ours / theirs),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GoalResult {
    /// What is compared, e.g. "CPU µs/request at saturation".
    pub goal: String,
    pub scenario: Option<Scenario>,
    pub versus: Option<String>,
    /// Required advantage (×); None for the success goal.
    pub required: Option<f64>,
    pub ours: Option<f64>,
    pub theirs: Option<f64>,
    pub unit: String,
    /// Measured advantage (×); None when unmeasurable or unbounded (see note).
    pub ratio: Option<f64>,
    /// None: could not be measured.
    pub met: Option<bool>,
    pub note: Option<String>,
}

/// One "ferrogate is at least `required`× better than `versus`" row.
#[allow(clippy::too_many_arguments)]
fn compare(
    goal: &str,
    scenario: Option<Scenario>,
    versus: &str,
    required: f64,
    unit: &str,
    better: Better,
    ours: Option<f64>,
    theirs: Option<f64>,
    missing: Option<String>,
) -> GoalResult {
    let mut r = GoalResult {
        goal: goal.to_string(),
        scenario,
        versus: Some(versus.to_string()),
        required: Some(required),
        ours,
        theirs,
        unit: unit.to_string(),
        ratio: None,
        met: None,
        note: missing,
    };
    let (Some(o), Some(t)) = (ours, theirs) else {
        r.note.get_or_insert_with(|| "not measured".into());
        return r;
    };
    match advantage(o, t, better) {
        Advantage::Ratio(x) => {
            r.ratio = Some(x);
            r.met = Some(x >= required);
        }
        Advantage::OursNotAboveZero => {
            r.met = Some(true);
            r.note = Some(format!(
                "{OURS}'s value is ≤ 0 {unit} (indistinguishable from direct), so the ratio is unbounded"
            ));
        }
        Advantage::Unmeasurable => {
            r.note = Some(format!(
                "{versus}'s value is ≤ 0 {unit}: no meaningful ratio"
            ));
        }
    }
    r
}

/// Why a peer has no numbers, when it does not.
fn missing_note(report: &PeersReport, peer: &str) -> Option<String> {
    report
        .contestant(peer)
        .and_then(|c| c.error.clone())
        .map(|e| format!("{peer} not measured: {e}"))
}

/// Every goal of issue #3 for which the run has the contestants.
pub fn evaluate(report: &PeersReport) -> Vec<GoalResult> {
    let peers: Vec<&str> = ["litellm", "portkey"]
        .into_iter()
        .filter(|p| report.contestant(p).is_some())
        .collect();
    if report.contestant(OURS).is_none() {
        return Vec::new();
    }
    let rate = if report.settings.rates.contains(&COMMON_RATE) {
        COMMON_RATE
    } else {
        report
            .settings
            .rates
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
    };
    let mut out = Vec::new();
    for &sc in &report.settings.scenarios {
        let ours_max = report.max(OURS, sc);
        for &peer in &peers {
            let theirs_max = report.max(peer, sc);
            let required = if peer == "litellm" { 250.0 } else { 25.0 };
            out.push(compare(
                "CPU µs/request at saturation (max-throughput run)",
                Some(sc),
                peer,
                required,
                "µs",
                Better::Lower,
                ours_max.and_then(cpu_per_req),
                theirs_max.and_then(cpu_per_req),
                missing_note(report, peer),
            ));
            if peer == "portkey" {
                out.push(compare(
                    "max throughput (closed loop)",
                    Some(sc),
                    peer,
                    20.0,
                    "req/s",
                    Better::Higher,
                    ours_max.map(|m| m.achieved_rps),
                    theirs_max.map(|m| m.achieved_rps),
                    missing_note(report, peer),
                ));
            }
        }
        let ours_open = report.open(OURS, sc, rate);
        for &peer in &peers {
            let theirs_open = report.open(peer, sc, rate);
            for (label, pick) in [
                (
                    "added p50",
                    (|a: crate::stats::Added| a.p50) as fn(_) -> f64,
                ),
                ("added p99", |a: crate::stats::Added| a.p99),
            ] {
                out.push(compare(
                    &format!("{label} latency at {rate:.0} req/s"),
                    Some(sc),
                    peer,
                    20.0,
                    "µs",
                    Better::Lower,
                    ours_open.and_then(|m| m.added_latency_us).map(pick),
                    theirs_open.and_then(|m| m.added_latency_us).map(pick),
                    missing_note(report, peer),
                ));
            }
        }
    }
    let ours_rss = report.contestant(OURS).and_then(|c| c.peak_rss_kb);
    for &peer in &peers {
        out.push(compare(
            "peak RSS (whole process tree, whole run)",
            None,
            peer,
            10.0,
            "KiB",
            Better::Lower,
            ours_rss.map(|v| v as f64),
            report
                .contestant(peer)
                .and_then(|c| c.peak_rss_kb)
                .map(|v| v as f64),
            missing_note(report, peer),
        ));
    }
    out.push(success_goal(report));
    out
}

/// "100% success at every rate it is offered up to its max".
fn success_goal(report: &PeersReport) -> GoalResult {
    let ours: Vec<_> = report
        .measurements
        .iter()
        .filter(|m| m.subject == OURS)
        .collect();
    let worst = ours
        .iter()
        .map(|m| m.success_rate)
        .fold(None, |acc: Option<f64>, s| {
            Some(acc.map_or(s, |a| a.min(s)))
        });
    let failing: Vec<String> = ours
        .iter()
        .filter(|m| m.success_rate < 1.0)
        .map(|m| {
            let load = m
                .target_rps
                .map_or("max".to_string(), |r| format!("{r:.0}/s"));
            format!(
                "{} @{load}: {:.3}%",
                m.scenario.name(),
                m.success_rate * 100.0
            )
        })
        .collect();
    GoalResult {
        goal: "100% success at every rate offered (and max throughput)".into(),
        scenario: None,
        versus: None,
        required: None,
        ours: worst.map(|w| w * 100.0),
        theirs: None,
        unit: "% (lowest)".into(),
        ratio: None,
        met: worst.map(|w| w >= 1.0),
        note: (!failing.is_empty()).then(|| failing.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_by_direction() {
        assert_eq!(
            advantage(30.0, 15_000.0, Better::Lower),
            Advantage::Ratio(500.0)
        );
        assert_eq!(
            advantage(30_000.0, 750.0, Better::Higher),
            Advantage::Ratio(40.0)
        );
        assert_eq!(
            advantage(-3.0, 2_300.0, Better::Lower),
            Advantage::OursNotAboveZero
        );
        assert_eq!(
            advantage(0.0, 2_300.0, Better::Lower),
            Advantage::OursNotAboveZero
        );
        assert_eq!(advantage(5.0, -1.0, Better::Lower), Advantage::Unmeasurable);
        assert_eq!(
            advantage(0.0, 10.0, Better::Higher),
            Advantage::Unmeasurable
        );
        assert_eq!(
            advantage(f64::NAN, 10.0, Better::Lower),
            Advantage::Unmeasurable
        );
    }

    #[test]
    fn compare_sets_met_and_notes() {
        let row = |o, t| compare("g", None, "peer", 20.0, "µs", Better::Lower, o, t, None);
        let met = row(Some(100.0), Some(2_500.0));
        assert_eq!((met.ratio, met.met), (Some(25.0), Some(true)));
        let missed = row(Some(100.0), Some(1_500.0));
        assert_eq!((missed.ratio, missed.met), (Some(15.0), Some(false)));
        let unbounded = row(Some(-2.0), Some(1_500.0));
        assert_eq!((unbounded.ratio, unbounded.met), (None, Some(true)));
        assert!(unbounded.note.is_some());
        let absent = row(Some(1.0), None);
        assert_eq!(absent.met, None);
        assert_eq!(absent.note.as_deref(), Some("not measured"));
        let failed = compare(
            "g",
            None,
            "peer",
            20.0,
            "µs",
            Better::Lower,
            Some(1.0),
            None,
            Some("peer not measured: exited".into()),
        );
        assert_eq!(failed.note.as_deref(), Some("peer not measured: exited"));
    }

    /// A small report as peers.json would hold it.
    fn report() -> PeersReport {
        let m = |subject: &str,
                 mode: &str,
                 rate: Option<f64>,
                 rps: f64,
                 cpu: f64,
                 p50: f64,
                 p99: f64| {
            serde_json::json!({
                "subject": subject, "scenario": "non-stream", "mode": mode, "target_rps": rate,
                "connections": 16, "rounds": 1, "requests": 500, "ok": 500, "non_200": 0, "errors": 0,
                "success_rate": 1.0, "late_sends": 0, "achieved_rps": rps,
                "added_latency_us": {"p50": p50, "p90": p50, "p99": p99, "p999": p99},
                "cpu_us_per_req": cpu, "connections_lost": 0
            })
        };
        let c = |name: &str, rss: u64| serde_json::json!({"name": name, "version": "v", "command": "c", "peak_rss_kb": rss});
        let v = serde_json::json!({
            "machine": {"date_utc": "d", "nproc": 2, "cpu_model": "AMD EPYC", "kernel": "k", "clk_tck": 100},
            "mem_total_kb": null, "command": "loadtest peers",
            "settings": {"scenarios": ["non-stream"], "rates": [50.0, 500.0], "duration_s": 10.0,
                "warmup_s": 2.0, "max_duration_s": 10.0, "drain_s": 15.0, "timeout_s": 30.0,
                "connections": 64, "max_connections": 16, "chunks": 20, "pinned": true,
                "rule": {"min_achieved_share": 0.95, "max_late_share": 0.05, "min_success": 1.0}},
            "contestants": [c("direct", 0), c("ferrogate", 20_000), c("litellm", 400_000), c("portkey", 150_000)],
            "measurements": [
                m("ferrogate", "open", Some(50.0), 50.0, 100.0, 100.0, -5.0),
                m("litellm", "open", Some(50.0), 50.0, 15_000.0, 11_000.0, 15_000.0),
                m("portkey", "open", Some(50.0), 50.0, 2_000.0, 1_800.0, 9_000.0),
                m("ferrogate", "max", None, 30_000.0, 30.0, 0.0, 0.0),
                m("litellm", "max", None, 70.0, 15_000.0, 0.0, 0.0),
                m("portkey", "max", None, 800.0, 1_200.0, 0.0, 0.0)
            ],
            "rates": [], "goals": [], "notes": [], "wall_time_s": 1.0
        });
        serde_json::from_value(v).unwrap_or_else(|e| panic!("fixture: {e}"))
    }

    #[test]
    fn evaluates_every_goal_of_the_issue() {
        let goals = evaluate(&report());
        let find = |goal: &str, vs: Option<&str>| {
            goals
                .iter()
                .find(|g| g.goal.starts_with(goal) && g.versus.as_deref() == vs)
                .cloned()
                .unwrap_or_else(|| panic!("no goal {goal} vs {vs:?} in {goals:#?}"))
        };
        let cpu = find("CPU", Some("litellm"));
        assert_eq!((cpu.ratio, cpu.met), (Some(500.0), Some(true)));
        let cpu = find("CPU", Some("portkey"));
        assert_eq!((cpu.ratio, cpu.met), (Some(40.0), Some(true)));
        let tput = find("max throughput", Some("portkey"));
        assert_eq!((tput.ratio, tput.met), (Some(37.5), Some(true)));
        let p50 = find("added p50", Some("portkey"));
        assert_eq!((p50.ratio, p50.met), (Some(18.0), Some(false)));
        let p99 = find("added p99", Some("litellm"));
        assert_eq!((p99.ratio, p99.met), (None, Some(true)));
        let rss = find("peak RSS", Some("portkey"));
        assert_eq!((rss.ratio, rss.met), (Some(7.5), Some(false)));
        let ok = find("100% success", None);
        assert_eq!(ok.met, Some(true));
        // 2 CPU + 1 throughput + 4 latency + 2 RSS + 1 success.
        assert_eq!(goals.len(), 10);
    }
}
