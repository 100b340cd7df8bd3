//! The endpoint table: which handler serves a method and path, and in which client dialect.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use http_body_util::BodyExt;

use crate::admin;
use crate::error::GatewayError;
use crate::providers::Endpoint;
use crate::proxy::body::{ChannelBody, GatewayBody};
use crate::proxy::error_response;
use crate::proxy::{self, json_response, Inbound};
use crate::state::AppState;
use crate::telemetry::request_log::ClientMeta;
use crate::translate::ir::Dialect;

/// Which API a request path belongs to: OpenAI paths with or without `/v1` (and under
/// `/openai`), Anthropic's `/v1/messages` (and under `/anthropic`), Gemini's
/// `/v1beta/models/{model}:generateContent` (and under `/genai`).
pub fn classify(path: &str) -> Option<Inbound> {
    use Dialect::OpenAi;
    if let Some(rest) = path.strip_prefix("/anthropic") {
        return anthropic_path(rest.strip_prefix("/v1").unwrap_or(rest));
    }
    if let Some(rest) = path.strip_prefix("/genai") {
        return gemini_path(rest);
    }
    if let Some(inbound) = gemini_path(path) {
        return Some(inbound);
    }
    let rest = path.strip_prefix("/openai").unwrap_or(path);
    let short = rest.strip_prefix("/v1").unwrap_or(rest);
    let endpoint = match short {
        "/chat/completions" => Endpoint::ChatCompletions,
        "/completions" => Endpoint::Completions,
        "/embeddings" => Endpoint::Embeddings,
        "/responses" => Endpoint::Responses,
        _ => {
            // `/v1/messages` is Anthropic's, also without the `/anthropic` prefix.
            return if rest.len() == path.len() {
                anthropic_path(short)
            } else {
                None
            };
        }
    };
    Some(Inbound::new(OpenAi, endpoint))
}

fn anthropic_path(short: &str) -> Option<Inbound> {
    let endpoint = match short {
        "/messages" => Endpoint::ChatCompletions,
        "/messages/count_tokens" => Endpoint::CountTokens,
        _ => return None,
    };
    Some(Inbound::new(Dialect::Anthropic, endpoint))
}

/// `/v1beta/models/{model}:generateContent` or `:streamGenerateContent` (also `/v1/...`).
fn gemini_path(path: &str) -> Option<Inbound> {
    let rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, method) = rest.rsplit_once(':')?;
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return None,
    };
    let model = percent_encoding::percent_decode_str(model)
        .decode_utf8()
        .ok()?
        .into_owned();
    if model.is_empty() {
        return None;
    }
    let mut inbound = Inbound::new(Dialect::Gemini, Endpoint::ChatCompletions);
    inbound.path_model = Some(model);
    inbound.path_stream = stream;
    Some(inbound)
}

/// Dispatches one request.
pub async fn dispatch(
    state: Arc<AppState>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<GatewayBody> {
    // On tokio's clock (the system's in production): the overall deadline starts here.
    let started = tokio::time::Instant::now().into_std();
    let path = req.uri().path();
    if let Some(mut inbound) = classify(path) {
        if req.method() != Method::POST {
            return method_not_allowed(&req, inbound.dialect);
        }
        // An IPv4 client of a dual-stack listener arrives as `::ffff:a.b.c.d`: written (and
        // checked for loopback) as the IPv4 address it is.
        inbound.client = Some(Arc::new(ClientMeta::of(
            req.headers(),
            Some(peer.ip().to_canonical()),
        )));
        return proxy::handle(&state, req, inbound, started).await;
    }
    if path.starts_with("/admin/") {
        return admin(&state, req, peer).await;
    }
    let anthropic_shape =
        path.starts_with("/anthropic/") || req.headers().contains_key("anthropic-version");
    let short = path
        .strip_prefix("/anthropic")
        .or_else(|| path.strip_prefix("/openai"))
        .unwrap_or(path);
    let short = short.strip_prefix("/v1").unwrap_or(short);
    match (req.method(), path, short) {
        (&Method::GET, _, "/models") => {
            let snapshot = state.snapshot.load();
            let body = if anthropic_shape {
                snapshot.models_json_anthropic.clone()
            } else {
                snapshot.models_json.clone()
            };
            json_response(StatusCode::OK, body)
        }
        (&Method::GET, "/health", _) => {
            json_response(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))
        }
        (&Method::GET, "/ready", _) => {
            // A request-log store that is down is reported, not fatal: requests are still
            // served (their records wait in the backlog).
            let (status, text) = if state.snapshot.load().has_live_target() {
                (StatusCode::OK, "ready")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "no live target")
            };
            let body = serde_json::json!({
                "status": text,
                "request_log": state.logs.public_status(),
            });
            json_response(status, Bytes::from(body.to_string()))
        }
        (&Method::GET, "/metrics", _) => metrics(&state),
        _ => {
            let dialect = if anthropic_shape {
                Dialect::Anthropic
            } else if path.starts_with("/genai/") || path.starts_with("/v1beta/") {
                Dialect::Gemini
            } else {
                Dialect::OpenAi
            };
            error_response::for_dialect(
                dialect,
                &GatewayError::NoEndpoint {
                    method: req.method().to_string(),
                    path: path.to_string(),
                },
                None,
            )
        }
    }
}

/// `/admin/health` and, with governance on, the admin API; both behind the master key when
/// governance is on.
async fn admin(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<GatewayBody> {
    let to_response = |r: admin::Reply| json_response(r.status, r.body);
    let path = req.uri().path();
    let logs_route = path
        .strip_prefix("/admin/v1/logs")
        .filter(|r| r.is_empty() || r.starts_with('/'));
    if logs_route.is_some() || path == "/admin/v1/stats" {
        let peer = peer.ip().to_canonical();
        if let Err(r) = admin::logs::access(state.governor.as_deref(), req.headers(), peer) {
            return to_response(r);
        }
        if req.method() != Method::GET {
            return to_response(admin::Reply::method_not_allowed(req.method(), path));
        }
        let query = req.uri().query();
        if logs_route == Some("/stream") {
            return live_tail(state, query);
        }
        return to_response(match logs_route {
            Some(rest) => admin::logs::handle(&state.logs, rest, query).await,
            None => {
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                admin::logs::stats(&state.logs, query, now_ms).await
            }
        });
    }
    match (&state.governor, path) {
        (None, "/admin/health") if req.method() == Method::GET => admin_health(state),
        (Some(g), "/admin/health") if req.method() == Method::GET => {
            match admin::authorize(g, req.headers()) {
                Ok(_) => admin_health(state),
                Err(r) => to_response(r),
            }
        }
        (Some(g), p) if p.starts_with("/admin/v1/") => {
            let (parts, body) = req.into_parts();
            // Authorized before the body is read.
            if let Err(r) = admin::authorize(g, &parts.headers) {
                return to_response(r);
            }
            let body = match http_body_util::Limited::new(body, admin::MAX_BODY)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return error_response::for_dialect(
                        Dialect::OpenAi,
                        &GatewayError::bad_request(
                            format!(
                                "the admin request body is over {} bytes or broken",
                                admin::MAX_BODY
                            ),
                            None,
                        ),
                        None,
                    )
                }
            };
            let r = admin::handle(
                g,
                &parts.method,
                parts.uri.path(),
                parts.uri.query(),
                &parts.headers,
                &body,
            )
            .await;
            to_response(r)
        }
        _ => error_response::for_dialect(
            Dialect::OpenAi,
            &GatewayError::NoEndpoint {
                method: req.method().to_string(),
                path: path.to_string(),
            },
            None,
        ),
    }
}

/// `GET /admin/v1/logs/stream`: Server-Sent Events of new records (filters as for the list).
fn live_tail(state: &Arc<AppState>, query: Option<&str>) -> Response<GatewayBody> {
    let filter = match admin::logs::parse_query(query) {
        Ok(q) if q.before.is_none() => q,
        Ok(_) => {
            let r = admin::logs::bad_request("the live tail takes no `cursor`");
            return json_response(r.status, r.body);
        }
        Err(message) => {
            let r = admin::logs::bad_request(&message);
            return json_response(r.status, r.body);
        }
    };
    match state.logs.live.subscribe(filter) {
        Ok(rx) => {
            let body = GatewayBody::Channel(Box::new(ChannelBody::new(
                rx,
                std::time::Duration::from_secs(15),
            )));
            let mut resp = Response::new(body);
            let h = resp.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/event-stream"),
            );
            h.insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-cache"),
            );
            resp
        }
        Err(e) => {
            let r = admin::logs::too_many(&e.to_string());
            json_response(r.status, r.body)
        }
    }
}

fn method_not_allowed(req: &Request<Incoming>, dialect: Dialect) -> Response<GatewayBody> {
    let mut resp = error_response::for_dialect(
        dialect,
        &GatewayError::bad_request(
            format!(
                "{} is not allowed on {}; use POST",
                req.method(),
                req.uri().path()
            ),
            None,
        ),
        None,
    );
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    resp.headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
    resp
}

/// Targets' breaker state and live statistics, and disabled keys (by provider, never the key).
fn admin_health(state: &AppState) -> Response<GatewayBody> {
    let now = tokio::time::Instant::now().into_std();
    let targets: Vec<serde_json::Value> = state
        .health
        .targets()
        .iter()
        .map(|t| {
            serde_json::json!({
                "target": &*t.id,
                "breaker": t.breaker.state(now).as_str(),
                "trips": t.breaker.trips(),
                "in_flight": t.stats.in_flight(),
                "ttft_ewma_ms": t.stats.ewma_ttft().map(|d| d.as_secs_f64() * 1000.0),
                "ttft_p95_ms": t.stats.p95_ttft(now).map(|d| d.as_secs_f64() * 1000.0),
                "rpm": t.stats.rpm(now),
                "tpm": t.stats.tpm(now),
            })
        })
        .collect();
    let snapshot = state.snapshot.load();
    let providers: Vec<serde_json::Value> = snapshot
        .providers
        .iter()
        .map(|p| {
            let disabled: Vec<usize> = p
                .keys
                .iter()
                .enumerate()
                .filter(|(_, k)| !k.state.is_enabled(now))
                .map(|(i, _)| i)
                .collect();
            serde_json::json!({
                "provider": &*p.id,
                "kind": p.kind.as_str(),
                "down": p.health.is_down(),
                "keys": p.keys.len(),
                "disabled_keys": disabled,
            })
        })
        .collect();
    let body = serde_json::json!({
        "targets": targets,
        "providers": providers,
        "request_log": state.logs.status(),
    });
    json_response(StatusCode::OK, Bytes::from(body.to_string()))
}

fn metrics(state: &AppState) -> Response<GatewayBody> {
    // Breaker states are read when scraped (no per-request gauge writes).
    let now = tokio::time::Instant::now().into_std();
    for t in state.health.targets() {
        let v = match t.breaker.state(now) {
            crate::resilience::breaker::BreakerState::Closed => 0.0,
            crate::resilience::breaker::BreakerState::Open => 1.0,
            crate::resilience::breaker::BreakerState::HalfOpen => 2.0,
        };
        crate::telemetry::metrics::set_breaker_state(&t.id, v);
    }
    let text = state
        .prometheus
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    let mut resp = Response::new(GatewayBody::full(text));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}
