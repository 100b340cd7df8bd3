//! Settling a finished request: status and token metrics, duration and overhead histograms, the
//! in-flight gauge, and the request-log record. Runs exactly once per request, also when the
//! client goes away mid-stream (from the body's `Drop`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;

use crate::governance::table::Principal;
use crate::pricing::Price;
use crate::state::AppState;
use crate::telemetry::metrics::RouteMetrics;
use crate::telemetry::request_log::{ClientMeta, RecordMeta, RequestRecord};
use crate::usage::Usage;

/// Keeps the in-flight gauge honest: incremented on creation, decremented on drop.
pub struct InFlight(Arc<AppState>);

impl InFlight {
    pub fn enter(state: &Arc<AppState>) -> Self {
        state.metrics.in_flight.increment(1.0);
        InFlight(Arc::clone(state))
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.metrics.in_flight.decrement(1.0);
    }
}

/// Everything needed to account for one routed request once it ends.
pub struct Settle {
    pub in_flight: InFlight,
    pub metrics: Arc<RouteMetrics>,
    pub request_id: HeaderValue,
    pub endpoint: &'static str,
    pub stream: bool,
    pub started: Instant,
    /// Gateway time so far (before the response head went out).
    pub overhead: Duration,
    /// Set once recorded; a `Settle` dropped unrecorded means the client left before the
    /// response head (hyper drops the request future) and is recorded as such.
    pub recorded: bool,
    /// The resilience loop's hold on the serving target (concurrency permit, in-flight count,
    /// token accounting), released when the request settles.
    pub hold: Option<crate::proxy::resilient::TargetHold>,
    /// A hedged request runs two attempts, each with its own `Settle`; only the winner's
    /// records. `(token, mine)`: the token holds the winner's id once decided.
    pub race: Option<(Arc<std::sync::atomic::AtomicU8>, u8)>,
    /// The serving model's price (set by the attempt); `None`: no known price.
    pub price: Option<Price>,
    /// A governed request's hold on its key's limits and budgets: charged here with the real
    /// usage, released when the last settle of the request is gone.
    pub ticket: Option<Arc<crate::governance::gate::Ticket>>,
    /// For the record (key ids come from the ticket): who asked,
    pub client: Option<Arc<ClientMeta>>,
    /// and the upstream attempts made so far (the error code of a failed request is given
    /// to `fail`),
    pub attempts: u32,
    /// the upstream's time to its response head and a stream's time to first content
    /// (microseconds, 0: none).
    pub ttfb_us: u32,
    pub ttft_us: u32,
}

/// The ids of a key, its team and customer, into a record.
pub(crate) fn key_ids(p: &Principal, meta: &mut RecordMeta) {
    let d = meta.detail_mut();
    d.key_id = Some(Arc::clone(&p.key.id));
    d.team_id = p.team.as_ref().map(|n| Arc::clone(&n.id));
    d.customer_id = p.customer.as_ref().map(|n| Arc::clone(&n.id));
}

impl Settle {
    pub fn new(
        in_flight: InFlight,
        metrics: Arc<RouteMetrics>,
        request_id: HeaderValue,
        endpoint: &'static str,
        stream: bool,
        started: Instant,
    ) -> Self {
        Settle {
            in_flight,
            metrics,
            request_id,
            endpoint,
            stream,
            started,
            overhead: Duration::ZERO,
            recorded: false,
            hold: None,
            race: None,
            price: None,
            ticket: None,
            client: None,
            attempts: 1,
            ttfb_us: 0,
            ttft_us: 0,
        }
    }

    /// Drops this settle without recording anything (a hedged attempt that lost, or a
    /// duplicate of the request's real settle).
    pub fn discard(mut self) {
        self.recorded = true;
    }
}

/// Status recorded for requests whose client went away before the response head (nginx's
/// "client closed request").
pub const CLIENT_CLOSED: u16 = 499;

impl Settle {
    pub fn finish(mut self, status: u16, usage: Option<Usage>, client_cancelled: bool) {
        self.record(status, usage, client_cancelled, None);
    }

    /// Records a request that failed with the gateway's error `code`.
    pub fn fail(mut self, status: u16, code: &'static str) {
        self.record(status, None, false, Some(code));
    }

    fn record(
        &mut self,
        status: u16,
        usage: Option<Usage>,
        client_cancelled: bool,
        error: Option<&'static str>,
    ) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        if let Some((token, mine)) = &self.race {
            let winner = token.load(std::sync::atomic::Ordering::Acquire);
            if winner != 0 && winner != *mine {
                return; // the other attempt of a hedged request won; it records
            }
        }
        let state = self.in_flight.state();
        let duration = self.started.elapsed();
        self.metrics.count_status(status);
        self.metrics.duration.record(duration.as_secs_f64());
        let mut cost_usd = None;
        let known = usage.as_ref().is_some_and(|u| !u.counts_nothing());
        if let (false, Some(t)) = (known, &self.ticket) {
            // Cut short (client gone, or a deadline) with nothing counted: the provider may
            // have read the prompt already.
            if client_cancelled || status == 504 {
                t.charge_cut_short(&self.metrics.model, &self.metrics.target, self.price);
            }
        }
        if let Some(u) = usage.as_ref().filter(|u| !u.counts_nothing()) {
            if let Some(t) = &self.ticket {
                t.charge(&self.metrics.model, &self.metrics.target, u, self.price);
            }
            self.metrics.record_usage(u);
            match self.price {
                Some(price) => {
                    let cost = price.cost(u);
                    self.metrics.cost_usd.increment(cost);
                    cost_usd = Some(cost);
                }
                None => self.metrics.unpriced.increment(1),
            }
        }
        if let Some(hold) = self.hold.take() {
            hold.settle(usage.as_ref());
        }
        let overhead = self.overhead.as_secs_f64();
        if self.stream {
            state.metrics.overhead_stream.record(overhead);
        } else {
            state.metrics.overhead_unary.record(overhead);
        }
        if !state.log.enabled() {
            return;
        }
        let mut meta = RecordMeta {
            client: self.client.take(),
            detail: None,
        };
        if self.attempts != 1 || error.is_some() {
            let d = meta.detail_mut();
            d.attempts = self.attempts;
            d.error = error.map(std::borrow::Cow::Borrowed);
        }
        if let Some(t) = &self.ticket {
            key_ids(t.principal(), &mut meta);
        }
        state.log.push(RequestRecord {
            meta,
            finished_at: std::time::SystemTime::now(),
            request_id: std::mem::replace(&mut self.request_id, HeaderValue::from_static("-")),
            endpoint: self.endpoint,
            model: Arc::clone(&self.metrics.model),
            target: Arc::clone(&self.metrics.target),
            status,
            stream: self.stream,
            usage,
            cost_usd,
            duration,
            overhead: self.overhead,
            ttfb_us: self.ttfb_us,
            ttft_us: self.ttft_us,
            client_cancelled,
        });
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if !self.recorded {
            self.record(CLIENT_CLOSED, None, true, None);
        }
    }
}
