//! The configuration file's typed form, after env-var expansion and validation.
//!
//! These types are what `config::load` produces and `routing::compile` consumes. They hold user
//! intent only; nothing here is resolved for the hot path (that is `routing::Snapshot`'s job).
//! Most are decoded straight from the file by their serde derives (field names, enum names,
//! defaults and per-value checks are all in the attributes); `ProviderConfig` and `Config`
//! are assembled by the validation pass from the file's shape in `validate.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::values as v;
use super::yaml::serde_names;

/// Default listen address when neither the file nor `--listen` says otherwise.
pub const DEFAULT_LISTEN: &str = default_listen!();

/// A whole, validated configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: Option<SocketAddr>,
    pub server: ServerSettings,
    /// Providers in file order, keyed by the user-chosen id.
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    /// `pricing:` entries over the built-in price table, in file order.
    pub pricing: Vec<PriceOverride>,
    /// Virtual keys, budgets and limits; `None` (the default) governs nothing.
    pub governance: Option<super::governance::GovernanceConfig>,
    /// Where request records are kept (defaults applied when the file has no `logs:`).
    pub logs: super::logs::LogsConfig,
}

/// One `pricing:` entry: `vendor/model` or `provider-id/model` (the model part may be a glob).
#[derive(Debug, Clone, PartialEq)]
pub struct PriceOverride {
    pub key: String,
    pub price: crate::pricing::Price,
}

/// Connection- and request-level limits of the listening side.
// Every timeout here is a positive number of milliseconds.
#[serde_with::apply(u64 => #[serde(deserialize_with = "v::positive")])]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Largest request body accepted, in bytes (413 above it).
    #[serde(deserialize_with = "v::size")]
    pub body_limit_bytes: usize,
    /// A client must send its full request head within this time.
    pub header_read_timeout_ms: u64,
    /// A client must send its full request body within this time (408 otherwise).
    pub body_read_timeout_ms: u64,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish.
    pub drain_timeout_ms: u64,
    /// Write one JSON line per request to stderr (off the request path).
    pub request_log: bool,
    /// A client that reads nothing of its response for this long is disconnected.
    pub write_stall_timeout_ms: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 32 * 1024 * 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            drain_timeout_ms: 30_000,
            request_log: true,
            write_stall_timeout_ms: 60_000,
        }
    }
}

/// Which wire protocol and outbound behaviour a provider has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenAI-compatible server (OpenAI, Groq, vLLM, Ollama, ...).
    OpenAi,
    /// Anthropic Messages API (`x-api-key`, `anthropic-version`).
    Anthropic,
    /// Google AI Studio Gemini API (`x-goog-api-key`).
    Gemini,
    /// Azure OpenAI: deployment in the path and `api-version`, or the `/openai/v1` form.
    Azure,
    /// AWS Bedrock Converse / ConverseStream, SigV4-signed or with a Bedrock API key.
    Bedrock,
    /// The built-in, network-free mock that answers in its configured dialect.
    Mock,
}

impl ProviderKind {
    /// The name written in a config file (`kind: openai`), as serde spells it.
    pub fn as_str(self) -> &'static str {
        serde_names::<Self>()
            .get(self as usize)
            .copied()
            .unwrap_or_default()
    }
}

/// How the gateway authenticates to a provider.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Use the configured `keys` (none configured: send no credentials).
    Keys,
    /// Forward the client's own provider credentials (bring-your-own-key).
    Passthrough,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The secret. Never logged or echoed. A key may be written as just this value.
    #[serde(deserialize_with = "v::non_empty")]
    pub value: String,
    #[serde(default = "one", deserialize_with = "v::positive")]
    pub weight: u32,
    /// Requests per minute this key is meant to take (`balance: usage_aware` spreads by the
    /// headroom left under it).
    #[serde(default, deserialize_with = "v::opt_positive")]
    pub rpm: Option<u32>,
    /// Tokens per minute, likewise.
    #[serde(default, deserialize_with = "v::opt_positive")]
    pub tpm: Option<u64>,
}

// Every timeout is a positive number of milliseconds.
#[serde_with::apply(
    u64 => #[serde(deserialize_with = "v::positive")],
    Option<u64> => #[serde(deserialize_with = "v::opt_positive")],
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    pub connect_ms: u64,
    /// How long an idle upstream connection is kept for reuse.
    pub idle_ms: u64,
    /// From sending the request to receiving the response head.
    pub first_byte_ms: u64,
    /// From sending the request to the first content token (text, reasoning, refusal or a
    /// tool-call delta; keep-alives, pings, role-only and empty deltas don't count). `None`:
    /// only `first_byte_ms` and `total_ms` apply.
    pub first_token_ms: Option<u64>,
    /// Longest gap between content tokens once a stream has produced one. `None`: no limit.
    pub stall_ms: Option<u64>,
    /// The whole exchange, body streaming included.
    pub total_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect_ms: 5_000,
            // What most HTTP clients keep an idle connection for.
            idle_ms: 90_000,
            first_byte_ms: 60_000,
            first_token_ms: None,
            stall_ms: None,
            total_ms: 600_000,
        }
    }
}

/// Per-model replacements for a provider's timeouts; `None` keeps the provider's value.
#[serde_with::apply(Option<u64> => #[serde(deserialize_with = "v::opt_positive")])]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutOverrides {
    // No `connect_ms` or `idle_ms`: connections are pooled per provider, so those are the
    // provider's (a model-level one is refused with a pointer to the provider setting).
    pub first_byte_ms: Option<u64>,
    pub first_token_ms: Option<u64>,
    pub stall_ms: Option<u64>,
    pub total_ms: Option<u64>,
}

/// How a model's targets are chosen for each attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Weighted random by `weight` (the default).
    #[default]
    Weighted,
    /// The target with the fewest requests in flight (ties: weighted random).
    LeastInFlight,
    /// The target with the lowest moving average (EWMA) of time to first token.
    LowestLatency,
    /// Prefer targets with the most headroom under their `rpm` / `tpm` limits.
    UsageAware,
}

/// Retries of one model's targets.
#[serde_with::apply(u64 => #[serde(deserialize_with = "v::non_negative")])]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts on this model's targets, the first included (1: no retry).
    #[serde(deserialize_with = "v::attempts")]
    pub attempts: u32,
    /// Exponential backoff with full jitter: the n-th retry waits a random time up to
    /// `min(backoff_max_ms, backoff_initial_ms * 2^(n-1))`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// A `retry-after` / `retry-after-ms` up to this long is honoured (waited for when the
    /// same target is retried); a longer one moves on to another target or fallback.
    pub retry_after_max_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 1,
            backoff_initial_ms: 200,
            backoff_max_ms: 5_000,
            retry_after_max_ms: 30_000,
        }
    }
}

/// Circuit breaker of a provider's targets.
#[serde_with::apply(
    u32 => #[serde(deserialize_with = "v::positive")],
    u64 => #[serde(deserialize_with = "v::positive")],
)]
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that eject a target.
    pub consecutive_failures: u32,
    /// Error rate over `window_ms` that ejects a target (with at least `min_requests`).
    #[serde(deserialize_with = "v::fraction")]
    pub error_rate: f64,
    pub min_requests: u32,
    pub window_ms: u64,
    /// How long an ejected target is skipped before one half-open probe.
    pub cooldown_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            error_rate: 0.5,
            min_requests: 20,
            window_ms: 30_000,
            cooldown_ms: 30_000,
        }
    }
}

/// When a hedged (duplicate) attempt starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HedgeDelay {
    /// A fixed time without a first content token.
    FixedMs(u64),
    /// The target's live p95 time to first token (at least `min_ms`; before enough samples,
    /// `min_ms`).
    P95 { min_ms: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "HedgeFile")]
pub struct HedgeConfig {
    pub after: HedgeDelay,
    /// Extra attempts started at most (1: one hedge).
    pub max_hedges: u32,
}

/// `hedge:` as written: `{ after_ms: N }` (a fixed delay) or `{ after: p95, min_ms: N }`,
/// plus `max_hedges`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HedgeFile {
    #[serde(default, deserialize_with = "v::opt_positive")]
    after_ms: Option<u64>,
    after: Option<HedgeAfter>,
    #[serde(default, deserialize_with = "v::opt_non_negative")]
    min_ms: Option<u64>,
    #[serde(default = "one", deserialize_with = "v::max_hedges")]
    max_hedges: u32,
}

/// The adaptive hedge delays there are.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum HedgeAfter {
    P95,
}

/// `after: p95` waits at least this long, and this long while the p95 has too few samples.
const DEFAULT_HEDGE_MIN_MS: u64 = 200;

impl TryFrom<HedgeFile> for HedgeConfig {
    type Error = &'static str;

    fn try_from(h: HedgeFile) -> Result<Self, Self::Error> {
        let after = match (h.after_ms, h.after) {
            (Some(_), Some(_)) => return Err("give after_ms (a fixed delay) or after: p95, not both"),
            (Some(_), None) if h.min_ms.is_some() => {
                return Err("\0min_ms\0only applies with after: p95 (after_ms is a fixed delay)")
            }
            (Some(ms), None) => HedgeDelay::FixedMs(ms),
            (None, Some(HedgeAfter::P95)) => HedgeDelay::P95 {
                min_ms: h.min_ms.unwrap_or(DEFAULT_HEDGE_MIN_MS),
            },
            (None, None) => return Err("expected after_ms (a fixed delay, like after_ms: 2000) or after: p95 (the target's live p95 time to first token)"),
        };
        Ok(HedgeConfig {
            after,
            max_hedges: h.max_hedges,
        })
    }
}

/// Behaviour of the built-in mock provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MockSettings {
    /// Content chunks in a streamed answer (role and finish chunks not counted).
    #[serde(deserialize_with = "v::positive")]
    pub chunks: u32,
    /// Delay between streamed chunks.
    #[serde(deserialize_with = "v::non_negative")]
    pub chunk_delay_ms: u64,
    /// Fixed delay before the response head.
    #[serde(deserialize_with = "v::non_negative")]
    pub latency_ms: u64,
    /// Words in the answer (before `max_tokens` caps it).
    #[serde(deserialize_with = "v::non_negative")]
    pub reply_words: u32,
    /// The API the mock answers in; clients of another dialect get the answer translated, as
    /// from a real provider.
    pub dialect: MockDialect,
}

impl Default for MockSettings {
    fn default() -> Self {
        Self {
            chunks: 20,
            chunk_delay_ms: 0,
            latency_ms: 0,
            reply_words: 20,
            dialect: MockDialect::OpenAi,
        }
    }
}

/// The APIs the mock can answer in: those clients speak (Bedrock is only ever an upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MockDialect {
    OpenAi,
    Anthropic,
    Gemini,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    /// User-chosen id, e.g. `openai`, `local`. Used in `provider/model` and metric labels.
    pub id: String,
    pub kind: ProviderKind,
    /// Required for `openai` unless a preset gives it; unused for `mock`.
    pub base_url: Option<String>,
    pub keys: Vec<KeyConfig>,
    pub auth: AuthMode,
    pub timeouts: Timeouts,
    /// Extra headers sent upstream on every request (e.g. OpenRouter's `HTTP-Referer`).
    pub headers: BTreeMap<String, String>,
    /// Extra PEM CA bundle trusted for this provider (private CAs).
    pub ca_file: Option<PathBuf>,
    pub mock: MockSettings,
    /// Azure: the `api-version` query parameter of the deployments form; `None` uses the
    /// `/openai/v1` form (no api-version).
    pub api_version: Option<String>,
    /// Bedrock: the AWS region (`us-east-1`); gives the default base URL
    /// `https://bedrock-runtime.{region}.amazonaws.com` and the SigV4 scope.
    pub region: Option<String>,
    /// Bedrock without `keys`: AWS credentials for SigV4 (from the config or the standard
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` variables).
    pub aws_credentials: Option<AwsCredentialsConfig>,
    /// Anthropic: the `anthropic-version` header sent when the client did not send one.
    pub anthropic_version: Option<String>,
    /// When a target of this provider is ejected, and for how long.
    pub breaker: BreakerConfig,
}

/// AWS credentials for SigV4 signing. Never logged or echoed.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentialsConfig {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentialsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentialsConfig")
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// What clients send: an exact name or a glob (`claude-*`). Required (checked by the
    /// validation pass, which knows whether it was written).
    pub name: String,
    /// Required, like `name`.
    pub targets: Vec<TargetConfig>,
    pub balance: Balance,
    pub retry: RetryConfig,
    /// Overall time for the request, all attempts and fallbacks included. `None`: the
    /// provider timeouts alone bound it.
    #[serde(deserialize_with = "v::opt_positive")]
    pub deadline_ms: Option<u64>,
    /// Other configured model names tried in order when this model's targets fail.
    pub fallbacks: Vec<String>,
    /// Tried instead of `fallbacks` when the failure is a context-window-exceeded error.
    pub context_window_fallbacks: Vec<String>,
    /// Tried instead of `fallbacks` when the failure is a content-policy refusal.
    pub content_policy_fallbacks: Vec<String>,
    pub timeouts: TimeoutOverrides,
    pub hedge: Option<HedgeConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetConfig {
    /// Required (checked by the validation pass).
    pub provider: String,
    /// Upstream model name; `None` forwards the client's model name unchanged.
    pub model: Option<String>,
    #[serde(default = "one", deserialize_with = "v::positive")]
    pub weight: u32,
    /// Azure: the deployment name that selects the model (in the request path).
    #[serde(deserialize_with = "v::deployment")]
    pub deployment: Option<String>,
    /// Requests in flight at most on this target; `None`: unlimited.
    #[serde(deserialize_with = "v::opt_positive")]
    pub max_concurrency: Option<u32>,
    /// Requests waiting for a slot at most (when `max_concurrency` is reached); beyond it the
    /// request falls back, or gets 429 with `retry-after`.
    #[serde(deserialize_with = "v::non_negative")]
    pub queue: u32,
    /// Requests per minute this target is meant to take (for `balance: usage_aware`).
    #[serde(deserialize_with = "v::opt_positive")]
    pub rpm: Option<u32>,
    /// Tokens per minute, likewise.
    #[serde(deserialize_with = "v::opt_positive")]
    pub tpm: Option<u64>,
}

fn one() -> u32 {
    1
}
