//! Same-dialect forwarding (pass-through): the body goes up as sent, with only the model
//! renamed (and, for OpenAI chat streams, `include_usage` injected); the answer comes back byte
//! for byte, tapped for usage.

use bytes::Bytes;
use http::header::HeaderMap;
use http::Response;

use super::body::GatewayBody;
use super::exchange::{self, Outgoing};
use super::outbound;
use super::settle::Settle;
use super::{finish_head, Call, Failure};
use crate::config::ProviderKind;
use crate::dialect::openai::{self as wire, BodyEdits, RequestFields};
use crate::providers::openai;
use crate::providers::Endpoint;
use crate::stream::event_tap::EventDialect;
use crate::stream::{Pipeline, Tap};
use crate::translate::ir::Dialect;
use crate::usage::{self, Usage};

/// OpenAI or Anthropic client to a provider of its own dialect.
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
        Err(e) => return Err(Failure::routed(e, settle)),
    };
    let (tap, usage_of): (Tap, UsageOf) = match (dialect, endpoint) {
        (Dialect::Anthropic, _) => (
            Tap::events(EventDialect::Anthropic, body.len()),
            anthropic_body_usage,
        ),
        (_, Endpoint::Responses) => (
            Tap::events(EventDialect::Responses, body.len()),
            usage::from_responses_json,
        ),
        _ => (Tap::openai(strip, body.len()), usage::from_openai_body),
    };
    // OpenAI-kind and Anthropic providers take the client's query string (Anthropic's SDK
    // sends `?beta=true`); Azure's `api-version` is the gateway's own.
    let query = matches!(
        call.chosen.provider.kind,
        ProviderKind::OpenAi | ProviderKind::Anthropic
    )
    .then_some(query)
    .flatten();
    pass_through(call, headers, query, upstream_body, tap, usage_of, settle).await
}

/// Gemini client to Gemini provider: the body has no model (it is in the path), so it goes up
/// untouched.
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
    let tap = Tap::events(EventDialect::Gemini, body.len());
    pass_through(
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

/// Sends a pass-through request and answers with the upstream's response, tapped for usage.
async fn pass_through(
    call: &Call<'_>,
    headers: HeaderMap,
    query: Option<&str>,
    upstream_body: Bytes,
    tap: Tap,
    usage_of: UsageOf,
    mut settle: Settle,
) -> Result<Response<GatewayBody>, Failure> {
    let provider = &call.chosen.provider;
    let outgoing = Outgoing {
        endpoint: call.inbound.endpoint,
        query,
        headers,
        body: upstream_body,
        client_headers: outbound::ClientHeaders::Keep,
    };
    let ex = match exchange::send(call, outgoing, &settle).await {
        Ok(ex) => ex,
        Err(e) => return Err(Failure::routed(e, settle)),
    };
    settle.ttfb_us = ex.ttfb_us();
    let status = ex.status();
    if call.stream && status.is_success() && ex.content_type().starts_with(b"text/event-stream") {
        // The provider's decoder watches the events only when content must be detected.
        let ctx = &call.ctx;
        let watch = (ctx.prime || ctx.first_token.is_some() || ctx.stall.is_some()).then(|| {
            crate::translate::stream_decoder(call.chosen.provider.dialect, call.served_model)
        });
        let served = call.served_header.clone();
        // Always framed by hyper: a stream may end with a gateway-written error event, which a
        // forwarded Content-Length would cut off.
        return ex
            .stream(
                call,
                Pipeline::forward(tap, watch),
                ctx.prime,
                settle,
                |p, s| client_head(&mut p.headers, s, served, true),
            )
            .await;
    }

    // Non-stream (or an error answer to a stream request): buffer, tap usage, forward untouched.
    let retry_after = ex.retry_after(call);
    let pre = ex.pre;
    let (mut parts, bytes) = match ex.read_all(provider).await {
        Ok(r) => r,
        Err(e) => return Err(Failure::routed(e, settle)),
    };
    let body_at = tokio::time::Instant::now();
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
    if status.is_success() {
        super::cost_header(&mut parts.headers, &settle, usage.as_ref());
    }
    if call.ctx.failover && !status.is_success() {
        let info = crate::translate::decode_error(provider.dialect, status.as_u16(), None, &bytes);
        let answer = Response::from_parts(parts, GatewayBody::full(bytes));
        return exchange::failed(call, &info, Some(answer), retry_after, None, Some(settle));
    }
    settle.finish(status.as_u16(), usage, false);
    Ok(Response::from_parts(parts, GatewayBody::full(bytes)))
}

/// The upstream's response head, cleaned and stamped with the gateway's headers.
pub(super) fn client_head(
    headers: &mut HeaderMap,
    settle: &Settle,
    served: http::HeaderValue,
    body_changed: bool,
) {
    openai::response_headers(headers, &settle.request_id, body_changed);
    finish_head(headers, &settle.request_id, served, settle.overhead);
}
