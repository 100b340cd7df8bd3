//! Fixture loading and SSE helpers. Fixtures live in `tests/fixtures/` (never `../shared`).

use std::path::PathBuf;

use serde_json::Value;

pub const CHAT_NONSTREAM: &str = "openai-chat-nonstream.json";
pub const STREAM_TEXT: &str = "openai-chat-stream-text-usage.sse";
pub const STREAM_TEXT_REQUEST: &str = "openai-chat-stream-text-usage.request.json";
pub const STREAM_TOOL: &str = "openai-chat-stream-tool-call-usage.sse";
pub const STREAM_TOOL_REQUEST: &str = "openai-chat-stream-tool-call-usage.request.json";
pub const STREAM_LENGTH: &str = "openai-chat-stream-finish-length.sse";
pub const STREAM_REFUSAL: &str = "openai-chat-stream-refusal.sse";
pub const EMBEDDINGS: &str = "openai-embeddings.json";
pub const ERR_400_INVALID_PARAM: &str = "openai-error-400-invalid-param.json";
pub const ERR_400_UNSUPPORTED: &str = "openai-error-400-unsupported-parameter.json";
pub const ERR_429: &str = "openai-error-429-rate-limit.json";

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// Raw bytes of a fixture file.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading fixture {}: {e}", path.display()))
}

/// The `body` of a `*.request.json` fixture, as JSON.
pub fn fixture_request_body(name: &str) -> Value {
    let v: Value = serde_json::from_slice(&fixture(name)).expect("request fixture is JSON");
    v.get("body").cloned().expect("request fixture has a body")
}

/// Splits an SSE body into events, each keeping its delimiter: an event ends at the first
/// `\n\n` or `\r\n\r\n` (Gemini's) after its start. A trailing partial event (no delimiter) is
/// the last element. The bytes are untouched: the events concatenated are `body`.
pub fn sse_events(body: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < body.len() {
        let rest = &body[i..];
        let delimiter = if rest.starts_with(b"\r\n\r\n") {
            4
        } else if rest.starts_with(b"\n\n") {
            2
        } else {
            0
        };
        if delimiter == 0 {
            i += 1;
            continue;
        }
        i += delimiter;
        out.push(body[start..i].to_vec());
        start = i;
    }
    if start < body.len() {
        out.push(body[start..].to_vec());
    }
    out
}

/// The JSON payload of an SSE event's `data:` line (None for `[DONE]` / non-JSON).
pub fn event_json(event: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(event).ok()?;
    let data: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&data).ok()
}

/// True for the usage-only chunk OpenAI sends with `include_usage` (`"choices":[]` + usage object).
pub fn is_usage_only_event(event: &[u8]) -> bool {
    match event_json(event) {
        Some(v) => {
            v.get("choices")
                .and_then(Value::as_array)
                .is_some_and(|c| c.is_empty())
                && v.get("usage").is_some_and(Value::is_object)
        }
        None => false,
    }
}

/// What OpenAI would have sent without `stream_options.include_usage`: every `,"usage":null`
/// removed and the usage-only chunk event dropped.
pub fn strip_usage(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for ev in sse_events(body) {
        if is_usage_only_event(&ev) {
            continue;
        }
        out.extend_from_slice(&remove_all(&ev, br#","usage":null"#));
    }
    out
}

/// Removes every occurrence of `needle` from `hay`.
pub fn remove_all(hay: &[u8], needle: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Replaces the first occurrence of `from` by `to` (panics if absent).
pub fn replace_once(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let pos = find(hay, from).expect("pattern present");
    let mut out = hay[..pos].to_vec();
    out.extend_from_slice(to);
    out.extend_from_slice(&hay[pos + from.len()..]);
    out
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// Concatenation of `choices[0].delta.content` over a chat stream.
pub fn stream_content(body: &[u8]) -> String {
    let mut s = String::new();
    for ev in sse_events(body) {
        if let Some(v) = event_json(&ev) {
            if let Some(c) = v
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
            {
                s.push_str(c);
            }
        }
    }
    s
}

/// Concatenation of `choices[0].delta.refusal` over a chat stream.
pub fn stream_refusal(body: &[u8]) -> String {
    let mut s = String::new();
    for ev in sse_events(body) {
        if let Some(v) = event_json(&ev) {
            if let Some(c) = v
                .pointer("/choices/0/delta/refusal")
                .and_then(Value::as_str)
            {
                s.push_str(c);
            }
        }
    }
    s
}

/// (prompt_tokens, completion_tokens) of the last usage object in a stream.
pub fn stream_usage(body: &[u8]) -> Option<(u64, u64)> {
    let mut found = None;
    for ev in sse_events(body) {
        if let Some(v) = event_json(&ev) {
            if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                found = Some((
                    u["prompt_tokens"].as_u64().expect("prompt_tokens"),
                    u["completion_tokens"].as_u64().expect("completion_tokens"),
                ));
            }
        }
    }
    found
}

/// (prompt_tokens, completion_tokens) of a non-stream JSON body.
pub fn body_usage(body: &[u8]) -> (u64, u64) {
    let v: Value = serde_json::from_slice(body).expect("JSON body");
    (
        v["usage"]["prompt_tokens"].as_u64().expect("prompt_tokens"),
        v["usage"]["completion_tokens"]
            .as_u64()
            .expect("completion_tokens"),
    )
}

/// Human-friendly diff hint for byte comparisons: first differing offset plus context.
pub fn first_difference(a: &[u8], b: &[u8]) -> String {
    let n = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    if n == a.len() && n == b.len() {
        return "identical".into();
    }
    let ctx = |s: &[u8]| {
        let lo = n.saturating_sub(40);
        let hi = (n + 80).min(s.len());
        String::from_utf8_lossy(&s[lo.min(hi)..hi]).into_owned()
    };
    format!(
        "lengths {} vs {}; first difference at byte {n}:\n  left : {:?}\n  right: {:?}",
        a.len(),
        b.len(),
        ctx(a),
        ctx(b)
    )
}

/// Asserts two byte strings are equal, printing a readable difference.
#[track_caller]
pub fn assert_bytes_eq(actual: &[u8], expected: &[u8], what: &str) {
    if actual != expected {
        panic!(
            "{what}: bytes differ; {}",
            first_difference(actual, expected)
        );
    }
}
