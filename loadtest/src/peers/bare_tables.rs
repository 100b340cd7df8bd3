//! The tables that set each contestant against the bare proxy: figures ÷ the
//! bare proxy's, and the "within 10% of the bare proxy" goals (peers.md and
//! docs/performance.md share them).

use std::fmt::Write as _;

use super::bare::{versus_bare, BareGoal, METRICS, TOLERANCE};
use super::fmt::opt;
use super::goals::{BARE, OURS};
use super::markdown::goal_value;
use super::metric::{common_rate, Metric};
use super::model::PeersReport;
use crate::workload::Scenario;

/// "ferrogate within 10% of the bare proxy", one row per figure.
pub fn bare_goals_table(goals: &[BareGoal]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| figure | scenario | {OURS} | bare | {OURS} ÷ bare | goal | met |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|:---:|");
    for g in goals {
        let met = match g.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "n/a",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} {:.2}× | {met} |",
            g.goal,
            g.scenario.map_or("–", Scenario::name),
            opt(g.ours, |v| goal_value(v, &g.unit)),
            opt(g.bare, |v| goal_value(v, &g.unit)),
            opt(g.ratio, |x| format!("**{x:.2}×**")),
            if g.lower_is_better { "≤" } else { "≥" },
            g.limit,
        );
    }
    let notes: Vec<String> = goals
        .iter()
        .filter_map(|g| {
            g.note.as_ref().map(|n| {
                format!(
                    "{}{}: {n}",
                    g.goal,
                    g.scenario
                        .map_or(String::new(), |s| format!(" ({})", s.name()))
                )
            })
        })
        .collect();
    if !notes.is_empty() {
        md.push('\n');
        for n in notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}

/// "ferrogate within 10% of the bare proxy on N of M figures." (empty without
/// a bare proxy): the README's short form.
pub fn bare_goals_count(goals: &[BareGoal]) -> String {
    if goals.is_empty() {
        return String::new();
    }
    let met = goals.iter().filter(|g| g.met == Some(true)).count();
    format!(
        "{OURS} within {:.0}% of the bare proxy on {met} of {} figures.",
        TOLERANCE * 100.0,
        goals.len()
    )
}

/// "N of M within 10% of the bare proxy; not met: …" (empty without a bare proxy).
pub fn bare_goals_line(goals: &[BareGoal]) -> String {
    if goals.is_empty() {
        return String::new();
    }
    let met = goals.iter().filter(|g| g.met == Some(true)).count();
    let missed: Vec<String> = goals
        .iter()
        .filter(|g| g.met == Some(false))
        .map(|g| {
            format!(
                "{}{} ({})",
                g.goal,
                g.scenario
                    .map_or(String::new(), |s| format!(", {}", s.name())),
                opt(g.ratio, |x| format!("{x:.2}×"))
            )
        })
        .collect();
    format!(
        "{OURS} within {:.0}% of the bare proxy on {met} of {} figures{}",
        TOLERANCE * 100.0,
        goals.len(),
        if missed.is_empty() {
            ".".to_string()
        } else {
            format!("; not on: {}.", missed.join("; "))
        }
    )
}

/// Every contestant's figures ÷ the bare proxy's from the same run.
pub fn versus_bare_table(r: &PeersReport) -> String {
    let rate = common_rate(r);
    let mut cols: Vec<(Metric, Scenario)> = Vec::new();
    for m in METRICS {
        if m.per_scenario() {
            cols.extend(r.settings.scenarios.iter().map(|&sc| (m, sc)));
        } else {
            cols.push((m, Scenario::NonStream));
        }
    }
    let mut md = String::new();
    let heads: Vec<String> = cols
        .iter()
        .map(|(m, sc)| {
            if m.per_scenario() {
                format!("{} ({})", short_label(*m, rate), sc.name())
            } else {
                short_label(*m, rate)
            }
        })
        .collect();
    let _ = writeln!(md, "| contestant | {} |", heads.join(" | "));
    let _ = writeln!(md, "|---|{}", "---:|".repeat(cols.len()));
    for c in r
        .contestants
        .iter()
        .filter(|c| c.name != "direct" && c.name != BARE)
    {
        let cells: Vec<String> = cols
            .iter()
            .map(|&(m, sc)| opt(versus_bare(r, &c.name, m, sc), |x| format!("{x:.2}×")))
            .collect();
        let _ = writeln!(md, "| {} | {} |", c.name, cells.join(" | "));
    }
    md
}

fn short_label(m: Metric, rate: f64) -> String {
    match m {
        Metric::CpuAtSaturation => "CPU/req at saturation".into(),
        Metric::MaxThroughput => "max throughput".into(),
        Metric::AddedP50 => format!("added p50 @{rate:.0}/s"),
        Metric::AddedP99 => format!("added p99 @{rate:.0}/s"),
        Metric::PeakRss => "peak RSS".into(),
    }
}
