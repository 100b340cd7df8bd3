//! Gemini `GenerateContentRequest` ⇄ IR `ChatRequest`.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::wire::{
    Blob, Content, FileData, FunctionCall, FunctionCallingConfig, FunctionDeclaration,
    FunctionResponse, GenerateContentRequest, GenerationConfig, ThinkingConfig, ToolConfig,
    WirePart, WireTool,
};
use super::{args_text, request_call_id};
use crate::translate::ir::{
    ChatRequest, ImageSource, Message, Part, Reasoning, ResponseFormat, Role, TextBlock, Tool,
    ToolChoice, TranslateError,
};

/// A Gemini request body → IR. `model` and `stream` come from the URL path
/// (`models/{model}:generateContent` / `:streamGenerateContent`).
pub fn decode_request(
    body: &[u8],
    model: &str,
    stream: bool,
) -> Result<ChatRequest, TranslateError> {
    let wire: GenerateContentRequest = crate::translate::json::from_slice(body)?;
    let mut req = ChatRequest {
        model: model.to_owned(),
        stream,
        // Gemini always reports usage.
        stream_usage: true,
        ..ChatRequest::default()
    };
    if let Some(sys) = wire.system_instruction {
        req.system = sys
            .parts
            .into_iter()
            .filter_map(|p| p.text)
            .filter(|t| !t.is_empty())
            .map(|text| TextBlock {
                text,
                cache_control: None,
            })
            .collect();
    }
    req.messages = decode_contents(wire.contents)?;
    req.tools = decode_tools(wire.tools)?;
    if let Some(fc) = wire.tool_config.and_then(|c| c.function_calling_config) {
        req.tool_choice = decode_tool_choice(fc, &mut req.tools);
    }
    if let Some(gc) = wire.generation_config {
        decode_generation_config(gc, &mut req)?;
    }
    Ok(req)
}

fn decode_contents(contents: Vec<Content>) -> Result<Vec<Message>, TranslateError> {
    // Calls not yet answered, in order: a `functionResponse` takes the id of the first pending
    // call with its name (Gemini has no ids; pitfall 12).
    let mut pending: Vec<(String, String)> = Vec::new();
    let mut messages = Vec::with_capacity(contents.len());
    for (turn, content) in contents.into_iter().enumerate() {
        // Anything but "model" is the user side (older clients send "function" for results).
        let role = match content.role.as_deref() {
            Some("model") => Role::Assistant,
            _ => Role::User,
        };
        let mut parts = Vec::with_capacity(content.parts.len());
        for (i, p) in content.parts.into_iter().enumerate() {
            decode_part(p, turn, i, &mut pending, &mut parts)?;
        }
        if !parts.is_empty() {
            messages.push(Message {
                role,
                content: parts,
            });
        }
    }
    Ok(messages)
}

fn decode_part(
    p: WirePart,
    turn: usize,
    i: usize,
    pending: &mut Vec<(String, String)>,
    out: &mut Vec<Part>,
) -> Result<(), TranslateError> {
    if let Some(call) = p.function_call {
        if call.name.is_empty() {
            return Err(TranslateError::unsupported(
                "functionCall.name must not be empty",
                Some(&format!("contents[{turn}].parts[{i}].functionCall.name")),
            ));
        }
        let id = match call.id.filter(|id| !id.is_empty()) {
            Some(id) => id,
            None => request_call_id(turn, i, &call.name),
        };
        pending.push((call.name.clone(), id.clone()));
        out.push(Part::ToolCall {
            id,
            arguments: args_text(call.args.as_ref()),
            name: call.name,
            signature: p.thought_signature,
        });
    } else if let Some(resp) = p.function_response {
        let id = match resp.id.filter(|id| !id.is_empty()) {
            Some(id) => {
                pending.retain(|(_, pid)| *pid != id);
                id
            }
            None => match pending.iter().position(|(name, _)| *name == resp.name) {
                Some(k) => pending.remove(k).1,
                // Answers no call in this request: still give it a stable id.
                None => request_call_id(turn, i, &resp.name),
            },
        };
        let (content, is_error) = tool_result_content(resp.response);
        out.push(Part::ToolResult {
            id,
            name: Some(resp.name).filter(|n| !n.is_empty()),
            content,
            is_error,
        });
    } else if let Some(blob) = p.inline_data {
        let is_image = blob.mime_type.starts_with("image/");
        let source = ImageSource::Base64 {
            media_type: blob.mime_type,
            data: blob.data,
        };
        out.push(media_part(source, is_image));
    } else if let Some(fd) = p.file_data {
        let mime = fd
            .mime_type
            .filter(|m| !m.is_empty())
            .or_else(|| guess_mime(&fd.file_uri).map(str::to_owned));
        let is_image = mime.as_deref().is_none_or(|m| m.starts_with("image/"));
        out.push(media_part(ImageSource::Url { url: fd.file_uri }, is_image));
    } else if p.thought == Some(true) {
        let text = p.text.unwrap_or_default();
        if !text.is_empty() || p.thought_signature.is_some() {
            out.push(Part::Thinking {
                text,
                signature: p.thought_signature,
            });
        }
    } else {
        // Gemini 3 may sign a plain text part; IR text has no signature, so it travels as an
        // empty signed thinking part just before the text (replayed as a thought part).
        if let Some(sig) = p.thought_signature {
            out.push(Part::Thinking {
                text: String::new(),
                signature: Some(sig),
            });
        }
        if let Some(text) = p.text.filter(|t| !t.is_empty()) {
            out.push(Part::Text(TextBlock {
                text,
                cache_control: None,
            }));
        }
        // Parts with no IR counterpart (executableCode, videoMetadata, ...) are ignored.
    }
    Ok(())
}

fn media_part(source: ImageSource, is_image: bool) -> Part {
    if is_image {
        Part::Image(source)
    } else {
        Part::Document {
            source,
            title: None,
        }
    }
}

/// `functionResponse.response` → tool result content. The conventional wrappers
/// (`{"result"|"output": x}`, `{"error": x}`, see Gemini's FunctionResponse docs) are unwrapped;
/// any other object is passed on as its compact JSON text.
fn tool_result_content(response: Option<Value>) -> (Vec<Part>, bool) {
    let text_part = |text: String| {
        Part::Text(TextBlock {
            text,
            cache_control: None,
        })
    };
    let value_text = |v: Value| match v {
        Value::String(s) => s,
        other => other.to_string(),
    };
    match response {
        None | Some(Value::Null) => (Vec::new(), false),
        Some(Value::Object(mut map)) if map.len() == 1 => {
            let is_error = map.contains_key("error");
            let wrapped = ["result", "output", "error"]
                .iter()
                .find_map(|k| map.remove(*k));
            match wrapped {
                Some(v) => (vec![text_part(value_text(v))], is_error),
                None => (vec![text_part(Value::Object(map).to_string())], false),
            }
        }
        Some(other) => (vec![text_part(other.to_string())], false),
    }
}

fn decode_tools(tools: Vec<WireTool>) -> Result<Vec<Tool>, TranslateError> {
    let mut out = Vec::new();
    for (ti, tool) in tools.into_iter().enumerate() {
        if let Some((key, _)) = tool.other.iter().find(|(_, v)| !v.is_null()) {
            return Err(TranslateError::unsupported(
                format!("Gemini built-in tool `{key}` cannot be served by this provider"),
                Some(&format!("tools[{ti}].{key}")),
            ));
        }
        for (di, decl) in tool.function_declarations.into_iter().enumerate() {
            let param = format!("tools[{ti}].functionDeclarations[{di}]");
            if decl.name.is_empty() {
                return Err(TranslateError::unsupported(
                    "function declaration name must not be empty",
                    Some(&format!("{param}.name")),
                ));
            }
            let parameters = match (decl.parameters_json_schema, decl.parameters) {
                (Some(schema), _) => schema,
                (None, Some(mut schema)) => {
                    normalize_openapi_schema(&mut schema);
                    schema
                }
                (None, None) => serde_json::json!({"type": "object", "properties": {}}),
            };
            if !parameters.is_object() {
                return Err(TranslateError::unsupported(
                    "function parameters must be a schema object",
                    Some(&format!("{param}.parameters")),
                ));
            }
            out.push(Tool {
                name: decl.name,
                description: decl.description.filter(|d| !d.is_empty()),
                parameters,
                strict: None,
            });
        }
    }
    Ok(out)
}

/// Gemini's OpenAPI-subset schema → JSON Schema: enum-style uppercase `type` names
/// (`"OBJECT"`) lowercased, `nullable: true` folded into the type, Gemini-only keywords
/// dropped. Recurses only through schema-valued keywords, so `enum`/`default` values and
/// property *names* are left alone.
pub(super) fn normalize_openapi_schema(schema: &mut Value) {
    let Value::Object(map) = schema else {
        return;
    };
    if let Some(Value::String(t)) = map.get_mut("type") {
        *t = t.to_ascii_lowercase();
        if t == "type_unspecified" {
            map.shift_remove("type");
        }
    }
    if let Some(nullable) = map.shift_remove("nullable") {
        if nullable == Value::Bool(true) {
            if let Some(Value::String(t)) = map.get("type") {
                let both = Value::Array(vec![Value::String(t.clone()), "null".into()]);
                map.insert("type".to_owned(), both);
            }
        }
    }
    map.shift_remove("propertyOrdering");
    for (key, child) in map.iter_mut() {
        match key.as_str() {
            "properties" | "$defs" | "definitions" => {
                if let Value::Object(props) = child {
                    props.values_mut().for_each(normalize_openapi_schema);
                }
            }
            "items" | "additionalProperties" | "not" => normalize_openapi_schema(child),
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => {
                if let Value::Array(list) = child {
                    list.iter_mut().for_each(normalize_openapi_schema);
                }
            }
            _ => {}
        }
    }
}

fn decode_tool_choice(fc: FunctionCallingConfig, tools: &mut Vec<Tool>) -> Option<ToolChoice> {
    let mode = fc.mode.map(|m| m.to_ascii_uppercase());
    match mode.as_deref() {
        // VALIDATED: call or answer as the model likes, calls checked against the schema.
        Some("AUTO") | Some("VALIDATED") => Some(ToolChoice::Auto),
        Some("NONE") => Some(ToolChoice::None),
        Some("ANY") => match fc.allowed_function_names.as_slice() {
            [] => Some(ToolChoice::Required),
            [one] => Some(ToolChoice::Tool(one.clone())),
            // "Must call one of these": the same as "must call a tool" over only these tools.
            many => {
                tools.retain(|t| many.contains(&t.name));
                Some(ToolChoice::Required)
            }
        },
        // MODE_UNSPECIFIED or a mode this gateway does not know: the provider default.
        _ => None,
    }
}

fn to_u32(v: i64, param: &str) -> Result<u32, TranslateError> {
    u32::try_from(v).map_err(|_| {
        TranslateError::unsupported(
            format!("{param} must be a non-negative 32-bit integer, got {v}"),
            Some(param),
        )
    })
}

fn decode_generation_config(
    gc: GenerationConfig,
    req: &mut ChatRequest,
) -> Result<(), TranslateError> {
    req.temperature = gc.temperature;
    req.top_p = gc.top_p;
    req.top_k = gc
        .top_k
        .map(|k| to_u32(k, "generationConfig.topK"))
        .transpose()?;
    req.n = gc
        .candidate_count
        .map(|n| to_u32(n, "generationConfig.candidateCount"))
        .transpose()?;
    req.max_tokens = gc
        .max_output_tokens
        .map(|n| to_u32(n, "generationConfig.maxOutputTokens"))
        .transpose()?;
    req.stop = gc.stop_sequences;
    req.seed = gc.seed;
    req.presence_penalty = gc.presence_penalty;
    req.frequency_penalty = gc.frequency_penalty;
    let mime = gc
        .response_mime_type
        .map(|m| m.trim().to_ascii_lowercase())
        .filter(|m| !m.is_empty());
    req.response_format = match mime.as_deref() {
        None | Some("text/plain") => None,
        Some("application/json") => Some(match (gc.response_json_schema, gc.response_schema) {
            (Some(schema), _) => json_schema(schema),
            (None, Some(mut schema)) => {
                normalize_openapi_schema(&mut schema);
                json_schema(schema)
            }
            (None, None) => ResponseFormat::JsonObject,
        }),
        // text/x.enum and friends constrain output in a way no other dialect can express.
        Some(other) => {
            return Err(TranslateError::unsupported(
                format!("responseMimeType {other:?} cannot be translated"),
                Some("generationConfig.responseMimeType"),
            ))
        }
    };
    if let Some(tc) = gc.thinking_config {
        req.reasoning = decode_thinking(tc)?;
    }
    Ok(())
}

fn json_schema(schema: Value) -> ResponseFormat {
    ResponseFormat::JsonSchema {
        // Gemini schemas are unnamed; OpenAI requires a name.
        name: "response".to_owned(),
        schema,
        strict: None,
    }
}

fn decode_thinking(tc: ThinkingConfig) -> Result<Option<Reasoning>, TranslateError> {
    let effort = tc
        .thinking_level
        .map(|l| l.to_ascii_lowercase())
        .filter(|l| !l.is_empty() && l != "thinking_level_unspecified");
    Ok(match tc.thinking_budget {
        Some(0) => Some(Reasoning {
            effort: None,
            budget_tokens: None,
            enabled: false,
        }),
        // -1: dynamic thinking, the model decides.
        Some(b) if b < 0 => Some(Reasoning {
            effort,
            budget_tokens: None,
            enabled: true,
        }),
        Some(b) => Some(Reasoning {
            effort,
            budget_tokens: Some(to_u32(b, "generationConfig.thinkingConfig.thinkingBudget")?),
            enabled: true,
        }),
        None if effort.is_some() || tc.include_thoughts == Some(true) => Some(Reasoning {
            effort,
            budget_tokens: None,
            enabled: true,
        }),
        None => None,
    })
}

/// IR → a Gemini request body for a Gemini upstream (the model goes in the URL).
pub fn encode_request(req: &ChatRequest) -> Result<Vec<u8>, TranslateError> {
    // Tool results that don't carry their function name get it from the call they answer.
    let call_names: HashMap<&str, &str> = req
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|p| match p {
            Part::ToolCall { id, name, .. } => Some((id.as_str(), name.as_str())),
            _ => None,
        })
        .collect();

    let mut contents: Vec<Content> = Vec::new();
    for (mi, msg) in req.messages.iter().enumerate() {
        let role = match msg.role {
            Role::User => "user",
            Role::Assistant => "model",
        };
        for (pi, part) in msg.content.iter().enumerate() {
            let param = || format!("messages[{mi}].content[{pi}]");
            let mut wire_parts = Vec::new();
            let part_role =
                encode_part(part, &call_names, &param, &mut wire_parts)?.unwrap_or(role);
            push_parts(&mut contents, part_role, wire_parts);
        }
    }

    let system_instruction = (!req.system.is_empty()).then(|| Content {
        role: None,
        parts: req
            .system
            .iter()
            .filter(|b| !b.text.is_empty())
            .map(|b| text_part(b.text.clone()))
            .collect(),
    });

    let tools = if req.tools.is_empty() {
        Vec::new()
    } else {
        vec![WireTool {
            function_declarations: req
                .tools
                .iter()
                .map(|t| FunctionDeclaration {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    parameters: None,
                    parameters_json_schema: Some(t.parameters.clone()).filter(|p| !p.is_null()),
                })
                .collect(),
            other: Map::new(),
        }]
    };
    // Gemini rejects a function-calling config without declarations.
    let tool_config = match (&req.tool_choice, tools.is_empty()) {
        (Some(choice), false) => Some(ToolConfig {
            function_calling_config: Some(encode_tool_choice(choice)),
        }),
        _ => None,
    };

    let wire = GenerateContentRequest {
        contents,
        system_instruction,
        tools,
        tool_config,
        generation_config: encode_generation_config(req)?,
    };
    Ok(serde_json::to_vec(&wire)?)
}

fn text_part(text: String) -> WirePart {
    WirePart {
        text: Some(text),
        ..WirePart::default()
    }
}

/// Appends parts to the last turn when it has the same role (Gemini wants alternating turns).
fn push_parts(contents: &mut Vec<Content>, role: &str, parts: Vec<WirePart>) {
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
        _ => contents.push(Content {
            role: Some(role.to_owned()),
            parts,
        }),
    }
}

/// Encodes one IR part into `out`; returns the role it must be sent under when that is not the
/// message's own (tool results always go in a user turn).
fn encode_part(
    part: &Part,
    call_names: &HashMap<&str, &str>,
    param: &dyn Fn() -> String,
    out: &mut Vec<WirePart>,
) -> Result<Option<&'static str>, TranslateError> {
    match part {
        // Gemini rejects empty text parts (pitfall 6).
        Part::Text(b) if b.text.is_empty() => {}
        Part::Text(b) => out.push(text_part(b.text.clone())),
        Part::Refusal(s) if s.is_empty() => {}
        Part::Refusal(s) => out.push(text_part(s.clone())),
        Part::Image(source) => out.push(encode_media(source, "image/jpeg", param)?),
        Part::Document { source, .. } => out.push(encode_media(source, "application/pdf", param)?),
        Part::ToolCall {
            name,
            arguments,
            signature,
            ..
        } => {
            if name.is_empty() {
                return Err(TranslateError::unsupported(
                    "tool call name must not be empty",
                    Some(&format!("{}.name", param())),
                ));
            }
            out.push(WirePart {
                function_call: Some(FunctionCall {
                    id: None,
                    name: name.clone(),
                    args: Some(args_object(arguments, param)?),
                }),
                thought_signature: signature.clone(),
                ..WirePart::default()
            });
        }
        Part::ToolResult {
            id,
            name,
            content,
            is_error,
        } => {
            // Never send an empty name (pitfall 12): Gemini matches results to calls by it.
            let name = name
                .as_deref()
                .filter(|n| !n.is_empty())
                .or_else(|| call_names.get(id.as_str()).copied())
                .ok_or_else(|| {
                    TranslateError::unsupported(
                        format!(
                            "tool result {id:?} answers no tool call in this request, and Gemini \
                             needs the function name"
                        ),
                        Some(&param()),
                    )
                })?;
            out.push(WirePart {
                function_response: Some(FunctionResponse {
                    id: None,
                    name: name.to_owned(),
                    response: Some(tool_response_object(content, *is_error)),
                }),
                ..WirePart::default()
            });
            // functionResponse holds JSON only: images of the result follow it in the turn.
            for p in content {
                match p {
                    Part::Image(source) => out.push(encode_media(source, "image/jpeg", param)?),
                    Part::Document { source, .. } => {
                        out.push(encode_media(source, "application/pdf", param)?)
                    }
                    _ => {}
                }
            }
            return Ok(Some("user"));
        }
        // Only signed thoughts can be replayed; unsigned ones are the model's past musings.
        Part::Thinking {
            text,
            signature: Some(sig),
        } => out.push(WirePart {
            text: Some(text.clone()),
            thought: Some(true),
            thought_signature: Some(sig.clone()),
            ..WirePart::default()
        }),
        Part::Thinking {
            signature: None, ..
        }
        | Part::RedactedThinking { .. } => {}
    }
    Ok(None)
}

/// Tool-call argument text → the `args` object Gemini requires.
fn args_object(arguments: &str, param: &dyn Fn() -> String) -> Result<Value, TranslateError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(TranslateError::unsupported(
            "tool call arguments must be a JSON object",
            Some(&format!("{}.arguments", param())),
        )),
    }
}

/// Tool result → `functionResponse.response`, which must be an object: a JSON-object result is
/// kept as is, other text is wrapped as `{"result": text}` (`{"error": text}` for errors).
fn tool_response_object(content: &[Part], is_error: bool) -> Value {
    let text = content
        .iter()
        .filter_map(|p| match p {
            Part::Text(b) => Some(b.text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    if !is_error {
        if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(&text) {
            return v;
        }
    }
    let mut m = Map::new();
    let key = if is_error { "error" } else { "result" };
    m.insert(key.to_owned(), Value::String(text));
    Value::Object(m)
}

pub(super) fn encode_media(
    source: &ImageSource,
    default_mime: &str,
    param: &dyn Fn() -> String,
) -> Result<WirePart, TranslateError> {
    let part = match source {
        ImageSource::Base64 { media_type, data } => WirePart {
            inline_data: Some(Blob {
                mime_type: media_type.clone(),
                data: data.clone(),
            }),
            ..WirePart::default()
        },
        ImageSource::Url { url } if url.starts_with("data:") => {
            let (mime_type, data) = parse_data_url(url).ok_or_else(|| {
                TranslateError::unsupported("only base64 data: URLs are supported", Some(&param()))
            })?;
            WirePart {
                inline_data: Some(Blob { mime_type, data }),
                ..WirePart::default()
            }
        }
        ImageSource::Url { url } => WirePart {
            file_data: Some(FileData {
                mime_type: Some(guess_mime(url).unwrap_or(default_mime).to_owned()),
                file_uri: url.clone(),
            }),
            ..WirePart::default()
        },
    };
    Ok(part)
}

/// `data:<mime>;base64,<data>` → (mime, data).
fn parse_data_url(url: &str) -> Option<(String, String)> {
    let (meta, data) = url.strip_prefix("data:")?.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    let mime = if mime.is_empty() {
        "application/octet-stream"
    } else {
        mime
    };
    Some((mime.to_owned(), data.to_owned()))
}

/// Media type from a URL's file extension (query and fragment ignored).
pub(super) fn guess_mime(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let file = path.rsplit('/').next().unwrap_or(path);
    let (_, ext) = file.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        _ => return None,
    })
}

fn encode_tool_choice(choice: &ToolChoice) -> FunctionCallingConfig {
    let (mode, allowed) = match choice {
        ToolChoice::Auto => ("AUTO", Vec::new()),
        ToolChoice::Required => ("ANY", Vec::new()),
        ToolChoice::None => ("NONE", Vec::new()),
        ToolChoice::Tool(name) => ("ANY", vec![name.clone()]),
    };
    FunctionCallingConfig {
        mode: Some(mode.to_owned()),
        allowed_function_names: allowed,
    }
}

fn encode_generation_config(req: &ChatRequest) -> Result<Option<GenerationConfig>, TranslateError> {
    let temperature = match req.temperature {
        Some(t) if !t.is_finite() => {
            return Err(TranslateError::unsupported(
                "temperature must be a number",
                Some("temperature"),
            ))
        }
        // Same 0–2 scale as the IR; clamped so an out-of-range value is not a 400 upstream.
        t => t.map(|t| t.clamp(0.0, 2.0)),
    };
    let candidate_count = match req.n {
        None => None,
        Some(1) => Some(1),
        Some(n) => {
            return Err(TranslateError::unsupported(
                format!("n = {n} is not supported: only one choice can be translated"),
                Some("n"),
            ))
        }
    };
    let (response_mime_type, response_json_schema) = match &req.response_format {
        None | Some(ResponseFormat::Text) => (None, None),
        Some(ResponseFormat::JsonObject) => (Some("application/json".to_owned()), None),
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            (Some("application/json".to_owned()), Some(schema.clone()))
        }
    };
    let gc = GenerationConfig {
        temperature,
        top_p: req.top_p,
        top_k: req.top_k.map(i64::from),
        candidate_count,
        max_output_tokens: req.max_tokens.map(i64::from),
        stop_sequences: req.stop.iter().filter(|s| !s.is_empty()).cloned().collect(),
        response_mime_type,
        response_schema: None,
        response_json_schema,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        // Gemini's seed is int32; folding keeps "same seed, same sample" for larger seeds.
        seed: req
            .seed
            .map(|s| i64::from(i32::try_from(s).unwrap_or((s & 0x7fff_ffff) as i32))),
        thinking_config: req.reasoning.as_ref().map(encode_thinking),
    };
    Ok(Some(gc).filter(|gc| *gc != GenerationConfig::default()))
}

fn encode_thinking(r: &Reasoning) -> ThinkingConfig {
    if !r.enabled {
        return ThinkingConfig {
            thinking_budget: Some(0),
            ..ThinkingConfig::default()
        };
    }
    let budget = match (r.budget_tokens, r.effort.as_deref()) {
        (Some(b), _) => i64::from(b),
        (None, Some(effort)) => match effort.to_ascii_lowercase().as_str() {
            "none" => 0,
            // The smallest budget every thinking Gemini model accepts (Flash-Lite's minimum).
            "minimal" => 512,
            "low" => 1024,
            "medium" => 8192,
            _ => 24576,
        },
        // Enabled without a size: dynamic thinking.
        (None, None) => -1,
    };
    ThinkingConfig {
        thinking_budget: Some(budget),
        include_thoughts: Some(budget != 0),
        thinking_level: None,
    }
}
