//! The internal model every dialect translates to and from.
//!
//! Translation between N dialects goes through this one model: each dialect module decodes its
//! own wire format into these types and encodes these types into its wire format, so adding a
//! dialect is two directions of one module, not N new pairs. The model keeps *meaning*, not
//! bytes: field order, whitespace and vendor padding are not preserved (same-dialect traffic
//! never comes through here; it is passed through untouched).

use serde_json::Value;

use crate::usage::Usage;

/// A wire protocol spoken by a client or a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI Chat Completions (and every OpenAI-compatible server, Azure included).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini `generateContent`.
    Gemini,
    /// AWS Bedrock Converse (outbound only).
    Bedrock,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
            Dialect::Gemini => "gemini",
            Dialect::Bedrock => "bedrock",
        }
    }
}

/// A chat request, whatever dialect it arrived in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    /// The model name the client asked for (routing may replace it).
    pub model: String,
    /// System instructions in order (OpenAI `system`/`developer` messages, Anthropic `system`,
    /// Gemini `systemInstruction`). Each entry is one text block.
    pub system: Vec<TextBlock>,
    /// The conversation; consecutive turns of the same role are allowed here (encoders merge
    /// where their dialect requires alternation).
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    /// `false` asks the model for at most one tool call per turn.
    pub parallel_tool_calls: Option<bool>,
    /// Maximum output tokens; `None` when the client did not say (encoders for dialects that
    /// require it supply a default).
    pub max_tokens: Option<u32>,
    /// On OpenAI's 0–2 scale (Gemini's too); decoders of other scales convert (Anthropic's
    /// 0–1 is doubled), encoders map into their own range.
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// The client asked for usage in the stream (OpenAI `stream_options.include_usage`); other
    /// dialects always report usage, and their decoders set this to `true`.
    pub stream_usage: bool,
    pub response_format: Option<ResponseFormat>,
    pub reasoning: Option<Reasoning>,
    /// End-user id for abuse tracking (OpenAI `user`/`safety_identifier`, Anthropic
    /// `metadata.user_id`).
    pub user: Option<String>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    /// Number of choices; only 1 can be translated.
    pub n: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TextBlock {
    pub text: String,
    /// Anthropic prompt caching marker (`cache_control`), kept as sent.
    pub cache_control: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// Inline bytes, base64-encoded, with their media type (`image/png`, ...).
    Base64 { media_type: String, data: String },
    /// A URL the provider fetches (`https://...`, or `gs://...` for Gemini).
    Url { url: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(TextBlock),
    Image(ImageSource),
    /// A document (PDF), base64 with its media type, or by URL.
    Document {
        source: ImageSource,
        title: Option<String>,
    },
    /// A tool call made by the assistant. `arguments` is JSON text (OpenAI's form); decoders
    /// of dialects that carry an object serialise it compactly.
    ToolCall {
        id: String,
        name: String,
        arguments: String,
        /// Opaque provider signature that must be replayed with the call (Gemini
        /// `thoughtSignature`).
        signature: Option<String>,
    },
    /// The result of a tool call, sent in a user turn.
    ToolResult {
        /// The id of the call it answers.
        id: String,
        /// Tool name when the dialect carries it (Gemini `functionResponse.name`); encoders
        /// that need it and don't have it look it up from the matching `ToolCall`.
        name: Option<String>,
        /// Text and image parts of the result.
        content: Vec<Part>,
        is_error: bool,
    },
    /// Model reasoning. `signature` must be replayed verbatim to Anthropic.
    Thinking {
        text: String,
        signature: Option<String>,
    },
    /// Encrypted reasoning (Anthropic `redacted_thinking`), replayed verbatim.
    RedactedThinking {
        data: String,
    },
    /// A refusal message (OpenAI `refusal`).
    Refusal(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments (always an object schema after decoding).
    pub parameters: Value,
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    /// The model must call some tool (OpenAI `required`, Anthropic `any`, Gemini `ANY`).
    Required,
    None,
    /// The model must call this tool.
    Tool(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Value,
        strict: Option<bool>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reasoning {
    /// `minimal|low|medium|high` when the client gave an effort.
    pub effort: Option<String>,
    /// Token budget when the client gave one (Anthropic `budget_tokens`, Gemini
    /// `thinkingBudget`).
    pub budget_tokens: Option<u32>,
    /// `false` when the client explicitly disabled reasoning.
    pub enabled: bool,
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    ContentFilter,
    /// Anthropic `pause_turn` (server-tool loop paused).
    PauseTurn,
    /// Anything else the provider said (Gemini `OTHER`, `MALFORMED_FUNCTION_CALL`, ...).
    Other,
}

/// A complete (non-stream) answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub id: String,
    pub model: String,
    /// Text, thinking, refusal and tool-call parts in the order the model produced them.
    pub content: Vec<Part>,
    pub stop_reason: StopReason,
    /// The stop sequence that matched, when the provider says.
    pub stop_sequence: Option<String>,
    pub usage: Usage,
}

/// One step of a streamed answer. Decoders emit these as soon as their input arrives; encoders
/// turn each into output bytes at once (nothing is held back except what a dialect needs at its
/// end, such as the final usage).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// Exactly once, first. `usage` holds what is known at the start (Anthropic reports input
    /// tokens here; OpenAI reports nothing until the end).
    Start {
        id: String,
        model: String,
        usage: Usage,
    },
    TextDelta(String),
    ThinkingDelta(String),
    /// The signature of the thinking block being streamed.
    ThinkingSignature(String),
    RedactedThinking(String),
    RefusalDelta(String),
    /// A new tool call. `index` counts tool calls (0, 1, 2 ...), not content blocks.
    ToolCallStart {
        index: u32,
        id: String,
        name: String,
        signature: Option<String>,
    },
    /// A fragment of a tool call's JSON arguments, forwarded as it arrives.
    ToolArgsDelta {
        index: u32,
        fragment: String,
    },
    /// Exactly once, last on success: why the model stopped and the final usage.
    Finish {
        reason: StopReason,
        stop_sequence: Option<String>,
        usage: Usage,
    },
    /// The upstream failed mid-stream; nothing follows.
    Error(ErrorInfo),
}

/// What kind of failure an error is, across dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    RequestTooLarge,
    RateLimit,
    Billing,
    /// Provider overloaded (Anthropic 529, Gemini `UNAVAILABLE`).
    Overloaded,
    Timeout,
    /// Provider internal error.
    Server,
}

impl ErrorKind {
    /// The HTTP status a client should see for this kind.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::Billing => 402,
            ErrorKind::Permission => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::RequestTooLarge => 413,
            ErrorKind::RateLimit => 429,
            ErrorKind::Server => 500,
            ErrorKind::Overloaded => 503,
            ErrorKind::Timeout => 504,
        }
    }

    /// Best kind for an HTTP status without a parseable body.
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            400 | 409 | 422 => ErrorKind::InvalidRequest,
            401 => ErrorKind::Authentication,
            402 => ErrorKind::Billing,
            403 => ErrorKind::Permission,
            404 => ErrorKind::NotFound,
            413 => ErrorKind::RequestTooLarge,
            429 => ErrorKind::RateLimit,
            503 | 529 => ErrorKind::Overloaded,
            408 | 504 => ErrorKind::Timeout,
            _ => ErrorKind::Server,
        }
    }
}

/// An error, whatever dialect reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorInfo {
    /// HTTP status to answer with (the upstream's when it came from one).
    pub status: u16,
    pub kind: ErrorKind,
    pub message: String,
    /// Provider's own code (`context_length_exceeded`, `insufficient_quota`,
    /// `RESOURCE_EXHAUSTED`, ...), kept for the client and for retry decisions.
    pub code: Option<String>,
    /// Parameter at fault, when known.
    pub param: Option<String>,
}

/// A raw upstream stream event handed to a decoder: an SSE event (`name` from `event:`, `data`
/// the joined `data:` lines) or an AWS event-stream message (`name` from `:event-type`, or
/// `:exception-type` when `exception` is set).
#[derive(Debug, Clone, Copy)]
pub struct RawEvent<'a> {
    /// As it came (bytes: most decoders never look at it, so it is not checked as UTF-8 per
    /// event); [`RawEvent::name_str`] reads it as text.
    pub name: Option<&'a [u8]>,
    pub data: &'a [u8],
    pub exception: bool,
}

impl<'a> RawEvent<'a> {
    /// The name as text (`None` when absent or not UTF-8).
    pub fn name_str(&self) -> Option<&'a str> {
        self.name.and_then(|n| std::str::from_utf8(n).ok())
    }
}

/// Why a request or response could not be translated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TranslateError {
    /// The client's request is malformed or uses something the target dialect can't express;
    /// the message says which field (answered 400 in the client's dialect).
    #[error("{message}")]
    Unsupported {
        message: String,
        param: Option<String>,
    },
    /// The body is not valid JSON of the expected shape (400 for requests, 502 for responses).
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The upstream sent something that does not follow its own protocol (502).
    #[error("{0}")]
    Protocol(String),
}

impl TranslateError {
    pub fn unsupported(message: impl Into<String>, param: Option<&str>) -> Self {
        TranslateError::Unsupported {
            message: message.into(),
            param: param.map(str::to_owned),
        }
    }
}

impl From<serde_json::Error> for TranslateError {
    fn from(e: serde_json::Error) -> Self {
        TranslateError::Json(e.to_string())
    }
}

/// Decodes one upstream dialect's stream into `StreamEvent`s.
pub trait StreamDecode: Send {
    /// One upstream event; pushes zero or more events to `out`.
    fn event(&mut self, raw: RawEvent<'_>, out: &mut Vec<StreamEvent>);
    /// The upstream stream ended (cleanly). Pushes the final `Finish` if the dialect ends on
    /// close (Gemini) or what is still owed; pushes an `Error` if the stream was cut before the
    /// dialect's end marker and nothing can stand in for it.
    fn end(&mut self, out: &mut Vec<StreamEvent>);
}

/// Encodes `StreamEvent`s into one client dialect's stream bytes.
pub trait StreamEncode: Send {
    /// Appends the bytes for one event (possibly none) to `out`.
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>);
    /// Appends what must close the stream (nothing after an `Error`, which already ended it).
    fn end(&mut self, out: &mut Vec<u8>);
}

/// Options the client encoder needs from the client's request.
#[derive(Debug, Clone, Default)]
pub struct EncodeOptions {
    /// The model name to show the client (the name the client asked for).
    pub model: String,
    /// OpenAI clients: whether to send the usage chunk (`stream_options.include_usage`).
    pub stream_usage: bool,
    /// Unix seconds for `created` fields.
    pub created: u64,
}
