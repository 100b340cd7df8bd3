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
use crate::usage::Usage;

/// The key of a governed request, removed from its headers (or query).
pub(crate) fn identify(g: &Governor, parts: &mut Parts) -> Result<Arc<Principal>, GatewayError> {
    gate::identify(
        &g.table(),
        &mut parts.headers,
        &mut parts.uri,
        gate::now_unix(),
    )
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

/// Checks the targets `model` resolved to, then takes the key's limits and reserves its
/// budgets. `rate` gets the `x-ratelimit-*` values (also when refused).
pub(crate) async fn admit(
    g: &Governor,
    p: &Arc<Principal>,
    model: &str,
    resolved: &Resolved<'_>,
    snapshot: &Snapshot,
    body: &[u8],
    rate: &mut RateHeaders,
) -> Result<Arc<Ticket>, GatewayError> {
    let est = Estimate {
        // About four bytes a token; the reservation is replaced by the real count after.
        input: (body.len() as u64).div_ceil(4),
        output: crate::dialect::max_tokens::max_output_tokens(body)
            .unwrap_or_else(|| g.default_output_tokens()),
    };
    // (provider, served model, price) of every target the request may be served by.
    let mut first_refusal = None;
    let mut worst: Option<(f64, Option<Price>)> = None;
    let mut consider = |model: &str, provider: &str, served: &str, price: Option<Price>| {
        if let Err(e) = gate::check_target(p, model, provider, served) {
            first_refusal.get_or_insert(e);
            return;
        }
        let cost = price.map_or(f64::INFINITY, |pr| {
            pr.cost(&Usage {
                input: est.input,
                output: est.output,
                ..Usage::default()
            })
        });
        if worst.is_none_or(|(w, _)| cost > w) {
            worst = Some((cost, price));
        }
    };
    match resolved {
        Resolved::Route(route) => {
            // The route's targets and its fallbacks' (the request may be served by any of
            // them; the reservation covers the dearest).
            for t in &route.targets {
                let served = t.model.as_deref().unwrap_or(model);
                consider(
                    model,
                    &t.provider.id,
                    served,
                    t.provider.prices.lookup(served),
                );
            }
            for name in route.fallbacks.iter() {
                match snapshot.resolve(name) {
                    Some(Resolved::Route(fallback)) => {
                        for t in &fallback.targets {
                            let served = t.model.as_deref().unwrap_or(name);
                            consider(
                                name,
                                &t.provider.id,
                                served,
                                t.provider.prices.lookup(served),
                            );
                        }
                    }
                    Some(Resolved::Direct {
                        provider,
                        model: served,
                    }) => {
                        consider(name, &provider.id, served, provider.prices.lookup(served));
                    }
                    None => {}
                }
            }
        }
        Resolved::Direct {
            provider,
            model: served,
        } => {
            consider(model, &provider.id, served, provider.prices.lookup(served));
        }
    }
    let Some((_, price)) = worst else {
        return Err(first_refusal
            .unwrap_or_else(|| GatewayError::Internal("a route without targets".into())));
    };
    let now = gate::now_unix();
    let admitted = match &g.shared {
        Some(shared) => gate::admit_shared(shared, p, est, price, model, &g.spend, now).await,
        None => gate::admit(p, est, price, model, &g.spend, now),
    };
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
