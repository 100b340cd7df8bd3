//! Anthropic Messages requests (protocols.md §5.1, §8.1, §9) both ways.
//!
//! Decoding reads what a client such as Claude Code sends; content blocks arrive as JSON values
//! and are read into the typed struct of their `type`. A block type the IR has no form for
//! (server-tool blocks, `search_result`, `container_upload`, file sources, …) is an
//! `Unsupported` error naming the type and where it is: dropping it would silently change what
//! the model sees. Informational fields (`citations`, document `context`, `cache_control` on
//! tools and non-text blocks, top-level `cache_control`, `service_tier`) are ignored.

use std::borrow::Cow;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::response::arguments_object;
use crate::translate::ir::{
    ChatRequest, ImageSource, Message, Part, Reasoning, ResponseFormat, Role, TextBlock, Tool,
    ToolChoice, TranslateError,
};

// ---------------------------------------------------------------------------------------------
// Decode: Anthropic request → IR

/// A string or a list of blocks (system, message content, tool-result content).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<Value>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireRequest {
    model: String,
    system: Option<Content>,
    messages: Vec<WireMessage>,
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<u32>,
    stop_sequences: Option<Vec<String>>,
    stream: Option<bool>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<WireToolChoice>,
    thinking: Option<WireThinking>,
    metadata: Option<WireMetadata>,
    output_config: Option<WireOutputConfig>,
    /// The structured-outputs beta's top-level form of `output_config.format`.
    output_format: Option<WireFormat>,
    mcp_servers: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    role: String,
    content: Content,
}

#[derive(Debug, Deserialize)]
struct WireToolChoice {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct WireThinking {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    budget_tokens: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireMetadata {
    user_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireOutputConfig {
    effort: Option<String>,
    format: Option<WireFormat>,
}

#[derive(Debug, Deserialize)]
struct WireFormat {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    schema: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WireTool {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    input_schema: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct WireText {
    text: String,
    #[serde(default)]
    cache_control: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WireSource {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireImage {
    source: WireSource,
}

#[derive(Debug, Deserialize)]
struct WireDocument {
    source: WireSource,
    #[serde(default)]
    title: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireToolUse {
    id: String,
    name: String,
    #[serde(default)]
    input: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WireToolResult {
    tool_use_id: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default)]
    cache_control: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WireThinkingBlock {
    #[serde(default)]
    thinking: String,
    #[serde(default)]
    signature: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireRedacted {
    data: String,
}

fn block_type(v: &Value) -> &str {
    v.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Reads one block into its typed struct; shape errors name where the block is.
fn typed<T: serde::de::DeserializeOwned>(v: Value, at: &str) -> Result<T, TranslateError> {
    serde_json::from_value(v).map_err(|e| TranslateError::Json(format!("{at}: {e}")))
}

fn unsupported_block(kind: &str, at: &str) -> TranslateError {
    let kind = if kind.is_empty() { "(none)" } else { kind };
    TranslateError::unsupported(
        format!("content block type `{kind}` at {at} cannot be translated to another provider"),
        Some(at),
    )
}

fn source_from_wire(s: WireSource, at: &str) -> Result<ImageSource, TranslateError> {
    match s.kind.as_str() {
        "base64" => Ok(ImageSource::Base64 {
            media_type: s.media_type.unwrap_or_default(),
            data: s.data.unwrap_or_default(),
        }),
        "url" => Ok(ImageSource::Url {
            url: s.url.unwrap_or_default(),
        }),
        // A plain-text document keeps its meaning as base64 `text/plain`; `encode_request`
        // turns it back into a text source.
        "text" => Ok(ImageSource::Base64 {
            media_type: s.media_type.unwrap_or_else(|| "text/plain".to_owned()),
            data: base64::engine::general_purpose::STANDARD.encode(s.data.unwrap_or_default()),
        }),
        other => Err(TranslateError::unsupported(
            format!("source type `{other}` at {at} cannot be translated (file ids and content sources are Anthropic-only)"),
            Some(at),
        )),
    }
}

/// Parts allowed inside a `tool_result` (text, image, document).
fn tool_result_parts(
    content: Option<Content>,
    cache_control: Option<Value>,
    at: &str,
) -> Result<Vec<Part>, TranslateError> {
    let mut parts = Vec::new();
    match content {
        None => {}
        Some(Content::Text(text)) => parts.push(Part::Text(TextBlock {
            text,
            cache_control: None,
        })),
        Some(Content::Blocks(blocks)) => {
            for (j, b) in blocks.into_iter().enumerate() {
                let at = format!("{at}.content[{j}]");
                match block_type(&b) {
                    "text" => {
                        let t: WireText = typed(b, &at)?;
                        parts.push(Part::Text(TextBlock {
                            text: t.text,
                            cache_control: t.cache_control,
                        }));
                    }
                    "image" => {
                        let i: WireImage = typed(b, &at)?;
                        parts.push(Part::Image(source_from_wire(i.source, &at)?));
                    }
                    "document" => {
                        let d: WireDocument = typed(b, &at)?;
                        parts.push(Part::Document {
                            source: source_from_wire(d.source, &at)?,
                            title: d.title,
                        });
                    }
                    other => return Err(unsupported_block(other, &at)),
                }
            }
        }
    }
    // The IR keeps cache markers on text only: a marker on the result moves to its last text,
    // which ends the same cached prefix.
    if let Some(cc) = cache_control {
        if let Some(Part::Text(t)) = parts.iter_mut().rev().find(|p| matches!(p, Part::Text(_))) {
            t.cache_control.get_or_insert(cc);
        }
    }
    Ok(parts)
}

fn message_parts(content: Content, at: &str) -> Result<Vec<Part>, TranslateError> {
    let blocks = match content {
        Content::Text(text) if text.is_empty() => return Ok(Vec::new()),
        Content::Text(text) => {
            return Ok(vec![Part::Text(TextBlock {
                text,
                cache_control: None,
            })])
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.into_iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        let part = match block_type(&b) {
            "text" => {
                let t: WireText = typed(b, &at)?;
                if t.text.is_empty() {
                    continue;
                }
                Part::Text(TextBlock {
                    text: t.text,
                    cache_control: t.cache_control,
                })
            }
            "image" => Part::Image(source_from_wire(typed::<WireImage>(b, &at)?.source, &at)?),
            "document" => {
                let d: WireDocument = typed(b, &at)?;
                Part::Document {
                    source: source_from_wire(d.source, &at)?,
                    title: d.title,
                }
            }
            "tool_use" => {
                let u: WireToolUse = typed(b, &at)?;
                Part::ToolCall {
                    id: u.id,
                    name: u.name,
                    arguments: match u.input {
                        Some(input) => serde_json::to_string(&input)?,
                        None => "{}".to_owned(),
                    },
                    signature: None,
                }
            }
            "tool_result" => {
                let r: WireToolResult = typed(b, &at)?;
                Part::ToolResult {
                    id: r.tool_use_id,
                    name: None,
                    content: tool_result_parts(r.content, r.cache_control, &at)?,
                    is_error: r.is_error.unwrap_or(false),
                }
            }
            "thinking" => {
                let t: WireThinkingBlock = typed(b, &at)?;
                Part::Thinking {
                    text: t.thinking,
                    // An empty signature is what `encode_response` gives thinking from other
                    // providers: it can't be replayed, so it counts as none.
                    signature: t.signature.filter(|s| !s.is_empty()),
                }
            }
            "redacted_thinking" => Part::RedactedThinking {
                data: typed::<WireRedacted>(b, &at)?.data,
            },
            other => return Err(unsupported_block(other, &at)),
        };
        parts.push(part);
    }
    Ok(parts)
}

fn system_blocks(
    content: Content,
    out: &mut Vec<TextBlock>,
    at: &str,
) -> Result<(), TranslateError> {
    match content {
        Content::Text(text) => {
            if !text.is_empty() {
                out.push(TextBlock {
                    text,
                    cache_control: None,
                });
            }
        }
        Content::Blocks(blocks) => {
            for (j, b) in blocks.into_iter().enumerate() {
                let at = format!("{at}[{j}]");
                match block_type(&b) {
                    "text" => {
                        let t: WireText = typed(b, &at)?;
                        out.push(TextBlock {
                            text: t.text,
                            cache_control: t.cache_control,
                        });
                    }
                    other => return Err(unsupported_block(other, &at)),
                }
            }
        }
    }
    Ok(())
}

/// Anthropic's `output_config.effort` → the IR's effort words (`max` is Anthropic's top level).
fn effort_from_wire(effort: Option<String>) -> Option<String> {
    effort.map(|e| if e == "max" { "high".to_owned() } else { e })
}

fn response_format_from_wire(f: WireFormat) -> Result<ResponseFormat, TranslateError> {
    match f.kind.as_str() {
        // Anthropic's structured outputs are always enforced and carry no schema name.
        "json_schema" => Ok(ResponseFormat::JsonSchema {
            name: "response".to_owned(),
            schema: f.schema.unwrap_or_else(|| Value::Object(Map::new())),
            strict: Some(true),
        }),
        other => Err(TranslateError::unsupported(
            format!("output format type `{other}` is not supported"),
            Some("output_config.format.type"),
        )),
    }
}

/// Anthropic Messages request (also a `count_tokens` body, which has no `max_tokens`) → IR.
///
/// `temperature` is doubled onto the IR's 0–2 scale. `thinking` `enabled`/`adaptive` give
/// `Reasoning { enabled: true }` (with the budget for `enabled`), `disabled` gives
/// `enabled: false`; `output_config.effort` becomes the reasoning effort (`max` → `high`).
/// `disable_parallel_tool_use: true` gives `parallel_tool_calls: Some(false)`.
pub fn decode_request(body: &[u8]) -> Result<ChatRequest, TranslateError> {
    let w: WireRequest = crate::translate::json::from_slice(body)?;
    if w.mcp_servers.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(TranslateError::unsupported(
            "mcp_servers (Anthropic-run MCP connectors) cannot be translated to another provider",
            Some("mcp_servers"),
        ));
    }

    let mut system = Vec::new();
    if let Some(s) = w.system {
        system_blocks(s, &mut system, "system")?;
    }

    let mut messages = Vec::with_capacity(w.messages.len());
    for (i, m) in w.messages.into_iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = match m.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            // Mid-conversation system turns are hoisted into the system prompt.
            "system" => {
                system_blocks(m.content, &mut system, &format!("{at}.content"))?;
                continue;
            }
            other => {
                return Err(TranslateError::unsupported(
                    format!("message role `{other}` is not supported"),
                    Some(&format!("{at}.role")),
                ))
            }
        };
        messages.push(Message {
            role,
            content: message_parts(m.content, &at)?,
        });
    }

    let mut tools = Vec::new();
    for (i, t) in w.tools.unwrap_or_default().into_iter().enumerate() {
        let at = format!("tools[{i}]");
        match t.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            // Versioned server tools (web_search_20250305, bash_…, code_execution_…) run on
            // Anthropic's side; other providers can't run them.
            Some(server) => {
                let name = t.get("name").and_then(Value::as_str).unwrap_or(server);
                return Err(TranslateError::unsupported(
                    format!("server tool `{server}` ({name}) runs only on Anthropic and cannot be translated"),
                    Some(&at),
                ));
            }
        }
        let t: WireTool = typed(t, &at)?;
        tools.push(Tool {
            name: t.name,
            description: t.description,
            parameters: match t.input_schema {
                Some(schema @ Value::Object(_)) => schema,
                _ => empty_object_schema(),
            },
            strict: t.strict,
        });
    }

    let mut parallel_tool_calls = None;
    let tool_choice = match w.tool_choice {
        None => None,
        Some(tc) => {
            if tc.disable_parallel_tool_use == Some(true) {
                parallel_tool_calls = Some(false);
            }
            Some(match tc.kind.as_str() {
                "auto" => ToolChoice::Auto,
                "any" => ToolChoice::Required,
                "none" => ToolChoice::None,
                "tool" => ToolChoice::Tool(tc.name.ok_or_else(|| {
                    TranslateError::unsupported(
                        "tool_choice type `tool` needs a name",
                        Some("tool_choice.name"),
                    )
                })?),
                other => {
                    return Err(TranslateError::unsupported(
                        format!("tool_choice type `{other}` is not supported"),
                        Some("tool_choice.type"),
                    ))
                }
            })
        }
    };

    let output_config = w.output_config.unwrap_or_default();
    let effort = effort_from_wire(output_config.effort);
    let reasoning = match w.thinking {
        Some(t) => Some(match t.kind.as_str() {
            "enabled" => Reasoning {
                effort,
                budget_tokens: t.budget_tokens,
                enabled: true,
            },
            "adaptive" => Reasoning {
                effort,
                budget_tokens: None,
                enabled: true,
            },
            "disabled" => Reasoning {
                effort: None,
                budget_tokens: None,
                enabled: false,
            },
            other => {
                return Err(TranslateError::unsupported(
                    format!("thinking type `{other}` is not supported"),
                    Some("thinking.type"),
                ))
            }
        }),
        // Effort without thinking still says how hard the model should work.
        None => effort.map(|e| Reasoning {
            effort: Some(e),
            budget_tokens: None,
            enabled: true,
        }),
    };

    let response_format = match output_config.format.or(w.output_format) {
        Some(f) => Some(response_format_from_wire(f)?),
        None => None,
    };

    Ok(ChatRequest {
        model: w.model,
        system,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls,
        max_tokens: w.max_tokens,
        // Anthropic's 0–1 onto the IR's 0–2.
        temperature: w.temperature.map(|t| t * 2.0),
        top_p: w.top_p,
        top_k: w.top_k,
        stop: w.stop_sequences.unwrap_or_default(),
        stream: w.stream.unwrap_or(false),
        // Anthropic always reports usage in its streams.
        stream_usage: true,
        response_format,
        reasoning,
        user: w.metadata.and_then(|m| m.user_id),
        seed: None,
        presence_penalty: None,
        frequency_penalty: None,
        n: None,
    })
}

fn empty_object_schema() -> Value {
    let mut m = Map::new();
    m.insert("type".to_owned(), Value::String("object".to_owned()));
    m.insert("properties".to_owned(), Value::Object(Map::new()));
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// Encode: IR → Anthropic request

/// `max_tokens` when the client gave none (Anthropic requires it).
pub(super) const DEFAULT_MAX_TOKENS: u32 = 4096;
/// Anthropic's smallest thinking budget.
const MIN_THINKING_BUDGET: u32 = 1024;
/// Thinking budgets for an effort without a budget: low 1024, medium 4096, high 16384
/// (`minimal` as low, `xhigh`/`max` as high, `none` disables thinking).
fn budget_for_effort(effort: &str) -> Result<Option<u32>, TranslateError> {
    Ok(match effort {
        "none" => None,
        "minimal" | "low" => Some(1024),
        "medium" => Some(4096),
        "high" | "xhigh" | "max" => Some(16384),
        other => {
            return Err(TranslateError::unsupported(
                format!("reasoning effort `{other}` is not supported"),
                Some("reasoning_effort"),
            ))
        }
    })
}
/// The instruction standing in for OpenAI's `response_format: json_object`.
const JSON_OBJECT_INSTRUCTION: &str = "Respond with a JSON object only.";
const IMAGE_MEDIA_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

#[derive(Debug, Serialize)]
struct OutRequest<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<OutText<'a>>,
    messages: Vec<OutMessage<'a>>,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<OutToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<OutThinking>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_config: Option<OutOutputConfig<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<OutMetadata<'a>>,
}

#[derive(Debug, Serialize)]
struct OutText<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<&'a Value>,
}

#[derive(Debug, Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: Vec<OutBlock<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutBlock<'a> {
    Text {
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    Image {
        source: OutSource<'a>,
    },
    Document {
        source: OutSource<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<&'a str>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        content: Vec<OutBlock<'a>>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
}

impl OutBlock<'_> {
    /// Sort key inside one message: tool results open a user turn (pitfall 7) and signed
    /// thinking opens an assistant turn (pitfall 10); everything else keeps its order.
    fn rank(&self) -> u8 {
        match self {
            OutBlock::ToolResult { .. }
            | OutBlock::Thinking { .. }
            | OutBlock::RedactedThinking { .. } => 0,
            _ => 1,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutSource<'a> {
    Base64 {
        media_type: &'a str,
        data: &'a str,
    },
    Url {
        url: &'a str,
    },
    Text {
        media_type: &'static str,
        data: String,
    },
}

#[derive(Debug, Serialize)]
struct OutTool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: Cow<'a, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

#[derive(Debug, Serialize)]
struct OutToolChoice<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutThinking {
    Enabled { budget_tokens: u32 },
    Disabled,
}

#[derive(Debug, Serialize)]
struct OutOutputConfig<'a> {
    format: OutFormat<'a>,
}

#[derive(Debug, Serialize)]
struct OutFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    schema: &'a Value,
}

#[derive(Debug, Serialize)]
struct OutMetadata<'a> {
    user_id: &'a str,
}

/// `data:<media type>;base64,<data>` → its two halves.
fn split_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
}

fn is_http_url(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

fn image_source<'a>(src: &'a ImageSource, at: &str) -> Result<OutSource<'a>, TranslateError> {
    let (media_type, data) = match src {
        ImageSource::Url { url } if is_http_url(url) => return Ok(OutSource::Url { url }),
        ImageSource::Url { url } => split_data_url(url).ok_or_else(|| {
            TranslateError::unsupported(
                format!("image URL scheme of {at} is not supported by Anthropic (http(s) or base64 only)"),
                Some(at),
            )
        })?,
        ImageSource::Base64 { media_type, data } => (media_type.as_str(), data.as_str()),
    };
    if !IMAGE_MEDIA_TYPES.contains(&media_type) {
        return Err(TranslateError::unsupported(
            format!("image type `{media_type}` at {at} is not supported by Anthropic (jpeg, png, gif, webp)"),
            Some(at),
        ));
    }
    Ok(OutSource::Base64 { media_type, data })
}

fn document_source<'a>(src: &'a ImageSource, at: &str) -> Result<OutSource<'a>, TranslateError> {
    let (media_type, data) = match src {
        ImageSource::Url { url } if is_http_url(url) => return Ok(OutSource::Url { url }),
        ImageSource::Url { url } => split_data_url(url).ok_or_else(|| {
            TranslateError::unsupported(
                format!("document URL scheme of {at} is not supported by Anthropic"),
                Some(at),
            )
        })?,
        ImageSource::Base64 { media_type, data } => (media_type.as_str(), data.as_str()),
    };
    match media_type {
        "application/pdf" => Ok(OutSource::Base64 { media_type, data }),
        // Anthropic takes plain text as a text source, not base64.
        "text/plain" => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|_| {
                    TranslateError::unsupported(
                        format!("document at {at} is not valid base64"),
                        Some(at),
                    )
                })?;
            let text = String::from_utf8(bytes).map_err(|_| {
                TranslateError::unsupported(format!("text document at {at} is not UTF-8"), Some(at))
            })?;
            Ok(OutSource::Text {
                media_type: "text/plain",
                data: text,
            })
        }
        other => Err(TranslateError::unsupported(
            format!(
                "document type `{other}` at {at} is not supported by Anthropic (PDF or plain text)"
            ),
            Some(at),
        )),
    }
}

/// Parts of a tool result → blocks Anthropic accepts there. Reasoning or nested calls have no
/// meaning inside a result and are left out.
fn tool_result_blocks<'a>(
    content: &'a [Part],
    at: &str,
) -> Result<Vec<OutBlock<'a>>, TranslateError> {
    let mut out = Vec::with_capacity(content.len());
    for (k, p) in content.iter().enumerate() {
        let at = format!("{at}.content[{k}]");
        match p {
            Part::Text(t) if !t.text.is_empty() => out.push(OutBlock::Text {
                text: &t.text,
                cache_control: t.cache_control.as_ref(),
            }),
            Part::Refusal(text) if !text.is_empty() => out.push(OutBlock::Text {
                text,
                cache_control: None,
            }),
            Part::Image(src) => out.push(OutBlock::Image {
                source: image_source(src, &at)?,
            }),
            Part::Document { source, title } => out.push(OutBlock::Document {
                source: document_source(source, &at)?,
                title: title.as_deref(),
            }),
            _ => {}
        }
    }
    Ok(out)
}

/// One IR message → Anthropic blocks, without empty text and unsigned thinking.
fn message_blocks<'a>(m: &'a Message, i: usize) -> Result<Vec<OutBlock<'a>>, TranslateError> {
    let mut out = Vec::with_capacity(m.content.len());
    for (j, p) in m.content.iter().enumerate() {
        let at = format!("messages[{i}].content[{j}]");
        match p {
            // Anthropic rejects empty text blocks (pitfall 6).
            Part::Text(t) if t.text.is_empty() => {}
            Part::Text(t) => out.push(OutBlock::Text {
                text: &t.text,
                cache_control: t.cache_control.as_ref(),
            }),
            Part::Refusal(text) if text.is_empty() => {}
            Part::Refusal(text) => out.push(OutBlock::Text {
                text,
                cache_control: None,
            }),
            Part::Image(src) => out.push(OutBlock::Image {
                source: image_source(src, &at)?,
            }),
            Part::Document { source, title } => out.push(OutBlock::Document {
                source: document_source(source, &at)?,
                title: title.as_deref(),
            }),
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => {
                let input = arguments_object(arguments).ok_or_else(|| {
                    TranslateError::unsupported(
                        format!("arguments of tool call `{id}` ({name}) are not a JSON object"),
                        Some(&at),
                    )
                })?;
                out.push(OutBlock::ToolUse { id, name, input });
            }
            Part::ToolResult {
                id,
                content,
                is_error,
                ..
            } => out.push(OutBlock::ToolResult {
                tool_use_id: id,
                content: tool_result_blocks(content, &at)?,
                is_error: *is_error,
            }),
            Part::Thinking {
                text,
                signature: Some(sig),
            } if !sig.is_empty() => out.push(OutBlock::Thinking {
                thinking: text,
                signature: sig,
            }),
            // Thinking without a signature (from another provider) can't be replayed.
            Part::Thinking { .. } => {}
            Part::RedactedThinking { data } => out.push(OutBlock::RedactedThinking { data }),
        }
    }
    Ok(out)
}

/// The conversation as Anthropic requires it: roles alternate (consecutive same-role turns
/// merged, so all results answering one assistant turn share the next user message), no empty
/// message, tool results first in their user message, signed thinking first in its assistant
/// message.
fn encode_messages(messages: &[Message]) -> Result<Vec<OutMessage<'_>>, TranslateError> {
    let mut out: Vec<OutMessage<'_>> = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let blocks = message_blocks(m, i)?;
        if blocks.is_empty() {
            continue;
        }
        let role = match m.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        match out.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => out.push(OutMessage {
                role,
                content: blocks,
            }),
        }
    }
    for m in &mut out {
        // Stable: blocks keep their order within each rank.
        m.content.sort_by_key(OutBlock::rank);
    }
    Ok(out)
}

pub(crate) fn thinking_budget(r: &Reasoning) -> Result<Option<u32>, TranslateError> {
    if !r.enabled {
        return Ok(None);
    }
    Ok(match (r.budget_tokens, r.effort.as_deref()) {
        // A zero budget is how Gemini switches thinking off.
        (Some(0), _) => None,
        (Some(b), _) => Some(b.max(MIN_THINKING_BUDGET)),
        (None, Some(effort)) => budget_for_effort(effort)?,
        // Thinking asked for without a size (Anthropic `adaptive`, Gemini `includeThoughts`):
        // the medium budget, which every thinking-capable Claude model accepts.
        (None, None) => Some(4096),
    })
}

/// IR → Anthropic Messages request for an Anthropic upstream (`model` is the upstream's name).
///
/// `max_tokens` defaults to 4096 and is raised to `budget + 4096` when a thinking budget does
/// not fit under it. Reasoning effort without a budget becomes a budget: low 1024, medium 4096,
/// high 16384. `temperature` is halved onto 0–1 and left out while thinking (Anthropic rejects
/// it), as is `top_k`. `seed` and penalties have no Anthropic form and are dropped; `n > 1` is
/// refused.
pub fn encode_request(req: &ChatRequest, model: &str) -> Result<Vec<u8>, TranslateError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(TranslateError::unsupported(
            "Anthropic returns one choice per request; n > 1 is not supported",
            Some("n"),
        ));
    }

    let mut system: Vec<OutText<'_>> = req
        .system
        .iter()
        .filter(|b| !b.text.is_empty())
        .map(|b| OutText {
            kind: "text",
            text: &b.text,
            cache_control: b.cache_control.as_ref(),
        })
        .collect();
    let mut output_config = None;
    match &req.response_format {
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            output_config = Some(OutOutputConfig {
                format: OutFormat {
                    kind: "json_schema",
                    schema,
                },
            });
        }
        Some(ResponseFormat::JsonObject) => system.push(OutText {
            kind: "text",
            text: JSON_OBJECT_INSTRUCTION,
            cache_control: None,
        }),
        Some(ResponseFormat::Text) | None => {}
    }

    let messages = encode_messages(&req.messages)?;
    if messages.is_empty() {
        return Err(TranslateError::unsupported(
            "the request has no message with content",
            Some("messages"),
        ));
    }

    let tools: Vec<OutTool<'_>> = req
        .tools
        .iter()
        .map(|t| OutTool {
            name: &t.name,
            description: t.description.as_deref(),
            input_schema: match &t.parameters {
                Value::Object(m) if m.contains_key("type") => Cow::Borrowed(&t.parameters),
                // Anthropic requires `type: object`; an object schema without it gets it.
                Value::Object(m) => {
                    let mut m = m.clone();
                    m.insert("type".to_owned(), Value::String("object".to_owned()));
                    Cow::Owned(Value::Object(m))
                }
                _ => Cow::Owned(empty_object_schema()),
            },
            strict: t.strict,
        })
        .collect();

    // `parallel_tool_calls: false` alone must stay `auto` (pitfall 8); tool_choice without
    // tools is rejected by Anthropic, so it is only sent with tools.
    let disable_parallel = (req.parallel_tool_calls == Some(false)).then_some(true);
    let tool_choice = if tools.is_empty() {
        None
    } else {
        match (&req.tool_choice, disable_parallel) {
            (None, None) => None,
            (None, Some(_)) | (Some(ToolChoice::Auto), _) => Some(OutToolChoice {
                kind: "auto",
                name: None,
                disable_parallel_tool_use: disable_parallel,
            }),
            (Some(ToolChoice::Required), _) => Some(OutToolChoice {
                kind: "any",
                name: None,
                disable_parallel_tool_use: disable_parallel,
            }),
            (Some(ToolChoice::Tool(name)), _) => Some(OutToolChoice {
                kind: "tool",
                name: Some(name),
                disable_parallel_tool_use: disable_parallel,
            }),
            // `none` takes no parallel flag (no calls at all).
            (Some(ToolChoice::None), _) => Some(OutToolChoice {
                kind: "none",
                name: None,
                disable_parallel_tool_use: None,
            }),
        }
    };

    let (thinking, budget) = match &req.reasoning {
        None => (None, None),
        Some(r) => match thinking_budget(r)? {
            Some(budget_tokens) => (
                Some(OutThinking::Enabled { budget_tokens }),
                Some(budget_tokens),
            ),
            None => (Some(OutThinking::Disabled), None),
        },
    };
    let mut max_tokens = req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if let Some(b) = budget {
        // Anthropic requires budget_tokens < max_tokens; the answer still needs room.
        if b >= max_tokens {
            max_tokens = b.saturating_add(DEFAULT_MAX_TOKENS);
        }
    }

    let out = OutRequest {
        model,
        system,
        messages,
        max_tokens,
        temperature: match budget {
            Some(_) => None,
            None => req
                .temperature
                .filter(|t| t.is_finite())
                .map(|t| (t / 2.0).clamp(0.0, 1.0)),
        },
        top_p: req.top_p,
        top_k: if budget.is_some() { None } else { req.top_k },
        // Anthropic rejects empty and whitespace-only stop sequences (pitfall 9).
        stop_sequences: req
            .stop
            .iter()
            .map(String::as_str)
            .filter(|s| !s.trim().is_empty())
            .collect(),
        stream: req.stream,
        tools,
        tool_choice,
        thinking,
        output_config,
        metadata: req.user.as_deref().map(|user_id| OutMetadata { user_id }),
    };
    Ok(serde_json::to_vec(&out)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;

    const PARALLEL_REQ: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/anthropic-parallel-tool-use.turn1.request.json"
    ));
    const COUNT_TOKENS_REQ: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/anthropic-count-tokens.request.json"
    ));

    /// The `body` of a `{method, url, body}` request fixture.
    fn fixture_body(fixture: &str) -> Vec<u8> {
        let v: Value = serde_json::from_str(fixture).unwrap();
        serde_json::to_vec(&v["body"]).unwrap()
    }

    fn decode(v: Value) -> Result<ChatRequest, TranslateError> {
        decode_request(v.to_string().as_bytes())
    }

    fn encode(req: &ChatRequest) -> Value {
        serde_json::from_slice(&encode_request(req, "claude-upstream").unwrap()).unwrap()
    }

    fn text(t: &str) -> Part {
        Part::Text(TextBlock {
            text: t.into(),
            cache_control: None,
        })
    }

    fn user(parts: Vec<Part>) -> Message {
        Message {
            role: Role::User,
            content: parts,
        }
    }

    fn assistant(parts: Vec<Part>) -> Message {
        Message {
            role: Role::Assistant,
            content: parts,
        }
    }

    fn call(id: &str, args: &str) -> Part {
        Part::ToolCall {
            id: id.into(),
            name: "lookup".into(),
            arguments: args.into(),
            signature: None,
        }
    }

    fn result(id: &str, t: &str) -> Part {
        Part::ToolResult {
            id: id.into(),
            name: None,
            content: vec![text(t)],
            is_error: false,
        }
    }

    fn base_request(messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            model: "client-model".into(),
            messages,
            ..ChatRequest::default()
        }
    }

    fn weather_tool() -> Tool {
        Tool {
            name: "lookup".into(),
            description: Some("Look it up".into()),
            parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
            strict: None,
        }
    }

    #[test]
    fn decodes_the_parallel_tool_request_fixture() {
        let r = decode_request(&fixture_body(PARALLEL_REQ)).unwrap();
        assert_eq!(r.model, "claude-haiku-4-5");
        assert_eq!(r.system.len(), 1);
        assert!(r.system[0]
            .text
            .contains("Use the `retrieve_entity_info` tool"));
        assert_eq!(
            r.messages,
            vec![user(vec![text(
                "Alice, Bob, Charlie and Daisy are a family. Who is the youngest?"
            )])]
        );
        assert_eq!(r.max_tokens, Some(4096));
        assert!(!r.stream);
        assert!(r.stream_usage);
        assert_eq!(r.tool_choice, Some(ToolChoice::Auto));
        assert_eq!(r.parallel_tool_calls, None);
        assert_eq!(r.tools.len(), 1);
        assert_eq!(r.tools[0].name, "retrieve_entity_info");
        assert_eq!(
            r.tools[0].description.as_deref(),
            Some("Get the knowledge about the given entity.")
        );
        assert_eq!(r.tools[0].parameters["required"], json!(["name"]));
        assert_eq!(r.tools[0].parameters["additionalProperties"], json!(false));
    }

    #[test]
    fn decodes_a_count_tokens_body_without_max_tokens() {
        let r = decode_request(&fixture_body(COUNT_TOKENS_REQ)).unwrap();
        assert_eq!(r.model, "claude-sonnet-4-5");
        assert_eq!(r.max_tokens, None);
        assert_eq!(r.system[0].text, "You are a helpful assistant.");
        let Part::Text(t) = &r.messages[0].content[0] else {
            panic!("{:?}", r.messages)
        };
        assert!(t.text.starts_with("Please explain what Python is"));
        // Encoding it for an upstream supplies the required max_tokens.
        assert_eq!(encode(&r)["max_tokens"], 4096);
    }

    #[test]
    fn decodes_a_claude_code_style_request() {
        let r = decode(json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 32000,
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "stop_sequences": ["END"],
            "stream": true,
            "metadata": {"user_id": "user_abc_session_1"},
            "thinking": {"type": "enabled", "budget_tokens": 10000},
            "system": [
                {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Project rules."}
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "tools": [
                {"name": "Read", "description": "Read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}, "cache_control": {"type": "ephemeral"}},
                {"type": "custom", "name": "NoSchema"}
            ],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "look at this"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}, "title": "spec", "context": "ignored"},
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "I should read it", "signature": "EqQBCkYI"},
                    {"type": "redacted_thinking", "data": "EmwKAhgB"},
                    {"type": "text", "text": "Reading.", "citations": null},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a.rs", "opts": {"lines": [1, 2]}}, "caller": {"type": "direct"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "fn main() {}"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
                     "content": [{"type": "text", "text": "denied"}], "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": ""}
                ]}
            ]
        }))
        .unwrap();
        assert_eq!(r.temperature, Some(1.0), "0–1 doubled onto 0–2");
        assert_eq!((r.top_p, r.top_k), (Some(0.9), Some(40)));
        assert_eq!(r.stop, vec!["END".to_owned()]);
        assert!(r.stream && r.stream_usage);
        assert_eq!(r.user.as_deref(), Some("user_abc_session_1"));
        assert_eq!(
            r.reasoning,
            Some(Reasoning {
                effort: None,
                budget_tokens: Some(10000),
                enabled: true
            })
        );
        assert_eq!(
            r.system[0].cache_control,
            Some(json!({"type": "ephemeral"}))
        );
        assert_eq!(r.system[1].text, "Project rules.");
        assert_eq!(r.tool_choice, Some(ToolChoice::Required));
        assert_eq!(r.parallel_tool_calls, Some(false));
        assert_eq!(
            r.tools[1].parameters,
            json!({"type": "object", "properties": {}})
        );

        let u = &r.messages[0].content;
        assert_eq!(
            u[1],
            Part::Image(ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "iVBORw0KGgo=".into()
            })
        );
        assert_eq!(
            u[2],
            Part::Image(ImageSource::Url {
                url: "https://example.com/a.jpg".into()
            })
        );
        assert_eq!(
            u[3],
            Part::Document {
                source: ImageSource::Base64 {
                    media_type: "application/pdf".into(),
                    data: "JVBERi0=".into()
                },
                title: Some("spec".into())
            }
        );
        assert_eq!(
            u[4],
            Part::Document {
                source: ImageSource::Base64 {
                    media_type: "text/plain".into(),
                    data: "cGxhaW4gd29yZHM=".into()
                },
                title: None
            }
        );

        let a = &r.messages[1].content;
        assert_eq!(
            a[0],
            Part::Thinking {
                text: "I should read it".into(),
                signature: Some("EqQBCkYI".into())
            }
        );
        assert_eq!(
            a[1],
            Part::RedactedThinking {
                data: "EmwKAhgB".into()
            }
        );
        assert_eq!(a[2], text("Reading."));
        assert_eq!(
            a[3],
            Part::ToolCall {
                id: "toolu_1".into(),
                name: "Read".into(),
                arguments: r#"{"path":"a.rs","opts":{"lines":[1,2]}}"#.into(),
                signature: None
            }
        );

        let results = &r.messages[2].content;
        assert_eq!(results.len(), 2, "the empty text block is dropped");
        assert_eq!(results[0], result("toolu_1", "fn main() {}"));
        assert_eq!(
            results[1],
            Part::ToolResult {
                id: "toolu_2".into(),
                name: None,
                content: vec![Part::Text(TextBlock {
                    text: "denied".into(),
                    cache_control: Some(json!({"type": "ephemeral"}))
                })],
                is_error: true
            }
        );
    }

    #[test]
    fn decodes_thinking_variants_effort_and_structured_output() {
        let r = decode(json!({"model": "m", "messages": [], "thinking": {"type": "disabled"}}))
            .unwrap();
        assert_eq!(r.reasoning.map(|r| r.enabled), Some(false));

        let r = decode(json!({
            "model": "m", "messages": [],
            "thinking": {"type": "adaptive"},
            "output_config": {"effort": "max", "format": {"type": "json_schema", "schema": {"type": "object"}}}
        }))
        .unwrap();
        assert_eq!(
            r.reasoning,
            Some(Reasoning {
                effort: Some("high".into()),
                budget_tokens: None,
                enabled: true
            })
        );
        assert_eq!(
            r.response_format,
            Some(ResponseFormat::JsonSchema {
                name: "response".into(),
                schema: json!({"type": "object"}),
                strict: Some(true)
            })
        );

        let r = decode(json!({"model": "m", "messages": [], "output_config": {"effort": "low"}}))
            .unwrap();
        assert_eq!(r.reasoning.and_then(|r| r.effort).as_deref(), Some("low"));

        let r = decode(
            json!({"model": "m", "messages": [], "tool_choice": {"type": "tool", "name": "Read"}}),
        )
        .unwrap();
        assert_eq!(r.tool_choice, Some(ToolChoice::Tool("Read".into())));
        let r =
            decode(json!({"model": "m", "messages": [], "tool_choice": {"type": "none"}})).unwrap();
        assert_eq!(r.tool_choice, Some(ToolChoice::None));
    }

    #[test]
    fn server_tools_and_unrepresentable_blocks_are_unsupported_by_name() {
        let err = decode(json!({
            "model": "m", "max_tokens": 10, "messages": [],
            "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]
        }))
        .unwrap_err();
        let TranslateError::Unsupported { message, param } = err else {
            panic!("{err:?}")
        };
        assert!(message.contains("web_search_20250305"), "{message}");
        assert_eq!(param.as_deref(), Some("tools[0]"));

        let err = decode(json!({
            "model": "m", "max_tokens": 10,
            "messages": [{"role": "assistant", "content": [
                {"type": "text", "text": "searching"},
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
            ]}]
        }))
        .unwrap_err();
        let TranslateError::Unsupported { message, param } = err else {
            panic!("{err:?}")
        };
        assert!(message.contains("`server_tool_use`"), "{message}");
        assert_eq!(param.as_deref(), Some("messages[0].content[1]"));

        let err = decode(json!({
            "model": "m", "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "search_result", "source": "s", "title": "t", "content": []}]}
            ]}]
        }))
        .unwrap_err();
        assert!(
            matches!(&err, TranslateError::Unsupported { message, .. } if message.contains("search_result"))
        );

        let err = decode(json!({
            "model": "m", "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
            ]}]
        }))
        .unwrap_err();
        assert!(
            matches!(&err, TranslateError::Unsupported { message, .. } if message.contains("`file`"))
        );

        assert!(matches!(
            decode(json!({"model": "m", "messages": [{"role": "user", "content": 5}]})),
            Err(TranslateError::Json(_))
        ));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let r = decode(json!({
            "model": "m", "max_tokens": 5, "service_tier": "auto", "brand_new": {"x": 1},
            "cache_control": {"type": "ephemeral"},
            "messages": [{"role": "user", "content": "hi", "extra": true}]
        }))
        .unwrap();
        assert_eq!(r.messages, vec![user(vec![text("hi")])]);
    }

    #[test]
    fn encodes_the_basic_shape() {
        let mut req = base_request(vec![user(vec![text("hello")])]);
        req.system = vec![
            TextBlock {
                text: "Be brief.".into(),
                cache_control: Some(json!({"type": "ephemeral"})),
            },
            TextBlock {
                text: "".into(),
                cache_control: None,
            },
        ];
        req.temperature = Some(1.4);
        req.top_p = Some(0.5);
        req.stream = true;
        req.user = Some("u-1".into());
        req.seed = Some(7);
        req.presence_penalty = Some(0.5);
        // Pitfall 9: whitespace-only stop sequences are rejected by Anthropic.
        req.stop = vec!["\n".into(), " ".into(), "".into(), "STOP".into()];
        assert_eq!(
            encode(&req),
            json!({
                "model": "claude-upstream",
                "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
                "max_tokens": 4096,
                "temperature": 0.7,
                "top_p": 0.5,
                "stop_sequences": ["STOP"],
                "stream": true,
                "metadata": {"user_id": "u-1"}
            })
        );
        req.temperature = Some(3.0);
        assert_eq!(
            encode(&req)["temperature"],
            1.0,
            "clamped to Anthropic's range"
        );
    }

    #[test]
    fn pitfall_6_no_empty_text_or_empty_messages() {
        let req = base_request(vec![
            user(vec![text("q")]),
            user(vec![text("")]),
            assistant(vec![text(""), call("call_1", "")]),
            user(vec![result("call_1", "")]),
            assistant(vec![Part::Thinking {
                text: "unsigned".into(),
                signature: None,
            }]),
        ]);
        let v = encode(&req);
        assert_eq!(
            v["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "q"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "lookup", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1"}]}
            ])
        );
        let empty = base_request(vec![user(vec![text("")])]);
        assert!(matches!(
            encode_request(&empty, "m"),
            Err(TranslateError::Unsupported { param: Some(p), .. }) if p == "messages"
        ));
    }

    #[test]
    fn pitfall_7_all_results_first_in_one_user_message() {
        let req = base_request(vec![
            user(vec![text("compare a and b")]),
            assistant(vec![
                text("Checking both."),
                call("call_a", r#"{"q":"a"}"#),
                call("call_b", r#"{"q":"b"}"#),
            ]),
            // OpenAI sends one `tool` message per result, then maybe user text.
            user(vec![result("call_a", "A")]),
            user(vec![text("also hurry"), result("call_b", "B")]),
        ]);
        let v = encode(&req);
        assert_eq!(v["messages"].as_array().unwrap().len(), 3);
        assert_eq!(
            v["messages"][2],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_a", "content": [{"type": "text", "text": "A"}]},
                {"type": "tool_result", "tool_use_id": "call_b", "content": [{"type": "text", "text": "B"}]},
                {"type": "text", "text": "also hurry"}
            ]})
        );
        assert_eq!(v["messages"][1]["content"][2]["input"], json!({"q": "b"}));
    }

    #[test]
    fn pitfall_8_parallel_flag_alone_stays_auto() {
        let mut req = base_request(vec![user(vec![text("hi")])]);
        req.tools = vec![weather_tool()];
        req.parallel_tool_calls = Some(false);
        assert_eq!(
            encode(&req)["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        req.tool_choice = Some(ToolChoice::Required);
        assert_eq!(
            encode(&req)["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        req.tool_choice = Some(ToolChoice::Tool("lookup".into()));
        assert_eq!(
            encode(&req)["tool_choice"],
            json!({"type": "tool", "name": "lookup", "disable_parallel_tool_use": true})
        );
        req.tool_choice = Some(ToolChoice::None);
        assert_eq!(encode(&req)["tool_choice"], json!({"type": "none"}));
        req.parallel_tool_calls = None;
        req.tool_choice = None;
        assert!(encode(&req).get("tool_choice").is_none());
        // No tools: Anthropic rejects a tool_choice on its own.
        req.tools.clear();
        req.tool_choice = Some(ToolChoice::Auto);
        assert!(encode(&req).get("tool_choice").is_none());
    }

    #[test]
    fn encodes_tools_with_a_default_schema() {
        let mut req = base_request(vec![user(vec![text("hi")])]);
        req.tools = vec![
            weather_tool(),
            Tool {
                name: "ping".into(),
                description: None,
                parameters: Value::Null,
                strict: Some(true),
            },
            Tool {
                name: "typeless".into(),
                description: None,
                parameters: json!({"properties": {}}),
                strict: None,
            },
        ];
        assert_eq!(
            encode(&req)["tools"],
            json!([
                {"name": "lookup", "description": "Look it up",
                 "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}},
                {"name": "ping", "input_schema": {"type": "object", "properties": {}}, "strict": true},
                {"name": "typeless", "input_schema": {"properties": {}, "type": "object"}}
            ])
        );
    }

    #[test]
    fn pitfall_10_signed_thinking_is_replayed_first() {
        let req = base_request(vec![
            user(vec![text("q")]),
            assistant(vec![
                text("Let me check."),
                Part::Thinking {
                    text: "from gpt".into(),
                    signature: None,
                },
                Part::Thinking {
                    text: "need the tool".into(),
                    signature: Some("sig-1".into()),
                },
                Part::RedactedThinking {
                    data: "opaque".into(),
                },
                call("toolu_1", r#"{"q":1}"#),
            ]),
            user(vec![result("toolu_1", "1")]),
        ]);
        assert_eq!(
            encode(&req)["messages"][1]["content"],
            json!([
                {"type": "thinking", "thinking": "need the tool", "signature": "sig-1"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": 1}}
            ])
        );
    }

    #[test]
    fn invalid_tool_arguments_name_the_call() {
        for bad in ["{\"q\":", "[1,2]"] {
            let req = base_request(vec![
                user(vec![text("q")]),
                assistant(vec![call("call_9", bad)]),
            ]);
            let err = encode_request(&req, "m").unwrap_err();
            let TranslateError::Unsupported { message, param } = err else {
                panic!("{err:?}")
            };
            assert!(message.contains("call_9"), "{message}");
            assert_eq!(param.as_deref(), Some("messages[1].content[0]"));
        }
    }

    #[test]
    fn thinking_budget_max_tokens_and_sampling() {
        let mut req = base_request(vec![user(vec![text("q")])]);
        req.temperature = Some(1.0);
        req.top_k = Some(5);
        req.max_tokens = Some(1000);
        req.reasoning = Some(Reasoning {
            effort: Some("high".into()),
            budget_tokens: None,
            enabled: true,
        });
        let v = encode(&req);
        assert_eq!(
            v["thinking"],
            json!({"type": "enabled", "budget_tokens": 16384})
        );
        assert_eq!(v["max_tokens"], 16384 + 4096);
        assert!(
            v.get("temperature").is_none(),
            "Anthropic rejects temperature with thinking"
        );
        assert!(v.get("top_k").is_none());

        for (effort, budget) in [("low", 1024), ("medium", 4096), ("minimal", 1024)] {
            req.reasoning = Some(Reasoning {
                effort: Some(effort.into()),
                budget_tokens: None,
                enabled: true,
            });
            req.max_tokens = None;
            let v = encode(&req);
            assert_eq!(v["thinking"]["budget_tokens"], budget, "{effort}");
            assert_eq!(
                v["max_tokens"],
                if budget >= 4096 { budget + 4096 } else { 4096 }
            );
        }

        req.reasoning = Some(Reasoning {
            effort: None,
            budget_tokens: Some(500),
            enabled: true,
        });
        req.max_tokens = Some(8000);
        let v = encode(&req);
        assert_eq!(
            v["thinking"]["budget_tokens"], 1024,
            "raised to Anthropic's minimum"
        );
        assert_eq!(v["max_tokens"], 8000);

        req.reasoning = Some(Reasoning {
            effort: None,
            budget_tokens: None,
            enabled: false,
        });
        let v = encode(&req);
        assert_eq!(v["thinking"], json!({"type": "disabled"}));
        assert_eq!(v["temperature"], 0.5);
        assert_eq!(v["top_k"], 5);

        req.reasoning = Some(Reasoning {
            effort: Some("extreme".into()),
            budget_tokens: None,
            enabled: true,
        });
        assert!(matches!(
            encode_request(&req, "m"),
            Err(TranslateError::Unsupported { .. })
        ));
    }

    #[test]
    fn encodes_images_and_documents() {
        let req = base_request(vec![user(vec![
            Part::Image(ImageSource::Base64 {
                media_type: "image/webp".into(),
                data: "UklGR".into(),
            }),
            Part::Image(ImageSource::Url {
                url: "https://x.test/a.png".into(),
            }),
            Part::Image(ImageSource::Url {
                url: "data:image/jpeg;base64,/9j/4AAQ".into(),
            }),
            Part::Document {
                source: ImageSource::Base64 {
                    media_type: "application/pdf".into(),
                    data: "JVBERi0=".into(),
                },
                title: Some("doc".into()),
            },
            Part::Document {
                source: ImageSource::Base64 {
                    media_type: "text/plain".into(),
                    data: "cGxhaW4gd29yZHM=".into(),
                },
                title: None,
            },
        ])]);
        assert_eq!(
            encode(&req)["messages"][0]["content"],
            json!([
                {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "UklGR"}},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}, "title": "doc"},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}}
            ])
        );
        for bad in [
            ImageSource::Base64 {
                media_type: "image/bmp".into(),
                data: "Qk0=".into(),
            },
            ImageSource::Url {
                url: "gs://bucket/a.png".into(),
            },
        ] {
            let req = base_request(vec![user(vec![Part::Image(bad)])]);
            let err = encode_request(&req, "m").unwrap_err();
            assert!(
                matches!(&err, TranslateError::Unsupported { param: Some(p), .. } if p == "messages[0].content[0]"),
                "{err:?}"
            );
        }
    }

    #[test]
    fn encodes_response_formats_and_refuses_n() {
        let mut req = base_request(vec![user(vec![text("q")])]);
        req.response_format = Some(ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: json!({"type": "object", "properties": {"a": {"type": "integer"}}}),
            strict: Some(true),
        });
        assert_eq!(
            encode(&req)["output_config"],
            json!({"format": {"type": "json_schema", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}})
        );
        req.response_format = Some(ResponseFormat::JsonObject);
        req.system = vec![TextBlock {
            text: "Be brief.".into(),
            cache_control: None,
        }];
        let v = encode(&req);
        assert!(v.get("output_config").is_none());
        assert_eq!(
            v["system"],
            json!([{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Respond with a JSON object only."}])
        );
        req.n = Some(2);
        assert!(matches!(
            encode_request(&req, "m"),
            Err(TranslateError::Unsupported { param: Some(p), .. }) if p == "n"
        ));
    }

    #[test]
    fn fixture_request_round_trips() {
        let r = decode_request(&fixture_body(PARALLEL_REQ)).unwrap();
        let again = decode_request(&encode_request(&r, "claude-haiku-4-5").unwrap()).unwrap();
        assert_eq!(again.system, r.system);
        assert_eq!(again.messages, r.messages);
        assert_eq!(again.tools, r.tools);
        assert_eq!(again.tool_choice, r.tool_choice);
        assert_eq!(again.max_tokens, r.max_tokens);
    }
}
