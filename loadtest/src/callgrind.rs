//! The `callgrind` subcommand: instructions per request for the bare proxy and
//! ferrogate, measured under valgrind's callgrind (the mock upstream and the
//! client run natively). Warm up, zero the counters (`callgrind_control -z`),
//! send N sequential requests over one keep-alive connection, dump
//! (`callgrind_control -d`), and read the dump's total `Ir`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use crate::client::{execute, Conn, Target};
use crate::procs::{mock_spec, spawn, SpawnSpec, Spawned};
use crate::resilience::{FaultArgs, FaultyMocks};
use crate::run::{
    budgeted_config, gateway_config_with, gateway_spec, governed_config, governed_headers,
    logged_config, parse_scenarios, priced_config, Resilience, BUDGETED, GOVERNED, LOGGED, PRICED,
};
use crate::signals;
use crate::workload::Scenario;

#[derive(clap::Args, Clone, Debug)]
pub struct CallgrindArgs {
    /// Subjects to measure, comma-separated: bare, ferrogate, ferrogate-priced (prices for the
    /// mock's models), ferrogate-governed (the same prices and governance on: a virtual key
    /// with a budget and rpm/tpm limits), ferrogate-budgeted (the same key with its budget
    /// only: no rate limits, so no `x-ratelimit-*` headers), ferrogate-logged (request records in
    /// an SQLite file).
    #[arg(long, default_value = "bare,ferrogate")]
    pub subjects: String,
    /// ferrogate binary (run as `serve --config F --listen A --workers 1`).
    #[arg(long, default_value = "target/release/ferrogate")]
    pub ferrogate: PathBuf,
    /// Custom gateway command instead of ferrogate ({listen}, {config}, {upstream}).
    #[arg(long)]
    pub gateway_cmd: Option<String>,
    /// Environment for the gateway process, KEY=VALUE (repeatable), e.g. RUST_LOG=warn.
    #[arg(long = "gateway-env", value_parser = crate::run::parse_env)]
    pub gateway_env: Vec<(String, String)>,
    /// Measured requests per scenario.
    #[arg(long, short = 'n', default_value_t = 2000)]
    pub requests: usize,
    /// Warm-up requests per scenario before the counters are zeroed.
    #[arg(long, short = 'w', default_value_t = 200)]
    pub warmup: usize,
    /// Scenarios, comma-separated: non-stream, stream, anthropic-non-stream,
    /// anthropic-stream, translated-non-stream, translated-stream,
    /// resilience-healthy-non-stream, resilience-healthy-stream (retries configured, both
    /// targets healthy), resilience-non-stream, resilience-stream (a failing and a slow
    /// target), resilience (all four). Translated and resilience scenarios are measured on
    /// the gateway only: the bare proxy neither translates nor retries.
    #[arg(long, default_value = "non-stream,stream")]
    pub scenarios: String,
    #[command(flatten)]
    pub faults: FaultArgs,
    /// Content chunks per streamed response.
    #[arg(long, default_value_t = 20)]
    pub chunks: usize,
    /// Output directory for callgrind.md / callgrind.json (default: loadtest/results).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the temp dir with the callgrind dumps (for callgrind_annotate).
    #[arg(long)]
    pub keep_logs: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct CallgrindResult {
    pub subject: String,
    pub scenario: Scenario,
    pub requests: usize,
    pub total_ir: u64,
    pub ir_per_request: f64,
    /// The serving thread's share (`--workers 1`: the main thread runs the runtime); the rest
    /// is background threads (the request-log writer, SQLite's worker).
    #[serde(default)]
    pub serving_ir_per_request: f64,
}

/// Total `Ir` of a callgrind dump (`summary:` line — what callgrind_annotate
/// reports as PROGRAM TOTALS — else `totals:`).
pub fn parse_total_ir(dump: &str) -> Option<u64> {
    let find = |prefix: &str| {
        dump.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    find("summary:").or_else(|| find("totals:"))
}

fn callgrind_control(flag: &str, pid: u32) -> anyhow::Result<()> {
    let out = Command::new("callgrind_control")
        .arg(flag)
        .arg(pid.to_string())
        .output()
        .context("running callgrind_control (is valgrind installed?)")?;
    if !out.status.success() {
        anyhow::bail!(
            "callgrind_control {flag} {pid} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn dumps(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Dumps and waits for the new dump files (one per thread, `--separate-threads=yes`) to be
/// complete; returns the total Ir of all threads and of the serving thread (`-01`).
fn dump_and_read(pid: u32, dir: &Path, prefix: &str) -> anyhow::Result<(u64, u64)> {
    let before = dumps(dir, prefix);
    callgrind_control("-d", pid)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen: Option<(usize, Instant)> = None;
    loop {
        signals::check()?;
        let fresh: Vec<PathBuf> = dumps(dir, prefix)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        let read: Vec<(PathBuf, u64)> = fresh
            .iter()
            .filter_map(|p| Some((p.clone(), parse_total_ir(&fs::read_to_string(p).ok()?)?)))
            .collect();
        // Every thread's file is written by the one dump; done once all of them parse and
        // no new one has appeared for a moment.
        if !read.is_empty() && read.len() == fresh.len() {
            match seen {
                Some((n, since))
                    if n == read.len() && since.elapsed() > Duration::from_millis(300) =>
                {
                    let total = read.iter().map(|(_, ir)| ir).sum();
                    let serving = read
                        .iter()
                        .find(|(p, _)| p.to_string_lossy().ends_with("-01"))
                        .map_or(total, |(_, ir)| *ir);
                    return Ok((total, serving));
                }
                Some((n, _)) if n == read.len() => {}
                _ => seen = Some((read.len(), Instant::now())),
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("no callgrind dump appeared in {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// W warm-up requests, zero, N measured requests, dump — all over one connection.
fn measure(
    subject: &Spawned,
    scenario: Scenario,
    args: &CallgrindArgs,
    dir: &Path,
    prefix: &str,
) -> anyhow::Result<(u64, u64)> {
    let mut target = Target::new(subject.addr, scenario)?;
    if subject.name == GOVERNED || subject.name == BUDGETED {
        target = target.with_headers(&governed_headers())?;
    }
    let rt = crate::util::current_thread_runtime()?;
    rt.block_on(async {
        let mut conn = Conn::connect(subject.addr).await?;
        send_n(&mut conn, &target, args.warmup).await?;
        callgrind_control("-z", subject.pid)?;
        send_n(&mut conn, &target, args.requests).await?;
        dump_and_read(subject.pid, dir, prefix)
    })
}

/// `n` sequential requests on `conn`; any failure aborts the measurement.
async fn send_n(conn: &mut Conn, target: &Target, n: usize) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(60);
    for i in 0..n {
        signals::check()?;
        let o = tokio::time::timeout(timeout, execute(conn, target))
            .await
            .map_err(|_| anyhow::anyhow!("request {i} timed out"))??;
        if !o.ok() {
            anyhow::bail!("request {i}: status {}, complete {}", o.status, o.complete);
        }
    }
    Ok(())
}

pub fn run(args: &CallgrindArgs) -> anyhow::Result<()> {
    signals::install();
    if args.requests == 0 {
        anyhow::bail!("--requests must be > 0");
    }
    let scenarios = parse_scenarios(&args.scenarios)?;
    let names: Vec<String> = args
        .subjects
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let mut tmp = tempfile::Builder::new()
        .prefix("ferrogate-callgrind-")
        .tempdir()?;
    if args.keep_logs {
        tmp.disable_cleanup(true);
    }
    let dir = tmp.path().to_path_buf();
    let exe = std::env::current_exe()?;

    let mock = spawn(&mock_spec(exe.clone(), args.chunks, None), &dir)?;
    let faulty = if scenarios.iter().any(|s| s.needs_faulty_upstreams()) {
        Some(FaultyMocks::spawn(
            &exe,
            args.chunks,
            None,
            &dir,
            &args.faults,
        )?)
    } else {
        None
    };
    let resilience = Resilience::for_scenarios(&scenarios, faulty.as_ref().map(|f| f.addrs()));
    let config = dir.join("ferrogate.yaml");
    let base = gateway_config_with(mock.addr, &resilience);
    fs::write(&config, &base)?;
    let governed = dir.join("ferrogate-governed.yaml");
    fs::write(&governed, governed_config(&base, &dir))?;
    let budgeted = dir.join("ferrogate-budgeted.yaml");
    fs::write(&budgeted, budgeted_config(&base, &dir))?;
    let priced = dir.join("ferrogate-priced.yaml");
    fs::write(&priced, priced_config(&base))?;
    let logged = dir.join("ferrogate-logged.yaml");
    fs::write(&logged, logged_config(&base, &dir))?;

    let mut results: Vec<CallgrindResult> = Vec::new();
    for name in &names {
        let prefix = format!("{name}.callgrind.out");
        let wrapper = vec![
            "valgrind".to_string(),
            "--tool=callgrind".into(),
            "--compress-strings=no".into(),
            "--compress-pos=no".into(),
            "--separate-threads=yes".into(),
            format!("--callgrind-out-file={}/{prefix}.%p", dir.display()),
        ];
        let mut spec = match name.as_str() {
            "bare" => SpawnSpec {
                name: name.clone(),
                program: exe.clone(),
                args: vec![
                    "bare-proxy".into(),
                    "--listen".into(),
                    "127.0.0.1:0".into(),
                    "--upstream".into(),
                    format!("http://{}", mock.addr),
                ],
                wrapper: Vec::new(),
                cpu: None,
                expected_addr: None,
                ready_timeout: Duration::from_secs(10),
                health_check: false,
                env: Vec::new(),
            },
            _ => gateway_spec(
                &args.ferrogate,
                args.gateway_cmd.as_deref(),
                name,
                match name.as_str() {
                    GOVERNED => &governed,
                    BUDGETED => &budgeted,
                    PRICED => &priced,
                    LOGGED => &logged,
                    _ => &config,
                },
                mock.addr,
                None,
                &args.gateway_env,
            )?,
        };
        spec.wrapper = wrapper;
        spec.ready_timeout = Duration::from_secs(180);
        println!("starting {name} under callgrind: {}", spec.command_line());
        let mut subject = spawn(&spec, &dir)?;
        for &sc in &scenarios {
            if name == "bare" && !sc.forwardable() {
                println!(
                    "{name:<10} {:<21} skipped (the bare proxy neither translates nor retries)",
                    sc.name()
                );
                continue;
            }
            let (ir, serving) = measure(&subject, sc, args, &dir, &prefix)
                .with_context(|| format!("{name} {}", sc.name()))?;
            let r = CallgrindResult {
                subject: name.clone(),
                scenario: sc,
                requests: args.requests,
                total_ir: ir,
                ir_per_request: ir as f64 / args.requests as f64,
                serving_ir_per_request: serving as f64 / args.requests as f64,
            };
            println!(
                "{:<10} {:<21} {:>12.0} instructions/request, {:.0} on the serving thread ({} requests, total Ir {})",
                r.subject,
                sc.name(),
                r.ir_per_request,
                r.serving_ir_per_request,
                r.requests,
                r.total_ir
            );
            results.push(r);
        }
        subject.stop(Duration::from_secs(10));
    }

    let md = render(&results, &names, &scenarios, args);
    println!("\n{md}");
    let out = args.out.clone().unwrap_or_else(crate::run::default_out_dir);
    fs::create_dir_all(&out)?;
    fs::write(out.join("callgrind.md"), &md)?;
    fs::write(
        out.join("callgrind.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    println!("wrote {}/callgrind.md, callgrind.json", out.display());
    if args.keep_logs {
        println!("callgrind dumps kept in {}", dir.display());
    }
    drop(faulty);
    drop(mock);
    Ok(())
}

fn render(
    results: &[CallgrindResult],
    names: &[String],
    scenarios: &[Scenario],
    args: &CallgrindArgs,
) -> String {
    use std::fmt::Write as _;
    let get = |n: &str, sc: Scenario| {
        results
            .iter()
            .find(|r| r.subject == n && r.scenario == sc)
            .map(|r| r.ir_per_request)
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Instructions per request (callgrind)\n\n{} — {} measured requests per scenario after {} warm-up, one keep-alive connection, stream = {} chunks; mock upstream and client run natively.\n",
        crate::sysinfo::utc_now(),
        args.requests,
        args.warmup,
        args.chunks
    );
    let _ = write!(md, "| subject |");
    for sc in scenarios {
        let _ = write!(md, " {} Ir/req |", sc.name());
    }
    let _ = write!(md, "\n|---|");
    for _ in scenarios {
        let _ = write!(md, "---:|");
    }
    md.push('\n');
    for n in names {
        let _ = write!(md, "| {n} |");
        for &sc in scenarios {
            let _ = write!(
                md,
                " {} |",
                get(n, sc)
                    .map(|v| format!("{v:.0}"))
                    .unwrap_or_else(|| "–".into())
            );
        }
        md.push('\n');
    }
    if let Some(gw) = names.iter().find(|n| *n != "bare") {
        if names.iter().any(|n| n == "bare") {
            let _ = write!(md, "| **{gw} ÷ bare** |");
            for &sc in scenarios {
                let r = get(gw, sc).zip(get("bare", sc)).map(|(g, b)| g / b);
                let _ = write!(
                    md,
                    " {} |",
                    r.map(|v| format!("{v:.2}×")).unwrap_or_else(|| "–".into())
                );
            }
            md.push('\n');
        }
    }
    // Governance's own cost: the same route, with the same prices, governance on and off.
    for governed in [GOVERNED, BUDGETED] {
        if !(names.iter().any(|n| n == governed) && names.iter().any(|n| n == PRICED)) {
            continue;
        }
        let _ = write!(md, "| **{governed} ÷ {PRICED}** |");
        for &sc in scenarios {
            let r = get(governed, sc).zip(get(PRICED, sc)).map(|(g, b)| g / b);
            let _ = write!(
                md,
                " {} |",
                r.map(|v| format!("{v:.3}×")).unwrap_or_else(|| "–".into())
            );
        }
        md.push('\n');
    }
    // The request log in SQLite against the same gateway keeping it in memory: the whole
    // process (the writer's inserts included) and the serving thread alone.
    if names.iter().any(|n| n == LOGGED) && names.iter().any(|n| n == "ferrogate") {
        let serving = |n: &str, sc: Scenario| {
            results
                .iter()
                .find(|r| r.subject == n && r.scenario == sc)
                .map(|r| r.serving_ir_per_request)
        };
        for (label, f) in [
            (
                "whole process",
                &get as &dyn Fn(&str, Scenario) -> Option<f64>,
            ),
            ("serving thread", &serving),
        ] {
            let _ = write!(md, "| **{LOGGED} ÷ ferrogate, {label}** |");
            for &sc in scenarios {
                let r = f(LOGGED, sc).zip(f("ferrogate", sc)).map(|(g, b)| g / b);
                let _ = write!(
                    md,
                    " {} |",
                    r.map(|v| format!("{v:.3}×")).unwrap_or_else(|| "–".into())
                );
            }
            md.push('\n');
        }
    }
    // Translated scenarios against the gateway's own pass-through of each dialect.
    let rows: Vec<(Scenario, Scenario, f64, f64)> = names
        .iter()
        .filter(|n| *n != "bare")
        .flat_map(|n| {
            scenarios.iter().flat_map(move |&t| {
                t.passthrough_baselines()
                    .iter()
                    .filter_map(move |&b| Some((t, b, get(n, t)?, get(n, b)?)))
            })
        })
        .collect();
    if !rows.is_empty() {
        let _ = writeln!(
            md,
            "\n| translated | Ir/req | pass-through | Ir/req | translated ÷ pass-through |\n|---|---:|---|---:|---:|"
        );
        for (t, b, x, y) in rows {
            let _ = writeln!(
                md,
                "| {} | {x:.0} | {} | {y:.0} | {:.2}× |",
                t.name(),
                b.name(),
                x / y
            );
        }
    }
    // The resilience loop's own cost: a healthy resilient route against the plain route, and
    // misbehaving targets against the same route healthy.
    let rows: Vec<(Scenario, Scenario, f64, f64)> = names
        .iter()
        .filter(|n| *n != "bare")
        .flat_map(|n| {
            scenarios.iter().filter_map(move |&r| {
                let b = resilience_baseline(r)?;
                Some((r, b, get(n, r)?, get(n, b)?))
            })
        })
        .collect();
    if !rows.is_empty() {
        let _ = writeln!(
            md,
            "\n| resilient route | Ir/req | compared with | Ir/req | ratio |\n|---|---:|---|---:|---:|"
        );
        for (r, b, x, y) in rows {
            let _ = writeln!(
                md,
                "| {} | {x:.0} | {} | {y:.0} | {:.2}× |",
                r.name(),
                b.name(),
                x / y
            );
        }
    }
    md
}

/// What a resilience scenario's instruction count is compared with: the healthy resilient
/// route with the plain (single-attempt) route, the misbehaving one with the healthy one.
fn resilience_baseline(sc: Scenario) -> Option<Scenario> {
    match sc {
        Scenario::ResilienceHealthyNonStream => Some(Scenario::NonStream),
        Scenario::ResilienceHealthyStream => Some(Scenario::Stream),
        other => other.healthy_reference(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_translation_ratios() {
        let r = |subject: &str, scenario, ir: f64| CallgrindResult {
            subject: subject.into(),
            scenario,
            requests: 10,
            total_ir: (ir * 10.0) as u64,
            ir_per_request: ir,
            serving_ir_per_request: ir,
        };
        let results = vec![
            r("bare", Scenario::Stream, 100_000.0),
            r("ferrogate", Scenario::Stream, 200_000.0),
            r("ferrogate", Scenario::AnthropicStream, 250_000.0),
            r("ferrogate", Scenario::TranslatedStream, 500_000.0),
        ];
        let names = vec!["bare".to_string(), "ferrogate".to_string()];
        let scenarios = [
            Scenario::Stream,
            Scenario::AnthropicStream,
            Scenario::TranslatedStream,
        ];
        let args = CallgrindArgs {
            subjects: "bare,ferrogate".into(),
            ferrogate: PathBuf::new(),
            gateway_cmd: None,
            gateway_env: Vec::new(),
            requests: 10,
            warmup: 1,
            scenarios: String::new(),
            faults: FaultArgs::default(),
            chunks: 20,
            out: None,
            keep_logs: false,
        };
        let md = render(&results, &names, &scenarios, &args);
        assert!(md.contains("| bare | 100000 | – | – |"), "{md}");
        assert!(
            md.contains("| ferrogate | 200000 | 250000 | 500000 |"),
            "{md}"
        );
        assert!(
            md.contains("| translated-stream | 500000 | stream | 200000 | 2.50× |"),
            "{md}"
        );
        assert!(
            md.contains("| translated-stream | 500000 | anthropic-stream | 250000 | 2.00× |"),
            "{md}"
        );
    }

    #[test]
    fn renders_resilience_ratios() {
        let r = |scenario, ir: f64| CallgrindResult {
            subject: "ferrogate".into(),
            scenario,
            requests: 10,
            total_ir: (ir * 10.0) as u64,
            ir_per_request: ir,
            serving_ir_per_request: ir,
        };
        let results = vec![
            r(Scenario::NonStream, 50_000.0),
            r(Scenario::ResilienceHealthyNonStream, 55_000.0),
            r(Scenario::ResilienceNonStream, 66_000.0),
            r(Scenario::ResilienceHealthyStream, 190_000.0),
        ];
        let names = vec!["ferrogate".to_string()];
        let scenarios = [
            Scenario::NonStream,
            Scenario::ResilienceHealthyNonStream,
            Scenario::ResilienceNonStream,
            Scenario::ResilienceHealthyStream,
        ];
        let args = CallgrindArgs {
            subjects: "ferrogate".into(),
            ferrogate: PathBuf::new(),
            gateway_cmd: None,
            gateway_env: Vec::new(),
            requests: 10,
            warmup: 1,
            scenarios: String::new(),
            faults: FaultArgs::default(),
            chunks: 20,
            out: None,
            keep_logs: false,
        };
        let md = render(&results, &names, &scenarios, &args);
        assert!(
            md.contains("| resilience-healthy-non-stream | 55000 | non-stream | 50000 | 1.10× |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| resilience-non-stream | 66000 | resilience-healthy-non-stream | 55000 | 1.20× |"
            ),
            "{md}"
        );
        // No plain stream measured: no row for the healthy resilient stream.
        assert!(
            !md.contains("| resilience-healthy-stream | 190000 |"),
            "{md}"
        );
        assert_eq!(
            resilience_baseline(Scenario::ResilienceStream),
            Some(Scenario::ResilienceHealthyStream)
        );
        assert_eq!(resilience_baseline(Scenario::TranslatedStream), None);
    }

    #[test]
    fn parses_totals() {
        assert_eq!(
            super::parse_total_ir("events: Ir\nsummary: 1234\n"),
            Some(1234)
        );
        assert_eq!(
            super::parse_total_ir("events: Ir\nfn=x\n0 1\ntotals: 99\n"),
            Some(99)
        );
        assert_eq!(super::parse_total_ir("nothing"), None);
    }
}
