//! The endpoint table: which handler serves a method and path.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::error::GatewayError;
use crate::proxy::{self, body::GatewayBody, json_response};
use crate::routing::snapshot::Endpoint;
use crate::server::error_response;
use crate::state::AppState;

/// Dispatches one request. Paths are accepted with and without the `/v1` prefix.
pub async fn dispatch(state: Arc<AppState>, req: Request<Incoming>) -> Response<GatewayBody> {
    let started = Instant::now();
    let path = req.uri().path();
    let short = path.strip_prefix("/v1").unwrap_or(path);
    let endpoint = match short {
        "/chat/completions" => Some(Endpoint::ChatCompletions),
        "/completions" => Some(Endpoint::Completions),
        "/embeddings" => Some(Endpoint::Embeddings),
        _ => None,
    };
    if let Some(endpoint) = endpoint {
        if req.method() != Method::POST {
            return method_not_allowed(&req);
        }
        return proxy::handle(&state, req, endpoint, started).await;
    }
    match (req.method(), path, short) {
        (&Method::GET, _, "/models") => {
            json_response(StatusCode::OK, state.snapshot.load().models_json.clone())
        }
        (&Method::GET, "/health", _) => {
            json_response(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))
        }
        (&Method::GET, "/ready", _) => {
            if state.snapshot.load().has_live_target() {
                json_response(StatusCode::OK, Bytes::from_static(br#"{"status":"ready"}"#))
            } else {
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Bytes::from_static(br#"{"status":"no live target"}"#),
                )
            }
        }
        (&Method::GET, "/metrics", _) => metrics(&state),
        _ => error_response::openai(
            &GatewayError::NoEndpoint {
                method: req.method().to_string(),
                path: path.to_string(),
            },
            None,
        ),
    }
}

fn method_not_allowed(req: &Request<Incoming>) -> Response<GatewayBody> {
    let mut resp = error_response::openai(
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

fn metrics(state: &AppState) -> Response<GatewayBody> {
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
