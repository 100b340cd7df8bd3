//! Closed-loop max-throughput mode: N connections, each sending its next
//! request as soon as the previous one completes, for a fixed duration.

use std::cell::RefCell;
use std::rc::Rc;

use crate::client::{execute, Conn};
use crate::loadgen::{connect_all, delta, probe, record, LoadConfig, LoadResult};
use crate::procstat::CpuSample;
use crate::signals;
use crate::stats::Recorder;
use crate::util::now_ns;

#[derive(Default)]
struct State {
    rec: Recorder,
    lost: usize,
    cpu_before: Option<CpuSample>,
    probe_error: Option<String>,
    /// Completion time of the last recorded response.
    last_done: u64,
}

/// Runs one closed-loop measurement on a fresh current-thread runtime.
pub fn run(cfg: &LoadConfig) -> anyhow::Result<LoadResult> {
    let rt = crate::util::current_thread_runtime()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run_async(cfg))
}

async fn run_async(cfg: &LoadConfig) -> anyhow::Result<LoadResult> {
    let conns = connect_all(&cfg.target, cfg.connections).await?;
    let st = Rc::new(RefCell::new(State::default()));
    let start = now_ns();
    let warm_end = start + cfg.warmup.as_nanos() as u64;
    let end = warm_end + cfg.duration.as_nanos() as u64;

    let sampler = {
        let st = st.clone();
        let pids = cfg.probe_pids.clone();
        let warmup = cfg.warmup;
        tokio::task::spawn_local(async move {
            tokio::time::sleep(warmup).await;
            let mut s = st.borrow_mut();
            match probe(&pids) {
                Ok(sample) => s.cpu_before = sample,
                Err(e) => s.probe_error = Some(e.to_string()),
            }
        })
    };

    let mut handles = Vec::with_capacity(conns.len());
    for mut conn in conns {
        let st = st.clone();
        let target = cfg.target.clone();
        let timeout = cfg.timeout;
        handles.push(tokio::task::spawn_local(async move {
            loop {
                let sent = now_ns();
                if sent >= end || signals::interrupted() {
                    return;
                }
                let res = tokio::time::timeout(timeout, execute(&mut conn, &target)).await;
                let broken = if sent >= warm_end {
                    let mut s = st.borrow_mut();
                    let (broken, done) = record(&mut s.rec, sent, res);
                    s.last_done = s.last_done.max(done.unwrap_or(0));
                    broken
                } else {
                    record(&mut Recorder::default(), sent, res).0
                };
                if broken || conn.is_closed() {
                    match Conn::connect(target.addr).await {
                        Ok(c) => conn = c,
                        Err(_) => {
                            st.borrow_mut().lost += 1;
                            return;
                        }
                    }
                }
            }
        }));
    }
    for h in handles {
        h.await?;
    }
    sampler.await?;
    signals::check()?;
    let cpu_after = probe(&cfg.probe_pids)?;

    let s = st.borrow();
    if let Some(e) = &s.probe_error {
        anyhow::bail!("sampling CPU at warm-up end: {e}");
    }
    // Requests sent before `end` are recorded even when they finish after it
    // (slow subjects take long), so the window runs to the last completion.
    let window_s = ((s.last_done.max(end) - warm_end) as f64 / 1e9).max(f64::MIN_POSITIVE);
    Ok(LoadResult {
        rec: s.rec.clone(),
        cpu: delta(s.cpu_before, cpu_after),
        window_s,
        achieved_rps: s.rec.ok as f64 / window_s,
        connections_lost: s.lost,
    })
}
