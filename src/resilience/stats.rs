//! Live per-target numbers for balancing and hedging, all lock-free: requests in flight, time to
//! first token (a moving average and a recent p95), and requests and tokens over the last minute.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ring, Epoch};

/// Weight of a new sample in the TTFT moving average.
const EWMA_ALPHA: f64 = 0.2;
/// `ewma` bits meaning "no sample yet" (a NaN pattern no average can have).
const NO_EWMA: u64 = u64::MAX;

/// The p95 is taken over two alternating windows of this length: the current one and the one
/// before (so it covers the last 60 to 120 s).
const TTFT_WINDOW: Duration = Duration::from_secs(60);
/// Fewer samples than this give no p95 (it would be noise).
pub const P95_MIN_SAMPLES: u64 = 20;

/// Histogram buckets: exact below 8 µs, then 8 per power of two (at most 12.5 % wide) up to
/// 2^28 µs (~268 s); slower samples land in the last bucket.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
const MAX_MSB: u32 = 28;
const HIST_BUCKETS: usize = ((MAX_MSB - SUB_BITS + 2) as usize) * SUB as usize;

/// Rate buckets: six of ten seconds (rpm/tpm cover the last 50 to 60 s).
const RATE_BUCKET: Duration = Duration::from_secs(10);
const RATE_BUCKETS: usize = 6;
const RATE_MAX: u64 = (1 << ring::PAYLOAD_BITS) - 1;

/// One target's live statistics. Shared (`Arc`) by all requests to the target; kept across
/// config reloads by whoever owns it.
#[derive(Debug)]
pub struct TargetStats {
    epoch: Epoch,
    in_flight: AtomicU32,
    /// Moving average of TTFT in microseconds, as f64 bits ([`NO_EWMA`] before the first).
    ewma: AtomicU64,
    ttft: [TtftWindow; 2],
    requests: [AtomicU64; RATE_BUCKETS],
    tokens: [AtomicU64; RATE_BUCKETS],
}

#[derive(Debug)]
struct TtftWindow {
    /// Which `TTFT_WINDOW`-long window since the epoch these counts belong to.
    index: AtomicU64,
    counts: [AtomicU32; HIST_BUCKETS],
}

impl Default for TtftWindow {
    fn default() -> Self {
        TtftWindow {
            index: AtomicU64::new(0),
            counts: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

impl Default for TargetStats {
    fn default() -> Self {
        TargetStats::new()
    }
}

impl TargetStats {
    /// Empty statistics. Instants handed in later are measured from now; earlier ones count as
    /// now.
    pub fn new() -> Self {
        TargetStats {
            epoch: Epoch::new(),
            in_flight: AtomicU32::new(0),
            ewma: AtomicU64::new(NO_EWMA),
            ttft: Default::default(),
            requests: Default::default(),
            tokens: Default::default(),
        }
    }

    /// Marks a request in flight until the guard drops.
    pub fn enter(&self) -> InFlightGuard<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard { stats: self }
    }

    /// [`TargetStats::enter`] for a guard that must outlive the borrow (moved into a response
    /// body, a spawned task).
    pub fn enter_owned(self: &Arc<Self>) -> OwnedInFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        OwnedInFlightGuard {
            stats: Arc::clone(self),
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one time-to-first-token sample (the average and the p95 histogram).
    pub fn record_ttft(&self, ttft: Duration, now: Instant) {
        let micros = u64::try_from(ttft.as_micros()).unwrap_or(u64::MAX);
        self.update_ewma(micros as f64);
        self.count_ttft(micros, now);
    }

    /// The moving average (alpha 0.2) of time to first token; `None` before the first sample.
    pub fn ewma_ttft(&self) -> Option<Duration> {
        self.ewma_micros()
            .map(|us| Duration::from_nanos((us * 1_000.0) as u64))
    }

    /// [`TargetStats::ewma_ttft`] in microseconds, as the balancer compares it.
    pub fn ewma_micros(&self) -> Option<f64> {
        match self.ewma.load(Ordering::Relaxed) {
            NO_EWMA => None,
            bits => Some(f64::from_bits(bits)),
        }
    }

    /// An estimate (within one histogram bucket, at most 12.5 %) of the 95th percentile of time
    /// to first token over the last 60–120 s; `None` with fewer than [`P95_MIN_SAMPLES`] samples.
    pub fn p95_ttft(&self, now: Instant) -> Option<Duration> {
        let current = self.ttft_window(now);
        let recent = |w: &TtftWindow| {
            let index = w.index.load(Ordering::Acquire);
            index == current || index.wrapping_add(1) == current
        };
        let use_window = [recent(&self.ttft[0]), recent(&self.ttft[1])];
        let count = |bucket: usize| -> u64 {
            self.ttft
                .iter()
                .zip(use_window)
                .filter(|(_, used)| *used)
                .map(|(w, _)| u64::from(w.counts[bucket].load(Ordering::Relaxed)))
                .sum()
        };
        let total: u64 = (0..HIST_BUCKETS).map(count).sum();
        if total < P95_MIN_SAMPLES {
            return None;
        }
        // The smallest bucket whose cumulative count reaches 95 % of the samples. Counts may grow
        // between the two passes; the last bucket seen non-empty is the fallback.
        let rank = (total * 95).div_ceil(100);
        let mut seen = 0u64;
        let mut last = 0usize;
        for bucket in 0..HIST_BUCKETS {
            let n = count(bucket);
            if n == 0 {
                continue;
            }
            seen += n;
            last = bucket;
            if seen >= rank {
                break;
            }
        }
        Some(Duration::from_micros(bucket_mid(last)))
    }

    /// Counts a request started at `now` (for [`TargetStats::rpm`]).
    pub fn record_request(&self, now: Instant) {
        self.add_rate(&self.requests, 1, now);
    }

    /// Counts tokens used at `now` (for [`TargetStats::tpm`]).
    pub fn record_tokens(&self, tokens: u64, now: Instant) {
        if tokens > 0 {
            self.add_rate(&self.tokens, tokens, now);
        }
    }

    /// Requests started in the last minute (precisely: the current 10 s bucket and the five
    /// before it, i.e. the last 50 to 60 s).
    pub fn rpm(&self, now: Instant) -> u64 {
        self.sum_rate(&self.requests, now)
    }

    /// Tokens used in the last minute, counted like [`TargetStats::rpm`].
    pub fn tpm(&self, now: Instant) -> u64 {
        self.sum_rate(&self.tokens, now)
    }

    fn update_ewma(&self, sample: f64) {
        let mut bits = self.ewma.load(Ordering::Relaxed);
        loop {
            let next = match bits {
                NO_EWMA => sample,
                old => {
                    let old = f64::from_bits(old);
                    old + EWMA_ALPHA * (sample - old)
                }
            };
            match self.ewma.compare_exchange_weak(
                bits,
                next.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => bits = actual,
            }
        }
    }

    fn count_ttft(&self, micros: u64, now: Instant) {
        let current = self.ttft_window(now);
        let Some(window) = self.ttft.get((current % 2) as usize) else {
            return;
        };
        let index = window.index.load(Ordering::Acquire);
        if index != current {
            if index > current {
                // A sample with a stale `now`; its window is gone.
                return;
            }
            // The slot holds an older window: the first to notice restarts it. Samples racing
            // with the restart may be lost; this is an estimate.
            if window
                .index
                .compare_exchange(index, current, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                for c in &window.counts {
                    c.store(0, Ordering::Relaxed);
                }
            }
        }
        if let Some(c) = window.counts.get(bucket_of(micros)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn ttft_window(&self, now: Instant) -> u64 {
        self.epoch.ticks(now) / super::nanos(TTFT_WINDOW)
    }

    fn add_rate(&self, slots: &[AtomicU64; RATE_BUCKETS], n: u64, now: Instant) {
        let index = self.epoch.ticks(now) / super::nanos(RATE_BUCKET);
        ring::add(slots, index, |count| {
            Some(count.saturating_add(n).min(RATE_MAX))
        });
    }

    fn sum_rate(&self, slots: &[AtomicU64; RATE_BUCKETS], now: Instant) -> u64 {
        let index = self.epoch.ticks(now) / super::nanos(RATE_BUCKET);
        let mut sum = 0u64;
        ring::for_each(slots, index, |count| sum = sum.saturating_add(count));
        sum
    }
}

/// The histogram bucket of a sample in microseconds.
fn bucket_of(micros: u64) -> usize {
    if micros < SUB {
        return micros as usize;
    }
    let msb = 63 - micros.leading_zeros();
    if msb > MAX_MSB {
        return HIST_BUCKETS - 1;
    }
    let sub = (micros >> (msb - SUB_BITS)) & (SUB - 1);
    ((msb - SUB_BITS + 1) as usize) * SUB as usize + sub as usize
}

/// The middle of a histogram bucket, in microseconds.
fn bucket_mid(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < SUB {
        return bucket;
    }
    let msb = (bucket / SUB) as u32 + SUB_BITS - 1;
    let width = 1u64 << (msb - SUB_BITS);
    let low = (SUB + bucket % SUB) << (msb - SUB_BITS);
    low + width / 2
}

/// Decrements the in-flight count when dropped.
#[derive(Debug)]
#[must_use = "the request counts as in flight only while the guard lives"]
pub struct InFlightGuard<'a> {
    stats: &'a TargetStats,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// [`InFlightGuard`] holding its own reference to the stats.
#[derive(Debug)]
#[must_use = "the request counts as in flight only while the guard lives"]
pub struct OwnedInFlightGuard {
    stats: Arc<TargetStats>,
}

impl Drop for OwnedInFlightGuard {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
// Tests hand their own instants to the code under test; no deadline is decided by the clock.
#[allow(clippy::disallowed_methods)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);

    fn setup() -> (TargetStats, Instant) {
        let s = TargetStats::new();
        (s, Instant::now())
    }

    #[test]
    fn in_flight_guards_count_and_release() {
        let stats = Arc::new(TargetStats::new());
        assert_eq!(stats.in_flight(), 0);
        let a = stats.enter();
        let b = stats.enter_owned();
        assert_eq!(stats.in_flight(), 2);
        drop(a);
        assert_eq!(stats.in_flight(), 1);
        let moved = std::thread::spawn(move || drop(b));
        moved.join().unwrap();
        assert_eq!(stats.in_flight(), 0);
    }

    #[test]
    fn ewma_starts_at_the_first_sample_then_moves_by_alpha() {
        let (s, t0) = setup();
        assert_eq!(s.ewma_ttft(), None);
        s.record_ttft(100 * MS, t0);
        assert_eq!(s.ewma_ttft(), Some(100 * MS));
        s.record_ttft(200 * MS, t0);
        // 100 + 0.2 * (200 - 100)
        assert_eq!(s.ewma_ttft(), Some(120 * MS));
        s.record_ttft(20 * MS, t0);
        // 120 + 0.2 * (20 - 120)
        assert_eq!(s.ewma_ttft(), Some(100 * MS));
    }

    #[test]
    fn ewma_is_consistent_under_concurrent_updates() {
        let s = TargetStats::new();
        let t0 = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..1_000 {
                        s.record_ttft(50 * MS, t0);
                    }
                });
            }
        });
        // Every sample is the same value, so any interleaving converges to it exactly.
        assert_eq!(s.ewma_ttft(), Some(50 * MS));
    }

    #[test]
    fn p95_needs_twenty_samples() {
        let (s, t0) = setup();
        for _ in 0..19 {
            s.record_ttft(100 * MS, t0);
        }
        assert_eq!(s.p95_ttft(t0), None);
        s.record_ttft(100 * MS, t0);
        let p95 = s.p95_ttft(t0).unwrap();
        assert!((p95.as_secs_f64() - 0.1).abs() <= 0.1 * 0.125, "{p95:?}");
    }

    #[test]
    fn p95_of_a_spread_distribution() {
        let (s, t0) = setup();
        // 1..=100 ms, one each: the p95 is 95 ms.
        for ms in 1..=100u64 {
            s.record_ttft(Duration::from_millis(ms), t0);
        }
        let p95 = s.p95_ttft(t0).unwrap().as_secs_f64() * 1_000.0;
        assert!((95.0 * 0.9..=95.0 * 1.1).contains(&p95), "p95 {p95} ms");
        // A few outliers above the 95th percentile don't move it much...
        let (s, t0) = setup();
        for _ in 0..96 {
            s.record_ttft(200 * MS, t0);
        }
        for _ in 0..4 {
            s.record_ttft(30 * S, t0);
        }
        let p95 = s.p95_ttft(t0).unwrap();
        assert!(p95 < 250 * MS, "{p95:?}");
        // ...but more than 5 % of them do.
        for _ in 0..4 {
            s.record_ttft(30 * S, t0);
        }
        let p95 = s.p95_ttft(t0).unwrap();
        assert!(p95 > 25 * S, "{p95:?}");
    }

    #[test]
    fn p95_forgets_old_windows() {
        let (s, t0) = setup();
        for _ in 0..50 {
            s.record_ttft(5 * S, t0);
        }
        // One window later the old samples still count (60–120 s coverage)...
        assert!(s.p95_ttft(t0 + 61 * S).is_some());
        // ...two windows later they are gone.
        assert_eq!(s.p95_ttft(t0 + 121 * S), None);
        // New samples in a fresh window replace the old slot's counts.
        for _ in 0..20 {
            s.record_ttft(10 * MS, t0 + 130 * S);
        }
        let p95 = s.p95_ttft(t0 + 130 * S).unwrap();
        assert!(p95 < 12 * MS, "{p95:?}");
    }

    #[test]
    fn histogram_buckets_are_ordered_and_tight() {
        let mut last = 0usize;
        for us in [
            0u64, 1, 7, 8, 9, 15, 16, 17, 100, 1_000, 123_456, 10_000_000,
        ] {
            let b = bucket_of(us);
            assert!(b >= last, "{us}");
            last = b;
            let mid = bucket_mid(b) as f64;
            assert!(
                (mid - us as f64).abs() <= (us as f64 * 0.125).max(0.5),
                "{us} µs → bucket {b} mid {mid}"
            );
        }
        // Exact below 8 µs; bucket boundaries at powers of two.
        assert_eq!(bucket_of(7), 7);
        assert_eq!(bucket_of(8), 8);
        assert_eq!(bucket_of(16), 16);
        assert_eq!(bucket_of(u64::MAX), HIST_BUCKETS - 1);
        assert_eq!(bucket_of(1 << MAX_MSB), HIST_BUCKETS - SUB as usize);
    }

    #[test]
    fn rpm_and_tpm_cover_the_last_minute() {
        let (s, t0) = setup();
        for i in 0..30u32 {
            s.record_request(t0 + i * S);
            s.record_tokens(100, t0 + i * S);
        }
        assert_eq!(s.rpm(t0 + 30 * S), 30);
        assert_eq!(s.tpm(t0 + 30 * S), 3_000);
        // Zero tokens change nothing.
        s.record_tokens(0, t0 + 30 * S);
        assert_eq!(s.tpm(t0 + 30 * S), 3_000);
        // At 65 s the first 10 s bucket (0–9 s) has left the window; 20 requests remain.
        assert_eq!(s.rpm(t0 + 65 * S), 20);
        assert_eq!(s.tpm(t0 + 65 * S), 2_000);
        // Two minutes later nothing is left, and new counts start from zero.
        assert_eq!(s.rpm(t0 + 150 * S), 0);
        s.record_request(t0 + 150 * S);
        assert_eq!(s.rpm(t0 + 150 * S), 1);
        assert_eq!(s.tpm(t0 + 150 * S), 0);
    }

    #[test]
    fn rate_counts_saturate_instead_of_wrapping() {
        let (s, t0) = setup();
        s.record_tokens(RATE_MAX, t0);
        s.record_tokens(5, t0);
        assert_eq!(s.tpm(t0), RATE_MAX);
    }

    #[test]
    fn concurrent_requests_are_all_counted() {
        let s = TargetStats::new();
        let t0 = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..2_500 {
                        s.record_request(t0);
                        s.record_tokens(2, t0);
                    }
                });
            }
        });
        assert_eq!(s.rpm(t0), 10_000);
        assert_eq!(s.tpm(t0), 20_000);
    }
}
