//! Upstream URLs for the provider kinds whose URL depends on the request (model, deployment,
//! streaming): Azure deployments, Anthropic, Gemini, Bedrock. OpenAI-kind URIs are fixed per
//! endpoint and built once when a snapshot is compiled.

use http::Uri;

use super::bedrock_sign;
use super::Endpoint;
use crate::config::ProviderKind;

/// The upstream URI for one request; `base` is the provider's base URL without a trailing
/// slash, `model` the upstream model name (Azure's deployment when the target names none).
pub fn upstream_uri(
    kind: ProviderKind,
    base: &str,
    api_version: Option<&str>,
    endpoint: Endpoint,
    model: &str,
    deployment: Option<&str>,
    stream: bool,
) -> Result<Uri, String> {
    let seg = |s: &str| percent_encoding::utf8_percent_encode(s, bedrock_sign::SEGMENT).to_string();
    let full = match (kind, endpoint) {
        (ProviderKind::Azure, e) if e != Endpoint::CountTokens => {
            let dep = deployment.unwrap_or(model);
            match api_version {
                Some(v) => format!(
                    "{base}/openai/deployments/{}{}?api-version={}",
                    seg(dep),
                    e.path(),
                    seg(v)
                ),
                None => format!("{base}/openai/v1{}", e.path()),
            }
        }
        (ProviderKind::Anthropic, Endpoint::ChatCompletions) => format!("{base}/v1/messages"),
        (ProviderKind::Anthropic, Endpoint::CountTokens) => {
            format!("{base}/v1/messages/count_tokens")
        }
        (ProviderKind::Gemini, Endpoint::ChatCompletions) => {
            if stream {
                format!(
                    "{base}/v1beta/models/{}:streamGenerateContent?alt=sse",
                    seg(model)
                )
            } else {
                format!("{base}/v1beta/models/{}:generateContent", seg(model))
            }
        }
        (ProviderKind::Bedrock, Endpoint::ChatCompletions) => {
            format!("{base}{}", bedrock_sign::model_path(model, stream))
        }
        (kind, e) => {
            return Err(format!(
                "{} providers have no {} endpoint",
                kind.as_str(),
                e.label()
            ))
        }
    };
    full.parse()
        .map_err(|e| format!("invalid upstream URI: {e}"))
}
