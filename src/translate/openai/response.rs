//! Non-stream answers: an upstream `chat.completion` → IR, and IR → `chat.completion` for an
//! OpenAI client.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    chatcmpl_id, derive_tool_use, finish_reason_str, normalize_arguments, reasoning_parts,
    stop_reason_from_finish, to_json_vec, usage_from_value, ThinkingBlockIn, ThinkingBlockOut,
    WireUsageOut,
};
use crate::translate::ir::{
    ChatResponse, EncodeOptions, Part, StopReason, TextBlock, TranslateError,
};

#[derive(Debug, Deserialize)]
struct WireResponse {
    id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Value,
    /// A few compatible servers answer 200 with an error object.
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WireChoice {
    #[serde(default)]
    index: u32,
    message: Option<WireMessage>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    /// A string, null (tool calls only, or a refusal), or text parts from some servers.
    #[serde(default)]
    content: Value,
    refusal: Option<String>,
    tool_calls: Option<Vec<WireToolCall>>,
    reasoning_content: Option<String>,
    /// OpenRouter's and some vLLM versions' name for `reasoning_content`.
    reasoning: Option<Value>,
    thinking_blocks: Option<Vec<ThinkingBlockIn>>,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    id: Option<String>,
    function: WireFunctionCall,
}

#[derive(Debug, Deserialize)]
struct WireFunctionCall {
    #[serde(default)]
    name: String,
    /// JSON text per the spec; some compatible servers (older Ollama) send the object itself.
    #[serde(default)]
    arguments: Value,
}

/// Decodes an upstream's non-stream chat completion (choice 0) into the IR.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, TranslateError> {
    let wire: WireResponse = crate::translate::json::from_slice(body)?;
    let Some(choice) = pick_choice(wire.choices) else {
        let why = match wire.error {
            Some(err) => format!(
                "upstream answered with an error object: {}",
                err.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)")
            ),
            None => "upstream response has no choices".to_owned(),
        };
        return Err(TranslateError::Protocol(why));
    };

    let mut content = Vec::new();
    let mut saw_tool_call = false;
    if let Some(msg) = choice.message {
        let reasoning = msg.reasoning_content.or_else(|| {
            msg.reasoning
                .as_ref()
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        content.extend(reasoning_parts(msg.thinking_blocks, reasoning));
        match msg.content {
            Value::String(text) if !text.is_empty() => content.push(text_part(text)),
            Value::Array(items) => {
                for item in items {
                    // Only text parts carry answer text; anything else is ignored.
                    if item.get("type").and_then(Value::as_str) == Some("text") {
                        if let Some(text) = item.get("text").and_then(Value::as_str) {
                            if !text.is_empty() {
                                content.push(text_part(text.to_owned()));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        if let Some(refusal) = msg.refusal.filter(|r| !r.is_empty()) {
            content.push(Part::Refusal(refusal));
        }
        for (i, call) in msg.tool_calls.unwrap_or_default().into_iter().enumerate() {
            saw_tool_call = true;
            let arguments = match call.function.arguments {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            content.push(Part::ToolCall {
                // Ids are required to answer the call; synthesize one if a server omitted it.
                id: call
                    .id
                    .filter(|id| !id.is_empty())
                    .unwrap_or_else(|| format!("call_{i}")),
                name: call.function.name,
                arguments: normalize_arguments(arguments),
                signature: None,
            });
        }
    }

    let reason = choice
        .finish_reason
        .as_deref()
        .map_or(StopReason::EndTurn, stop_reason_from_finish);
    Ok(ChatResponse {
        id: wire.id.unwrap_or_default(),
        model: wire.model.unwrap_or_default(),
        content,
        stop_reason: derive_tool_use(reason, saw_tool_call),
        stop_sequence: None,
        usage: usage_from_value(&wire.usage).unwrap_or_default(),
    })
}

/// Choice 0 (by its `index`, not its position), else the first one.
fn pick_choice(mut choices: Vec<WireChoice>) -> Option<WireChoice> {
    let at = choices.iter().position(|c| c.index == 0).unwrap_or(0);
    (at < choices.len()).then(|| choices.swap_remove(at))
}

fn text_part(text: String) -> Part {
    Part::Text(TextBlock {
        text,
        cache_control: None,
    })
}

#[derive(Debug, Serialize)]
struct OutResponse<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [OutChoice<'a>; 1],
    usage: WireUsageOut,
}

#[derive(Debug, Serialize)]
struct OutChoice<'a> {
    index: u32,
    message: OutMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Debug, Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: Option<String>,
    refusal: Option<String>,
    /// De-facto extension for reasoning (DeepSeek, LiteLLM); absent when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    /// LiteLLM's extension: the signatures a client must send back to replay the reasoning.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    thinking_blocks: Vec<ThinkingBlockOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
}

#[derive(Debug, Serialize)]
struct OutToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutFunctionCall<'a>,
}

#[derive(Debug, Serialize)]
struct OutFunctionCall<'a> {
    name: &'a str,
    arguments: String,
}

/// Encodes an IR answer as an OpenAI `chat.completion` for the client.
pub fn encode_response(resp: &ChatResponse, opts: &EncodeOptions) -> Vec<u8> {
    let mut text: Option<String> = None;
    let mut refusal: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut thinking_blocks = Vec::new();
    let mut signed = false;
    let mut tool_calls = Vec::new();
    for part in &resp.content {
        match part {
            Part::Text(block) => text.get_or_insert_with(String::new).push_str(&block.text),
            Part::Refusal(r) => refusal.get_or_insert_with(String::new).push_str(r),
            Part::Thinking { text: t, signature } => {
                reasoning.get_or_insert_with(String::new).push_str(t);
                signed |= signature.is_some();
                thinking_blocks.push(ThinkingBlockOut::Thinking {
                    thinking: t,
                    signature: signature.as_deref(),
                });
            }
            Part::RedactedThinking { data } => {
                signed = true;
                thinking_blocks.push(ThinkingBlockOut::RedactedThinking { data });
            }
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => tool_calls.push(OutToolCall {
                id,
                kind: "function",
                function: OutFunctionCall {
                    name,
                    arguments: compact_json(arguments),
                },
            }),
            // Not part of an answer; nothing to show.
            Part::Image(_) | Part::Document { .. } | Part::ToolResult { .. } => {}
        }
    }
    if !signed {
        // Without signatures or redacted blocks the blocks only repeat `reasoning_content`.
        thinking_blocks.clear();
    }
    let out = OutResponse {
        id: chatcmpl_id(&resp.id),
        object: "chat.completion",
        created: opts.created,
        model: &opts.model,
        choices: [OutChoice {
            index: 0,
            message: OutMessage {
                role: "assistant",
                content: text,
                refusal,
                reasoning_content: reasoning,
                thinking_blocks,
                tool_calls,
            },
            logprobs: None,
            finish_reason: finish_reason_str(resp.stop_reason),
        }],
        usage: WireUsageOut::from(&resp.usage),
    };
    to_json_vec(&out)
}

/// Arguments as compact JSON (other dialects' decoders may have pretty-printed them); text
/// that isn't JSON is passed on as it is rather than lost.
fn compact_json(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v) => v.to_string(),
        Err(_) => arguments.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::translate::openai::tests::fixture;
    use crate::translate::test_ir::{text, thinking, tool_call};
    use crate::usage::Usage;
    use serde_json::json;

    fn opts() -> EncodeOptions {
        EncodeOptions {
            model: "gpt-client".to_owned(),
            stream_usage: false,
            created: 1_754_000_000,
        }
    }

    #[test]
    fn decodes_nonstream_fixture() {
        let resp = decode_response(fixture!("openai-chat-nonstream.json")).unwrap();
        assert_eq!(resp.id, "chatcmpl-D8Z5f52zQqikDBEKQMQoYcWMcWPeU");
        assert_eq!(resp.model, "gpt-4.1-nano-2025-04-14");
        assert_eq!(resp.stop_reason, StopReason::EndTurn);
        assert_eq!(resp.content.len(), 1, "refusal:null adds no part");
        let Part::Text(block) = &resp.content[0] else {
            panic!("not text");
        };
        assert!(block.text.starts_with("**Holiday Name:** Galaxy Day"));
        assert!(block.text.ends_with("dream beyond our world."));
        assert_eq!(
            resp.usage,
            Usage {
                input: 16,
                output: 363,
                ..Usage::default()
            }
        );
    }

    /// Pitfall §9.4 (cache tokens are part of prompt_tokens) and §9.11 (tool calls with
    /// finish_reason "stop" are still ToolUse); §9.6 (null content with tool calls).
    #[test]
    fn decodes_tool_calls_reasoning_and_cache_usage() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": null, "reasoning_content": "think",
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": ""}}
                ]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130,
                "prompt_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 20},
                "completion_tokens_details": {"reasoning_tokens": 12}}
        });
        let resp = decode_response(body.to_string().as_bytes()).unwrap();
        assert_eq!(resp.stop_reason, StopReason::ToolUse);
        assert_eq!(
            resp.content,
            vec![
                thinking("think", None),
                tool_call("call_a", "f", "{\"x\":1}"),
                tool_call("call_b", "g", "{}"),
            ]
        );
        assert_eq!(
            resp.usage,
            Usage {
                input: 100,
                output: 30,
                cache_read: 64,
                cache_write: 20,
                reasoning: 12,
                estimated: false
            }
        );
    }

    #[test]
    fn decodes_refusal_and_maps_finish_reasons() {
        let body = |finish: &str| {
            json!({"id": "x", "model": "m", "choices": [{"index": 0, "finish_reason": finish,
                "message": {"role": "assistant", "content": null, "refusal": "I can't."}}]})
            .to_string()
        };
        let resp = decode_response(body("content_filter").as_bytes()).unwrap();
        assert_eq!(resp.content, vec![Part::Refusal("I can't.".to_owned())]);
        assert_eq!(resp.stop_reason, StopReason::ContentFilter);
        for (finish, want) in [
            ("stop", StopReason::EndTurn),
            ("length", StopReason::MaxTokens),
            ("tool_calls", StopReason::ToolUse),
            ("function_call", StopReason::ToolUse),
            ("something_new", StopReason::Other),
        ] {
            let resp = decode_response(body(finish).as_bytes()).unwrap();
            assert_eq!(resp.stop_reason, want, "{finish}");
        }
    }

    #[test]
    fn tolerates_compatible_server_variants() {
        let body = json!({
            "id": "x", "model": "m", "some_new_field": [1, 2],
            "choices": [
                {"index": 1, "finish_reason": "stop", "message": {"content": "second"}},
                {"index": 0, "finish_reason": "stop", "message": {
                    "content": [{"type": "text", "text": "first"}],
                    "reasoning": "r",
                    "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}}
            ],
            "usage": null
        });
        let resp = decode_response(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            resp.content,
            vec![
                thinking("r", None),
                text("first"),
                tool_call("call_0", "f", "{\"a\":1}"),
            ]
        );
        assert_eq!(resp.usage, Usage::default());
    }

    #[test]
    fn no_choices_or_bad_json_is_an_error() {
        let err = decode_response(br#"{"id":"x","choices":[]}"#).unwrap_err();
        assert!(matches!(err, TranslateError::Protocol(_)));
        let err =
            decode_response(br#"{"error":{"message":"boom","type":"server_error"}}"#).unwrap_err();
        assert_eq!(
            err,
            TranslateError::Protocol("upstream answered with an error object: boom".to_owned())
        );
        assert!(matches!(
            decode_response(b"{\"id\":"),
            Err(TranslateError::Json(_))
        ));
    }

    #[test]
    fn encodes_the_shape_openai_clients_expect() {
        let resp = ChatResponse {
            id: "msg_01".to_owned(),
            model: "claude-x".to_owned(),
            content: vec![
                thinking("ponder", Some("sig")),
                text("Hello "),
                text("world"),
                tool_call("toolu_1", "f", "{ \"a\" : 1 }"),
            ],
            stop_reason: StopReason::ToolUse,
            stop_sequence: None,
            usage: Usage {
                input: 50,
                output: 10,
                cache_read: 30,
                cache_write: 0,
                reasoning: 4,
                estimated: false,
            },
        };
        let v: serde_json::Value =
            serde_json::from_slice(&encode_response(&resp, &opts())).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "chatcmpl-msg_01",
                "object": "chat.completion",
                "created": 1_754_000_000u64,
                "model": "gpt-client",
                "choices": [{
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Hello world",
                        "refusal": null,
                        "reasoning_content": "ponder",
                        "thinking_blocks": [{"type": "thinking", "thinking": "ponder", "signature": "sig"}],
                        "tool_calls": [{"id": "toolu_1", "type": "function",
                            "function": {"name": "f", "arguments": "{\"a\":1}"}}]
                    },
                    "logprobs": null,
                    "finish_reason": "tool_calls"
                }],
                "usage": {
                    "prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60,
                    "prompt_tokens_details": {"cached_tokens": 30},
                    "completion_tokens_details": {"reasoning_tokens": 4}
                }
            })
        );
    }

    #[test]
    fn encodes_null_content_refusal_and_no_extensions_when_absent() {
        let resp = ChatResponse {
            id: "chatcmpl-keep".to_owned(),
            model: "m".to_owned(),
            content: vec![Part::Refusal("No.".to_owned())],
            stop_reason: StopReason::ContentFilter,
            stop_sequence: None,
            usage: Usage::default(),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&encode_response(&resp, &opts())).unwrap();
        assert_eq!(v["id"], "chatcmpl-keep");
        let msg = &v["choices"][0]["message"];
        assert!(msg["content"].is_null() && msg.get("content").is_some());
        assert_eq!(msg["refusal"], "No.");
        for absent in ["tool_calls", "reasoning_content", "thinking_blocks"] {
            assert!(msg.get(absent).is_none(), "{absent}");
        }
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    }

    #[test]
    fn unsigned_thinking_is_reasoning_content_only() {
        let resp = ChatResponse {
            id: "x".to_owned(),
            model: "m".to_owned(),
            content: vec![thinking("a", None), text("b")],
            stop_reason: StopReason::EndTurn,
            stop_sequence: None,
            usage: Usage::default(),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&encode_response(&resp, &opts())).unwrap();
        let msg = &v["choices"][0]["message"];
        assert_eq!(msg["reasoning_content"], "a");
        assert!(msg.get("thinking_blocks").is_none());
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn encode_then_decode_keeps_the_meaning() {
        let resp = ChatResponse {
            id: "chatcmpl-r".to_owned(),
            model: "gpt-client".to_owned(),
            content: vec![
                thinking("t", Some("s")),
                Part::RedactedThinking {
                    data: "enc".to_owned(),
                },
                text("answer"),
                tool_call("call_1", "f", "{\"q\":\"x\"}"),
            ],
            stop_reason: StopReason::ToolUse,
            stop_sequence: None,
            usage: Usage {
                input: 9,
                output: 3,
                cache_read: 2,
                cache_write: 1,
                reasoning: 1,
                estimated: false,
            },
        };
        let back = decode_response(&encode_response(&resp, &opts())).unwrap();
        assert_eq!(back, resp);
    }
}
