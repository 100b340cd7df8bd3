//! The request path's part of governance: find the key, check every level's rules, take its
//! rate limits and reserve its budgets — all in memory (a digest, a hash lookup, a few atomic
//! compare-and-swaps) — and, when the request ends, charge what it really cost and queue the
//! spend for the store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Uri};

use super::budget::{self, Reservation};
use super::entity::Level;
use super::keys;
use super::rate::{Admission, LimitKind, Remaining};
use super::shared::{SettleOp, Shared, SharedLevel, SharedRefusal};
use super::spend::{SpendQueue, SpendRow};
use super::table::{Counters, Node, Principal, Table};
use crate::config::governance::format_time;
use crate::error::GatewayError;
use crate::pricing::Price;
use crate::usage::Usage;

/// Unix seconds now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Finds the request's virtual key and removes it from the request (it never travels
/// upstream); refuses a missing, unknown, revoked or expired key.
pub fn identify(
    table: &Table,
    headers: &mut HeaderMap,
    uri: &mut Uri,
    now: i64,
) -> Result<Arc<Principal>, GatewayError> {
    let in_headers = keys::take_from_headers(headers, |key| table.find_value(key));
    // Keys in the query go too, whether or not a header had one.
    let in_query = uri
        .query()
        .is_some_and(|q| q.contains("key="))
        .then(|| take_from_query(uri))
        .flatten();
    let found = match (in_headers, in_query) {
        (Some(found), _) => found,
        (None, Some(key)) => table.find_value(key.as_bytes()),
        (None, None) => {
            let message = if keys::any_credential(headers, uri.query()) {
                "Invalid API key: this gateway takes ferrogate virtual keys (`fg-…`); with \
             `auth: passthrough` send yours in `x-ferrogate-key`."
            } else {
                "Missing API key: send a ferrogate virtual key as `Authorization: Bearer fg-…` \
             (or in the header your SDK uses for its key, or `x-ferrogate-key`)."
            };
            return Err(unauthenticated(message));
        }
    };
    let principal = found.ok_or_else(|| unauthenticated("Invalid API key."))?;
    if let Some(level) = principal.missing_parent {
        return Err(unauthenticated(&format!(
            "This key's {} no longer exists.",
            level.as_str()
        )));
    }
    for node in principal.levels() {
        let expired = node.expires_at.is_some_and(|t| t <= now);
        if node.revoked || expired {
            let whose = match node.level {
                Level::Key => "This key".to_string(),
                l => format!("This key's {}", l.as_str()),
            };
            let what = if node.revoked {
                "has been revoked"
            } else {
                "has expired"
            };
            return Err(unauthenticated(&format!("{whose} {what}.")));
        }
    }
    Ok(principal)
}

fn unauthenticated(message: &str) -> GatewayError {
    GatewayError::Unauthenticated {
        message: message.to_string(),
    }
}

/// Takes every virtual key out of the query (Gemini's `?key=`), returning the first.
fn take_from_query(uri: &mut Uri) -> Option<String> {
    let q = uri.query()?;
    let found = q.split('&').find_map(keys::query_key)?;
    let kept = keys::without_key_param(q);
    let path = uri.path();
    let pq = if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{kept}")
    };
    let mut parts = uri.clone().into_parts();
    if let Ok(pq) = pq.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(u) = Uri::from_parts(parts) {
            *uri = u;
        }
    }
    Some(found)
}

/// Whether every level admits a target: `Err` says which rule refuses it.
pub fn check_target(
    p: &Principal,
    model: &str,
    provider: &str,
    served: &str,
) -> Result<(), GatewayError> {
    if p.unrestricted {
        return Ok(());
    }
    for node in p.levels() {
        // The messages are built only on refusal: this runs for every target of every request.
        if !node.admits_model(model, provider, served) {
            return Err(GatewayError::Forbidden {
                message: format!("Model `{model}` is not allowed for {}.", whose(node)),
                code: "model_not_allowed",
            });
        }
        if !node.admits_provider(provider) {
            return Err(GatewayError::Forbidden {
                message: format!(
                    "Provider `{provider}` (serving `{model}`) is not allowed for {}.",
                    whose(node)
                ),
                code: "provider_not_allowed",
            });
        }
    }
    Ok(())
}

fn whose(node: &Node) -> String {
    match node.level {
        Level::Key => "this key".to_string(),
        l => format!("this key's {} `{}`", l.as_str(), node.name),
    }
}

/// What a request is expected to use, for the reservations.
#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    /// Input tokens, estimated from the body.
    pub input: u64,
    /// The most it may generate (`max_tokens` and its kin, or the default allowance).
    pub output: u64,
}

impl Estimate {
    pub fn tokens(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

/// The tightest requests and tokens limits over the levels, for `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<(u64, u64)>,
    pub tokens: Option<(u64, u64)>,
}

impl RateHeaders {
    fn tighten(&mut self, r: Remaining) {
        fn min(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<(u64, u64)> {
            match (a, b) {
                (Some(x), Some(y)) => Some(if y.1 < x.1 { y } else { x }),
                (x, None) => x,
                (None, y) => y,
            }
        }
        self.requests = min(self.requests, r.requests);
        self.tokens = min(self.tokens, r.tokens);
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }

    /// Writes `x-ratelimit-{limit,remaining}-{requests,tokens}`.
    pub fn write(&self, headers: &mut HeaderMap) {
        static NAMES: [[http::HeaderName; 2]; 2] = [
            [
                http::HeaderName::from_static("x-ratelimit-limit-requests"),
                http::HeaderName::from_static("x-ratelimit-remaining-requests"),
            ],
            [
                http::HeaderName::from_static("x-ratelimit-limit-tokens"),
                http::HeaderName::from_static("x-ratelimit-remaining-tokens"),
            ],
        ];
        for (kind, (names, value)) in NAMES.iter().zip([self.requests, self.tokens]).enumerate() {
            if let Some((limit, remaining)) = value {
                headers.insert(names[0].clone(), limit_value(kind, limit));
                headers.insert(
                    names[1].clone(),
                    crate::http_headers::number_value(remaining),
                );
            }
        }
    }
}

/// The value of a `x-ratelimit-limit-*` header. A limit rarely changes between requests: each
/// thread keeps the last value it wrote per kind and hands out a clone (a reference count)
/// instead of formatting and allocating it again.
fn limit_value(kind: usize, limit: u64) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<[Option<(u64, HeaderValue)>; 2]> =
            const { std::cell::RefCell::new([None, None]) };
    }
    LAST.with_borrow_mut(|last| match &last[kind] {
        Some((l, v)) if *l == limit => v.clone(),
        _ => {
            let v = crate::http_headers::number_value(limit);
            last[kind] = Some((limit, v.clone()));
            v
        }
    })
}

/// What one level holds for a request until it ends.
struct Hold {
    counters: Arc<Counters>,
    admission: Option<Admission>,
    reservation: Option<Reservation>,
}

/// An admitted request's holds on its key, team and customer. Each attempt that used tokens is
/// charged (`charge`); when the last reference goes, every reservation is replaced by what was
/// charged and every limit is corrected to the real tokens.
pub struct Ticket {
    principal: Arc<Principal>,
    /// One per level (key, team, customer): inline, no allocation per request.
    holds: smallvec::SmallVec<[Hold; 3]>,
    estimate: Estimate,
    charged_units: AtomicU64,
    charged_tokens: AtomicU64,
    any_usage: AtomicBool,
    spend: Arc<SpendQueue>,
    /// Refused after some levels admitted it: those give back everything.
    refused: bool,
    /// With Redis: the admission's id and what the request holds there (corrected by the
    /// settle task on drop).
    shared: Option<(Arc<Shared>, String, Vec<SharedLevel>)>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("key", &self.principal.key.id)
            .finish_non_exhaustive()
    }
}

/// The most `est` can cost at `price`, in USD: input at the dearer of the plain and
/// cache-write rates (a prompt written to the cache costs more), output at the dearer of plain
/// and reasoning.
pub fn worst_usd(price: &Price, est: Estimate) -> f64 {
    let input = price.input.max(price.cache_write.unwrap_or(0.0));
    let output = price.output.max(price.reasoning.unwrap_or(0.0));
    (est.input as f64 * input + est.output as f64 * output) / 1_000_000.0
}

/// The most a request may cost, in budget units; a budgeted key needs a price.
fn worst_units(
    p: &Principal,
    est: Estimate,
    price: Option<Price>,
    model: &str,
) -> Result<u64, GatewayError> {
    match (price, p.has_budget()) {
        (Some(price), _) => Ok(budget::units(worst_usd(&price, est))),
        (None, false) => Ok(0),
        (None, true) => Err(GatewayError::Forbidden {
            message: format!(
                "Model `{model}` has no known price, and this key has a budget: \
                 give it a price under `pricing:` in the gateway's config."
            ),
            code: "model_not_priced",
        }),
    }
}

/// The same as [`admit`], with the limits and budgets kept in Redis (several instances): one
/// round trip, all levels at once.
pub async fn admit_shared(
    shared: &Arc<Shared>,
    p: &Arc<Principal>,
    est: Estimate,
    price: Option<Price>,
    model: &str,
    spend: &Arc<SpendQueue>,
    now: i64,
) -> Result<(Ticket, RateHeaders), (GatewayError, RateHeaders)> {
    let mut headers = RateHeaders::default();
    let worst = worst_units(p, est, price, model).map_err(|e| (e, headers))?;
    let outcome = shared
        .admit(p, est.tokens(), worst, now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "governance: admission failed");
            (
                GatewayError::GovernanceUnavailable(
                    "The gateway cannot reach its shared rate-limit and budget counters; try again shortly."
                        .into(),
                ),
                headers,
            )
        })?;
    let levels: Vec<&Arc<Node>> = p.levels().collect();
    let node = |i: usize| levels.get(i).copied().unwrap_or(&p.key);
    let to_minute = u64::try_from(60 - now.rem_euclid(60)).unwrap_or(60);
    match outcome {
        Ok((member, held, left)) => {
            for [(rl, rleft), (tl, tleft)] in left {
                let pair =
                    |l: i64, r: i64| (l >= 0).then(|| (l as u64, u64::try_from(r).unwrap_or(0)));
                headers.tighten(Remaining {
                    requests: pair(rl, rleft),
                    tokens: pair(tl, tleft),
                });
            }
            let mut ticket = Ticket::new(p, est, spend);
            ticket.shared = Some((Arc::clone(shared), member, held));
            Ok((ticket, headers))
        }
        Err(refusal) => {
            let (i, what, limit, retry) = match refusal {
                SharedRefusal::Requests(i) => {
                    let l = node(i).counters.limit_config().rpm.unwrap_or(0);
                    headers.requests = Some((l, 0));
                    (i, "requests per minute", l, to_minute)
                }
                SharedRefusal::Tokens(i) => {
                    let l = node(i).counters.limit_config().tpm.unwrap_or(0);
                    headers.tokens = Some((l, 0));
                    (i, "tokens per minute", l, to_minute)
                }
                SharedRefusal::Concurrency(i) => {
                    let l = node(i).counters.limit_config().concurrency.unwrap_or(0);
                    (i, "concurrent requests", l, 1)
                }
                SharedRefusal::Budget(i) => {
                    let n = node(i);
                    let ends = n
                        .counters
                        .budget
                        .as_ref()
                        .and_then(|l| l.window().at(now).1);
                    return Err((budget_refusal(n, worst, ends, now), headers));
                }
            };
            Err((
                GatewayError::RateLimited {
                    message: format!(
                        "Rate limit reached for {}: {limit} {what}. Try again in {retry} s.",
                        whose(node(i))
                    ),
                    retry_after: Duration::from_secs(retry),
                },
                headers,
            ))
        }
    }
}

fn budget_refusal(node: &Node, worst: u64, resets_at: Option<i64>, now: i64) -> GatewayError {
    let resets = resets_at.map(|t| format!(" It resets at {}.", format_time(t)));
    GatewayError::BudgetExceeded {
        message: format!(
            "Budget exceeded for {}: the request may cost up to ${:.6}, more than the budget \
             has left.{}",
            whose(node),
            worst as f64 / budget::UNITS_PER_USD,
            resets.as_deref().unwrap_or(" It does not reset.")
        ),
        retry_after: resets_at
            .map(|t| Duration::from_secs(u64::try_from(t - now).unwrap_or(0).max(1))),
    }
}

/// Takes every level's limits and reserves every level's budget for a request expected to
/// use `est`, at `price` (the dearest target it may be served by; `None`: unpriced).
pub fn admit(
    p: &Arc<Principal>,
    est: Estimate,
    price: Option<Price>,
    model: &str,
    spend: &Arc<SpendQueue>,
    now: i64,
) -> Result<(Ticket, RateHeaders), (GatewayError, RateHeaders)> {
    let mut headers = RateHeaders::default();
    let mut ticket = Ticket::new(p, est, spend);
    let worst = worst_units(p, est, price, model).map_err(|e| (e, headers))?;
    for node in p.levels() {
        let c = &node.counters;
        let admission = if c.has_limits() {
            match c.limits.admit(now, est.tokens()) {
                Ok((a, remaining)) => {
                    headers.tighten(remaining);
                    Some(a)
                }
                Err(limited) => {
                    let (what, remaining) = match limited.kind {
                        LimitKind::Requests => ("requests per minute", &mut headers.requests),
                        LimitKind::Tokens => ("tokens per minute", &mut headers.tokens),
                        LimitKind::Concurrency => ("concurrent requests", &mut headers.requests),
                    };
                    if limited.kind != LimitKind::Concurrency {
                        *remaining = Some((limited.limit, 0));
                    }
                    ticket.refused = true;
                    let message = format!(
                        "Rate limit reached for {}: {} {what}. Try again in {} s.",
                        whose(node),
                        limited.limit,
                        limited.retry_after
                    );
                    return Err((
                        GatewayError::RateLimited {
                            message,
                            retry_after: Duration::from_secs(limited.retry_after),
                        },
                        headers,
                    ));
                }
            }
        } else {
            None
        };
        let reservation = match &c.budget {
            Some(ledger) => match ledger.reserve(now, worst) {
                Ok(r) => Some(r),
                Err(e) => {
                    // Give back this level's limits; earlier levels are released when
                    // `ticket` drops, as a request that used nothing.
                    if let Some(a) = admission {
                        c.limits.cancel(now, a);
                    }
                    ticket.refused = true;
                    let resets = e
                        .resets_at
                        .map(|t| format!(" It resets at {}.", format_time(t)));
                    let message = format!(
                        "Budget exceeded for {}: the request may cost up to ${:.6}, more than \
                         the budget has left.{}",
                        whose(node),
                        worst as f64 / budget::UNITS_PER_USD,
                        resets.as_deref().unwrap_or(" It does not reset.")
                    );
                    return Err((
                        GatewayError::BudgetExceeded {
                            message,
                            retry_after: e.resets_at.map(|t| {
                                Duration::from_secs(u64::try_from(t - now).unwrap_or(0).max(1))
                            }),
                        },
                        headers,
                    ));
                }
            },
            None => None,
        };
        ticket.holds.push(Hold {
            counters: Arc::clone(c),
            admission,
            reservation,
        });
    }
    Ok((ticket, headers))
}

impl Ticket {
    /// The key (with its team and customer) the request runs under.
    pub fn principal(&self) -> &Arc<Principal> {
        &self.principal
    }

    fn new(p: &Arc<Principal>, estimate: Estimate, spend: &Arc<SpendQueue>) -> Ticket {
        Ticket {
            principal: Arc::clone(p),
            holds: smallvec::SmallVec::new(),
            estimate,
            charged_units: AtomicU64::new(0),
            charged_tokens: AtomicU64::new(0),
            any_usage: AtomicBool::new(false),
            spend: Arc::clone(spend),
            refused: false,
            shared: None,
        }
    }

    /// Charges one attempt: `usage` at `price` (`None`: unpriced, charged nothing but counted),
    /// and queues its spend row. `model` is the route's model name, `target` its
    /// `provider/model` label.
    pub fn charge(&self, model: &Arc<str>, target: &Arc<str>, usage: &Usage, price: Option<Price>) {
        let units = price.map_or(0, |p| budget::units_nearest(p.cost(usage)));
        self.charged_units.fetch_add(units, Ordering::AcqRel);
        self.charged_tokens
            .fetch_add(usage.input + usage.output, Ordering::AcqRel);
        self.any_usage.store(true, Ordering::Release);
        let p = &self.principal;
        self.spend.push(SpendRow {
            hour: now_unix().div_euclid(3600) * 3600,
            key_id: Arc::clone(&p.key.id),
            team_id: p.team.as_ref().map(|n| Arc::clone(&n.id)),
            customer_id: p.customer.as_ref().map(|n| Arc::clone(&n.id)),
            model: Arc::clone(model),
            target: Arc::clone(target),
            requests: 1,
            input_tokens: usage.input,
            output_tokens: usage.output,
            cached_tokens: usage.cache_read,
            units,
            unpriced: u64::from(price.is_none()),
        });
    }
}

impl Ticket {
    /// Charges an attempt whose usage is unknown because it was cut short (the client left,
    /// or a deadline passed) after it may have reached the provider: its estimated input,
    /// which the provider bills once it read the prompt.
    pub fn charge_cut_short(&self, model: &Arc<str>, target: &Arc<str>, price: Option<Price>) {
        let usage = Usage {
            input: self.estimate.input,
            estimated: true,
            ..Usage::default()
        };
        self.charge(model, target, &usage, price);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let now = now_unix();
        let units = *self.charged_units.get_mut();
        // Limits count the real tokens; a request that reported none keeps its estimate.
        let tokens = if *self.any_usage.get_mut() {
            *self.charged_tokens.get_mut()
        } else {
            self.estimate.tokens()
        };
        if let Some((shared, member, levels)) = self.shared.take() {
            let mut op = SettleOp {
                member,
                incr: Vec::new(),
                slots: Vec::new(),
            };
            for l in levels {
                if let Some((k, reserved)) = l.budget {
                    op.incr.push((k, units as i64 - reserved as i64));
                }
                if let Some((k, reserved)) = l.tokens {
                    op.incr.push((k, tokens as i64 - reserved as i64));
                }
                if let Some((k, _)) = l.slot {
                    op.slots.push(k);
                }
            }
            shared.settle([op]);
        }
        let refused = self.refused;
        for hold in &mut self.holds {
            if let (Some(ledger), Some(r)) = (&hold.counters.budget, hold.reservation.take()) {
                ledger.settle(now, r, if refused { 0 } else { units });
            }
            if let Some(a) = hold.admission.take() {
                if refused {
                    hold.counters.limits.cancel(now, a);
                } else {
                    hold.counters.limits.finish(now, a, tokens);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::governance::{AccessPolicy, BudgetConfig, BudgetPeriod, LimitConfig};
    use crate::governance::entity::{Entity, Origin};
    use crate::governance::keys::KeyDigest;
    use http::HeaderValue;

    /// 2026-12-07 15:30:00 UTC.
    const NOW: i64 = 1_796_657_400;
    const KEY: &str = "fg-test0123456789abcdefghijklmnop";

    fn entity(id: &str, level: Level, policy: AccessPolicy) -> Entity {
        Entity {
            id: id.into(),
            level,
            name: id.into(),
            digest: (level == Level::Key).then(|| KeyDigest::of(KEY)),
            hint: None,
            team_id: None,
            customer_id: None,
            policy,
            metadata: serde_json::Value::Null,
            created_at: NOW - 100,
            updated_at: NOW - 100,
            revoked_at: None,
            origin: Origin::Admin,
        }
    }

    fn table(entities: Vec<Entity>) -> Table {
        Table::build(entities, &dashmap::DashMap::new(), &Default::default(), NOW)
    }

    #[test]
    fn rate_headers_carry_each_requests_own_numbers() {
        for (limit, remaining) in [(600, 599), (600, 12), (50, 0), (600, 7)] {
            let mut h = HeaderMap::new();
            RateHeaders {
                requests: Some((limit, remaining)),
                tokens: Some((limit * 1000, remaining * 1000)),
            }
            .write(&mut h);
            let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
            assert_eq!(get("x-ratelimit-limit-requests"), Some(limit.to_string()));
            assert_eq!(
                get("x-ratelimit-remaining-requests"),
                Some(remaining.to_string())
            );
            assert_eq!(
                get("x-ratelimit-limit-tokens"),
                Some((limit * 1000).to_string())
            );
            assert_eq!(
                get("x-ratelimit-remaining-tokens"),
                Some((remaining * 1000).to_string())
            );
        }
    }

    fn price() -> Price {
        Price {
            input: 1000.0,
            output: 2000.0,
            cache_read: None,
            cache_write: None,
            reasoning: None,
        }
    }

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn the_key_is_found_and_taken_out_of_the_request() {
        let t = table(vec![entity("k", Level::Key, AccessPolicy::default())]);
        let mut h = headers("authorization", &format!("Bearer {KEY}"));
        let mut uri: Uri = "/v1/chat/completions".parse().unwrap();
        let p = identify(&t, &mut h, &mut uri, NOW).unwrap();
        assert_eq!(&*p.key.id, "k");
        assert!(h.get("authorization").is_none());
        let mut uri: Uri = format!("/v1beta/models/m:generateContent?alt=sse&key={KEY}")
            .parse()
            .unwrap();
        identify(&t, &mut HeaderMap::new(), &mut uri, NOW).unwrap();
        assert_eq!(uri.query(), Some("alt=sse"));
        let mut none = HeaderMap::new();
        let e = identify(&t, &mut none, &mut uri, NOW).unwrap_err();
        assert!(e.to_string().contains("Missing"), "{e}");
    }

    #[test]
    fn every_copy_of_the_key_goes_and_other_values_stay() {
        let t = table(vec![entity("k", Level::Key, AccessPolicy::default())]);
        let mut h = HeaderMap::new();
        h.append("x-api-key", HeaderValue::from_static("sk-own"));
        h.append("x-api-key", HeaderValue::from_str(KEY).unwrap());
        h.append(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {KEY}")).unwrap(),
        );
        let encoded = KEY.replace('-', "%2D");
        let mut uri: Uri = format!("/v1beta/models/m:generateContent?key={encoded}&alt=sse")
            .parse()
            .unwrap();
        let p = identify(&t, &mut h, &mut uri, NOW).unwrap();
        assert_eq!(&*p.key.id, "k");
        let left: Vec<_> = h.get_all("x-api-key").iter().collect();
        assert_eq!(left, [HeaderValue::from_static("sk-own")]);
        assert!(h.get("authorization").is_none());
        assert_eq!(uri.query(), Some("alt=sse"));
    }

    #[test]
    fn a_key_found_once_is_found_again_from_the_cache_and_only_itself() {
        let t = table(vec![entity("k", Level::Key, AccessPolicy::default())]);
        let mut uri: Uri = "/".parse().unwrap();
        for _ in 0..2 {
            let p = identify(&t, &mut headers("x-api-key", KEY), &mut uri, NOW).unwrap();
            assert_eq!(&*p.key.id, "k");
        }
        // Same length, one character off: not found, from the cache or otherwise.
        let mut other = KEY.to_string();
        other.pop();
        other.push('Z');
        assert!(identify(&t, &mut headers("x-api-key", &other), &mut uri, NOW).is_err());
        assert!(t.find_value(KEY.as_bytes()).is_some());
    }

    #[test]
    fn revoked_and_expired_levels_refuse_the_key() {
        let mut team = entity("t", Level::Team, AccessPolicy::default());
        team.revoked_at = Some(NOW - 1);
        let mut key = entity("k", Level::Key, AccessPolicy::default());
        key.team_id = Some("t".into());
        let t = table(vec![key.clone(), team]);
        let mut uri: Uri = "/".parse().unwrap();
        let e = identify(&t, &mut headers("x-api-key", KEY), &mut uri, NOW).unwrap_err();
        assert!(e.to_string().contains("team has been revoked"), "{e}");
        key.team_id = None;
        key.policy.expires_at = Some(NOW);
        let t = table(vec![key]);
        let e = identify(&t, &mut headers("x-api-key", KEY), &mut uri, NOW).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
    }

    #[test]
    fn a_refusal_at_the_team_gives_back_what_the_key_took() {
        let limits = LimitConfig {
            rpm: Some(5),
            ..LimitConfig::default()
        };
        let mut key = entity(
            "k",
            Level::Key,
            AccessPolicy {
                limits,
                ..AccessPolicy::default()
            },
        );
        key.team_id = Some("t".into());
        let team = entity(
            "t",
            Level::Team,
            AccessPolicy {
                budget: Some(BudgetConfig {
                    usd: 0.0,
                    period: BudgetPeriod::Day,
                    calendar_aligned: true,
                }),
                ..AccessPolicy::default()
            },
        );
        let t = table(vec![key, team]);
        let mut uri: Uri = "/".parse().unwrap();
        let p = identify(&t, &mut headers("x-api-key", KEY), &mut uri, NOW).unwrap();
        let q = Arc::new(SpendQueue::default());
        let est = Estimate {
            input: 10,
            output: 10,
        };
        let (e, rate) = admit(&p, est, Some(price()), "m", &q, NOW).unwrap_err();
        assert!(matches!(e, GatewayError::BudgetExceeded { .. }), "{e}");
        assert!(e.to_string().contains("team"), "{e}");
        assert_eq!(rate.requests, Some((5, 4)));
        // The key's request-per-minute slot came back.
        let (_, rate) = admit(&p, est, Some(price()), "m", &q, NOW)
            .err()
            .map(|(_, r)| ((), r))
            .unwrap();
        assert_eq!(rate.requests, Some((5, 4)));
    }

    #[test]
    fn the_ticket_settles_the_real_cost_and_queues_its_spend() {
        let key = entity(
            "k",
            Level::Key,
            AccessPolicy {
                budget: Some(BudgetConfig {
                    usd: 1.0,
                    period: BudgetPeriod::Total,
                    calendar_aligned: true,
                }),
                ..AccessPolicy::default()
            },
        );
        let t = table(vec![key]);
        let mut uri: Uri = "/".parse().unwrap();
        let p = identify(&t, &mut headers("x-ferrogate-key", KEY), &mut uri, NOW).unwrap();
        let q = Arc::new(SpendQueue::default());
        let est = Estimate {
            input: 100,
            output: 100,
        };
        let ledger = p.key.counters.budget.as_ref().unwrap();
        let (ticket, _) = admit(&p, est, Some(price()), "m", &q, NOW).unwrap();
        // Reserved: 100 × 1000 + 100 × 2000 per million = 0.3 USD.
        assert_eq!(ledger.used(NOW), 30_000_000);
        let usage = Usage {
            input: 10,
            output: 5,
            ..Usage::default()
        };
        ticket.charge(&Arc::from("m"), &Arc::from("fake/x"), &usage, Some(price()));
        drop(ticket);
        // Charged: 10 × 1000 + 5 × 2000 per million = 0.02 USD.
        assert_eq!(ledger.used(NOW), 2_000_000);
        let rows = q.drain();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].units, rows[0].provider()), (2_000_000, "fake"));
        // An attempt cut short with nothing counted is charged its estimated input.
        let (ticket, _) = admit(&p, est, Some(price()), "m", &q, NOW).unwrap();
        ticket.charge_cut_short(&Arc::from("m"), &Arc::from("fake/x"), Some(price()));
        drop(ticket);
        // 0.02 before, plus 100 input tokens at 1000 per million.
        assert_eq!(ledger.used(NOW), 2_000_000 + 10_000_000);
        assert_eq!(q.drain()[0].input_tokens, 100);
        // A budget with no price for the model: refused, not served at 0.
        let (e, _) = admit(&p, est, None, "m", &q, NOW).unwrap_err();
        assert!(e.to_string().contains("no known price"), "{e}");
    }
}
