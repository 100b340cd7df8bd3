//! The resilience loop: attempts on a model's targets (balanced, breaker-aware, under
//! concurrency limits), retries with backoff and `retry-after`, key rotation on 401/403,
//! fallbacks to other models (by failure kind, or per request via `x-ferrogate-fallbacks`),
//! first-token / stall deadlines with streams primed until their first content, and an overall
//! deadline. Only routes that configure any of it come here; others take the single-attempt
//! path unchanged.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Response;

use super::body::GatewayBody;
use super::settle::{InFlight, Settle};
use super::{attempt, endpoint_label, AttemptCtx, Call, Chosen, ClientRequest, Failure, Inbound};
use crate::config::{HedgeConfig, HedgeDelay};
use crate::dialect::openai::RequestFields;
use crate::error::GatewayError;
use crate::resilience::balance::{self, Candidate};
use crate::resilience::breaker::{Admit, Outcome};
use crate::resilience::classify::{self, TransportFailure, Verdict};
use crate::resilience::limits::{Acquire, Permit};
use crate::resilience::stats::{OwnedInFlightGuard, TargetStats};
use crate::routing::snapshot::{Resolved, Route, Snapshot};
use crate::routing::target_state::{TargetState, KEY_DISABLE_FOR};
use crate::usage::Usage;

pub static X_FERROGATE_FALLBACKS: HeaderName = HeaderName::from_static("x-ferrogate-fallbacks");
pub static X_FERROGATE_FALLBACK: HeaderName = HeaderName::from_static("x-ferrogate-fallback");
pub static X_FERROGATE_ATTEMPTS: HeaderName = HeaderName::from_static("x-ferrogate-attempts");
static X_TIMEOUT_FIRST_TOKEN: HeaderName =
    HeaderName::from_static("x-ferrogate-first-token-timeout-ms");
static X_TIMEOUT_STALL: HeaderName = HeaderName::from_static("x-ferrogate-stall-timeout-ms");
static X_TIMEOUT_FIRST_BYTE: HeaderName =
    HeaderName::from_static("x-ferrogate-first-byte-timeout-ms");
static X_TIMEOUT_TOTAL: HeaderName = HeaderName::from_static("x-ferrogate-timeout-ms");

/// Most models tried for one request (the model and its fallbacks).
const MAX_MODELS: usize = 8;
/// Targets per model the candidate scan handles (beyond it, the first ones are used).
const MAX_TARGETS: usize = 64;

/// Per-request settings from headers (`x-ferrogate-*`), which override the model's.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    fallbacks: Option<Vec<String>>,
    first_token: Option<Duration>,
    stall: Option<Duration>,
    first_byte: Option<Duration>,
    total: Option<Duration>,
}

/// Whether the request carries any per-request resilience override. One pass over the
/// header names (a handful per request) instead of a hashed lookup per override name: this
/// runs on every request of the single-attempt path.
pub fn has_overrides(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| {
        let n = name.as_str();
        n.len() > 12
            && n.starts_with("x-ferrogate-")
            && (name == X_FERROGATE_FALLBACKS
                || name == X_TIMEOUT_FIRST_TOKEN
                || name == X_TIMEOUT_STALL
                || name == X_TIMEOUT_FIRST_BYTE
                || name == X_TIMEOUT_TOTAL)
    })
}

fn header_ms(headers: &HeaderMap, name: &HeaderName) -> Option<Duration> {
    let v = headers
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    (v > 0).then(|| Duration::from_millis(v))
}

impl Overrides {
    fn from_headers(headers: &HeaderMap) -> Self {
        let fallbacks = headers
            .get(&X_FERROGATE_FALLBACKS)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            });
        Overrides {
            fallbacks,
            first_token: header_ms(headers, &X_TIMEOUT_FIRST_TOKEN),
            stall: header_ms(headers, &X_TIMEOUT_STALL),
            first_byte: header_ms(headers, &X_TIMEOUT_FIRST_BYTE),
            total: header_ms(headers, &X_TIMEOUT_TOTAL),
        }
    }
}

/// What one request will try: the model's route first, then its fallbacks.
pub struct Plan {
    route: Arc<Route>,
    overrides: Overrides,
    /// A governed key: targets it may not use are skipped (never called), fallbacks included.
    pub principal: Option<Arc<crate::governance::table::Principal>>,
    /// Its limits and budget reservations, charged by the settle.
    pub ticket: Option<Arc<crate::governance::gate::Ticket>>,
}

impl Plan {
    /// `overridden`: what `has_overrides` said of these headers (the caller already asked).
    pub fn new(route: Arc<Route>, headers: &HeaderMap, overridden: bool) -> Self {
        // Most requests carry no override: one cheap scan instead of five lookups.
        let overrides = if overridden {
            Overrides::from_headers(headers)
        } else {
            Overrides::default()
        };
        Plan {
            route,
            overrides,
            principal: None,
            ticket: None,
        }
    }
}

/// The serving target's part in a request's accounting, released when it settles.
pub struct TargetHold {
    state: Arc<TargetState>,
    _permit: Option<Permit>,
    _in_flight: OwnedInFlightGuard,
    /// The API key's statistics, when the attempt used one of the provider's keys.
    key: Option<(Arc<TargetStats>, OwnedInFlightGuard)>,
}

impl TargetHold {
    fn new(
        state: Arc<TargetState>,
        permit: Option<Permit>,
        key: Option<Arc<TargetStats>>,
        now: Instant,
    ) -> Self {
        let in_flight = state.stats.enter_owned();
        state.stats.record_request(now);
        let key = key.map(|k| {
            k.record_request(now);
            let guard = k.enter_owned();
            (k, guard)
        });
        TargetHold {
            state,
            _permit: permit,
            _in_flight: in_flight,
            key,
        }
    }

    /// Called once when the request settles (success or not); dropping releases the permit
    /// and the in-flight counts.
    pub fn settle(self, usage: Option<&Usage>) {
        if let Some(u) = usage {
            let now = clock_now();
            self.state.stats.record_tokens(u.input + u.output, now);
            if let Some((k, _)) = &self.key {
                k.record_tokens(u.input + u.output, now);
            }
        }
    }
}

/// The statistics of the key an attempt uses, if any.
fn key_stats(chosen: &Chosen) -> Option<Arc<TargetStats>> {
    chosen
        .key
        .and_then(|k| chosen.provider.keys.get(k))
        .map(|k| Arc::clone(&k.state.stats))
}

/// The per-attempt timing settings of a route, with request overrides applied.
fn attempt_ctx(route: &Route, chosen: &Chosen, o: &Overrides, stream: bool) -> AttemptCtx {
    let p = &chosen.provider;
    let t = &route.timeouts;
    AttemptCtx {
        failover: true,
        prime: stream,
        first_token: o
            .first_token
            .or(t.first_token_ms.map(Duration::from_millis))
            .or(p.first_token_timeout),
        stall: o
            .stall
            .or(t.stall_ms.map(Duration::from_millis))
            .or(p.stall_timeout),
        first_byte: o.first_byte.or(t.first_byte_ms.map(Duration::from_millis)),
        total: o.total.or(t.total_ms.map(Duration::from_millis)),
    }
}

/// The attempt's target. `fallback` is the fallback model's name when this route serves one:
/// a target that forwards "the client's model name" then forwards that name instead.
fn chosen_from(route: &Route, idx: usize, fallback: Option<&Arc<str>>) -> Chosen {
    let t = &route.targets[idx];
    Chosen {
        provider: Arc::clone(&t.provider),
        upstream_model: t.model.clone().or_else(|| fallback.cloned()),
        deployment: t.deployment.clone(),
        metrics: Arc::clone(&t.metrics),
        served_header: t.served_header.clone(),
        key: None,
        served_price: t.served_price,
    }
}

/// How the last failure should steer what comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Try again (this model, then fallbacks).
    Retry,
    /// Skip to the context-window (or content-policy) fallbacks.
    ContextWindow,
    ContentPolicy,
    /// Stop: answer with this failure.
    Stop,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    plan: Plan,
    snapshot: &Arc<Snapshot>,
    in_flight: InFlight,
    request: &ClientRequest,
    fields: Option<&RequestFields<'_>>,
    inbound: &Inbound,
    model: &str,
    stream: bool,
    started: Instant,
    request_id: &HeaderValue,
) -> Result<Response<GatewayBody>, Failure> {
    let first_route = Arc::clone(&plan.route);
    let mut first_settle = Settle::new(
        in_flight,
        Arc::clone(&first_route.targets[0].metrics),
        request_id.clone(),
        endpoint_label(inbound),
        stream,
        started,
    );
    first_settle.ticket = plan.ticket.clone();
    first_settle.client = inbound.client.clone();
    // Counted as they are made (none, if every target is refused or open).
    first_settle.attempts = 0;
    let mut settle = Some(first_settle);
    let deadline_len = plan.overrides.total.or(first_route.deadline);
    let deadline = deadline_len.map(|d| started + d);

    // The models to try, in order; a failure kind may replace the rest of the list.
    let mut chain: Vec<Arc<str>> = Vec::with_capacity(4);
    chain.push(Arc::from(model));
    match &plan.overrides.fallbacks {
        Some(list) => chain.extend(list.iter().map(|s| Arc::from(s.as_str()))),
        None => chain.extend(first_route.fallbacks.iter().cloned()),
    }
    let mut attempts: u32 = 0;
    let mut last: Option<Failure> = None;
    let mut soonest_open: Option<Instant> = None;
    let mut saturated = false;
    let mut position = 0;
    let mut tried_models: Vec<Arc<str>> = Vec::new();

    while position < chain.len() && tried_models.len() < MAX_MODELS {
        let name = Arc::clone(&chain[position]);
        position += 1;
        if tried_models.iter().any(|m| **m == *name) {
            continue;
        }
        tried_models.push(Arc::clone(&name));
        let route: Arc<Route> = if position == 1 {
            Arc::clone(&first_route)
        } else {
            match snapshot.resolve(&name) {
                Some(Resolved::Route(r)) => Arc::clone(r),
                Some(Resolved::Direct { provider, model }) => {
                    Arc::new(Route::direct(provider, model))
                }
                None => continue, // names are checked at load; a header may name anything
            }
        };
        let is_fallback = position > 1;
        let mut tried = [false; MAX_TARGETS];
        // Targets whose breaker refused this request (kept out of a second round).
        let mut blocked = [false; MAX_TARGETS];
        if let Some(p) = &plan.principal {
            // Targets the key may not use are out from the start, as if refused.
            for (i, t) in route.targets.iter().take(MAX_TARGETS).enumerate() {
                if !super::govern::admits(p, &name, t) {
                    blocked[i] = true;
                    tried[i] = true;
                }
            }
        }
        let mut retries_here: u32 = 0;
        let budget = route.retry.attempts.max(1);
        let mut next = Next::Retry;
        while retries_here < budget {
            if deadline.is_some_and(|d| clock_now() >= d) {
                break;
            }
            let now = clock_now();
            // Candidates: not tried yet (unless it's the only one), breaker admits, a key.
            let n = route.targets.len().min(MAX_TARGETS);
            let stats: Vec<Candidate<'_>> = route.targets[..n]
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    // Skipped while its cooldown runs or a probe is out; once the next `admit`
                    // would probe, available (`admit` below decides who probes).
                    let open = match t.state.breaker.open_until(now) {
                        Some(until) => {
                            soonest_open = Some(soonest_open.map_or(until, |s| s.min(until)));
                            true
                        }
                        None => false,
                    };
                    Candidate {
                        weight: t.weight,
                        stats: &t.state.stats,
                        rpm_limit: t.rpm,
                        tpm_limit: t.tpm,
                        available: !open
                            && !blocked[i]
                            && (!tried[i] || n <= 1)
                            && t.provider.has_usable_key(now),
                    }
                })
                .collect();
            let mut choice = balance::choose(route.balance, &stats, now);
            drop(stats);
            if choice.is_none() && tried.iter().take(n).any(|t| *t) && n > 1 {
                // Every target was tried once and budget remains: a second round.
                tried = blocked;
                let again: Vec<Candidate<'_>> = route.targets[..n]
                    .iter()
                    .enumerate()
                    .map(|(i, t)| Candidate {
                        weight: t.weight,
                        stats: &t.state.stats,
                        rpm_limit: t.rpm,
                        tpm_limit: t.tpm,
                        available: !blocked[i]
                            && t.state.breaker.open_until(now).is_none()
                            && t.provider.has_usable_key(now),
                    })
                    .collect();
                choice = balance::choose(route.balance, &again, now);
            }
            let Some(idx) = choice else {
                break;
            };
            let target = &route.targets[idx];
            // Concurrency first (a free slot, or a wait in the bounded queue), then the
            // breaker: a half-open probe is only claimed by a request that will really go.
            // A target refused here is out for the rest of this request (`blocked`), so a
            // second round never spins on it.
            let permit = match &target.limit {
                None => None,
                Some(limit) => {
                    let got = match limit.try_acquire() {
                        Acquire::Now(p) => Some(p),
                        Acquire::Queue => {
                            let wait_until = deadline
                                .map(tokio::time::Instant::from_std)
                                .unwrap_or_else(|| {
                                    tokio::time::Instant::now() + Duration::from_secs(30)
                                });
                            limit.wait(wait_until).await
                        }
                        Acquire::Full => None,
                    };
                    if got.is_none() {
                        saturated = true;
                        blocked[idx] = true;
                        tried[idx] = true;
                        continue;
                    }
                    got
                }
            };
            if let Admit::Open { until } = target.state.breaker.admit(now) {
                // Another request took the half-open probe meanwhile.
                soonest_open = Some(soonest_open.map_or(until, |s| s.min(until)));
                blocked[idx] = true;
                tried[idx] = true;
                continue;
            }
            let mut chosen = chosen_from(&route, idx, is_fallback.then_some(&name));
            chosen.key = chosen.provider.choose_key(route.balance, now);
            let mut ctx = attempt_ctx(&route, &chosen, &plan.overrides, stream);
            // Whether the request's overall deadline, not the attempt's own, cut the first-byte
            // wait short (a timeout is then reported as the total deadline).
            let mut first_byte_is_deadline = false;
            if let Some(d) = deadline {
                // An attempt never outlives the request's overall deadline.
                let left = d.saturating_duration_since(now);
                let total = ctx.total.unwrap_or(chosen.provider.total_timeout).min(left);
                ctx.total = Some(total);
                let first_byte = ctx.first_byte.unwrap_or(chosen.provider.first_byte_timeout);
                first_byte_is_deadline = left < first_byte;
                ctx.first_byte = Some(first_byte.min(left));
            }
            let call = Call::new(&chosen, inbound, model, stream, ctx);
            let Some(mut s) = settle.take() else {
                break;
            };
            s.metrics = Arc::clone(&chosen.metrics);
            s.hold = Some(TargetHold::new(
                Arc::clone(&target.state),
                permit,
                key_stats(&chosen),
                now,
            ));
            attempts += 1;
            s.attempts = attempts;
            retries_here += 1;
            let attempt_started = clock_now();
            // Hedging: the first attempt of a model may get a twin on another target.
            let hedge = route
                .hedge
                .filter(|_| retries_here == 1 && route.targets.len() > 1);
            let (result, winner) = match hedge {
                Some(h) => {
                    hedged(HedgeRace {
                        route: &route,
                        hedge: h,
                        primary: &call,
                        primary_idx: idx,
                        tried,
                        settle: s,
                        request,
                        fields,
                        inbound,
                        model,
                        stream,
                        overrides: &plan.overrides,
                        started,
                        fallback: is_fallback.then_some(&name),
                    })
                    .await
                }
                None => (
                    attempt(&call, request.headers.clone(), request, fields, s).await,
                    idx,
                ),
            };
            let target = &route.targets[winner];
            match result {
                Ok(mut resp) => {
                    target.state.breaker.record(Outcome::Success, clock_now());
                    let ttft = attempt_started.elapsed();
                    target.state.stats.record_ttft(ttft, clock_now());
                    if winner == idx {
                        if let Some(k) = key_stats(&chosen) {
                            k.record_ttft(ttft, clock_now());
                        }
                    }
                    let h = resp.headers_mut();
                    h.insert(
                        &X_FERROGATE_ATTEMPTS,
                        crate::http_headers::number_value(u64::from(attempts)),
                    );
                    if is_fallback {
                        if let Ok(v) = HeaderValue::from_str(&name) {
                            h.insert(&X_FERROGATE_FALLBACK, v);
                        }
                        crate::telemetry::metrics::count_fallback(&first_route.name, &route.name);
                    }
                    target.state.attempts_ok.increment(1);
                    return Ok(resp);
                }
                Err(mut f) => {
                    if first_byte_is_deadline {
                        if let GatewayError::UpstreamTimeout {
                            deadline: d, after, ..
                        } = &mut f.error
                        {
                            if *d == crate::error::Deadline::FirstByte {
                                *d = crate::error::Deadline::Total;
                                *after = deadline_len.unwrap_or(*after);
                            }
                        }
                    }
                    // Take back the settle; drop this attempt's hold (permit, in-flight).
                    match f.settle.take() {
                        Some(mut s) => {
                            s.hold = None;
                            settle = Some(s);
                        }
                        None => return Err(f), // failed before routing: nothing to retry
                    }
                    let verdict = verdict_of(&f);
                    let now = clock_now();
                    // Client errors count as the target working (a half-open probe that got a
                    // 400 closes the breaker rather than leaving it half-open).
                    target.state.breaker.record(verdict.breaker_outcome(), now);
                    crate::telemetry::metrics::count_attempt(
                        &target.state.id,
                        verdict_label(verdict),
                    );
                    tracing::info!(
                        target = &*target.state.id,
                        attempt = attempts,
                        verdict = verdict_label(verdict),
                        error = %f.error,
                        "attempt failed"
                    );
                    let retry_after = f.retry.as_ref().and_then(|r| r.retry_after);
                    next = match verdict {
                        Verdict::Fatal => Next::Stop,
                        Verdict::NextKey => {
                            if let Some(k) = chosen.key {
                                chosen.provider.keys[k].state.disable(now, KEY_DISABLE_FOR);
                                crate::telemetry::metrics::count_key_disabled(&chosen.provider.id);
                                tracing::warn!(
                                    provider = &*chosen.provider.id,
                                    key_index = k,
                                    "the provider rejected a key; disabled for {}s",
                                    KEY_DISABLE_FOR.as_secs()
                                );
                                // Another key of the same target doesn't use up the budget.
                                if chosen.provider.has_usable_key(now) {
                                    retries_here -= 1;
                                } else {
                                    tried[idx] = true;
                                }
                            } else {
                                tried[idx] = true;
                            }
                            Next::Retry
                        }
                        Verdict::ContextWindow => Next::ContextWindow,
                        Verdict::ContentPolicy => Next::ContentPolicy,
                        Verdict::Retry => {
                            tried[idx] = true;
                            Next::Retry
                        }
                    };
                    last = Some(f);
                    if next != Next::Retry {
                        break;
                    }
                    // Back off before the next attempt on this model (not before a key swap).
                    // Back off only when the next attempt goes to the same target again:
                    // failing over to another target is immediate.
                    let others_left =
                        route
                            .targets
                            .iter()
                            .take(MAX_TARGETS)
                            .enumerate()
                            .any(|(i, t)| {
                                i != winner
                                    && !tried[i]
                                    && t.state.breaker.open_until(now).is_none()
                            });
                    if verdict == Verdict::Retry && retries_here < budget && !others_left {
                        let wait = match retry_after {
                            Some(ra)
                                if ra <= Duration::from_millis(route.retry.retry_after_max_ms) =>
                            {
                                ra
                            }
                            Some(_) => {
                                // Longer than we're willing to wait: this model is done;
                                // fallbacks (if any) next.
                                retries_here = budget;
                                Duration::ZERO
                            }
                            None => crate::resilience::backoff::delay(
                                retries_here,
                                Duration::from_millis(route.retry.backoff_initial_ms),
                                Duration::from_millis(route.retry.backoff_max_ms),
                            ),
                        };
                        let wait = match deadline {
                            Some(d) => wait.min(d.saturating_duration_since(clock_now())),
                            None => wait,
                        };
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
            }
        }
        match next {
            Next::Stop => break,
            Next::ContextWindow | Next::ContentPolicy => {
                let list = if next == Next::ContextWindow {
                    &route.context_window_fallbacks
                } else {
                    &route.content_policy_fallbacks
                };
                if list.is_empty() {
                    break;
                }
                chain.truncate(position);
                chain.extend(list.iter().cloned());
            }
            Next::Retry => {}
        }
    }

    // Nothing succeeded: the last upstream answer as the client would have seen it, or why
    // nothing could be tried.
    match last {
        Some(mut f) => {
            if let Some(r) = f.retry.take() {
                let mut answer = r.answer;
                answer.headers_mut().insert(
                    &X_FERROGATE_ATTEMPTS,
                    crate::http_headers::number_value(u64::from(attempts)),
                );
                if let Some(s) = settle.take() {
                    s.finish(r.status, None, false);
                }
                return Ok(answer);
            }
            f.settle = settle.take();
            Err(f)
        }
        None => {
            let retry_after = soonest_open
                .map(|t| t.saturating_duration_since(clock_now()))
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(1));
            let message = if saturated {
                format!("Every target of `{model}` is at its concurrency limit; retry later.")
            } else {
                format!(
                    "Every target of `{model}` (and its fallbacks) is unavailable: ejected after failures or without a usable key; retry later."
                )
            };
            Err(Failure {
                error: GatewayError::NoTargetAvailable {
                    message,
                    retry_after,
                    saturated,
                },
                settle: settle.take(),
                retry: None,
            })
        }
    }
}

/// Another target to hedge to: available and not already racing or tried.
fn second_choice(route: &Route, busy: &[bool], now: Instant) -> Option<usize> {
    let n = route.targets.len().min(MAX_TARGETS);
    let cands: Vec<Candidate<'_>> = route.targets[..n]
        .iter()
        .enumerate()
        .map(|(i, t)| Candidate {
            weight: t.weight,
            stats: &t.state.stats,
            rpm_limit: t.rpm,
            tpm_limit: t.tpm,
            available: !busy[i]
                && t.state.breaker.open_until(now).is_none()
                && t.limit.as_ref().is_none_or(|l| l.in_use() < l.max())
                && t.provider.has_usable_key(now),
        })
        .collect();
    balance::choose(route.balance, &cands, now)
}

struct HedgeRace<'a> {
    route: &'a Route,
    hedge: HedgeConfig,
    primary: &'a Call<'a>,
    primary_idx: usize,
    /// Targets already tried for this request (never hedged to).
    tried: [bool; MAX_TARGETS],
    settle: Settle,
    request: &'a ClientRequest,
    fields: Option<&'a RequestFields<'a>>,
    inbound: &'a Inbound,
    model: &'a str,
    stream: bool,
    overrides: &'a Overrides,
    started: Instant,
    fallback: Option<&'a Arc<str>>,
}

type Racer<'a> = std::pin::Pin<
    Box<dyn Future<Output = (usize, Result<Response<GatewayBody>, Failure>)> + Send + 'a>,
>;

/// What woke the race.
enum RaceEvent {
    /// An attempt finished: its position in the racer list, target and result.
    Done(usize, usize, Box<Result<Response<GatewayBody>, Failure>>),
    /// Time to start the next hedge.
    Hedge,
}

/// Runs the primary attempt; each time the hedge delay passes with no first content (no primed
/// answer) yet, starts the same request on another target, up to `max_hedges` twins. The first
/// attempt to answer is served; the others are cancelled (their upstream connections closed)
/// and record nothing. When every attempt fails, the primary's failure is returned. Returns the
/// result and the index of the target it came from.
async fn hedged(race: HedgeRace<'_>) -> (Result<Response<GatewayBody>, Failure>, usize) {
    let HedgeRace {
        route,
        hedge,
        primary,
        primary_idx,
        tried,
        mut settle,
        request,
        fields,
        inbound,
        model,
        stream,
        overrides,
        started,
        fallback,
    } = race;
    let now = clock_now();
    let delay = match hedge.after {
        HedgeDelay::FixedMs(ms) => Duration::from_millis(ms),
        HedgeDelay::P95 { min_ms } => {
            let min = Duration::from_millis(min_ms);
            route.targets[primary_idx]
                .state
                .stats
                .p95_ttft(now)
                .map_or(min, |p| p.max(min))
        }
    };
    let state = Arc::clone(settle.in_flight.state());
    let token = Arc::new(AtomicU8::new(0));
    settle.race = Some((Arc::clone(&token), 1));
    let request_id = settle.request_id.clone();
    let endpoint = settle.endpoint;
    let ticket = settle.ticket.clone();
    let client = settle.client.clone();
    let settle_attempts = settle.attempts;
    let mut busy = tried;
    busy[primary_idx] = true;

    let mut racers: Vec<Racer<'_>> = Vec::with_capacity(1 + hedge.max_hedges as usize);
    racers.push(Box::pin(async move {
        (
            primary_idx,
            attempt(primary, request.headers.clone(), request, fields, settle).await,
        )
    }));
    let mut race_ids: Vec<u8> = vec![1];
    let mut timer = Some(Box::pin(tokio::time::sleep(delay)));
    let mut hedges = 0u32;
    let mut primary_failure: Option<Failure> = None;
    loop {
        let event = std::future::poll_fn(|cx| {
            for (i, racer) in racers.iter_mut().enumerate() {
                if let std::task::Poll::Ready((target, r)) = racer.as_mut().poll(cx) {
                    return std::task::Poll::Ready(RaceEvent::Done(i, target, Box::new(r)));
                }
            }
            if let Some(t) = timer.as_mut() {
                if t.as_mut().poll(cx).is_ready() {
                    return std::task::Poll::Ready(RaceEvent::Hedge);
                }
            }
            std::task::Poll::Pending
        })
        .await;
        match event {
            RaceEvent::Done(i, target, r) => match *r {
                Ok(resp) => {
                    // The winner; every other racer is dropped (cancelled) when this returns, and
                    // their settles see they lost.
                    token.store(race_ids[i], Ordering::Release);
                    if race_ids[i] != 1 {
                        crate::telemetry::metrics::count_hedge(&route.name, "won");
                    }
                    if racers.len() > 1 || hedges > 0 {
                        wasted(&route.name, request, racers.len() as u64 - 1);
                    }
                    if let Some(f) = primary_failure.take() {
                        discard(f);
                    }
                    return (Ok(resp), target);
                }
                Err(f) => {
                    let id = race_ids.swap_remove(i);
                    drop(racers.swap_remove(i));
                    if id == 1 {
                        primary_failure = Some(unrace_failure(f));
                    } else {
                        // The twin's target answers for its own failure (it may have been a
                        // half-open probe).
                        route.targets[target]
                            .state
                            .breaker
                            .record(verdict_of(&f).breaker_outcome(), clock_now());
                        discard(f);
                    }
                    if racers.is_empty() && timer.is_none() {
                        break;
                    }
                    if racers.is_empty() {
                        // Nothing running: hedge now rather than after the delay.
                        timer = Some(Box::pin(tokio::time::sleep(Duration::ZERO)));
                    }
                }
            },
            RaceEvent::Hedge => {
                timer = None;
                // A twin goes only where a slot is free now and the breaker admits it; a
                // target that refuses is skipped and the next one tried.
                let mut twin = None;
                while let Some(j) = second_choice(route, &busy, clock_now()) {
                    busy[j] = true;
                    let target = &route.targets[j];
                    let permit = match target.limit.as_ref().map(|l| l.try_acquire()) {
                        None => None,
                        Some(Acquire::Now(p)) => Some(p),
                        Some(_) => continue,
                    };
                    if matches!(target.state.breaker.admit(clock_now()), Admit::Open { .. }) {
                        continue;
                    }
                    twin = Some((j, permit));
                    break;
                }
                let Some((j, permit)) = twin else {
                    if racers.is_empty() {
                        break;
                    }
                    continue;
                };
                hedges += 1;
                let id = (hedges + 1) as u8;
                let target = &route.targets[j];
                let mut chosen = chosen_from(route, j, fallback);
                chosen.key = chosen.provider.choose_key(route.balance, clock_now());
                let ctx = attempt_ctx(route, &chosen, overrides, stream);
                let mut twin_settle = Settle::new(
                    InFlight::enter(&state),
                    Arc::clone(&chosen.metrics),
                    request_id.clone(),
                    endpoint,
                    stream,
                    started,
                );
                twin_settle.race = Some((Arc::clone(&token), id));
                twin_settle.ticket = ticket.clone();
                twin_settle.client = client.clone();
                twin_settle.attempts = settle_attempts;
                twin_settle.hold = Some(TargetHold::new(
                    Arc::clone(&target.state),
                    permit,
                    key_stats(&chosen),
                    clock_now(),
                ));
                crate::telemetry::metrics::count_hedge(&route.name, "started");
                racers.push(Box::pin(async move {
                    let call = Call::new(&chosen, inbound, model, stream, ctx);
                    (
                        j,
                        attempt(&call, request.headers.clone(), request, fields, twin_settle).await,
                    )
                }));
                race_ids.push(id);
                if hedges < hedge.max_hedges {
                    timer = Some(Box::pin(tokio::time::sleep(delay)));
                }
            }
        }
    }
    match primary_failure {
        Some(f) => (Err(f), primary_idx),
        None => (
            Err(Failure::from(GatewayError::Internal(
                "every hedged attempt failed".into(),
            ))),
            primary_idx,
        ),
    }
}

/// The request's tokens spent on the attempts that lost a hedge race (estimated as their
/// prompts: a loser is cancelled before or right after its first content).
fn wasted(model: &str, request: &ClientRequest, losers: u64) {
    metrics::counter!(
        "ferrogate_hedge_wasted_tokens_total",
        "model" => model.to_string()
    )
    .increment((request.body.len() / 4) as u64 * losers);
}

fn discard(mut f: Failure) {
    if let Some(s) = f.settle.take() {
        s.discard();
    }
}

/// A failure's settle leaves the race (it is the request's only settle again).
fn unrace_failure(mut f: Failure) -> Failure {
    if let Some(s) = f.settle.as_mut() {
        s.race = None;
    }
    f
}

/// Now, on tokio's clock (the same as the system's monotonic clock in production; tests can
/// pause and advance it).
fn clock_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// What a failed attempt means for the loop.
fn verdict_of(f: &Failure) -> Verdict {
    match &f.retry {
        Some(r) => classify::classify(r.status, &r.info),
        None => match transport_failure(&f.error) {
            Some(t) => classify::classify_transport(t),
            None => Verdict::Fatal,
        },
    }
}

fn transport_failure(e: &GatewayError) -> Option<TransportFailure> {
    use crate::error::Deadline;
    Some(match e {
        GatewayError::UpstreamConnect { .. } => TransportFailure::Connect,
        GatewayError::UpstreamTimeout { deadline, .. } => match deadline {
            Deadline::Connect => TransportFailure::ConnectTimeout,
            Deadline::FirstByte => TransportFailure::FirstByteTimeout,
            Deadline::Total => TransportFailure::FirstByteTimeout,
        },
        GatewayError::UpstreamProtocol { .. } => TransportFailure::Protocol,
        _ => return None,
    })
}

fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Retry => "retry",
        Verdict::NextKey => "auth",
        Verdict::ContextWindow => "context_window",
        Verdict::ContentPolicy => "content_policy",
        Verdict::Fatal => "fatal",
    }
}
