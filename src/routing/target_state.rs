//! Per-target and per-key state that must survive config reloads (breaker, live statistics,
//! concurrency limit, disabled keys), kept in the `HealthRegistry` by stable ids.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::BreakerConfig;
use crate::resilience::breaker::Breaker;
use crate::resilience::limits::ConcurrencyLimit;
use crate::resilience::stats::TargetStats;

/// One target's live state. The id is `provider/model` (`provider/*` when the client's model
/// name is forwarded), plus `@deployment` for Azure targets.
pub struct TargetState {
    pub id: Arc<str>,
    pub breaker: Breaker,
    pub stats: Arc<TargetStats>,
    /// `ferrogate_upstream_attempts_total{target, outcome="success"}`, resolved once (the
    /// common outcome; failures look their counter up when they happen).
    pub attempts_ok: metrics::Counter,
}

impl TargetState {
    pub fn new(id: Arc<str>, breaker: BreakerConfig) -> Self {
        Self {
            breaker: Breaker::new(breaker),
            stats: Arc::new(TargetStats::new()),
            attempts_ok: metrics::counter!(
                crate::telemetry::metrics::ATTEMPTS,
                "target" => id.to_string(),
                "outcome" => "success"
            ),
            id,
        }
    }
}

/// A concurrency limit with the settings it was built from (a reload with other settings gets
/// a new limit; requests holding permits of the old one finish on it).
pub struct LimitEntry {
    pub max: u32,
    pub queue: u32,
    pub limit: Arc<ConcurrencyLimit>,
}

/// Process start, the zero of the key clocks (an `Instant` cannot live in an atomic).
static EPOCH: std::sync::LazyLock<Instant> =
    std::sync::LazyLock::new(|| tokio::time::Instant::now().into_std());

/// How long a key that got 401/403 is left out before it is tried again.
pub const KEY_DISABLE_FOR: Duration = Duration::from_secs(600);

/// One API key's state: disabled (until a time) after the provider rejected it.
pub struct KeyState {
    /// Milliseconds since `EPOCH` until which the key is disabled; 0: enabled.
    disabled_until_ms: AtomicU64,
    /// In-flight count, TTFT and rpm/tpm of requests sent with this key (balancing across a
    /// provider's keys uses the model's strategy).
    pub stats: Arc<TargetStats>,
}

impl Default for KeyState {
    fn default() -> Self {
        // The clock's zero must precede every `now` a key is asked about.
        std::sync::LazyLock::force(&EPOCH);
        Self {
            disabled_until_ms: AtomicU64::new(0),
            stats: Arc::new(TargetStats::new()),
        }
    }
}

impl KeyState {
    /// Whether the key was disabled at some point (it may be enabled again by now); a load,
    /// no clock.
    pub fn ever_disabled(&self) -> bool {
        self.disabled_until_ms.load(Ordering::Relaxed) != 0
    }

    pub fn is_enabled(&self, now: Instant) -> bool {
        let until = self.disabled_until_ms.load(Ordering::Relaxed);
        until == 0 || ms_since_epoch(now) >= until
    }

    pub fn disable(&self, now: Instant, for_: Duration) {
        let until = ms_since_epoch(now) + for_.as_millis() as u64;
        self.disabled_until_ms
            .store(until.max(1), Ordering::Relaxed);
    }

    pub fn enable(&self) {
        self.disabled_until_ms.store(0, Ordering::Relaxed);
    }
}

fn ms_since_epoch(now: Instant) -> u64 {
    now.saturating_duration_since(*EPOCH).as_millis() as u64
}

/// A short, stable, non-reversible fingerprint of a key (FNV-1a), so key state can be found
/// again after a reload without keeping the key text as a map key.
pub fn key_fingerprint(provider: &str, key: &str) -> u64 {
    provider
        .bytes()
        .chain([0u8])
        .chain(key.bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

#[cfg(test)]
// Tests hand their own instants to the code under test; no deadline is decided by the clock.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn keys_disable_for_a_while() {
        let k = KeyState::default();
        let now = Instant::now();
        assert!(k.is_enabled(now));
        k.disable(now, Duration::from_secs(10));
        assert!(!k.is_enabled(now + Duration::from_secs(9)));
        assert!(k.is_enabled(now + Duration::from_secs(10)));
        k.enable();
        assert!(k.is_enabled(now));
        assert_ne!(key_fingerprint("a", "k1"), key_fingerprint("a", "k2"));
        assert_ne!(key_fingerprint("a", "k1"), key_fingerprint("b", "k1"));
    }
}
