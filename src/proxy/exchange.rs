//! One upstream exchange, the same for every path that calls a provider: the URI, the request
//! with the provider's credentials, the send under the first-byte deadline, the time to first
//! byte, the total deadline, `retry-after`; then the answer read whole or streamed through the
//! stream pipeline (primed when asked), and an upstream failure either answered or held back
//! for the resilience loop.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::Incoming;

use super::body::GatewayBody;
use super::content_clock::ContentClock;
use super::error_response;
use super::read_body::{collect_body, ready_or_timeout, BodyError};
use super::settle::Settle;
use super::stream_body::UpstreamStream;
use super::{finish_head, Call, Failure, RetryInfo, MAX_UPSTREAM_BODY};
use crate::error::{Deadline, GatewayError};
use crate::providers::openai::{X_REQUEST_ID, X_UPSTREAM_REQUEST_ID};
use crate::providers::Endpoint;
use crate::proxy::outbound::{self, ClientHeaders};
use crate::routing::snapshot::ProviderRt;
use crate::stream::Pipeline;
use crate::translate::ir::ErrorInfo;
use crate::upstream::{error_chain, Lease, SendError};

static X_AMZN_REQUESTID: HeaderName = HeaderName::from_static("x-amzn-requestid");
static REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

/// What goes upstream.
pub(super) struct Outgoing<'a> {
    /// Which provider API endpoint (translated requests always use chat).
    pub endpoint: Endpoint,
    /// The client's query string, where the provider takes it.
    pub query: Option<&'a str>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub client_headers: ClientHeaders,
}

/// An upstream answer whose head has arrived.
pub(super) struct Exchange {
    pub parts: http::response::Parts,
    incoming: Incoming,
    lease: Lease,
    sent_at: tokio::time::Instant,
    /// Gateway time before the request went upstream.
    pub pre: Duration,
    head_at: tokio::time::Instant,
    deadline: tokio::time::Instant,
    /// The total deadline in effect (the provider's, or a model / request override).
    total: Duration,
}

/// Sends the request and waits for the response head under the first-byte deadline.
pub(super) async fn send(
    call: &Call<'_>,
    out: Outgoing<'_>,
    settle: &Settle,
) -> Result<Exchange, GatewayError> {
    let provider = &call.chosen.provider;
    let uri = provider
        .upstream_uri(
            out.endpoint,
            call.served_model,
            call.chosen.deployment.as_deref(),
            call.stream,
        )
        .map_err(GatewayError::Internal)?;
    let req = outbound::build_request(
        provider,
        uri,
        out.query,
        out.headers,
        out.body,
        &settle.request_id,
        out.client_headers,
        call.chosen.key,
    )?;
    let Some(pool) = provider.pool.as_ref() else {
        return Err(GatewayError::Internal(
            "provider has no upstream pool".into(),
        ));
    };
    // Tokio's clock (the system's in production), so paused-clock tests see deadlines at their
    // virtual times.
    let sent_at = tokio::time::Instant::now();
    let first_byte = call.ctx.first_byte.unwrap_or(provider.first_byte_timeout);
    let (resp, lease) = match tokio::time::timeout(first_byte, pool.send(req)).await {
        Ok(Ok(r)) => {
            provider.health.record_success();
            r
        }
        Ok(Err(e)) => {
            provider.health.record_failure();
            return Err(send_error(provider, &e));
        }
        Err(_) => {
            provider.health.record_failure();
            return Err(GatewayError::UpstreamTimeout {
                provider: provider.id.to_string(),
                deadline: Deadline::FirstByte,
                after: first_byte,
            });
        }
    };
    let head_at = tokio::time::Instant::now();
    let ttfb = head_at - sent_at;
    settle.metrics.ttfb.record(ttfb.as_secs_f64());
    let total = call.ctx.total.unwrap_or(provider.total_timeout);
    let (parts, incoming) = resp.into_parts();
    Ok(Exchange {
        parts,
        incoming,
        lease,
        sent_at,
        pre: sent_at.into_std().saturating_duration_since(settle.started),
        head_at,
        deadline: sent_at + total,
        total,
    })
}

fn send_error(provider: &ProviderRt, e: &SendError) -> GatewayError {
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

impl Exchange {
    /// The upstream's time to its response head, as the record keeps it.
    pub fn ttfb_us(&self) -> u32 {
        crate::telemetry::request_log::micros(self.head_at - self.sent_at)
    }

    pub fn status(&self) -> StatusCode {
        self.parts.status
    }

    pub fn content_type(&self) -> &[u8] {
        self.parts
            .headers
            .get(header::CONTENT_TYPE)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default()
    }

    /// The upstream's request id, for the `x-upstream-request-id` of a translated answer.
    pub fn upstream_id(&self) -> Option<HeaderValue> {
        let h = &self.parts.headers;
        h.get(&REQUEST_ID)
            .or_else(|| h.get(&X_REQUEST_ID))
            .or_else(|| h.get(&X_AMZN_REQUESTID))
            .cloned()
    }

    /// `retry-after` of an error answer, when the resilience loop may use it.
    pub fn retry_after(&self, call: &Call<'_>) -> Option<Duration> {
        (call.ctx.failover && !self.status().is_success())
            .then(|| {
                crate::resilience::backoff::retry_after(
                    &self.parts.headers,
                    std::time::SystemTime::now(),
                )
            })
            .flatten()
    }

    /// Reads the whole body under the total deadline and the size cap; the connection goes
    /// back to its pool.
    pub async fn read_all(
        self,
        provider: &ProviderRt,
    ) -> Result<(http::response::Parts, Bytes), GatewayError> {
        let collect = collect_body(self.incoming, MAX_UPSTREAM_BODY);
        let remaining = self
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        match ready_or_timeout(collect, remaining).await {
            Some(Ok(b)) => {
                self.lease.release();
                Ok((self.parts, b))
            }
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
                after: self.total,
            }),
        }
    }

    /// The body as a stream through `pipeline`, under the total deadline and the call's
    /// first-token / stall deadlines. Primed (read until its first content) when `prime`, so a
    /// failure before any content is answered as an error instead of a 200 stream; otherwise
    /// the head goes out at once. `head` stamps the response head (the upstream's, to keep or
    /// replace).
    pub async fn stream(
        self,
        call: &Call<'_>,
        pipeline: Pipeline,
        prime: bool,
        settle: Settle,
        head: impl FnOnce(&mut http::response::Parts, &Settle),
    ) -> Result<Response<GatewayBody>, Failure> {
        let clock = ContentClock::new(
            call.ctx.first_token.map(|d| self.sent_at + d),
            call.ctx.stall,
        );
        let upstream_id = if prime { self.upstream_id() } else { None };
        let overhead_before = self.pre;
        let head_at = self.head_at;
        let mut parts = self.parts;
        let mut body = UpstreamStream::new(
            self.incoming,
            self.lease,
            pipeline,
            self.deadline,
            clock,
            settle,
        );
        if prime {
            if let Err((fault, mut settle)) = body.prime().await {
                drop(body);
                if let Some(s) = settle.as_mut() {
                    s.overhead = overhead_before;
                }
                return failed(call, &fault.info(), None, None, upstream_id, settle);
            }
        }
        let Some(settle) = body.settle_mut() else {
            return Err(Failure::from(GatewayError::Internal(
                "stream lost its settle".into(),
            )));
        };
        settle.overhead = overhead_before + head_at.elapsed();
        head(&mut parts, settle);
        Ok(Response::from_parts(
            parts,
            GatewayBody::Stream(Box::new(body)),
        ))
    }
}

/// An upstream failure: `info` is the error decoded; `answer` the client's answer when it is
/// not simply `info` in the client's dialect (a pass-through error body, forwarded as sent).
/// With `failover` it is held back for the resilience loop (another attempt may do better; if
/// none does, the answer is sent); otherwise it is the answer now.
// `Failure` is the same large type every attempt returns (async fns escape this lint); this is
// the failure path only.
#[allow(clippy::result_large_err)]
pub(super) fn failed(
    call: &Call<'_>,
    info: &ErrorInfo,
    answer: Option<Response<GatewayBody>>,
    retry_after: Option<Duration>,
    upstream_id: Option<HeaderValue>,
    settle: Option<Settle>,
) -> Result<Response<GatewayBody>, Failure> {
    let answer = answer.unwrap_or_else(|| {
        let mut client_info = info.clone();
        client_info.status = error_response::client_status(info.status, call.inbound.dialect);
        let request_id = settle.as_ref().map(|s| &s.request_id);
        let mut answer = error_response::info(call.inbound.dialect, &client_info, request_id);
        let headers = answer.headers_mut();
        if let Some(id) = upstream_id {
            headers.insert(&X_UPSTREAM_REQUEST_ID, id);
        }
        finish_head(
            headers,
            request_id.unwrap_or(&HeaderValue::from_static("-")),
            call.served_header.clone(),
            settle.as_ref().map(|s| s.overhead).unwrap_or_default(),
        );
        answer
    });
    let status = answer.status().as_u16();
    if !call.ctx.failover {
        if let Some(settle) = settle {
            settle.finish(status, None, false);
        }
        return Ok(answer);
    }
    Err(Failure {
        error: GatewayError::UpstreamStatus {
            provider: call.chosen.provider.id.to_string(),
            status,
        },
        settle,
        retry: Some(Box::new(RetryInfo {
            answer,
            status,
            info: info.clone(),
            retry_after,
        })),
    })
}
