//! Converse response body → IR.

use serde::Deserialize;
use serde_json::Value;

use super::{synth_id, BedrockUsage};
use crate::translate::ir::{ChatResponse, Part, StopReason, TranslateError};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ConverseResponse {
    output: Option<Output>,
    stop_reason: Option<String>,
    usage: Option<BedrockUsage>,
    additional_model_response_fields: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Output {
    message: Option<OutMessage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OutMessage {
    content: Vec<OutBlock>,
}

/// One content block; a union, so every member is optional and unknown members are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct OutBlock {
    text: Option<String>,
    tool_use: Option<OutToolUse>,
    reasoning_content: Option<OutReasoning>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct OutToolUse {
    tool_use_id: String,
    name: String,
    input: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct OutReasoning {
    reasoning_text: Option<ReasoningText>,
    redacted_content: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReasoningText {
    text: String,
    signature: Option<String>,
}

/// Converse `stopReason` → IR. `model_context_window_exceeded` means the output was cut by the
/// window, which clients know as a length stop.
pub fn map_stop_reason(reason: &str) -> StopReason {
    match reason {
        "end_turn" => StopReason::EndTurn,
        "tool_use" => StopReason::ToolUse,
        "max_tokens" | "model_context_window_exceeded" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "guardrail_intervened" | "content_filtered" => StopReason::ContentFilter,
        _ => StopReason::Other,
    }
}

/// A turn that made tool calls ended for them, whatever the upstream said (pitfall: some models
/// report `end_turn` after tool calls, and clients then don't run the tools).
pub(super) fn derive_tool_use(reason: StopReason, made_tool_calls: bool) -> StopReason {
    if made_tool_calls && reason == StopReason::EndTurn {
        StopReason::ToolUse
    } else {
        reason
    }
}

/// The matched stop sequence, which Claude models report in
/// `additionalModelResponseFields.stop_sequence`.
pub(super) fn stop_sequence(fields: Option<&Value>) -> Option<String> {
    fields?.get("stop_sequence")?.as_str().map(str::to_owned)
}

/// Converse response body → IR. Bedrock bodies name no model and carry no id: `model` is left
/// empty for the caller (who knows the routed model) and the id is synthesised.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, TranslateError> {
    let resp: ConverseResponse = crate::translate::json::from_slice(body)?;
    let blocks = resp
        .output
        .and_then(|o| o.message)
        .map(|m| m.content)
        .ok_or_else(|| {
            TranslateError::Protocol("Bedrock response has no output.message".to_owned())
        })?;
    let mut content = Vec::with_capacity(blocks.len());
    let mut tool_calls = false;
    for b in blocks {
        if let Some(text) = b.text {
            content.push(Part::Text(crate::translate::ir::TextBlock {
                text,
                cache_control: None,
            }));
        } else if let Some(t) = b.tool_use {
            tool_calls = true;
            content.push(Part::ToolCall {
                id: t.tool_use_id,
                name: t.name,
                arguments: tool_arguments(&t.input)?,
                signature: None,
            });
        } else if let Some(r) = b.reasoning_content {
            if let Some(t) = r.reasoning_text {
                content.push(Part::Thinking {
                    text: t.text,
                    signature: t.signature,
                });
            } else if let Some(data) = r.redacted_content {
                content.push(Part::RedactedThinking { data });
            }
        }
        // Other blocks (citations, guard content, images in answers) have no IR form yet.
    }
    let reason = resp
        .stop_reason
        .as_deref()
        .map_or(StopReason::Other, map_stop_reason);
    Ok(ChatResponse {
        id: synth_id(),
        model: String::new(),
        content,
        stop_reason: derive_tool_use(reason, tool_calls),
        stop_sequence: stop_sequence(resp.additional_model_response_fields.as_ref()),
        usage: resp.usage.unwrap_or_default().to_usage(),
    })
}

/// Tool input object → compact JSON text (the IR's OpenAI-style arguments). A missing input is
/// an empty object, not `null`, so clients can always parse it as an object.
fn tool_arguments(input: &Value) -> Result<String, TranslateError> {
    if input.is_null() {
        return Ok("{}".to_owned());
    }
    Ok(serde_json::to_string(input)?)
}
