//! The bare hyper proxy as the floor: each contestant's figures divided by the
//! bare proxy's from the same run (÷ bare), and issue #9's goal that ferrogate
//! stays within 10% of the bare proxy on each figure of issue #3's goals. On a
//! 2-core machine no forwarding proxy reaches some of issue #3's fixed ratios,
//! so the reachable bar is the bare proxy's own result. Pure: a report in,
//! figures out.

use serde::{Deserialize, Serialize};

use super::goals::{BARE, OURS};
use super::metric::{common_rate, Better, Metric};
use super::model::PeersReport;
use crate::workload::Scenario;

/// How far from the bare proxy ferrogate may be.
pub const TOLERANCE: f64 = 0.10;

/// The figures compared with the bare proxy, in table order.
pub const METRICS: [Metric; 5] = [
    Metric::CpuAtSaturation,
    Metric::MaxThroughput,
    Metric::AddedP50,
    Metric::AddedP99,
    Metric::PeakRss,
];

/// "ferrogate within 10% of the bare proxy" for one figure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BareGoal {
    pub goal: String,
    pub scenario: Option<Scenario>,
    pub unit: String,
    pub lower_is_better: bool,
    pub ours: Option<f64>,
    pub bare: Option<f64>,
    /// ours ÷ bare; None when a value is missing or ≤ 0.
    pub ratio: Option<f64>,
    /// The bound on `ratio`: at most 1 + tolerance where lower is better, at
    /// least 1 − tolerance where higher is better.
    pub limit: f64,
    /// None: could not be decided (see note).
    pub met: Option<bool>,
    pub note: Option<String>,
}

/// `value` ÷ `bare` when both are positive and finite (a ratio of two
/// latencies at or below the direct path's means nothing).
pub fn divide(value: Option<f64>, bare: Option<f64>) -> Option<f64> {
    match (value, bare) {
        (Some(v), Some(b)) if v.is_finite() && b.is_finite() && v > 0.0 && b > 0.0 => Some(v / b),
        _ => None,
    }
}

/// Judges one figure: within `TOLERANCE` of the bare proxy's.
pub fn judge(
    goal: String,
    scenario: Option<Scenario>,
    unit: &str,
    better: Better,
    ours: Option<f64>,
    bare: Option<f64>,
) -> BareGoal {
    let lower = better == Better::Lower;
    let limit = if lower {
        1.0 + TOLERANCE
    } else {
        1.0 - TOLERANCE
    };
    let ratio = divide(ours, bare);
    let (met, note) = match (ours, bare, ratio) {
        (_, _, Some(x)) => (Some(if lower { x <= limit } else { x >= limit }), None),
        (None, _, _) | (_, None, _) => (None, Some("not measured".to_string())),
        // Lower is better and ours is at or below zero: as good as it gets.
        (Some(o), Some(_), None) if lower && o <= 0.0 => (
            Some(true),
            Some(format!(
                "{OURS}'s value is ≤ 0 {unit} (indistinguishable from direct)"
            )),
        ),
        (Some(_), Some(_), None) => (
            None,
            Some(format!(
                "the bare proxy's value is ≤ 0 {unit}: no meaningful ratio"
            )),
        ),
    };
    BareGoal {
        goal,
        scenario,
        unit: unit.to_string(),
        lower_is_better: lower,
        ours,
        bare,
        ratio,
        limit,
        met,
        note,
    }
}

/// Every "within 10% of the bare proxy" goal; empty unless the run has both.
pub fn evaluate(r: &PeersReport) -> Vec<BareGoal> {
    if r.contestant(OURS).is_none() || r.contestant(BARE).is_none() {
        return Vec::new();
    }
    let rate = common_rate(r);
    let mut out = Vec::new();
    for metric in METRICS {
        let scenarios: Vec<Option<Scenario>> = if metric.per_scenario() {
            r.settings.scenarios.iter().copied().map(Some).collect()
        } else {
            vec![None]
        };
        for sc in scenarios {
            let read_sc = sc.unwrap_or(Scenario::NonStream);
            out.push(judge(
                metric.label(rate),
                sc,
                metric.unit(),
                metric.better(),
                metric.value(r, OURS, read_sc, rate),
                metric.value(r, BARE, read_sc, rate),
            ));
        }
    }
    out
}

/// `name`'s figure ÷ the bare proxy's, same run.
pub fn versus_bare(r: &PeersReport, name: &str, metric: Metric, sc: Scenario) -> Option<f64> {
    let rate = common_rate(r);
    divide(
        metric.value(r, name, sc, rate),
        metric.value(r, BARE, sc, rate),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_ten_percent_either_way() {
        let lower = |o, b| judge("g".into(), None, "µs", Better::Lower, o, b);
        let g = lower(Some(105.0), Some(100.0));
        assert_eq!((g.ratio, g.met), (Some(1.05), Some(true)));
        let g = lower(Some(115.0), Some(100.0));
        assert_eq!(g.met, Some(false));
        let g = lower(Some(-3.0), Some(100.0));
        assert_eq!((g.ratio, g.met), (None, Some(true)));
        let g = lower(Some(30.0), Some(-1.0));
        assert_eq!((g.ratio, g.met), (None, None));
        assert!(g.note.is_some());
        let g = lower(None, Some(1.0));
        assert_eq!(g.met, None);

        let higher = |o, b| judge("g".into(), None, "req/s", Better::Higher, o, b);
        assert_eq!(higher(Some(31_000.0), Some(34_000.0)).met, Some(true));
        assert_eq!(higher(Some(27_000.0), Some(34_000.0)).met, Some(false));
    }

    #[test]
    fn divide_needs_two_positive_values() {
        assert_eq!(divide(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(divide(Some(-3.0), Some(2.0)), None);
        assert_eq!(divide(Some(3.0), Some(0.0)), None);
        assert_eq!(divide(None, Some(2.0)), None);
    }
}
