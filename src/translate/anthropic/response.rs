//! Non-stream Anthropic messages (protocols.md §5.2, §8.3) both ways, and the usage and
//! stop-reason mappings the stream codec shares.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::translate::ir::{
    ChatResponse, EncodeOptions, Part, StopReason, TextBlock, TranslateError,
};
use crate::usage::Usage;

/// An Anthropic `usage` object. Every field is optional because `message_delta` repeats only
/// some of them (always `output_tokens`; recent API versions also the input and cache counts).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(super) struct WireUsage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
    pub output_tokens_details: Option<OutputDetails>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(super) struct OutputDetails {
    pub thinking_tokens: Option<u64>,
}

/// Anthropic's usage counters as last reported. Kept apart (not summed) so that a later report
/// of one counter replaces exactly that counter.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct UsageCounters {
    input: u64,
    output: u64,
    cache_write: u64,
    cache_read: u64,
    thinking: u64,
}

impl UsageCounters {
    /// Takes every counter `u` reports (Anthropic's stream usage is cumulative: last wins).
    pub(super) fn update(&mut self, u: &WireUsage) {
        let set = |slot: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut self.input, u.input_tokens);
        set(&mut self.output, u.output_tokens);
        set(&mut self.cache_write, u.cache_creation_input_tokens);
        set(&mut self.cache_read, u.cache_read_input_tokens);
        set(
            &mut self.thinking,
            u.output_tokens_details
                .as_ref()
                .and_then(|d| d.thinking_tokens),
        );
    }

    /// IR usage: Anthropic's `input_tokens` excludes cache reads and writes, the IR's includes
    /// them (pitfall 4).
    pub(super) fn to_usage(self) -> Usage {
        Usage {
            input: self
                .input
                .saturating_add(self.cache_write)
                .saturating_add(self.cache_read),
            output: self.output,
            cache_read: self.cache_read,
            cache_write: self.cache_write,
            reasoning: self.thinking,
            estimated: false,
        }
    }
}

/// Anthropic usage as sent to a client: `input_tokens` without the cached part.
#[derive(Debug, Serialize)]
pub(super) struct OutUsage {
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub output_tokens: u64,
}

impl From<&Usage> for OutUsage {
    fn from(u: &Usage) -> Self {
        OutUsage {
            input_tokens: u
                .input
                .saturating_sub(u.cache_read)
                .saturating_sub(u.cache_write),
            cache_creation_input_tokens: u.cache_write,
            cache_read_input_tokens: u.cache_read,
            output_tokens: u.output,
        }
    }
}

/// Anthropic `stop_reason` → IR (§8.3). `None` (not said) is a normal end.
pub(super) fn stop_reason_from_wire(s: Option<&str>) -> StopReason {
    match s {
        None | Some("end_turn") => StopReason::EndTurn,
        Some("max_tokens") | Some("model_context_window_exceeded") => StopReason::MaxTokens,
        Some("stop_sequence") => StopReason::StopSequence,
        Some("tool_use") => StopReason::ToolUse,
        Some("pause_turn") => StopReason::PauseTurn,
        Some("refusal") => StopReason::ContentFilter,
        Some(_) => StopReason::Other,
    }
}

/// IR stop reason → Anthropic `stop_reason`. A turn that made tool calls and ended normally is
/// `tool_use` whatever the provider said (Gemini always says STOP; Bifrost #3638); a turn cut
/// off at max tokens stays `max_tokens` even with a (truncated) tool call, so the client
/// doesn't run a tool with cut-off arguments. A refusal is `refusal`.
pub(super) fn stop_reason_to_wire(
    reason: StopReason,
    any_tool_call: bool,
    refused: bool,
) -> &'static str {
    if any_tool_call && matches!(reason, StopReason::EndTurn | StopReason::Other) {
        return "tool_use";
    }
    if refused {
        return "refusal";
    }
    match reason {
        StopReason::EndTurn | StopReason::Other => "end_turn",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::ToolUse => "tool_use",
        StopReason::ContentFilter => "refusal",
        StopReason::PauseTurn => "pause_turn",
    }
}

/// Tool-call arguments (JSON text) as the object Anthropic's `input` must be. Empty or
/// unparsable arguments, or a non-object, give `None`.
pub(super) fn arguments_object(arguments: &str) -> Option<Value> {
    if arguments.trim().is_empty() {
        return Some(Value::Object(serde_json::Map::new()));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireMessage {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: String,
    model: String,
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
    usage: WireUsage,
    error: Option<super::error::WireError>,
}

/// A response content block (also a stream `content_block_start`'s block); one flat struct
/// because the fields used depend on `type`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WireBlock {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
    pub thinking: String,
    pub signature: Option<String>,
    pub data: String,
    pub id: String,
    pub name: String,
    pub input: Option<Value>,
}

/// Anthropic message (upstream answer) → IR.
///
/// Server-tool blocks (`server_tool_use`, `web_search_tool_result`, …) and unknown block types
/// are skipped: the gateway never sends server tools upstream, and a block it cannot express
/// is not worth failing the answer over. Text `citations` are dropped.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, TranslateError> {
    let msg: WireMessage = crate::translate::json::from_slice(body)?;
    if msg.kind.as_deref() == Some("error") {
        let info = super::error::error_info(msg.error, None);
        return Err(TranslateError::Protocol(format!(
            "upstream answered 200 with an error: {}",
            info.message
        )));
    }
    let mut content = Vec::with_capacity(msg.content.len());
    for b in msg.content {
        match b.kind.as_str() {
            "text" if !b.text.is_empty() => content.push(Part::Text(TextBlock {
                text: b.text,
                cache_control: None,
            })),
            "thinking" => content.push(Part::Thinking {
                text: b.thinking,
                signature: b.signature.filter(|s| !s.is_empty()),
            }),
            "redacted_thinking" => content.push(Part::RedactedThinking { data: b.data }),
            "tool_use" => content.push(Part::ToolCall {
                id: b.id,
                name: b.name,
                arguments: match b.input {
                    Some(input) => serde_json::to_string(&input)?,
                    None => "{}".to_owned(),
                },
                signature: None,
            }),
            _ => {}
        }
    }
    let any_tool = content.iter().any(|p| matches!(p, Part::ToolCall { .. }));
    let mut stop_reason = stop_reason_from_wire(msg.stop_reason.as_deref());
    if any_tool && stop_reason == StopReason::EndTurn {
        stop_reason = StopReason::ToolUse;
    }
    let mut counters = UsageCounters::default();
    counters.update(&msg.usage);
    Ok(ChatResponse {
        id: msg.id,
        model: msg.model,
        content,
        stop_reason,
        stop_sequence: msg.stop_sequence,
        usage: counters.to_usage(),
    })
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutBlock<'a> {
    Text {
        text: &'a str,
    },
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
}

#[derive(Serialize)]
struct OutMessage<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<OutBlock<'a>>,
    stop_reason: &'static str,
    stop_sequence: Option<&'a str>,
    usage: OutUsage,
}

/// `msg_`-prefixed id, as Anthropic clients expect.
pub(super) fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else if id.is_empty() {
        // The upstream gave none: a fresh one, so clients that key by id never see two
        // answers share it.
        let mut out = String::from("msg_");
        out.extend(std::iter::repeat_with(fastrand::alphanumeric).take(24));
        out
    } else {
        format!("msg_{id}")
    }
}

/// IR → Anthropic message for an Anthropic client.
///
/// Thinking without a signature (from a non-Anthropic provider) is still shown, with an empty
/// `signature` (the field is required); when the client replays it, `decode_request` reads the
/// empty signature as none, so it is never sent to an Anthropic upstream. Tool-call arguments
/// that are not a JSON object become `{}`. Empty text is left out.
pub fn encode_response(resp: &ChatResponse, opts: &EncodeOptions) -> Vec<u8> {
    let mut content = Vec::with_capacity(resp.content.len());
    let mut any_tool = false;
    let mut refused = false;
    for part in &resp.content {
        match part {
            Part::Text(t) if !t.text.is_empty() => content.push(OutBlock::Text { text: &t.text }),
            Part::Refusal(text) => {
                refused = true;
                if !text.is_empty() {
                    content.push(OutBlock::Text { text });
                }
            }
            Part::Thinking { text, signature } => content.push(OutBlock::Thinking {
                thinking: text,
                signature: signature.as_deref().unwrap_or(""),
            }),
            Part::RedactedThinking { data } => content.push(OutBlock::RedactedThinking { data }),
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => {
                any_tool = true;
                content.push(OutBlock::ToolUse {
                    id,
                    name,
                    input: arguments_object(arguments)
                        .unwrap_or_else(|| Value::Object(serde_json::Map::new())),
                });
            }
            // Inputs (images, documents, tool results) and empty text have no place in an
            // answer.
            _ => {}
        }
    }
    let msg = OutMessage {
        id: message_id(&resp.id),
        kind: "message",
        role: "assistant",
        model: &opts.model,
        content,
        stop_reason: stop_reason_to_wire(resp.stop_reason, any_tool, refused),
        stop_sequence: resp.stop_sequence.as_deref(),
        usage: OutUsage::from(&resp.usage),
    };
    // Serialising borrowed strings and `Value`s into a Vec cannot fail.
    serde_json::to_vec(&msg).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::translate::test_ir::{text, thinking, tool_call};

    const NONSTREAM: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/anthropic-messages-nonstream.json"
    ));
    const PARALLEL: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/anthropic-parallel-tool-use.turn1.json"
    ));

    fn opts() -> EncodeOptions {
        EncodeOptions {
            model: "client-model".into(),
            stream_usage: false,
            created: 0,
        }
    }

    #[test]
    fn decodes_the_text_fixture() {
        let r = decode_response(NONSTREAM).unwrap();
        assert_eq!(r.id, "msg_01VdEjxAP5ahtHKrrRdNBteQ");
        assert_eq!(r.model, "claude-sonnet-4-5-20250929");
        assert_eq!(r.content.len(), 1);
        let Part::Text(t) = &r.content[0] else {
            panic!("{:?}", r.content)
        };
        assert!(t.text.starts_with("Hello! I'm doing well"));
        assert_eq!(r.stop_reason, StopReason::EndTurn);
        assert_eq!(r.stop_sequence, None);
        assert_eq!(
            r.usage,
            Usage {
                input: 12,
                output: 29,
                ..Usage::default()
            }
        );
    }

    #[test]
    fn decodes_the_parallel_tool_fixture() {
        let r = decode_response(PARALLEL).unwrap();
        assert_eq!(r.stop_reason, StopReason::ToolUse);
        assert_eq!((r.usage.input, r.usage.output), (423, 202));
        assert!(matches!(&r.content[0], Part::Text(t) if t.text.starts_with("I'll help you")));
        let calls: Vec<_> = r
            .content
            .iter()
            .filter_map(|p| match p {
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                    ..
                } => Some((id.as_str(), name.as_str(), arguments.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            calls,
            vec![
                (
                    "toolu_0167cfEnoQaPviGdVXA95zcu",
                    "retrieve_entity_info",
                    r#"{"name":"Alice"}"#
                ),
                (
                    "toolu_01EEe2V5HD1Ac4rKiUR4HD2T",
                    "retrieve_entity_info",
                    r#"{"name":"Bob"}"#
                ),
                (
                    "toolu_01XFyAjstT3966qvRynZyVPo",
                    "retrieve_entity_info",
                    r#"{"name":"Charlie"}"#
                ),
                (
                    "toolu_013mnQZbgtK2oe3Mo3XKJsx3",
                    "retrieve_entity_info",
                    r#"{"name":"Daisy"}"#
                ),
            ]
        );
    }

    #[test]
    fn usage_includes_cache_and_thinking_tokens() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "redacted_thinking", "data": "enc"},
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
                {"type": "brand_new_block", "x": 1},
                {"type": "text", "text": "done", "citations": [{"type": "x"}]}
            ],
            "stop_reason": "stop_sequence", "stop_sequence": "END",
            "usage": {"input_tokens": 10, "cache_creation_input_tokens": 20,
                      "cache_read_input_tokens": 30, "output_tokens": 40,
                      "output_tokens_details": {"thinking_tokens": 15}}
        });
        let r = decode_response(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            r.usage,
            Usage {
                input: 60,
                output: 40,
                cache_read: 30,
                cache_write: 20,
                reasoning: 15,
                estimated: false
            }
        );
        assert_eq!(r.stop_reason, StopReason::StopSequence);
        assert_eq!(r.stop_sequence.as_deref(), Some("END"));
        assert_eq!(
            r.content,
            vec![
                thinking("hmm", Some("sig")),
                Part::RedactedThinking { data: "enc".into() },
                text("done"),
            ]
        );
    }

    #[test]
    fn stop_reasons_map_per_section_8_3() {
        let cases = [
            ("end_turn", StopReason::EndTurn),
            ("max_tokens", StopReason::MaxTokens),
            ("model_context_window_exceeded", StopReason::MaxTokens),
            ("stop_sequence", StopReason::StopSequence),
            ("tool_use", StopReason::ToolUse),
            ("pause_turn", StopReason::PauseTurn),
            ("refusal", StopReason::ContentFilter),
            ("something_new", StopReason::Other),
        ];
        for (wire, ir) in cases {
            assert_eq!(stop_reason_from_wire(Some(wire)), ir, "{wire}");
        }
        assert_eq!(
            stop_reason_to_wire(StopReason::ContentFilter, false, false),
            "refusal"
        );
        assert_eq!(
            stop_reason_to_wire(StopReason::MaxTokens, false, false),
            "max_tokens"
        );
        assert_eq!(
            stop_reason_to_wire(StopReason::EndTurn, true, false),
            "tool_use"
        );
        // Cut off while writing a tool call: the truncation is what the client must see.
        assert_eq!(
            stop_reason_to_wire(StopReason::MaxTokens, true, false),
            "max_tokens"
        );
    }

    #[test]
    fn missing_ids_get_fresh_message_ids() {
        let (a, b) = (message_id(""), message_id(""));
        assert!(a.starts_with("msg_") && a.len() == 28, "{a}");
        assert_ne!(a, b);
        assert_eq!(message_id("msg_x"), "msg_x");
        assert_eq!(message_id("chatcmpl-1"), "msg_chatcmpl-1");
    }

    #[test]
    fn a_200_error_body_is_a_protocol_error() {
        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert!(
            matches!(decode_response(body), Err(TranslateError::Protocol(m)) if m.contains("Overloaded"))
        );
        assert!(matches!(
            decode_response(b"not json"),
            Err(TranslateError::Json(_))
        ));
    }

    #[test]
    fn encodes_an_anthropic_message() {
        let resp = ChatResponse {
            id: "chatcmpl-123".into(),
            model: "gpt-4o".into(),
            content: vec![
                thinking("plan", None),
                text(""),
                text("Let me look."),
                tool_call("call_1", "get", r#"{"a":1}"#),
                tool_call("call_2", "bad", "{not json"),
            ],
            // Upstream said stop although it called tools (Gemini does).
            stop_reason: StopReason::EndTurn,
            stop_sequence: None,
            usage: Usage {
                input: 100,
                output: 20,
                cache_read: 60,
                cache_write: 10,
                reasoning: 5,
                estimated: false,
            },
        };
        let v: Value = serde_json::from_slice(&encode_response(&resp, &opts())).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "msg_chatcmpl-123", "type": "message", "role": "assistant",
                "model": "client-model",
                "content": [
                    {"type": "thinking", "thinking": "plan", "signature": ""},
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "call_1", "name": "get", "input": {"a": 1}},
                    {"type": "tool_use", "id": "call_2", "name": "bad", "input": {}}
                ],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 30, "cache_creation_input_tokens": 10,
                          "cache_read_input_tokens": 60, "output_tokens": 20}
            })
        );
    }

    #[test]
    fn a_refusal_is_text_with_stop_reason_refusal() {
        let resp = ChatResponse {
            id: "msg_x".into(),
            model: "m".into(),
            content: vec![Part::Refusal("I can't help with that.".into())],
            stop_reason: StopReason::EndTurn,
            stop_sequence: None,
            usage: Usage::default(),
        };
        let v: Value = serde_json::from_slice(&encode_response(&resp, &opts())).unwrap();
        assert_eq!(v["id"], "msg_x");
        assert_eq!(
            v["content"],
            json!([{"type": "text", "text": "I can't help with that."}])
        );
        assert_eq!(v["stop_reason"], "refusal");
    }

    #[test]
    fn fixture_round_trips_through_encode() {
        let r = decode_response(PARALLEL).unwrap();
        let again = decode_response(&encode_response(&r, &opts())).unwrap();
        assert_eq!(again.content, r.content);
        assert_eq!(again.usage, r.usage);
        assert_eq!(again.stop_reason, r.stop_reason);
    }
}
