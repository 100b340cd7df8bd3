//! Answering a request from the built-in mock provider, paced like a real upstream.
//!
//! The mock generates its words in the OpenAI dialect; a mock configured for another dialect
//! re-encodes them in that dialect, and a client of yet another dialect gets them translated,
//! exactly as an answer from a real provider of the mock's dialect would be.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::Response;

use super::body::{GatewayBody, PacedFrames};
use super::settle::Settle;
use super::translated::now_secs;
use super::{finish_head, Call, Failure, APPLICATION_JSON, EVENT_STREAM};
use crate::dialect::openai::RequestFields;
use crate::error::GatewayError;
use crate::providers::mock;
use crate::translate::{self, ir::Dialect, ir::EncodeOptions};

pub(super) async fn answer_from_mock(
    call: &Call<'_>,
    body: &Bytes,
    fields: Option<&RequestFields<'_>>,
    mut settle: Settle,
) -> Result<Response<GatewayBody>, Failure> {
    let settings = call.chosen.provider.mock;
    let client = call.inbound.dialect;
    let mock_dialect = call.chosen.provider.dialect;
    let fail = Failure::routed;
    // The OpenAI-dialect request the generator reads.
    let (openai_body, include_usage, client_usage) = match (client, fields) {
        (Dialect::OpenAi, Some(f)) => (body.clone(), f.include_usage, f.include_usage),
        _ => {
            let req = match translate::decode_request(client, body, call.model, call.stream) {
                Ok(r) => r,
                Err(e) => return Err(fail(e.into(), settle)),
            };
            match translate::encode_request(Dialect::OpenAi, &req, call.served_model) {
                Ok(b) => (Bytes::from(b), true, req.stream_usage),
                Err(e) => return Err(fail(e.into(), settle)),
            }
        }
    };
    let answer = match mock::answer(
        &settings,
        call.inbound.endpoint,
        &openai_body,
        call.served_model,
        call.stream,
        include_usage,
    ) {
        Ok(a) => a,
        Err(error) => return Err(fail(error, settle)),
    };
    let mut frames = answer.frames;
    // OpenAI → the mock's dialect → the client's dialect, each step only when they differ.
    let hops: Vec<(Dialect, Dialect, bool)> = [
        (Dialect::OpenAi, mock_dialect, true),
        (mock_dialect, client, client_usage),
    ]
    .into_iter()
    .filter(|(from, to, _)| from != to)
    .collect();
    for (from, to, stream_usage) in hops {
        let opts = EncodeOptions {
            model: if to == client {
                call.model.to_string()
            } else {
                call.served_model.to_string()
            },
            stream_usage,
            created: now_secs(),
        };
        frames = if answer.stream {
            crate::stream::translate_frames(&frames, from, to, opts, call.served_model)
        } else {
            let whole = frames.into_iter().next().unwrap_or_default();
            let decoded = match translate::decode_response(from, &whole) {
                Ok(r) => r,
                Err(e) => return Err(fail(GatewayError::Internal(format!("mock: {e}")), settle)),
            };
            vec![Bytes::from(translate::encode_response(to, &decoded, &opts))]
        };
    }
    let before_wait = settle.started.elapsed();
    if !answer.latency.is_zero() {
        tokio::time::sleep(answer.latency).await;
    }
    let mut resp = Response::new(GatewayBody::empty());
    let content_type: &HeaderValue = if answer.stream {
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
        call.served_header.clone(),
        before_wait,
    );
    *resp.body_mut() = if answer.stream {
        GatewayBody::Frames(Box::new(PacedFrames::new(
            frames,
            answer.chunk_delay,
            settle,
            answer.usage,
        )))
    } else {
        let usage = answer.usage;
        super::cost_header(resp.headers_mut(), &settle, Some(&usage));
        let body = frames.into_iter().next().unwrap_or_default();
        settle.finish(200, Some(usage), false);
        GatewayBody::full(body)
    };
    Ok(resp)
}
