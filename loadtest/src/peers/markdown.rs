//! peers.md: the full result of a `peers` run, and the tables
//! docs/performance.md's section shares with it.

use std::fmt::Write as _;

use super::bare::TOLERANCE;
use super::bare_tables::{bare_goals_line, bare_goals_table, versus_bare_table};
use super::fmt::{mib, opt, ratio, rps, signed_us, time_us};
use super::goals::{BareSide, GoalResult, BARE, OURS};
use super::model::{cpu_per_req, PeersReport};
use super::sustain::RateStatus;
use crate::report::Mode;
use crate::workload::Scenario;

pub fn goal_value(v: f64, unit: &str) -> String {
    match unit {
        "µs" => time_us(v),
        "req/s" => format!("{} req/s", rps(v)),
        "KiB" => mib(v as u64),
        _ => format!("{v:.2} {unit}"),
    }
}

/// The bare proxy's advantage over the peer, as the goals table shows it.
fn bare_cell(b: Option<&BareSide>) -> String {
    match b {
        None => "–".into(),
        Some(BareSide { ratio: Some(x), .. }) => ratio(*x),
        Some(BareSide {
            unbounded: true, ..
        }) => "∞".into(),
        Some(_) => "n/a".into(),
    }
}

/// One row per goal: measured values, the ratio, the requirement, the
/// verdict; with a bare proxy in the run, also the ratio it reaches against
/// the same peer (what a forwarding proxy can reach on this machine).
pub fn goals_table(goals: &[GoalResult]) -> String {
    let with_bare = goals.iter().any(|g| g.bare.is_some());
    let mut md = String::new();
    let bare_head = if with_bare { " bare reaches |" } else { "" };
    let _ = writeln!(
        md,
        "| goal | scenario | vs | {OURS} | peer | measured |{bare_head} required | met |"
    );
    let _ = writeln!(
        md,
        "|---|---|---|---:|---:|---:|{}---:|:---:|",
        if with_bare { "---:|" } else { "" }
    );
    for g in goals {
        let measured = match (g.ratio, g.met, g.required) {
            (Some(x), _, _) => format!("**{}**", ratio(x)),
            (None, Some(true), Some(_)) => format!("**∞** ({OURS} ≤ 0)"),
            (None, _, None) => "–".into(),
            _ => "n/a".into(),
        };
        let met = match g.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "n/a",
        };
        let bare = if with_bare {
            format!(" {} |", bare_cell(g.bare.as_ref()))
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |{bare} {} | {} |",
            g.goal,
            g.scenario.map_or("–", Scenario::name),
            g.versus.as_deref().unwrap_or("–"),
            opt(g.ours, |v| goal_value(v, &g.unit)),
            opt(g.theirs, |v| goal_value(v, &g.unit)),
            measured,
            opt(g.required, |r| format!("≥ {r:.0}×")),
            met
        );
    }
    let notes: Vec<String> = goals
        .iter()
        .filter_map(|g| {
            g.note.as_ref().map(|n| {
                format!(
                    "{} ({}{}): {n}",
                    g.goal,
                    g.scenario.map_or("", Scenario::name),
                    g.versus
                        .as_ref()
                        .map_or(String::new(), |v| format!(" vs {v}"))
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

/// Lowest success rate a contestant had anywhere, and where.
fn lowest_success(r: &PeersReport, name: &str) -> String {
    let worst = r
        .measurements
        .iter()
        .filter(|m| m.subject == name)
        .min_by(|a, b| a.success_rate.total_cmp(&b.success_rate));
    match worst {
        None => "–".into(),
        Some(m) if m.success_rate >= 1.0 => "100%".into(),
        Some(m) => format!(
            "{:.1}% @{} {}",
            m.success_rate * 100.0,
            m.target_rps.map_or("max".into(), |x| format!("{x:.0}/s")),
            m.scenario.name()
        ),
    }
}

/// One row per contestant with the figures a reader looks for first.
pub fn summary_table(r: &PeersReport) -> String {
    let common = r.settings.rates.first().copied().unwrap_or(50.0);
    let scs = &r.settings.scenarios;
    let per_sc = |f: &dyn Fn(Scenario) -> String| {
        scs.iter().map(|&sc| f(sc)).collect::<Vec<_>>().join(" / ")
    };
    let mut md = String::new();
    let sc_names = scs.iter().map(|s| s.name()).collect::<Vec<_>>().join(" / ");
    let _ = writeln!(
        md,
        "| contestant | highest sustained rate ({sc_names}) | max throughput | CPU/request at saturation | added p50 @{common:.0}/s | added p99 @{common:.0}/s | stream TTFB p50 @{common:.0}/s | peak RSS | lowest success |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for c in &r.contestants {
        let name = c.name.as_str();
        if c.error.is_some() && !r.measurements.iter().any(|m| m.subject == name) {
            let _ = writeln!(md, "| {name} | not measured (see notes) | | | | | | | |");
            continue;
        }
        let open = |sc| r.open(name, sc, common);
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
            per_sc(&|sc| opt(r.highest_sustained(name, sc), |x| format!("{x:.0}/s"))),
            per_sc(&|sc| opt(r.max(name, sc), |m| rps(m.achieved_rps))),
            per_sc(&|sc| opt(r.max(name, sc).and_then(cpu_per_req), time_us)),
            per_sc(
                &|sc| opt(open(sc).and_then(|m| m.added_latency_us), |a| signed_us(
                    a.p50
                ))
            ),
            per_sc(
                &|sc| opt(open(sc).and_then(|m| m.added_latency_us), |a| signed_us(
                    a.p99
                ))
            ),
            opt(open(Scenario::Stream).and_then(|m| m.ttfb_us), |t| time_us(
                t.p50
            )),
            opt(c.peak_rss_kb, mib),
            lowest_success(r, name),
        );
    }
    md
}

fn header(md: &mut String, r: &PeersReport) {
    let m = &r.machine;
    let s = &r.settings;
    let _ = writeln!(md, "- **Date:** {}", m.date_utc);
    let _ = writeln!(
        md,
        "- **Machine:** {} CPUs ({}), {} RAM, kernel {} (CLK_TCK {})",
        m.nproc,
        m.cpu_model,
        opt(r.mem_total_kb, |k| format!(
            "{:.1} GiB",
            k as f64 / 1048576.0
        )),
        m.kernel,
        m.clk_tck
    );
    let _ = writeln!(
        md,
        "- **Command:** `{}` (wall time {:.0} s)",
        r.command, r.wall_time_s
    );
    let _ = writeln!(
        md,
        "- **Load average** (1/5/15 min) at start: {}; at end: {} (other work on the machine competes for the same CPUs)",
        r.loadavg_start.as_deref().unwrap_or("?"),
        r.loadavg_end.as_deref().unwrap_or("?")
    );
    let _ = writeln!(
        md,
        "- **Settings:** open loop at {} req/s, {:.0} s measured after {:.0} s warm-up, {} connections, drain deadline {:.0} s, per-request timeout {:.0} s; max throughput: closed loop, {} connections, {:.0} s; stream = {} content chunks; pinning: {}",
        s.rates.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", "),
        s.duration_s,
        s.warmup_s,
        s.connections,
        s.drain_s,
        s.timeout_s,
        s.max_connections,
        s.max_duration_s,
        s.chunks,
        if s.pinned { "each contestant (whole process tree) on CPU 0, mock + generator on CPU 1" } else { "off" }
    );
    let _ = writeln!(
        md,
        "- **Sustained** means: achieved ≥ {:.0}% of the offered rate, late sends ≤ {:.0}%, success ≥ {:.0}%. A contestant is not offered rates above the first one it does not sustain (`direct`, the reference, is offered all).",
        s.rule.min_achieved_share * 100.0,
        s.rule.max_late_share * 100.0,
        s.rule.min_success * 100.0
    );
}

fn contestants(md: &mut String, r: &PeersReport) {
    let _ = writeln!(md, "| contestant | version | ready after | processes | idle CPU | idle RSS | peak RSS | RSS at end |");
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|");
    for c in &r.contestants {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            c.name,
            c.version,
            opt(c.ready_after_s, |s| format!("{s:.1} s")),
            opt(c.processes, |p| p.to_string()),
            opt(c.idle_cpu_share, |s| format!("{:.1}%", s * 100.0)),
            opt(c.idle_rss_kb, mib),
            opt(c.peak_rss_kb, mib),
            opt(c.end_rss_kb, mib),
        );
    }
    md.push('\n');
    for c in &r.contestants {
        if !c.command.is_empty() {
            let _ = writeln!(md, "- `{}`: `{}`", c.name, c.command);
        }
    }
}

fn open_loop(md: &mut String, r: &PeersReport, sc: Scenario) {
    let stream = sc.is_stream();
    let _ = write!(md, "| rate/s | contestant | ok % | achieved/s | late % | p50 | p90 | p99 | p99.9 | added p50 | added p99 |");
    if stream {
        let _ = write!(md, " TTFB p50 | added TTFB p50 |");
    }
    let _ = writeln!(md, " CPU µs/req | verdict |");
    let _ = write!(
        md,
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    if stream {
        let _ = write!(md, "---:|---:|");
    }
    let _ = writeln!(md, "---:|---|");
    for &rate in &r.settings.rates {
        let in_order = r.contestants.iter().filter_map(|c| {
            r.rates
                .iter()
                .find(|o| o.scenario == sc && o.rate == rate && o.contestant == c.name)
        });
        for o in in_order {
            let Some(m) = r.open(&o.contestant, sc, rate) else {
                let _ = writeln!(
                    md,
                    "| {rate:.0} | {} | skipped: {} |",
                    o.contestant,
                    o.reasons.join(", ")
                );
                continue;
            };
            let l = m.latency_us;
            let a = m.added_latency_us;
            let _ = write!(
                md,
                "| {rate:.0} | {} | {:.2} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} |",
                o.contestant,
                m.success_rate * 100.0,
                m.achieved_rps,
                if m.requests > 0 {
                    m.late_sends as f64 * 100.0 / m.requests as f64
                } else {
                    0.0
                },
                opt(l, |p| time_us(p.p50)),
                opt(l, |p| time_us(p.p90)),
                opt(l, |p| time_us(p.p99)),
                opt(l, |p| time_us(p.p999)),
                opt(a, |p| signed_us(p.p50)),
                opt(a, |p| signed_us(p.p99)),
            );
            if stream {
                let _ = write!(
                    md,
                    " {} | {} |",
                    opt(m.ttfb_us, |p| time_us(p.p50)),
                    opt(m.added_ttfb_us, |p| signed_us(p.p50))
                );
            }
            let verdict = match o.status {
                RateStatus::Sustained => "sustained".to_string(),
                RateStatus::NotSustained => format!("**not sustained**: {}", o.reasons.join(", ")),
                RateStatus::Skipped => "skipped".to_string(),
            };
            let _ = writeln!(
                md,
                " {} | {verdict} |",
                opt(cpu_per_req(m), |c| format!("{c:.1}"))
            );
        }
    }
}

fn max_throughput(md: &mut String, r: &PeersReport) {
    let _ = writeln!(
        md,
        "| scenario | contestant | req/s | p50 | p99 | ok % | CPU µs/req (stat · schedstat) | CPUs busy |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|");
    for m in r.measurements.iter().filter(|m| m.mode == Mode::Max) {
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {} | {} | {:.2} | {} · {} | {} |",
            m.scenario.name(),
            m.subject,
            m.achieved_rps,
            opt(m.latency_us, |p| time_us(p.p50)),
            opt(m.latency_us, |p| time_us(p.p99)),
            m.success_rate * 100.0,
            opt(m.cpu_us_per_req, |c| format!("{c:.1}")),
            opt(m.cpu_us_per_req_schedstat, |c| format!("{c:.1}")),
            // CPU per request × requests per second: ~1.0 pinned means the
            // contestant, not the machine, was the limit.
            opt(cpu_per_req(m), |c| format!(
                "{:.2}",
                c * m.achieved_rps / 1e6
            )),
        );
    }
}

pub fn to_markdown(r: &PeersReport) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# ferrogate against other gateways — `loadtest peers`\n"
    );
    header(&mut md, r);
    let _ = writeln!(
        md,
        "\nLatency runs from each request's *scheduled* send time to its last body byte, measured at the client (open loop, so queueing is not hidden). *Added* = contestant − direct at the same percentile in the same run. CPU µs/request = CPU time of the contestant's whole process tree over the measured window ÷ successful responses. See `loadtest/README.md`.\n"
    );
    let _ = writeln!(md, "## Summary\n");
    md.push_str(&summary_table(r));
    let _ = writeln!(md, "\n## Goals (issue #3)\n");
    md.push_str(&goals_table(&r.goals));
    if r.contestant(BARE).is_some() {
        let _ = writeln!(md, "\n## Against the bare proxy\n");
        let _ = writeln!(
            md,
            "Each contestant's figure ÷ the bare hyper proxy's (`loadtest bare-proxy`), same run. Below 1× is better than the bare proxy for CPU, latency and memory; for throughput, above 1× is.\n"
        );
        md.push_str(&versus_bare_table(r));
        let _ = writeln!(
            md,
            "\nGoal (issue #9): {OURS} within {:.0}% of the bare proxy on each figure.\n",
            TOLERANCE * 100.0
        );
        md.push_str(&bare_goals_table(&r.bare_goals));
        let _ = writeln!(md, "\n{}", bare_goals_line(&r.bare_goals));
    }
    let _ = writeln!(md, "\n## Contestants\n");
    contestants(&mut md, r);
    for &sc in &r.settings.scenarios {
        let _ = writeln!(md, "\n## Open loop: {}\n", sc.name());
        open_loop(&mut md, r, sc);
    }
    if r.measurements.iter().any(|m| m.mode == Mode::Max) {
        let _ = writeln!(md, "\n## Max throughput (closed loop)\n");
        max_throughput(&mut md, r);
    }
    if !r.notes.is_empty() {
        let _ = writeln!(md, "\n## Notes\n");
        for n in &r.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    let _ = writeln!(md, "\n## Charts\n");
    let _ = writeln!(md, "![latency percentiles](peers-latency.svg)\n");
    let _ = writeln!(md, "![CPU per request](peers-cpu.svg)\n");
    let _ = writeln!(md, "![peak RSS](peers-rss.svg)");
    md
}
