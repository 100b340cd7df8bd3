//! Token usage, normalised from whatever dialect reported it.

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
        }
    }
}

/// Usage from an OpenAI response body or stream chunk (`{"usage":{...}}` at top level).
/// Returns `None` when there is no usage object or the JSON is not understood.
pub fn from_openai_json(json: &[u8]) -> Option<Usage> {
    let parsed: WithUsage = serde_json::from_slice(json).ok()?;
    parsed.usage.map(Usage::from)
}

/// Cheap pre-check before parsing a stream chunk: does it carry a usage object (not `null`)?
pub fn mentions_usage_object(payload: &[u8]) -> bool {
    memchr::memmem::find_iter(payload, b"\"usage\":").any(|i| {
        payload[i + 8..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'{')
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
                reasoning: 9
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
    fn usage_object_precheck() {
        assert!(mentions_usage_object(br#"{"usage":{"a":1}}"#));
        assert!(mentions_usage_object(br#"{"usage": {"a":1}}"#));
        assert!(!mentions_usage_object(br#"{"usage":null}"#));
        assert!(mentions_usage_object(br#"{"x":{"usage":null},"usage":{}}"#));
    }

    #[test]
    fn embeddings_usage_has_no_completion() {
        let u = from_openai_json(br#"{"usage":{"prompt_tokens":12,"total_tokens":12}}"#).unwrap();
        assert_eq!((u.input, u.output), (12, 0));
    }
}
