//! Per-measurement counters and HDR histograms, and their summaries.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Everything one measured run records (values in nanoseconds unless noted).
#[derive(Clone)]
pub struct Recorder {
    /// Scheduled (or, closed-loop, actual) send → last body byte.
    pub latency: Histogram<u64>,
    /// Scheduled send → first body byte.
    pub ttfb: Histogram<u64>,
    /// Generator timer lag: dispatch − scheduled, for sends that found a free connection.
    pub sched_lag: Histogram<u64>,
    /// `x-ferrogate-overhead-us` as reported by the gateway (µs), when present.
    pub overhead_header_us: Histogram<u64>,
    /// Latency of successful responses the gateway needed more than one upstream attempt
    /// for (`x-ferrogate-attempts` ≥ 2); allocated on the first one.
    pub retried_latency: Option<Histogram<u64>>,
    pub ok: u64,
    pub non_200: u64,
    pub errors: u64,
    pub late_sends: u64,
    pub body_bytes: u64,
}

fn hist() -> Histogram<u64> {
    // 1 ns .. 100 s at 3 significant digits; bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).unwrap_or_else(|_| unreachable!())
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            latency: hist(),
            ttfb: hist(),
            sched_lag: hist(),
            overhead_header_us: hist(),
            retried_latency: None,
            ok: 0,
            non_200: 0,
            errors: 0,
            late_sends: 0,
            body_bytes: 0,
        }
    }
}

impl Recorder {
    /// Records the latency of a successful response that took more than one attempt.
    pub fn record_retried(&mut self, ns: u64) {
        self.retried_latency
            .get_or_insert_with(hist)
            .saturating_record(ns);
    }

    pub fn total(&self) -> u64 {
        self.ok + self.non_200 + self.errors
    }

    pub fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.ttfb.add(&other.ttfb);
        let _ = self.sched_lag.add(&other.sched_lag);
        let _ = self.overhead_header_us.add(&other.overhead_header_us);
        if let Some(h) = &other.retried_latency {
            let _ = self.retried_latency.get_or_insert_with(hist).add(h);
        }
        self.ok += other.ok;
        self.non_200 += other.non_200;
        self.errors += other.errors;
        self.late_sends += other.late_sends;
        self.body_bytes += other.body_bytes;
    }
}

/// Percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
    pub count: u64,
}

impl Percentiles {
    /// Summarises a histogram recorded in `unit_ns` nanoseconds per unit.
    pub fn of(h: &Histogram<u64>, unit_ns: f64) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let us = |v: u64| v as f64 * unit_ns / 1e3;
        Some(Self {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() * unit_ns / 1e3,
            count: h.len(),
        })
    }

    pub fn from_ns(h: &Histogram<u64>) -> Option<Self> {
        Self::of(h, 1.0)
    }

    pub fn from_us(h: &Histogram<u64>) -> Option<Self> {
        Self::of(h, 1e3)
    }

    /// Per-percentile difference `self − base` (the "added latency").
    pub fn minus(&self, base: &Percentiles) -> Added {
        Added {
            p50: self.p50 - base.p50,
            p90: self.p90 - base.p90,
            p99: self.p99 - base.p99,
            p999: self.p999 - base.p999,
        }
    }
}

/// Added latency per percentile, µs (subject − direct, same run).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Added {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_merge() {
        let mut a = Recorder::default();
        for v in 1..=1000u64 {
            a.latency.saturating_record(v * 1000);
        }
        a.ok = 1000;
        let mut b = Recorder::default();
        b.merge(&a);
        b.merge(&a);
        assert_eq!(b.ok, 2000);
        let p = Percentiles::from_ns(&b.latency).unwrap_or_default();
        assert!((p.p50 - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99 - 990.0).abs() < 1.0, "{p:?}");
        let added = p.minus(&Percentiles { p50: 100.0, ..p });
        assert!((added.p50 - (p.p50 - 100.0)).abs() < 1e-9);
    }

    #[test]
    fn retried_latency_is_allocated_on_use_and_merged() {
        let mut a = Recorder::default();
        assert!(a.retried_latency.is_none());
        let mut b = Recorder::default();
        b.merge(&a);
        assert!(
            b.retried_latency.is_none(),
            "nothing retried, nothing allocated"
        );
        a.record_retried(21_000_000);
        a.record_retried(23_000_000);
        b.merge(&a);
        b.merge(&a);
        let p = b
            .retried_latency
            .as_ref()
            .and_then(Percentiles::from_ns)
            .unwrap_or_default();
        assert_eq!(p.count, 4);
        assert!((p.max - 23_000.0).abs() < 25.0, "{p:?}");
    }
}
