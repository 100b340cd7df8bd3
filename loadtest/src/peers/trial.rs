//! One trial: one contestant × scenario × load (open-loop rate or max
//! throughput), then the wait for the contestant to go idle again; plus the
//! idle-CPU probe and the failure bookkeeping the orchestrator shares.

use std::time::Duration;

use super::args::PeersArgs;
use super::contestant::Running;
use crate::client::Target;
use crate::loadgen::{LoadConfig, LoadResult};
use crate::measure::Recorded;
use crate::report::{Measurement, Mode};
use crate::workload::Scenario;
use crate::{closedloop, openloop, proctree, signals};

pub fn target(r: &Running, sc: Scenario) -> anyhow::Result<Target> {
    Target::new(r.addr, sc)?.with_headers(&r.headers)
}

fn progress(label: &str, name: &str, m: &Measurement) {
    let p = m.latency_us.unwrap_or_default();
    let cpu = super::model::cpu_per_req(m)
        .map(|c| format!("  cpu {c:.1}µs/req"))
        .unwrap_or_default();
    println!(
        "{label:<24} {name:<10} p50 {:>10.1}µs  p99 {:>10.1}µs  ok {}/{}  late {}  {:.0} req/s{cpu}",
        p.p50,
        p.p99,
        m.ok,
        m.requests,
        m.late_sends,
        m.achieved_rps
    );
}

/// Marks a contestant as failed from now on, keeping the first error.
pub fn fail(r: &mut Running, why: String) {
    eprintln!("{}: {why}", r.kind.name());
    r.info.error.get_or_insert(why);
    r.stop();
}

/// One measurement; `None` when the contestant failed (recorded on it).
pub fn measure(
    r: &mut Running,
    sc: Scenario,
    rate: Option<f64>,
    args: &PeersArgs,
) -> anyhow::Result<Option<Measurement>> {
    if !r.is_running() {
        let tail = r
            .process
            .as_ref()
            .map(|p| p.stderr_tail(1500))
            .unwrap_or_default();
        fail(r, format!("exited during the run; stderr tail:\n{tail}"));
        return Ok(None);
    }
    let connections = if rate.is_some() {
        args.connections
    } else {
        args.max_connections
    };
    let cfg = LoadConfig {
        target: target(r, sc)?,
        warmup: args.warmup,
        duration: match rate {
            Some(_) => args.duration,
            None => args.max_duration.unwrap_or(args.duration),
        },
        connections,
        timeout: args.timeout,
        drain: args.drain,
        probe_pids: r.tree(),
    };
    let res: anyhow::Result<LoadResult> = match rate {
        Some(rate) => openloop::run(&cfg, rate),
        None => closedloop::run(&cfg),
    };
    signals::check()?;
    let res = match res {
        Ok(res) => res,
        Err(e) => {
            fail(r, format!("measurement failed: {e:#}"));
            return Ok(None);
        }
    };
    let m = Recorded {
        subject: r.kind.name(),
        scenario: sc,
        mode: if rate.is_some() {
            Mode::Open
        } else {
            Mode::Max
        },
        target_rps: rate,
        connections,
        rounds: 1,
        rec: &res.rec,
        window_s: res.window_s,
        cpu_stat_us: res.cpu.map(|c| c.stat_us),
        cpu_sched_us: res.cpu.and_then(|c| c.sched_us),
        connections_lost: res.connections_lost,
    }
    .measurement();
    let label = match rate {
        Some(rate) => format!("{} @{rate:.0}/s", sc.name()),
        None => format!("{} max×{connections}", sc.name()),
    };
    progress(&label, r.kind.name(), &m);
    // A gateway that was overloaded may still be working off abandoned
    // requests; let it finish before anyone else is measured on its CPU.
    let tree = r.tree();
    if !tree.is_empty() {
        let waited = proctree::wait_quiet(&tree, Duration::from_millis(200), 0.05, args.settle)?;
        if waited > Duration::from_secs(1) {
            println!(
                "{:<24} {:<10} settled after {:.1} s",
                "",
                r.kind.name(),
                waited.as_secs_f64()
            );
        }
    }
    Ok(Some(m))
}

/// CPU share of one core each contestant uses while nothing is sent, over 1 s.
pub fn idle_cpu(running: &mut [Running]) -> anyhow::Result<()> {
    let trees: Vec<Vec<u32>> = running.iter().map(Running::tree).collect();
    let before: Vec<_> = trees
        .iter()
        .map(|t| {
            (!t.is_empty())
                .then(|| proctree::cpu_sample(t).ok())
                .flatten()
        })
        .collect();
    let window = Duration::from_secs(1);
    std::thread::sleep(window);
    signals::check()?;
    for ((r, t), b) in running.iter_mut().zip(&trees).zip(before) {
        let (Some(b), false) = (b, t.is_empty()) else {
            continue;
        };
        if let Ok(a) = proctree::cpu_sample(t) {
            let d = crate::procstat::cpu_delta(&b, &a);
            r.info.idle_cpu_share =
                Some(d.sched_us.unwrap_or(d.stat_us) / 1e6 / window.as_secs_f64());
        }
    }
    Ok(())
}
