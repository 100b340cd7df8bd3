//! A per-target circuit breaker.
//!
//! Closed: every request goes. After `consecutive_failures` failures in a row, or an error rate
//! of at least `error_rate` over the sliding `window_ms` (with at least `min_requests` requests),
//! it opens: the target is skipped for `cooldown_ms`. Then exactly one caller is admitted as a
//! probe (half-open); its success closes the breaker, its failure re-opens it for another
//! cooldown. A probe that never reports (its request was cancelled) is presumed lost after one
//! cooldown (at least [`MIN_PROBE_LEASE`]) and the next caller probes instead, so the breaker
//! cannot stay half-open forever.
//!
//! Lock-free: the whole state is one `AtomicU64` (closed / open-until / probing-until), changed
//! by compare-and-swap, so concurrent callers agree on who trips it and who probes. The closed
//! path of [`Breaker::admit`] is one atomic load; [`Breaker::record`] of a success is a load, and
//! a compare-and-swap on the current window bucket when the error-rate rule is on.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{nanos, ring, Epoch};
use crate::config::types::BreakerConfig;

/// Buckets of the error-rate window (each `window_ms / BUCKETS` long).
const BUCKETS: usize = 10;

/// Shortest time a probe is waited for before another caller may probe.
pub const MIN_PROBE_LEASE: Duration = Duration::from_secs(1);

/// `state` word: 0 = closed; otherwise the low 63 bits are a deadline in epoch ticks — with
/// [`PROBING`] set, the probe's lease; without, the end of the cooldown.
const CLOSED: u64 = 0;
const PROBING: u64 = 1 << 63;
const TICKS_MASK: u64 = PROBING - 1;

/// Window bucket payload: failures in the high half, requests in the low half.
const COUNT_BITS: u32 = ring::PAYLOAD_BITS / 2;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

/// What [`Breaker::admit`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Healthy: send the request.
    Closed,
    /// This caller is the one half-open probe: send the request and [`Breaker::record`] its
    /// outcome as soon as it is known.
    Probe,
    /// Ejected: skip this target. `until` is when the next probe may be admitted.
    Open { until: Instant },
}

/// A request's result as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// The breaker's state, for metrics and the admin view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    /// The cooldown is over: a probe is out, or the next caller will be one.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// One target's circuit breaker. Shared by reference (`Arc`) among all requests to the target.
#[derive(Debug)]
pub struct Breaker {
    epoch: Epoch,
    state: AtomicU64,
    consecutive: AtomicU32,
    /// Per-bucket (failures, requests) of the error-rate window.
    buckets: [AtomicU64; BUCKETS],
    trips: AtomicU64,
    // The configuration, each field atomic so that a reload can change it under live traffic.
    max_consecutive: AtomicU32,
    error_rate: AtomicU64,
    min_requests: AtomicU32,
    /// Length of one window bucket in nanoseconds; 0 turns the error-rate rule off.
    bucket_nanos: AtomicU64,
    cooldown_nanos: AtomicU64,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::new(BreakerConfig::default())
    }
}

impl Breaker {
    /// A closed breaker. Instants handed to it later are measured from its creation; earlier
    /// ones count as the creation instant.
    pub fn new(cfg: BreakerConfig) -> Self {
        let breaker = Breaker {
            epoch: Epoch::new(),
            state: AtomicU64::new(CLOSED),
            consecutive: AtomicU32::new(0),
            buckets: Default::default(),
            trips: AtomicU64::new(0),
            max_consecutive: AtomicU32::new(0),
            error_rate: AtomicU64::new(0),
            min_requests: AtomicU32::new(0),
            bucket_nanos: AtomicU64::new(0),
            cooldown_nanos: AtomicU64::new(0),
        };
        breaker.set_config(cfg);
        breaker
    }

    /// Applies a reloaded configuration, keeping the state (open stays open until its current
    /// cooldown ends) and the trip count. The window counts are cleared when the window length
    /// changes (their buckets no longer line up). Rules with a zero `consecutive_failures`,
    /// `window_ms`, or an `error_rate` outside (0, 1], are off.
    pub fn set_config(&self, cfg: BreakerConfig) {
        self.max_consecutive
            .store(cfg.consecutive_failures, Ordering::Relaxed);
        let rate = if cfg.error_rate > 0.0 && cfg.error_rate <= 1.0 {
            cfg.error_rate
        } else {
            f64::NAN
        };
        self.error_rate.store(rate.to_bits(), Ordering::Relaxed);
        self.min_requests
            .store(cfg.min_requests.max(1), Ordering::Relaxed);
        let bucket = nanos(Duration::from_millis(cfg.window_ms)) / BUCKETS as u64;
        if self.bucket_nanos.swap(bucket, Ordering::Relaxed) != bucket {
            ring::clear(&self.buckets);
        }
        self.cooldown_nanos.store(
            nanos(Duration::from_millis(cfg.cooldown_ms)),
            Ordering::Relaxed,
        );
    }

    /// Whether a request may go to this target now. See [`Admit`].
    pub fn admit(&self, now: Instant) -> Admit {
        let mut state = self.state.load(Ordering::Acquire);
        if state == CLOSED {
            return Admit::Closed;
        }
        let t = self.epoch.ticks(now);
        loop {
            if state == CLOSED {
                return Admit::Closed;
            }
            let until = state & TICKS_MASK;
            if t < until {
                return Admit::Open {
                    until: self.epoch.instant(until),
                };
            }
            // The cooldown (or a lost probe's lease) is over: whoever swaps first probes.
            let lease = nanos(
                Duration::from_nanos(self.cooldown_nanos.load(Ordering::Relaxed))
                    .max(MIN_PROBE_LEASE),
            );
            let probing = PROBING | t.saturating_add(lease).min(TICKS_MASK);
            match self
                .state
                .compare_exchange(state, probing, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Admit::Probe,
                Err(actual) => state = actual,
            }
        }
    }

    /// Counts a finished request. While closed, failures may trip the breaker. While half-open,
    /// the first outcome reported decides: success closes (and resets the counts), failure
    /// re-opens for a fresh cooldown. While open, outcomes (of requests admitted before the trip)
    /// are ignored.
    pub fn record(&self, outcome: Outcome, now: Instant) {
        let state = self.state.load(Ordering::Acquire);
        let t = self.epoch.ticks(now);
        match (state, outcome) {
            (CLOSED, Outcome::Success) => {
                // Read first so the healthy path doesn't write a shared cache line.
                if self.consecutive.load(Ordering::Relaxed) != 0 {
                    self.consecutive.store(0, Ordering::Relaxed);
                }
                self.count(t, false);
            }
            (CLOSED, Outcome::Failure) => {
                let in_a_row = self
                    .consecutive
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                self.count(t, true);
                if self.should_trip(in_a_row, t) {
                    self.open(CLOSED, t);
                }
            }
            (s, Outcome::Success) if s & PROBING != 0 => self.close(s),
            (s, Outcome::Failure) if s & PROBING != 0 => self.open(s, t),
            _ => {}
        }
    }

    /// The state at `now` (an open breaker whose cooldown is over reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        let state = self.state.load(Ordering::Acquire);
        if state == CLOSED {
            BreakerState::Closed
        } else if state & PROBING != 0 || self.epoch.ticks(now) >= state & TICKS_MASK {
            BreakerState::HalfOpen
        } else {
            BreakerState::Open
        }
    }

    /// `Some(instant the next probe may go)` while the target must be skipped (cooldown running,
    /// or a probe out); `None` when closed or when the next [`Breaker::admit`] would probe.
    /// Unlike `admit` it claims nothing, so it is safe for scanning candidates.
    pub fn open_until(&self, now: Instant) -> Option<Instant> {
        let state = self.state.load(Ordering::Acquire);
        let until = state & TICKS_MASK;
        (state != CLOSED && self.epoch.ticks(now) < until).then(|| self.epoch.instant(until))
    }

    /// How many times the breaker has opened (re-opens after a failed probe included).
    pub fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// Swaps `from` for closed, starting the counts afresh (the old failures are what tripped
    /// it; they say nothing about the recovered target).
    fn close(&self, from: u64) {
        if self
            .state
            .compare_exchange(from, CLOSED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.consecutive.store(0, Ordering::Relaxed);
            ring::clear(&self.buckets);
        }
    }

    /// Swaps `from` for "open until now + cooldown"; only the caller whose swap succeeds counts
    /// the trip.
    fn open(&self, from: u64, t: u64) {
        let until = t
            .saturating_add(self.cooldown_nanos.load(Ordering::Relaxed))
            .min(TICKS_MASK);
        if self
            .state
            .compare_exchange(from, until, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.trips.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn should_trip(&self, in_a_row: u32, t: u64) -> bool {
        let max_consecutive = self.max_consecutive.load(Ordering::Relaxed);
        if max_consecutive > 0 && in_a_row >= max_consecutive {
            return true;
        }
        let rate = f64::from_bits(self.error_rate.load(Ordering::Relaxed));
        let Some(index) = self.bucket_index(t) else {
            return false;
        };
        if rate.is_nan() {
            return false;
        }
        let (mut failures, mut requests) = (0u64, 0u64);
        ring::for_each(&self.buckets, index, |payload| {
            failures += payload >> COUNT_BITS;
            requests += payload & COUNT_MAX;
        });
        requests >= u64::from(self.min_requests.load(Ordering::Relaxed))
            && failures as f64 >= rate * requests as f64
    }

    fn count(&self, t: u64, failed: bool) {
        let Some(index) = self.bucket_index(t) else {
            return;
        };
        ring::add(&self.buckets, index, |payload| {
            let (failures, requests) = (payload >> COUNT_BITS, payload & COUNT_MAX);
            // A full bucket drops further samples whole, so the rate stays right.
            (requests < COUNT_MAX)
                .then(|| ((failures + u64::from(failed)) << COUNT_BITS) | (requests + 1))
        });
    }

    fn bucket_index(&self, t: u64) -> Option<u64> {
        match self.bucket_nanos.load(Ordering::Relaxed) {
            0 => None,
            len => Some(t / len),
        }
    }
}

#[cfg(test)]
// Tests hand their own instants to the code under test; no deadline is decided by the clock.
#[allow(clippy::disallowed_methods)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn cfg(consecutive: u32, rate: f64, min: u32) -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: consecutive,
            error_rate: rate,
            min_requests: min,
            window_ms: 10_000,
            cooldown_ms: 30_000,
        }
    }

    /// A breaker and a start instant not earlier than its epoch.
    fn setup(cfg: BreakerConfig) -> (Breaker, Instant) {
        let b = Breaker::new(cfg);
        (b, Instant::now())
    }

    #[test]
    fn consecutive_failures_trip_and_success_resets_the_run() {
        let (b, t0) = setup(cfg(3, 0.0, 1));
        b.record(Outcome::Failure, t0);
        b.record(Outcome::Failure, t0);
        b.record(Outcome::Success, t0);
        b.record(Outcome::Failure, t0);
        b.record(Outcome::Failure, t0);
        assert_eq!(b.admit(t0), Admit::Closed);
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.record(Outcome::Failure, t0 + MS);
        assert_eq!(b.trips(), 1);
        assert_eq!(b.state(t0 + MS), BreakerState::Open);
        assert_eq!(
            b.admit(t0 + 2 * MS),
            Admit::Open {
                until: t0 + MS + 30 * S
            }
        );
    }

    #[test]
    fn cooldown_then_exactly_one_probe() {
        let (b, t0) = setup(cfg(1, 0.0, 1));
        b.record(Outcome::Failure, t0);
        let reopen = t0 + 30 * S;
        assert!(matches!(b.admit(reopen - MS), Admit::Open { .. }));
        assert_eq!(b.state(reopen), BreakerState::HalfOpen);
        assert_eq!(b.admit(reopen), Admit::Probe);
        // Everyone else waits for the probe's answer.
        for i in 0..5 {
            assert!(matches!(b.admit(reopen + i * MS), Admit::Open { .. }));
        }
        assert_eq!(b.state(reopen + MS), BreakerState::HalfOpen);
        b.record(Outcome::Success, reopen + S);
        assert_eq!(b.state(reopen + S), BreakerState::Closed);
        assert_eq!(b.admit(reopen + S), Admit::Closed);
        assert_eq!(b.trips(), 1);
    }

    #[test]
    fn open_until_reads_without_claiming_the_probe() {
        let (b, t0) = setup(cfg(1, 0.0, 1));
        assert_eq!(b.open_until(t0), None);
        b.record(Outcome::Failure, t0);
        assert_eq!(b.open_until(t0 + S), Some(t0 + 30 * S));
        // Cooldown over: None, however often it is asked, and the probe is still there to take.
        for _ in 0..3 {
            assert_eq!(b.open_until(t0 + 30 * S), None);
        }
        assert_eq!(b.admit(t0 + 30 * S), Admit::Probe);
        // Probe out: skip until its lease ends.
        assert_eq!(b.open_until(t0 + 31 * S), Some(t0 + 60 * S));
    }

    #[test]
    fn failed_probe_reopens_for_a_fresh_cooldown() {
        let (b, t0) = setup(cfg(1, 0.0, 1));
        b.record(Outcome::Failure, t0);
        let probe_at = t0 + 31 * S;
        assert_eq!(b.admit(probe_at), Admit::Probe);
        b.record(Outcome::Failure, probe_at + 2 * S);
        assert_eq!(b.trips(), 2);
        assert_eq!(
            b.admit(probe_at + 3 * S),
            Admit::Open {
                until: probe_at + 32 * S
            }
        );
        assert_eq!(b.admit(probe_at + 32 * S), Admit::Probe);
    }

    #[test]
    fn lost_probe_is_replaced_after_its_lease() {
        let (b, t0) = setup(cfg(1, 0.0, 1));
        b.record(Outcome::Failure, t0);
        let probe_at = t0 + 30 * S;
        assert_eq!(b.admit(probe_at), Admit::Probe);
        // The probe never reports; after one cooldown another caller probes.
        assert_eq!(
            b.admit(probe_at + 29 * S),
            Admit::Open {
                until: probe_at + 30 * S
            }
        );
        assert_eq!(b.admit(probe_at + 30 * S), Admit::Probe);
        assert!(matches!(b.admit(probe_at + 31 * S), Admit::Open { .. }));
    }

    #[test]
    fn outcomes_while_open_are_ignored() {
        let (b, t0) = setup(cfg(1, 0.0, 1));
        b.record(Outcome::Failure, t0);
        // Late results of requests admitted before the trip neither close nor extend it.
        b.record(Outcome::Success, t0 + S);
        b.record(Outcome::Failure, t0 + 2 * S);
        assert_eq!(b.state(t0 + 2 * S), BreakerState::Open);
        assert_eq!(b.trips(), 1);
        assert_eq!(b.admit(t0 + 3 * S), Admit::Open { until: t0 + 30 * S });
    }

    #[test]
    fn error_rate_over_the_window_trips_with_enough_requests() {
        // Consecutive rule off; 50 % over 10 s with at least 10 requests.
        let (b, t0) = setup(cfg(0, 0.5, 10));
        for i in 0..4 {
            b.record(Outcome::Success, t0 + i * MS);
            b.record(Outcome::Failure, t0 + i * MS);
        }
        // 4 of 8: rate reached but too few requests.
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.record(Outcome::Success, t0 + 10 * MS);
        b.record(Outcome::Failure, t0 + 10 * MS);
        // 5 of 10.
        assert_eq!(b.state(t0 + 10 * MS), BreakerState::Open);
        assert_eq!(b.trips(), 1);
    }

    #[test]
    fn error_rate_below_threshold_stays_closed() {
        let (b, t0) = setup(cfg(0, 0.5, 10));
        for i in 0..100 {
            b.record(Outcome::Success, t0 + i * MS);
            b.record(Outcome::Success, t0 + i * MS);
            b.record(Outcome::Failure, t0 + i * MS);
        }
        assert_eq!(b.state(t0 + S), BreakerState::Closed);
        assert_eq!(b.trips(), 0);
    }

    #[test]
    fn old_buckets_slide_out_of_the_window() {
        let (b, t0) = setup(cfg(0, 0.5, 4));
        // Three failures, then ten quiet seconds: they have left the 10 s window.
        for _ in 0..3 {
            b.record(Outcome::Failure, t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        let later = t0 + 11 * S;
        b.record(Outcome::Success, later);
        b.record(Outcome::Success, later);
        b.record(Outcome::Success, later);
        b.record(Outcome::Failure, later);
        // In the window: 1 of 4 (had the old ones counted: 4 of 7, tripped).
        assert_eq!(b.state(later), BreakerState::Closed);
        // Within the window they do count: 3 + 1 of 5 requests.
        let (b, t0) = setup(cfg(0, 0.5, 4));
        for _ in 0..3 {
            b.record(Outcome::Failure, t0);
        }
        b.record(Outcome::Success, t0 + 5 * S);
        b.record(Outcome::Failure, t0 + 5 * S);
        assert_eq!(b.state(t0 + 5 * S), BreakerState::Open);
    }

    #[test]
    fn probe_success_resets_the_counts() {
        // A cooldown shorter than the window, so the old failures would still be in it.
        let (b, t0) = setup(BreakerConfig {
            cooldown_ms: 1_000,
            ..cfg(0, 0.5, 4)
        });
        for _ in 0..4 {
            b.record(Outcome::Failure, t0);
        }
        assert_eq!(b.state(t0), BreakerState::Open);
        let probe_at = t0 + S;
        assert_eq!(b.admit(probe_at), Admit::Probe);
        b.record(Outcome::Success, probe_at);
        b.record(Outcome::Success, probe_at);
        b.record(Outcome::Failure, probe_at);
        b.record(Outcome::Success, probe_at);
        b.record(Outcome::Success, probe_at);
        // 1 failure of 4 since the reset (had the old failures been kept, that failure would
        // have re-opened it at 5 of 6).
        assert_eq!(b.state(probe_at), BreakerState::Closed);
        assert_eq!(b.trips(), 1);
        // The run of consecutive failures restarts too.
        let (b, t0) = setup(cfg(3, 0.0, 1));
        b.record(Outcome::Failure, t0);
        b.record(Outcome::Failure, t0);
        b.record(Outcome::Failure, t0);
        assert_eq!(b.admit(t0 + 30 * S), Admit::Probe);
        b.record(Outcome::Success, t0 + 30 * S);
        b.record(Outcome::Failure, t0 + 31 * S);
        b.record(Outcome::Failure, t0 + 31 * S);
        assert_eq!(b.state(t0 + 31 * S), BreakerState::Closed);
    }

    #[test]
    fn set_config_keeps_state_and_applies_new_rules() {
        let (b, t0) = setup(cfg(2, 0.0, 1));
        b.record(Outcome::Failure, t0);
        b.record(Outcome::Failure, t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        b.set_config(BreakerConfig {
            cooldown_ms: 5_000,
            ..cfg(1, 0.0, 1)
        });
        // Still open with the cooldown it tripped with.
        assert_eq!(b.state(t0 + 10 * S), BreakerState::Open);
        assert_eq!(b.trips(), 1);
        assert_eq!(b.admit(t0 + 30 * S), Admit::Probe);
        b.record(Outcome::Failure, t0 + 30 * S);
        // The re-open uses the new cooldown.
        assert_eq!(b.admit(t0 + 31 * S), Admit::Open { until: t0 + 35 * S });
        assert_eq!(b.admit(t0 + 35 * S), Admit::Probe);
        b.record(Outcome::Success, t0 + 35 * S);
        // And one failure now trips (consecutive_failures 1).
        b.record(Outcome::Failure, t0 + 36 * S);
        assert_eq!(b.state(t0 + 36 * S), BreakerState::Open);
    }

    #[test]
    fn all_rules_off_never_trips() {
        let (b, t0) = setup(BreakerConfig {
            consecutive_failures: 0,
            error_rate: 0.0,
            min_requests: 0,
            window_ms: 0,
            cooldown_ms: 0,
        });
        for i in 0..1_000 {
            b.record(Outcome::Failure, t0 + i * MS);
        }
        assert_eq!(b.admit(t0 + S), Admit::Closed);
        assert_eq!(b.trips(), 0);
    }

    #[test]
    fn zero_cooldown_still_admits_one_probe_at_a_time() {
        let (b, t0) = setup(BreakerConfig {
            cooldown_ms: 0,
            ..cfg(1, 0.0, 1)
        });
        b.record(Outcome::Failure, t0);
        assert_eq!(b.admit(t0), Admit::Probe);
        assert_eq!(
            b.admit(t0),
            Admit::Open {
                until: t0 + MIN_PROBE_LEASE
            }
        );
    }

    #[test]
    fn concurrent_admits_give_exactly_one_probe() {
        let (b, t0) = setup(cfg(1, 0.0, 1));
        b.record(Outcome::Failure, t0);
        let at = t0 + 30 * S;
        let threads = 8;
        let barrier = Barrier::new(threads);
        let probes: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        (0..1_000).filter(|_| b.admit(at) == Admit::Probe).count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(probes, 1);
    }

    #[test]
    fn concurrent_failures_trip_once() {
        let (b, t0) = setup(cfg(10, 0.5, 20));
        let threads = 8;
        let barrier = Barrier::new(threads);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    barrier.wait();
                    for _ in 0..1_000 {
                        b.record(Outcome::Failure, t0);
                        b.record(Outcome::Success, t0);
                        let _ = b.admit(t0);
                    }
                });
            }
        });
        // Tripped (50 % errors) and, being open, never re-tripped within the cooldown.
        assert_eq!(b.trips(), 1);
        assert_eq!(b.state(t0), BreakerState::Open);
    }

    #[test]
    fn state_names() {
        assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
        assert_eq!(BreakerState::Open.as_str(), "open");
        assert_eq!(BreakerState::Closed.as_str(), "closed");
    }
}
