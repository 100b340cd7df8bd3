//! Gemini `GenerateContentResponse` ⇄ IR `ChatResponse` (non-stream).

use super::request::encode_media;
use super::wire::{Candidate, Content, FunctionCall, GenerateContentResponse, WirePart};
use super::{
    args_object_lenient, args_text, finish_reason, response_call_id, stop_reason, usage_from_wire,
    usage_to_wire, with_tool_use,
};
use crate::translate::ir::{
    ChatResponse, EncodeOptions, Part, StopReason, TextBlock, TranslateError,
};

/// An upstream Gemini answer → IR (candidate 0).
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, TranslateError> {
    let wire: GenerateContentResponse = crate::translate::json::from_slice(body)?;
    if let Some(err) = &wire.error {
        return Err(TranslateError::Protocol(format!(
            "Gemini answered an error in a success body: {}",
            err.message.as_deref().unwrap_or("(no message)")
        )));
    }
    let id = wire.response_id.clone().unwrap_or_default();
    let mut content = Vec::new();
    let mut calls = 0u32;
    let candidate = wire.candidate0();
    if let Some(parts) = candidate.and_then(|c| c.content.as_ref()).map(|c| &c.parts) {
        for p in parts {
            if let Some(call) = &p.function_call {
                content.push(Part::ToolCall {
                    id: response_call_id(&id, calls, &call.name),
                    name: call.name.clone(),
                    arguments: args_text(call.args.as_ref()),
                    signature: p.thought_signature.clone(),
                });
                calls += 1;
            } else if p.thought == Some(true) {
                let text = p.text.clone().unwrap_or_default();
                if !text.is_empty() || p.thought_signature.is_some() {
                    content.push(Part::Thinking {
                        text,
                        signature: p.thought_signature.clone(),
                    });
                }
            } else {
                // A signed plain text part: the signature rides on an empty thinking part
                // (see `request::decode_part`).
                if let Some(sig) = &p.thought_signature {
                    content.push(Part::Thinking {
                        text: String::new(),
                        signature: Some(sig.clone()),
                    });
                }
                if let Some(text) = p.text.as_ref().filter(|t| !t.is_empty()) {
                    content.push(Part::Text(TextBlock {
                        text: text.clone(),
                        cache_control: None,
                    }));
                }
                // Generated media (inlineData) has no place in an IR answer and is dropped.
            }
        }
    }
    let blocked = wire
        .prompt_feedback
        .as_ref()
        .is_some_and(|f| f.block_reason.as_deref().is_some_and(|r| !r.is_empty()));
    let stop_reason = if blocked {
        StopReason::ContentFilter
    } else {
        // A complete body without a reason is a normal end.
        let reason = candidate
            .and_then(|c| c.finish_reason.as_deref())
            .map_or(StopReason::EndTurn, stop_reason);
        with_tool_use(reason, calls > 0)
    };
    Ok(ChatResponse {
        id,
        model: wire.model_version.unwrap_or_default(),
        content,
        stop_reason,
        stop_sequence: None,
        usage: wire
            .usage_metadata
            .as_ref()
            .map(usage_from_wire)
            .unwrap_or_default(),
    })
}

/// IR `Part` of an answer → Gemini part(s). Shared with the stream encoder.
pub(super) fn answer_part(part: &Part) -> Option<WirePart> {
    match part {
        Part::Text(b) if !b.text.is_empty() => Some(WirePart {
            text: Some(b.text.clone()),
            ..WirePart::default()
        }),
        Part::Refusal(s) if !s.is_empty() => Some(WirePart {
            text: Some(s.clone()),
            ..WirePart::default()
        }),
        Part::Thinking { text, signature } if !text.is_empty() || signature.is_some() => {
            Some(WirePart {
                text: Some(text.clone()),
                thought: Some(true),
                thought_signature: signature.clone(),
                ..WirePart::default()
            })
        }
        Part::ToolCall {
            name,
            arguments,
            signature,
            ..
        } => Some(call_part(name, arguments, signature.clone())),
        Part::Image(source) => encode_media(source, "image/jpeg", &String::new).ok(),
        Part::Document { source, .. } => encode_media(source, "application/pdf", &String::new).ok(),
        _ => None,
    }
}

pub(super) fn call_part(name: &str, arguments: &str, signature: Option<String>) -> WirePart {
    WirePart {
        function_call: Some(FunctionCall {
            id: None,
            name: name.to_owned(),
            args: Some(args_object_lenient(arguments)),
        }),
        thought_signature: signature,
        ..WirePart::default()
    }
}

/// IR answer → a Gemini `GenerateContentResponse` for a Gemini client.
pub fn encode_response(resp: &ChatResponse, opts: &EncodeOptions) -> Vec<u8> {
    let wire = GenerateContentResponse {
        candidates: vec![Candidate {
            content: Some(Content {
                role: Some("model".to_owned()),
                parts: resp.content.iter().filter_map(answer_part).collect(),
            }),
            finish_reason: Some(finish_reason(resp.stop_reason).to_owned()),
            index: Some(0),
        }],
        prompt_feedback: None,
        usage_metadata: Some(usage_to_wire(&resp.usage)),
        model_version: Some(opts.model.clone()),
        response_id: Some(resp.id.clone()),
        error: None,
    };
    // Serialising plain structs with string keys cannot fail.
    serde_json::to_vec(&wire).unwrap_or_default()
}
