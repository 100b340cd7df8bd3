//! OpenAI Chat Completions codec (`POST /v1/chat/completions`), for OpenAI clients and for
//! OpenAI-compatible upstreams (Azure, Anthropic's compat endpoint, vLLM, Groq, ...).
//!
//! One job per file: `request` (client request → IR, IR → upstream request), `response`
//! (non-stream bodies both ways), `stream` (chunk decoder and encoder state machines), `error`
//! (error objects both ways). What is shared between them — usage numbers and finish reasons —
//! lives here.

mod error;
mod request;
mod response;
mod stream;

#[cfg(test)]
mod tests;

pub use error::{decode_error, encode_error, responses_error_event};
pub use request::{decode_request, encode_request};
pub use response::{decode_response, encode_response};
pub use stream::{StreamDecoder, StreamEncoder};

use serde::{Deserialize, Serialize};

use super::ir::{Part, StopReason};
use crate::usage::Usage;

/// OpenAI's `usage` object as it arrives. Every field is optional: compatible servers leave out
/// the details objects, and Azure sends them in another order.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireUsageIn {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetailsIn>,
    completion_tokens_details: Option<CompletionDetailsIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PromptDetailsIn {
    cached_tokens: Option<u64>,
    /// 2026 SDK field; absent from older servers.
    cache_write_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CompletionDetailsIn {
    reasoning_tokens: Option<u64>,
}

impl From<WireUsageIn> for Usage {
    fn from(u: WireUsageIn) -> Self {
        let prompt = u.prompt_tokens_details.unwrap_or_default();
        Usage {
            // OpenAI's prompt_tokens already includes cached tokens, as the IR's input does.
            input: u.prompt_tokens.unwrap_or(0),
            output: u.completion_tokens.unwrap_or(0),
            cache_read: prompt.cached_tokens.unwrap_or(0),
            cache_write: prompt.cache_write_tokens.unwrap_or(0),
            reasoning: u
                .completion_tokens_details
                .unwrap_or_default()
                .reasoning_tokens
                .unwrap_or(0),
            estimated: false,
        }
    }
}

/// Parses a `usage` value; `None` for `null` or a shape that is not a usage object (a bad
/// usage object must not sink the whole answer).
fn usage_from_value(v: &serde_json::Value) -> Option<Usage> {
    if !v.is_object() {
        return None;
    }
    WireUsageIn::deserialize(v).ok().map(Usage::from)
}

/// OpenAI's `usage` object as the gateway writes it.
#[derive(Debug, Serialize)]
struct WireUsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetailsOut,
    completion_tokens_details: CompletionDetailsOut,
}

#[derive(Debug, Serialize)]
struct PromptDetailsOut {
    cached_tokens: u64,
    /// Only when the provider reported cache writes (Anthropic), so plain OpenAI traffic looks
    /// exactly like OpenAI's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_write_tokens: Option<u64>,
}

#[derive(Debug, Serialize)]
struct CompletionDetailsOut {
    reasoning_tokens: u64,
}

impl From<&Usage> for WireUsageOut {
    fn from(u: &Usage) -> Self {
        WireUsageOut {
            prompt_tokens: u.input,
            completion_tokens: u.output,
            total_tokens: u.input.saturating_add(u.output),
            prompt_tokens_details: PromptDetailsOut {
                cached_tokens: u.cache_read,
                cache_write_tokens: (u.cache_write > 0).then_some(u.cache_write),
            },
            completion_tokens_details: CompletionDetailsOut {
                reasoning_tokens: u.reasoning,
            },
        }
    }
}

/// `finish_reason` → IR (protocols.md §8.3). Unknown values are `Other`, never an error.
fn stop_reason_from_finish(finish: &str) -> StopReason {
    match finish {
        "stop" => StopReason::EndTurn,
        "length" => StopReason::MaxTokens,
        "tool_calls" | "function_call" => StopReason::ToolUse,
        "content_filter" => StopReason::ContentFilter,
        _ => StopReason::Other,
    }
}

/// IR → `finish_reason`. OpenAI has no value for a paused server-tool loop or for "other", and
/// `stop` is what a client can always handle.
fn finish_reason_str(reason: StopReason) -> &'static str {
    match reason {
        StopReason::EndTurn | StopReason::StopSequence | StopReason::PauseTurn => "stop",
        StopReason::MaxTokens => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::ContentFilter => "content_filter",
        StopReason::Other => "stop",
    }
}

/// A reason that says "the model ended normally" is replaced by `ToolUse` when the answer holds
/// tool calls: several providers say `stop` there (pitfall §9.11, Bifrost #3638).
fn derive_tool_use(reason: StopReason, saw_tool_call: bool) -> StopReason {
    match reason {
        StopReason::EndTurn | StopReason::Other if saw_tool_call => StopReason::ToolUse,
        other => other,
    }
}

/// Serialises a value the gateway built itself. Writing owned strings and numbers into a
/// `Vec` cannot fail; an empty body would surface as a client-side parse error, never a panic.
fn to_json_vec<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Empty tool-call arguments mean "no arguments"; other dialects parse the text as JSON.
fn normalize_arguments(arguments: String) -> String {
    if arguments.trim().is_empty() {
        "{}".to_owned()
    } else {
        arguments
    }
}

/// Answer ids say `chatcmpl-...` as OpenAI's do (some clients check the prefix); an upstream
/// that gave no id gets a random one so chunks of different answers stay distinguishable.
fn chatcmpl_id(id: &str) -> String {
    if id.starts_with("chatcmpl-") {
        id.to_owned()
    } else if id.is_empty() {
        let mut out = String::from("chatcmpl-");
        out.extend(std::iter::repeat_with(fastrand::alphanumeric).take(24));
        out
    } else {
        format!("chatcmpl-{id}")
    }
}

/// One entry of LiteLLM's `thinking_blocks` extension, which carries the signatures Anthropic
/// needs replayed with reasoning (pitfall §9.10).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ThinkingBlockIn {
    Thinking {
        #[serde(default)]
        thinking: String,
        signature: Option<String>,
    },
    RedactedThinking {
        data: String,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ThinkingBlockOut<'a> {
    Thinking {
        thinking: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<&'a str>,
    },
    RedactedThinking {
        data: &'a str,
    },
}

/// Reasoning of an assistant message → IR parts. `thinking_blocks` win when present:
/// `reasoning_content` repeats their text without the signatures.
fn reasoning_parts(
    blocks: Option<Vec<ThinkingBlockIn>>,
    reasoning_content: Option<String>,
) -> Vec<Part> {
    match blocks {
        Some(blocks) if !blocks.is_empty() => blocks
            .into_iter()
            .filter_map(|block| match block {
                ThinkingBlockIn::Thinking {
                    thinking,
                    signature,
                } => Some(Part::Thinking {
                    text: thinking,
                    signature,
                }),
                ThinkingBlockIn::RedactedThinking { data } => Some(Part::RedactedThinking { data }),
                ThinkingBlockIn::Unknown => None,
            })
            .collect(),
        _ => reasoning_content
            .filter(|t| !t.is_empty())
            .map(|text| {
                vec![Part::Thinking {
                    text,
                    signature: None,
                }]
            })
            .unwrap_or_default(),
    }
}
