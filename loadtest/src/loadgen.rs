//! What the open- and closed-loop generators share: configuration, result,
//! connection setup, outcome recording, CPU probing of the subject.

use std::time::Duration;

use crate::client::{Conn, Outcome, Target};
use crate::procstat::{cpu_delta, CpuDelta, CpuSample};
use crate::stats::Recorder;

/// One measured run against one subject.
#[derive(Clone)]
pub struct LoadConfig {
    pub target: Target,
    pub warmup: Duration,
    pub duration: Duration,
    pub connections: usize,
    /// Per-request timeout; a timed-out request counts as an error and its connection is replaced.
    pub timeout: Duration,
    /// After the last scheduled send, how long in-flight and queued requests
    /// may take to finish; whatever is left then counts as errors.
    pub drain: Duration,
    /// Processes whose CPU time is summed at the start and end of the measured
    /// window: the subject and its descendants (see `proctree::list`), listed
    /// before the run. Empty: no CPU figure.
    pub probe_pids: Vec<u32>,
}

pub struct LoadResult {
    pub rec: Recorder,
    pub cpu: Option<CpuDelta>,
    /// Measured window: first measured send → last measured completion (s).
    pub window_s: f64,
    /// Successful responses per second over the window.
    pub achieved_rps: f64,
    /// Connections that broke and could not be re-established.
    pub connections_lost: usize,
}

pub async fn connect_all(target: &Target, n: usize) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        conns.push(
            Conn::connect(target.addr)
                .await
                .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", target.addr))?,
        );
    }
    Ok(conns)
}

pub fn probe(pids: &[u32]) -> anyhow::Result<Option<CpuSample>> {
    if pids.is_empty() {
        return Ok(None);
    }
    crate::proctree::cpu_sample(pids).map(Some)
}

pub fn delta(before: Option<CpuSample>, after: Option<CpuSample>) -> Option<CpuDelta> {
    Some(cpu_delta(&before?, &after?))
}

/// Records one request that was due at `sched_ns`. Returns true when the
/// connection must be replaced (transport error or timeout).
pub fn record(
    rec: &mut Recorder,
    sched_ns: u64,
    res: Result<anyhow::Result<Outcome>, tokio::time::error::Elapsed>,
) -> (bool, Option<u64>) {
    match res {
        Ok(Ok(o)) => {
            rec.body_bytes += o.bytes;
            if o.ok() {
                rec.ok += 1;
                let latency = o.done_ns.saturating_sub(sched_ns).max(1);
                rec.latency.saturating_record(latency);
                if o.attempts.is_some_and(|a| a > 1) {
                    rec.record_retried(latency);
                }
                rec.ttfb
                    .saturating_record(o.first_byte_ns.saturating_sub(sched_ns).max(1));
                if let Some(us) = o.overhead_us {
                    rec.overhead_header_us.saturating_record(us.max(1));
                }
                (false, Some(o.done_ns))
            } else if o.status != 200 {
                rec.non_200 += 1;
                (false, None)
            } else {
                rec.errors += 1;
                (false, None)
            }
        }
        Ok(Err(_)) | Err(_) => {
            rec.errors += 1;
            (true, None)
        }
    }
}

/// Sends `n` sequential requests over one connection and fails unless all succeed.
pub fn smoke(target: &Target, n: usize, timeout: Duration) -> anyhow::Result<()> {
    let rt = crate::util::current_thread_runtime()?;
    rt.block_on(async {
        let mut conn = Conn::connect(target.addr).await?;
        for _ in 0..n {
            let o = tokio::time::timeout(timeout, crate::client::execute(&mut conn, target))
                .await
                .map_err(|_| anyhow::anyhow!("request timed out after {timeout:?}"))??;
            if !o.ok() {
                anyhow::bail!(
                    "{} {}: status {}, body complete: {}, {} bytes",
                    target.addr,
                    target.scenario.name(),
                    o.status,
                    o.complete,
                    o.bytes
                );
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: u16, attempts: Option<u32>) -> Outcome {
        Outcome {
            status,
            complete: true,
            first_byte_ns: 1_500,
            done_ns: 2_000,
            bytes: 10,
            overhead_us: None,
            attempts,
        }
    }

    /// Responses the gateway retried are also counted in the retried histogram.
    #[test]
    fn records_retried_responses_apart() {
        let mut rec = Recorder::default();
        for a in [None, Some(1), Some(2), Some(3)] {
            let (broken, done) = record(&mut rec, 1_000, Ok(Ok(outcome(200, a))));
            assert!(!broken);
            assert_eq!(done, Some(2_000));
        }
        // A failed response is never a retried success.
        record(&mut rec, 1_000, Ok(Ok(outcome(503, Some(3)))));
        assert_eq!((rec.ok, rec.non_200), (4, 1));
        assert_eq!(rec.latency.len(), 4);
        assert_eq!(rec.retried_latency.as_ref().map(|h| h.len()), Some(2));
        assert_eq!(rec.retried_latency.as_ref().map(|h| h.max()), Some(1_000));
    }
}
