//! The request path for OpenAI-dialect endpoints: read the body, resolve the route, then either
//! forward to an OpenAI-compatible upstream (pass-through, with the usage tap) or answer from the
//! built-in mock. Errors come back as `GatewayError` and are framed by `server::error_response`.

pub mod body;
mod forward;
mod mock_answer;
mod read_body;
pub mod settle;
pub mod stream_tap;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::config::ProviderKind;
use crate::dialect::openai as wire;
use crate::error::GatewayError;
use crate::providers::openai;
use crate::routing::snapshot::{Endpoint, ProviderRt, Resolved, Snapshot};
use crate::server::error_response;
use crate::state::AppState;
use crate::telemetry::metrics::RouteMetrics;
use body::GatewayBody;
use settle::{InFlight, Settle};

pub static X_FERROGATE_TARGET: HeaderName = HeaderName::from_static("x-ferrogate-target");
pub static X_FERROGATE_OVERHEAD: HeaderName = HeaderName::from_static("x-ferrogate-overhead-us");
static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
static EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");

/// Upstream response bodies larger than this are refused (a misbehaving upstream can't make the
/// gateway buffer without bound).
const MAX_UPSTREAM_BODY: usize = 256 * 1024 * 1024;

/// Handles one OpenAI-dialect request end to end; never fails (errors become error responses).
pub async fn handle(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    endpoint: Endpoint,
    started: Instant,
) -> Response<GatewayBody> {
    let request_id = request_id(req.headers());
    let in_flight = InFlight::enter(state);
    match route_and_forward(in_flight, req, endpoint, started, &request_id).await {
        Ok(resp) => resp,
        Err(failure) => {
            let status = failure.error.status();
            if status.is_server_error() {
                tracing::warn!(error = %failure.error, request_id = request_id.to_str().unwrap_or("-"), "request failed");
            }
            match failure.settle {
                Some(settle) => settle.finish(status.as_u16(), None, false),
                None => crate::telemetry::metrics::requests_counter("-", "-", status.as_u16())
                    .increment(1),
            }
            let mut resp = error_response::openai(&failure.error, Some(&request_id));
            // Upstream failures include time spent waiting on the upstream, which is not
            // gateway overhead; every other error is all gateway time.
            if failure.error.blame() != crate::error::Blame::Upstream {
                resp.headers_mut().insert(
                    &X_FERROGATE_OVERHEAD,
                    HeaderValue::from(started.elapsed().as_micros() as u64),
                );
            }
            resp
        }
    }
}

struct Failure {
    error: GatewayError,
    /// Present once the request was routed, so the failure is accounted to its route.
    settle: Option<Settle>,
}

impl From<GatewayError> for Failure {
    fn from(error: GatewayError) -> Self {
        Failure {
            error,
            settle: None,
        }
    }
}

fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&openai::X_REQUEST_ID) {
        if !v.is_empty() && v.len() <= 200 {
            return v.clone();
        }
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u128(..);
    let mut id = [0u8; 32];
    for b in id.iter_mut().rev() {
        *b = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// What the route resolved to, detached from the snapshot borrow.
struct Chosen {
    provider: Arc<ProviderRt>,
    /// Model name to send upstream.
    upstream_model: Option<Arc<str>>,
    metrics: Arc<RouteMetrics>,
    served_header: Option<HeaderValue>,
}

fn choose(snapshot: &Snapshot, model: &str) -> Result<Chosen, GatewayError> {
    match snapshot.resolve(model) {
        Some(Resolved::Route(route)) => {
            let t = route
                .pick()
                .ok_or_else(|| GatewayError::Internal("route without targets".into()))?;
            Ok(Chosen {
                provider: Arc::clone(&t.provider),
                upstream_model: t.model.clone(),
                metrics: Arc::clone(&t.metrics),
                served_header: t.served_header.clone(),
            })
        }
        Some(Resolved::Direct { provider, model }) => Ok(Chosen {
            provider: Arc::clone(provider),
            upstream_model: Some(Arc::from(model)),
            metrics: Arc::clone(&provider.direct_metrics),
            served_header: None,
        }),
        None => Err(model_not_found(snapshot, model)),
    }
}

fn model_not_found(snapshot: &Snapshot, model: &str) -> GatewayError {
    let close = crate::config::suggest(model, snapshot.known_names());
    let mut message =
        format!("The model `{model}` does not exist or you do not have access to it.");
    if close.is_empty() {
        let ids: Vec<&str> = snapshot.provider_ids().collect();
        message.push_str(&format!(
            " Configure it under `models`, or use `provider/model` with one of: {}.",
            ids.join(", ")
        ));
    } else {
        message.push_str(&format!(" Did you mean {}?", quote_list(&close)));
    }
    GatewayError::ModelNotFound { message }
}

fn quote_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(" or ")
}

async fn route_and_forward(
    in_flight: InFlight,
    req: Request<Incoming>,
    endpoint: Endpoint,
    started: Instant,
    request_id: &HeaderValue,
) -> Result<Response<GatewayBody>, Failure> {
    let state = Arc::clone(in_flight.state());
    let snapshot = state.snapshot.load_full();
    let (parts, incoming) = req.into_parts();
    let body = read_body::read_body(incoming, &parts.headers, &snapshot).await?;
    let fields = wire::read_request_fields(&body)?;
    if endpoint == Endpoint::Embeddings && fields.stream {
        return Err(
            GatewayError::bad_request("embeddings cannot be streamed", Some("stream")).into(),
        );
    }
    let chosen = choose(&snapshot, &fields.model)?;
    drop(snapshot);

    let settle = Settle {
        in_flight,
        metrics: Arc::clone(&chosen.metrics),
        request_id: request_id.clone(),
        endpoint: endpoint_label(endpoint),
        stream: fields.stream,
        started,
        overhead: Duration::ZERO,
        recorded: false,
    };
    let served_model: &str = chosen.upstream_model.as_deref().unwrap_or(&fields.model);
    let served_header = match &chosen.served_header {
        Some(h) => h.clone(),
        None => HeaderValue::from_str(&format!("{}/{}", chosen.provider.id, served_model))
            .unwrap_or_else(|_| HeaderValue::from_static("-")),
    };
    match chosen.provider.kind {
        ProviderKind::Mock => {
            mock_answer::answer_from_mock(
                &chosen,
                endpoint,
                &body,
                &fields,
                served_model,
                served_header,
                settle,
            )
            .await
        }
        ProviderKind::Anthropic
        | ProviderKind::Gemini
        | ProviderKind::Azure
        | ProviderKind::Bedrock => Err(Failure {
            error: GatewayError::Internal("provider kind not wired".into()),
            settle: Some(settle),
        }),
        ProviderKind::OpenAi => {
            let query = parts.uri.query().map(str::to_owned);
            forward::forward_openai(
                &chosen,
                endpoint,
                parts.headers,
                query.as_deref(),
                &body,
                &fields,
                served_header,
                settle,
            )
            .await
        }
    }
}

fn endpoint_label(e: Endpoint) -> &'static str {
    match e {
        Endpoint::ChatCompletions => "chat/completions",
        Endpoint::Completions => "completions",
        Endpoint::Embeddings => "embeddings",
    }
}

fn finish_head(
    headers: &mut HeaderMap,
    request_id: &HeaderValue,
    served: HeaderValue,
    overhead: Duration,
) {
    headers.insert(&openai::X_REQUEST_ID, request_id.clone());
    headers.insert(&X_FERROGATE_TARGET, served);
    headers.insert(
        &X_FERROGATE_OVERHEAD,
        HeaderValue::from(overhead.as_micros() as u64),
    );
}

/// Status line for a gateway-generated JSON response.
pub fn json_response(status: StatusCode, body: Bytes) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, APPLICATION_JSON.clone());
    resp
}
