//! Governance on the request path: the key is identified before the body is read; once the
//! model is resolved, the targets the key may use are checked, its limits taken and its
//! budgets reserved at the dearest admitted target's price. All of it in memory (see
//! `governance::gate`); the resulting ticket rides on the request's `Settle`, which charges
//! each attempt's real cost.

use std::sync::Arc;

use http::request::Parts;

use crate::error::GatewayError;
use crate::governance::gate::{self, Estimate, RateHeaders, Ticket};
use crate::governance::table::Principal;
use crate::governance::Governor;
use crate::pricing::Price;
use crate::routing::snapshot::{Resolved, Snapshot, TargetRt};

/// The key of a governed request, removed from its headers (or query); `now` (Unix seconds)
/// decides whether it expired.
// Out of line here and below: the request path's functions stay as small (and as inlined) as
// they are without governance.
#[inline(never)]
pub(crate) fn identify(
    g: &Governor,
    parts: &mut Parts,
    now: i64,
) -> Result<Arc<Principal>, GatewayError> {
    gate::identify(&g.table(), &mut parts.headers, &mut parts.uri, now)
}

/// Whether the key may send `model` to this target.
pub(crate) fn admits(p: &Principal, model: &str, t: &TargetRt) -> bool {
    gate::check_target(
        p,
        model,
        &t.provider.id,
        t.model.as_deref().unwrap_or(model),
    )
    .is_ok()
}

/// What a request is expected to use: its input estimated from the body size, its output
/// from its limits (read with the routing fields; a Gemini body, which has none, is scanned).
pub(crate) fn estimate(
    g: &Governor,
    body: &[u8],
    fields: Option<&crate::dialect::openai::RequestFields<'_>>,
) -> Estimate {
    let ask = match fields {
        Some(f) => f.output(),
        None => crate::dialect::max_tokens::output_ask(body),
    };
    Estimate {
        // About four bytes a token; the reservation is replaced by the real count after.
        input: (body.len() as u64).div_ceil(4),
        // `n` / `candidateCount` answers each generate up to the limit.
        output: ask
            .max_tokens
            .unwrap_or_else(|| g.default_output_tokens())
            .saturating_mul(ask.choices),
    }
}

/// The fallbacks a request names in `x-ferrogate-fallbacks` (only looked for when it has
/// resilience headers at all).
pub(crate) fn named_fallbacks(headers: &http::HeaderMap, overridden: bool) -> &str {
    match overridden {
        true => headers
            .get(&super::resilient::X_FERROGATE_FALLBACKS)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        false => "",
    }
}

/// What to reserve for a request: its estimate and the price of the dearest target (and
/// fallback) the key may be served by; refused when the key may use none of them.
#[inline(never)]
pub(crate) fn reservation(
    p: &Principal,
    model: &str,
    resolved: &Resolved<'_>,
    snapshot: &Snapshot,
    est: Estimate,
    named: &str,
) -> Result<(Estimate, Option<Price>), GatewayError> {
    let mut first_refusal = None;
    let mut worst: Option<(f64, Option<Price>)> = None;
    let mut consider = |model: &str, provider: &str, served: &str, price: Option<Price>| {
        if let Err(e) = gate::check_target(p, model, provider, served) {
            first_refusal.get_or_insert(e);
            return;
        }
        let cost = price.map_or(f64::INFINITY, |pr| gate::worst_usd(&pr, est));
        if worst.is_none_or(|(w, _)| cost > w) {
            worst = Some((cost, price));
        }
    };
    // Every model the request may be served by: the route's targets, then every fallback the
    // resilience loop may turn to (configured by failure kind, or named in the request's
    // `x-ferrogate-fallbacks`). The reservation covers the dearest allowed target of them all.
    let mut consider_name = |name: &str, resolved: Option<Resolved<'_>>| match resolved {
        Some(Resolved::Route(route)) => {
            for t in &route.targets {
                let served = t.model.as_deref().unwrap_or(name);
                consider(name, &t.provider.id, served, t.price(served));
            }
        }
        Some(Resolved::Direct {
            provider,
            model: served,
        }) => consider(name, &provider.id, served, provider.prices.lookup(served)),
        None => {}
    };
    let fallbacks: Vec<&str> = match resolved {
        Resolved::Route(route) => {
            consider_name(model, Some(Resolved::Route(route)));
            route
                .fallbacks
                .iter()
                .chain(&route.context_window_fallbacks)
                .chain(&route.content_policy_fallbacks)
                .map(|n| &**n)
                .collect()
        }
        Resolved::Direct {
            provider,
            model: served,
        } => {
            consider_name(
                model,
                Some(Resolved::Direct {
                    provider,
                    model: served,
                }),
            );
            Vec::new()
        }
    };
    for name in fallbacks
        .into_iter()
        .chain(named.split(',').map(str::trim).filter(|n| !n.is_empty()))
    {
        consider_name(name, snapshot.resolve(name));
    }
    let Some((_, price)) = worst else {
        return Err(first_refusal
            .unwrap_or_else(|| GatewayError::Internal("a route without targets".into())));
    };
    Ok((est, price))
}

/// Takes the key's limits and reserves its budgets in this process's counters.
#[inline(never)]
pub(crate) fn admit_local(
    g: &Governor,
    p: &Arc<Principal>,
    (est, price): (Estimate, Option<Price>),
    model: &str,
    now: i64,
    rate: &mut RateHeaders,
) -> Result<Arc<Ticket>, GatewayError> {
    let admitted = gate::admit(p, est, price, model, &g.spend, now);
    finish(admitted, rate)
}

/// The same in Redis (one round trip).
pub(crate) async fn admit_shared(
    g: &Governor,
    shared: &Arc<crate::governance::shared::Shared>,
    p: &Arc<Principal>,
    (est, price): (Estimate, Option<Price>),
    model: &str,
    rate: &mut RateHeaders,
) -> Result<Arc<Ticket>, GatewayError> {
    let now = gate::now_unix();
    let admitted = gate::admit_shared(shared, p, est, price, model, &g.spend, now).await;
    finish(admitted, rate)
}

fn finish(
    admitted: Result<(Ticket, RateHeaders), (GatewayError, RateHeaders)>,
    rate: &mut RateHeaders,
) -> Result<Arc<Ticket>, GatewayError> {
    match admitted {
        Ok((ticket, headers)) => {
            *rate = headers;
            Ok(Arc::new(ticket))
        }
        Err((e, headers)) => {
            *rate = headers;
            Err(e)
        }
    }
}
