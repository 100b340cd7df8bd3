//! Result model (serialised to latest.json) and its Markdown rendering (latest.md).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::resilience::Attempts;
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
    /// The gateway's upstream attempts and settled requests over the runs, from its
    /// `/metrics` (resilience scenarios; warm-up included on both counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_attempts: Option<Attempts>,
    /// Latency of the successful responses that needed more than one upstream attempt
    /// (`x-ferrogate-attempts` ≥ 2); `count` is how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried_latency_us: Option<Percentiles>,
}

impl Measurement {
    pub fn with_attempts(mut self, attempts: Option<Attempts>) -> Self {
        self.upstream_attempts = attempts;
        self
    }

    /// CPU µs per successful response: schedstat when present (ns precision), else stat.
    fn cpu_best(&self) -> Option<(f64, &'static str)> {
        match (self.cpu_us_per_req_schedstat, self.cpu_us_per_req) {
            (Some(x), _) => Some((x, "schedstat")),
            (None, Some(x)) => Some((x, "stat")),
            (None, None) => None,
        }
    }
}

/// A resilience scenario with misbehaving targets against the same route with healthy
/// targets, at the same load, measured interleaved in the same run.
#[derive(Clone, Debug, Serialize)]
pub struct ResilienceRow {
    pub scenario: Scenario,
    pub reference: Option<Scenario>,
    pub mode: Mode,
    pub target_rps: Option<f64>,
    pub requests: u64,
    pub ok: u64,
    pub success_rate: f64,
    pub reference_success_rate: Option<f64>,
    pub latency_us: Option<Percentiles>,
    pub reference_latency_us: Option<Percentiles>,
    /// Misbehaving − healthy, per percentile.
    pub added_vs_healthy_us: Option<Added>,
    /// Latency of the responses that needed a retry (`count`: how many).
    pub retried_latency_us: Option<Percentiles>,
    pub attempts_per_request: Option<f64>,
    pub reference_attempts_per_request: Option<f64>,
    /// Attempts by outcome (`success`, `retry`, …) over the misbehaving runs.
    pub attempt_outcomes: Vec<(String, f64)>,
    pub cpu_us_per_req: Option<f64>,
    pub reference_cpu_us_per_req: Option<f64>,
    /// Which CPU figure both sides use: "schedstat" or "stat".
    pub cpu_source: Option<String>,
}

impl ResilienceRow {
    /// `m`: the misbehaving scenario; `r`: its healthy reference, when measured.
    pub fn between(m: &Measurement, r: Option<&Measurement>) -> Self {
        let per_req =
            |x: &Measurement| x.upstream_attempts.as_ref().and_then(Attempts::per_request);
        // Both CPU figures from the same source, else none compared.
        let (cpu, ref_cpu, source) = match (m.cpu_best(), r.and_then(Measurement::cpu_best)) {
            (Some((x, a)), Some((y, b))) if a == b => (Some(x), Some(y), Some(a)),
            (Some((x, a)), None) => (Some(x), None, Some(a)),
            _ => {
                let (x, y) = (m.cpu_us_per_req, r.and_then(|r| r.cpu_us_per_req));
                (x, y, x.or(y).map(|_| "stat"))
            }
        };
        Self {
            scenario: m.scenario,
            reference: r.map(|r| r.scenario),
            mode: m.mode,
            target_rps: m.target_rps,
            requests: m.requests,
            ok: m.ok,
            success_rate: m.success_rate,
            reference_success_rate: r.map(|r| r.success_rate),
            latency_us: m.latency_us,
            reference_latency_us: r.and_then(|r| r.latency_us),
            added_vs_healthy_us: m
                .latency_us
                .zip(r.and_then(|r| r.latency_us))
                .map(|(a, b)| a.minus(&b)),
            retried_latency_us: m.retried_latency_us,
            attempts_per_request: per_req(m),
            reference_attempts_per_request: r.and_then(per_req),
            attempt_outcomes: m
                .upstream_attempts
                .as_ref()
                .map(|a| a.by_outcome.iter().map(|(k, v)| (k.clone(), *v)).collect())
                .unwrap_or_default(),
            cpu_us_per_req: cpu,
            reference_cpu_us_per_req: ref_cpu,
            cpu_source: source.map(str::to_string),
        }
    }

    /// One line for the console.
    pub fn summary(&self) -> String {
        let load = match self.target_rps {
            Some(v) => format!("{v:.0}/s"),
            None => "max".into(),
        };
        format!(
            "resilience {} @{load}: ok {:.2}% ({}/{}), p50 {} p99 {} µs, added vs healthy p50 {} p99 {} µs, retried {} (p50 {} p99 {} µs), attempts/req {} (healthy {}), CPU µs/req {} (healthy {}, {})",
            self.scenario.name(),
            self.success_rate * 100.0,
            self.ok,
            self.requests,
            opt(self.latency_us, |p| f1(p.p50)),
            opt(self.latency_us, |p| f1(p.p99)),
            opt(self.added_vs_healthy_us, |p| signed(p.p50)),
            opt(self.added_vs_healthy_us, |p| signed(p.p99)),
            self.retried_latency_us.map_or(0, |p| p.count),
            opt(self.retried_latency_us, |p| f1(p.p50)),
            opt(self.retried_latency_us, |p| f1(p.p99)),
            opt(self.attempts_per_request, |v| format!("{v:.3}")),
            opt(self.reference_attempts_per_request, |v| format!("{v:.3}")),
            opt(self.cpu_us_per_req, f1),
            opt(self.reference_cpu_us_per_req, f1),
            self.cpu_source.as_deref().unwrap_or("–")
        )
    }
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
    /// Resilience scenarios with misbehaving targets against the healthy route.
    pub resilience: Vec<ResilienceRow>,
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

        if !self.resilience.is_empty() {
            let _ = writeln!(
                md,
                "\n## Resilience: misbehaving targets vs the same route healthy\n"
            );
            let _ = writeln!(
                md,
                "Latency µs; *added* = misbehaving − healthy at the same percentile, same run. \
                 Attempts per request = the gateway's `ferrogate_upstream_attempts_total` ÷ \
                 `ferrogate_requests_total` for the model over the runs (warm-up included).\n"
            );
            let _ = writeln!(md, "| scenario | load | ok % | p50 | p99 | healthy p50 | healthy p99 | added p50 | added p99 | retried: n · p50 · p99 | attempts/req | healthy attempts/req | CPU µs/req | healthy CPU µs/req | attempts by outcome |");
            let _ = writeln!(
                md,
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
            );
            for r in &self.resilience {
                let load = match r.target_rps {
                    Some(v) => format!("{v:.0}/s"),
                    None => "max".into(),
                };
                let outcomes: Vec<String> = r
                    .attempt_outcomes
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.0}"))
                    .collect();
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.scenario.name(),
                    load,
                    r.success_rate * 100.0,
                    opt(r.latency_us, |p| f1(p.p50)),
                    opt(r.latency_us, |p| f1(p.p99)),
                    opt(r.reference_latency_us, |p| f1(p.p50)),
                    opt(r.reference_latency_us, |p| f1(p.p99)),
                    opt(r.added_vs_healthy_us, |p| signed(p.p50)),
                    opt(r.added_vs_healthy_us, |p| signed(p.p99)),
                    opt(r.retried_latency_us, |p| format!(
                        "{} · {} · {}",
                        p.count,
                        f1(p.p50),
                        f1(p.p99)
                    )),
                    opt(r.attempts_per_request, |v| format!("{v:.3}")),
                    opt(r.reference_attempts_per_request, |v| format!("{v:.3}")),
                    opt(r.cpu_us_per_req, f1),
                    opt(r.reference_cpu_us_per_req, f1),
                    if outcomes.is_empty() {
                        "–".to_string()
                    } else {
                        outcomes.join(", ")
                    }
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
