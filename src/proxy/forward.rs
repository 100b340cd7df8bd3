//! Same-dialect forwarding (pass-through): body edits, the upstream call under its deadlines,
//! and the response path (buffered non-stream, or the tapped pass-through stream).

use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::Response;

use super::body::{GatewayBody, PassthroughStream, PrimeFailure, Tap, Watch};
use super::content_clock::ContentClock;
use super::event_tap::{EventDialect, EventTap};
use super::read_body::{collect_body, ready_or_timeout, BodyError};
use super::settle::Settle;
use super::stream_tap::StreamTap;
use super::{finish_head, Call, Failure, RetryInfo, MAX_UPSTREAM_BODY};
use crate::config::ProviderKind;
use crate::dialect::openai::{self as wire, BodyEdits, RequestFields};
use crate::error::{Deadline, GatewayError};
use crate::providers::{openai, outbound};
use crate::routing::snapshot::{Endpoint, ProviderRt};
use crate::translate::ir::Dialect;
use crate::upstream::{error_chain, Lease, SendError};
use crate::usage::{self, Usage};

/// Client and provider speak the same dialect (OpenAI or Anthropic): the body goes up as
/// sent, with only the model renamed (and, for OpenAI chat streams, `include_usage` injected);
/// the answer comes back byte for byte.
pub(super) async fn forward_same_dialect(
    call: &Call<'_>,
    headers: HeaderMap,
    query: Option<&str>,
    body: &Bytes,
    fields: &RequestFields<'_>,
    settle: Settle,
) -> Result<Response<GatewayBody>, Failure> {
    let endpoint = call.inbound.endpoint;
    let dialect = call.inbound.dialect;
    let openai_chat = dialect == Dialect::OpenAi
        && matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions);
    // Meter every OpenAI stream: ask for usage when the client didn't, and strip it on the
    // way back. Other dialects always report usage.
    let strip = openai_chat && call.stream && !fields.include_usage;
    let edits = BodyEdits {
        model: call
            .chosen
            .upstream_model
            .as_deref()
            .filter(|m| *m != fields.model),
        inject_include_usage: strip,
    };
    let upstream_body = match wire::apply_edits(body, fields, edits) {
        Ok(b) => b,
        Err(e) => return Err(fail(e, settle)),
    };
    let (tap, usage_of): (Tap, UsageOf) = match (dialect, endpoint) {
        (Dialect::Anthropic, _) => (
            Tap::Events(EventTap::new(EventDialect::Anthropic, body.len())),
            anthropic_body_usage,
        ),
        (_, Endpoint::Responses) => (
            Tap::Events(EventTap::new(EventDialect::Responses, body.len())),
            usage::from_responses_json,
        ),
        _ => (
            Tap::OpenAi(StreamTap::new(strip, body.len())),
            usage::from_openai_body,
        ),
    };
    // OpenAI-kind and Anthropic providers take the client's query string (Anthropic's SDK
    // sends `?beta=true`); Azure's `api-version` is the gateway's own.
    let query = matches!(
        call.chosen.provider.kind,
        ProviderKind::OpenAi | ProviderKind::Anthropic
    )
    .then_some(query)
    .flatten();
    exchange(call, headers, query, upstream_body, tap, usage_of, settle).await
}

/// Gemini client to Gemini provider: the body has no model (it is in the path), so it goes up
/// untouched; the answer comes back byte for byte.
pub(super) async fn forward_gemini(
    call: &Call<'_>,
    mut headers: HeaderMap,
    query: Option<&str>,
    body: Bytes,
    settle: Settle,
) -> Result<Response<GatewayBody>, Failure> {
    if call.chosen.provider.auth == crate::config::AuthMode::Passthrough {
        // The client's `?key=` travels as a header, never in the upstream URL.
        outbound::gemini_query_key(query, &mut headers);
    }
    let tap = Tap::Events(EventTap::new(EventDialect::Gemini, body.len()));
    exchange(
        call,
        headers,
        None,
        body,
        tap,
        usage::from_gemini_json,
        settle,
    )
    .await
}

/// Reads usage from a whole (non-stream) response body of one dialect.
type UsageOf = fn(&[u8]) -> Option<Usage>;

fn anthropic_body_usage(body: &[u8]) -> Option<Usage> {
    let mut u = None;
    usage::update_from_anthropic_json(body, &mut u);
    u
}

fn fail(error: GatewayError, settle: Settle) -> Failure {
    Failure::routed(error, settle)
}

/// Sends a pass-through request and answers with the upstream's response, tapped for usage.
async fn exchange(
    call: &Call<'_>,
    headers: HeaderMap,
    query: Option<&str>,
    upstream_body: Bytes,
    tap: Tap,
    usage_of: UsageOf,
    mut settle: Settle,
) -> Result<Response<GatewayBody>, Failure> {
    let provider = &call.chosen.provider;
    let uri = match provider.upstream_uri(
        call.inbound.endpoint,
        call.served_model,
        call.chosen.deployment.as_deref(),
        call.stream,
    ) {
        Ok(u) => u,
        Err(e) => return Err(fail(GatewayError::Internal(e), settle)),
    };
    let req = match outbound::build_request(
        provider,
        uri,
        query,
        headers,
        upstream_body,
        &settle.request_id,
        outbound::ClientHeaders::Keep,
        call.chosen.key,
    ) {
        Ok(r) => r,
        Err(e) => return Err(fail(e, settle)),
    };
    let (resp, lease, sent_at, head_at) = match send(provider, req, call.ctx.first_byte).await {
        Ok(r) => r,
        Err(e) => return Err(fail(e, settle)),
    };
    settle
        .metrics
        .ttfb
        .record((head_at - sent_at).as_secs_f64());
    let pre = sent_at - settle.started;
    let total = call.ctx.total.unwrap_or(provider.total_timeout);
    let deadline = tokio::time::Instant::from_std(sent_at + total);
    let retry_after = if call.ctx.failover && !resp.status().is_success() {
        crate::resilience::backoff::retry_after(resp.headers(), std::time::SystemTime::now())
    } else {
        None
    };

    let status = resp.status();
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let (mut parts, incoming) = resp.into_parts();

    if call.stream && status.is_success() && is_sse {
        let mut body = PassthroughStream::new(incoming, lease, tap, deadline, settle);
        if call.ctx.prime || call.ctx.first_token.is_some() || call.ctx.stall.is_some() {
            let clock = ContentClock::new(
                call.ctx
                    .first_token
                    .map(|d| tokio::time::Instant::from_std(sent_at + d)),
                call.ctx.stall,
            );
            let decoder =
                crate::translate::stream_decoder(call.chosen.provider.dialect, call.served_model);
            body = body.with_watch(Watch::new(decoder, clock));
            if call.ctx.prime {
                if let Err((failure, settle)) = body.prime().await {
                    drop(body);
                    return Err(prime_failed(call, failure, settle));
                }
            }
        }
        let Some(settle) = body.settle_mut() else {
            return Err(Failure::from(GatewayError::Internal(
                "stream lost its settle".into(),
            )));
        };
        settle.overhead = pre + head_at.elapsed();
        // Always framed by hyper: a stream may end with a gateway-written error event, which a
        // forwarded Content-Length would cut off.
        client_head(&mut parts.headers, settle, call.served_header.clone(), true);
        return Ok(Response::from_parts(
            parts,
            GatewayBody::Stream(Box::new(body)),
        ));
    }

    // Non-stream (or an error answer to a stream request): buffer, tap usage, forward untouched.
    let bytes = match read_upstream_body(provider, incoming, deadline, total).await {
        Ok(b) => b,
        Err(e) => return Err(fail(e, settle)),
    };
    lease.release();
    let body_at = Instant::now();
    let usage = if status.is_success() {
        usage_of(&bytes)
    } else {
        None
    };
    settle.overhead = pre + body_at.elapsed();
    client_head(
        &mut parts.headers,
        &settle,
        call.served_header.clone(),
        false,
    );
    if call.ctx.failover && !status.is_success() {
        // Held back: another attempt may do better; if none does, this is the answer.
        let info = crate::translate::decode_error(
            call.chosen.provider.dialect,
            status.as_u16(),
            None,
            &bytes,
        );
        let answer = Response::from_parts(parts, GatewayBody::full(bytes));
        return Err(Failure {
            error: GatewayError::UpstreamStatus {
                provider: provider.id.to_string(),
                status: status.as_u16(),
            },
            settle: Some(settle),
            retry: Some(Box::new(RetryInfo {
                answer,
                status: status.as_u16(),
                info,
                retry_after,
            })),
        });
    }
    settle.finish(status.as_u16(), usage, false);
    Ok(Response::from_parts(parts, GatewayBody::full(bytes)))
}

/// A stream that failed before its first content: an error for another attempt to replace,
/// or, when it is the last, the answer (an error in the client's dialect).
pub(super) fn prime_failed(
    call: &Call<'_>,
    failure: PrimeFailure,
    settle: Option<Settle>,
) -> Failure {
    let info = failure.info();
    let mut answer_info = info.clone();
    answer_info.status =
        crate::server::error_response::client_status(info.status, call.inbound.dialect);
    let mut answer = crate::server::error_response::info(
        call.inbound.dialect,
        &answer_info,
        settle.as_ref().map(|s| &s.request_id),
    );
    finish_head(
        answer.headers_mut(),
        settle
            .as_ref()
            .map(|s| &s.request_id)
            .unwrap_or(&http::HeaderValue::from_static("-")),
        call.served_header.clone(),
        settle
            .as_ref()
            .map(|s| s.started.elapsed())
            .unwrap_or_default(),
    );
    Failure {
        error: GatewayError::UpstreamStatus {
            provider: call.chosen.provider.id.to_string(),
            status: answer_info.status,
        },
        settle,
        retry: Some(Box::new(RetryInfo {
            answer,
            status: answer_info.status,
            info,
            retry_after: None,
        })),
    }
}

/// Sends under the first-byte deadline; records provider health. Returns the response head,
/// the connection lease, and when the request was sent and the head arrived.
pub(super) async fn send(
    provider: &ProviderRt,
    req: http::Request<http_body_util::Full<Bytes>>,
    first_byte: Option<std::time::Duration>,
) -> Result<
    (
        http::Response<hyper::body::Incoming>,
        Lease,
        Instant,
        Instant,
    ),
    GatewayError,
> {
    let Some(pool) = provider.pool.as_ref() else {
        return Err(GatewayError::Internal(
            "provider has no upstream pool".into(),
        ));
    };
    // Tokio's clock (the system's in production), so paused-clock tests see deadlines at
    // their virtual times.
    let sent_at = tokio::time::Instant::now().into_std();
    let first_byte = first_byte.unwrap_or(provider.first_byte_timeout);
    match tokio::time::timeout(first_byte, pool.send(req)).await {
        Ok(Ok((resp, lease))) => {
            provider.health.record_success();
            Ok((resp, lease, sent_at, tokio::time::Instant::now().into_std()))
        }
        Ok(Err(e)) => {
            provider.health.record_failure();
            Err(classify_client_error(provider, &e))
        }
        Err(_) => {
            provider.health.record_failure();
            Err(GatewayError::UpstreamTimeout {
                provider: provider.id.to_string(),
                deadline: Deadline::FirstByte,
                after: first_byte,
            })
        }
    }
}

/// Reads a whole upstream body under the total deadline and the size cap.
pub(super) async fn read_upstream_body(
    provider: &ProviderRt,
    incoming: hyper::body::Incoming,
    deadline: tokio::time::Instant,
    // The total deadline in effect (the provider's, or a model / request override), for the
    // error message.
    total: std::time::Duration,
) -> Result<Bytes, GatewayError> {
    let collect = collect_body(incoming, MAX_UPSTREAM_BODY);
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    match ready_or_timeout(collect, remaining).await {
        Some(Ok(b)) => Ok(b),
        Some(Err(e)) => {
            let detail = match e {
                BodyError::TooLarge => format!("response body over {MAX_UPSTREAM_BODY} bytes"),
                BodyError::Read(e) => format!("reading the response body: {e}"),
            };
            Err(GatewayError::UpstreamProtocol {
                provider: provider.id.to_string(),
                detail,
            })
        }
        None => Err(GatewayError::UpstreamTimeout {
            provider: provider.id.to_string(),
            deadline: Deadline::Total,
            after: total,
        }),
    }
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

/// The upstream's response head, cleaned and stamped with the gateway's headers.
pub(super) fn client_head(
    headers: &mut HeaderMap,
    settle: &Settle,
    served: HeaderValue,
    body_changed: bool,
) {
    openai::response_headers(headers, &settle.request_id, body_changed);
    finish_head(headers, &settle.request_id, served, settle.overhead);
}
