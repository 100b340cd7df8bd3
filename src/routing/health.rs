//! Provider health as seen by the request path: consecutive connection-level failures. Kept in a
//! registry keyed by provider id so a config reload does not reset it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::config::BreakerConfig;
use crate::resilience::limits::ConcurrencyLimit;
use crate::routing::target_state::{KeyState, LimitEntry, TargetState};

/// Locked only while a snapshot is compiled (reloads) or `/metrics` is scraped, never on the
/// request path.
#[allow(clippy::disallowed_types)]
type CompileLock<T> = std::sync::Mutex<T>;

/// After this many consecutive failures a provider is "known to be down" for `/ready`.
pub const DOWN_AFTER_FAILURES: u32 = 5;

#[derive(Debug, Default)]
pub struct ProviderHealth {
    consecutive_failures: AtomicU32,
}

impl ProviderHealth {
    pub fn record_success(&self) {
        // Read first so the common healthy case doesn't write a shared cache line.
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    pub fn record_failure(&self) {
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn is_down(&self) -> bool {
        self.consecutive_failures.load(Ordering::Relaxed) >= DOWN_AFTER_FAILURES
    }
}

/// Health state by provider id, target state by target id and key state by key fingerprint;
/// only consulted when compiling a snapshot, so reloads keep what was learned.
#[derive(Default)]
pub struct HealthRegistry {
    by_id: CompileLock<HashMap<String, Arc<ProviderHealth>>>,
    targets: CompileLock<HashMap<String, Arc<TargetState>>>,
    limits: CompileLock<HashMap<String, LimitEntry>>,
    keys: CompileLock<HashMap<u64, Arc<KeyState>>>,
}

impl HealthRegistry {
    pub fn get(&self, id: &str) -> Arc<ProviderHealth> {
        let mut map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(id.to_string()).or_default())
    }

    /// The target's state, created on first sight; a reload updates its breaker settings.
    pub fn target(&self, id: &str, breaker: BreakerConfig) -> Arc<TargetState> {
        let mut map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        let state = map
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(TargetState::new(Arc::from(id), breaker)));
        state.breaker.set_config(breaker);
        Arc::clone(state)
    }

    /// The target's concurrency limit (`None` when unlimited); the same limit as long as its
    /// settings don't change.
    pub fn limit(&self, id: &str, max: Option<u32>, queue: u32) -> Option<Arc<ConcurrencyLimit>> {
        let mut map = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        let Some(max) = max else {
            map.remove(id);
            return None;
        };
        match map.get(id) {
            Some(e) if e.max == max && e.queue == queue => Some(Arc::clone(&e.limit)),
            _ => {
                let limit = Arc::new(ConcurrencyLimit::new(max, queue));
                map.insert(
                    id.to_string(),
                    LimitEntry {
                        max,
                        queue,
                        limit: Arc::clone(&limit),
                    },
                );
                Some(limit)
            }
        }
    }

    pub fn key(&self, fingerprint: u64) -> Arc<KeyState> {
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(fingerprint).or_default())
    }

    /// Every target's state, for the admin endpoint and metrics.
    pub fn targets(&self) -> Vec<Arc<TargetState>> {
        let map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map.values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}
