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
use crate::procs::{bare_proxy_spec, free_port, mock_spec, pinning, spawn, SpawnSpec, Spawned};
use crate::report::{
    Measurement, Mode, Ratio, Report, ResilienceRow, Settings, SubjectInfo, TranslationCost,
};
use crate::resilience::{Attempts, FaultArgs, FaultyMocks};
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
    /// Run the gateway with governance on (prices for the mock's models, a SQLite store, one
    /// key with a budget, rpm and tpm that every request to the gateway presents).
    #[arg(long)]
    pub governed: bool,
    /// Measure only direct and bare (no gateway).
    #[arg(long)]
    pub no_gateway: bool,
    /// Open-loop request rates (req/s), comma-separated.
    #[arg(long, default_value = "1000,5000")]
    pub rates: String,
    /// Scenarios, comma-separated: non-stream, stream (OpenAI pass-through),
    /// anthropic-non-stream, anthropic-stream (Anthropic pass-through),
    /// translated-non-stream, translated-stream (OpenAI client, Anthropic provider),
    /// resilience (= resilience-non-stream, resilience-stream: retries over a failing and a
    /// slow target, each interleaved with resilience-healthy-*: the same route, healthy).
    #[arg(long, default_value = "non-stream,stream")]
    pub scenarios: String,
    #[command(flatten)]
    pub faults: FaultArgs,
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
    gateway_config_with(upstream, &Resilience::Off)
}

/// Which resilient models the generated config has.
pub enum Resilience {
    /// None: the config the pass-through figures have always been measured with.
    Off,
    /// `mock-resilient-healthy` (two targets on the healthy mock, retries).
    Healthy,
    /// Also `mock-resilient`: a failing mock and a slow mock (their addresses).
    Faulty(SocketAddr, SocketAddr),
}

impl Resilience {
    /// What `scenarios` need (`faulty`: the misbehaving mocks' addresses, when running).
    pub fn for_scenarios(scenarios: &[Scenario], faulty: Option<(SocketAddr, SocketAddr)>) -> Self {
        match faulty {
            Some((a, b)) => Resilience::Faulty(a, b),
            None if scenarios.iter().any(|s| s.is_resilience()) => Resilience::Healthy,
            None => Resilience::Off,
        }
    }
}

/// `gateway_config` plus the resilient models `resilience` asks for.
pub fn gateway_config_with(upstream: SocketAddr, resilience: &Resilience) -> String {
    let (extra_providers, extra_models) = match resilience {
        Resilience::Off => (String::new(), String::new()),
        Resilience::Healthy => crate::resilience::config_lines(upstream, None),
        Resilience::Faulty(a, b) => crate::resilience::config_lines(upstream, Some((*a, *b))),
    };
    format!(
        concat!(
            "providers:\n",
            "  up: {{ kind: openai, base_url: \"http://{upstream}/v1\" }}\n",
            "  anth: {{ kind: anthropic, base_url: \"http://{upstream}\", keys: [\"{key}\"] }}\n",
            "{extra_providers}",
            "models:\n",
            "  - name: {model}\n    targets: [{{ provider: up }}]\n",
            "  - name: {anthropic_model}\n    targets: [{{ provider: anth }}]\n",
            "{extra_models}"
        ),
        upstream = upstream,
        model = MODEL,
        anthropic_model = ANTHROPIC_MODEL,
        key = MOCK_ANTHROPIC_KEY,
        extra_providers = extra_providers,
        extra_models = extra_models
    )
}

/// The subject that is ferrogate with governance on (a key with a budget and rpm/tpm limits).
pub const GOVERNED: &str = "ferrogate-governed";
/// The gateway with governance on and a key with a budget but no rate limits.
pub const BUDGETED: &str = "ferrogate-budgeted";
/// ferrogate with the same prices as the governed subject and no governance: what governance
/// is compared with (a budget needs prices, and a priced answer carries its cost header).
pub const PRICED: &str = "ferrogate-priced";
/// ferrogate keeping its request records in an SQLite file (`logs:`), compared with plain
/// `ferrogate` (the newest records in memory).
pub const LOGGED: &str = "ferrogate-logged";

/// `config` with the request log in an SQLite file in `dir`.
pub fn logged_config(config: &str, dir: &std::path::Path) -> String {
    format!(
        "{config}logs:\n  store: \"sqlite:{}\"\n",
        dir.join("logs.db").display()
    )
}
/// The virtual key the governed subject declares and the load client sends.
pub const GOVERNED_KEY: &str = "fg-loadtest0governed0key0000000000000000000000";

/// `config` plus a `governance:` section (SQLite store in `dir`) with one declared key that
/// has a budget and requests/tokens-per-minute limits far above what a run uses, and prices
/// for the mock providers (a budget needs a price).
pub fn governed_config(config: &str, dir: &std::path::Path) -> String {
    governance_config(config, dir, true)
}

/// The same key with its budget only: no rate limits, so no `x-ratelimit-*` headers (what
/// the governance logic costs without the four headers a limited key's answers carry).
pub fn budgeted_config(config: &str, dir: &std::path::Path) -> String {
    governance_config(config, dir, false)
}

fn governance_config(config: &str, dir: &std::path::Path, limits: bool) -> String {
    format!(
        concat!(
            "{config}",
            "governance:\n",
            "  master_key: \"loadtest-master-key\"\n",
            "  store: \"sqlite:{db}\"\n",
            "  keys:\n",
            "    - {{ name: load, value: \"{key}\", budget: {{ usd: 1000000, period: 1d }}{limits} }}\n",
            // Records in memory, as for the other subjects: governance's own cost is measured,
            // not the governance store's request log (`ferrogate-logged` measures that).
            "logs:\n",
            "  store: memory\n"
        ),
        config = priced_config(config),
        db = dir.join(if limits { "governance.db" } else { "budgeted.db" }).display(),
        key = GOVERNED_KEY,
        limits = if limits {
            ", limits: { rpm: 100000000, tpm: 100000000000 }"
        } else {
            ""
        },
    )
}

/// `config` with prices for the mock providers.
pub fn priced_config(config: &str) -> String {
    format!(
        concat!(
            "{config}",
            "pricing:\n",
            "  \"up/*\": {{ input_per_mtok: 1, output_per_mtok: 2 }}\n",
            "  \"anth/*\": {{ input_per_mtok: 1, output_per_mtok: 2 }}\n",
        ),
        config = config
    )
}

/// The header the governed subject's requests carry.
pub fn governed_headers() -> Vec<(String, String)> {
    vec![("authorization".into(), format!("Bearer {GOVERNED_KEY}"))]
}

/// Parses `KEY=VALUE`.
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

/// Parses `--scenarios`. `resilience` stands for the four resilience scenarios, and a
/// misbehaving resilience scenario brings its healthy reference along (just before it).
pub fn parse_scenarios(s: &str) -> anyhow::Result<Vec<Scenario>> {
    let mut out: Vec<Scenario> = Vec::new();
    for p in s.split(',').filter(|p| !p.trim().is_empty()) {
        let group: Vec<Scenario> = if p.trim() == "resilience" {
            Scenario::RESILIENCE.to_vec()
        } else {
            let Some(sc) = Scenario::parse(p) else {
                let known: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                anyhow::bail!(
                    "unknown scenario `{}` ({}, resilience)",
                    p.trim(),
                    known.join(", ")
                );
            };
            sc.healthy_reference().into_iter().chain([sc]).collect()
        };
        for sc in group {
            if !out.contains(&sc) {
                out.push(sc);
            }
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
    /// Headers every request to it carries (a governed gateway's key).
    headers: Vec<(String, String)>,
}

impl Subject {
    fn target(&self, sc: Scenario) -> anyhow::Result<Target> {
        Target::new(self.addr, sc)?.with_headers(&self.headers)
    }
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
    /// The gateway's upstream attempts over the runs (resilience scenarios).
    attempts: Option<Attempts>,
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

    fn add_attempts(&mut self, a: &Attempts) {
        self.attempts.get_or_insert_with(Attempts::default).add(a);
    }
}

/// Scenarios measured interleaved: a misbehaving resilience scenario with its healthy
/// reference (same rate, same round, one after the other); every other one alone.
fn interleave_groups(scenarios: &[Scenario]) -> Vec<Vec<Scenario>> {
    let mut groups: Vec<Vec<Scenario>> = Vec::new();
    for &sc in scenarios {
        if scenarios.iter().any(|f| f.healthy_reference() == Some(sc)) {
            continue; // measured in its misbehaving twin's group
        }
        match sc.healthy_reference().filter(|r| scenarios.contains(r)) {
            Some(r) => groups.push(vec![r, sc]),
            None => groups.push(vec![sc]),
        }
    }
    groups
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
        &bare_proxy_spec(exe.clone(), mock_addr, subject_cpu),
        &logdir,
    )?);
    let mut subjects = vec![
        Subject {
            name: "direct".into(),
            addr: mock_addr,
            proc_idx: None,
            translates: false,
            headers: Vec::new(),
        },
        Subject {
            name: "bare".into(),
            addr: procs[1].addr,
            proc_idx: Some(1),
            translates: false,
            headers: Vec::new(),
        },
    ];
    // The resilience scenario's misbehaving targets (started before the gateway: its config
    // names them; pushed after it, so the gateway stays procs[2]).
    let faulty = if !args.no_gateway && scenarios.iter().any(|s| s.needs_faulty_upstreams()) {
        Some(FaultyMocks::spawn(
            &exe,
            args.chunks,
            mock_cpu,
            &logdir,
            &args.faults,
        )?)
    } else {
        None
    };
    let resilience = Resilience::for_scenarios(&scenarios, faulty.as_ref().map(|f| f.addrs()));
    if !args.no_gateway {
        let config = logdir.join("ferrogate.yaml");
        let base = gateway_config_with(mock_addr, &resilience);
        let text = if args.governed {
            governed_config(&base, &logdir)
        } else {
            base
        };
        std::fs::write(&config, text)?;
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
            headers: if args.governed {
                governed_headers()
            } else {
                Vec::new()
            },
        });
    }
    if let Some(f) = faulty {
        procs.push(f.failing);
        procs.push(f.slow);
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
            smoke(&s.target(sc)?, 3, args.timeout)
                .with_context(|| format!("smoke test of {} ({})", s.name, sc.name()))?;
        }
    }

    let mut aggs: Vec<(Key, Agg)> = Vec::new();
    let mut add = |key: Key, r: &LoadResult, attempts: Option<&Attempts>| {
        let i = match aggs.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                aggs.push((key, Agg::default()));
                aggs.len() - 1
            }
        };
        let a = &mut aggs[i].1;
        a.add(r);
        if let Some(x) = attempts {
            a.add_attempts(x);
        }
    };
    // The gateway's attempt counters around a run of a resilience scenario (ferrogate only:
    // a custom gateway command has no such metrics). A failed scrape only loses the figure.
    let scrape_attempts = |s: &Subject, sc: Scenario| -> Option<Attempts> {
        if !sc.is_resilience() || !s.translates || args.gateway_cmd.is_some() {
            return None;
        }
        match crate::resilience::scrape(s.addr) {
            Ok(text) => Some(Attempts::from_metrics(&text, sc)),
            Err(e) => {
                eprintln!("warning: {} /metrics: {e:#}", s.name);
                None
            }
        }
    };
    let pid_of = |s: &Subject, procs: &[Spawned]| {
        s.proc_idx
            .map(|i| crate::proctree::list(procs[i].pid))
            .unwrap_or_default()
    };

    for group in interleave_groups(&scenarios) {
        for &rate in &rates {
            for round in 1..=args.rounds {
                for &sc in &group {
                    for (si, s) in subjects.iter().enumerate() {
                        if !serves(s, sc) {
                            continue;
                        }
                        ensure_alive(&mut procs)?;
                        let cfg = LoadConfig {
                            target: s.target(sc)?,
                            warmup: args.warmup,
                            duration: args.duration,
                            connections: args.connections,
                            timeout: args.timeout,
                            drain: args.timeout + Duration::from_secs(2),
                            probe_pids: pid_of(s, &procs),
                        };
                        let before = scrape_attempts(s, sc);
                        let r = openloop::run(&cfg, rate)?;
                        let attempts = before.zip(scrape_attempts(s, sc)).map(|(b, a)| a.since(&b));
                        progress(&format!("{} @{rate:.0}/s r{round}", sc.name()), &s.name, &r);
                        if let Some(a) = &attempts {
                            println!(
                                "{:<39} attempts {} for {} requests ({}), {:?}",
                                "",
                                a.attempts,
                                a.requests,
                                a.per_request()
                                    .map(|v| format!("{v:.3}/req"))
                                    .unwrap_or_else(|| "-".into()),
                                a.by_outcome
                            );
                        }
                        add(
                            Key {
                                subject: si,
                                scenario: sc,
                                mode: Mode::Open,
                                rate: Some(rate),
                                connections: args.connections,
                            },
                            &r,
                            attempts.as_ref(),
                        );
                    }
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
                        target: s.target(sc)?,
                        warmup: args.warmup,
                        duration,
                        connections: args.max_connections,
                        timeout: args.timeout,
                        drain: args.timeout + Duration::from_secs(2),
                        probe_pids: pid_of(s, &procs),
                    };
                    let before = scrape_attempts(s, sc);
                    let r = closedloop::run(&cfg)?;
                    let attempts = before.zip(scrape_attempts(s, sc)).map(|(b, a)| a.since(&b));
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
                        attempts.as_ref(),
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
    let resilience_rows = subjects
        .get(2)
        .map(|gw| build_resilience(&measurements, &gw.name))
        .unwrap_or_default();
    for r in &resilience_rows {
        println!("{}", r.summary());
    }
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
    for p in procs.iter().skip(3) {
        notes.push(format!("Resilience target `{}`: `{}`.", p.name, p.command));
    }
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
        resilience: resilience_rows,
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
            .with_attempts(a.attempts.clone())
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

/// Each misbehaving resilience scenario against its healthy reference (same load).
fn build_resilience(ms: &[Measurement], gateway: &str) -> Vec<ResilienceRow> {
    ms.iter()
        .filter(|m| m.subject == gateway)
        .filter_map(|m| {
            let reference = m.scenario.healthy_reference()?;
            let r = ms.iter().find(|r| {
                r.subject == gateway
                    && r.scenario == reference
                    && r.mode == m.mode
                    && r.target_rps == m.target_rps
            });
            Some(ResilienceRow::between(m, r))
        })
        .collect()
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
    fn config_yaml_with_resilience() {
        let up = SocketAddr::from(([127, 0, 0, 1], 9000));
        // Without resilience scenarios the config is exactly the plain one.
        assert_eq!(
            gateway_config_with(up, &Resilience::for_scenarios(&[Scenario::Stream], None)),
            gateway_config(up)
        );
        assert!(!gateway_config(up).contains("retry"));
        let healthy = gateway_config_with(
            up,
            &Resilience::for_scenarios(&[Scenario::ResilienceHealthyStream], None),
        );
        assert!(
            healthy.contains("  res-h1: { kind: openai, base_url: \"http://127.0.0.1:9000/v1\"")
        );
        assert!(healthy.contains("- name: mock-resilient-healthy\n"));
        assert!(!healthy.contains("res-a"));
        let a = SocketAddr::from(([127, 0, 0, 1], 9001));
        let b = SocketAddr::from(([127, 0, 0, 1], 9002));
        let faulty = gateway_config_with(
            up,
            &Resilience::for_scenarios(&Scenario::RESILIENCE, Some((a, b))),
        );
        // Providers before `models:`, models after; the plain routes unchanged.
        let (providers, models) = faulty.split_once("models:\n").unwrap();
        assert!(providers.contains("res-a: { kind: openai, base_url: \"http://127.0.0.1:9001/v1\""));
        assert!(providers.contains("res-b: { kind: openai, base_url: \"http://127.0.0.1:9002/v1\""));
        assert!(models.contains("- name: mock-gpt\n    targets: [{ provider: up }]\n"));
        assert!(models.contains(
            "- name: mock-resilient\n    targets: [{ provider: res-a }, { provider: res-b }]\n    retry: { attempts: 3 }\n"
        ));
    }

    #[test]
    fn resilience_scenarios_parse_and_interleave() {
        let all = parse_scenarios("resilience").unwrap();
        assert_eq!(all, Scenario::RESILIENCE.to_vec());
        // A misbehaving scenario brings its healthy reference along, just before it.
        assert_eq!(
            parse_scenarios("non-stream,resilience-stream").unwrap(),
            vec![
                Scenario::NonStream,
                Scenario::ResilienceHealthyStream,
                Scenario::ResilienceStream
            ]
        );
        assert_eq!(
            parse_scenarios("resilience-healthy-non-stream").unwrap(),
            vec![Scenario::ResilienceHealthyNonStream]
        );
        assert_eq!(
            interleave_groups(&all),
            vec![
                vec![
                    Scenario::ResilienceHealthyNonStream,
                    Scenario::ResilienceNonStream
                ],
                vec![
                    Scenario::ResilienceHealthyStream,
                    Scenario::ResilienceStream
                ],
            ]
        );
        // The pair is one group wherever the reference appears; others stay alone.
        assert_eq!(
            interleave_groups(&[
                Scenario::ResilienceStream,
                Scenario::Stream,
                Scenario::ResilienceHealthyStream
            ]),
            vec![
                vec![
                    Scenario::ResilienceHealthyStream,
                    Scenario::ResilienceStream
                ],
                vec![Scenario::Stream],
            ]
        );
        assert_eq!(
            interleave_groups(&[Scenario::ResilienceHealthyStream]),
            vec![vec![Scenario::ResilienceHealthyStream]]
        );
    }

    #[test]
    fn resilience_rows_compare_with_the_healthy_route() {
        let mut faulty = m(
            "ferrogate",
            Scenario::ResilienceNonStream,
            Some(120.0),
            130.0,
        );
        faulty.ok = 999;
        faulty.requests = 1000;
        faulty.success_rate = 0.999;
        faulty.latency_us = Some(crate::stats::Percentiles {
            p50: 20_500.0,
            p99: 23_000.0,
            ..Default::default()
        });
        faulty.retried_latency_us = Some(crate::stats::Percentiles {
            p50: 21_900.0,
            p99: 24_000.0,
            count: 100,
            ..Default::default()
        });
        faulty.upstream_attempts = Some(Attempts {
            attempts: 1100.0,
            requests: 1000.0,
            by_outcome: [
                ("retry".to_string(), 100.0),
                ("success".to_string(), 1000.0),
            ]
            .into_iter()
            .collect(),
        });
        let mut healthy = m(
            "ferrogate",
            Scenario::ResilienceHealthyNonStream,
            Some(100.0),
            110.0,
        );
        healthy.latency_us = Some(crate::stats::Percentiles {
            p50: 300.0,
            p99: 1_000.0,
            ..Default::default()
        });
        healthy.upstream_attempts = Some(Attempts {
            attempts: 500.0,
            requests: 500.0,
            by_outcome: Default::default(),
        });
        // Another subject's or another rate's figures are not used.
        let mut other_rate = healthy.clone();
        other_rate.target_rps = Some(200.0);
        let ms = vec![
            other_rate,
            healthy,
            faulty,
            m("bare", Scenario::ResilienceHealthyNonStream, Some(1.0), 1.0),
        ];
        let rows = build_resilience(&ms, "ferrogate");
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.reference, Some(Scenario::ResilienceHealthyNonStream));
        assert!((r.attempts_per_request.unwrap() - 1.1).abs() < 1e-12);
        assert_eq!(r.reference_attempts_per_request, Some(1.0));
        let added = r.added_vs_healthy_us.unwrap();
        assert_eq!((added.p50, added.p99), (20_200.0, 22_000.0));
        assert_eq!(r.cpu_us_per_req, Some(120.0));
        assert_eq!(r.reference_cpu_us_per_req, Some(100.0));
        assert_eq!(r.cpu_source.as_deref(), Some("schedstat"));
        assert!(
            r.summary().contains("ok 99.90% (999/1000)"),
            "{}",
            r.summary()
        );
        assert!(r.summary().contains("attempts/req 1.100 (healthy 1.000)"));
        assert!(
            r.summary()
                .contains("retried 100 (p50 21900.0 p99 24000.0 µs)"),
            "{}",
            r.summary()
        );
        // Without its reference the row still reports the misbehaving run alone.
        let alone = build_resilience(&ms[2..3], "ferrogate");
        assert_eq!(alone.len(), 1);
        assert_eq!(alone[0].reference, None);
        assert!(alone[0].added_vs_healthy_us.is_none());
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
            headers: Vec::new(),
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
            upstream_attempts: None,
            retried_latency_us: None,
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
