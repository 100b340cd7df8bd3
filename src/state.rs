//! Process-wide state shared by every connection: the current routing snapshot (swapped whole on
//! reload) and the long-lived pieces that outlive snapshots (pools, health, metrics, log queue).

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::logs::LogsConfig;
use crate::config::Config;
use crate::governance::Governor;
use crate::logs::Logs;
use crate::routing::health::HealthRegistry;
use crate::routing::{compile, CompileError, Snapshot};
use crate::telemetry::metrics::GlobalMetrics;
use crate::telemetry::request_log::RequestLog;
use crate::upstream::PoolCache;

pub struct AppState {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: GlobalMetrics,
    pub prometheus: Option<PrometheusHandle>,
    pub log: Arc<RequestLog>,
    /// Where the records go: the stores the query API reads, the sinks.
    pub logs: Arc<Logs>,
    /// The `logs:` section the stores were opened with (changing it needs a restart).
    logs_config: LogsConfig,
    pub pools: PoolCache,
    pub health: HealthRegistry,
    /// The file to reload from; `None` in zero-config mode.
    pub config_path: Option<PathBuf>,
    /// Virtual keys, limits and budgets; `None` when the config has no `governance:`.
    pub governor: Option<Arc<Governor>>,
}

impl AppState {
    /// `governor` is started by the caller (it opens a store) when `config.governance` is set;
    /// so are `logs` when the config names a database store (`None`: records in memory).
    pub fn new(
        config: &Config,
        config_path: Option<PathBuf>,
        governor: Option<Arc<Governor>>,
        logs: Option<Arc<Logs>>,
    ) -> Result<Arc<Self>, CompileError> {
        let prometheus = crate::telemetry::metrics::install();
        crate::telemetry::clock::init();
        let metrics = GlobalMetrics::new();
        let pools = PoolCache::default();
        let health = HealthRegistry::default();
        let snapshot = compile(config, &pools, &health)?;
        let logs = logs.unwrap_or_else(|| {
            Logs::memory(
                &config.logs,
                RequestLog::standard(config.server.request_log),
            )
        });
        Ok(Arc::new(Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            prometheus,
            log: Arc::clone(logs.queue()),
            logs,
            logs_config: config.logs.clone(),
            pools,
            health,
            config_path,
            governor,
        }))
    }

    /// Compiles `config` and swaps it in; in-flight requests finish on the snapshot they hold.
    pub fn apply(&self, config: &Config) -> Result<(), CompileError> {
        // Turning governance on or off, or moving its store, needs a restart: a reload that
        // silently left requests ungoverned would be worse than one refused.
        let restart = match (&self.governor, &config.governance) {
            (None, None) => None,
            (Some(_), None) => Some("removing `governance`"),
            (None, Some(_)) => Some("adding `governance`"),
            (Some(g), Some(c)) if g.store_url() != &c.store => Some("changing `governance.store`"),
            (Some(g), Some(c)) if g.redis_url() != c.redis.as_deref() => {
                Some("changing `governance.redis`")
            }
            (Some(g), Some(c)) if g.fixed_intervals() != (c.flush_interval, c.sync_interval) => {
                Some("changing `governance.flush_interval_ms` or `sync_interval_ms`")
            }
            (Some(_), Some(_)) => None,
        }
        .or((self.logs_config != config.logs).then_some("changing `logs`"));
        if let Some(what) = restart {
            return Err(CompileError::Restart { what });
        }
        let snapshot = compile(config, &self.pools, &self.health)?;
        self.snapshot.store(Arc::new(snapshot));
        self.log.set_stderr(config.server.request_log);
        if let (Some(g), Some(c)) = (&self.governor, &config.governance) {
            let (g, c) = (Arc::clone(g), c.clone());
            // Declared keys and the master key: rebuilt off the reload path (it reads the store).
            tokio::spawn(async move {
                if let Err(e) = g.apply(&c).await {
                    tracing::error!(error = %e, "governance: applying the reloaded keys failed");
                }
            });
        }
        Ok(())
    }
}
