//! The request path for OpenAI-dialect endpoints: read the body, resolve the route, then either
//! forward to an OpenAI-compatible upstream (pass-through, with the usage tap) or answer from the
//! built-in mock. Errors come back as `GatewayError` and are framed by `proxy::error_response`.

pub mod body;
pub mod content_clock;
mod count_tokens;
pub mod error_response;
mod exchange;
mod forward;
mod govern;
mod mock_answer;
pub mod outbound;
mod read_body;
mod resilient;
pub mod settle;
pub mod stream_body;
mod translated;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::config::ProviderKind;
use crate::dialect::openai::{self as wire, RequestFields};
use crate::error::GatewayError;
use crate::governance::{self, gate::RateHeaders};
use crate::providers::openai;
use crate::providers::Endpoint;
use crate::routing::snapshot::{ProviderRt, Resolved, Snapshot};
use crate::state::AppState;
use crate::telemetry::metrics::RouteMetrics;
use crate::telemetry::request_log::{ClientMeta, RecordDetail, RecordMeta, RequestRecord};
use crate::translate::ir::Dialect;
use body::GatewayBody;
use settle::{InFlight, Settle};

pub static X_FERROGATE_TARGET: HeaderName = HeaderName::from_static("x-ferrogate-target");
pub static X_FERROGATE_OVERHEAD: HeaderName = HeaderName::from_static("x-ferrogate-overhead-us");
pub static X_FERROGATE_COST: HeaderName = HeaderName::from_static("x-ferrogate-cost-usd");
static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
static EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");

/// Upstream response bodies larger than this are refused (a misbehaving upstream can't make the
/// gateway buffer without bound).
const MAX_UPSTREAM_BODY: usize = 256 * 1024 * 1024;

/// Handles one OpenAI-dialect request end to end; never fails (errors become error responses).
pub async fn handle(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    inbound: Inbound,
    started: Instant,
) -> Response<GatewayBody> {
    let request_id = request_id(req.headers());
    let in_flight = InFlight::enter(state);
    let mut gov = Governed::default();
    let mut resp = match route_and_forward(in_flight, req, &inbound, started, &request_id, &mut gov)
        .await
    {
        Ok(resp) => resp,
        Err(failure) => {
            let status = failure.error.status();
            if status.is_server_error() {
                tracing::warn!(error = %failure.error, request_id = request_id.to_str().unwrap_or("-"), "request failed");
            }
            let code = failure.error.kind_and_code().1;
            match failure.settle {
                Some(settle) => settle.fail(status.as_u16(), code),
                None => {
                    crate::telemetry::metrics::requests_counter("-", "-", status.as_u16())
                        .increment(1);
                    refused_record(state, &inbound, &gov, &request_id, status, code, started);
                }
            }
            let mut resp =
                error_response::for_dialect(inbound.dialect, &failure.error, Some(&request_id));
            // Upstream failures include time spent waiting on the upstream, which is not
            // gateway overhead; every other error is all gateway time.
            if failure.error.blame() != crate::error::Blame::Upstream {
                resp.headers_mut().insert(
                    &X_FERROGATE_OVERHEAD,
                    crate::http_headers::number_value(started.elapsed().as_micros() as u64),
                );
            }
            resp
        }
    };
    if !gov.rate.is_empty() {
        gov.rate.write(resp.headers_mut());
    }
    resp
}

/// What governance left for the response (rate-limit headers) and the request record (the key,
/// also when it was refused).
#[derive(Default)]
pub(crate) struct Governed {
    pub rate: RateHeaders,
    pub principal: Option<Arc<governance::table::Principal>>,
}

/// The record of a request refused before it was routed (no key, a bad body, an unknown
/// model, over a limit or budget): auditors see refusals too.
fn refused_record(
    state: &AppState,
    inbound: &Inbound,
    gov: &Governed,
    request_id: &HeaderValue,
    status: StatusCode,
    code: &'static str,
    started: Instant,
) {
    if !state.log.enabled() {
        return;
    }
    // No known key: anyone can send these, so the store keeps them apart.
    let unauthenticated = gov.principal.is_none() && status == StatusCode::UNAUTHORIZED;
    let duration = started.elapsed();
    let mut meta = RecordMeta {
        client: inbound.client.clone(),
        detail: Some(Box::new(RecordDetail {
            error: Some(std::borrow::Cow::Borrowed(code)),
            attempts: 0,
            unauthenticated,
            ..RecordDetail::default()
        })),
    };
    if let Some(p) = &gov.principal {
        settle::key_ids(p, &mut meta);
    }
    state.log.push(RequestRecord {
        finished_at: std::time::SystemTime::now(),
        request_id: request_id.clone(),
        endpoint: endpoint_label(inbound),
        model: Arc::from("-"),
        target: Arc::from("-"),
        status: status.as_u16(),
        stream: false,
        usage: None,
        cost_usd: None,
        duration,
        overhead: duration,
        ttfb_us: 0,
        ttft_us: 0,
        client_cancelled: false,
        meta,
    });
}

pub(crate) struct Failure {
    pub error: GatewayError,
    /// Present once the request was routed, so the failure is accounted to its route.
    pub settle: Option<Settle>,
    /// Set when the upstream answered with an error (or a stream failed before content) and the
    /// attempt ran with `failover`: what to answer if no other attempt does better.
    pub retry: Option<Box<RetryInfo>>,
}

/// An upstream failure held back for the resilience loop.
pub(crate) struct RetryInfo {
    /// The answer the client gets if no later attempt succeeds.
    pub answer: Response<GatewayBody>,
    pub status: u16,
    /// The error, decoded, for classification (retry, next key, fallback kind).
    pub info: crate::translate::ir::ErrorInfo,
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure of a routed request (accounted to its route), not one to retry.
    pub fn routed(error: GatewayError, settle: Settle) -> Self {
        Failure {
            error,
            settle: Some(settle),
            retry: None,
        }
    }
}

impl From<GatewayError> for Failure {
    fn from(error: GatewayError) -> Self {
        Failure {
            error,
            settle: None,
            retry: None,
        }
    }
}

/// How one upstream attempt behaves, decided by the resilience loop (all off by default:
/// then an attempt is exactly the single pass-through or translated exchange).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AttemptCtx {
    /// Hand upstream error answers back as `Failure::retry` instead of sending them.
    pub failover: bool,
    /// Hold a stream's response head until its first content event.
    pub prime: bool,
    pub first_token: Option<Duration>,
    pub stall: Option<Duration>,
    /// Overrides of the provider's first-byte and total timeouts.
    pub first_byte: Option<Duration>,
    pub total: Option<Duration>,
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

/// What a client asked for, by the path it used.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The API the client speaks; errors and answers are framed in it.
    pub dialect: Dialect,
    pub endpoint: Endpoint,
    /// Gemini: the model named in the path (`models/{model}:generateContent`).
    pub path_model: Option<String>,
    /// Gemini: `:streamGenerateContent`.
    pub path_stream: bool,
    /// The client's address, user agent and tags, for its request record.
    pub client: Option<Arc<ClientMeta>>,
}

impl Inbound {
    pub fn new(dialect: Dialect, endpoint: Endpoint) -> Self {
        Self {
            dialect,
            endpoint,
            path_model: None,
            path_stream: false,
            client: None,
        }
    }
}

/// What the route resolved to, detached from the snapshot borrow.
pub(crate) struct Chosen {
    pub provider: Arc<ProviderRt>,
    /// Model name to send upstream.
    pub upstream_model: Option<Arc<str>>,
    /// Azure: the target's deployment.
    pub deployment: Option<Arc<str>>,
    pub metrics: Arc<RouteMetrics>,
    pub served_header: Option<HeaderValue>,
    /// The key to use, by index (resilience loop only; otherwise picked per request).
    pub key: Option<usize>,
    /// The served model's price when the config fixes it (see `TargetRt::served_price`).
    pub served_price: Option<Option<crate::pricing::Price>>,
}

fn choose(
    snapshot: &Snapshot,
    model: &str,
    resolved: Option<Resolved<'_>>,
    principal: Option<&governance::table::Principal>,
) -> Result<Chosen, GatewayError> {
    match resolved {
        Some(Resolved::Route(route)) => {
            let t = match principal {
                Some(p) if !p.unrestricted => {
                    // Only among the targets the key may use (`govern::reservation` checked
                    // one exists).
                    route.pick_where(|t| govern::admits(p, model, t))
                }
                _ => route.pick(),
            }
            .ok_or_else(|| GatewayError::Internal("route without targets".into()))?;
            Ok(Chosen {
                provider: Arc::clone(&t.provider),
                upstream_model: t.model.clone(),
                deployment: t.deployment.clone(),
                metrics: Arc::clone(&t.metrics),
                served_header: t.served_header.clone(),
                key: None,
                served_price: t.served_price,
            })
        }
        Some(Resolved::Direct { provider, model }) => Ok(Chosen {
            provider: Arc::clone(provider),
            upstream_model: Some(Arc::from(model)),
            deployment: None,
            metrics: Arc::clone(&provider.direct_metrics),
            served_header: None,
            key: None,
            served_price: None,
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
    inbound: &Inbound,
    started: Instant,
    request_id: &HeaderValue,
    gov: &mut Governed,
) -> Result<Response<GatewayBody>, Failure> {
    let state = Arc::clone(in_flight.state());
    let snapshot = state.snapshot.load_full();
    let (mut parts, incoming) = req.into_parts();
    // The key first: an unknown client gets nothing read or routed.
    let principal = match &state.governor {
        Some(g) => {
            let p = govern::identify(g, &mut parts, governance::gate::now_unix())?;
            gov.principal = Some(Arc::clone(&p));
            Some(p)
        }
        None => None,
    };
    let body = read_body::read_body(incoming, &parts.headers, &snapshot).await?;
    let mut request = ClientRequest {
        headers: parts.headers,
        uri: parts.uri,
        body,
    };
    let endpoint = inbound.endpoint;
    // Model and streaming flag: from the body, or from the path for Gemini.
    let fields = match &inbound.path_model {
        Some(_) => None,
        None => Some(wire::read_request_fields(&request.body)?),
    };
    let (model, stream): (&str, bool) = match (&fields, &inbound.path_model) {
        (Some(f), _) => (&f.model, f.stream && endpoint != Endpoint::CountTokens),
        (None, Some(m)) => (m, inbound.path_stream),
        (None, None) => return Err(GatewayError::Internal("no model source".into()).into()),
    };
    if endpoint == Endpoint::Embeddings && stream {
        return Err(
            GatewayError::bad_request("embeddings cannot be streamed", Some("stream")).into(),
        );
    }
    // Resolved once: the resilience check and the single-attempt pick share it.
    let resolved = snapshot.resolve(model);
    // Request headers that change resilience (deadlines, fallbacks) send a route through the
    // resilience loop; a direct `provider/model` never enters it.
    let overridden =
        matches!(resolved, Some(Resolved::Route(_))) && resilient::has_overrides(&request.headers);
    let ticket = match (&state.governor, &principal, &resolved) {
        (Some(g), Some(p), Some(r)) => {
            let est = govern::estimate(g, &request.body, fields.as_ref());
            let named = govern::named_fallbacks(&request.headers, overridden);
            let reserve = govern::reservation(p, model, r, &snapshot, est, named)?;
            Some(match &g.shared {
                // The clock is read again: the body's upload may have taken a while.
                None => {
                    let now = governance::gate::now_unix();
                    govern::admit_local(g, p, reserve, model, now, &mut gov.rate)?
                }
                // Boxed: the Redis round trip's future would otherwise widen every request's
                // state machine, governed or not.
                Some(s) => {
                    Box::pin(govern::admit_shared(g, s, p, reserve, model, &mut gov.rate)).await?
                }
            })
        }
        _ => None,
    };
    if let Some(Resolved::Route(route)) = &resolved {
        if route.resilient || overridden {
            let route = Arc::clone(route);
            let mut plan = resilient::Plan::new(route, &request.headers, overridden);
            plan.principal = principal;
            plan.ticket = ticket;
            return resilient::run(
                plan,
                &snapshot,
                in_flight,
                &request,
                fields.as_ref(),
                inbound,
                model,
                stream,
                started,
                request_id,
            )
            .await;
        }
    }
    let chosen = choose(&snapshot, model, resolved, principal.as_deref())?;
    drop(snapshot);

    let mut settle = Settle::new(
        in_flight,
        Arc::clone(&chosen.metrics),
        request_id.clone(),
        endpoint_label(inbound),
        stream,
        started,
    );
    settle.ticket = ticket;
    settle.client = inbound.client.clone();
    let call = Call::new(&chosen, inbound, model, stream, AttemptCtx::default());
    let headers = std::mem::take(&mut request.headers);
    attempt(&call, headers, &request, fields.as_ref(), settle).await
}

/// What the client sent, kept for every attempt.
pub(crate) struct ClientRequest {
    pub headers: HeaderMap,
    /// The request URI (its query is forwarded where the provider takes one).
    pub uri: http::Uri,
    pub body: Bytes,
}

/// One attempt at answering from the call's target: pass-through, translated, mock or
/// count_tokens. `headers` are the client's (moved in: the single-attempt path doesn't copy
/// them).
pub(crate) async fn attempt(
    call: &Call<'_>,
    headers: HeaderMap,
    request: &ClientRequest,
    fields: Option<&RequestFields<'_>>,
    mut settle: Settle,
) -> Result<Response<GatewayBody>, Failure> {
    settle.price = call
        .chosen
        .served_price
        .unwrap_or_else(|| call.chosen.provider.prices.lookup(call.served_model));
    let endpoint = call.inbound.endpoint;
    let provider_dialect = call.chosen.provider.dialect;
    let is_mock = call.chosen.provider.kind == ProviderKind::Mock;
    let query = request.uri.query();
    let body = &request.body;
    match endpoint {
        Endpoint::CountTokens => {
            count_tokens::count(call, query, headers, body, fields, settle).await
        }
        Endpoint::Responses | Endpoint::Completions | Endpoint::Embeddings
            if provider_dialect != Dialect::OpenAi
                || (is_mock && endpoint == Endpoint::Responses) =>
        {
            let what = match endpoint {
                Endpoint::Responses => {
                    "The Responses API is passed through to OpenAI-compatible providers only"
                }
                Endpoint::Embeddings => "Embeddings are served by OpenAI-compatible providers only",
                _ => "Legacy completions are served by OpenAI-compatible providers only",
            };
            let message = format!(
                "{what}; model `{}` is served by {} provider `{}`{}.",
                call.model,
                provider_dialect.as_str(),
                call.chosen.provider.id,
                if endpoint == Endpoint::Responses {
                    " (use /v1/chat/completions, which is translated)"
                } else {
                    ""
                }
            );
            Err(Failure {
                error: GatewayError::Untranslatable {
                    message,
                    param: Some("model".into()),
                },
                settle: Some(settle),
                retry: None,
            })
        }
        _ if is_mock => mock_answer::answer_from_mock(call, body, fields, settle).await,
        _ if call.inbound.dialect == provider_dialect => match fields {
            // Gemini to Gemini: the body has no model to rewrite.
            None => forward::forward_gemini(call, headers, query, body.clone(), settle).await,
            Some(fields) => {
                forward::forward_same_dialect(call, headers, query, body, fields, settle).await
            }
        },
        _ => translated::forward_translated(call, query, &headers, body, settle).await,
    }
}

/// One routed attempt, as the forwarding paths need it.
pub(crate) struct Call<'a> {
    pub chosen: &'a Chosen,
    pub inbound: &'a Inbound,
    /// The model name the client asked for.
    pub model: &'a str,
    /// The model name sent upstream.
    pub served_model: &'a str,
    pub stream: bool,
    pub served_header: HeaderValue,
    pub ctx: AttemptCtx,
}

impl<'a> Call<'a> {
    pub fn new(
        chosen: &'a Chosen,
        inbound: &'a Inbound,
        model: &'a str,
        stream: bool,
        ctx: AttemptCtx,
    ) -> Self {
        let served_model: &str = chosen.upstream_model.as_deref().unwrap_or(model);
        let served_header = match &chosen.served_header {
            Some(h) => h.clone(),
            None => HeaderValue::from_str(&format!("{}/{}", chosen.provider.id, served_model))
                .unwrap_or_else(|_| HeaderValue::from_static("-")),
        };
        Call {
            chosen,
            inbound,
            model,
            served_model,
            stream,
            served_header,
            ctx,
        }
    }
}

pub(crate) fn endpoint_label(inbound: &Inbound) -> &'static str {
    match (inbound.dialect, inbound.endpoint) {
        (Dialect::Anthropic, Endpoint::ChatCompletions) => "messages",
        (Dialect::Gemini, _) => "generate_content",
        (_, Endpoint::ChatCompletions) => "chat/completions",
        (_, Endpoint::Completions) => "completions",
        (_, Endpoint::Embeddings) => "embeddings",
        (_, Endpoint::Responses) => "responses",
        (_, Endpoint::CountTokens) => "count_tokens",
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
        crate::http_headers::number_value(overhead.as_micros() as u64),
    );
}

/// `x-ferrogate-cost-usd` on a whole (non-stream) answer: what its usage cost at the serving
/// model's price. Absent when the price or the usage is unknown (never a made-up 0).
fn cost_header(headers: &mut HeaderMap, settle: &Settle, usage: Option<&crate::usage::Usage>) {
    if let (Some(price), Some(usage)) = (settle.price, usage.filter(|u| !u.counts_nothing())) {
        let cost = price.cost(usage);
        // Display writes the shortest decimal that reads back as the same number, no exponent.
        if let Ok(v) = HeaderValue::from_str(&format!("{cost}")) {
            headers.insert(&X_FERROGATE_COST, v);
        }
    }
}

/// Status line for a gateway-generated JSON response.
pub fn json_response(status: StatusCode, body: Bytes) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, APPLICATION_JSON.clone());
    resp
}
