//! Prometheus metrics: the recorder (rendered on the gateway's own `/metrics`), metric names, and
//! handles resolved once per snapshot so the request path never looks anything up in a registry.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Label};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "ferrogate_requests_total";
pub const DURATION: &str = "ferrogate_request_duration_seconds";
pub const UPSTREAM_TTFB: &str = "ferrogate_upstream_ttfb_seconds";
pub const OVERHEAD: &str = "ferrogate_overhead_seconds";
pub const TOKENS: &str = "ferrogate_tokens_total";
pub const IN_FLIGHT: &str = "ferrogate_requests_in_flight";
pub const RELOADS: &str = "ferrogate_config_reloads_total";
pub const LOG_DROPPED: &str = "ferrogate_request_log_dropped_total";
pub const LOG_QUEUE_DEPTH: &str = "ferrogate_request_log_queue_depth";
pub const LOG_BACKLOG: &str = "ferrogate_request_log_store_backlog";
pub const LOG_STORE_UP: &str = "ferrogate_request_log_store_up";
pub const LOG_WRITTEN: &str = "ferrogate_request_log_written_total";
pub const LOG_STORE_ERRORS: &str = "ferrogate_request_log_store_errors_total";
pub const LOG_WRITE_LAG: &str = "ferrogate_request_log_write_lag_seconds";
pub const LOG_STORE_BYTES: &str = "ferrogate_request_log_store_bytes";
pub const COST: &str = "ferrogate_cost_usd_total";
pub const TTFT: &str = "ferrogate_time_to_first_token_seconds";
pub const REQUEST_ATTEMPTS: &str = "ferrogate_request_attempts";
pub const UNPRICED: &str = "ferrogate_unpriced_requests_total";

/// Latency buckets in seconds: microseconds (gateway overhead) up to minutes (long streams).
const SECONDS_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Attempts per request: 0 (refused) to well past the resilience loop's usual maximum.
const ATTEMPT_BUCKETS: &[f64] = &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; returns the handle used to render `/metrics`.
/// `None` when another recorder was installed first (metrics then go to that one).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full(REQUEST_ATTEMPTS.into()), ATTEMPT_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        "Requests answered, by model, target and HTTP status."
    );
    metrics::describe_histogram!(
        DURATION,
        metrics::Unit::Seconds,
        "Whole request duration, streaming included."
    );
    metrics::describe_histogram!(
        UPSTREAM_TTFB,
        metrics::Unit::Seconds,
        "Time from sending upstream to the upstream's response head."
    );
    metrics::describe_histogram!(
        OVERHEAD,
        metrics::Unit::Seconds,
        "Time spent in the gateway itself, excluding waiting on the upstream."
    );
    metrics::describe_counter!(
        TOKENS,
        "Tokens metered, by model, target and kind (prompt, completion, cached, reasoning)."
    );
    metrics::describe_gauge!(IN_FLIGHT, "Requests currently being served.");
    metrics::describe_counter!(RELOADS, "Configuration reloads by result (ok, failed).");
    metrics::describe_counter!(
        LOG_DROPPED,
        "Request log records dropped: the log queue was full, or the store's backlog was \
         (a store that is down or cannot keep up)."
    );
    metrics::describe_gauge!(
        LOG_QUEUE_DEPTH,
        "Request records queued for the log writer (sampled as it drains)."
    );
    metrics::describe_gauge!(
        LOG_BACKLOG,
        "Request records handed to the database store and not yet written."
    );
    metrics::describe_gauge!(
        LOG_STORE_UP,
        "1 while the request-log database store takes writes, 0 while it is down."
    );
    metrics::describe_counter!(
        LOG_WRITTEN,
        "Request records written to the database store."
    );
    metrics::describe_counter!(
        LOG_STORE_ERRORS,
        "Failed writes to the request-log database store (each retried)."
    );
    metrics::describe_histogram!(
        LOG_WRITE_LAG,
        metrics::Unit::Seconds,
        "From a request's end to its record being written to the database store (the oldest \
         record of each batch)."
    );
    metrics::describe_gauge!(
        LOG_STORE_BYTES,
        "Size of the request-log SQLite file in bytes (after retention)."
    );
    metrics::describe_histogram!(
        TTFT,
        metrics::Unit::Seconds,
        "Streamed requests: from the request's arrival to the first content sent to the client, \
         by model (from the request records, off the request path)."
    );
    metrics::describe_histogram!(
        REQUEST_ATTEMPTS,
        "Upstream attempts per request (0: refused before any; above 1: retries, fallbacks), by \
         model (from the request records, off the request path)."
    );
    metrics::describe_gauge!(
        COST,
        "Running total of what requests cost in USD at the configured prices, by model and \
         target (a gauge only because counters are integers here; it never decreases)."
    );
    metrics::describe_counter!(
        UNPRICED,
        "Requests with usage whose served model has no known price (their cost is unknown, \
         not 0), by model and target."
    );
}

/// Histograms filled from the request records by the log's drain thread (not the request
/// path): time to first token and attempts, by the record's model label (bounded as the
/// request metrics' are). Handles are resolved once per model; attempts are counted per batch
/// and recorded once per model and value (most requests make one attempt).
#[derive(Default)]
pub struct RecordMetrics {
    models: Vec<ModelHistograms>,
}

struct ModelHistograms {
    model: Arc<str>,
    ttft: Histogram,
    attempts: Histogram,
    /// This batch's requests by attempts made (0..=7; more are recorded one by one).
    counts: [usize; 8],
}

impl RecordMetrics {
    /// Observes one record: its model's histograms found by pointer first (a route's records
    /// share its label), then by name.
    pub fn observe(&mut self, model: &Arc<str>, ttft: Option<Duration>, attempts: u32) {
        let i = match self
            .models
            .iter()
            .position(|m| Arc::ptr_eq(&m.model, model))
            .or_else(|| self.models.iter().position(|m| *m.model == **model))
        {
            Some(i) => i,
            None => {
                let m = model.to_string();
                self.models.push(ModelHistograms {
                    model: Arc::clone(model),
                    ttft: metrics::histogram!(TTFT, "model" => m.clone()),
                    attempts: metrics::histogram!(REQUEST_ATTEMPTS, "model" => m),
                    counts: [0; 8],
                });
                self.models.len() - 1
            }
        };
        let h = &mut self.models[i];
        if let Some(t) = ttft {
            h.ttft.record(t.as_secs_f64());
        }
        match h.counts.get_mut(attempts as usize) {
            Some(c) => *c += 1,
            None => h.attempts.record(f64::from(attempts)),
        }
    }

    /// Records the batch's attempt counts.
    pub fn flush(&mut self) {
        for h in &mut self.models {
            for (attempts, count) in h.counts.iter_mut().enumerate() {
                if *count > 0 {
                    h.attempts.record_many(attempts as f64, *count);
                    *count = 0;
                }
            }
        }
    }
}

/// Periodic upkeep the exporter needs: histogram samples are kept raw until drained, so the
/// interval bounds their memory (at 30k req/s, 5 s held ~4 MB of samples).
pub fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

/// Handles for one (model label, target label) pair, resolved when a snapshot is compiled.
#[derive(Debug)]
pub struct RouteMetrics {
    pub model: Arc<str>,
    pub target: Arc<str>,
    pub ok: Counter,
    pub duration: Histogram,
    pub ttfb: Histogram,
    pub prompt_tokens: Counter,
    pub completion_tokens: Counter,
    pub cached_tokens: Counter,
    pub reasoning_tokens: Counter,
    pub cost_usd: Gauge,
    pub unpriced: Counter,
}

fn label(k: &'static str, v: &Arc<str>) -> Label {
    Label::new(k, v.to_string())
}

impl RouteMetrics {
    pub fn new(model: Arc<str>, target: Arc<str>) -> Self {
        let m = label("model", &model);
        let t = label("target", &target);
        let tokens = |kind: &'static str| {
            metrics::counter!(TOKENS, vec![m.clone(), t.clone(), Label::new("kind", kind)])
        };
        Self {
            ok: metrics::counter!(
                REQUESTS,
                vec![m.clone(), t.clone(), Label::new("status", "200")]
            ),
            duration: metrics::histogram!(DURATION, vec![m.clone()]),
            ttfb: metrics::histogram!(UPSTREAM_TTFB, vec![t.clone()]),
            prompt_tokens: tokens("prompt"),
            completion_tokens: tokens("completion"),
            cached_tokens: tokens("cached"),
            reasoning_tokens: tokens("reasoning"),
            cost_usd: metrics::gauge!(COST, vec![m.clone(), t.clone()]),
            unpriced: metrics::counter!(UNPRICED, vec![m.clone(), t.clone()]),
            model,
            target,
        }
    }

    /// The request counter for a status; 200 is pre-resolved, others (rarer) are looked up.
    pub fn count_status(&self, status: u16) {
        if status == 200 {
            self.ok.increment(1);
        } else {
            requests_counter(&self.model, &self.target, status).increment(1);
        }
    }

    pub fn record_usage(&self, u: &crate::usage::Usage) {
        self.prompt_tokens.increment(u.input);
        self.completion_tokens.increment(u.output);
        if u.cache_read > 0 {
            self.cached_tokens.increment(u.cache_read);
        }
        if u.reasoning > 0 {
            self.reasoning_tokens.increment(u.reasoning);
        }
    }
}

/// Request counter for requests that never reached a route (bad input, unknown model).
pub fn requests_counter(model: &str, target: &str, status: u16) -> Counter {
    metrics::counter!(
        REQUESTS,
        vec![
            Label::new("model", model.to_string()),
            Label::new("target", target.to_string()),
            Label::new("status", status.to_string()),
        ]
    )
}

/// Process-wide handles, resolved once.
pub struct GlobalMetrics {
    pub overhead_unary: Histogram,
    pub overhead_stream: Histogram,
    pub in_flight: Gauge,
    pub reloads_ok: Counter,
    pub reloads_failed: Counter,
}

impl GlobalMetrics {
    pub fn new() -> Self {
        Self {
            overhead_unary: metrics::histogram!(OVERHEAD, "stream" => "false"),
            overhead_stream: metrics::histogram!(OVERHEAD, "stream" => "true"),
            in_flight: metrics::gauge!(IN_FLIGHT),
            reloads_ok: metrics::counter!(RELOADS, "result" => "ok"),
            reloads_failed: metrics::counter!(RELOADS, "result" => "failed"),
        }
    }
}

impl Default for GlobalMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Upstream attempts made by the resilience loop, by target and outcome (`success`, `retry`,
/// `auth`, `context_window`, `content_policy`, `fatal`). Bounded labels: configured targets.
pub const ATTEMPTS: &str = "ferrogate_upstream_attempts_total";
/// Keys disabled after the provider rejected them (401/403), by provider.
pub const KEYS_DISABLED: &str = "ferrogate_keys_disabled_total";
/// Requests served by a fallback model, by the model asked for and the one that served.
pub const FALLBACKS: &str = "ferrogate_fallbacks_total";
/// Breaker state per target: 0 closed, 1 open, 2 half-open.
pub const BREAKER_STATE: &str = "ferrogate_breaker_state";
/// Hedged attempts started, and those that won, by model.
pub const HEDGES: &str = "ferrogate_hedges_total";

pub fn count_attempt(target: &str, outcome: &'static str) {
    metrics::counter!(ATTEMPTS, "target" => target.to_string(), "outcome" => outcome).increment(1);
}

pub fn count_key_disabled(provider: &str) {
    metrics::counter!(KEYS_DISABLED, "provider" => provider.to_string()).increment(1);
}

pub fn count_fallback(model: &str, served_by: &str) {
    metrics::counter!(FALLBACKS, "model" => model.to_string(), "served_by" => served_by.to_string())
        .increment(1);
}

pub fn set_breaker_state(target: &str, state: f64) {
    metrics::gauge!(BREAKER_STATE, "target" => target.to_string()).set(state);
}

pub fn count_hedge(model: &str, outcome: &'static str) {
    metrics::counter!(HEDGES, "model" => model.to_string(), "outcome" => outcome).increment(1);
}
