//! IR request → Converse request body.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::translate::ir::{
    ChatRequest, ImageSource, Message, Part, ResponseFormat, Role, TextBlock, ToolChoice,
    TranslateError,
};

/// `inferenceConfig.maxTokens` when the client gave none. Converse would otherwise use the
/// model's own default, which differs per model (and is tiny for some); a fixed value keeps
/// answers comparable across providers.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConverseRequest {
    messages: Vec<BMessage>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Block>,
    inference_config: InferenceConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    additional_model_request_fields: Map<String, Value>,
}

#[derive(Serialize)]
struct BMessage {
    role: &'static str,
    content: Vec<Block>,
}

/// A Converse content block: a union written as a one-key object (`{"text": ...}`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Block {
    Text(String),
    Image(Media),
    Document(Media),
    ToolUse(ToolUse),
    ToolResult(ToolResult),
    ReasoningContent(ReasoningContent),
    CachePoint(CachePoint),
}

#[derive(Serialize)]
struct Media {
    format: &'static str,
    /// Documents only (required there).
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    source: Source,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Source {
    /// Base64 text (a JSON blob).
    Bytes(String),
    S3Location {
        uri: String,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse {
    tool_use_id: String,
    name: String,
    input: Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolResult {
    tool_use_id: String,
    content: Vec<ResultBlock>,
    /// Sent only for errors: `status` is accepted by Claude and Nova models only, and success is
    /// what a missing status means, so other models keep working for successful results.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum ResultBlock {
    Text(String),
    Json(Value),
    Image(Media),
    Document(Media),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum ReasoningContent {
    ReasoningText { text: String, signature: String },
    RedactedContent(String),
}

#[derive(Serialize)]
struct CachePoint {
    #[serde(rename = "type")]
    kind: &'static str,
}

const CACHE_POINT: CachePoint = CachePoint { kind: "default" };

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig {
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig {
    tools: Vec<ToolEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Choice>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolEntry {
    tool_spec: ToolSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolSpec {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    input_schema: InputSchema,
}

#[derive(Serialize)]
struct InputSchema {
    json: Value,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Choice {
    Auto(Empty),
    Any(Empty),
    Tool { name: String },
}

/// IR temperature (OpenAI's 0–2 scale) → Bedrock's 0–1 (every Converse model family, Claude
/// included, takes 0–1). Scaled, not clamped, because the Anthropic decoder doubles its 0–1 into
/// the IR: halving is the inverse, so an Anthropic client's temperature reaches Claude on Bedrock
/// unchanged. Out-of-range input is clamped.
pub fn to_bedrock_temperature(t: f64) -> f64 {
    (t / 2.0).clamp(0.0, 1.0)
}

/// IR → Converse JSON body (the model id goes in the URL, not here).
///
/// Lossy or refused, by design:
/// * image URLs → `Unsupported` (Converse takes bytes or `s3://` locations only);
/// * `tool_choice: none` → the tools are left out (Converse has no "none"), unless the history
///   holds tool calls/results, where Bedrock requires a `toolConfig`: the tools are then sent
///   with no `toolChoice` (the model *may* call one);
/// * history with tool calls but no tools declared → tool specs are synthesised from the names
///   used (empty-object schema), for the same reason;
/// * `response_format` json_object/json_schema and `n > 1` → `Unsupported`;
/// * `parallel_tool_calls`, `seed`, penalties, `user` → dropped (Converse has no field);
/// * thinking without a signature → dropped (Bedrock cannot verify it; only signed thinking can
///   be replayed), tool-call `signature` (Gemini's) → dropped;
/// * `reasoning` and `top_k` go in `additionalModelRequestFields` in Anthropic's spelling, so
///   they only work with Claude models.
pub fn encode_request(req: &ChatRequest) -> Result<Vec<u8>, TranslateError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(TranslateError::unsupported(
            "Bedrock Converse returns a single choice; `n` greater than 1 is not supported",
            Some("n"),
        ));
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(_) => {
            return Err(TranslateError::unsupported(
                "Bedrock Converse has no JSON response mode; `response_format` json_object / \
                 json_schema is not supported for Bedrock targets",
                Some("response_format"),
            ))
        }
    }

    let mut system = Vec::with_capacity(req.system.len());
    for block in &req.system {
        push_text(&mut system, block);
    }

    let mut docs = 0usize;
    let mut messages: Vec<BMessage> = Vec::with_capacity(req.messages.len());
    for (i, msg) in req.messages.iter().enumerate() {
        let content = encode_parts(msg, i, &mut docs)?;
        if content.is_empty() {
            // Converse rejects empty content (and blank text); a turn left empty after dropping
            // blank text / unsigned thinking is dropped whole, so its neighbours may merge.
            continue;
        }
        let role = match msg.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        match messages.last_mut() {
            // Converse requires alternating roles: consecutive turns of one role become one.
            Some(last) if last.role == role => last.content.extend(content),
            _ => messages.push(BMessage { role, content }),
        }
    }
    for m in messages.iter_mut().filter(|m| m.role == "user") {
        // All results for one assistant turn must open the next user message.
        m.content
            .sort_by_key(|b| !matches!(b, Block::ToolResult(_)));
    }

    // Thinking on Bedrock is Claude's (in additionalModelRequestFields): the same budgets as
    // the Anthropic encoder.
    let thinking_budget = match req.reasoning.as_ref() {
        Some(r) => crate::translate::anthropic::thinking_budget(r)?,
        None => None,
    };
    let max_tokens = match (req.max_tokens, thinking_budget) {
        (None, Some(budget)) => budget.saturating_add(DEFAULT_MAX_TOKENS),
        // Anthropic requires max_tokens > budget_tokens; the budget is extra room on top of the
        // client's limit rather than a rejected request.
        (Some(max), Some(budget)) if max <= budget => budget.saturating_add(max),
        (Some(max), _) => max,
        (None, None) => DEFAULT_MAX_TOKENS,
    };
    let inference_config = InferenceConfig {
        max_tokens,
        // Claude rejects a non-default temperature (and top_k) while thinking.
        temperature: req
            .temperature
            .filter(|_| thinking_budget.is_none())
            .map(to_bedrock_temperature),
        top_p: req.top_p,
        stop_sequences: req
            .stop
            .iter()
            // Whitespace-only stop sequences are rejected by Claude (pitfall 9).
            .filter(|s| !s.trim().is_empty())
            .cloned()
            .collect(),
    };

    let tool_config = tool_config(req, &messages);

    let mut additional = Map::new();
    if let Some(budget) = thinking_budget {
        additional.insert(
            "thinking".into(),
            serde_json::json!({"type": "enabled", "budget_tokens": budget}),
        );
    }
    if let Some(k) = req.top_k.filter(|_| thinking_budget.is_none()) {
        additional.insert("top_k".into(), Value::from(k));
    }

    let body = ConverseRequest {
        messages,
        system,
        inference_config,
        tool_config,
        additional_model_request_fields: additional,
    };
    Ok(serde_json::to_vec(&body)?)
}

fn push_text(out: &mut Vec<Block>, block: &TextBlock) {
    // Converse rejects blank text ("The text field in the ContentBlock object is blank").
    if !block.text.trim().is_empty() {
        out.push(Block::Text(block.text.clone()));
    }
    // Converse marks a cache breakpoint with a block after the cached content; a breakpoint
    // with nothing before it (its text was blank) would be a content-less block, so it is
    // dropped with the text.
    if block.cache_control.is_some() && !out.is_empty() {
        out.push(Block::CachePoint(CACHE_POINT));
    }
}

fn encode_parts(
    msg: &Message,
    index: usize,
    docs: &mut usize,
) -> Result<Vec<Block>, TranslateError> {
    let mut out = Vec::with_capacity(msg.content.len());
    for part in &msg.content {
        match part {
            Part::Text(t) => push_text(&mut out, t),
            Part::Refusal(text) => {
                if !text.trim().is_empty() {
                    out.push(Block::Text(text.clone()));
                }
            }
            Part::Image(src) => out.push(Block::Image(image(src, index)?)),
            Part::Document { source, title } => out.push(Block::Document(document(
                source,
                title.as_deref(),
                index,
                docs,
            )?)),
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => out.push(Block::ToolUse(ToolUse {
                tool_use_id: id.clone(),
                name: name.clone(),
                input: tool_input(arguments, id, index)?,
            })),
            Part::ToolResult {
                id,
                content,
                is_error,
                ..
            } => {
                let mut blocks = Vec::with_capacity(content.len());
                for p in content {
                    match p {
                        Part::Text(t) if !t.text.trim().is_empty() => {
                            blocks.push(ResultBlock::Text(t.text.clone()))
                        }
                        Part::Image(src) => blocks.push(ResultBlock::Image(image(src, index)?)),
                        Part::Document { source, title } => blocks.push(ResultBlock::Document(
                            document(source, title.as_deref(), index, docs)?,
                        )),
                        _ => {}
                    }
                }
                if blocks.is_empty() {
                    // An empty result is legal for the client but Converse needs at least one
                    // content block and rejects blank text: an empty JSON object says "nothing".
                    blocks.push(ResultBlock::Json(Value::Object(Map::new())));
                }
                out.push(Block::ToolResult(ToolResult {
                    tool_use_id: id.clone(),
                    content: blocks,
                    status: is_error.then_some("error"),
                }));
            }
            Part::Thinking {
                text,
                signature: Some(signature),
            } => out.push(Block::ReasoningContent(ReasoningContent::ReasoningText {
                text: text.clone(),
                signature: signature.clone(),
            })),
            Part::Thinking {
                signature: None, ..
            } => {}
            Part::RedactedThinking { data } => out.push(Block::ReasoningContent(
                ReasoningContent::RedactedContent(data.clone()),
            )),
        }
    }
    Ok(out)
}

fn tool_input(arguments: &str, id: &str, index: usize) -> Result<Value, TranslateError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(arguments).map_err(|e| {
        TranslateError::unsupported(
            format!(
                "messages[{index}]: arguments of tool call `{id}` are not valid JSON ({e}); \
                 Bedrock needs them as a JSON value"
            ),
            Some("messages"),
        )
    })
}

/// `image/png; charset=...` → `image/png`, lower-cased.
fn bare_media_type(mt: &str) -> String {
    mt.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn image(src: &ImageSource, index: usize) -> Result<Media, TranslateError> {
    let (format, source) = match src {
        ImageSource::Base64 { media_type, data } => {
            let format = match bare_media_type(media_type).as_str() {
                "image/png" => "png",
                "image/jpeg" | "image/jpg" => "jpeg",
                "image/gif" => "gif",
                "image/webp" => "webp",
                other => {
                    return Err(TranslateError::unsupported(
                        format!(
                            "messages[{index}]: image type `{other}` is not supported by Bedrock \
                             (png, jpeg, gif, webp)"
                        ),
                        Some("messages"),
                    ))
                }
            };
            (format, Source::Bytes(data.clone()))
        }
        ImageSource::Url { url } => match s3_format(url, image_format_from_ext) {
            Some(format) => (format, Source::S3Location { uri: url.clone() }),
            None => {
                return Err(TranslateError::unsupported(
                    format!(
                        "messages[{index}]: Bedrock needs image bytes, it does not fetch image \
                         URLs; send the image inline as base64 (data: URL) instead"
                    ),
                    Some("messages"),
                ))
            }
        },
    };
    Ok(Media {
        format,
        name: None,
        source,
    })
}

fn document(
    src: &ImageSource,
    title: Option<&str>,
    index: usize,
    docs: &mut usize,
) -> Result<Media, TranslateError> {
    let (format, source) = match src {
        ImageSource::Base64 { media_type, data } => {
            let format = match bare_media_type(media_type).as_str() {
                "application/pdf" => "pdf",
                "text/csv" => "csv",
                "application/msword" => "doc",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
                "application/vnd.ms-excel" => "xls",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
                "text/html" => "html",
                "text/plain" => "txt",
                "text/markdown" => "md",
                other => {
                    return Err(TranslateError::unsupported(
                        format!(
                            "messages[{index}]: document type `{other}` is not supported by \
                             Bedrock (pdf, csv, doc, docx, xls, xlsx, html, txt, md)"
                        ),
                        Some("messages"),
                    ))
                }
            };
            (format, Source::Bytes(data.clone()))
        }
        ImageSource::Url { url } => match s3_format(url, document_format_from_ext) {
            Some(format) => (format, Source::S3Location { uri: url.clone() }),
            None => {
                return Err(TranslateError::unsupported(
                    format!(
                        "messages[{index}]: Bedrock needs document bytes, it does not fetch \
                         URLs; send the document inline as base64 instead"
                    ),
                    Some("messages"),
                ))
            }
        },
    };
    *docs += 1;
    Ok(Media {
        format,
        name: Some(document_name(title, *docs)),
        source,
    })
}

/// The format of an `s3://` object (Converse reads those itself), from its extension.
fn s3_format(url: &str, by_ext: fn(&str) -> Option<&'static str>) -> Option<&'static str> {
    let path = url.strip_prefix("s3://")?;
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    by_ext(&ext)
}

fn image_format_from_ext(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "png" => "png",
        "jpg" | "jpeg" => "jpeg",
        "gif" => "gif",
        "webp" => "webp",
        _ => return None,
    })
}

fn document_format_from_ext(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "pdf" => "pdf",
        "csv" => "csv",
        "doc" => "doc",
        "docx" => "docx",
        "xls" => "xls",
        "xlsx" => "xlsx",
        "html" | "htm" => "html",
        "txt" => "txt",
        "md" => "md",
        _ => return None,
    })
}

/// Converse document names may hold only alphanumerics, single spaces, hyphens, parentheses
/// and square brackets; anything else becomes a hyphen. Untitled documents get a numbered name.
fn document_name(title: Option<&str>, n: usize) -> String {
    let mut name = String::new();
    for c in title.unwrap_or("").chars() {
        let c = if c.is_alphanumeric() || matches!(c, '-' | '(' | ')' | '[' | ']') {
            c
        } else if c.is_whitespace() {
            ' '
        } else {
            '-'
        };
        if c == ' ' && (name.is_empty() || name.ends_with(' ')) {
            continue;
        }
        name.push(c);
        if name.chars().count() >= 200 {
            break;
        }
    }
    let name = name.trim_end();
    if name.is_empty() {
        format!("document-{n}")
    } else {
        name.to_owned()
    }
}

fn tool_config(req: &ChatRequest, messages: &[BMessage]) -> Option<ToolConfig> {
    let history_has_tools = messages.iter().any(|m| {
        m.content
            .iter()
            .any(|b| matches!(b, Block::ToolUse(_) | Block::ToolResult(_)))
    });
    let choice = match &req.tool_choice {
        None => None,
        Some(ToolChoice::Auto) => Some(Choice::Auto(Empty {})),
        Some(ToolChoice::Required) => Some(Choice::Any(Empty {})),
        Some(ToolChoice::Tool(name)) => Some(Choice::Tool { name: name.clone() }),
        Some(ToolChoice::None) if !history_has_tools => return None,
        // Bedrock requires toolConfig once the history has tool blocks; see `encode_request`.
        Some(ToolChoice::None) => None,
    };
    let mut tools: Vec<ToolEntry> = req
        .tools
        .iter()
        .map(|t| ToolEntry {
            tool_spec: ToolSpec {
                name: t.name.clone(),
                description: t.description.clone().filter(|d| !d.is_empty()),
                input_schema: InputSchema {
                    json: if t.parameters.is_null() {
                        serde_json::json!({"type": "object", "properties": {}})
                    } else {
                        t.parameters.clone()
                    },
                },
            },
        })
        .collect();
    if tools.is_empty() && history_has_tools {
        let mut names: Vec<&str> = Vec::new();
        for m in messages {
            for b in &m.content {
                if let Block::ToolUse(u) = b {
                    if !names.contains(&u.name.as_str()) {
                        names.push(&u.name);
                    }
                }
            }
        }
        tools = names
            .into_iter()
            .map(|name| ToolEntry {
                tool_spec: ToolSpec {
                    name: name.to_owned(),
                    description: None,
                    input_schema: InputSchema {
                        json: serde_json::json!({"type": "object", "properties": {}}),
                    },
                },
            })
            .collect();
    }
    if tools.is_empty() {
        return None;
    }
    Some(ToolConfig {
        tools,
        tool_choice: choice,
    })
}
