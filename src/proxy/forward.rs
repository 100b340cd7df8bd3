//! Forwarding to an OpenAI-compatible upstream: body edits, the upstream call under its
//! deadlines, and the response path (buffered non-stream, or the tapped pass-through stream).

use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::Response;

use super::body::{GatewayBody, PassthroughStream};
use super::read_body::{collect_body, ready_or_timeout, BodyError};
use super::settle::Settle;
use super::stream_tap::StreamTap;
use super::{finish_head, Chosen, Failure, MAX_UPSTREAM_BODY};
use crate::dialect::openai::{self as wire, BodyEdits, RequestFields};
use crate::error::{Deadline, GatewayError};
use crate::providers::openai;
use crate::routing::snapshot::{Endpoint, ProviderRt};
use crate::upstream::{error_chain, SendError};

#[allow(clippy::too_many_arguments)]
pub(super) async fn forward_openai(
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
        settle.overhead = pre + head_at.elapsed();
        // Always framed by hyper: a stream may end with a gateway-written error event, which a
        // forwarded Content-Length would cut off.
        client_head(&mut parts.headers, &settle, served_header, true);
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
    settle.overhead = pre + body_at.elapsed();
    client_head(&mut parts.headers, &settle, served_header, false);
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

/// The upstream's response head, cleaned and stamped with the gateway's headers.
fn client_head(headers: &mut HeaderMap, settle: &Settle, served: HeaderValue, body_changed: bool) {
    openai::response_headers(headers, &settle.request_id, body_changed);
    finish_head(headers, &settle.request_id, served, settle.overhead);
}
