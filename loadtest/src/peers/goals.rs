//! Issue #3's goals for ferrogate against its peers, and the measured ratio
//! for each, next to the ratio the bare proxy reaches against the same peer
//! in the same run. Pure: a report's measurements in, a verdict per goal out.

use serde::{Deserialize, Serialize};

pub use super::metric::Better;
use super::metric::{common_rate, Metric};
use super::model::PeersReport;
use crate::workload::Scenario;

/// The contestant the goals are about.
pub const OURS: &str = "ferrogate";
/// The bare hyper proxy: what any forwarding proxy pays on the same machine.
pub const BARE: &str = "bare";

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
    /// The bare proxy's advantage over the same peer, same metric, same run:
    /// how far any forwarding proxy gets on this machine. None when the run
    /// had no bare proxy (results from before it was a contestant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bare: Option<BareSide>,
}

/// The bare proxy's side of a goal against a peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BareSide {
    pub value: Option<f64>,
    /// The bare proxy's advantage (×); None when unmeasurable or unbounded.
    pub ratio: Option<f64>,
    /// The bare proxy's value is ≤ 0 where lower is better: unboundedly better.
    pub unbounded: bool,
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
        bare: None,
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

/// The bare proxy's advantage over the peer with the same values.
fn bare_side(bare: Option<f64>, theirs: Option<f64>, better: Better) -> BareSide {
    let adv = match (bare, theirs) {
        (Some(b), Some(t)) => advantage(b, t, better),
        _ => Advantage::Unmeasurable,
    };
    BareSide {
        value: bare,
        ratio: match adv {
            Advantage::Ratio(x) => Some(x),
            _ => None,
        },
        unbounded: adv == Advantage::OursNotAboveZero,
    }
}

/// Why a peer has no numbers, when it does not.
fn missing_note(report: &PeersReport, peer: &str) -> Option<String> {
    report
        .contestant(peer)
        .and_then(|c| c.error.clone())
        .map(|e| format!("{peer} not measured: {e}"))
}

/// Issue #3's required advantage of ferrogate over `peer` in `metric`
/// (None: that goal was not set against that peer).
fn required(metric: Metric, peer: &str) -> Option<f64> {
    match (metric, peer) {
        (Metric::CpuAtSaturation, "litellm") => Some(250.0),
        (Metric::CpuAtSaturation, "portkey") => Some(25.0),
        (Metric::MaxThroughput, "portkey") => Some(20.0),
        (Metric::MaxThroughput, _) => None,
        (Metric::AddedP50 | Metric::AddedP99, _) => Some(20.0),
        (Metric::PeakRss, _) => Some(10.0),
        _ => None,
    }
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
    let has_bare = report.contestant(BARE).is_some();
    let rate = common_rate(report);
    let goal = |metric: Metric, sc: Option<Scenario>, peer: &str, required: f64| {
        // Memory has no scenario; any scenario reads it.
        let read_sc = sc.unwrap_or(Scenario::NonStream);
        let value = |name: &str| metric.value(report, name, read_sc, rate);
        let theirs = value(peer);
        let mut g = compare(
            &metric.label(rate),
            sc,
            peer,
            required,
            metric.unit(),
            metric.better(),
            value(OURS),
            theirs,
            missing_note(report, peer),
        );
        if has_bare {
            g.bare = Some(bare_side(value(BARE), theirs, metric.better()));
        }
        g
    };
    let mut out = Vec::new();
    for &sc in &report.settings.scenarios {
        for metric in [Metric::CpuAtSaturation, Metric::MaxThroughput] {
            for &peer in &peers {
                if let Some(req) = required(metric, peer) {
                    out.push(goal(metric, Some(sc), peer, req));
                }
            }
        }
        for &peer in &peers {
            for metric in [Metric::AddedP50, Metric::AddedP99] {
                if let Some(req) = required(metric, peer) {
                    out.push(goal(metric, Some(sc), peer, req));
                }
            }
        }
    }
    for &peer in &peers {
        if let Some(req) = required(Metric::PeakRss, peer) {
            out.push(goal(Metric::PeakRss, None, peer, req));
        }
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
        bare: None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
    pub(crate) fn report() -> PeersReport {
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

    /// The same report with a bare proxy: a bit cheaper than ferrogate.
    pub(crate) fn report_with_bare() -> PeersReport {
        let mut r = report();
        let mut c = r.contestants[1].clone();
        c.name = BARE.into();
        c.peak_rss_kb = Some(10_000);
        r.contestants.insert(1, c);
        let mut bare = |from: &str, mode: crate::report::Mode, cpu: f64, rps: f64, p50: f64| {
            let m = r
                .measurements
                .iter()
                .find(|m| m.subject == from && m.mode == mode)
                .cloned();
            let mut m = m.unwrap_or_else(|| panic!("fixture has {from}"));
            m.subject = BARE.into();
            m.cpu_us_per_req = Some(cpu);
            m.achieved_rps = rps;
            if let Some(a) = m.added_latency_us.as_mut() {
                a.p50 = p50;
            }
            r.measurements.push(m);
        };
        bare("ferrogate", crate::report::Mode::Open, 90.0, 50.0, 95.0);
        bare("ferrogate", crate::report::Mode::Max, 25.0, 34_000.0, 0.0);
        r
    }

    #[test]
    fn each_goal_carries_the_bare_proxys_ratio_against_the_same_peer() {
        let r = report_with_bare();
        let goals = evaluate(&r);
        let cpu = goals
            .iter()
            .find(|g| g.goal.starts_with("CPU") && g.versus.as_deref() == Some("portkey"))
            .cloned()
            .unwrap_or_else(|| panic!("no CPU goal vs portkey"));
        // ferrogate 30 µs, bare 25 µs, portkey 1200 µs.
        assert_eq!(cpu.ratio, Some(40.0));
        let bare = cpu.bare.unwrap_or_else(|| panic!("no bare side"));
        assert_eq!((bare.value, bare.ratio), (Some(25.0), Some(48.0)));
        let p99 = goals
            .iter()
            .find(|g| g.goal.starts_with("added p99") && g.versus.as_deref() == Some("litellm"))
            .and_then(|g| g.bare.clone())
            .unwrap_or_else(|| panic!("no p99 goal"));
        // The bare proxy's p99 (copied from ferrogate's, −5 µs) is ≤ 0: unbounded.
        assert!(p99.unbounded && p99.ratio.is_none());
        // Without a bare proxy in the run, no goal has a bare side.
        assert!(evaluate(&report()).iter().all(|g| g.bare.is_none()));

        let within = crate::peers::bare::evaluate(&r);
        let find = |goal: &str| {
            within
                .iter()
                .find(|g| g.goal.starts_with(goal))
                .cloned()
                .unwrap_or_else(|| panic!("no {goal} in {within:#?}"))
        };
        // 30 ÷ 25 = 1.2: more than 10% above the bare proxy.
        let cpu = find("CPU");
        assert_eq!((cpu.ratio, cpu.met), (Some(1.2), Some(false)));
        // 30k ÷ 34k ≈ 0.88 < 0.9.
        assert_eq!(find("max throughput").met, Some(false));
        // 100 ÷ 95 ≈ 1.05.
        assert_eq!(find("added p50").met, Some(true));
        // ferrogate's p99 is ≤ 0.
        assert_eq!(find("added p99").met, Some(true));
        // 20,000 ÷ 10,000 KiB.
        assert_eq!(find("peak RSS").ratio, Some(2.0));
        assert_eq!(within.len(), 5);
        assert!(crate::peers::bare::evaluate(&report()).is_empty());
    }
}
