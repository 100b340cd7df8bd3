//! Which target gets the next attempt.
//!
//! One pass over the candidates, no allocation: each strategy gives every available candidate a
//! score (lower is better), and among the best-scoring ones the pick is weighted random by
//! reservoir sampling (each tie replaces the current pick with probability `weight / sum of
//! tied weights so far`). Every live value (in-flight count, latency, usage) is read once, so
//! concurrent updates can't make the tie set inconsistent.

use std::time::Instant;

use super::stats::TargetStats;
use crate::config::types::Balance;

/// A target the caller may send the next attempt to.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub weight: u32,
    pub stats: &'a TargetStats,
    /// Requests per minute the target is meant to take (`UsageAware`).
    pub rpm_limit: Option<u32>,
    /// Tokens per minute, likewise.
    pub tpm_limit: Option<u64>,
    /// False when the target must not be chosen: ejected by its breaker, already tried by this
    /// request, or saturated.
    pub available: bool,
}

/// The index of the chosen candidate, or `None` when none is available.
///
/// - `Weighted`: random, in proportion to `weight`.
/// - `LeastInFlight`: the fewest requests in flight.
/// - `LowestLatency`: the lowest moving average of time to first token; targets without a
///   sample yet count as fastest, so that they get measured.
/// - `UsageAware`: the most headroom, headroom being the smallest of `1 - used/limit` over the
///   configured `rpm`/`tpm` limits (a target with neither has full headroom, 1). A target at or
///   over a limit is only chosen when all are, and then the least over.
///
/// Ties are broken weighted-random. Weight 0 candidates are only chosen when every tied
/// candidate has weight 0 (then uniformly).
pub fn choose(strategy: Balance, candidates: &[Candidate<'_>], now: Instant) -> Option<usize> {
    let mut pick = Reservoir::default();
    for (i, c) in candidates.iter().enumerate() {
        if !c.available {
            continue;
        }
        let score = match strategy {
            Balance::Weighted => 0.0,
            Balance::LeastInFlight => f64::from(c.stats.in_flight()),
            Balance::LowestLatency => c.stats.ewma_micros().unwrap_or(0.0),
            Balance::UsageAware => -headroom(c, now),
        };
        pick.offer(i, score, c.weight);
    }
    pick.chosen()
}

/// `min(1 - used/limit)` over the configured limits; 1 without limits. A zero limit leaves no
/// room at all: its headroom is `-used` (0 when unused, i.e. "at the limit").
fn headroom(c: &Candidate<'_>, now: Instant) -> f64 {
    fn room(used: u64, limit: u64) -> f64 {
        if limit == 0 {
            -(used as f64)
        } else {
            1.0 - used as f64 / limit as f64
        }
    }
    let mut h = 1.0f64;
    if let Some(limit) = c.rpm_limit {
        h = h.min(room(c.stats.rpm(now), u64::from(limit)));
    }
    if let Some(limit) = c.tpm_limit {
        h = h.min(room(c.stats.tpm(now), limit));
    }
    h
}

/// Weighted reservoir sampling over the candidates with the lowest score seen so far.
#[derive(Default)]
struct Reservoir {
    best: Option<f64>,
    /// Pick among the tied candidates with a positive weight, and their weight sum.
    weighted: Option<usize>,
    weight_sum: u64,
    /// Pick among the tied weight-0 candidates (uniform), and their count.
    zero: Option<usize>,
    zero_count: u64,
}

impl Reservoir {
    fn offer(&mut self, index: usize, score: f64, weight: u32) {
        match self.best {
            Some(best) if score > best => return,
            Some(best) if score == best => {}
            // Strictly better (or the first): start a new tie set.
            _ => {
                *self = Reservoir {
                    best: Some(score),
                    ..Reservoir::default()
                };
            }
        }
        if weight > 0 {
            self.weight_sum += u64::from(weight);
            if self.weighted.is_none() || fastrand::u64(0..self.weight_sum) < u64::from(weight) {
                self.weighted = Some(index);
            }
        } else {
            self.zero_count += 1;
            if self.zero.is_none() || fastrand::u64(0..self.zero_count) == 0 {
                self.zero = Some(index);
            }
        }
    }

    fn chosen(&self) -> Option<usize> {
        self.weighted.or(self.zero)
    }
}

#[cfg(test)]
// Tests hand their own instants to the code under test; no deadline is decided by the clock.
#[allow(clippy::disallowed_methods)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    fn cand(weight: u32, stats: &TargetStats) -> Candidate<'_> {
        Candidate {
            weight,
            stats,
            rpm_limit: None,
            tpm_limit: None,
            available: true,
        }
    }

    /// How often each index is chosen over `n` draws.
    fn histogram(strategy: Balance, cs: &[Candidate<'_>], now: Instant, n: usize) -> Vec<usize> {
        let mut counts = vec![0usize; cs.len()];
        for _ in 0..n {
            counts[choose(strategy, cs, now).unwrap()] += 1;
        }
        counts
    }

    fn share(counts: &[usize], i: usize) -> f64 {
        counts[i] as f64 / counts.iter().sum::<usize>() as f64
    }

    #[test]
    fn weighted_follows_weights_and_skips_unavailable() {
        fastrand::seed(7);
        let s: Vec<TargetStats> = (0..4).map(|_| TargetStats::new()).collect();
        let now = Instant::now();
        let mut cs = vec![
            cand(3, &s[0]),
            cand(1, &s[1]),
            cand(10, &s[2]),
            cand(0, &s[3]),
        ];
        cs[2].available = false;
        let counts = histogram(Balance::Weighted, &cs, now, 40_000);
        assert!((0.73..0.77).contains(&share(&counts, 0)), "{counts:?}");
        assert!((0.23..0.27).contains(&share(&counts, 1)), "{counts:?}");
        assert_eq!(counts[2], 0);
        // Weight 0 loses to any positive weight.
        assert_eq!(counts[3], 0);
    }

    #[test]
    fn none_available_gives_none() {
        let s = TargetStats::new();
        let now = Instant::now();
        assert_eq!(choose(Balance::Weighted, &[], now), None);
        let mut c = cand(1, &s);
        c.available = false;
        for strategy in [
            Balance::Weighted,
            Balance::LeastInFlight,
            Balance::LowestLatency,
            Balance::UsageAware,
        ] {
            assert_eq!(choose(strategy, &[c, c], now), None, "{strategy:?}");
        }
    }

    #[test]
    fn all_zero_weights_pick_uniformly() {
        fastrand::seed(11);
        let s: Vec<TargetStats> = (0..3).map(|_| TargetStats::new()).collect();
        let cs: Vec<_> = s.iter().map(|s| cand(0, s)).collect();
        let counts = histogram(Balance::Weighted, &cs, Instant::now(), 30_000);
        for i in 0..3 {
            assert!((0.31..0.36).contains(&share(&counts, i)), "{counts:?}");
        }
    }

    #[test]
    fn least_in_flight_picks_the_idlest_with_weighted_ties() {
        fastrand::seed(3);
        let s: Vec<TargetStats> = (0..3).map(|_| TargetStats::new()).collect();
        let now = Instant::now();
        let _busy = [s[0].enter(), s[0].enter(), s[1].enter(), s[2].enter()];
        let cs = [cand(1, &s[0]), cand(1, &s[1]), cand(3, &s[2])];
        // s[1] and s[2] tie at one in flight; weights 1:3.
        let counts = histogram(Balance::LeastInFlight, &cs, now, 20_000);
        assert_eq!(counts[0], 0);
        assert!((0.72..0.78).contains(&share(&counts, 2)), "{counts:?}");
        // Deterministic once one is strictly least.
        let _more = s[2].enter();
        for _ in 0..100 {
            assert_eq!(choose(Balance::LeastInFlight, &cs, now), Some(1));
        }
    }

    #[test]
    fn lowest_latency_prefers_fast_and_unmeasured_targets() {
        let s: Vec<TargetStats> = (0..3).map(|_| TargetStats::new()).collect();
        let now = Instant::now();
        s[0].record_ttft(300 * MS, now);
        s[1].record_ttft(120 * MS, now);
        // s[2] has no sample yet: it goes first so that it gets one.
        let cs = [cand(1, &s[0]), cand(1, &s[1]), cand(1, &s[2])];
        for _ in 0..100 {
            assert_eq!(choose(Balance::LowestLatency, &cs, now), Some(2));
        }
        s[2].record_ttft(500 * MS, now);
        for _ in 0..100 {
            assert_eq!(choose(Balance::LowestLatency, &cs, now), Some(1));
        }
        // The fastest is skipped when unavailable.
        let mut cs = cs;
        cs[1].available = false;
        assert_eq!(choose(Balance::LowestLatency, &cs, now), Some(0));
    }

    #[test]
    fn lowest_latency_ties_among_unmeasured_are_weighted() {
        fastrand::seed(5);
        let s: Vec<TargetStats> = (0..2).map(|_| TargetStats::new()).collect();
        let cs = [cand(1, &s[0]), cand(4, &s[1])];
        let counts = histogram(Balance::LowestLatency, &cs, Instant::now(), 20_000);
        assert!((0.77..0.83).contains(&share(&counts, 1)), "{counts:?}");
    }

    #[test]
    fn usage_aware_prefers_headroom() {
        let s: Vec<TargetStats> = (0..3).map(|_| TargetStats::new()).collect();
        let now = Instant::now();
        for _ in 0..50 {
            s[0].record_request(now);
        }
        for _ in 0..10 {
            s[1].record_request(now);
        }
        s[1].record_tokens(9_000, now);
        s[2].record_tokens(5_000, now);
        let cs = [
            // 50 of 100 rpm: headroom 0.5.
            Candidate {
                rpm_limit: Some(100),
                ..cand(1, &s[0])
            },
            // 10 of 100 rpm (0.9) but 9000 of 10000 tpm (0.1): headroom 0.1.
            Candidate {
                rpm_limit: Some(100),
                tpm_limit: Some(10_000),
                ..cand(1, &s[1])
            },
            // 5000 of 20000 tpm: headroom 0.75.
            Candidate {
                tpm_limit: Some(20_000),
                ..cand(1, &s[2])
            },
        ];
        for _ in 0..100 {
            assert_eq!(choose(Balance::UsageAware, &cs, now), Some(2));
        }
        let mut cs = cs;
        cs[2].available = false;
        assert_eq!(choose(Balance::UsageAware, &cs, now), Some(0));
    }

    #[test]
    fn usage_aware_takes_an_over_limit_target_only_when_all_are() {
        let s: Vec<TargetStats> = (0..3).map(|_| TargetStats::new()).collect();
        let now = Instant::now();
        for (stats, n) in s.iter().zip([120, 100, 150]) {
            for _ in 0..n {
                stats.record_request(now);
            }
        }
        let limited = |i: usize| Candidate {
            rpm_limit: Some(100),
            ..cand(1, &s[i])
        };
        // All at or over 100 rpm: the one exactly at its limit is least over.
        let cs = [limited(0), limited(1), limited(2)];
        for _ in 0..100 {
            assert_eq!(choose(Balance::UsageAware, &cs, now), Some(1));
        }
        // One with room beats all of them, however small its room.
        let roomy = TargetStats::new();
        for _ in 0..99 {
            roomy.record_request(now);
        }
        let cs = [
            limited(0),
            limited(1),
            Candidate {
                rpm_limit: Some(100),
                ..cand(1, &roomy)
            },
        ];
        assert_eq!(choose(Balance::UsageAware, &cs, now), Some(2));
        // A zero limit counts as "at the limit" and loses to one with room.
        let cs = [
            Candidate {
                rpm_limit: Some(0),
                ..cand(1, &s[0])
            },
            Candidate {
                rpm_limit: Some(100),
                ..cand(1, &roomy)
            },
        ];
        assert_eq!(choose(Balance::UsageAware, &cs, now), Some(1));
    }

    #[test]
    fn usage_aware_unlimited_and_unused_tie_weighted() {
        fastrand::seed(9);
        let s: Vec<TargetStats> = (0..2).map(|_| TargetStats::new()).collect();
        let cs = [
            cand(1, &s[0]),
            Candidate {
                rpm_limit: Some(10),
                ..cand(1, &s[1])
            },
        ];
        // Both have full headroom: 50/50.
        let counts = histogram(Balance::UsageAware, &cs, Instant::now(), 20_000);
        assert!((0.47..0.53).contains(&share(&counts, 0)), "{counts:?}");
    }
}
