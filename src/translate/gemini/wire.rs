//! Gemini wire types (proto3 JSON), for requests and responses alike.
//!
//! Gemini answers in camelCase but accepts requests in camelCase or snake_case, so every
//! multi-word field also has its snake_case `alias`. Unknown fields are ignored; `null` where a
//! list is expected reads as empty.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use serde_with::skip_serializing_none;

/// `null` → the default (proto3 JSON writers may send `null` for an empty repeated field).
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An integer that may arrive as a JSON number, an integral float (the Python SDK types `topK`
/// as float) or a decimal string (proto3 JSON allows strings for integers).
fn lenient_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        I(i64),
        F(f64),
        S(String),
    }
    match Option::<Num>::deserialize(d)? {
        None => Ok(None),
        Some(Num::I(i)) => Ok(Some(i)),
        // Integral and within the range an f64 holds exactly, so the cast is lossless.
        Some(Num::F(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
        Some(Num::F(f)) => Err(D::Error::custom(format!("expected an integer, got {f}"))),
        Some(Num::S(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("expected an integer, got {s:?}"))),
    }
}

#[skip_serializing_none]
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Content {
    pub role: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub parts: Vec<WirePart>,
}

#[skip_serializing_none]
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct WirePart {
    pub text: Option<String>,
    pub thought: Option<bool>,
    #[serde(alias = "thought_signature")]
    pub thought_signature: Option<String>,
    #[serde(alias = "inline_data")]
    pub inline_data: Option<Blob>,
    #[serde(alias = "file_data")]
    pub file_data: Option<FileData>,
    #[serde(alias = "function_call")]
    pub function_call: Option<FunctionCall>,
    #[serde(alias = "function_response")]
    pub function_response: Option<FunctionResponse>,
}

#[skip_serializing_none]
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Blob {
    #[serde(alias = "mime_type")]
    pub mime_type: String,
    pub data: String,
}

#[skip_serializing_none]
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct FileData {
    #[serde(alias = "mime_type")]
    pub mime_type: Option<String>,
    #[serde(alias = "file_uri")]
    pub file_uri: String,
}

#[skip_serializing_none]
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct FunctionCall {
    pub id: Option<String>,
    pub name: String,
    pub args: Option<Value>,
}

#[skip_serializing_none]
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct FunctionResponse {
    pub id: Option<String>,
    pub name: String,
    pub response: Option<Value>,
}

/// `GenerateContentRequest` (the model and stream flag are in the URL, not here).
#[skip_serializing_none]
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct GenerateContentRequest {
    #[serde(deserialize_with = "null_default")]
    pub contents: Vec<Content>,
    #[serde(alias = "system_instruction")]
    pub system_instruction: Option<Content>,
    #[serde(deserialize_with = "null_default")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<WireTool>,
    #[serde(alias = "tool_config")]
    pub tool_config: Option<ToolConfig>,
    #[serde(alias = "generation_config")]
    pub generation_config: Option<GenerationConfig>,
}

#[skip_serializing_none]
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct WireTool {
    #[serde(
        alias = "function_declarations",
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub function_declarations: Vec<FunctionDeclaration>,
    /// Built-in tools (`googleSearch`, `codeExecution`, ...): no other dialect can run them.
    #[serde(flatten, skip_serializing)]
    pub other: Map<String, Value>,
}

#[skip_serializing_none]
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct FunctionDeclaration {
    pub name: String,
    pub description: Option<String>,
    /// OpenAPI-subset schema (uppercase types).
    pub parameters: Option<Value>,
    /// Full JSON Schema.
    #[serde(
        alias = "parameters_json_schema",
        skip_serializing_if = "Option::is_none"
    )]
    pub parameters_json_schema: Option<Value>,
}

#[skip_serializing_none]
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct ToolConfig {
    #[serde(
        alias = "function_calling_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub function_calling_config: Option<FunctionCallingConfig>,
}

#[skip_serializing_none]
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct FunctionCallingConfig {
    pub mode: Option<String>,
    #[serde(
        alias = "allowed_function_names",
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allowed_function_names: Vec<String>,
}

#[skip_serializing_none]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct GenerationConfig {
    pub temperature: Option<f64>,
    #[serde(alias = "top_p")]
    pub top_p: Option<f64>,
    #[serde(
        alias = "top_k",
        deserialize_with = "lenient_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub top_k: Option<i64>,
    #[serde(
        alias = "candidate_count",
        deserialize_with = "lenient_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub candidate_count: Option<i64>,
    #[serde(
        alias = "max_output_tokens",
        deserialize_with = "lenient_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_output_tokens: Option<i64>,
    #[serde(
        alias = "stop_sequences",
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub stop_sequences: Vec<String>,
    #[serde(alias = "response_mime_type")]
    pub response_mime_type: Option<String>,
    #[serde(alias = "response_schema")]
    pub response_schema: Option<Value>,
    #[serde(
        alias = "response_json_schema",
        skip_serializing_if = "Option::is_none"
    )]
    pub response_json_schema: Option<Value>,
    #[serde(alias = "presence_penalty")]
    pub presence_penalty: Option<f64>,
    #[serde(alias = "frequency_penalty")]
    pub frequency_penalty: Option<f64>,
    #[serde(
        deserialize_with = "lenient_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub seed: Option<i64>,
    #[serde(alias = "thinking_config")]
    pub thinking_config: Option<ThinkingConfig>,
}

#[skip_serializing_none]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct ThinkingConfig {
    #[serde(
        alias = "thinking_budget",
        deserialize_with = "lenient_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub thinking_budget: Option<i64>,
    #[serde(alias = "include_thoughts")]
    pub include_thoughts: Option<bool>,
    #[serde(alias = "thinking_level")]
    pub thinking_level: Option<String>,
}

/// `GenerateContentResponse`: a non-stream answer, or one stream event. `error` is set instead
/// when a stream fails after its HTTP 200.
#[skip_serializing_none]
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct GenerateContentResponse {
    #[serde(deserialize_with = "null_default")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
    /// Set when the prompt itself was blocked (then there are no candidates).
    #[serde(alias = "prompt_feedback")]
    pub prompt_feedback: Option<PromptFeedback>,
    /// Token counts; in a stream, every event carries the running totals.
    #[serde(alias = "usage_metadata")]
    pub usage_metadata: Option<UsageMetadata>,
    #[serde(alias = "model_version")]
    pub model_version: Option<String>,
    #[serde(alias = "response_id")]
    pub response_id: Option<String>,
    pub error: Option<Status>,
}

impl GenerateContentResponse {
    /// The first candidate (index 0); others (`candidateCount` > 1) are not translated.
    pub fn candidate0(&self) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.index.unwrap_or(0) == 0)
    }
}

#[skip_serializing_none]
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Candidate {
    pub content: Option<Content>,
    #[serde(alias = "finish_reason")]
    pub finish_reason: Option<String>,
    pub index: Option<u32>,
}

#[skip_serializing_none]
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct PromptFeedback {
    #[serde(alias = "block_reason")]
    pub block_reason: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct UsageMetadata {
    #[serde(alias = "prompt_token_count")]
    pub prompt_token_count: Option<u64>,
    #[serde(
        alias = "candidates_token_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub candidates_token_count: Option<u64>,
    #[serde(
        alias = "thoughts_token_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub thoughts_token_count: Option<u64>,
    #[serde(alias = "total_token_count")]
    pub total_token_count: Option<u64>,
    #[serde(
        alias = "cached_content_token_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub cached_content_token_count: Option<u64>,
    #[serde(
        alias = "tool_use_prompt_token_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub tool_use_prompt_token_count: Option<u64>,
}

/// `google.rpc.Status`, the `error` member of a Gemini error body.
#[skip_serializing_none]
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct Status {
    #[serde(
        deserialize_with = "lenient_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub code: Option<i64>,
    pub message: Option<String>,
    pub status: Option<String>,
    #[serde(deserialize_with = "null_default")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Value>,
}

/// `{"error": Status}`.
#[skip_serializing_none]
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct ErrorEnvelope {
    pub error: Option<Status>,
}
