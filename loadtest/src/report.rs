//! Result model (serialised to latest.json) and its Markdown rendering (latest.md).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::stats::{Added, Percentiles};
use crate::sysinfo::Machine;
use crate::workload::Scenario;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Open loop at a fixed request rate.
    Open,
    /// Closed loop, as fast as N connections go.
    Max,
}

#[derive(Clone, Debug, Serialize)]
pub struct SubjectInfo {
    pub name: String,
    pub command: String,
    pub pid: Option<u32>,
    pub cpu: Option<usize>,
    /// VmRSS right after start-up, before any traffic.
    pub idle_rss_kb: Option<u64>,
    /// VmHWM at the end of the run.
    pub peak_rss_kb: Option<u64>,
    /// VmRSS at the end of the run.
    pub end_rss_kb: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measurement {
    pub subject: String,
    pub scenario: Scenario,
    pub mode: Mode,
    pub target_rps: Option<f64>,
    pub connections: usize,
    pub rounds: usize,
    pub requests: u64,
    pub ok: u64,
    pub non_200: u64,
    pub errors: u64,
    pub success_rate: f64,
    pub late_sends: u64,
    pub achieved_rps: f64,
    pub latency_us: Option<Percentiles>,
    pub ttfb_us: Option<Percentiles>,
    pub added_latency_us: Option<Added>,
    pub added_ttfb_us: Option<Added>,
    /// Generator timer lag (dispatch − scheduled) for on-time sends.
    pub sched_lag_us: Option<Percentiles>,
    /// utime+stime (/proc/PID/stat) per successful response.
    pub cpu_us_per_req: Option<f64>,
    /// schedstat on-CPU ns (all live threads) per successful response.
    pub cpu_us_per_req_schedstat: Option<f64>,
    /// The gateway's own `x-ferrogate-overhead-us` header, when present.
    pub overhead_header_us: Option<Percentiles>,
    pub connections_lost: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub scenario: Scenario,
    pub mode: Mode,
    pub target_rps: Option<f64>,
    /// (ferrogate − direct) / (bare − direct) at p50, p99; None when bare adds ≤ 0.
    pub added_p50: Option<f64>,
    pub added_p99: Option<f64>,
    pub cpu_per_req: Option<f64>,
    pub stream_added_ttfb_p50: Option<f64>,
}

/// The gateway's CPU per request when it translates, against a same-dialect pass-through
/// of the same load (the acceptance bar: within 2×).
#[derive(Clone, Debug, Serialize)]
pub struct TranslationCost {
    pub scenario: Scenario,
    /// The pass-through scenario compared with.
    pub baseline: Scenario,
    pub mode: Mode,
    pub target_rps: Option<f64>,
    pub cpu_us_per_req: f64,
    pub baseline_cpu_us_per_req: f64,
    /// translated ÷ pass-through.
    pub ratio: f64,
    /// Which CPU figure both sides use: "schedstat" or "stat".
    pub source: String,
}

impl TranslationCost {
    /// Compares `t` (a translated scenario) with `b` (its pass-through baseline), using
    /// schedstat when both have it (ns precision), else /proc stat.
    pub fn between(t: &Measurement, b: &Measurement) -> Option<Self> {
        let (x, y, source) = match (t.cpu_us_per_req_schedstat, b.cpu_us_per_req_schedstat) {
            (Some(x), Some(y)) => (x, y, "schedstat"),
            _ => (t.cpu_us_per_req?, b.cpu_us_per_req?, "stat"),
        };
        (y > 0.0).then(|| Self {
            scenario: t.scenario,
            baseline: b.scenario,
            mode: t.mode,
            target_rps: t.target_rps,
            cpu_us_per_req: x,
            baseline_cpu_us_per_req: y,
            ratio: x / y,
            source: source.into(),
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub duration_s: f64,
    pub warmup_s: f64,
    pub max_duration_s: f64,
    pub rates: Vec<f64>,
    pub rounds: usize,
    pub connections: usize,
    pub max_connections: usize,
    pub chunks: usize,
    pub pinned: bool,
    pub timeout_s: f64,
    /// Label of the gateway subject the ratios are computed for.
    pub gateway_name: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub settings: Settings,
    pub subjects: Vec<SubjectInfo>,
    pub measurements: Vec<Measurement>,
    pub ratios: Vec<Ratio>,
    /// Translated scenarios against their pass-through baselines (gateway only).
    pub translation: Vec<TranslationCost>,
    pub notes: Vec<String>,
}

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

fn signed(v: f64) -> String {
    format!("{v:+.1}")
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

fn ratio(v: Option<f64>) -> String {
    opt(v, |r| format!("{r:.2}×"))
}

fn mib(kb: Option<u64>) -> String {
    opt(kb, |k| format!("{:.1}", k as f64 / 1024.0))
}

fn cpu(m: &Measurement) -> String {
    match (m.cpu_us_per_req, m.cpu_us_per_req_schedstat) {
        (None, None) => "–".into(),
        (a, b) => format!("{} · {}", opt(a, f1), opt(b, f1)),
    }
}

fn rate_label(m: &Measurement) -> String {
    match m.target_rps {
        Some(r) => format!("{r:.0}"),
        None => format!("max×{}", m.connections),
    }
}

impl Report {
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let s = &self.settings;
        let m = &self.machine;
        let _ = writeln!(md, "# ferrogate load test — latest run\n");
        let _ = writeln!(md, "- **Date:** {}", m.date_utc);
        let _ = writeln!(
            md,
            "- **Machine:** `nproc` = {}, CPU: {}, kernel {} (CLK_TCK {})",
            m.nproc, m.cpu_model, m.kernel, m.clk_tck
        );
        let _ = writeln!(
            md,
            "- **Settings:** {:.1} s measured + {:.1} s warm-up per open-loop run; rates {:?} req/s; {} interleaved round(s); {} keep-alive connections; max-throughput: {} connections for {:.1} s; stream = {} content chunks; per-request timeout {:.1} s; CPU pinning: {}",
            s.duration_s,
            s.warmup_s,
            s.rates,
            s.rounds,
            s.connections,
            s.max_connections,
            s.max_duration_s,
            s.chunks,
            s.timeout_s,
            if s.pinned { "subject on CPU 0, mock + generator on CPU 1" } else { "off" }
        );
        let _ = writeln!(md, "- **Subjects:**");
        for subj in &self.subjects {
            let _ = writeln!(md, "  - `{}`: `{}`", subj.name, subj.command);
        }
        let _ = writeln!(
            md,
            "\nLatency: µs from the *scheduled* send time to the last body byte (open loop; coordinated-omission safe). \
             *added* = subject − direct at the same percentile, same run. CPU µs/req = subject process CPU time over the \
             measured window ÷ successful responses (`/proc/PID/stat` utime+stime · schedstat). See `loadtest/README.md`.\n"
        );

        let _ = writeln!(md, "## Open loop\n");
        let _ = writeln!(md, "| scenario | rate/s | subject | p50 | p90 | p99 | p99.9 | added p50 | added p90 | added p99 | added p99.9 | ok % | late sends | achieved/s | CPU µs/req (stat · schedstat) |");
        let _ = writeln!(
            md,
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for x in self.measurements.iter().filter(|x| x.mode == Mode::Open) {
            let l = x.latency_us;
            let a = x.added_latency_us;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {:.0} | {} |",
                x.scenario.name(),
                rate_label(x),
                x.subject,
                opt(l, |p| f1(p.p50)),
                opt(l, |p| f1(p.p90)),
                opt(l, |p| f1(p.p99)),
                opt(l, |p| f1(p.p999)),
                opt(a, |p| signed(p.p50)),
                opt(a, |p| signed(p.p90)),
                opt(a, |p| signed(p.p99)),
                opt(a, |p| signed(p.p999)),
                x.success_rate * 100.0,
                x.late_sends,
                x.achieved_rps,
                cpu(x)
            );
        }

        let streams: Vec<&Measurement> = self
            .measurements
            .iter()
            .filter(|x| x.scenario.is_stream())
            .collect();
        if !streams.is_empty() {
            let _ = writeln!(md, "\n## Stream time to first byte (µs)\n");
            let _ = writeln!(
                md,
                "| scenario | load | subject | TTFB p50 | TTFB p99 | added p50 | added p99 |"
            );
            let _ = writeln!(md, "|---|---|---|---:|---:|---:|---:|");
            for x in streams {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    x.scenario.name(),
                    rate_label(x),
                    x.subject,
                    opt(x.ttfb_us, |p| f1(p.p50)),
                    opt(x.ttfb_us, |p| f1(p.p99)),
                    opt(x.added_ttfb_us, |p| signed(p.p50)),
                    opt(x.added_ttfb_us, |p| signed(p.p99)),
                );
            }
        }

        if self.measurements.iter().any(|x| x.mode == Mode::Max) {
            let _ = writeln!(md, "\n## Max throughput (closed loop)\n");
            let _ = writeln!(md, "| scenario | connections | subject | req/s | p50 | p99 | ok % | CPU µs/req (stat · schedstat) |");
            let _ = writeln!(md, "|---|---:|---|---:|---:|---:|---:|---:|");
            for x in self.measurements.iter().filter(|x| x.mode == Mode::Max) {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.0} | {} | {} | {:.2} | {} |",
                    x.scenario.name(),
                    x.connections,
                    x.subject,
                    x.achieved_rps,
                    opt(x.latency_us, |p| f1(p.p50)),
                    opt(x.latency_us, |p| f1(p.p99)),
                    x.success_rate * 100.0,
                    cpu(x)
                );
            }
        }

        if !self.ratios.is_empty() {
            let gw = s.gateway_name.as_deref().unwrap_or("gateway");
            let _ = writeln!(md, "\n## {gw} ÷ bare\n");
            let _ = writeln!(
                md,
                "| scenario | load | added p50 | added p99 | stream added TTFB p50 | CPU µs/req |"
            );
            let _ = writeln!(md, "|---|---|---:|---:|---:|---:|");
            for r in &self.ratios {
                let load = match r.target_rps {
                    Some(v) => format!("{v:.0}/s"),
                    None => "max".into(),
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} |",
                    r.scenario.name(),
                    load,
                    ratio(r.added_p50),
                    ratio(r.added_p99),
                    ratio(r.stream_added_ttfb_p50),
                    ratio(r.cpu_per_req)
                );
            }
        }

        if !self.translation.is_empty() {
            let gw = s.gateway_name.as_deref().unwrap_or("gateway");
            let _ = writeln!(
                md,
                "\n## Translation: {gw} CPU per request, translated ÷ pass-through\n"
            );
            let _ = writeln!(
                md,
                "| scenario | load | CPU µs/req | pass-through | its CPU µs/req | ratio | source |"
            );
            let _ = writeln!(md, "|---|---|---:|---|---:|---:|---|");
            for t in &self.translation {
                let load = match t.target_rps {
                    Some(v) => format!("{v:.0}/s"),
                    None => "max".into(),
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.1} | {} | {:.1} | {:.2}× | {} |",
                    t.scenario.name(),
                    load,
                    t.cpu_us_per_req,
                    t.baseline.name(),
                    t.baseline_cpu_us_per_req,
                    t.ratio,
                    t.source
                );
            }
        }

        let _ = writeln!(md, "\n## Memory (MiB)\n");
        let _ = writeln!(
            md,
            "| subject | idle RSS | peak RSS (VmHWM) | RSS after load |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|");
        for subj in self.subjects.iter().filter(|s| s.pid.is_some()) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                subj.name,
                mib(subj.idle_rss_kb),
                mib(subj.peak_rss_kb),
                mib(subj.end_rss_kb)
            );
        }

        let overhead: Vec<&Measurement> = self
            .measurements
            .iter()
            .filter(|x| x.overhead_header_us.is_some())
            .collect();
        if !overhead.is_empty() {
            let _ = writeln!(
                md,
                "\n## Self-reported overhead (`x-ferrogate-overhead-us`)\n"
            );
            let _ = writeln!(md, "| scenario | load | subject | p50 | p99 | max |");
            let _ = writeln!(md, "|---|---|---|---:|---:|---:|");
            for x in overhead {
                let o = x.overhead_header_us;
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} |",
                    x.scenario.name(),
                    rate_label(x),
                    x.subject,
                    opt(o, |p| f1(p.p50)),
                    opt(o, |p| f1(p.p99)),
                    opt(o, |p| f1(p.max)),
                );
            }
        }

        if !self.notes.is_empty() {
            let _ = writeln!(md, "\n## Notes\n");
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        let _ = writeln!(md, "\n![latency percentiles](latency.svg)");
        md
    }
}
