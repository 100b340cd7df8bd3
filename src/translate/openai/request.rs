//! Requests: an OpenAI client's chat request → IR, and IR → a request for an OpenAI-compatible
//! upstream.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{normalize_arguments, reasoning_parts, ThinkingBlockIn};
use crate::translate::ir::{
    ChatRequest, ImageSource, Message, Part, Reasoning, ResponseFormat, Role, TextBlock, Tool,
    ToolChoice, TranslateError,
};

// ---------------------------------------------------------------------------------------------
// Wire shapes (client → gateway). Only what translation needs; every other field is ignored.

#[derive(Debug, Deserialize)]
struct WireRequest {
    model: String,
    messages: Vec<WireMessage>,
    tools: Option<Vec<WireTool>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    max_completion_tokens: Option<u32>,
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    /// Not OpenAI's, but accepted by vLLM and other compatible servers.
    top_k: Option<u32>,
    stop: Option<StopIn>,
    stream: Option<bool>,
    stream_options: Option<StreamOptionsIn>,
    response_format: Option<Value>,
    reasoning_effort: Option<String>,
    user: Option<String>,
    safety_identifier: Option<String>,
    seed: Option<i64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    n: Option<u32>,
    /// Deprecated predecessor of `tools`; rejected rather than silently dropped.
    functions: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StopIn {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StreamOptionsIn {
    include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    role: String,
    /// A string, an array of parts, or null (assistant turns with only tool calls).
    #[serde(default)]
    content: Value,
    tool_calls: Option<Vec<WireToolCall>>,
    tool_call_id: Option<String>,
    refusal: Option<String>,
    /// De-facto extension (DeepSeek, LiteLLM, vLLM) carrying the model's reasoning.
    reasoning_content: Option<String>,
    /// LiteLLM's extension carrying signed reasoning blocks that Anthropic needs replayed.
    thinking_blocks: Option<Vec<ThinkingBlockIn>>,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    id: String,
    function: WireFunctionCall,
}

#[derive(Debug, Deserialize)]
struct WireFunctionCall {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WirePart {
    Text {
        text: String,
        /// Sent by clients that target Anthropic prompt caching through an OpenAI-shaped API.
        cache_control: Option<Value>,
    },
    ImageUrl {
        image_url: ImageUrlIn,
    },
    InputAudio {},
    File {
        file: FileIn,
    },
    Refusal {
        refusal: String,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ImageUrlIn {
    Object {
        url: String,
    },
    /// Some clients send the URL itself instead of `{url}`.
    Bare(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileIn {
    file_data: Option<String>,
    file_id: Option<String>,
    filename: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireTool {
    #[serde(rename = "type", default = "function_type")]
    kind: String,
    function: Option<WireFunctionDef>,
}

fn function_type() -> String {
    "function".to_owned()
}

#[derive(Debug, Deserialize)]
struct WireFunctionDef {
    name: String,
    description: Option<String>,
    parameters: Option<Value>,
    strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToolChoiceIn {
    Function {
        function: NamedIn,
    },
    Custom {
        custom: NamedIn,
    },
    AllowedTools {
        allowed_tools: AllowedToolsIn,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct NamedIn {
    name: String,
}

#[derive(Debug, Deserialize)]
struct AllowedToolsIn {
    #[serde(default)]
    mode: String,
    #[serde(default)]
    tools: Vec<AllowedToolIn>,
}

#[derive(Debug, Deserialize)]
struct AllowedToolIn {
    function: Option<NamedIn>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseFormatIn {
    Text,
    JsonObject,
    JsonSchema {
        json_schema: JsonSchemaIn,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct JsonSchemaIn {
    #[serde(default)]
    name: String,
    schema: Option<Value>,
    strict: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// Decode

/// Decodes an OpenAI chat request from a client into the IR.
///
/// `system`/`developer` messages anywhere in the conversation are hoisted into `system` in
/// order; consecutive `tool` messages become one user turn of `ToolResult` parts, followed by
/// the parts of a user message that comes right after them (Anthropic needs all results of a
/// turn in one message, results first).
pub fn decode_request(body: &[u8]) -> Result<ChatRequest, TranslateError> {
    let wire: WireRequest = crate::translate::json::from_slice(body)?;

    let mut req = ChatRequest {
        model: wire.model,
        ..ChatRequest::default()
    };

    // True while the last IR message is a user turn built from `tool` messages that may still
    // take more results, or the user text that follows them.
    let mut tool_turn_open = false;
    for (i, msg) in wire.messages.into_iter().enumerate() {
        let at = format!("messages[{i}]");
        match msg.role.as_str() {
            "system" | "developer" => {
                for part in decode_content(&msg.content, &at)? {
                    match part {
                        Part::Text(block) => req.system.push(block),
                        _ => {
                            return Err(TranslateError::unsupported(
                                "system messages may only contain text",
                                Some(&format!("{at}.content")),
                            ))
                        }
                    }
                }
            }
            "user" => {
                let parts = decode_content(&msg.content, &at)?;
                if parts.is_empty() {
                    continue;
                }
                match req.messages.last_mut() {
                    Some(last) if tool_turn_open => last.content.extend(parts),
                    _ => req.messages.push(Message {
                        role: Role::User,
                        content: parts,
                    }),
                }
                tool_turn_open = false;
            }
            "assistant" => {
                tool_turn_open = false;
                let parts = decode_assistant(msg, &at)?;
                if !parts.is_empty() {
                    req.messages.push(Message {
                        role: Role::Assistant,
                        content: parts,
                    });
                }
            }
            "tool" => {
                let id = msg.tool_call_id.ok_or_else(|| {
                    TranslateError::unsupported(
                        "tool messages need a tool_call_id",
                        Some(&format!("{at}.tool_call_id")),
                    )
                })?;
                let result = Part::ToolResult {
                    id,
                    name: None,
                    content: decode_content(&msg.content, &at)?,
                    is_error: false,
                };
                match req.messages.last_mut() {
                    Some(last) if tool_turn_open => last.content.push(result),
                    _ => req.messages.push(Message {
                        role: Role::User,
                        content: vec![result],
                    }),
                }
                tool_turn_open = true;
            }
            other => {
                // A whole message can't be dropped silently: the conversation would change.
                return Err(TranslateError::unsupported(
                    format!("message role '{other}' can't be translated"),
                    Some(&format!("{at}.role")),
                ));
            }
        }
    }

    if wire
        .functions
        .as_ref()
        .is_some_and(|f| f.as_array().is_some_and(|a| !a.is_empty()))
    {
        return Err(TranslateError::unsupported(
            "legacy functions can't be translated; send them as tools",
            Some("functions"),
        ));
    }
    for (i, tool) in wire.tools.unwrap_or_default().into_iter().enumerate() {
        req.tools.push(decode_tool(tool, i)?);
    }
    if let Some(choice) = wire.tool_choice {
        req.tool_choice = decode_tool_choice(choice, &mut req.tools)?;
    }
    req.parallel_tool_calls = wire.parallel_tool_calls;
    req.max_tokens = wire.max_completion_tokens.or(wire.max_tokens);
    req.temperature = wire.temperature;
    req.top_p = wire.top_p;
    req.top_k = wire.top_k;
    req.stop = match wire.stop {
        None => Vec::new(),
        Some(StopIn::One(s)) => vec![s],
        Some(StopIn::Many(v)) => v,
    };
    // Anthropic rejects empty or whitespace-only stop sequences (pitfall §9.9).
    req.stop.retain(|s| !s.trim().is_empty());
    req.stream = wire.stream.unwrap_or(false);
    req.stream_usage = wire
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    if let Some(format) = wire.response_format {
        req.response_format = decode_response_format(format)?;
    }
    req.reasoning = wire.reasoning_effort.map(|effort| Reasoning {
        // `none` (gpt-5.1 and later) turns reasoning off.
        enabled: effort != "none",
        effort: Some(effort),
        budget_tokens: None,
    });
    req.user = wire.safety_identifier.or(wire.user);
    req.seed = wire.seed;
    req.presence_penalty = wire.presence_penalty;
    req.frequency_penalty = wire.frequency_penalty;
    req.n = wire.n;
    Ok(req)
}

/// Message content (string, parts array or null) → IR parts. Empty text is dropped: other
/// dialects reject empty text blocks (pitfall §9.6).
fn decode_content(content: &Value, at: &str) -> Result<Vec<Part>, TranslateError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![Part::Text(TextBlock {
            text: s.clone(),
            cache_control: None,
        })]),
        Value::Array(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for (j, item) in items.iter().enumerate() {
                let param = format!("{at}.content[{j}]");
                if let Some(part) = decode_part(item, &param)? {
                    parts.push(part);
                }
            }
            Ok(parts)
        }
        _ => Err(TranslateError::unsupported(
            "message content must be a string, an array of parts or null",
            Some(&format!("{at}.content")),
        )),
    }
}

fn decode_part(item: &Value, param: &str) -> Result<Option<Part>, TranslateError> {
    let part = WirePart::deserialize(item).map_err(|e| {
        TranslateError::unsupported(format!("invalid content part: {e}"), Some(param))
    })?;
    Ok(match part {
        WirePart::Text { text, .. } if text.is_empty() => None,
        WirePart::Text {
            text,
            cache_control,
        } => Some(Part::Text(TextBlock {
            text,
            cache_control,
        })),
        WirePart::ImageUrl { image_url } => {
            let url = match image_url {
                ImageUrlIn::Object { url } | ImageUrlIn::Bare(url) => url,
            };
            Some(Part::Image(image_source(url)))
        }
        WirePart::File { file } => Some(decode_file(file, param)?),
        WirePart::Refusal { refusal } => Some(Part::Refusal(refusal)),
        WirePart::InputAudio {} => {
            return Err(TranslateError::unsupported(
                "audio input can't be translated to this provider",
                Some(param),
            ))
        }
        WirePart::Unknown => {
            // Rejected rather than dropped: dropping would silently change what the model sees.
            let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
            return Err(TranslateError::unsupported(
                format!("content part type '{kind}' can't be translated"),
                Some(param),
            ));
        }
    })
}

/// `data:` URLs become inline bytes; anything else is a URL the provider fetches.
fn image_source(url: String) -> ImageSource {
    match parse_data_url(&url) {
        Some((media_type, data)) => ImageSource::Base64 { media_type, data },
        None => ImageSource::Url { url },
    }
}

/// Splits `data:<media type>[;params][;base64],<data>` into the media type and base64 data
/// (percent-encoded data is decoded and re-encoded as base64).
fn parse_data_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let is_base64 = meta
        .rsplit(';')
        .next()
        .is_some_and(|last| last.eq_ignore_ascii_case("base64"));
    let media_type = meta.split(';').next().unwrap_or("").trim();
    let media_type = if media_type.is_empty() {
        "application/octet-stream"
    } else {
        media_type
    };
    let data = if is_base64 {
        data.to_owned()
    } else {
        let bytes: Vec<u8> = percent_encoding::percent_decode_str(data).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    Some((media_type.to_owned(), data))
}

fn decode_file(file: FileIn, param: &str) -> Result<Part, TranslateError> {
    let Some(file_data) = file.file_data else {
        let why = if file.file_id.is_some() {
            "file_id references can't be translated to another provider; send file_data"
        } else {
            "file parts need file_data"
        };
        return Err(TranslateError::unsupported(why, Some(param)));
    };
    let (media_type, data) = match parse_data_url(&file_data) {
        Some(parsed) => parsed,
        // Bare base64: OpenAI only takes PDFs this way.
        None => ("application/pdf".to_owned(), file_data),
    };
    Ok(Part::Document {
        source: ImageSource::Base64 { media_type, data },
        title: file.filename,
    })
}

fn decode_assistant(msg: WireMessage, at: &str) -> Result<Vec<Part>, TranslateError> {
    // Reasoning first: Anthropic requires signed thinking to lead the replayed turn (§9.10).
    let mut parts = reasoning_parts(msg.thinking_blocks, msg.reasoning_content);
    parts.extend(decode_content(&msg.content, at)?);
    if let Some(refusal) = msg.refusal.filter(|r| !r.is_empty()) {
        parts.push(Part::Refusal(refusal));
    }
    for call in msg.tool_calls.unwrap_or_default() {
        parts.push(Part::ToolCall {
            id: call.id,
            name: call.function.name,
            arguments: normalize_arguments(call.function.arguments),
            signature: None,
        });
    }
    Ok(parts)
}

fn decode_tool(tool: WireTool, i: usize) -> Result<Tool, TranslateError> {
    let param = format!("tools[{i}]");
    let function = match (tool.kind.as_str(), tool.function) {
        ("function", Some(f)) => f,
        (kind, _) => {
            return Err(TranslateError::unsupported(
                format!("tool type '{kind}' can't be translated; only function tools can"),
                Some(&param),
            ))
        }
    };
    // The IR promises an object schema: other dialects reject anything else.
    let parameters = match function.parameters {
        Some(Value::Object(mut schema)) => {
            schema
                .entry("type")
                .or_insert_with(|| Value::String("object".to_owned()));
            Value::Object(schema)
        }
        _ => json!({"type": "object", "properties": {}}),
    };
    Ok(Tool {
        name: function.name,
        description: function.description.filter(|d| !d.is_empty()),
        parameters,
        strict: function.strict,
    })
}

fn decode_tool_choice(
    choice: Value,
    tools: &mut Vec<Tool>,
) -> Result<Option<ToolChoice>, TranslateError> {
    let unsupported = |what: &str| {
        TranslateError::unsupported(
            format!("tool_choice {what} can't be translated"),
            Some("tool_choice"),
        )
    };
    if let Value::String(s) = &choice {
        return match s.as_str() {
            "auto" => Ok(Some(ToolChoice::Auto)),
            "none" => Ok(Some(ToolChoice::None)),
            "required" => Ok(Some(ToolChoice::Required)),
            other => Err(unsupported(&format!("'{other}'"))),
        };
    }
    if choice.is_null() {
        return Ok(None);
    }
    let parsed = ToolChoiceIn::deserialize(&choice).map_err(|e| {
        TranslateError::unsupported(format!("invalid tool_choice: {e}"), Some("tool_choice"))
    })?;
    match parsed {
        ToolChoiceIn::Function {
            function: NamedIn { name },
        }
        | ToolChoiceIn::Custom {
            custom: NamedIn { name },
        } => Ok(Some(ToolChoice::Tool(name))),
        ToolChoiceIn::AllowedTools { allowed_tools } => {
            // Offering only the allowed tools means the same to the model; OpenAI's form exists
            // to keep the prompt cache, which doesn't carry across providers anyway.
            let allowed: Vec<String> = allowed_tools
                .tools
                .into_iter()
                .filter_map(|t| t.function.map(|f| f.name))
                .collect();
            tools.retain(|t| allowed.contains(&t.name));
            match allowed_tools.mode.as_str() {
                "required" => Ok(Some(ToolChoice::Required)),
                "auto" | "" => Ok(Some(ToolChoice::Auto)),
                other => Err(unsupported(&format!("allowed_tools mode '{other}'"))),
            }
        }
        ToolChoiceIn::Unknown => {
            let kind = choice.get("type").and_then(Value::as_str).unwrap_or("");
            Err(unsupported(&format!("type '{kind}'")))
        }
    }
}

fn decode_response_format(format: Value) -> Result<Option<ResponseFormat>, TranslateError> {
    if format.is_null() {
        return Ok(None);
    }
    let parsed = ResponseFormatIn::deserialize(&format).map_err(|e| {
        TranslateError::unsupported(
            format!("invalid response_format: {e}"),
            Some("response_format"),
        )
    })?;
    Ok(Some(match parsed {
        ResponseFormatIn::Text => ResponseFormat::Text,
        ResponseFormatIn::JsonObject => ResponseFormat::JsonObject,
        ResponseFormatIn::JsonSchema { json_schema } => ResponseFormat::JsonSchema {
            name: json_schema.name,
            schema: json_schema
                .schema
                .unwrap_or_else(|| Value::Object(serde_json::Map::new())),
            strict: json_schema.strict,
        },
        ResponseFormatIn::Unknown => {
            let kind = format.get("type").and_then(Value::as_str).unwrap_or("");
            return Err(TranslateError::unsupported(
                format!("response_format type '{kind}' can't be translated"),
                Some("response_format"),
            ));
        }
    }))
}

// ---------------------------------------------------------------------------------------------
// Encode (gateway → OpenAI-compatible upstream)

#[derive(Debug, Serialize)]
struct OutRequest<'a> {
    model: &'a str,
    messages: Vec<OutMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop: Vec<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<OutStreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
}

#[derive(Debug, Serialize)]
struct OutStreamOptions {
    include_usage: bool,
}

#[derive(Debug, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
enum OutMessage<'a> {
    System {
        content: String,
    },
    User {
        content: OutContent<'a>,
    },
    Assistant {
        /// `null` when the turn is only tool calls, as OpenAI itself sends it.
        content: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        refusal: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<OutToolCall<'a>>,
    },
    Tool {
        tool_call_id: &'a str,
        content: String,
    },
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum OutContent<'a> {
    Text(&'a str),
    Parts(Vec<OutPart<'a>>),
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutPart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: OutImageUrl },
    File { file: OutFile<'a> },
}

#[derive(Debug, Serialize)]
struct OutImageUrl {
    url: String,
}

#[derive(Debug, Serialize)]
struct OutFile<'a> {
    file_data: String,
    filename: &'a str,
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
    arguments: &'a str,
}

#[derive(Debug, Serialize)]
struct OutTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutFunctionDef<'a>,
}

#[derive(Debug, Serialize)]
struct OutFunctionDef<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    parameters: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

/// OpenAI accepts at most four stop sequences.
const MAX_STOP: usize = 4;

/// Encodes the IR as an OpenAI chat request for `model` on an OpenAI-compatible upstream.
///
/// Streaming requests always ask for the usage chunk (the gateway meters every request; the
/// client encoder decides whether the client sees it). Thinking parts are dropped: OpenAI can't
/// take them back. `top_k` is dropped (not an OpenAI parameter).
pub fn encode_request(req: &ChatRequest, model: &str) -> Result<Vec<u8>, TranslateError> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if !req.system.is_empty() {
        // One system message: some compatible servers' chat templates accept only one, first.
        let text = req
            .system
            .iter()
            .map(|b| b.text.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        messages.push(OutMessage::System { content: text });
    }
    for (i, msg) in req.messages.iter().enumerate() {
        match msg.role {
            Role::User => encode_user(&msg.content, i, &mut messages)?,
            Role::Assistant => {
                if let Some(m) = encode_assistant(&msg.content, i)? {
                    messages.push(m);
                }
            }
        }
    }

    let tools: Vec<OutTool<'_>> = req
        .tools
        .iter()
        .map(|t| OutTool {
            kind: "function",
            function: OutFunctionDef {
                name: &t.name,
                description: t.description.as_deref(),
                parameters: &t.parameters,
                strict: t.strict,
            },
        })
        .collect();
    // OpenAI answers 400 to tool_choice or parallel_tool_calls without tools.
    let (tool_choice, parallel_tool_calls) = if tools.is_empty() {
        (None, None)
    } else {
        (
            req.tool_choice.as_ref().map(|c| match c {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::Required => json!("required"),
                ToolChoice::None => json!("none"),
                ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
            }),
            req.parallel_tool_calls,
        )
    };

    let out = OutRequest {
        model,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls,
        max_completion_tokens: req.max_tokens,
        // The IR is on OpenAI's scale already.
        temperature: req.temperature.map(|t| t.clamp(0.0, 2.0)),
        top_p: req.top_p,
        stop: req.stop.iter().take(MAX_STOP).map(String::as_str).collect(),
        stream: req.stream,
        stream_options: req.stream.then_some(OutStreamOptions {
            include_usage: true,
        }),
        response_format: req.response_format.as_ref().map(encode_response_format),
        reasoning_effort: req.reasoning.as_ref().and_then(reasoning_effort),
        user: req.user.as_deref(),
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        n: req.n,
    };
    serde_json::to_vec(&out).map_err(TranslateError::from)
}

/// A user turn: each `ToolResult` becomes a `tool` message (they must directly follow the
/// assistant's tool calls), the rest one user message after them.
fn encode_user<'a>(
    parts: &'a [Part],
    i: usize,
    messages: &mut Vec<OutMessage<'a>>,
) -> Result<(), TranslateError> {
    let mut rest: Vec<OutPart<'a>> = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let param = format!("messages[{i}].content[{j}]");
        match part {
            Part::ToolResult {
                id,
                content,
                is_error,
                ..
            } => {
                let mut texts: Vec<&str> = Vec::new();
                for item in content {
                    match item {
                        Part::Text(block) => texts.push(&block.text),
                        // Tool messages take text only; images travel in the user message
                        // that follows the results.
                        Part::Image(source) => rest.push(OutPart::ImageUrl {
                            image_url: OutImageUrl {
                                url: image_url(source),
                            },
                        }),
                        _ => {}
                    }
                }
                let mut text = texts.join("\n");
                if *is_error {
                    text.insert_str(0, "Error: ");
                }
                messages.push(OutMessage::Tool {
                    tool_call_id: id,
                    content: text,
                });
            }
            Part::Text(block) => rest.push(OutPart::Text { text: &block.text }),
            Part::Refusal(text) => rest.push(OutPart::Text { text }),
            Part::Image(source) => rest.push(OutPart::ImageUrl {
                image_url: OutImageUrl {
                    url: image_url(source),
                },
            }),
            Part::Document { source, title } => {
                let ImageSource::Base64 { media_type, data } = source else {
                    return Err(TranslateError::unsupported(
                        "OpenAI takes documents inline only, not by URL",
                        Some(&param),
                    ));
                };
                rest.push(OutPart::File {
                    file: OutFile {
                        file_data: format!("data:{media_type};base64,{data}"),
                        filename: title.as_deref().unwrap_or("document.pdf"),
                    },
                });
            }
            Part::Thinking { .. } | Part::RedactedThinking { .. } => {}
            Part::ToolCall { .. } => {
                return Err(TranslateError::unsupported(
                    "a tool call can only appear in an assistant turn",
                    Some(&param),
                ))
            }
        }
    }
    if rest.is_empty() {
        return Ok(());
    }
    let content = match rest.as_slice() {
        [OutPart::Text { text }] => OutContent::Text(text),
        _ => OutContent::Parts(rest),
    };
    messages.push(OutMessage::User { content });
    Ok(())
}

fn encode_assistant(parts: &[Part], i: usize) -> Result<Option<OutMessage<'_>>, TranslateError> {
    let mut text: Option<String> = None;
    let mut refusal: Option<String> = None;
    let mut tool_calls = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        match part {
            Part::Text(block) => text.get_or_insert_with(String::new).push_str(&block.text),
            Part::Refusal(r) => refusal.get_or_insert_with(String::new).push_str(r),
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
                    arguments: if arguments.trim().is_empty() {
                        "{}"
                    } else {
                        arguments
                    },
                },
            }),
            // OpenAI can't take reasoning back.
            Part::Thinking { .. } | Part::RedactedThinking { .. } => {}
            Part::Image(_) | Part::Document { .. } | Part::ToolResult { .. } => {
                return Err(TranslateError::unsupported(
                    "OpenAI assistant messages take only text, refusals and tool calls",
                    Some(&format!("messages[{i}].content[{j}]")),
                ))
            }
        }
    }
    if text.is_none() && refusal.is_none() && tool_calls.is_empty() {
        return Ok(None);
    }
    Ok(Some(OutMessage::Assistant {
        content: text,
        refusal,
        tool_calls,
    }))
}

fn image_url(source: &ImageSource) -> String {
    match source {
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ImageSource::Url { url } => url.clone(),
    }
}

fn encode_response_format(format: &ResponseFormat) -> Value {
    match format {
        ResponseFormat::Text => json!({"type": "text"}),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        } => {
            // OpenAI requires a name; other dialects don't carry one.
            let name = if name.is_empty() { "response" } else { name };
            let mut json_schema = json!({"name": name, "schema": schema});
            if let Some(strict) = strict {
                json_schema["strict"] = json!(strict);
            }
            json!({"type": "json_schema", "json_schema": json_schema})
        }
    }
}

/// OpenAI takes an effort, not a budget: a budget maps onto the effort whose usual budget it
/// covers (LiteLLM's table: low 1024, medium 2048, high 4096).
fn reasoning_effort(r: &Reasoning) -> Option<&str> {
    if !r.enabled {
        return None;
    }
    if let Some(effort) = r.effort.as_deref() {
        return Some(effort);
    }
    r.budget_tokens.map(|b| match b {
        0..=1024 => "low",
        1025..=2048 => "medium",
        _ => "high",
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::translate::openai::tests::fixture;

    /// The `body` of a `*.request.json` fixture.
    fn fixture_body(file: &[u8]) -> Vec<u8> {
        let v: Value = serde_json::from_slice(file).unwrap();
        serde_json::to_vec(&v["body"]).unwrap()
    }

    fn decode(v: Value) -> Result<ChatRequest, TranslateError> {
        decode_request(v.to_string().as_bytes())
    }

    fn text(t: &str) -> Part {
        Part::Text(TextBlock {
            text: t.to_owned(),
            cache_control: None,
        })
    }

    fn user(parts: Vec<Part>) -> Message {
        Message {
            role: Role::User,
            content: parts,
        }
    }

    fn encode(req: &ChatRequest) -> Value {
        serde_json::from_slice(&encode_request(req, "gpt-upstream").unwrap()).unwrap()
    }

    fn get_capital_tool() -> Tool {
        Tool {
            name: "get_capital".to_owned(),
            description: None,
            parameters: json!({
                "additionalProperties": false,
                "properties": {"country": {"type": "string"}},
                "required": ["country"],
                "type": "object"
            }),
            strict: Some(true),
        }
    }

    #[test]
    fn decodes_tool_loop_fixture_request() {
        let body = fixture_body(fixture!("openai-chat-stream-text-usage.request.json"));
        let req = decode_request(&body).unwrap();
        assert_eq!(req.model, "gpt-4o-mini");
        assert!(req.stream && req.stream_usage);
        assert_eq!(req.tool_choice, Some(ToolChoice::Auto));
        assert_eq!(req.tools, vec![get_capital_tool()]);
        assert_eq!(
            req.messages,
            vec![
                user(vec![text(
                    "What is the capital of the UK? Use the tool, then answer."
                )]),
                // Pitfall §9.6: content null with tool calls is a tool-call-only turn.
                Message {
                    role: Role::Assistant,
                    content: vec![Part::ToolCall {
                        id: "call_ZR5UUuTt3pf61kjwAJIYdVMj".to_owned(),
                        name: "get_capital".to_owned(),
                        arguments: r#"{"country":"UK"}"#.to_owned(),
                        signature: None,
                    }],
                },
                user(vec![Part::ToolResult {
                    id: "call_ZR5UUuTt3pf61kjwAJIYdVMj".to_owned(),
                    name: None,
                    content: vec![text("London")],
                    is_error: false,
                }]),
            ]
        );
        assert!(req.system.is_empty());
        assert_eq!(req.max_tokens, None);
    }

    #[test]
    fn decodes_first_turn_fixture_request() {
        let body = fixture_body(fixture!("openai-chat-stream-tool-call-usage.request.json"));
        let req = decode_request(&body).unwrap();
        assert_eq!(req.messages.len(), 1);
        assert_eq!(req.tools.len(), 1);
        assert_eq!(req.tools[0].parameters["required"], json!(["country"]));
    }

    #[test]
    fn system_and_developer_messages_are_hoisted_in_order() {
        let req = decode(json!({"model": "m", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {"role": "assistant", "content": "salut"}
        ]}))
        .unwrap();
        let system: Vec<&str> = req.system.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(system, ["Be brief.", "Use French."]);
        assert_eq!(req.messages.len(), 2);
        assert_eq!(req.messages[1].role, Role::Assistant);
    }

    /// Pitfall §9.7: all results of a turn in one user message, results first, then the user
    /// text that follows them.
    #[test]
    fn consecutive_tool_messages_become_one_user_turn() {
        let req = decode(json!({"model": "m", "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "b", "type": "function", "function": {"name": "g", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "a", "content": "ra"},
            {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "rb"}]},
            {"role": "user", "content": "and now?"},
            {"role": "user", "content": "separate"}
        ]}))
        .unwrap();
        assert_eq!(req.messages.len(), 4);
        // Empty assistant content is not a text part; empty arguments mean none.
        assert_eq!(
            req.messages[1].content,
            vec![
                Part::ToolCall {
                    id: "a".to_owned(),
                    name: "f".to_owned(),
                    arguments: "{}".to_owned(),
                    signature: None
                },
                Part::ToolCall {
                    id: "b".to_owned(),
                    name: "g".to_owned(),
                    arguments: "{}".to_owned(),
                    signature: None
                },
            ]
        );
        let result = |id: &str, t: &str| Part::ToolResult {
            id: id.to_owned(),
            name: None,
            content: vec![text(t)],
            is_error: false,
        };
        assert_eq!(
            req.messages[2],
            user(vec![result("a", "ra"), result("b", "rb"), text("and now?")])
        );
        assert_eq!(req.messages[3], user(vec![text("separate")]));
    }

    #[test]
    fn decodes_images_and_pdf_files() {
        let req = decode(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": ""},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            {"type": "image_url", "image_url": "https://example.com/bare.jpg"},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}
        ]}]}))
        .unwrap();
        assert_eq!(
            req.messages[0].content,
            vec![
                Part::Text(TextBlock {
                    text: "look".to_owned(),
                    cache_control: Some(json!({"type": "ephemeral"})),
                }),
                Part::Image(ImageSource::Base64 {
                    media_type: "image/png".to_owned(),
                    data: "iVBORw0KGgo=".to_owned()
                }),
                Part::Image(ImageSource::Url {
                    url: "https://example.com/cat.jpg".to_owned()
                }),
                Part::Image(ImageSource::Url {
                    url: "https://example.com/bare.jpg".to_owned()
                }),
                Part::Document {
                    source: ImageSource::Base64 {
                        media_type: "application/pdf".to_owned(),
                        data: "JVBERi0=".to_owned()
                    },
                    title: Some("a.pdf".to_owned()),
                },
            ]
        );
    }

    #[test]
    fn percent_encoded_data_urls_are_base64_encoded() {
        assert_eq!(
            parse_data_url("data:image/svg+xml,%3Csvg%2F%3E"),
            Some(("image/svg+xml".to_owned(), "PHN2Zy8+".to_owned()))
        );
        assert_eq!(
            parse_data_url("data:image/png;name=x.png;base64,AAAA"),
            Some(("image/png".to_owned(), "AAAA".to_owned()))
        );
        assert_eq!(parse_data_url("https://x"), None);
    }

    #[test]
    fn audio_file_ids_unknown_parts_and_roles_are_rejected_with_their_param() {
        let cases = [
            (
                json!({"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}),
                "audio",
            ),
            (
                json!({"type": "file", "file": {"file_id": "file-123"}}),
                "file_id",
            ),
            (
                json!({"type": "video_url", "video_url": {"url": "x"}}),
                "video_url",
            ),
        ];
        for (part, needle) in cases {
            let err = decode(json!({"model": "m", "messages": [
                {"role": "user", "content": "hi"},
                {"role": "user", "content": [{"type": "text", "text": "x"}, part]}
            ]}))
            .unwrap_err();
            let TranslateError::Unsupported { message, param } = err else {
                panic!("not Unsupported");
            };
            assert!(message.contains(needle), "{message}");
            assert_eq!(param.as_deref(), Some("messages[1].content[1]"));
        }
        let err = decode(
            json!({"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]}),
        )
        .unwrap_err();
        assert!(
            matches!(err, TranslateError::Unsupported { param: Some(p), .. } if p == "messages[0].role")
        );
        assert!(matches!(
            decode_request(b"{\"model\":"),
            Err(TranslateError::Json(_))
        ));
        assert!(matches!(
            decode_request(br#"{"model":"m"}"#),
            Err(TranslateError::Json(_))
        ));
        let err = decode(json!({"model": "m", "messages": [],
            "functions": [{"name": "f", "parameters": {}}]}))
        .unwrap_err();
        assert!(
            matches!(err, TranslateError::Unsupported { param: Some(p), .. } if p == "functions")
        );
    }

    #[test]
    fn decodes_sampling_and_limits() {
        let req = decode(json!({"model": "m", "messages": [],
            "max_tokens": 100, "max_completion_tokens": 200, "temperature": 1.5, "top_p": 0.9,
            "top_k": 40, "seed": -3, "presence_penalty": 0.5, "frequency_penalty": -0.5, "n": 2,
            "user": "u-old", "safety_identifier": "u-new", "parallel_tool_calls": false,
            "reasoning_effort": "high", "unknown_future_field": {"x": 1}, "stream": false,
            "stream_options": null, "stop": "END"}))
        .unwrap();
        assert_eq!(req.max_tokens, Some(200), "max_completion_tokens wins");
        assert_eq!(
            (req.temperature, req.top_p, req.top_k),
            (Some(1.5), Some(0.9), Some(40))
        );
        assert_eq!(req.seed, Some(-3));
        assert_eq!(
            (req.presence_penalty, req.frequency_penalty),
            (Some(0.5), Some(-0.5))
        );
        assert_eq!(req.n, Some(2));
        assert_eq!(req.user.as_deref(), Some("u-new"));
        assert_eq!(req.parallel_tool_calls, Some(false));
        // Pitfall §9.8: the parallel flag alone must not turn into a forced tool choice.
        assert_eq!(req.tool_choice, None);
        assert_eq!(
            req.reasoning,
            Some(Reasoning {
                effort: Some("high".to_owned()),
                budget_tokens: None,
                enabled: true
            })
        );
        assert_eq!(req.stop, vec!["END"]);
        assert!(!req.stream && !req.stream_usage);

        let req = decode(
            json!({"model": "m", "messages": [], "max_tokens": 100, "user": "u",
            "reasoning_effort": "none"}),
        )
        .unwrap();
        assert_eq!(req.max_tokens, Some(100));
        assert_eq!(req.user.as_deref(), Some("u"));
        assert!(!req.reasoning.unwrap().enabled);
    }

    /// Pitfall §9.9: empty and whitespace-only stop sequences are dropped.
    #[test]
    fn whitespace_only_stop_sequences_are_dropped() {
        let req = decode(json!({"model": "m", "messages": [], "stop": ["\n\n", "", " ", "###"]}))
            .unwrap();
        assert_eq!(req.stop, vec!["###"]);
        let req = decode(json!({"model": "m", "messages": [], "stop": " "})).unwrap();
        assert!(req.stop.is_empty());
    }

    #[test]
    fn decodes_tool_choice_forms() {
        let tools = json!([
            {"type": "function", "function": {"name": "a"}},
            {"type": "function", "function": {"name": "b", "description": "B", "parameters": {"properties": {}}}}
        ]);
        let choice = |c: Value| {
            decode(json!({"model": "m", "messages": [], "tools": tools, "tool_choice": c})).unwrap()
        };
        assert_eq!(choice(json!("none")).tool_choice, Some(ToolChoice::None));
        assert_eq!(
            choice(json!("required")).tool_choice,
            Some(ToolChoice::Required)
        );
        assert_eq!(
            choice(json!({"type": "function", "function": {"name": "b"}})).tool_choice,
            Some(ToolChoice::Tool("b".to_owned()))
        );
        let req = choice(
            json!({"type": "allowed_tools", "allowed_tools": {"mode": "required",
            "tools": [{"type": "function", "function": {"name": "b"}}]}}),
        );
        assert_eq!(req.tool_choice, Some(ToolChoice::Required));
        assert_eq!(req.tools.len(), 1);
        assert_eq!(req.tools[0].name, "b");
        // Schemas are always object schemas after decoding.
        assert_eq!(
            req.tools[0].parameters,
            json!({"properties": {}, "type": "object"})
        );
        assert_eq!(req.tools[0].description.as_deref(), Some("B"));
        let req = choice(json!("auto"));
        assert_eq!(
            req.tools[0].parameters,
            json!({"type": "object", "properties": {}})
        );

        let err =
            decode(json!({"model": "m", "messages": [], "tool_choice": "sometimes"})).unwrap_err();
        assert!(matches!(err, TranslateError::Unsupported { .. }));
        let err = decode(json!({"model": "m", "messages": [],
            "tools": [{"type": "web_search_preview"}]}))
        .unwrap_err();
        assert!(
            matches!(err, TranslateError::Unsupported { param: Some(p), .. } if p == "tools[0]")
        );
    }

    #[test]
    fn decodes_response_formats() {
        let format = |f: Value| {
            decode(json!({"model": "m", "messages": [], "response_format": f}))
                .map(|r| r.response_format)
        };
        assert_eq!(
            format(json!({"type": "text"})).unwrap(),
            Some(ResponseFormat::Text)
        );
        assert_eq!(
            format(json!({"type": "json_object"})).unwrap(),
            Some(ResponseFormat::JsonObject)
        );
        assert_eq!(
            format(json!({"type": "json_schema", "json_schema": {"name": "out",
                "schema": {"type": "object"}, "strict": true}}))
            .unwrap(),
            Some(ResponseFormat::JsonSchema {
                name: "out".to_owned(),
                schema: json!({"type": "object"}),
                strict: Some(true)
            })
        );
        assert!(format(json!({"type": "grammar"})).is_err());
    }

    /// Pitfall §9.10: signed reasoning sent back by LiteLLM-style clients keeps its signature
    /// and leads the assistant turn.
    #[test]
    fn assistant_reasoning_and_refusal_are_kept() {
        let req = decode(json!({"model": "m", "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "reasoning_content": "dup",
             "thinking_blocks": [
                {"type": "thinking", "thinking": "t", "signature": "sig"},
                {"type": "redacted_thinking", "data": "enc"}],
             "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "r"},
            {"role": "assistant", "content": null, "refusal": "no", "reasoning_content": "plain"}
        ]}))
        .unwrap();
        assert_eq!(
            req.messages[1].content,
            vec![
                Part::Thinking {
                    text: "t".to_owned(),
                    signature: Some("sig".to_owned())
                },
                Part::RedactedThinking {
                    data: "enc".to_owned()
                },
                text("a"),
                Part::ToolCall {
                    id: "c".to_owned(),
                    name: "f".to_owned(),
                    arguments: "{}".to_owned(),
                    signature: None
                },
            ]
        );
        assert_eq!(
            req.messages[3].content,
            vec![
                Part::Thinking {
                    text: "plain".to_owned(),
                    signature: None
                },
                Part::Refusal("no".to_owned()),
            ]
        );
    }

    // ---- encode --------------------------------------------------------------------------

    #[test]
    fn encodes_the_tool_loop_for_openai() {
        let body = fixture_body(fixture!("openai-chat-stream-text-usage.request.json"));
        let mut req = decode_request(&body).unwrap();
        req.stream_usage = false;
        req.system.push(TextBlock {
            text: "S1".to_owned(),
            cache_control: None,
        });
        req.system.push(TextBlock {
            text: "S2".to_owned(),
            cache_control: None,
        });
        let v = encode(&req);
        assert_eq!(v["model"], "gpt-upstream");
        assert_eq!(v["stream"], true);
        // Always asked for when streaming: the gateway meters usage.
        assert_eq!(v["stream_options"], json!({"include_usage": true}));
        assert_eq!(
            v["messages"],
            json!([
                {"role": "system", "content": "S1\n\nS2"},
                {"role": "user", "content": "What is the capital of the UK? Use the tool, then answer."},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_ZR5UUuTt3pf61kjwAJIYdVMj",
                    "type": "function", "function": {"name": "get_capital", "arguments": "{\"country\":\"UK\"}"}}]},
                {"role": "tool", "tool_call_id": "call_ZR5UUuTt3pf61kjwAJIYdVMj", "content": "London"}
            ])
        );
        assert_eq!(
            v["tools"],
            json!([{"type": "function", "function": {"name": "get_capital",
                "parameters": {"additionalProperties": false, "properties": {"country": {"type": "string"}},
                    "required": ["country"], "type": "object"}, "strict": true}}])
        );
        assert_eq!(v["tool_choice"], "auto");
    }

    #[test]
    fn encodes_results_errors_images_and_drops_thinking() {
        let req = ChatRequest {
            model: "client".to_owned(),
            messages: vec![
                user(vec![
                    text("see"),
                    Part::Image(ImageSource::Base64 {
                        media_type: "image/png".to_owned(),
                        data: "AAAA".to_owned(),
                    }),
                    Part::Document {
                        source: ImageSource::Base64 {
                            media_type: "application/pdf".to_owned(),
                            data: "JVBE".to_owned(),
                        },
                        title: None,
                    },
                ]),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        Part::Thinking {
                            text: "hidden".to_owned(),
                            signature: Some("s".to_owned()),
                        },
                        Part::RedactedThinking {
                            data: "x".to_owned(),
                        },
                        text("calling"),
                        Part::ToolCall {
                            id: "t1".to_owned(),
                            name: "f".to_owned(),
                            arguments: String::new(),
                            signature: None,
                        },
                        Part::ToolCall {
                            id: "t2".to_owned(),
                            name: "g".to_owned(),
                            arguments: "{\"a\":1}".to_owned(),
                            signature: None,
                        },
                    ],
                },
                user(vec![
                    Part::ToolResult {
                        id: "t1".to_owned(),
                        name: None,
                        content: vec![text("line1"), text("line2")],
                        is_error: false,
                    },
                    Part::ToolResult {
                        id: "t2".to_owned(),
                        name: Some("g".to_owned()),
                        content: vec![
                            text("boom"),
                            Part::Image(ImageSource::Url {
                                url: "https://x/y.png".to_owned(),
                            }),
                        ],
                        is_error: true,
                    },
                    text("thanks"),
                ]),
            ],
            ..ChatRequest::default()
        };
        let v = encode(&req);
        assert_eq!(
            v["messages"],
            json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "document.pdf"}}
                ]},
                {"role": "assistant", "content": "calling", "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                    {"id": "t2", "type": "function", "function": {"name": "g", "arguments": "{\"a\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "t1", "content": "line1\nline2"},
                {"role": "tool", "tool_call_id": "t2", "content": "Error: boom"},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                    {"type": "text", "text": "thanks"}
                ]}
            ])
        );
        // Not streaming: no stream fields at all.
        assert!(v.get("stream").is_none() && v.get("stream_options").is_none());
    }

    #[test]
    fn encodes_parameters() {
        let req = ChatRequest {
            model: "client".to_owned(),
            messages: vec![user(vec![text("hi")])],
            tools: vec![get_capital_tool()],
            tool_choice: Some(ToolChoice::Tool("get_capital".to_owned())),
            parallel_tool_calls: Some(false),
            max_tokens: Some(256),
            temperature: Some(3.5),
            top_p: Some(0.5),
            top_k: Some(10),
            stop: ["a", "b", "c", "d", "e"].map(String::from).to_vec(),
            stream: true,
            stream_usage: false,
            response_format: Some(ResponseFormat::JsonSchema {
                name: String::new(),
                schema: json!({"type": "object"}),
                strict: Some(true),
            }),
            reasoning: Some(Reasoning {
                effort: None,
                budget_tokens: Some(2000),
                enabled: true,
            }),
            user: Some("u1".to_owned()),
            seed: Some(7),
            presence_penalty: Some(0.1),
            frequency_penalty: Some(0.2),
            n: Some(1),
            system: Vec::new(),
        };
        let v = encode(&req);
        assert_eq!(v["max_completion_tokens"], 256);
        assert!(v.get("max_tokens").is_none());
        assert_eq!(v["temperature"], 2.0, "clamped to OpenAI's range");
        assert_eq!(v["top_p"], 0.5);
        assert!(v.get("top_k").is_none());
        assert_eq!(v["stop"], json!(["a", "b", "c", "d"]));
        assert_eq!(
            v["tool_choice"],
            json!({"type": "function", "function": {"name": "get_capital"}})
        );
        assert_eq!(v["parallel_tool_calls"], false);
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(
            v["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "response",
                "schema": {"type": "object"}, "strict": true}})
        );
        assert_eq!(v["reasoning_effort"], "medium");
        assert_eq!(v["user"], "u1");
        assert_eq!(
            (
                &v["seed"],
                &v["presence_penalty"],
                &v["frequency_penalty"],
                &v["n"]
            ),
            (&json!(7), &json!(0.1), &json!(0.2), &json!(1))
        );
    }

    /// Pitfall §9.8 (the reverse direction): OpenAI rejects `parallel_tool_calls` and
    /// `tool_choice` without tools, so they are left out.
    #[test]
    fn tool_settings_without_tools_are_left_out() {
        let req = ChatRequest {
            model: "m".to_owned(),
            messages: vec![user(vec![text("hi")])],
            tool_choice: Some(ToolChoice::None),
            parallel_tool_calls: Some(false),
            temperature: Some(-1.0),
            reasoning: Some(Reasoning {
                effort: Some("high".to_owned()),
                budget_tokens: None,
                enabled: false,
            }),
            ..ChatRequest::default()
        };
        let v = encode(&req);
        for absent in [
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "reasoning_effort",
            "stop",
        ] {
            assert!(v.get(absent).is_none(), "{absent}");
        }
        assert_eq!(v["temperature"], 0.0);
    }

    #[test]
    fn untranslatable_parts_are_errors() {
        let doc_url = ChatRequest {
            messages: vec![user(vec![Part::Document {
                source: ImageSource::Url {
                    url: "https://x/a.pdf".to_owned(),
                },
                title: None,
            }])],
            ..ChatRequest::default()
        };
        let err = encode_request(&doc_url, "m").unwrap_err();
        assert!(
            matches!(err, TranslateError::Unsupported { param: Some(p), .. } if p == "messages[0].content[0]")
        );
        let call_in_user = ChatRequest {
            messages: vec![user(vec![Part::ToolCall {
                id: "x".to_owned(),
                name: "f".to_owned(),
                arguments: "{}".to_owned(),
                signature: None,
            }])],
            ..ChatRequest::default()
        };
        assert!(encode_request(&call_in_user, "m").is_err());
    }

    #[test]
    fn decode_encode_decode_is_stable() {
        let body = fixture_body(fixture!("openai-chat-stream-text-usage.request.json"));
        let first = decode_request(&body).unwrap();
        let again = decode_request(&encode_request(&first, "gpt-4o-mini").unwrap()).unwrap();
        assert_eq!(again, first);
    }
}
