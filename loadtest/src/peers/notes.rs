//! The notes under a `peers` report: what was skipped and why, what the
//! machine (not a contestant) limited, and anything else a reader must know.

use super::model::PeersReport;
use super::sustain::RateStatus;
use crate::report::Mode;

pub fn notes(r: &PeersReport) -> Vec<String> {
    let mut notes = Vec::new();
    for c in &r.contestants {
        if let Some(e) = &c.error {
            notes.push(format!("{}: {e}", c.name));
        }
    }
    for o in r
        .rates
        .iter()
        .filter(|o| o.status == RateStatus::NotSustained)
    {
        let direct_too = o.contestant != "direct"
            && r.rates.iter().any(|d| {
                d.contestant == "direct"
                    && d.scenario == o.scenario
                    && d.rate == o.rate
                    && d.status == RateStatus::NotSustained
            });
        let text = if o.contestant == "direct" {
            format!(
                "direct did not sustain {} @{:.0}/s ({}): that rate is beyond the mock and the generator on this machine, so every contestant's figures there include the machine's own queueing.",
                o.scenario.name(),
                o.rate,
                o.reasons.join(", ")
            )
        } else {
            let skipped = r
                .rates
                .iter()
                .filter(|s| {
                    s.contestant == o.contestant
                        && s.scenario == o.scenario
                        && s.status == RateStatus::Skipped
                })
                .map(|s| format!("{:.0}", s.rate))
                .collect::<Vec<_>>();
            format!(
                "{} did not sustain {} @{:.0}/s ({}){}{}.",
                o.contestant,
                o.scenario.name(),
                o.rate,
                o.reasons.join(", "),
                if skipped.is_empty() {
                    String::new()
                } else {
                    format!("; not offered {}/s", skipped.join(", "))
                },
                if direct_too {
                    "; direct did not sustain it either"
                } else {
                    ""
                }
            )
        };
        notes.push(text);
    }
    let mut lagging = Vec::new();
    for m in &r.measurements {
        let load = m
            .target_rps
            .map_or("max".to_string(), |x| format!("{x:.0}/s"));
        if m.errors + m.non_200 > 0 {
            notes.push(format!(
                "{} {} @{load}: {} errors (transport, timeout, truncated body, or unfinished at the drain deadline) and {} non-200 of {} requests.",
                m.subject,
                m.scenario.name(),
                m.errors,
                m.non_200,
                m.requests
            ));
        }
        if let Some(lag) = m
            .sched_lag_us
            .filter(|l| l.p99 > 200.0 && m.mode == Mode::Open)
        {
            lagging.push(format!(
                "{} {} @{load} {}",
                m.subject,
                m.scenario.name(),
                super::fmt::time_us(lag.p99)
            ));
        }
    }
    if !lagging.is_empty() {
        notes.push(format!(
            "Generator timer lag p99 above 200 µs (the generator itself was short of CPU, and those runs' tails include it): {}.",
            lagging.join(", ")
        ));
    }
    let busy: Vec<String> = r
        .contestants
        .iter()
        .filter_map(|c| {
            c.idle_cpu_share
                .filter(|s| *s > 0.02)
                .map(|s| format!("{} {:.0}%", c.name, s * 100.0))
        })
        .collect();
    if !busy.is_empty() {
        notes.push(format!(
            "CPU used while idle (1 s, before load): {}; all contestants stay up for the whole run, so this background load is present during everyone's runs.",
            busy.join(", ")
        ));
    }
    if !r.settings.pinned {
        notes.push("Unpinned: contestants, mock and generator share all CPUs; `--pin` gives each contestant CPU 0 and the mock and generator CPU 1.".into());
    }
    notes
}
