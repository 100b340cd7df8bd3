//! `POST /v1/messages/count_tokens`: forwarded to Anthropic providers; for any other target
//! the gateway estimates with OpenAI's `o200k_base` BPE (tiktoken-rs) and says so in the
//! `x-ferrogate-token-estimate` header.

use std::sync::LazyLock;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use super::body::GatewayBody;
use super::settle::Settle;
use super::{finish_head, json_response, Call, Failure};
use crate::config::ProviderKind;
use crate::dialect::openai::RequestFields;
use crate::error::GatewayError;
use crate::translate::ir::{ChatRequest, Dialect, Part};

pub static X_FERROGATE_TOKEN_ESTIMATE: HeaderName =
    HeaderName::from_static("x-ferrogate-token-estimate");

static BPE: LazyLock<Option<tiktoken_rs::CoreBPE>> =
    LazyLock::new(|| tiktoken_rs::o200k_base().ok());

/// Tokens counted for an image: Anthropic's own rule of thumb is (width × height) / 750, about
/// 1,600 for a typical 1,092-pixel-square picture; the size is unknown here.
const IMAGE_TOKENS: usize = 1_600;
/// Per-message framing tokens (role markers), as OpenAI's cookbook counts them.
const MESSAGE_OVERHEAD: usize = 3;

pub(super) async fn count(
    call: &Call<'_>,
    query: Option<&str>,
    headers: HeaderMap,
    body: &Bytes,
    fields: Option<&RequestFields<'_>>,
    settle: Settle,
) -> Result<Response<GatewayBody>, Failure> {
    if call.chosen.provider.kind == ProviderKind::Anthropic {
        if let Some(fields) = fields {
            return super::forward::forward_same_dialect(
                call, headers, query, body, fields, settle,
            )
            .await;
        }
    }
    let req = match crate::translate::decode_request(Dialect::Anthropic, body, call.model, false) {
        Ok(r) => r,
        Err(e) => return Err(Failure::routed(e.into(), settle)),
    };
    // Off the reactor: the first call loads the BPE tables (~1 s in debug builds), and a
    // large agent prompt takes milliseconds to tokenize.
    let n = tokio::task::spawn_blocking(move || estimate(&req))
        .await
        .ok()
        .flatten();
    let Some(n) = n else {
        return Err(Failure::routed(
            GatewayError::Internal("the token estimator failed to load".into()),
            settle,
        ));
    };
    let mut resp = json_response(
        StatusCode::OK,
        Bytes::from(format!("{{\"input_tokens\":{n}}}")),
    );
    resp.headers_mut().insert(
        &X_FERROGATE_TOKEN_ESTIMATE,
        HeaderValue::from_static("o200k_base"),
    );
    let overhead = settle.started.elapsed();
    finish_head(
        resp.headers_mut(),
        &settle.request_id,
        call.served_header.clone(),
        overhead,
    );
    settle.finish(200, None, false);
    Ok(resp)
}

/// Estimated input tokens of a request: text of the system prompt, messages, tool calls and
/// results, and tool definitions.
pub fn estimate(req: &ChatRequest) -> Option<usize> {
    let bpe = BPE.as_ref()?;
    let count = |s: &str| bpe.encode_ordinary(s).len();
    let mut n = 0;
    for s in &req.system {
        n += count(&s.text);
    }
    for m in &req.messages {
        n += MESSAGE_OVERHEAD;
        for p in &m.content {
            n += part_tokens(p, &count);
        }
    }
    for t in &req.tools {
        n += count(&t.name);
        n += t.description.as_deref().map(count).unwrap_or(0);
        n += count(&t.parameters.to_string());
    }
    Some(n)
}

fn part_tokens(p: &Part, count: &dyn Fn(&str) -> usize) -> usize {
    match p {
        Part::Text(t) => count(&t.text),
        Part::Image(_) | Part::Document { .. } => IMAGE_TOKENS,
        Part::ToolCall {
            name, arguments, ..
        } => count(name) + count(arguments),
        Part::ToolResult { content, .. } => content.iter().map(|c| part_tokens(c, count)).sum(),
        Part::Thinking { text, .. } => count(text),
        Part::RedactedThinking { .. } => 0,
        Part::Refusal(r) => count(r),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::translate::ir::{Message, Role, TextBlock};

    #[test]
    fn estimate_counts_text_and_tools() {
        let mut req = ChatRequest::default();
        req.system.push(TextBlock {
            text: "You are a helpful assistant.".into(),
            cache_control: None,
        });
        req.messages.push(Message {
            role: Role::User,
            content: vec![Part::Text(TextBlock {
                text: "Hello, world".into(),
                cache_control: None,
            })],
        });
        let base = estimate(&req).unwrap();
        // "You are a helpful assistant." is 6 tokens, "Hello, world" 3, plus framing.
        assert_eq!(base, 6 + 3 + MESSAGE_OVERHEAD);
        req.tools.push(crate::translate::ir::Tool {
            name: "get_weather".into(),
            description: Some("Weather for a city".into()),
            parameters: serde_json::json!({"type":"object","properties":{"city":{"type":"string"}}}),
            strict: None,
        });
        assert!(estimate(&req).unwrap() > base + 10);
    }
}
