//! Answering a request from the built-in mock provider, paced like a real upstream.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::Response;

use super::body::{GatewayBody, PacedFrames};
use super::settle::Settle;
use super::{finish_head, Chosen, Failure, APPLICATION_JSON, EVENT_STREAM};
use crate::dialect::openai::RequestFields;
use crate::providers::mock;
use crate::routing::snapshot::Endpoint;

pub(super) async fn answer_from_mock(
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
