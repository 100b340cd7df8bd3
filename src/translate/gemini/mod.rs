//! Google Gemini `generateContent` / `streamGenerateContent?alt=sse` codec.
//!
//! Requests (`decode_request`/`encode_request`), non-stream responses, SSE streams (every event is
//! a whole `GenerateContentResponse` with incremental parts; the stream ends on close) and
//! `google.rpc.Status` errors, all through `ir`. Gemini function calls carry no ids, so ids are
//! synthesised deterministically here and tool results are matched to calls by name, in order
//! (protocols.md §9 pitfall 12).

mod error;
mod request;
mod response;
mod stream;
mod wire;

#[cfg(test)]
mod tests;

pub use error::{decode_error, encode_error};
pub use request::{decode_request, encode_request};
pub use response::{decode_response, encode_response};
pub use stream::{StreamDecoder, StreamEncoder};

use serde_json::{Map, Value};

use crate::translate::ir::StopReason;
use crate::usage::Usage;

use wire::UsageMetadata;

/// FNV-1a (64 bit) over `fields`, each followed by a separator so `("ab","c")` and `("a","bc")`
/// differ. Hand-rolled rather than `DefaultHasher` because ids must stay the same across Rust
/// versions and processes: a client replays them in later requests.
fn fnv1a(fields: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for field in fields {
        for &b in field.iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Id for the `part`-th part of the `turn`-th content of a request (a call from history).
fn request_call_id(turn: usize, part: usize, name: &str) -> String {
    let (t, p) = (turn.to_string(), part.to_string());
    format!(
        "call_{:016x}",
        fnv1a(&[b"req", t.as_bytes(), p.as_bytes(), name.as_bytes()])
    )
}

/// Id for the `index`-th function call of a response. Keyed by `responseId` so calls of
/// different turns get different ids, and a stream and a non-stream answer agree.
fn response_call_id(response_id: &str, index: u32, name: &str) -> String {
    let i = index.to_string();
    format!(
        "call_{:016x}",
        fnv1a(&[
            b"resp",
            response_id.as_bytes(),
            i.as_bytes(),
            name.as_bytes()
        ])
    )
}

/// `finishReason` → IR. `STOP` means tool use too (Gemini has no tool-specific reason); callers
/// upgrade `EndTurn` to `ToolUse` when a call was seen.
fn stop_reason(finish: &str) -> StopReason {
    match finish {
        "STOP" => StopReason::EndTurn,
        "MAX_TOKENS" => StopReason::MaxTokens,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            StopReason::ContentFilter
        }
        _ => StopReason::Other,
    }
}

/// A stop reason with tool calls taken into account (protocols.md §8.3: derive tool use from
/// content, since Gemini says `STOP`).
fn with_tool_use(reason: StopReason, saw_call: bool) -> StopReason {
    if saw_call && reason == StopReason::EndTurn {
        StopReason::ToolUse
    } else {
        reason
    }
}

fn finish_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::EndTurn
        | StopReason::StopSequence
        | StopReason::ToolUse
        | StopReason::PauseTurn => "STOP",
        StopReason::MaxTokens => "MAX_TOKENS",
        StopReason::ContentFilter => "SAFETY",
        StopReason::Other => "OTHER",
    }
}

fn usage_from_wire(u: &UsageMetadata) -> Usage {
    let thoughts = u.thoughts_token_count.unwrap_or(0);
    Usage {
        // Tool-use prompt tokens are prompt tokens the model read (search results etc.).
        input: u.prompt_token_count.unwrap_or(0) + u.tool_use_prompt_token_count.unwrap_or(0),
        output: u.candidates_token_count.unwrap_or(0) + thoughts,
        cache_read: u.cached_content_token_count.unwrap_or(0),
        cache_write: 0,
        reasoning: thoughts,
        estimated: false,
    }
}

fn usage_to_wire(u: &Usage) -> UsageMetadata {
    let nonzero = |n: u64| (n > 0).then_some(n);
    UsageMetadata {
        prompt_token_count: Some(u.input),
        candidates_token_count: Some(u.output.saturating_sub(u.reasoning)),
        thoughts_token_count: nonzero(u.reasoning),
        total_token_count: Some(u.input + u.output),
        cached_content_token_count: nonzero(u.cache_read),
        tool_use_prompt_token_count: None,
    }
}

/// `functionCall.args` as IR argument text (compact JSON; absent → `{}`).
fn args_text(args: Option<&Value>) -> String {
    match args {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(v) => v.to_string(),
    }
}

/// IR argument text → `functionCall.args` for an answer to a client, which has no error channel:
/// an object is kept, empty text is `{}`, anything else (a model that emitted broken JSON) is
/// kept verbatim under `_raw` rather than lost.
fn args_object_lenient(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Map::new());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            let mut m = Map::new();
            m.insert("_raw".to_owned(), Value::String(arguments.to_owned()));
            Value::Object(m)
        }
    }
}
