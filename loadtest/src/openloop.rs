//! Open-loop, constant-rate generator (coordinated-omission safe).
//!
//! Request *i* is scheduled at `t0 + i/rate` by a timerfd. Its latency is
//! measured from that scheduled time, not from when it was actually written:
//! if no connection is free at the scheduled time the request waits in a
//! backlog, is counted as a *late send*, and the wait is part of its latency.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use crate::client::{execute, Conn, Target};
use crate::loadgen::{connect_all, delta, probe, record, LoadConfig, LoadResult};
use crate::signals;
use crate::stats::Recorder;
use crate::timerfd::TimerFd;
use crate::util::now_ns;

#[derive(Clone, Copy)]
struct Job {
    sched: u64,
    measured: bool,
}

#[derive(Default)]
struct State {
    idle: VecDeque<Conn>,
    backlog: VecDeque<Job>,
    busy: usize,
    rec: Recorder,
    lost: usize,
    last_done: u64,
}

struct Ctx {
    target: Target,
    timeout: Duration,
}

type Shared = Rc<RefCell<State>>;

/// Runs one open-loop measurement at `rate` requests/s on a fresh current-thread runtime.
pub fn run(cfg: &LoadConfig, rate: f64) -> anyhow::Result<LoadResult> {
    let rt = crate::util::current_thread_runtime()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run_async(cfg, rate))
}

async fn run_async(cfg: &LoadConfig, rate: f64) -> anyhow::Result<LoadResult> {
    let conns = connect_all(&cfg.target, cfg.connections).await?;
    let st: Shared = Rc::new(RefCell::new(State {
        idle: conns.into(),
        ..State::default()
    }));
    let ctx = Rc::new(Ctx {
        target: cfg.target.clone(),
        timeout: cfg.timeout,
    });

    let period = ((1e9 / rate).round() as u64).max(1);
    let warm_n = cfg.warmup.as_nanos() as u64 / period;
    let total = warm_n + (cfg.duration.as_nanos() as u64 / period).max(1);

    let timer = TimerFd::new()?;
    let t0 = now_ns() + 2_000_000;
    timer.set_periodic(t0, period)?;

    let mut cpu_before = None;
    let mut measure_start = t0;
    let mut i = 0u64;
    while i < total {
        timer.wait().await?;
        signals::check()?;
        let now = now_ns();
        while i < total {
            let sched = t0 + i * period;
            if sched > now {
                break;
            }
            if i == warm_n {
                measure_start = sched;
                cpu_before = probe(&cfg.probe_pids)?;
            }
            dispatch(
                &st,
                &ctx,
                Job {
                    sched,
                    measured: i >= warm_n,
                },
            );
            i += 1;
        }
    }

    drain(&st, cfg.drain, total - warm_n).await?;
    let cpu_after = probe(&cfg.probe_pids)?;

    let s = st.borrow();
    let window_s = s.last_done.saturating_sub(measure_start) as f64 / 1e9;
    Ok(LoadResult {
        rec: s.rec.clone(),
        cpu: delta(cpu_before, cpu_after),
        window_s,
        achieved_rps: if window_s > 0.0 {
            s.rec.ok as f64 / window_s
        } else {
            0.0
        },
        connections_lost: s.lost,
    })
}

/// Sends `job` now on an idle connection, or queues it (a late send) when all are busy.
fn dispatch(st: &Shared, ctx: &Rc<Ctx>, job: Job) {
    let mut s = st.borrow_mut();
    match s.idle.pop_front() {
        Some(conn) => {
            if job.measured {
                let lag = now_ns().saturating_sub(job.sched).max(1);
                s.rec.sched_lag.saturating_record(lag);
            }
            s.busy += 1;
            drop(s);
            tokio::task::spawn_local(worker(conn, job, st.clone(), ctx.clone()));
        }
        None => {
            if job.measured {
                s.rec.late_sends += 1;
            }
            s.backlog.push_back(job);
        }
    }
}

/// Runs `job` on `conn`, then keeps serving the backlog; parks the connection when none is left.
async fn worker(mut conn: Conn, mut job: Job, st: Shared, ctx: Rc<Ctx>) {
    loop {
        let mut broken = conn.is_closed();
        if !broken {
            let res = tokio::time::timeout(ctx.timeout, execute(&mut conn, &ctx.target)).await;
            let mut s = st.borrow_mut();
            if job.measured {
                let (b, done) = record(&mut s.rec, job.sched, res);
                broken = b;
                if let Some(d) = done {
                    s.last_done = s.last_done.max(d);
                }
            } else {
                broken = record(&mut Recorder::default(), job.sched, res).0;
            }
        } else if job.measured {
            st.borrow_mut().rec.errors += 1;
        }
        if broken {
            match Conn::connect(ctx.target.addr).await {
                Ok(c) => conn = c,
                Err(_) => {
                    let mut s = st.borrow_mut();
                    s.lost += 1;
                    s.busy -= 1;
                    return;
                }
            }
        }
        let mut s = st.borrow_mut();
        match s.backlog.pop_front() {
            Some(next) => job = next,
            None => {
                s.idle.push_back(conn);
                s.busy -= 1;
                return;
            }
        }
    }
}

/// Waits for in-flight and queued requests; whatever is left of the
/// `measured` requests after `limit` counts as errors.
async fn drain(st: &Shared, limit: Duration, measured: u64) -> anyhow::Result<()> {
    let deadline = now_ns() + limit.as_nanos() as u64;
    loop {
        {
            let mut s = st.borrow_mut();
            if s.busy == 0 && s.backlog.is_empty() {
                return Ok(());
            }
            if now_ns() > deadline {
                // Every measured request is recorded exactly once when it
                // finishes; the rest never did (in-flight warm-up requests
                // are not counted).
                let unfinished = measured.saturating_sub(s.rec.total());
                s.rec.errors += unfinished;
                s.backlog.clear();
                return Ok(());
            }
        }
        signals::check()?;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
