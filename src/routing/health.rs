//! Provider health as seen by the request path: consecutive connection-level failures. Kept in a
//! registry keyed by provider id so a config reload does not reset it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

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

/// Health state by provider id; only consulted when compiling a snapshot.
#[derive(Default)]
pub struct HealthRegistry {
    by_id: Mutex<HashMap<String, Arc<ProviderHealth>>>,
}

impl HealthRegistry {
    pub fn get(&self, id: &str) -> Arc<ProviderHealth> {
        let mut map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(id.to_string()).or_default())
    }
}
