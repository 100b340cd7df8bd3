//! Client and provider speak different dialects: the request is decoded into the internal
//! model and encoded for the provider; the answer (whole, streamed or an error) is decoded from
//! the provider's dialect and encoded in the client's.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Response;

use super::body::GatewayBody;
use super::exchange::{self, Outgoing};
use super::settle::Settle;
use super::{finish_head, Call, Failure, APPLICATION_JSON, EVENT_STREAM};
use crate::error::GatewayError;
use crate::providers::openai::X_UPSTREAM_REQUEST_ID;
use crate::providers::Endpoint;
use crate::proxy::outbound::{self, ClientHeaders};
use crate::stream::{Framing, Pipeline};
use crate::translate::{self, ir::EncodeOptions};

static X_AMZN_ERRORTYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");

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
    let upstream = provider.dialect;
    let mut req = match translate::decode_request(client, body, call.model, call.stream) {
        Ok(r) => r,
        Err(e) => return Err(Failure::routed(e.into(), settle)),
    };
    req.stream = call.stream;
    let opts = EncodeOptions {
        model: call.model.to_string(),
        stream_usage: req.stream_usage,
        created: now_secs(),
    };
    let upstream_body = match translate::encode_request(upstream, &req, call.served_model) {
        Ok(b) => Bytes::from(b),
        Err(e) => return Err(Failure::routed(e.into(), settle)),
    };
    drop(req);
    let mut key_headers = HeaderMap::new();
    if provider.auth == crate::config::AuthMode::Passthrough {
        key_headers = client_headers.clone();
        outbound::gemini_query_key(client_query, &mut key_headers);
    }
    let outgoing = Outgoing {
        endpoint: Endpoint::ChatCompletions,
        query: None,
        headers: key_headers,
        body: upstream_body,
        client_headers: ClientHeaders::Fresh,
    };
    let ex = match exchange::send(call, outgoing, &settle).await {
        Ok(ex) => ex,
        Err(e) => return Err(Failure::routed(e, settle)),
    };
    settle.ttfb_us = ex.ttfb_us();
    let status = ex.status();
    let upstream_id = ex.upstream_id();
    if call.stream && status.is_success() {
        if let Some(framing) = Framing::for_content_type(ex.content_type()) {
            let pipeline = Pipeline::translate(
                framing,
                translate::stream_decoder(upstream, call.served_model),
                translate::stream_encoder(client, opts),
                body.len(),
            );
            // Always primed: an upstream error before any content is answered as a real HTTP
            // error in the client's dialect, which clients retry.
            return ex
                .stream(call, pipeline, true, settle, |p, s| {
                    // The gateway's own head (200, its headers), not the upstream's.
                    *p = Response::new(()).into_parts().0;
                    head(
                        &mut p.headers,
                        &EVENT_STREAM,
                        s,
                        call,
                        upstream_id,
                        s.overhead,
                    );
                })
                .await;
        }
    }

    let retry_after = ex.retry_after(call);
    let pre = ex.pre;
    let error_type = ex
        .parts
        .headers
        .get(&X_AMZN_ERRORTYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(':').next().unwrap_or(s).to_owned());
    let bytes = match ex.read_all(provider).await {
        Ok((_, b)) => b,
        Err(e) => return Err(Failure::routed(e, settle)),
    };
    settle.overhead = pre;
    if !status.is_success() {
        let info =
            translate::decode_error(upstream, status.as_u16(), error_type.as_deref(), &bytes);
        return exchange::failed(call, &info, None, retry_after, upstream_id, Some(settle));
    }
    let answer = match translate::decode_response(upstream, &bytes) {
        Ok(a) => a,
        Err(e) => {
            let error = GatewayError::UpstreamProtocol {
                provider: provider.id.to_string(),
                detail: e.to_string(),
            };
            return Err(Failure::routed(error, settle));
        }
    };
    let usage = answer.usage;
    let started = tokio::time::Instant::now();
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
    settle.overhead = pre + started.elapsed();
    let mut resp = Response::new(GatewayBody::full(out));
    head(
        resp.headers_mut(),
        content_type,
        &settle,
        call,
        upstream_id,
        settle.overhead,
    );
    if !call.stream {
        super::cost_header(resp.headers_mut(), &settle, Some(&usage));
    }
    settle.finish(200, Some(usage), false);
    Ok(resp)
}

/// The head of a translated answer: the gateway's own, with the upstream's request id.
fn head(
    headers: &mut HeaderMap,
    content_type: &HeaderValue,
    settle: &Settle,
    call: &Call<'_>,
    upstream_id: Option<HeaderValue>,
    overhead: std::time::Duration,
) {
    headers.insert(header::CONTENT_TYPE, content_type.clone());
    if let Some(id) = upstream_id {
        headers.insert(&X_UPSTREAM_REQUEST_ID, id);
    }
    finish_head(
        headers,
        &settle.request_id,
        call.served_header.clone(),
        overhead,
    );
}
