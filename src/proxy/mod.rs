//! The request path for OpenAI-dialect endpoints: read the body, resolve the route, then either
//! forward to an OpenAI-compatible upstream (pass-through, with the usage tap) or answer from the
//! built-in mock. Errors come back as `GatewayError` and are framed by `server::error_response`.

pub mod body;
pub mod settle;
pub mod stream_tap;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::config::ProviderKind;
use crate::dialect::openai::{self as wire, BodyEdits, RequestFields};
use crate::error::{Deadline, GatewayError};
use crate::providers::{mock, openai};
use crate::routing::snapshot::{Endpoint, ProviderRt, Resolved, Snapshot};
use crate::server::error_response;
use crate::state::AppState;
use crate::telemetry::metrics::RouteMetrics;
use crate::upstream::SendError;
use body::{GatewayBody, PacedFrames, PassthroughStream};
use settle::{InFlight, Settle};
use stream_tap::StreamTap;

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
    let body = read_body(incoming, &parts.headers, &snapshot).await?;
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
    };
    let served_model: &str = chosen.upstream_model.as_deref().unwrap_or(&fields.model);
    let served_header = match &chosen.served_header {
        Some(h) => h.clone(),
        None => HeaderValue::from_str(&format!("{}/{}", chosen.provider.id, served_model))
            .unwrap_or_else(|_| HeaderValue::from_static("-")),
    };
    match chosen.provider.kind {
        ProviderKind::Mock => {
            answer_from_mock(
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
        ProviderKind::OpenAi => {
            let query = parts.uri.query().map(str::to_owned);
            forward_openai(
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

enum BodyError {
    TooLarge,
    Read(hyper::Error),
}

/// Reads a whole body of at most `limit` bytes. A body that arrives as one frame (nearly every
/// request and non-stream response) is returned as that frame's `Bytes`, without copying or the
/// buffer list `http_body_util::Collected` would build.
async fn collect_body(mut body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    use http_body::Body as _;
    let mut first: Option<Bytes> = None;
    let mut rest: Option<bytes::BytesMut> = None;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        let data = match frame {
            None => break,
            Some(Err(e)) => return Err(BodyError::Read(e)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(d) => d,
                Err(_) => continue, // trailers carry nothing we forward
            },
        };
        let so_far = first.as_ref().map_or(0, Bytes::len) + rest.as_ref().map_or(0, |r| r.len());
        if so_far + data.len() > limit {
            return Err(BodyError::TooLarge);
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut buf = bytes::BytesMut::with_capacity((f.len() + data.len()) * 2);
                buf.extend_from_slice(f);
                buf.extend_from_slice(&data);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&data),
        }
    }
    Ok(match (first, rest) {
        (_, Some(buf)) => buf.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

/// Polls a future once; only if it is not ready yet is it raced against a timer. Most request
/// bodies have fully arrived with their head, so the common case registers no timer.
async fn ready_or_timeout<F: Future>(fut: F, after: Duration) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(v) => Some(v),
        Poll::Pending => tokio::time::timeout(after, fut).await.ok(),
    }
}

async fn read_body(
    incoming: Incoming,
    headers: &HeaderMap,
    snapshot: &Snapshot,
) -> Result<Bytes, GatewayError> {
    let limit = snapshot.settings.body_limit_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    let timeout = Duration::from_millis(snapshot.settings.body_read_timeout_ms);
    match ready_or_timeout(collect_body(incoming, limit), timeout).await {
        None => Err(GatewayError::BodyReadTimeout(timeout)),
        Some(Ok(body)) => Ok(body),
        Some(Err(BodyError::TooLarge)) => Err(GatewayError::PayloadTooLarge { limit }),
        Some(Err(BodyError::Read(e))) => Err(GatewayError::BodyRead(e.to_string())),
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

async fn answer_from_mock(
    chosen: &Chosen,
    endpoint: Endpoint,
    body: &Bytes,
    fields: &RequestFields<'_>,
    served_model: &str,
    served_header: HeaderValue,
    mut settle: Settle,
) -> Result<Response<GatewayBody>, Failure> {
    let settings = chosen.provider.mock;
    let answer = match mock::answer(
        &settings,
        endpoint,
        body,
        served_model,
        fields.stream,
        fields.include_usage,
    ) {
        Ok(a) => a,
        Err(error) => {
            return Err(Failure {
                error,
                settle: Some(settle),
            })
        }
    };
    let before_wait = settle.started.elapsed();
    if !answer.latency.is_zero() {
        tokio::time::sleep(answer.latency).await;
    }
    let mut resp = Response::new(GatewayBody::empty());
    let content_type = if answer.stream {
        &EVENT_STREAM
    } else {
        &APPLICATION_JSON
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type.clone());
    settle.overhead = before_wait;
    finish_head(
        resp.headers_mut(),
        &settle.request_id,
        served_header,
        before_wait,
    );
    *resp.body_mut() = if answer.stream {
        GatewayBody::Frames(PacedFrames::new(
            answer.frames,
            answer.chunk_delay,
            settle,
            answer.usage,
        ))
    } else {
        let usage = answer.usage;
        let body = answer.frames.into_iter().next().unwrap_or_default();
        settle.finish(200, Some(usage), false);
        GatewayBody::full(body)
    };
    Ok(resp)
}

#[allow(clippy::too_many_arguments)]
async fn forward_openai(
    chosen: &Chosen,
    endpoint: Endpoint,
    headers: HeaderMap,
    query: Option<&str>,
    body: &Bytes,
    fields: &RequestFields<'_>,
    served_header: HeaderValue,
    mut settle: Settle,
) -> Result<Response<GatewayBody>, Failure> {
    let provider = &chosen.provider;
    let fail = |error: GatewayError, settle: Settle| Failure {
        error,
        settle: Some(settle),
    };
    // Meter every stream: ask for usage when the client didn't, and strip it on the way back.
    let strip = fields.stream && !fields.include_usage && endpoint != Endpoint::Embeddings;
    let edits = BodyEdits {
        model: chosen
            .upstream_model
            .as_deref()
            .filter(|m| *m != fields.model),
        inject_include_usage: strip,
    };
    let request_len = body.len();
    let upstream_body = match wire::apply_edits(body, fields, edits) {
        Ok(b) => b,
        Err(e) => return Err(fail(e, settle)),
    };
    let req = match openai::build_request(
        provider,
        endpoint,
        query,
        headers,
        upstream_body,
        &settle.request_id,
    ) {
        Ok(r) => r,
        Err(e) => return Err(fail(e, settle)),
    };
    let Some(pool) = provider.pool.as_ref() else {
        return Err(fail(
            GatewayError::Internal("provider has no upstream pool".into()),
            settle,
        ));
    };

    let sent_at = Instant::now();
    let pre = sent_at - settle.started;
    let deadline = tokio::time::Instant::from_std(sent_at + provider.total_timeout);
    let (resp, lease) =
        match tokio::time::timeout(provider.first_byte_timeout, pool.send(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                provider.health.record_failure();
                return Err(fail(classify_client_error(provider, &e), settle));
            }
            Err(_) => {
                provider.health.record_failure();
                let error = GatewayError::UpstreamTimeout {
                    provider: provider.id.to_string(),
                    deadline: Deadline::FirstByte,
                    after: provider.first_byte_timeout,
                };
                return Err(fail(error, settle));
            }
        };
    let head_at = Instant::now();
    settle
        .metrics
        .ttfb
        .record((head_at - sent_at).as_secs_f64());
    provider.health.record_success();

    let status = resp.status();
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let (mut parts, incoming) = resp.into_parts();

    if fields.stream && status.is_success() && is_sse {
        openai::response_headers(&mut parts.headers, &settle.request_id, strip);
        let overhead = pre + head_at.elapsed();
        settle.overhead = overhead;
        finish_head(
            &mut parts.headers,
            &settle.request_id,
            served_header,
            overhead,
        );
        let tap = StreamTap::new(strip, request_len);
        let body = PassthroughStream::new(incoming, lease, tap, deadline, settle);
        return Ok(Response::from_parts(
            parts,
            GatewayBody::Stream(Box::new(body)),
        ));
    }

    // Non-stream (or an error answer to a stream request): buffer, tap usage, forward untouched.
    let collect = collect_body(incoming, MAX_UPSTREAM_BODY);
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let bytes = match ready_or_timeout(collect, remaining).await {
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            let detail = match e {
                BodyError::TooLarge => format!("response body over {MAX_UPSTREAM_BODY} bytes"),
                BodyError::Read(e) => format!("reading the response body: {e}"),
            };
            let error = GatewayError::UpstreamProtocol {
                provider: provider.id.to_string(),
                detail,
            };
            return Err(fail(error, settle));
        }
        None => {
            let error = GatewayError::UpstreamTimeout {
                provider: provider.id.to_string(),
                deadline: Deadline::Total,
                after: provider.total_timeout,
            };
            return Err(fail(error, settle));
        }
    };
    lease.release();
    let body_at = Instant::now();
    let usage = if status.is_success() {
        crate::usage::from_openai_body(&bytes)
    } else {
        None
    };
    openai::response_headers(&mut parts.headers, &settle.request_id, false);
    let overhead = pre + body_at.elapsed();
    settle.overhead = overhead;
    finish_head(
        &mut parts.headers,
        &settle.request_id,
        served_header,
        overhead,
    );
    settle.finish(status.as_u16(), usage, false);
    Ok(Response::from_parts(parts, GatewayBody::full(bytes)))
}

fn classify_client_error(provider: &ProviderRt, e: &SendError) -> GatewayError {
    match e {
        SendError::ConnectTimeout => GatewayError::UpstreamTimeout {
            provider: provider.id.to_string(),
            deadline: Deadline::Connect,
            after: provider.connect_timeout,
        },
        SendError::Connect(detail) => GatewayError::UpstreamConnect {
            provider: provider.id.to_string(),
            detail: detail.clone(),
        },
        SendError::Request(e) => GatewayError::UpstreamProtocol {
            provider: provider.id.to_string(),
            detail: error_chain(e),
        },
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Status line for a gateway-generated JSON response.
pub fn json_response(status: StatusCode, body: Bytes) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, APPLICATION_JSON.clone());
    resp
}
