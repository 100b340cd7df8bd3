//! The `run` subcommand: start mock, bare proxy and gateway; measure direct,
//! bare and gateway interleaved per scenario × rate; then max throughput;
//! write results/latest.{md,json} and results/latency.svg.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::client::Target;
use crate::loadgen::{smoke, LoadConfig, LoadResult};
use crate::measure::{fill_added, Recorded};
use crate::procs::{free_port, mock_spec, pinning, spawn, SpawnSpec, Spawned};
use crate::report::{Measurement, Mode, Ratio, Report, Settings, SubjectInfo, TranslationCost};
use crate::stats::{Percentiles, Recorder};
use crate::sysinfo::Machine;
use crate::util::{parse_duration, parse_rates};
use crate::workload::{Scenario, ANTHROPIC_MODEL, MODEL};
use crate::{closedloop, openloop, procstat, signals};

#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// ferrogate binary (started as `serve --config F --listen A --workers 1`).
    #[arg(long, default_value = "target/release/ferrogate")]
    pub ferrogate: PathBuf,
    /// Custom gateway command instead of ferrogate, whitespace-separated, with
    /// placeholders {listen}, {config}, {upstream} (e.g. to test the harness with
    /// `target/release/loadtest bare-proxy --listen {listen} --upstream http://{upstream}`).
    #[arg(long)]
    pub gateway_cmd: Option<String>,
    /// Label of the gateway subject in the report.
    #[arg(long, default_value = "ferrogate")]
    pub gateway_name: String,
    /// Environment for the gateway process, KEY=VALUE (repeatable), e.g. RUST_LOG=warn.
    #[arg(long = "gateway-env", value_parser = parse_env)]
    pub gateway_env: Vec<(String, String)>,
    /// Measure only direct and bare (no gateway).
    #[arg(long)]
    pub no_gateway: bool,
    /// Open-loop request rates (req/s), comma-separated.
    #[arg(long, default_value = "1000,5000")]
    pub rates: String,
    /// Scenarios, comma-separated: non-stream, stream (OpenAI pass-through),
    /// anthropic-non-stream, anthropic-stream (Anthropic pass-through),
    /// translated-non-stream, translated-stream (OpenAI client, Anthropic provider).
    #[arg(long, default_value = "non-stream,stream")]
    pub scenarios: String,
    /// Measured duration of each open-loop run.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before each measured run (same load, not recorded).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Interleaved rounds (direct, bare, gateway, direct, ...) per scenario × rate.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Keep-alive connections of the open-loop generator.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Connections of the closed-loop max-throughput runs.
    #[arg(long, default_value_t = 16)]
    pub max_connections: usize,
    /// Measured duration of each max-throughput run (default: --duration).
    #[arg(long, value_parser = parse_duration)]
    pub max_duration: Option<Duration>,
    /// Skip the max-throughput runs.
    #[arg(long)]
    pub no_max: bool,
    /// Content chunks per streamed response.
    #[arg(long, default_value_t = 20)]
    pub chunks: usize,
    /// Per-request timeout.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Pin the subject on CPU 0 and mock + generator on CPU 1.
    #[arg(long)]
    pub pin: bool,
    /// Output directory (default: loadtest/results).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the temp dir with the generated config and child logs.
    #[arg(long)]
    pub keep_logs: bool,
}

pub fn default_out_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("results")
}

/// The key the gateway sends to the mock as its Anthropic provider (an `anthropic`
/// provider needs a key; the mock ignores it).
const MOCK_ANTHROPIC_KEY: &str = "sk-ant-loadtest-mock";

/// The generated ferrogate config: `mock-gpt` to the mock as an OpenAI provider,
/// `mock-claude` to the same mock as an Anthropic provider (base URL = origin; the
/// gateway appends `/v1/messages`).
pub fn gateway_config(upstream: SocketAddr) -> String {
    format!(
        concat!(
            "providers:\n",
            "  up: {{ kind: openai, base_url: \"http://{upstream}/v1\" }}\n",
            "  anth: {{ kind: anthropic, base_url: \"http://{upstream}\", keys: [\"{key}\"] }}\n",
            "models:\n",
            "  - name: {model}\n    targets: [{{ provider: up }}]\n",
            "  - name: {anthropic_model}\n    targets: [{{ provider: anth }}]\n"
        ),
        upstream = upstream,
        model = MODEL,
        anthropic_model = ANTHROPIC_MODEL,
        key = MOCK_ANTHROPIC_KEY
    )
}

/// Parses `KEY=VALUE`.
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

pub fn parse_scenarios(s: &str) -> anyhow::Result<Vec<Scenario>> {
    let mut out: Vec<Scenario> = Vec::new();
    for p in s.split(',').filter(|p| !p.trim().is_empty()) {
        let Some(sc) = Scenario::parse(p) else {
            let known: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
            anyhow::bail!("unknown scenario `{}` ({})", p.trim(), known.join(", "));
        };
        if !out.contains(&sc) {
            out.push(sc);
        }
    }
    if out.is_empty() {
        anyhow::bail!("no scenario given");
    }
    Ok(out)
}

/// Resolves the ferrogate binary: as given, else relative to the workspace root.
pub fn resolve_binary(p: &Path) -> Option<PathBuf> {
    if p.exists() {
        return Some(p.to_path_buf());
    }
    if p.is_relative() {
        let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p);
        if ws.exists() {
            return Some(ws);
        }
    }
    None
}

/// Spec for the gateway subject (ferrogate or a custom command).
pub fn gateway_spec(
    args_ferrogate: &Path,
    gateway_cmd: Option<&str>,
    name: &str,
    config: &Path,
    upstream: SocketAddr,
    cpu: Option<usize>,
    env: &[(String, String)],
) -> anyhow::Result<SpawnSpec> {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let (program, args) = match gateway_cmd {
        Some(cmd) => {
            let cfg = config.display().to_string();
            let mut parts = cmd.split_whitespace().map(|t| {
                t.replace("{listen}", &listen.to_string())
                    .replace("{config}", &cfg)
                    .replace("{upstream}", &upstream.to_string())
            });
            let program = parts.next().context("--gateway-cmd is empty")?;
            (PathBuf::from(program), parts.collect())
        }
        None => {
            let bin = resolve_binary(args_ferrogate).with_context(|| {
                format!(
                    "{} not found: build it (cargo build --release) or pass --ferrogate, --gateway-cmd or --no-gateway",
                    args_ferrogate.display()
                )
            })?;
            (
                bin,
                vec![
                    "serve".into(),
                    "--config".into(),
                    config.display().to_string(),
                    "--listen".into(),
                    listen.to_string(),
                    "--workers".into(),
                    "1".into(),
                ],
            )
        }
    };
    Ok(SpawnSpec {
        name: name.to_string(),
        program,
        args,
        wrapper: Vec::new(),
        cpu,
        expected_addr: Some(listen),
        ready_timeout: Duration::from_secs(30),
        health_check: gateway_cmd.is_none(),
        env: env.to_vec(),
    })
}

struct Subject {
    name: String,
    addr: SocketAddr,
    /// Index into the spawned processes (None for direct).
    proc_idx: Option<usize>,
    /// Translates between dialects (the gateway); direct and the bare proxy only forward.
    translates: bool,
}

/// Direct and the bare proxy cannot serve a translated scenario: there is no same-dialect
/// path without the gateway, so those scenarios are measured on the gateway alone.
fn serves(s: &Subject, sc: Scenario) -> bool {
    s.translates || sc.forwardable()
}

#[derive(Clone, Copy, PartialEq)]
struct Key {
    subject: usize,
    scenario: Scenario,
    mode: Mode,
    rate: Option<f64>,
    connections: usize,
}

#[derive(Default)]
struct Agg {
    rec: Recorder,
    cpu_stat_us: Option<f64>,
    cpu_sched_us: Option<f64>,
    window_s: f64,
    lost: usize,
    rounds: usize,
}

impl Agg {
    fn add(&mut self, r: &LoadResult) {
        self.rec.merge(&r.rec);
        self.window_s += r.window_s;
        self.lost += r.connections_lost;
        if let Some(c) = r.cpu {
            self.cpu_stat_us = Some(self.cpu_stat_us.unwrap_or(0.0) + c.stat_us);
            self.cpu_sched_us = match (self.rounds, self.cpu_sched_us, c.sched_us) {
                (0, _, Some(s)) => Some(s),
                (_, Some(a), Some(s)) => Some(a + s),
                _ => None,
            };
        }
        self.rounds += 1;
    }
}

fn progress(label: &str, subject: &str, r: &LoadResult) {
    let p = Percentiles::from_ns(&r.rec.latency).unwrap_or_default();
    let cpu = match (r.cpu, r.rec.ok) {
        (Some(c), ok) if ok > 0 => format!(
            "  cpu {:.1}µs/req (schedstat {})",
            c.stat_us / ok as f64,
            c.sched_us
                .map(|s| format!("{:.1}", s / ok as f64))
                .unwrap_or_else(|| "-".into())
        ),
        _ => String::new(),
    };
    println!(
        "{label:<28} {subject:<10} p50 {:>8.1}µs  p99 {:>8.1}µs  p99.9 {:>8.1}µs  ok {}/{}  late {}  {:.0} req/s{cpu}",
        p.p50,
        p.p99,
        p.p999,
        r.rec.ok,
        r.rec.total(),
        r.rec.late_sends,
        r.achieved_rps
    );
}

fn ensure_alive(procs: &mut [Spawned]) -> anyhow::Result<()> {
    for p in procs.iter_mut() {
        if !p.is_running() {
            anyhow::bail!(
                "{} (pid {}) died; stderr:\n{}",
                p.name,
                p.pid,
                p.stderr_tail(4000)
            );
        }
    }
    Ok(())
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    signals::install();
    let rates = parse_rates(&args.rates).map_err(anyhow::Error::msg)?;
    let scenarios = parse_scenarios(&args.scenarios)?;
    let machine = Machine::detect();
    let (pin, subject_cpu, mock_cpu) = pinning(args.pin, &machine)?;

    let mut tmp = tempfile::Builder::new()
        .prefix("ferrogate-loadtest-")
        .tempdir()?;
    if args.keep_logs {
        tmp.disable_cleanup(true);
        println!("logs and config in {}", tmp.path().display());
    }
    let logdir = tmp.path().to_path_buf();
    let exe = std::env::current_exe()?;

    let mut procs: Vec<Spawned> = Vec::new();
    procs.push(spawn(
        &mock_spec(exe.clone(), args.chunks, mock_cpu),
        &logdir,
    )?);
    let mock_addr = procs[0].addr;
    procs.push(spawn(
        &SpawnSpec {
            name: "bare".into(),
            program: exe.clone(),
            args: vec![
                "bare-proxy".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--upstream".into(),
                format!("http://{mock_addr}"),
            ],
            wrapper: Vec::new(),
            cpu: subject_cpu,
            expected_addr: None,
            ready_timeout: Duration::from_secs(10),
            health_check: false,
            env: Vec::new(),
        },
        &logdir,
    )?);
    let mut subjects = vec![
        Subject {
            name: "direct".into(),
            addr: mock_addr,
            proc_idx: None,
            translates: false,
        },
        Subject {
            name: "bare".into(),
            addr: procs[1].addr,
            proc_idx: Some(1),
            translates: false,
        },
    ];
    if !args.no_gateway {
        let config = logdir.join("ferrogate.yaml");
        std::fs::write(&config, gateway_config(mock_addr))?;
        let spec = gateway_spec(
            &args.ferrogate,
            args.gateway_cmd.as_deref(),
            &args.gateway_name,
            &config,
            mock_addr,
            subject_cpu,
            &args.gateway_env,
        )?;
        procs.push(spawn(&spec, &logdir)?);
        subjects.push(Subject {
            name: args.gateway_name.clone(),
            addr: procs[2].addr,
            proc_idx: Some(2),
            translates: true,
        });
    }
    for p in &procs {
        println!(
            "started {:<10} pid {:<7} http://{}  ({})",
            p.name, p.pid, p.addr, p.command
        );
    }

    // Idle RSS, before any traffic.
    std::thread::sleep(Duration::from_millis(200));
    let idle_rss: Vec<Option<u64>> = procs
        .iter()
        .map(|p| procstat::mem(p.pid).ok().map(|m| m.rss_kb))
        .collect();

    // Smoke test every subject × scenario before measuring anything.
    for s in &subjects {
        for &sc in &scenarios {
            if !serves(s, sc) {
                continue;
            }
            smoke(&Target::new(s.addr, sc)?, 3, args.timeout)
                .with_context(|| format!("smoke test of {} ({})", s.name, sc.name()))?;
        }
    }

    let mut aggs: Vec<(Key, Agg)> = Vec::new();
    let mut add = |key: Key, r: &LoadResult| match aggs.iter_mut().find(|(k, _)| *k == key) {
        Some((_, a)) => a.add(r),
        None => {
            let mut a = Agg::default();
            a.add(r);
            aggs.push((key, a));
        }
    };
    let pid_of = |s: &Subject, procs: &[Spawned]| {
        s.proc_idx
            .map(|i| crate::proctree::list(procs[i].pid))
            .unwrap_or_default()
    };

    for &sc in &scenarios {
        for &rate in &rates {
            for round in 1..=args.rounds {
                for (si, s) in subjects.iter().enumerate() {
                    if !serves(s, sc) {
                        continue;
                    }
                    ensure_alive(&mut procs)?;
                    let cfg = LoadConfig {
                        target: Target::new(s.addr, sc)?,
                        warmup: args.warmup,
                        duration: args.duration,
                        connections: args.connections,
                        timeout: args.timeout,
                        drain: args.timeout + Duration::from_secs(2),
                        probe_pids: pid_of(s, &procs),
                    };
                    let r = openloop::run(&cfg, rate)?;
                    progress(&format!("{} @{rate:.0}/s r{round}", sc.name()), &s.name, &r);
                    add(
                        Key {
                            subject: si,
                            scenario: sc,
                            mode: Mode::Open,
                            rate: Some(rate),
                            connections: args.connections,
                        },
                        &r,
                    );
                }
            }
        }
    }
    if !args.no_max {
        let duration = args.max_duration.unwrap_or(args.duration);
        for &sc in &scenarios {
            for round in 1..=args.rounds {
                for (si, s) in subjects.iter().enumerate() {
                    if !serves(s, sc) {
                        continue;
                    }
                    ensure_alive(&mut procs)?;
                    let cfg = LoadConfig {
                        target: Target::new(s.addr, sc)?,
                        warmup: args.warmup,
                        duration,
                        connections: args.max_connections,
                        timeout: args.timeout,
                        drain: args.timeout + Duration::from_secs(2),
                        probe_pids: pid_of(s, &procs),
                    };
                    let r = closedloop::run(&cfg)?;
                    progress(&format!("{} max r{round}", sc.name()), &s.name, &r);
                    add(
                        Key {
                            subject: si,
                            scenario: sc,
                            mode: Mode::Max,
                            rate: None,
                            connections: args.max_connections,
                        },
                        &r,
                    );
                }
            }
        }
    }
    ensure_alive(&mut procs)?;

    let subject_infos: Vec<SubjectInfo> = {
        let mut v = vec![SubjectInfo {
            name: "direct".into(),
            command: format!("mock upstream: {}", procs[0].command),
            pid: None,
            cpu: mock_cpu,
            idle_rss_kb: None,
            peak_rss_kb: None,
            end_rss_kb: None,
        }];
        for s in subjects.iter().skip(1) {
            let i = s.proc_idx.unwrap_or(0);
            let mem = procstat::mem(procs[i].pid).ok();
            v.push(SubjectInfo {
                name: s.name.clone(),
                command: procs[i].command.clone(),
                pid: Some(procs[i].pid),
                cpu: subject_cpu,
                idle_rss_kb: idle_rss[i],
                peak_rss_kb: mem.map(|m| m.hwm_kb),
                end_rss_kb: mem.map(|m| m.rss_kb),
            });
        }
        v
    };

    let measurements = build_measurements(&aggs, &subjects);
    let ratios = build_ratios(&measurements, &subjects);
    let translation = subjects
        .get(2)
        .map(|gw| build_translation(&measurements, &gw.name))
        .unwrap_or_default();
    for t in &translation {
        println!(
            "translation {} vs {} @{}: {:.1} vs {:.1} µs/req CPU ({}) = {:.2}×",
            t.scenario.name(),
            t.baseline.name(),
            t.target_rps
                .map(|r| format!("{r:.0}/s"))
                .unwrap_or_else(|| "max".into()),
            t.cpu_us_per_req,
            t.baseline_cpu_us_per_req,
            t.source,
            t.ratio
        );
    }
    let mut notes = notes(&measurements);
    if !pin {
        notes.push("Unpinned: subject, mock and generator share all CPUs; use --pin to isolate the subject on CPU 0.".into());
    }
    notes.push("Wall-clock latency on a shared machine drifts run to run; `loadtest callgrind` (instructions per request) is the stable figure.".into());
    let report = Report {
        machine,
        settings: Settings {
            duration_s: args.duration.as_secs_f64(),
            warmup_s: args.warmup.as_secs_f64(),
            max_duration_s: args.max_duration.unwrap_or(args.duration).as_secs_f64(),
            rates,
            rounds: args.rounds,
            connections: args.connections,
            max_connections: args.max_connections,
            chunks: args.chunks,
            pinned: pin,
            timeout_s: args.timeout.as_secs_f64(),
            gateway_name: subjects.get(2).map(|s| s.name.clone()),
        },
        subjects: subject_infos,
        measurements,
        ratios,
        translation,
        notes,
    };

    let out = args.out.clone().unwrap_or_else(default_out_dir);
    std::fs::create_dir_all(&out)?;
    let md = report.to_markdown();
    std::fs::write(out.join("latest.md"), &md)?;
    std::fs::write(
        out.join("latest.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    crate::plot::write_svg(&out.join("latency.svg"), &report)?;
    println!("\n{md}");
    println!(
        "wrote {}/latest.md, latest.json, latency.svg",
        out.display()
    );

    for p in procs.iter_mut().rev() {
        p.stop(Duration::from_secs(3));
    }
    Ok(())
}

fn build_measurements(aggs: &[(Key, Agg)], subjects: &[Subject]) -> Vec<Measurement> {
    let mut out: Vec<Measurement> = aggs
        .iter()
        .map(|(k, a)| {
            Recorded {
                subject: &subjects[k.subject].name,
                scenario: k.scenario,
                mode: k.mode,
                target_rps: k.rate,
                connections: k.connections,
                rounds: a.rounds,
                rec: &a.rec,
                window_s: a.window_s,
                cpu_stat_us: a.cpu_stat_us,
                cpu_sched_us: a.cpu_sched_us,
                connections_lost: a.lost,
            }
            .measurement()
        })
        .collect();
    // Added latency vs direct, same scenario and rate (open loop only).
    fill_added(&mut out, "direct");
    out
}

fn build_ratios(ms: &[Measurement], subjects: &[Subject]) -> Vec<Ratio> {
    let Some(gw) = subjects.get(2) else {
        return Vec::new();
    };
    let div = |a: f64, b: f64| (b > 0.05).then(|| a / b);
    let mut out = Vec::new();
    for g in ms.iter().filter(|m| m.subject == gw.name) {
        let Some(b) = ms.iter().find(|b| {
            b.subject == "bare"
                && b.scenario == g.scenario
                && b.mode == g.mode
                && b.target_rps == g.target_rps
        }) else {
            continue;
        };
        let cpu = match (g.cpu_us_per_req_schedstat, b.cpu_us_per_req_schedstat) {
            (Some(x), Some(y)) => div(x, y),
            _ => g
                .cpu_us_per_req
                .zip(b.cpu_us_per_req)
                .and_then(|(x, y)| div(x, y)),
        };
        out.push(Ratio {
            scenario: g.scenario,
            mode: g.mode,
            target_rps: g.target_rps,
            added_p50: g
                .added_latency_us
                .zip(b.added_latency_us)
                .and_then(|(x, y)| div(x.p50, y.p50)),
            added_p99: g
                .added_latency_us
                .zip(b.added_latency_us)
                .and_then(|(x, y)| div(x.p99, y.p99)),
            cpu_per_req: cpu,
            stream_added_ttfb_p50: g
                .added_ttfb_us
                .zip(b.added_ttfb_us)
                .and_then(|(x, y)| div(x.p50, y.p50)),
        });
    }
    out
}

/// The gateway's translated scenarios against its own pass-through runs of the same load.
fn build_translation(ms: &[Measurement], gateway: &str) -> Vec<TranslationCost> {
    let mut out = Vec::new();
    for t in ms
        .iter()
        .filter(|m| m.subject == gateway && m.scenario.is_translated())
    {
        for &base in t.scenario.passthrough_baselines() {
            let b = ms.iter().find(|b| {
                b.subject == gateway
                    && b.scenario == base
                    && b.mode == t.mode
                    && b.target_rps == t.target_rps
            });
            if let Some(c) = b.and_then(|b| TranslationCost::between(t, b)) {
                out.push(c);
            }
        }
    }
    out
}

fn notes(ms: &[Measurement]) -> Vec<String> {
    let mut notes = Vec::new();
    for m in ms {
        let load = match m.target_rps {
            Some(r) => format!("{r:.0}/s"),
            None => "max".into(),
        };
        if m.late_sends > 0 {
            notes.push(format!(
                "{} {} @{load}: {} late sends (no free connection at the scheduled time; their wait is in the latency).",
                m.subject,
                m.scenario.name(),
                m.late_sends
            ));
        }
        if let Some(lag) = m
            .sched_lag_us
            .filter(|l| l.p99 > 200.0 && m.mode == Mode::Open)
        {
            notes.push(format!(
                "{} {} @{load}: generator timer lag p99 {:.0} µs — the generator itself was busy; this run's tail includes it.",
                m.subject,
                m.scenario.name(),
                lag.p99
            ));
        }
        if m.errors + m.non_200 > 0 {
            notes.push(format!(
                "{} {} @{load}: {} errors, {} non-200 of {} requests.",
                m.subject,
                m.scenario.name(),
                m.errors,
                m.non_200,
                m.requests
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_yaml() {
        let y = gateway_config(SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert!(y.contains("up: { kind: openai, base_url: \"http://127.0.0.1:9000/v1\" }"));
        // Anthropic's base URL is the origin: the gateway appends /v1/messages.
        assert!(y.contains(
            "anth: { kind: anthropic, base_url: \"http://127.0.0.1:9000\", keys: [\"sk-ant-loadtest-mock\"] }"
        ));
        assert!(y.contains("- name: mock-gpt\n    targets: [{ provider: up }]"));
        assert!(y.contains("- name: mock-claude\n    targets: [{ provider: anth }]"));
    }

    #[test]
    fn scenarios() {
        assert_eq!(
            parse_scenarios("non-stream,stream").ok(),
            Some(vec![Scenario::NonStream, Scenario::Stream])
        );
        assert_eq!(
            parse_scenarios("stream, anthropic-stream,translated-stream,").ok(),
            Some(vec![
                Scenario::Stream,
                Scenario::AnthropicStream,
                Scenario::TranslatedStream
            ])
        );
        assert_eq!(
            parse_scenarios("anthropic-non-stream,translated-non-stream,nonstream").ok(),
            Some(vec![
                Scenario::AnthropicNonStream,
                Scenario::TranslatedNonStream,
                Scenario::NonStream
            ])
        );
        // Duplicates are measured once.
        assert_eq!(
            parse_scenarios("stream,stream").ok(),
            Some(vec![Scenario::Stream])
        );
        assert!(parse_scenarios("x").is_err());
        assert!(parse_scenarios("stream,anthropic").is_err());
        assert!(parse_scenarios("").is_err());
        let msg = parse_scenarios("bogus").err().map(|e| e.to_string());
        assert!(msg.is_some_and(|m| m.contains("translated-stream")));
    }

    #[test]
    fn forwarders_skip_translated_scenarios() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 9));
        let s = |translates| Subject {
            name: "x".into(),
            addr,
            proc_idx: None,
            translates,
        };
        assert!(serves(&s(false), Scenario::AnthropicStream));
        assert!(serves(&s(false), Scenario::Stream));
        assert!(!serves(&s(false), Scenario::TranslatedStream));
        assert!(!serves(&s(false), Scenario::TranslatedNonStream));
        assert!(serves(&s(true), Scenario::TranslatedStream));
    }

    fn m(subject: &str, scenario: Scenario, sched: Option<f64>, stat: f64) -> Measurement {
        Measurement {
            subject: subject.into(),
            scenario,
            mode: Mode::Open,
            target_rps: Some(500.0),
            connections: 32,
            rounds: 1,
            requests: 10,
            ok: 10,
            non_200: 0,
            errors: 0,
            success_rate: 1.0,
            late_sends: 0,
            achieved_rps: 500.0,
            latency_us: None,
            ttfb_us: None,
            added_latency_us: None,
            added_ttfb_us: None,
            sched_lag_us: None,
            cpu_us_per_req: Some(stat),
            cpu_us_per_req_schedstat: sched,
            overhead_header_us: None,
            connections_lost: 0,
        }
    }

    #[test]
    fn translation_ratios() {
        let ms = vec![
            m("ferrogate", Scenario::Stream, Some(100.0), 110.0),
            m("ferrogate", Scenario::AnthropicStream, Some(80.0), 90.0),
            m("ferrogate", Scenario::TranslatedStream, Some(160.0), 170.0),
            // Another subject's figures are not used.
            m("bare", Scenario::Stream, Some(10.0), 10.0),
        ];
        let t = build_translation(&ms, "ferrogate");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].baseline, Scenario::Stream);
        assert!((t[0].ratio - 1.6).abs() < 1e-9);
        assert_eq!(t[1].baseline, Scenario::AnthropicStream);
        assert!((t[1].ratio - 2.0).abs() < 1e-9);
        assert_eq!(t[1].source, "schedstat");
        // Without schedstat on both sides, /proc stat is used for both.
        let ms = vec![
            m("ferrogate", Scenario::AnthropicStream, None, 90.0),
            m("ferrogate", Scenario::TranslatedStream, Some(160.0), 180.0),
        ];
        let t = build_translation(&ms, "ferrogate");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].source, "stat");
        assert!((t[0].ratio - 2.0).abs() < 1e-9);
        // No baseline measured: nothing to compare.
        let ms = vec![m("ferrogate", Scenario::TranslatedStream, Some(1.0), 1.0)];
        assert!(build_translation(&ms, "ferrogate").is_empty());
    }
}
