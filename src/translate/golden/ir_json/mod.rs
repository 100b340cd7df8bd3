//! The IR as JSON, for golden files only: encode cases read their input IR from it and decode
//! cases write their output IR with it.
//!
//! The IR types themselves carry no serde derives (nothing on the request path needs them), so
//! this module mirrors them. The conversions match exhaustively, so a field added to the IR
//! does not compile here until the mirror learns it. Defaults (empty, `None`, `false`, zero)
//! are left out when written and filled in when read, which keeps golden files short without
//! losing anything: a value that stops being its default shows up in the diff.

/// The stream-event mapping, written once for both directions: the IR enum and its mirror
/// have the same variants and fields; only usage, stop reason and error info change type (by
/// `Into`). `$from` and `$to` name the two enums; the match stays exhaustive both ways.
macro_rules! map_stream_event {
    ($e:expr, $from:ident => $to:ident) => {
        match $e {
            $from::Start { id, model, usage } => $to::Start {
                id,
                model,
                usage: usage.into(),
            },
            $from::TextDelta(t) => $to::TextDelta(t),
            $from::ThinkingDelta(t) => $to::ThinkingDelta(t),
            $from::ThinkingSignature(s) => $to::ThinkingSignature(s),
            $from::RedactedThinking(d) => $to::RedactedThinking(d),
            $from::RefusalDelta(t) => $to::RefusalDelta(t),
            $from::ToolCallStart {
                index,
                id,
                name,
                signature,
            } => $to::ToolCallStart {
                index,
                id,
                name,
                signature,
            },
            $from::ToolArgsDelta { index, fragment } => $to::ToolArgsDelta { index, fragment },
            $from::Finish {
                reason,
                stop_sequence,
                usage,
            } => $to::Finish {
                reason: reason.into(),
                stop_sequence,
                usage: usage.into(),
            },
            $from::Error(info) => $to::Error(info.into()),
        }
    };
}

mod from_ir;
mod to_ir;

use serde::{Deserialize, Serialize};
use serde_json::Value;

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ChatRequest {
    #[serde(skip_serializing_if = "is_default")]
    model: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<TextBlock>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    messages: Vec<Message>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop: Vec<String>,
    #[serde(skip_serializing_if = "is_default")]
    stream: bool,
    #[serde(skip_serializing_if = "is_default")]
    stream_usage: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<Reasoning>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TextBlock {
    text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cache_control: Option<Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    role: Role,
    content: Vec<Part>,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Role {
    User,
    Assistant,
}

/// `{"media_type", "data"}` (base64) or `{"url"}`.
#[derive(Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum Source {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

/// Tagged by `type`, every variant a struct so the tag can sit beside the fields.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Part {
    Text {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    Image {
        source: Source,
    },
    Document {
        source: Source,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
    },
    ToolCall {
        id: String,
        name: String,
        arguments: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    ToolResult {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        content: Vec<Part>,
        #[serde(default, skip_serializing_if = "is_default")]
        is_error: bool,
    },
    Thinking {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    RedactedThinking {
        data: String,
    },
    Refusal {
        text: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tool {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// Left out (and read back) as JSON `null`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    parameters: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

/// `"auto"`, `"required"`, `"none"` or `{"tool": "name"}`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ToolChoice {
    Auto,
    Required,
    None,
    Tool(String),
}

/// `"text"`, `"json_object"` or `{"json_schema": {...}}`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reasoning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    effort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    budget_tokens: Option<u32>,
    enabled: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    ContentFilter,
    PauseTurn,
    Other,
}

#[derive(Serialize, Deserialize, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UsageJ {
    #[serde(skip_serializing_if = "is_default")]
    input: u64,
    #[serde(skip_serializing_if = "is_default")]
    output: u64,
    #[serde(skip_serializing_if = "is_default")]
    cache_read: u64,
    #[serde(skip_serializing_if = "is_default")]
    cache_write: u64,
    #[serde(skip_serializing_if = "is_default")]
    reasoning: u64,
    #[serde(skip_serializing_if = "is_default")]
    estimated: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatResponse {
    id: String,
    model: String,
    content: Vec<Part>,
    stop_reason: StopReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stop_sequence: Option<String>,
    #[serde(default)]
    usage: UsageJ,
}

/// Externally tagged: `{"text_delta": "Hi"}`, `{"finish": {...}}`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamEvent {
    Start {
        id: String,
        model: String,
        #[serde(default)]
        usage: UsageJ,
    },
    TextDelta(String),
    ThinkingDelta(String),
    ThinkingSignature(String),
    RedactedThinking(String),
    RefusalDelta(String),
    ToolCallStart {
        index: u32,
        id: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    ToolArgsDelta {
        index: u32,
        fragment: String,
    },
    Finish {
        reason: StopReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop_sequence: Option<String>,
        #[serde(default)]
        usage: UsageJ,
    },
    Error(ErrorInfo),
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    RequestTooLarge,
    RateLimit,
    Billing,
    Overloaded,
    Timeout,
    Server,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorInfo {
    status: u16,
    kind: ErrorKind,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    param: Option<String>,
}

/// Output only: why a translation was refused.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TranslateError {
    Unsupported {
        message: String,
        param: Option<String>,
    },
    Json(String),
    Protocol(String),
}
