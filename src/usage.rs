//! Token usage, normalised from whatever dialect reported it.

use std::sync::LazyLock;

use memchr::memmem;
use serde::Deserialize;

/// One request's token usage. `input` counts every prompt token, cached ones included
/// (`cache_read` and `cache_write` are subsets of it); `output` includes `reasoning`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub reasoning: u64,
    /// True when the numbers are the gateway's estimate (the stream ended before the
    /// provider reported usage), not the provider's count.
    pub estimated: bool,
}

impl Usage {
    /// No token counted at all: what a decoder defaults to when the provider reported no
    /// usage. Nothing can be priced from it (a cost of 0 would be made up).
    pub fn counts_nothing(&self) -> bool {
        self.input == 0 && self.output == 0
    }
}

#[derive(Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_write_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<OpenAiUsage>,
}

impl From<OpenAiUsage> for Usage {
    fn from(u: OpenAiUsage) -> Self {
        let details = u.prompt_tokens_details;
        Usage {
            input: u.prompt_tokens.unwrap_or(0),
            output: u.completion_tokens.unwrap_or(0),
            cache_read: details.as_ref().and_then(|d| d.cached_tokens).unwrap_or(0),
            cache_write: details.and_then(|d| d.cache_write_tokens).unwrap_or(0),
            reasoning: u
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
            estimated: false,
        }
    }
}

/// Usage from an OpenAI response body or stream chunk (`{"usage":{...}}` at top level).
/// Returns `None` when there is no usage object or the JSON is not understood.
pub fn from_openai_json(json: &[u8]) -> Option<Usage> {
    let parsed: WithUsage = serde_json::from_slice(json).ok()?;
    parsed.usage.map(Usage::from)
}

/// Where a `"usage":` member sits in a JSON text, and what its value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageField {
    Absent,
    /// `"usage":null`; `key_at` is the offset of the opening quote of `"usage"`.
    Null {
        key_at: usize,
        value_end: usize,
    },
    /// `"usage":{...}`; `value_at` is the offset of the `{`.
    Object {
        value_at: usize,
    },
}

static USAGE_KEY: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"usage\":"));

/// Finds the last `"usage":` member in `json` (a forward SIMD scan; the reverse searcher has no
/// SIMD path and cost several times more). A key spelled like that can
/// only be a real member, never string content (where the quotes would be escaped); the last one
/// is the top-level member in every OpenAI-dialect body and chunk, which put `usage` after
/// `choices`.
pub fn find_usage_field(json: &[u8]) -> UsageField {
    // Fast path: OpenAI-dialect chunks end with `"usage":null` or `"usage":{...}` followed by at
    // most a few members, so walking back over the last few colons finds the key after a handful
    // of short `memrchr` calls; only bodies where it is not among the last colons pay for the
    // full forward search.
    let mut end = json.len();
    let mut found = None;
    for _ in 0..6 {
        let Some(colon) = memchr::memrchr(b':', &json[..end]) else {
            return UsageField::Absent;
        };
        if colon >= 7 && &json[colon - 7..colon] == b"\"usage\"" {
            found = Some(colon - 7);
            break;
        }
        end = colon;
    }
    let key_at = match found {
        Some(k) => k,
        None => match USAGE_KEY.find_iter(json).last() {
            Some(k) => k,
            None => return UsageField::Absent,
        },
    };
    let after = key_at + 8;
    let Some(offset) = json[after..].iter().position(|b| !b.is_ascii_whitespace()) else {
        return UsageField::Absent;
    };
    let value_at = after + offset;
    match json[value_at] {
        b'{' => UsageField::Object { value_at },
        b'n' if json[value_at..].starts_with(b"null") => UsageField::Null {
            key_at,
            value_end: value_at + 4,
        },
        _ => UsageField::Absent,
    }
}

/// Reads the usage object that starts at `value_at` (its `{`); `None` if it is cut off.
///
/// Hand-written because it runs on every response and stream: one pass over the object's bytes
/// costs about a thousand instructions on OpenAI's usage object where serde's struct visitor
/// cost ~5k (and a `memchr` per key ~2.9k). Numbers are
/// picked up by key name at any depth (`cached_tokens` lives in `prompt_tokens_details`); the
/// caller has already found the object with `find_usage_field`; a truncated object gives `None`,
/// and callers then fall back to serde.
pub fn parse_openai_usage_at(json: &[u8], value_at: usize) -> Option<Usage> {
    if json.get(value_at) != Some(&b'{') {
        return None;
    }
    let mut u = Usage::default();
    let mut depth = 0usize;
    let mut i = value_at;
    // One pass over the object's bytes. The spans between structural bytes are a few bytes
    // long, so a plain loop beats a `memchr` call per span (its setup costs more than the
    // search); each key is compared against the known ones in place (constant-length
    // comparisons, no scan), and only unknown keys are scanned for their closing quote.
    while let Some(&b) = json.get(i) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(u);
                }
            }
            b'"' => {
                let rest = &json[i + 1..];
                let (key_len, field) = match known_key(rest) {
                    Some(found) => found,
                    None => (short_string_end(rest)?, None),
                };
                let mut j = i + 1 + key_len + 1;
                while j < json.len() && (json[j] == b':' || json[j].is_ascii_whitespace()) {
                    j += 1;
                }
                if json.get(j) == Some(&b'"') {
                    // A string value (not a key): skip it whole.
                    i = j + 1 + short_string_end(&json[j + 1..])? + 1;
                    continue;
                }
                let mut n: u64 = 0;
                let digits_from = j;
                while j < json.len() && json[j].is_ascii_digit() {
                    n = n.checked_mul(10)?.checked_add(u64::from(json[j] - b'0'))?;
                    j += 1;
                }
                if j > digits_from {
                    if let Some(field) = field {
                        *field.of(&mut u) = n;
                    }
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The usage counts an OpenAI usage object carries, by key.
#[derive(Clone, Copy)]
enum UsageKey {
    Prompt,
    Completion,
    Cached,
    CacheWrite,
    Reasoning,
}

impl UsageKey {
    fn of(self, u: &mut Usage) -> &mut u64 {
        match self {
            UsageKey::Prompt => &mut u.input,
            UsageKey::Completion => &mut u.output,
            UsageKey::Cached => &mut u.cache_read,
            UsageKey::CacheWrite => &mut u.cache_write,
            UsageKey::Reasoning => &mut u.reasoning,
        }
    }
}

/// `rest` starts right after a key's opening quote: the key's length and which count it is,
/// for the keys OpenAI's usage object has (its closing quote included in each comparison, so
/// `prompt_tokens_details` is not `prompt_tokens`). Known keys are compared at constant length
/// instead of scanned; others (`None`) are scanned for their closing quote.
#[inline]
fn known_key(rest: &[u8]) -> Option<(usize, Option<UsageKey>)> {
    let key = |name: &[u8], which| rest.starts_with(name).then_some((name.len() - 1, which));
    use UsageKey::*;
    match rest.first()? {
        b'p' => {
            key(b"prompt_tokens\"", Some(Prompt)).or_else(|| key(b"prompt_tokens_details\"", None))
        }
        b'c' => key(b"completion_tokens\"", Some(Completion))
            .or_else(|| key(b"cached_tokens\"", Some(Cached)))
            .or_else(|| key(b"cache_write_tokens\"", Some(CacheWrite)))
            .or_else(|| key(b"completion_tokens_details\"", None)),
        b'r' => key(b"reasoning_tokens\"", Some(Reasoning))
            .or_else(|| key(b"rejected_prediction_tokens\"", None)),
        b't' => key(b"total_tokens\"", None),
        b'a' => key(b"audio_tokens\"", None).or_else(|| key(b"accepted_prediction_tokens\"", None)),
        _ => None,
    }
}

/// Length of a short JSON string's content (`s` starts right after its opening quote), up to
/// its closing quote.
fn short_string_end(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => return Some(i),
            b'\\' => i += 2, // skip the escaped character
            _ => i += 1,
        }
    }
    None
}

/// Usage of a whole non-stream response body: the cheap scan first, a full parse as fallback.
pub fn from_openai_body(json: &[u8]) -> Option<Usage> {
    match find_usage_field(json) {
        UsageField::Object { value_at } => {
            parse_openai_usage_at(json, value_at).or_else(|| from_openai_json(json))
        }
        UsageField::Null { .. } => None,
        UsageField::Absent => None,
    }
}

/// A pass-through stream's usage: as reported, or, when the stream ended before reporting it
/// (client disconnect, upstream failure), estimated from what was seen: the request's size for
/// the prompt, and one token per data event after the first (which carries only the start).
pub fn reported_or_estimated(
    reported: Option<Usage>,
    data_events: u64,
    estimated_input: u64,
) -> Option<Usage> {
    if reported.is_some() {
        return reported;
    }
    (data_events > 0).then(|| Usage {
        input: estimated_input,
        output: data_events.saturating_sub(1),
        estimated: true,
        ..Usage::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_openai_usage_with_details() {
        let u = from_openai_json(
            br#"{"id":"x","usage":{"prompt_tokens":16,"completion_tokens":363,"total_tokens":379,
            "prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":9}}}"#,
        )
        .unwrap();
        assert_eq!(
            u,
            Usage {
                input: 16,
                output: 363,
                cache_read: 4,
                cache_write: 0,
                reasoning: 9,
                estimated: false,
            }
        );
    }

    #[test]
    fn null_or_missing_usage_is_none() {
        assert_eq!(from_openai_json(br#"{"usage":null}"#), None);
        assert_eq!(from_openai_json(br#"{"choices":[]}"#), None);
        assert_eq!(from_openai_json(b"not json"), None);
    }

    #[test]
    fn finds_the_usage_member() {
        let chunk = br#"{"id":"x","choices":[],"usage": {"prompt_tokens":3}}"#;
        match find_usage_field(chunk) {
            UsageField::Object { value_at } => {
                assert_eq!(
                    parse_openai_usage_at(chunk, value_at).map(|u| u.input),
                    Some(3)
                )
            }
            other => panic!("{other:?}"),
        }
        let chunk = br#"{"choices":[{"delta":{"content":"\"usage\":{"}}],"usage":null}"#;
        match find_usage_field(chunk) {
            UsageField::Null { key_at, value_end } => {
                assert_eq!(&chunk[key_at..value_end], br#""usage":null"#)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(find_usage_field(br#"{"choices":[]}"#), UsageField::Absent);
    }

    #[test]
    fn hand_scan_agrees_with_serde_on_real_shapes() {
        let bodies: [&[u8]; 5] = [
            br#"{"usage":{"prompt_tokens_x":1,"prompt_tokens":2,"note":"\"completion_tokens\":9","completion_tokens":3,"k\"ey":7,"prompt_tokens_details":{"cached_tokensx":8,"cached_tokens":4}}}"#,
            br#"{"usage":{"prompt_tokens":16,"completion_tokens":363,"total_tokens":379,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":7,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#,
            br#"{"usage": { "prompt_tokens" : 78 , "completion_tokens":9, "total_tokens":87, "prompt_tokens_details":{"cached_tokens":64,"cache_write_tokens":3}, "cost": 0.5e-3, "flag": true, "x": null, "list": [1, "a\"}"]}}"#,
            br#"{"usage":{"prompt_tokens":12,"total_tokens":12}}"#,
            br#"{"usage":{}}"#,
        ];
        for body in bodies {
            let UsageField::Object { value_at } = find_usage_field(body) else {
                panic!("no usage in {}", String::from_utf8_lossy(body));
            };
            assert_eq!(
                parse_openai_usage_at(body, value_at),
                from_openai_json(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn hand_scan_rejects_truncated_objects() {
        let body = br#"{"usage":{"prompt_tokens":16,"completion"#;
        assert_eq!(parse_openai_usage_at(body, 9), None);
    }

    #[test]
    fn usage_far_from_the_end_is_still_found() {
        let body = br#"{"usage":{"prompt_tokens":5,"completion_tokens":6},"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":{"i":8}}"#;
        assert_eq!(
            from_openai_body(body).map(|u| (u.input, u.output)),
            Some((5, 6))
        );
        assert_eq!(find_usage_field(br#"{"a":1,"b":2}"#), UsageField::Absent);
        assert_eq!(find_usage_field(b"no colon at all"), UsageField::Absent);
    }

    #[test]
    fn body_usage_matches_full_parse() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"usage: none"}}],"usage":{"prompt_tokens":16,"completion_tokens":363,"total_tokens":379,"prompt_tokens_details":{"cached_tokens":4}},"service_tier":"default"}"#;
        assert_eq!(from_openai_body(body), from_openai_json(body));
        assert_eq!(from_openai_body(body).map(|u| u.cache_read), Some(4));
        assert_eq!(from_openai_body(br#"{"usage":null}"#), None);
    }

    #[test]
    fn embeddings_usage_has_no_completion() {
        let u = from_openai_json(br#"{"usage":{"prompt_tokens":12,"total_tokens":12}}"#).unwrap();
        assert_eq!((u.input, u.output), (12, 0));
    }
}

// Other dialects' usage objects. Only gateway bookkeeping reads these (never the hot
// OpenAI path), so plain serde structs are enough.

#[derive(Deserialize, Default)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct AnthropicEnvelope {
    #[serde(default)]
    usage: Option<AnthropicUsage>,
    /// `message_start` nests the message.
    #[serde(default)]
    message: Option<Box<AnthropicEnvelope>>,
}

/// Updates `acc` from an Anthropic message body or stream event (`message_start`,
/// `message_delta`). Anthropic's `input_tokens` excludes cache reads and writes; ours includes
/// them. Stream usage is cumulative, so present fields replace earlier values.
pub fn update_from_anthropic_json(json: &[u8], acc: &mut Option<Usage>) -> bool {
    let Ok(env) = serde_json::from_slice::<AnthropicEnvelope>(json) else {
        return false;
    };
    let Some(u) = env.usage.or_else(|| env.message.and_then(|m| m.usage)) else {
        return false;
    };
    let cur = acc.get_or_insert_with(Usage::default);
    let uncached = u
        .input_tokens
        .unwrap_or(cur.input.saturating_sub(cur.cache_read + cur.cache_write));
    if let Some(r) = u.cache_read_input_tokens {
        cur.cache_read = r;
    }
    if let Some(w) = u.cache_creation_input_tokens {
        cur.cache_write = w;
    }
    cur.input = uncached + cur.cache_read + cur.cache_write;
    if let Some(o) = u.output_tokens {
        cur.output = o;
    }
    true
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiUsage {
    #[serde(default)]
    prompt_token_count: Option<u64>,
    #[serde(default)]
    candidates_token_count: Option<u64>,
    #[serde(default)]
    thoughts_token_count: Option<u64>,
    #[serde(default)]
    cached_content_token_count: Option<u64>,
    #[serde(default)]
    tool_use_prompt_token_count: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiEnvelope {
    #[serde(default)]
    usage_metadata: Option<GeminiUsage>,
}

/// Usage from a Gemini response or stream event (`usageMetadata`, cumulative per event).
pub fn from_gemini_json(json: &[u8]) -> Option<Usage> {
    let u = serde_json::from_slice::<GeminiEnvelope>(json)
        .ok()?
        .usage_metadata?;
    let thoughts = u.thoughts_token_count.unwrap_or(0);
    Some(Usage {
        input: u.prompt_token_count.unwrap_or(0) + u.tool_use_prompt_token_count.unwrap_or(0),
        output: u.candidates_token_count.unwrap_or(0) + thoughts,
        cache_read: u.cached_content_token_count.unwrap_or(0),
        cache_write: 0,
        reasoning: thoughts,
        estimated: false,
    })
}

#[derive(Deserialize)]
struct ResponsesUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    input_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    output_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct ResponsesEnvelope {
    #[serde(default)]
    usage: Option<ResponsesUsage>,
    /// Stream events (`response.completed`) nest the response.
    #[serde(default)]
    response: Option<Box<ResponsesEnvelope>>,
}

/// Usage from an OpenAI Responses API body or terminal stream event.
pub fn from_responses_json(json: &[u8]) -> Option<Usage> {
    let env = serde_json::from_slice::<ResponsesEnvelope>(json).ok()?;
    let u = env.usage.or_else(|| env.response.and_then(|r| r.usage))?;
    Some(Usage {
        input: u.input_tokens.unwrap_or(0),
        output: u.output_tokens.unwrap_or(0),
        cache_read: u
            .input_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0),
        cache_write: 0,
        reasoning: u
            .output_tokens_details
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0),
        estimated: false,
    })
}

#[cfg(test)]
mod dialect_tests {
    use super::*;

    #[test]
    fn anthropic_usage_adds_cache_to_input_and_takes_last_values() {
        let mut acc = None;
        let start = br#"{"type":"message_start","message":{"usage":{"input_tokens":10,"cache_read_input_tokens":100,"cache_creation_input_tokens":5,"output_tokens":1}}}"#;
        assert!(update_from_anthropic_json(start, &mut acc));
        assert_eq!(
            acc.map(|u| (u.input, u.output, u.cache_read, u.cache_write)),
            Some((115, 1, 100, 5))
        );
        let delta = br#"{"type":"message_delta","delta":{},"usage":{"output_tokens":42}}"#;
        assert!(update_from_anthropic_json(delta, &mut acc));
        assert_eq!(acc.map(|u| (u.input, u.output)), Some((115, 42)));
        assert!(!update_from_anthropic_json(br#"{"type":"ping"}"#, &mut acc));
    }

    #[test]
    fn gemini_and_responses_usage() {
        let g = br#"{"usageMetadata":{"promptTokenCount":18,"candidatesTokenCount":80,"thoughtsTokenCount":35,"totalTokenCount":133,"cachedContentTokenCount":4}}"#;
        let u = from_gemini_json(g).unwrap();
        assert_eq!(
            (u.input, u.output, u.reasoning, u.cache_read),
            (18, 115, 35, 4)
        );
        let r = br#"{"type":"response.completed","response":{"usage":{"input_tokens":7,"input_tokens_details":{"cached_tokens":2},"output_tokens":9,"output_tokens_details":{"reasoning_tokens":3}}}}"#;
        let u = from_responses_json(r).unwrap();
        assert_eq!((u.input, u.output, u.cache_read, u.reasoning), (7, 9, 2, 3));
    }
}
