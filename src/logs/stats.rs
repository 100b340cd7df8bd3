//! Usage analytics (`GET /admin/v1/stats`): requests, errors, latency and time-to-first-token
//! percentiles, tokens and spend per group and period.
//!
//! A database store keeps them as rollups written with the records (one row per span, period,
//! dimension and group; counts and latency histograms summed by an upsert, so several
//! instances writing the same row add up), so a week grouped by model reads a few hundred
//! rows, not the week's records. Percentiles come from log-scale histograms: 60 buckets, each
//! 2^(1/3) (26%) wider than the one before, from 1 ms to 11 minutes, interpolated within the
//! bucket — within about 13% of the exact value. The memory store computes the same rows
//! from its records with the same histograms. Minute rollups are kept for two days and only
//! for models, targets and statuses (whose number the configuration bounds); keys, teams and
//! customers by the hour.

use std::collections::BTreeMap;

use super::query::finished_ms;
use crate::telemetry::request_log::RequestRecord;

/// Histogram buckets; bucket `i` holds values up to 2^(i/3) ms (the last: everything above
/// 2^(58/3) ms, about 11 minutes, which it reports as that).
pub const BUCKETS: usize = 60;

/// Rollup spans (milliseconds): minutes for the last days, hours for the whole retention.
pub const MINUTE: u64 = 60_000;
pub const HOUR: u64 = 3_600_000;
pub const DAY: u64 = 86_400_000;
/// Minute rollups are kept this long (hour rollups as long as the records).
pub const MINUTE_ROLLUP_RETENTION: u64 = 2 * DAY;
/// The most periods one answer holds (per group).
pub const MAX_PERIODS: u64 = 10_000;

/// The bucket of a duration in microseconds.
pub fn bucket(us: u64) -> usize {
    let ms = us as f64 / 1000.0;
    if ms <= 1.0 {
        return 0;
    }
    ((3.0 * ms.log2()).ceil() as usize).min(BUCKETS - 1)
}

/// Bucket `i`'s upper bound in milliseconds.
fn upper_ms(i: usize) -> f64 {
    (i as f64 / 3.0).exp2()
}

/// The value at quantile `q` (0..=1) of a histogram, in milliseconds; `None` when empty.
pub fn quantile(h: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let n: u64 = h.iter().sum();
    if n == 0 {
        return None;
    }
    let rank = (q * n as f64).max(1.0);
    let mut seen = 0.0;
    for (i, &c) in h.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let next = seen + c as f64;
        if next >= rank {
            let frac = (rank - seen) / c as f64;
            let (lo, hi) = match i {
                0 => (0.0, 1.0),
                i if i == BUCKETS - 1 => return Some(upper_ms(i - 1)),
                i => (upper_ms(i - 1), upper_ms(i)),
            };
            return Some(round3(lo + (hi - lo) * frac));
        }
        seen = next;
    }
    None
}

fn round3(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// What a stats query groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dimension {
    Model,
    Target,
    Key,
    Team,
    Customer,
    Status,
}

impl Dimension {
    pub const ALL: [Dimension; 6] = [
        Dimension::Model,
        Dimension::Target,
        Dimension::Key,
        Dimension::Team,
        Dimension::Customer,
        Dimension::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Model => "model",
            Dimension::Target => "target",
            Dimension::Key => "key",
            Dimension::Team => "team",
            Dimension::Customer => "customer",
            Dimension::Status => "status",
        }
    }

    pub fn parse(s: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Whether minute rollups are kept for it: the dimensions the configuration bounds (models,
    /// targets, statuses); keys, teams and customers (as many as the admin API made) are
    /// rolled up by the hour only.
    pub fn by_minute(self) -> bool {
        matches!(
            self,
            Dimension::Model | Dimension::Target | Dimension::Status
        )
    }

    /// A record's group in this dimension; `None`: it has none (no key, team or customer).
    pub fn group_of(self, r: &RequestRecord) -> Option<String> {
        match self {
            Dimension::Model => Some(r.model.to_string()),
            Dimension::Target => Some(r.target.to_string()),
            Dimension::Key => r.meta.key_id().map(|s| s.to_string()),
            Dimension::Team => r.meta.team_id().map(|s| s.to_string()),
            Dimension::Customer => r.meta.customer_id().map(|s| s.to_string()),
            Dimension::Status => Some(r.status.to_string()),
        }
    }
}

/// Periods of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub fn parse(s: &str) -> Option<Granularity> {
        match s {
            "minute" => Some(Granularity::Minute),
            "hour" => Some(Granularity::Hour),
            "day" => Some(Granularity::Day),
            _ => None,
        }
    }

    pub fn millis(self) -> u64 {
        match self {
            Granularity::Minute => MINUTE,
            Granularity::Hour => HOUR,
            Granularity::Day => DAY,
        }
    }

    /// The rollup span a database reads for it.
    pub fn span(self) -> u64 {
        match self {
            Granularity::Minute => MINUTE,
            Granularity::Hour | Granularity::Day => HOUR,
        }
    }
}

/// A stats query: `[from_ms, to_ms)`, aligned down/up to the granularity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    pub group_by: Dimension,
    pub granularity: Granularity,
    pub from_ms: u64,
    pub to_ms: u64,
}

/// Sums over some requests, with their histograms.
#[derive(Debug, Clone, PartialEq)]
pub struct Agg {
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub usd: f64,
    pub latency: [u64; BUCKETS],
    pub ttft: [u64; BUCKETS],
}

impl Default for Agg {
    fn default() -> Self {
        Agg {
            requests: 0,
            errors: 0,
            input_tokens: 0,
            output_tokens: 0,
            usd: 0.0,
            latency: [0; BUCKETS],
            ttft: [0; BUCKETS],
        }
    }
}

impl Agg {
    pub fn add(&mut self, r: &RequestRecord) {
        self.requests += 1;
        if r.status >= 400 || r.client_cancelled {
            self.errors += 1;
        }
        if let Some(u) = &r.usage {
            self.input_tokens += u.input;
            self.output_tokens += u.output;
            if let Some(c) = r.cost_usd.filter(|c| c.is_finite()) {
                self.usd += c;
            }
        }
        self.latency[bucket(r.duration.as_micros() as u64)] += 1;
        if r.ttft_us > 0 {
            self.ttft[bucket(u64::from(r.ttft_us))] += 1;
        }
    }

    pub fn merge(&mut self, o: &Agg) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.usd += o.usd;
        for i in 0..BUCKETS {
            self.latency[i] += o.latency[i];
            self.ttft[i] += o.ttft[i];
        }
    }
}

/// One row of an answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatsRow {
    pub group: String,
    /// The period's start (Unix milliseconds).
    pub period: u64,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub usd: f64,
}

impl StatsRow {
    pub fn of(group: String, period: u64, a: &Agg) -> StatsRow {
        StatsRow {
            group,
            period,
            requests: a.requests,
            errors: a.errors,
            p50_ms: quantile(&a.latency, 0.50),
            p95_ms: quantile(&a.latency, 0.95),
            p99_ms: quantile(&a.latency, 0.99),
            ttft_p50_ms: quantile(&a.ttft, 0.50),
            input_tokens: a.input_tokens,
            output_tokens: a.output_tokens,
            // Sums of many small prices: rounded to a nano-dollar, no float noise.
            usd: (a.usd * 1e9).round() / 1e9,
        }
    }
}

/// The rollup rows a batch adds: (span, period, dimension, group) → sums.
pub type Rollups = BTreeMap<(u64, u64, Dimension, String), Agg>;

pub fn rollups(batch: &[RequestRecord]) -> Rollups {
    let mut out = Rollups::new();
    add_rollups(&mut out, batch);
    out
}

/// Adds `from`'s rows to `into`.
pub fn merge_rollups(into: &mut Rollups, from: &Rollups) {
    for (k, a) in from {
        into.entry(k.clone()).or_default().merge(a);
    }
}

/// Adds a batch's rollups to `out`.
pub fn add_rollups(out: &mut Rollups, batch: &[RequestRecord]) {
    for r in batch {
        let at = finished_ms(r);
        for span in [MINUTE, HOUR] {
            let period = at - at % span;
            for d in Dimension::ALL {
                if span == MINUTE && !d.by_minute() {
                    continue;
                }
                if let Some(g) = d.group_of(r) {
                    out.entry((span, period, d, g)).or_default().add(r);
                }
            }
        }
    }
}

/// Rows for `q` from records (the memory store's answer), oldest period first, then group.
pub fn from_records<'a>(
    q: &StatsQuery,
    records: impl Iterator<Item = &'a RequestRecord>,
) -> Vec<StatsRow> {
    let g = q.granularity.millis();
    let mut sums: BTreeMap<(u64, String), Agg> = BTreeMap::new();
    for r in records {
        let at = finished_ms(r);
        if at < q.from_ms || at >= q.to_ms {
            continue;
        }
        if let Some(group) = q.group_by.group_of(r) {
            sums.entry((at - at % g, group)).or_default().add(r);
        }
    }
    sums.into_iter()
        .map(|((period, group), a)| StatsRow::of(group, period, &a))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_by_a_third_of_an_octave() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1_000), 0);
        assert_eq!(bucket(1_001), 1);
        assert_eq!(bucket(2_000), 3);
        assert_eq!(bucket(1_000_000), 30); // 1 s = 2^(29.9/3) ms
        assert_eq!(bucket(600_000_000), 58); // 10 minutes: still measured
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_within_a_bucket_of_the_exact_value() {
        let mut h = [0u64; BUCKETS];
        // 1..=1000 ms, one each.
        for ms in 1..=1000u64 {
            h[bucket(ms * 1000)] += 1;
        }
        for (q, exact) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = quantile(&h, q).unwrap();
            assert!((got - exact).abs() / exact < 0.13, "q{q}: {got} vs {exact}");
        }
        assert_eq!(quantile(&[0; BUCKETS], 0.5), None);
    }
}
