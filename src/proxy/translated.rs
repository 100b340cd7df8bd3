//! Client and provider speak different dialects: the request is decoded into the internal
//! model and encoded for the provider; the answer (whole, streamed or an error) is decoded from
//! the provider's dialect and encoded in the client's.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::Response;

use super::body::GatewayBody;
use super::content_clock::ContentClock;
use super::forward::{read_upstream_body, send};
use super::settle::Settle;
use super::translate_stream::{Framer, TranslatingStream};
use super::{finish_head, Call, Failure, APPLICATION_JSON, EVENT_STREAM};
use crate::error::GatewayError;
use crate::providers::openai::{X_REQUEST_ID, X_UPSTREAM_REQUEST_ID};
use crate::providers::outbound::{self, ClientHeaders};
use crate::routing::snapshot::Endpoint;
use crate::server::error_response;
use crate::sse::SseSplitter;
use crate::translate::eventstream::EventStreamDecoder;
use crate::translate::ir::{Dialect, EncodeOptions};
use crate::translate::{self, ir::ErrorInfo};

static X_AMZN_ERRORTYPE: header::HeaderName = header::HeaderName::from_static("x-amzn-errortype");

fn fail(error: GatewayError, settle: Settle) -> Failure {
    Failure::routed(error, settle)
}

pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(super) async fn forward_translated(
    call: &Call<'_>,
    client_query: Option<&str>,
    client_headers: &HeaderMap,
    body: &Bytes,
    mut settle: Settle,
) -> Result<Response<GatewayBody>, Failure> {
    let client = call.inbound.dialect;
    let provider = &call.chosen.provider;
    let request_id = settle.request_id.clone();
    let upstream = provider.dialect;
    let mut req = match translate::decode_request(client, body, call.model, call.stream) {
        Ok(r) => r,
        Err(e) => return Err(fail(e.into(), settle)),
    };
    req.stream = call.stream;
    let opts = EncodeOptions {
        model: call.model.to_string(),
        stream_usage: req.stream_usage,
        created: now_secs(),
    };
    let upstream_body = match translate::encode_request(upstream, &req, call.served_model) {
        Ok(b) => Bytes::from(b),
        Err(e) => return Err(fail(e.into(), settle)),
    };
    drop(req);
    let uri = match provider.upstream_uri(
        Endpoint::ChatCompletions,
        call.served_model,
        call.chosen.deployment.as_deref(),
        call.stream,
    ) {
        Ok(u) => u,
        Err(e) => return Err(fail(GatewayError::Internal(e), settle)),
    };
    let mut key_headers = HeaderMap::new();
    if provider.auth == crate::config::AuthMode::Passthrough {
        key_headers = client_headers.clone();
        outbound::gemini_query_key(client_query, &mut key_headers);
    }
    let up_req = match outbound::build_request(
        provider,
        uri,
        None,
        key_headers,
        upstream_body,
        &settle.request_id,
        ClientHeaders::Fresh,
        call.chosen.key,
    ) {
        Ok(r) => r,
        Err(e) => return Err(fail(e, settle)),
    };
    let (resp, lease, sent_at, head_at) = match send(provider, up_req, call.ctx.first_byte).await {
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
    let status = resp.status();
    let retry_after = if call.ctx.failover && !status.is_success() {
        crate::resilience::backoff::retry_after(resp.headers(), std::time::SystemTime::now())
    } else {
        None
    };
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let upstream_id = resp
        .headers()
        .get("request-id")
        .or_else(|| resp.headers().get(&X_REQUEST_ID))
        .or_else(|| resp.headers().get("x-amzn-requestid"))
        .cloned();
    let error_type = resp
        .headers()
        .get(&X_AMZN_ERRORTYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(':').next().unwrap_or(s).to_owned());
    let (_, incoming) = resp.into_parts();

    let framer = if content_type.starts_with(b"text/event-stream") {
        Some(Framer::Sse(SseSplitter::new()))
    } else if content_type.starts_with(b"application/vnd.amazon.eventstream") {
        Some(Framer::EventStream(Box::new(EventStreamDecoder::new())))
    } else {
        None
    };
    if call.stream && status.is_success() {
        if let Some(framer) = framer {
            let mut stream = TranslatingStream::new(
                incoming,
                lease,
                framer,
                translate::stream_decoder(upstream, call.served_model),
                translate::stream_encoder(client, opts),
                deadline,
                settle,
                body.len(),
            )
            .with_clock(ContentClock::new(
                call.ctx
                    .first_token
                    .map(|d| tokio::time::Instant::from_std(sent_at + d)),
                call.ctx.stall,
            ));
            let primed = std::pin::Pin::new(&mut stream).prime().await;
            return match primed {
                Ok(()) => {
                    let mut resp = Response::new(GatewayBody::empty());
                    head(
                        resp.headers_mut(),
                        &EVENT_STREAM,
                        &request_id,
                        call,
                        upstream_id,
                        pre + head_at.elapsed(),
                    );
                    stream.set_overhead(pre + head_at.elapsed());
                    *resp.body_mut() = GatewayBody::Translated(Box::new(stream));
                    Ok(resp)
                }
                Err((failure, settle)) => {
                    drop(stream);
                    if call.ctx.failover {
                        return Err(super::forward::prime_failed(call, failure, settle));
                    }
                    Ok(error_answer(
                        client,
                        &failure.info(),
                        settle,
                        &request_id,
                        call,
                        upstream_id,
                        pre,
                    ))
                }
            };
        }
    }

    let bytes = match read_upstream_body(provider, incoming, deadline, total).await {
        Ok(b) => b,
        Err(e) => return Err(fail(e, settle)),
    };
    lease.release();
    if !status.is_success() {
        let info =
            translate::decode_error(upstream, status.as_u16(), error_type.as_deref(), &bytes);
        if call.ctx.failover {
            let answer = error_answer(client, &info, None, &request_id, call, upstream_id, pre);
            return Err(Failure {
                error: GatewayError::UpstreamStatus {
                    provider: provider.id.to_string(),
                    status: answer.status().as_u16(),
                },
                settle: Some(settle),
                retry: Some(Box::new(super::RetryInfo {
                    status: answer.status().as_u16(),
                    answer,
                    info,
                    retry_after,
                })),
            });
        }
        return Ok(error_answer(
            client,
            &info,
            Some(settle),
            &request_id,
            call,
            upstream_id,
            pre,
        ));
    }
    let answer = match translate::decode_response(upstream, &bytes) {
        Ok(a) => a,
        Err(e) => {
            let error = GatewayError::UpstreamProtocol {
                provider: provider.id.to_string(),
                detail: e.to_string(),
            };
            return Err(fail(error, settle));
        }
    };
    let usage = answer.usage;
    let started = Instant::now();
    let (out, content_type) = if call.stream {
        // The upstream answered a stream request with a whole body: stream it as one piece.
        let mut encoder = translate::stream_encoder(client, opts);
        let mut out = Vec::new();
        for ev in translate::response_to_events(&answer) {
            encoder.event(&ev, &mut out);
        }
        encoder.end(&mut out);
        (out, &EVENT_STREAM)
    } else {
        (
            translate::encode_response(client, &answer, &opts),
            &APPLICATION_JSON,
        )
    };
    let overhead = pre + started.elapsed();
    settle.overhead = overhead;
    let mut resp = Response::new(GatewayBody::full(out));
    head(
        resp.headers_mut(),
        content_type,
        &request_id,
        call,
        upstream_id,
        overhead,
    );
    settle.finish(200, Some(usage), false);
    Ok(resp)
}

/// An upstream error, in the client's dialect, with the upstream's status (Anthropic's 529
/// becomes 503 for clients whose APIs don't define it).
fn error_answer(
    client: Dialect,
    info: &ErrorInfo,
    settle: Option<Settle>,
    request_id: &HeaderValue,
    call: &Call<'_>,
    upstream_id: Option<HeaderValue>,
    overhead: std::time::Duration,
) -> Response<GatewayBody> {
    let mut info = info.clone();
    info.status = error_response::client_status(info.status, client);
    if let Some(settle) = settle {
        settle.finish(info.status, None, false);
    }
    let mut resp = error_response::info(client, &info, Some(request_id));
    head(
        resp.headers_mut(),
        &APPLICATION_JSON,
        request_id,
        call,
        upstream_id,
        overhead,
    );
    resp
}

fn head(
    headers: &mut HeaderMap,
    content_type: &HeaderValue,
    request_id: &HeaderValue,
    call: &Call<'_>,
    upstream_id: Option<HeaderValue>,
    overhead: std::time::Duration,
) {
    headers.insert(header::CONTENT_TYPE, content_type.clone());
    if let Some(id) = upstream_id {
        headers.insert(&X_UPSTREAM_REQUEST_ID, id);
    }
    finish_head(headers, request_id, call.served_header.clone(), overhead);
}
