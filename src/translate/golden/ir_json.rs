//! The IR as JSON, for golden files only: encode cases read their input IR from it and decode
//! cases write their output IR with it.
//!
//! The IR types themselves carry no serde derives (nothing on the request path needs them), so
//! this module mirrors them. The conversions match exhaustively, so a field added to the IR
//! does not compile here until the mirror learns it. Defaults (empty, `None`, `false`, zero)
//! are left out when written and filled in when read, which keeps golden files short without
//! losing anything: a value that stops being its default shows up in the diff.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::translate::ir;
use crate::usage::Usage;

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

// ---------------------------------------------------------------------------------------------
// mirror → IR (inputs)

impl From<ChatRequest> for ir::ChatRequest {
    fn from(r: ChatRequest) -> Self {
        ir::ChatRequest {
            model: r.model,
            system: r.system.into_iter().map(Into::into).collect(),
            messages: r.messages.into_iter().map(Into::into).collect(),
            tools: r.tools.into_iter().map(Into::into).collect(),
            tool_choice: r.tool_choice.map(Into::into),
            parallel_tool_calls: r.parallel_tool_calls,
            max_tokens: r.max_tokens,
            temperature: r.temperature,
            top_p: r.top_p,
            top_k: r.top_k,
            stop: r.stop,
            stream: r.stream,
            stream_usage: r.stream_usage,
            response_format: r.response_format.map(Into::into),
            reasoning: r.reasoning.map(Into::into),
            user: r.user,
            seed: r.seed,
            presence_penalty: r.presence_penalty,
            frequency_penalty: r.frequency_penalty,
            n: r.n,
        }
    }
}

impl From<TextBlock> for ir::TextBlock {
    fn from(b: TextBlock) -> Self {
        ir::TextBlock {
            text: b.text,
            cache_control: b.cache_control,
        }
    }
}

impl From<Message> for ir::Message {
    fn from(m: Message) -> Self {
        ir::Message {
            role: match m.role {
                Role::User => ir::Role::User,
                Role::Assistant => ir::Role::Assistant,
            },
            content: m.content.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Source> for ir::ImageSource {
    fn from(s: Source) -> Self {
        match s {
            Source::Base64 { media_type, data } => ir::ImageSource::Base64 { media_type, data },
            Source::Url { url } => ir::ImageSource::Url { url },
        }
    }
}

impl From<Part> for ir::Part {
    fn from(p: Part) -> Self {
        match p {
            Part::Text {
                text,
                cache_control,
            } => ir::Part::Text(ir::TextBlock {
                text,
                cache_control,
            }),
            Part::Image { source } => ir::Part::Image(source.into()),
            Part::Document { source, title } => ir::Part::Document {
                source: source.into(),
                title,
            },
            Part::ToolCall {
                id,
                name,
                arguments,
                signature,
            } => ir::Part::ToolCall {
                id,
                name,
                arguments,
                signature,
            },
            Part::ToolResult {
                id,
                name,
                content,
                is_error,
            } => ir::Part::ToolResult {
                id,
                name,
                content: content.into_iter().map(Into::into).collect(),
                is_error,
            },
            Part::Thinking { text, signature } => ir::Part::Thinking { text, signature },
            Part::RedactedThinking { data } => ir::Part::RedactedThinking { data },
            Part::Refusal { text } => ir::Part::Refusal(text),
        }
    }
}

impl From<Tool> for ir::Tool {
    fn from(t: Tool) -> Self {
        ir::Tool {
            name: t.name,
            description: t.description,
            parameters: t.parameters,
            strict: t.strict,
        }
    }
}

impl From<ToolChoice> for ir::ToolChoice {
    fn from(c: ToolChoice) -> Self {
        match c {
            ToolChoice::Auto => ir::ToolChoice::Auto,
            ToolChoice::Required => ir::ToolChoice::Required,
            ToolChoice::None => ir::ToolChoice::None,
            ToolChoice::Tool(name) => ir::ToolChoice::Tool(name),
        }
    }
}

impl From<ResponseFormat> for ir::ResponseFormat {
    fn from(f: ResponseFormat) -> Self {
        match f {
            ResponseFormat::Text => ir::ResponseFormat::Text,
            ResponseFormat::JsonObject => ir::ResponseFormat::JsonObject,
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => ir::ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            },
        }
    }
}

impl From<Reasoning> for ir::Reasoning {
    fn from(r: Reasoning) -> Self {
        ir::Reasoning {
            effort: r.effort,
            budget_tokens: r.budget_tokens,
            enabled: r.enabled,
        }
    }
}

impl From<StopReason> for ir::StopReason {
    fn from(r: StopReason) -> Self {
        match r {
            StopReason::EndTurn => ir::StopReason::EndTurn,
            StopReason::MaxTokens => ir::StopReason::MaxTokens,
            StopReason::StopSequence => ir::StopReason::StopSequence,
            StopReason::ToolUse => ir::StopReason::ToolUse,
            StopReason::ContentFilter => ir::StopReason::ContentFilter,
            StopReason::PauseTurn => ir::StopReason::PauseTurn,
            StopReason::Other => ir::StopReason::Other,
        }
    }
}

impl From<UsageJ> for Usage {
    fn from(u: UsageJ) -> Self {
        Usage {
            input: u.input,
            output: u.output,
            cache_read: u.cache_read,
            cache_write: u.cache_write,
            reasoning: u.reasoning,
            estimated: u.estimated,
        }
    }
}

impl From<ChatResponse> for ir::ChatResponse {
    fn from(r: ChatResponse) -> Self {
        ir::ChatResponse {
            id: r.id,
            model: r.model,
            content: r.content.into_iter().map(Into::into).collect(),
            stop_reason: r.stop_reason.into(),
            stop_sequence: r.stop_sequence,
            usage: r.usage.into(),
        }
    }
}

impl From<StreamEvent> for ir::StreamEvent {
    fn from(e: StreamEvent) -> Self {
        use ir::StreamEvent as E;
        match e {
            StreamEvent::Start { id, model, usage } => E::Start {
                id,
                model,
                usage: usage.into(),
            },
            StreamEvent::TextDelta(t) => E::TextDelta(t),
            StreamEvent::ThinkingDelta(t) => E::ThinkingDelta(t),
            StreamEvent::ThinkingSignature(s) => E::ThinkingSignature(s),
            StreamEvent::RedactedThinking(d) => E::RedactedThinking(d),
            StreamEvent::RefusalDelta(t) => E::RefusalDelta(t),
            StreamEvent::ToolCallStart {
                index,
                id,
                name,
                signature,
            } => E::ToolCallStart {
                index,
                id,
                name,
                signature,
            },
            StreamEvent::ToolArgsDelta { index, fragment } => E::ToolArgsDelta { index, fragment },
            StreamEvent::Finish {
                reason,
                stop_sequence,
                usage,
            } => E::Finish {
                reason: reason.into(),
                stop_sequence,
                usage: usage.into(),
            },
            StreamEvent::Error(info) => E::Error(info.into()),
        }
    }
}

impl From<ErrorKind> for ir::ErrorKind {
    fn from(k: ErrorKind) -> Self {
        use ir::ErrorKind as K;
        match k {
            ErrorKind::InvalidRequest => K::InvalidRequest,
            ErrorKind::Authentication => K::Authentication,
            ErrorKind::Permission => K::Permission,
            ErrorKind::NotFound => K::NotFound,
            ErrorKind::RequestTooLarge => K::RequestTooLarge,
            ErrorKind::RateLimit => K::RateLimit,
            ErrorKind::Billing => K::Billing,
            ErrorKind::Overloaded => K::Overloaded,
            ErrorKind::Timeout => K::Timeout,
            ErrorKind::Server => K::Server,
        }
    }
}

impl From<ErrorInfo> for ir::ErrorInfo {
    fn from(e: ErrorInfo) -> Self {
        ir::ErrorInfo {
            status: e.status,
            kind: e.kind.into(),
            message: e.message,
            code: e.code,
            param: e.param,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// IR → mirror (outputs)

impl From<&ir::ChatRequest> for ChatRequest {
    fn from(r: &ir::ChatRequest) -> Self {
        ChatRequest {
            model: r.model.clone(),
            system: r.system.iter().map(Into::into).collect(),
            messages: r.messages.iter().map(Into::into).collect(),
            tools: r.tools.iter().map(Into::into).collect(),
            tool_choice: r.tool_choice.as_ref().map(Into::into),
            parallel_tool_calls: r.parallel_tool_calls,
            max_tokens: r.max_tokens,
            temperature: r.temperature,
            top_p: r.top_p,
            top_k: r.top_k,
            stop: r.stop.clone(),
            stream: r.stream,
            stream_usage: r.stream_usage,
            response_format: r.response_format.as_ref().map(Into::into),
            reasoning: r.reasoning.as_ref().map(Into::into),
            user: r.user.clone(),
            seed: r.seed,
            presence_penalty: r.presence_penalty,
            frequency_penalty: r.frequency_penalty,
            n: r.n,
        }
    }
}

impl From<&ir::TextBlock> for TextBlock {
    fn from(b: &ir::TextBlock) -> Self {
        TextBlock {
            text: b.text.clone(),
            cache_control: b.cache_control.clone(),
        }
    }
}

impl From<&ir::Message> for Message {
    fn from(m: &ir::Message) -> Self {
        Message {
            role: match m.role {
                ir::Role::User => Role::User,
                ir::Role::Assistant => Role::Assistant,
            },
            content: m.content.iter().map(Into::into).collect(),
        }
    }
}

impl From<&ir::ImageSource> for Source {
    fn from(s: &ir::ImageSource) -> Self {
        match s {
            ir::ImageSource::Base64 { media_type, data } => Source::Base64 {
                media_type: media_type.clone(),
                data: data.clone(),
            },
            ir::ImageSource::Url { url } => Source::Url { url: url.clone() },
        }
    }
}

impl From<&ir::Part> for Part {
    fn from(p: &ir::Part) -> Self {
        match p.clone() {
            ir::Part::Text(b) => Part::Text {
                text: b.text,
                cache_control: b.cache_control,
            },
            ir::Part::Image(source) => Part::Image {
                source: (&source).into(),
            },
            ir::Part::Document { source, title } => Part::Document {
                source: (&source).into(),
                title,
            },
            ir::Part::ToolCall {
                id,
                name,
                arguments,
                signature,
            } => Part::ToolCall {
                id,
                name,
                arguments,
                signature,
            },
            ir::Part::ToolResult {
                id,
                name,
                content,
                is_error,
            } => Part::ToolResult {
                id,
                name,
                content: content.iter().map(Into::into).collect(),
                is_error,
            },
            ir::Part::Thinking { text, signature } => Part::Thinking { text, signature },
            ir::Part::RedactedThinking { data } => Part::RedactedThinking { data },
            ir::Part::Refusal(text) => Part::Refusal { text },
        }
    }
}

impl From<&ir::Tool> for Tool {
    fn from(t: &ir::Tool) -> Self {
        Tool {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters: t.parameters.clone(),
            strict: t.strict,
        }
    }
}

impl From<&ir::ToolChoice> for ToolChoice {
    fn from(c: &ir::ToolChoice) -> Self {
        match c {
            ir::ToolChoice::Auto => ToolChoice::Auto,
            ir::ToolChoice::Required => ToolChoice::Required,
            ir::ToolChoice::None => ToolChoice::None,
            ir::ToolChoice::Tool(name) => ToolChoice::Tool(name.clone()),
        }
    }
}

impl From<&ir::ResponseFormat> for ResponseFormat {
    fn from(f: &ir::ResponseFormat) -> Self {
        match f.clone() {
            ir::ResponseFormat::Text => ResponseFormat::Text,
            ir::ResponseFormat::JsonObject => ResponseFormat::JsonObject,
            ir::ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            },
        }
    }
}

impl From<&ir::Reasoning> for Reasoning {
    fn from(r: &ir::Reasoning) -> Self {
        Reasoning {
            effort: r.effort.clone(),
            budget_tokens: r.budget_tokens,
            enabled: r.enabled,
        }
    }
}

impl From<ir::StopReason> for StopReason {
    fn from(r: ir::StopReason) -> Self {
        match r {
            ir::StopReason::EndTurn => StopReason::EndTurn,
            ir::StopReason::MaxTokens => StopReason::MaxTokens,
            ir::StopReason::StopSequence => StopReason::StopSequence,
            ir::StopReason::ToolUse => StopReason::ToolUse,
            ir::StopReason::ContentFilter => StopReason::ContentFilter,
            ir::StopReason::PauseTurn => StopReason::PauseTurn,
            ir::StopReason::Other => StopReason::Other,
        }
    }
}

impl From<Usage> for UsageJ {
    fn from(u: Usage) -> Self {
        UsageJ {
            input: u.input,
            output: u.output,
            cache_read: u.cache_read,
            cache_write: u.cache_write,
            reasoning: u.reasoning,
            estimated: u.estimated,
        }
    }
}

impl From<&ir::ChatResponse> for ChatResponse {
    fn from(r: &ir::ChatResponse) -> Self {
        ChatResponse {
            id: r.id.clone(),
            model: r.model.clone(),
            content: r.content.iter().map(Into::into).collect(),
            stop_reason: r.stop_reason.into(),
            stop_sequence: r.stop_sequence.clone(),
            usage: r.usage.into(),
        }
    }
}

impl From<&ir::StreamEvent> for StreamEvent {
    fn from(e: &ir::StreamEvent) -> Self {
        use ir::StreamEvent as E;
        match e.clone() {
            E::Start { id, model, usage } => StreamEvent::Start {
                id,
                model,
                usage: usage.into(),
            },
            E::TextDelta(t) => StreamEvent::TextDelta(t),
            E::ThinkingDelta(t) => StreamEvent::ThinkingDelta(t),
            E::ThinkingSignature(s) => StreamEvent::ThinkingSignature(s),
            E::RedactedThinking(d) => StreamEvent::RedactedThinking(d),
            E::RefusalDelta(t) => StreamEvent::RefusalDelta(t),
            E::ToolCallStart {
                index,
                id,
                name,
                signature,
            } => StreamEvent::ToolCallStart {
                index,
                id,
                name,
                signature,
            },
            E::ToolArgsDelta { index, fragment } => StreamEvent::ToolArgsDelta { index, fragment },
            E::Finish {
                reason,
                stop_sequence,
                usage,
            } => StreamEvent::Finish {
                reason: reason.into(),
                stop_sequence,
                usage: usage.into(),
            },
            E::Error(info) => StreamEvent::Error((&info).into()),
        }
    }
}

impl From<ir::ErrorKind> for ErrorKind {
    fn from(k: ir::ErrorKind) -> Self {
        use ir::ErrorKind as K;
        match k {
            K::InvalidRequest => ErrorKind::InvalidRequest,
            K::Authentication => ErrorKind::Authentication,
            K::Permission => ErrorKind::Permission,
            K::NotFound => ErrorKind::NotFound,
            K::RequestTooLarge => ErrorKind::RequestTooLarge,
            K::RateLimit => ErrorKind::RateLimit,
            K::Billing => ErrorKind::Billing,
            K::Overloaded => ErrorKind::Overloaded,
            K::Timeout => ErrorKind::Timeout,
            K::Server => ErrorKind::Server,
        }
    }
}

impl From<&ir::ErrorInfo> for ErrorInfo {
    fn from(e: &ir::ErrorInfo) -> Self {
        ErrorInfo {
            status: e.status,
            kind: e.kind.into(),
            message: e.message.clone(),
            code: e.code.clone(),
            param: e.param.clone(),
        }
    }
}

impl From<&ir::TranslateError> for TranslateError {
    fn from(e: &ir::TranslateError) -> Self {
        match e.clone() {
            ir::TranslateError::Unsupported { message, param } => {
                TranslateError::Unsupported { message, param }
            }
            ir::TranslateError::Json(m) => TranslateError::Json(m),
            ir::TranslateError::Protocol(m) => TranslateError::Protocol(m),
        }
    }
}
