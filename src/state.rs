//! Process-wide state shared by every connection: the current routing snapshot (swapped whole on
//! reload) and the long-lived pieces that outlive snapshots (pools, health, metrics, log queue).

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::routing::health::HealthRegistry;
use crate::routing::{compile, CompileError, Snapshot};
use crate::telemetry::metrics::GlobalMetrics;
use crate::telemetry::request_log::RequestLog;
use crate::upstream::PoolCache;

/// Capacity of the request-log queue; beyond it records are dropped and counted.
const LOG_QUEUE_CAPACITY: usize = 8_192;

pub struct AppState {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: GlobalMetrics,
    pub prometheus: Option<PrometheusHandle>,
    pub log: Arc<RequestLog>,
    pub pools: PoolCache,
    pub health: HealthRegistry,
    /// The file to reload from; `None` in zero-config mode.
    pub config_path: Option<PathBuf>,
}

impl AppState {
    pub fn new(config: &Config, config_path: Option<PathBuf>) -> Result<Arc<Self>, CompileError> {
        let prometheus = crate::telemetry::metrics::install();
        crate::telemetry::clock::init();
        let metrics = GlobalMetrics::new();
        let pools = PoolCache::default();
        let health = HealthRegistry::default();
        let snapshot = compile(config, &pools, &health)?;
        let log = RequestLog::new(
            LOG_QUEUE_CAPACITY,
            metrics.log_dropped.clone(),
            config.server.request_log,
        );
        Ok(Arc::new(Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            prometheus,
            log,
            pools,
            health,
            config_path,
        }))
    }

    /// Compiles `config` and swaps it in; in-flight requests finish on the snapshot they hold.
    pub fn apply(&self, config: &Config) -> Result<(), CompileError> {
        let snapshot = compile(config, &self.pools, &self.health)?;
        self.snapshot.store(Arc::new(snapshot));
        self.log.set_enabled(config.server.request_log);
        Ok(())
    }
}
