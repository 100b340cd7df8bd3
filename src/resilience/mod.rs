//! Resilience building blocks: the decisions a request makes when an upstream fails or is busy.
//! Each block is self-contained and cheap enough to run once or a few times per request: state is
//! per target, kept in atomics (no global lock, no allocation in the common path), and time is
//! passed in so the decisions are deterministic under test.
//!
//! - [`backoff`] — how long to wait before a retry: exponential backoff with full jitter (so
//!   clients that failed together don't retry together), and the upstream's own `retry-after` /
//!   `retry-after-ms` hint.
//! - [`classify`] — what an upstream error means for the next step: retry (transient), try
//!   another key (this credential is refused or out of quota), fall back to a model with a bigger
//!   context window or a different content policy, or give up (the request itself is wrong).
//! - [`breaker`] — a per-target circuit breaker: after consecutive failures or a high error rate
//!   over a sliding window the target is skipped for a cooldown, then one probe decides whether it
//!   is back. Stops a dead target from costing every request a timeout.
//! - [`stats`] — per-target live numbers the balancer and hedging read: requests in flight,
//!   time-to-first-token average and p95, requests and tokens in the last minute.
//! - [`balance`] — which of a model's available targets gets the next attempt (weighted,
//!   least-in-flight, lowest-latency or usage-aware).
//! - [`limits`] — a per-target concurrency cap with a bounded wait queue, so a target's own
//!   limits are respected without unbounded buffering in the gateway.

pub mod backoff;
pub mod balance;
pub mod breaker;
pub mod classify;
pub mod limits;
pub mod stats;

pub use backoff::{delay, retry_after};
pub use balance::{choose, Candidate};
pub use breaker::{Admit, Breaker, BreakerState, Outcome};
pub use classify::{classify, classify_transport, TransportFailure, Verdict};
pub use limits::{Acquire, ConcurrencyLimit, Permit};
pub use stats::{InFlightGuard, OwnedInFlightGuard, TargetStats};

use std::time::{Duration, Instant};

/// A reference instant that lets per-target state keep times in one `AtomicU64` (nanoseconds
/// since the reference, plus one so that 0 stays free as a sentinel). Taken when the owning
/// value is created; it is only an origin, never used to decide anything.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epoch(Instant);

impl Epoch {
    pub(crate) fn new() -> Self {
        // Tokio's clock, like every instant handed to `ticks` (ARCHITECTURE.md invariant 11).
        Epoch(tokio::time::Instant::now().into_std())
    }

    /// `now` as ticks (>= 1). Instants before the origin count as the origin (callers may hand
    /// in an instant taken a moment before the owner was created).
    pub(crate) fn ticks(self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.0).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1
    }

    /// The instant of `ticks` (the inverse of [`Epoch::ticks`]).
    pub(crate) fn instant(self, ticks: u64) -> Instant {
        let since = Duration::from_nanos(ticks.saturating_sub(1));
        self.0.checked_add(since).unwrap_or(self.0)
    }
}

/// Nanoseconds of a duration as u64, saturating (584 years).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Sliding-window counters kept in a ring of `AtomicU64` slots, one slot per time bucket. Each
/// word packs the bucket's generation (its index, truncated to [`GEN_BITS`]) above a 40-bit
/// payload, so a stale slot is recognised and restarted without a lock and a reader never mixes
/// counts of two buckets.
pub(crate) mod ring {
    use std::sync::atomic::{AtomicU64, Ordering};

    pub(crate) const GEN_BITS: u32 = 24;
    pub(crate) const PAYLOAD_BITS: u32 = 64 - GEN_BITS;
    const GEN_MASK: u64 = (1 << GEN_BITS) - 1;
    const PAYLOAD_MASK: u64 = (1 << PAYLOAD_BITS) - 1;

    /// Updates the slot of bucket `index` with `update(payload)` (payload 0 when the slot held an
    /// older bucket). `update` returning `None` drops the sample (a saturated count). A slot that
    /// already holds a *newer* bucket (the caller's `now` is a full ring old) is left alone.
    pub(crate) fn add(slots: &[AtomicU64], index: u64, update: impl Fn(u64) -> Option<u64>) {
        let Some(slot) = slots.get(slot_of(index, slots.len())) else {
            return;
        };
        let gen = index & GEN_MASK;
        let mut word = slot.load(Ordering::Relaxed);
        loop {
            let slot_gen = word >> PAYLOAD_BITS;
            let payload = if slot_gen == gen {
                word & PAYLOAD_MASK
            } else if slot_gen.wrapping_sub(gen) & GEN_MASK < (1 << (GEN_BITS - 1)) {
                // The slot's bucket is newer than ours.
                return;
            } else {
                0
            };
            let Some(next) = update(payload) else {
                return;
            };
            let next = (gen << PAYLOAD_BITS) | (next & PAYLOAD_MASK);
            match slot.compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => word = actual,
            }
        }
    }

    /// Calls `f(payload)` for each slot holding one of the `slots.len()` buckets up to and
    /// including bucket `index`.
    pub(crate) fn for_each(slots: &[AtomicU64], index: u64, mut f: impl FnMut(u64)) {
        let gen = index & GEN_MASK;
        for slot in slots {
            let word = slot.load(Ordering::Relaxed);
            let age = gen.wrapping_sub(word >> PAYLOAD_BITS) & GEN_MASK;
            if word != 0 && age < slots.len() as u64 {
                f(word & PAYLOAD_MASK);
            }
        }
    }

    pub(crate) fn clear(slots: &[AtomicU64]) {
        for slot in slots {
            slot.store(0, Ordering::Relaxed);
        }
    }

    fn slot_of(index: u64, len: usize) -> usize {
        // `len` is a small constant; the remainder fits usize.
        (index % len.max(1) as u64) as usize
    }
}
