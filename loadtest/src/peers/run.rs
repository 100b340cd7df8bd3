//! The `peers` subcommand: install what is missing, start the mock and every
//! contestant, warm them up, measure them interleaved (scenario × rate, then
//! max throughput), stop them, and write peers.{md,json} and the charts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::args::PeersArgs;
use super::contestant::{self, Kind, Running, Setup};
use super::install::{ensure_litellm, ensure_portkey, PeersDir};
use super::model::{ContestantInfo, PeersReport, PeersSettings, RateOutcome};
use super::sustain::{RateFigures, RateStatus, SustainRule};
use super::trial::{fail, idle_cpu, measure, target};
use crate::loadgen::smoke;
use crate::measure::fill_added;
use crate::procs::{mock_spec, pinning, spawn, Spawned};
use crate::report::Measurement;
use crate::run::{default_out_dir, parse_scenarios, resolve_binary};
use crate::sysinfo::Machine;
use crate::util::parse_rates;
use crate::workload::Scenario;
use crate::{proctree, signals};

pub fn default_peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".peers")
}

/// Installs the peers that need it; returns the kinds that can be started
/// and an entry with the error for each one that cannot.
fn install(args: &PeersArgs, kinds: &[Kind], dir: &PeersDir) -> (Vec<Kind>, Vec<ContestantInfo>) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for &k in kinds {
        let res = match (k, args.no_install) {
            (Kind::Litellm, false) => {
                ensure_litellm(dir, &args.python, args.install_timeout).map(drop)
            }
            (Kind::Portkey, false) => ensure_portkey(dir, args.install_timeout).map(drop),
            (Kind::Litellm, true) if !dir.litellm_bin().exists() => {
                Err(anyhow::anyhow!("not installed (--no-install)"))
            }
            (Kind::Portkey, true) if !dir.portkey_entry().exists() => {
                Err(anyhow::anyhow!("not installed (--no-install)"))
            }
            _ => Ok(()),
        };
        match res {
            Ok(()) => ok.push(k),
            Err(e) => {
                eprintln!("{}: {e:#}", k.name());
                failed.push(ContestantInfo {
                    name: k.name().into(),
                    error: Some(format!("install failed: {e:#}")),
                    ..ContestantInfo::default()
                });
            }
        }
    }
    (ok, failed)
}

pub fn run(args: &PeersArgs) -> anyhow::Result<()> {
    signals::install();
    let wall = Instant::now();
    let loadavg_start = loadavg();
    let kinds = Kind::parse_list(&args.contestants)?;
    let mut rates = parse_rates(&args.rates).map_err(anyhow::Error::msg)?;
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let scenarios = parse_scenarios(&args.scenarios)?;
    // The peers are configured for the OpenAI route only (mock-gpt → the mock's OpenAI API).
    if let Some(sc) = scenarios
        .iter()
        .find(|sc| **sc != Scenario::NonStream && **sc != Scenario::Stream)
    {
        anyhow::bail!(
            "`peers` measures the OpenAI scenarios only (non-stream, stream), not `{}`",
            sc.name()
        );
    }
    let machine = Machine::detect();
    let (pin, subject_cpu, mock_cpu) = pinning(args.pin, &machine)?;
    if kinds.contains(&Kind::Ferrogate) && resolve_binary(&args.ferrogate).is_none() {
        anyhow::bail!(
            "{} not found: build it first (cargo build --release --bin ferrogate) or pass --ferrogate",
            args.ferrogate.display()
        );
    }
    let dir = PeersDir(args.peers_dir.clone().unwrap_or_else(default_peers_dir));
    let (startable, mut failed) = install(args, &kinds, &dir);

    let mut tmp = tempfile::Builder::new()
        .prefix("ferrogate-peers-")
        .tempdir()?;
    if args.keep_logs {
        tmp.disable_cleanup(true);
        println!("configs and logs in {}", tmp.path().display());
    }
    let logdir = tmp.path().to_path_buf();
    let exe = std::env::current_exe()?;
    let mut mock: Spawned = spawn(&mock_spec(exe.clone(), args.chunks, mock_cpu), &logdir)?;
    println!("started mock      pid {:<7} http://{}", mock.pid, mock.addr);

    let setup = Setup {
        peers: &dir,
        logdir: &logdir,
        mock: mock.addr,
        loadtest: &exe,
        cpu: subject_cpu,
        ferrogate: &args.ferrogate,
        gateway_env: &args.gateway_env,
        ready_timeout: args.ready_timeout,
        litellm_workers: args.litellm_workers,
        python: &args.python,
    };
    let mut running: Vec<Running> = Vec::new();
    for &k in &startable {
        match contestant::start(k, &setup) {
            Ok(r) => {
                println!(
                    "started {:<9} pid {:<7} http://{}  ready after {:.1} s",
                    k.name(),
                    r.pid().map_or("-".into(), |p| p.to_string()),
                    r.addr,
                    r.info.ready_after_s.unwrap_or(0.0)
                );
                running.push(r);
            }
            Err(e) => {
                signals::check()?;
                eprintln!("{}: could not start: {e:#}", k.name());
                failed.push(ContestantInfo {
                    name: k.name().into(),
                    error: Some(format!("did not start: {e:#}")),
                    ..ContestantInfo::default()
                });
            }
        }
    }

    // Idle memory, before any traffic.
    std::thread::sleep(Duration::from_millis(500));
    for r in running.iter_mut() {
        let t = r.tree();
        if !t.is_empty() {
            r.info.idle_rss_kb = Some(proctree::mem(&t).rss_kb);
        }
    }
    // Warm-up: LiteLLM's first request initialises lazily (~1 s).
    for r in running.iter_mut() {
        for &sc in &scenarios {
            let res = target(r, sc).and_then(|t| smoke(&t, 5, args.timeout));
            if let Err(e) = res {
                signals::check()?;
                fail(r, format!("warm-up ({}) failed: {e:#}", sc.name()));
                break;
            }
        }
    }
    idle_cpu(&mut running)?;

    let rule = SustainRule::default();
    let mut measurements: Vec<Measurement> = Vec::new();
    let mut outcomes: Vec<RateOutcome> = Vec::new();
    for &sc in &scenarios {
        // Contestants still offered higher rates in this scenario.
        let mut active: Vec<bool> = running.iter().map(|r| r.info.error.is_none()).collect();
        for (ri, &rate) in rates.iter().enumerate() {
            for (i, r) in running.iter_mut().enumerate() {
                if !active[i] {
                    continue;
                }
                let Some(m) = measure(r, sc, Some(rate), args)? else {
                    active[i] = false;
                    continue;
                };
                let reasons = rule.judge(&RateFigures::of(&m, rate));
                let sustained = reasons.is_empty();
                outcomes.push(RateOutcome {
                    contestant: r.kind.name().into(),
                    scenario: sc,
                    rate,
                    status: if sustained {
                        RateStatus::Sustained
                    } else {
                        RateStatus::NotSustained
                    },
                    reasons,
                });
                measurements.push(m);
                // `direct` is the reference for "added": it is offered every rate.
                if !sustained && r.kind != Kind::Direct {
                    active[i] = false;
                    for &skipped in &rates[ri + 1..] {
                        outcomes.push(RateOutcome {
                            contestant: r.kind.name().into(),
                            scenario: sc,
                            rate: skipped,
                            status: RateStatus::Skipped,
                            reasons: vec![format!("not sustained at {rate:.0}/s")],
                        });
                    }
                }
            }
        }
    }
    if !args.no_max {
        for &sc in &scenarios {
            for r in running.iter_mut().filter(|r| r.info.error.is_none()) {
                if let Some(m) = measure(r, sc, None, args)? {
                    measurements.push(m);
                }
            }
        }
    }

    // Memory over the whole run, then stop everyone.
    for r in running.iter_mut() {
        if let Some(w) = r.rss.as_ref() {
            r.info.peak_rss_kb = Some(w.peak_kb());
            r.info.processes = Some(w.max_processes());
            r.info.end_rss_kb = Some(proctree::mem(&r.tree()).rss_kb);
        }
    }
    for r in running.iter_mut().rev() {
        r.stop();
    }
    mock.stop(Duration::from_secs(3));

    fill_added(&mut measurements, Kind::Direct.name());
    let contestants: Vec<ContestantInfo> = kinds
        .iter()
        .filter_map(|k| {
            running
                .iter()
                .map(|r| &r.info)
                .chain(failed.iter())
                .find(|c| c.name == k.name())
                .cloned()
        })
        .collect();
    let mut report = PeersReport {
        machine,
        mem_total_kb: mem_total_kb(),
        command: command_line(),
        settings: PeersSettings {
            scenarios,
            rates,
            duration_s: args.duration.as_secs_f64(),
            warmup_s: args.warmup.as_secs_f64(),
            max_duration_s: args.max_duration.unwrap_or(args.duration).as_secs_f64(),
            drain_s: args.drain.as_secs_f64(),
            timeout_s: args.timeout.as_secs_f64(),
            connections: args.connections,
            max_connections: args.max_connections,
            chunks: args.chunks,
            pinned: pin,
            rule,
        },
        contestants,
        measurements,
        rates: outcomes,
        goals: Vec::new(),
        bare_goals: Vec::new(),
        notes: Vec::new(),
        wall_time_s: 0.0,
        loadavg_start,
        loadavg_end: loadavg(),
    };
    report.notes = super::notes::notes(&report);
    report.goals = super::goals::evaluate(&report);
    report.bare_goals = super::bare::evaluate(&report);
    report.wall_time_s = wall.elapsed().as_secs_f64();
    let out = args.out.clone().unwrap_or_else(default_out_dir);
    super::output::write_all(&out, &report)?;
    if args.update_docs {
        let targets = super::readme::Targets::defaults(out);
        super::readme::update(&targets, &report)?;
        println!(
            "updated {} and {}",
            targets.readme.display(),
            targets.performance_doc.display()
        );
    }
    Ok(())
}

/// The three load averages from /proc/loadavg.
fn loadavg() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

fn mem_total_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    crate::procstat::parse_status_kb(&s, "MemTotal")
}

/// `loadtest peers …` as it was invoked (program name shortened).
fn command_line() -> String {
    let mut parts: Vec<String> = std::env::args().collect();
    if let Some(first) = parts.first_mut() {
        *first = "loadtest".into();
    }
    parts.join(" ")
}
