//! AWS Bedrock Converse (outbound only): the request body for `POST /model/{modelId}/converse`
//! and `/converse-stream`, the non-stream response, the `ConverseStream` events (carried by the
//! binary event-stream framing of `translate::eventstream`) and errors.
//!
//! The model id is not part of the body: it goes in the URL
//! (`providers::bedrock_sign::model_path`), and the stream/non-stream choice is the endpoint.
//! Bedrock responses carry no id and no model name, so `decode_response` synthesises an id and
//! leaves `model` empty for the caller to fill; `StreamDecoder::new` takes the model to report.

mod error;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

pub use error::{decode_error, error_kind};
pub use request::{encode_request, to_bedrock_temperature, DEFAULT_MAX_TOKENS};
pub use response::{decode_response, map_stop_reason};
pub use stream::{feed_message, StreamDecoder};

use serde::Deserialize;

use crate::usage::Usage;

/// Bedrock's `usage` object (response body and stream `metadata` event).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct BedrockUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_write_input_tokens: Option<u64>,
}

impl BedrockUsage {
    /// Bedrock's `inputTokens` counts only the uncached prompt tokens (AWS prompt-caching docs:
    /// `totalTokens = inputTokens + cacheReadInputTokens + cacheWriteInputTokens + outputTokens`;
    /// without cache fields, as in the fixture, `totalTokens = inputTokens + outputTokens`), while
    /// `Usage::input` counts every prompt token, so the cache counts are added back. Bedrock does
    /// not break reasoning tokens out of `outputTokens`, so `reasoning` stays 0.
    fn to_usage(&self) -> Usage {
        let cache_read = self.cache_read_input_tokens.unwrap_or(0);
        let cache_write = self.cache_write_input_tokens.unwrap_or(0);
        Usage {
            input: self
                .input_tokens
                .unwrap_or(0)
                .saturating_add(cache_read)
                .saturating_add(cache_write),
            output: self.output_tokens.unwrap_or(0),
            cache_read,
            cache_write,
            reasoning: 0,
            estimated: false,
        }
    }
}

/// A fresh id for a response Bedrock did not name (the real `x-amzn-requestid` is a header the
/// codec does not see).
fn synth_id() -> String {
    format!("msg_bdrk_{:024x}", fastrand::u128(..) >> 32)
}
