//! Hand-written walk from a YAML tree to [`Config`], collecting every problem with its path.
//!
//! serde's derive stops at the first error and cannot say "did you mean", so each level is
//! checked here instead. Decoding carries on past a problem wherever the rest of the tree can
//! still be checked; the partially built `Config` is thrown away if anything was reported.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_yaml_ng::Value;

use crate::config::env;
use crate::config::suggest::did_you_mean;
use crate::config::types::{
    AuthMode, AwsCredentialsConfig, Balance, BreakerConfig, Config, HedgeConfig, HedgeDelay,
    KeyConfig, MockSettings, ModelConfig, ProviderConfig, ProviderKind, RetryConfig,
    ServerSettings, TargetConfig, TimeoutOverrides, Timeouts, DEFAULT_LISTEN,
};
use crate::config::ConfigProblem;
use crate::providers::presets::{self, Preset};
use crate::routing::glob;
use crate::translate::ir::Dialect;

/// Path reported for problems with the file as a whole (syntax, wrong root type).
pub(crate) const FILE_PATH: &str = "<file>";

/// The provider id that is always available, even when the file does not declare it.
const BUILTIN_MOCK: &str = "mock";

const ROOT_FIELDS: &[&str] = &["listen", "server", "providers", "models"];
const SERVER_FIELDS: &[&str] = &[
    "body_limit_bytes",
    "header_read_timeout_ms",
    "body_read_timeout_ms",
    "drain_timeout_ms",
    "request_log",
    "write_stall_timeout_ms",
];
const PROVIDER_FIELDS: &[&str] = &[
    "kind",
    "preset",
    "base_url",
    "keys",
    "auth",
    "timeouts",
    "headers",
    "ca_file",
    "mock",
    "api_version",
    "region",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "anthropic_version",
    "breaker",
];
/// Provider fields that mean something for one kind only; giving one for another kind is a
/// problem rather than silently ignored.
const KIND_FIELDS: &[(&str, ProviderKind)] = &[
    ("preset", ProviderKind::OpenAi),
    ("mock", ProviderKind::Mock),
    ("api_version", ProviderKind::Azure),
    ("region", ProviderKind::Bedrock),
    ("aws_access_key_id", ProviderKind::Bedrock),
    ("aws_secret_access_key", ProviderKind::Bedrock),
    ("aws_session_token", ProviderKind::Bedrock),
    ("anthropic_version", ProviderKind::Anthropic),
];
const KEY_FIELDS: &[&str] = &["value", "weight", "rpm", "tpm"];
/// Provider `timeouts`, and a model's `timeouts` overriding them.
const TIMEOUT_FIELDS: &[&str] = &[
    "connect_ms",
    "first_byte_ms",
    "first_token_ms",
    "stall_ms",
    "total_ms",
];
const BREAKER_FIELDS: &[&str] = &[
    "consecutive_failures",
    "error_rate",
    "min_requests",
    "window_ms",
    "cooldown_ms",
];
const MOCK_FIELDS: &[&str] = &[
    "chunks",
    "chunk_delay_ms",
    "latency_ms",
    "reply_words",
    "dialect",
];
const MODEL_FIELDS: &[&str] = &[
    "name",
    "targets",
    "balance",
    "retry",
    "deadline_ms",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "timeouts",
    "hedge",
];
/// A model's lists of other models to try, in the order they are decoded.
const FALLBACK_LISTS: &[&str] = &[
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
];
const TARGET_FIELDS: &[&str] = &[
    "provider",
    "model",
    "weight",
    "deployment",
    "max_concurrency",
    "queue",
    "rpm",
    "tpm",
];
const RETRY_FIELDS: &[&str] = &[
    "attempts",
    "backoff_initial_ms",
    "backoff_max_ms",
    "retry_after_max_ms",
];
const HEDGE_FIELDS: &[&str] = &["after_ms", "after", "min_ms", "max_hedges"];
const BALANCE_MODES: &[&str] = &[
    "weighted",
    "least_in_flight",
    "lowest_latency",
    "usage_aware",
];
/// The only adaptive hedge delay there is.
const HEDGE_P95: &str = "p95";
/// Attempts beyond this only pile load onto a failing upstream.
const MAX_RETRY_ATTEMPTS: u64 = 10;
/// Each hedge duplicates the upstream cost of a request; more than three is never worth it.
const MAX_HEDGES: u64 = 3;
const DEFAULT_MAX_HEDGES: u32 = 1;
/// `after: p95` waits at least this long, and this long while the p95 has too few samples.
const DEFAULT_HEDGE_MIN_MS: u64 = 200;

const SUPPORTED_KINDS: &[&str] = &["openai", "anthropic", "gemini", "azure", "bedrock", "mock"];
/// Names people write for a kind because vendors or other gateways use them.
const KIND_ALIASES: &[(&str, &str)] = &[
    ("claude", "anthropic"),
    ("google", "gemini"),
    ("aws", "bedrock"),
    ("azure_openai", "azure"),
    ("azure-openai", "azure"),
];
const MOCK_DIALECTS: &[&str] = &["openai", "anthropic", "gemini"];
const AUTH_MODES: &[&str] = &["keys", "passthrough"];

/// Headers that describe one hop's connection; forwarding a fixed value would break HTTP.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];
/// Credential headers: keys belong in `keys`, where they are weighted, rotated and redacted.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "x-api-key", "api-key", "x-goog-api-key"];
/// Headers the gateway computes per request.
const MANAGED_HEADERS: &[&str] = &["host", "content-length"];

/// Longest value echoed in a message; longer ones are cut so one bad value cannot flood output.
const MAX_ECHO_CHARS: usize = 60;

/// Base URLs as each vendor's own SDK takes them; the gateway appends the API paths.
pub(crate) const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
pub(crate) const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com";
/// Variables read for a provider's key when `keys` is not given, in order of preference (the
/// names each vendor's SDK reads).
pub(crate) const ANTHROPIC_KEY_ENVS: &[&str] = &["ANTHROPIC_API_KEY"];
pub(crate) const GEMINI_KEY_ENVS: &[&str] = &["GEMINI_API_KEY", "GOOGLE_API_KEY"];
const AZURE_KEY_ENVS: &[&str] = &["AZURE_OPENAI_API_KEY"];
/// A Bedrock API key (sent as a Bearer token); read before the SigV4 variables below.
const BEDROCK_KEY_ENV: &str = "AWS_BEARER_TOKEN_BEDROCK";
const AWS_ACCESS_KEY_ID_ENV: &str = "AWS_ACCESS_KEY_ID";
const AWS_SECRET_ACCESS_KEY_ENV: &str = "AWS_SECRET_ACCESS_KEY";
const AWS_SESSION_TOKEN_ENV: &str = "AWS_SESSION_TOKEN";

/// What the gateway appends to a kind's base URL, so a base URL must not already carry it: the
/// API version segments it must not end with, pieces of whole endpoint paths it must not hold
/// (a pasted request URL), and an example of the right form. Either would make the path
/// appear twice (`.../v1/v1/messages`).
struct AppendedPaths {
    ends: &'static [&'static str],
    holds: &'static [&'static str],
    example: &'static str,
}

fn appended_paths(kind: ProviderKind) -> AppendedPaths {
    let (ends, holds, example): (&[&str], &[&str], &str) = match kind {
        ProviderKind::Anthropic => (&["/v1"], &["/v1/messages"], ANTHROPIC_BASE_URL),
        ProviderKind::Gemini => (
            &["/v1beta", "/v1alpha", "/v1"],
            &["/models/"],
            GEMINI_BASE_URL,
        ),
        ProviderKind::Azure => (
            &["/openai", "/openai/v1"],
            &["/openai/deployments/", "/openai/v1/"],
            "https://my-resource.openai.azure.com",
        ),
        ProviderKind::OpenAi | ProviderKind::Bedrock | ProviderKind::Mock => (&[], &[], ""),
    };
    AppendedPaths {
        ends,
        holds,
        example,
    }
}

/// Decodes a parsed YAML document. `base_dir` resolves relative `ca_file` paths (the config
/// file's directory); `None` leaves them relative to the working directory.
pub(crate) fn decode(
    root: &Value,
    env: &dyn Fn(&str) -> Option<String>,
    base_dir: Option<&Path>,
) -> Result<Config, Vec<ConfigProblem>> {
    let mut d = Decoder {
        env,
        base_dir,
        problems: Vec::new(),
        redact: false,
    };
    let config = d.config(root);
    if d.problems.is_empty() {
        Ok(config)
    } else {
        Err(d.problems)
    }
}

/// Parses a byte size: a plain integer, or an integer with a unit (`512KiB`, `32 MiB`, `1MB`;
/// units are case-insensitive, `KB`/`MB`/`GB` are powers of 1000, `KiB`/`MiB`/`GiB` of 1024).
/// Zero and overflow give `None`. Bare `K`/`M`/`G` are refused as ambiguous.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let multiplier: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(multiplier).filter(|&n| n > 0)
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn item(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// The fields a mapping actually gives, in file order; explicit nulls count as absent so that
/// `keys:` with everything commented out means "not set".
struct Fields<'v> {
    given: Vec<(&'v str, &'v Value)>,
}

impl<'v> Fields<'v> {
    fn get(&self, name: &str) -> Option<&'v Value> {
        self.given.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

/// What targets may refer to: every provider id written in the file, and the kinds of those
/// that decoded (the built-in mock included unless the file redefines `mock`).
struct KnownProviders<'a> {
    ids: &'a [String],
    kinds: HashMap<&'a str, ProviderKind>,
    /// Providers with at least one key carrying `rpm` or `tpm` (usage-aware balancing can
    /// spread by those too).
    key_limited: Vec<&'a str>,
}

impl KnownProviders<'_> {
    /// Ids a `provider/model` may use: the file's, and the built-in mock unless redefined.
    fn ids(&self) -> impl Iterator<Item = &str> + Clone {
        let builtin = !self.ids.iter().any(|id| id == BUILTIN_MOCK);
        self.ids
            .iter()
            .map(String::as_str)
            .chain(builtin.then_some(BUILTIN_MOCK))
    }
}

/// Model names written in the file, for checking fallbacks.
#[derive(Default)]
struct ModelNames {
    exact: Vec<String>,
    globs: Vec<String>,
}

/// Why `name` cannot be a fallback of the model `own`, if it cannot.
fn fallback_problem(
    name: &str,
    own: Option<&str>,
    names: &ModelNames,
    known: &KnownProviders,
) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if own == Some(name) {
        return Some("a model cannot fall back to itself".into());
    }
    if names.exact.iter().any(|n| n == name) {
        return None;
    }
    if glob::is_glob(name) {
        // Which of the pattern's matches would be meant is anyone's guess.
        return Some(format!(
            "{name:?} is a pattern; fallbacks name exact models, or provider/model"
        ));
    }
    let others = || {
        names
            .exact
            .iter()
            .map(String::as_str)
            .filter(|n| Some(*n) != own)
    };
    let model_hint = did_you_mean(name, others());
    if let Some((provider, model)) = name.split_once('/') {
        if known.ids().any(|id| id == provider) {
            return model
                .is_empty()
                .then(|| format!("expected provider/model, got {name:?} (nothing after the '/')"));
        }
        // A slip in a configured name that holds a '/' is as likely as an unknown provider.
        if !model_hint.is_empty() {
            return Some(format!("unknown model {name:?}{model_hint}"));
        }
        let hint = did_you_mean(provider, known.ids());
        return Some(if hint.is_empty() {
            let list: Vec<&str> = known.ids().collect();
            format!(
                "unknown provider {provider:?} in {name:?} (known: {})",
                list.join(", ")
            )
        } else {
            format!("unknown provider {provider:?} in {name:?}{hint}")
        });
    }
    if !model_hint.is_empty() {
        return Some(format!("unknown model {name:?}{model_hint}"));
    }
    if let Some(pattern) = names.globs.iter().find(|g| glob::matches(g, name)) {
        return Some(format!(
            "unknown model {name:?} (it matches the pattern {pattern:?}, but fallbacks name exact models, or provider/model)"
        ));
    }
    Some(format!(
        "unknown model {name:?} (expected a configured model name, or provider/model with a known provider)"
    ))
}

struct Decoder<'e> {
    env: &'e dyn Fn(&str) -> Option<String>,
    base_dir: Option<&'e Path>,
    problems: Vec<ConfigProblem>,
    /// Set while decoding secrets (keys, header values): messages then describe values by
    /// type only, so a misplaced key never reaches a log.
    redact: bool,
}

// Generic shape and scalar checks.
impl Decoder<'_> {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        let path = if path.is_empty() { FILE_PATH } else { path };
        self.problems.push(ConfigProblem {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// How a value is shown after "got": the value itself for scalars, the type otherwise.
    fn got(&self, v: &Value) -> String {
        match v {
            Value::Null => "nothing".into(),
            Value::Bool(_) | Value::Number(_) | Value::String(_) if self.redact => {
                format!("a {}", type_name(v))
            }
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::String(s) if s.chars().count() > MAX_ECHO_CHARS => {
                let cut: String = s.chars().take(MAX_ECHO_CHARS).collect();
                format!("\"{}…\"", cut.escape_debug())
            }
            Value::String(s) => format!("{s:?}"),
            Value::Sequence(_) => "a list".into(),
            Value::Mapping(_) => "a mapping".into(),
            Value::Tagged(t) => format!("a value tagged {}", t.tag),
        }
    }

    /// A mapping with string keys, as (key, value) pairs in file order.
    fn entries<'v>(&mut self, path: &str, v: &'v Value) -> Option<Vec<(&'v str, &'v Value)>> {
        let Value::Mapping(map) = v else {
            self.problem(path, format!("expected a mapping, got {}", self.got(v)));
            return None;
        };
        let mut out = Vec::with_capacity(map.len());
        for (key, value) in map {
            match key {
                Value::String(k) => out.push((k.as_str(), value)),
                other => {
                    let msg = format!("expected names to be strings, got {}", self.got(other));
                    self.problem(path, msg);
                }
            }
        }
        Some(out)
    }

    /// A mapping whose keys must come from `allowed`; unknown ones are reported with a
    /// suggestion. A null counts as an empty mapping (`server:` with nothing under it).
    fn fields<'v>(&mut self, path: &str, v: &'v Value, allowed: &[&str]) -> Option<Fields<'v>> {
        if v.is_null() {
            return Some(Fields { given: Vec::new() });
        }
        let mut given = Vec::new();
        for (key, value) in self.entries(path, v)? {
            if !allowed.contains(&key) {
                let hint = did_you_mean(key, allowed.iter().copied());
                let msg = if hint.is_empty() {
                    format!("unknown field (expected one of: {})", allowed.join(", "))
                } else {
                    format!("unknown field{hint}")
                };
                self.problem(&child(path, key), msg);
            } else if !value.is_null() {
                given.push((key, value));
            }
        }
        Some(Fields { given })
    }

    fn sequence<'v>(&mut self, path: &str, v: &'v Value) -> Option<&'v [Value]> {
        match v {
            Value::Sequence(items) => Some(items),
            _ => {
                self.problem(path, format!("expected a list, got {}", self.got(v)));
                None
            }
        }
    }

    fn expand(&mut self, path: &str, text: &str) -> Option<String> {
        match env::expand(text, self.env) {
            Ok(s) => Some(s.into_owned()),
            Err(errors) => {
                for e in errors {
                    self.problem(path, e.to_string());
                }
                None
            }
        }
    }

    /// A string scalar after `${VAR}` expansion. Numbers are taken as written, since YAML
    /// turns names like `3` or `1.5` into numbers.
    fn string(&mut self, path: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => self.expand(path, s),
            Value::Number(n) => Some(n.to_string()),
            _ => {
                self.problem(path, format!("expected a string, got {}", self.got(v)));
                None
            }
        }
    }

    /// An integer in `min..=max`, given as a number or (after expansion) a numeric string.
    fn uint(&mut self, path: &str, v: &Value, min: u64, max: u64) -> Option<u64> {
        let parsed = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => self.expand(path, s)?.trim().parse::<u64>().ok(),
            _ => None,
        };
        match parsed {
            Some(n) if n >= min && n <= max => Some(n),
            Some(n) if n > max => {
                self.problem(path, format!("must be at most {max}, got {n}"));
                None
            }
            _ => {
                let what = if min > 0 {
                    "a positive integer"
                } else {
                    "a non-negative integer"
                };
                self.problem(path, format!("expected {what}, got {}", self.got(v)));
                None
            }
        }
    }

    /// Optional integer field of `f`; `None` when absent or invalid (invalid is reported).
    fn field_u64(&mut self, f: &Fields, path: &str, name: &str, min: u64) -> Option<u64> {
        let v = f.get(name)?;
        self.uint(&child(path, name), v, min, u64::MAX)
    }

    fn field_u32(&mut self, f: &Fields, path: &str, name: &str, min: u64) -> Option<u32> {
        let v = f.get(name)?;
        let n = self.uint(&child(path, name), v, min, u64::from(u32::MAX))?;
        u32::try_from(n).ok()
    }

    /// Required string field; reports it missing.
    fn required_string(&mut self, f: &Fields, path: &str, name: &str) -> Option<String> {
        let field_path = child(path, name);
        match f.get(name) {
            Some(v) => self.string(&field_path, v),
            None => {
                self.problem(&field_path, "missing required field");
                None
            }
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Sequence(_) => "list",
        Value::Mapping(_) => "mapping",
        Value::Tagged(_) => "tagged value",
    }
}

// Top level and `server`.
impl Decoder<'_> {
    fn config(&mut self, root: &Value) -> Config {
        let mut config = Config {
            listen: None,
            server: ServerSettings::default(),
            providers: Vec::new(),
            models: Vec::new(),
        };
        let Some(f) = self.fields("", root, ROOT_FIELDS) else {
            return config;
        };
        if let Some(v) = f.get("listen") {
            config.listen = self.listen("listen", v);
        }
        if let Some(v) = f.get("server") {
            config.server = self.server("server", v);
        }
        // Every id written in the file, valid or not, so a provider with its own problems
        // does not also make each target that names it "unknown".
        let mut ids = Vec::new();
        if let Some(v) = f.get("providers") {
            config.providers = self.providers("providers", v, &mut ids);
        }
        // Kinds of the providers that decoded, for checks on targets (`deployment`); an id
        // whose kind is unknown is left out so its targets get no second-hand problems.
        let mut kinds: HashMap<&str, ProviderKind> = config
            .providers
            .iter()
            .map(|p| (p.id.as_str(), p.kind))
            .collect();
        if !ids.iter().any(|id| id == BUILTIN_MOCK) {
            kinds.insert(BUILTIN_MOCK, ProviderKind::Mock);
        }
        let key_limited = config
            .providers
            .iter()
            .filter(|p| p.keys.iter().any(|k| k.rpm.is_some() || k.tpm.is_some()))
            .map(|p| p.id.as_str())
            .collect();
        let known = KnownProviders {
            ids: &ids,
            kinds,
            key_limited,
        };
        if let Some(v) = f.get("models") {
            config.models = self.models("models", v, &known);
        }
        config
    }

    fn listen(&mut self, path: &str, v: &Value) -> Option<SocketAddr> {
        let text = self.string(path, v)?;
        let addr = text.trim().parse().ok();
        if addr.is_none() {
            let msg =
                format!("expected an IP address and port like {DEFAULT_LISTEN}, got {text:?}");
            self.problem(path, msg);
        }
        addr
    }

    fn server(&mut self, path: &str, v: &Value) -> ServerSettings {
        let mut s = ServerSettings::default();
        let Some(f) = self.fields(path, v, SERVER_FIELDS) else {
            return s;
        };
        if let Some(v) = f.get("body_limit_bytes") {
            s.body_limit_bytes = self
                .size(&child(path, "body_limit_bytes"), v)
                .unwrap_or(s.body_limit_bytes);
        }
        let ms = |d: &mut Self, name: &str, default: u64| {
            d.field_u64(&f, path, name, 1).unwrap_or(default)
        };
        s.header_read_timeout_ms = ms(self, "header_read_timeout_ms", s.header_read_timeout_ms);
        s.body_read_timeout_ms = ms(self, "body_read_timeout_ms", s.body_read_timeout_ms);
        s.drain_timeout_ms = ms(self, "drain_timeout_ms", s.drain_timeout_ms);
        s.write_stall_timeout_ms = ms(self, "write_stall_timeout_ms", s.write_stall_timeout_ms);
        if let Some(v) = f.get("request_log") {
            s.request_log = self
                .boolean(&child(path, "request_log"), v)
                .unwrap_or(s.request_log);
        }
        s
    }

    /// A boolean, also accepted (after expansion) as `true`/`false`/`on`/`off`.
    fn boolean(&mut self, path: &str, v: &Value) -> Option<bool> {
        let parsed = match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match self.expand(path, s)?.trim() {
                "true" | "on" | "yes" => Some(true),
                "false" | "off" | "no" => Some(false),
                _ => None,
            },
            _ => None,
        };
        if parsed.is_none() {
            let msg = format!("expected true or false, got {}", self.got(v));
            self.problem(path, msg);
        }
        parsed
    }

    fn size(&mut self, path: &str, v: &Value) -> Option<usize> {
        let bytes = match v {
            Value::Number(n) => n.as_u64().filter(|&n| n > 0),
            Value::String(s) => parse_size(&self.expand(path, s)?),
            _ => None,
        };
        let bytes = bytes.and_then(|n| usize::try_from(n).ok());
        if bytes.is_none() {
            let msg = format!(
                "expected a size in bytes greater than 0, like 33554432 or \"32MiB\", got {}",
                self.got(v)
            );
            self.problem(path, msg);
        }
        bytes
    }
}

// `providers`.
impl Decoder<'_> {
    fn providers(&mut self, path: &str, v: &Value, ids: &mut Vec<String>) -> Vec<ProviderConfig> {
        let Some(entries) = self.entries(path, v) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(entries.len());
        for (id, value) in entries {
            let p = child(path, id);
            ids.push(id.to_string());
            if id.is_empty() {
                self.problem(path, "provider id must not be empty");
            } else if id.contains('/') {
                // `provider/model` in a request would be ambiguous.
                self.problem(&p, "provider id must not contain '/'");
            }
            if let Some(provider) = self.provider(&p, id, value) {
                out.push(provider);
            }
        }
        out
    }

    fn provider(&mut self, path: &str, id: &str, v: &Value) -> Option<ProviderConfig> {
        let f = self.fields(path, v, PROVIDER_FIELDS)?;
        let preset_given = f.get("preset").is_some();
        let kind = match f.get("kind") {
            Some(v) => self.kind(&child(path, "kind"), v),
            None if preset_given => Some(ProviderKind::OpenAi),
            None => {
                let msg = format!(
                    "missing required field (supported: {}), or set preset",
                    SUPPORTED_KINDS.join(", ")
                );
                self.problem(&child(path, "kind"), msg);
                None
            }
        };
        // A field of another kind is reported and not decoded. With the kind itself invalid
        // every field is decoded, so its own problems still show.
        let applies = |field: &str| match (kind, KIND_FIELDS.iter().find(|(f, _)| *f == field)) {
            (Some(kind), Some((_, owner))) => kind == *owner,
            _ => true,
        };
        let preset = match f.get("preset") {
            Some(v) if applies("preset") => self.preset(&child(path, "preset"), v),
            _ => None,
        };
        if let Some(kind) = kind {
            for (field, owner) in KIND_FIELDS {
                if kind != *owner && f.get(field).is_some() {
                    let msg = format!("only applies to kind {}", owner.as_str());
                    self.problem(&child(path, field), msg);
                }
            }
        }

        let base_url = match f.get("base_url") {
            Some(v) => self.base_url(&child(path, "base_url"), v, kind),
            None => preset.map(|p| p.base_url.to_string()),
        };
        let api_version = match f.get("api_version") {
            Some(v) if applies("api_version") => self.api_version(&child(path, "api_version"), v),
            _ => None,
        };
        let anthropic_version = match f.get("anthropic_version") {
            Some(v) if applies("anthropic_version") => {
                self.anthropic_version(&child(path, "anthropic_version"), v)
            }
            _ => None,
        };
        let region = match f.get("region") {
            Some(v) if applies("region") => self.region(&child(path, "region"), v),
            _ => None,
        };
        let base_url_given = f.get("base_url").is_some();
        let base_url = match kind {
            Some(_) if base_url_given => base_url,
            Some(ProviderKind::OpenAi) if preset_given => base_url,
            Some(ProviderKind::OpenAi) => {
                let msg = "required for kind openai (or set preset, e.g. preset: openai)";
                self.problem(&child(path, "base_url"), msg);
                None
            }
            Some(ProviderKind::Anthropic) => Some(ANTHROPIC_BASE_URL.to_string()),
            Some(ProviderKind::Gemini) => Some(GEMINI_BASE_URL.to_string()),
            Some(ProviderKind::Azure) => {
                let msg = "required for kind azure: the resource endpoint, like https://my-resource.openai.azure.com";
                self.problem(&child(path, "base_url"), msg);
                None
            }
            Some(ProviderKind::Bedrock) => {
                if f.get("region").is_none() {
                    let msg =
                        "required for kind bedrock (like us-east-1), unless base_url is given";
                    self.problem(&child(path, "region"), msg);
                }
                region
                    .as_deref()
                    .map(|r| format!("https://bedrock-runtime.{r}.amazonaws.com"))
            }
            Some(ProviderKind::Mock) | None => base_url,
        };

        let auth = match f.get("auth") {
            Some(v) => self.auth(&child(path, "auth"), v),
            None => AuthMode::Keys,
        };
        let keys_given = f.get("keys").is_some();
        let mut keys = match f.get("keys") {
            Some(v) => self.keys(&child(path, "keys"), v),
            None => Vec::new(),
        };
        if auth == AuthMode::Passthrough && keys_given {
            let msg = "passthrough forwards the client's own credentials, so it cannot be combined with keys";
            self.problem(&child(path, "auth"), msg);
        }
        let aws_given =
            f.get("aws_access_key_id").is_some() || f.get("aws_secret_access_key").is_some();
        let explicit_aws = if applies("aws_access_key_id") {
            self.aws_fields(path, &f)
        } else {
            None
        };
        if kind == Some(ProviderKind::Bedrock) && aws_given {
            if auth == AuthMode::Passthrough {
                let msg = "passthrough forwards the client's own credentials, so it cannot be combined with aws_access_key_id / aws_secret_access_key";
                self.problem(&child(path, "auth"), msg);
            }
            if keys_given {
                let msg = "Bedrock API keys cannot be combined with aws_access_key_id / aws_secret_access_key; give one or the other";
                self.problem(&child(path, "keys"), msg);
            }
        }

        let mut aws_credentials = None;
        let keys_path = child(path, "keys");
        if auth == AuthMode::Keys && !keys_given {
            match kind {
                Some(ProviderKind::OpenAi) => {
                    if let Some(p) = preset.filter(|p| !p.key_env.is_empty()) {
                        keys = self.preset_key(&keys_path, p);
                    }
                }
                Some(ProviderKind::Anthropic) => {
                    keys = self.env_key(&keys_path, ANTHROPIC_KEY_ENVS, ProviderKind::Anthropic);
                }
                Some(ProviderKind::Gemini) => {
                    keys = self.env_key(&keys_path, GEMINI_KEY_ENVS, ProviderKind::Gemini);
                }
                Some(ProviderKind::Azure) => {
                    keys = self.env_key(&keys_path, AZURE_KEY_ENVS, ProviderKind::Azure);
                }
                Some(ProviderKind::Bedrock) if aws_given => aws_credentials = explicit_aws,
                Some(ProviderKind::Bedrock) => {
                    (keys, aws_credentials) = self.bedrock_env_credentials(&keys_path);
                }
                Some(ProviderKind::Mock) | None => {}
            }
        }
        // SigV4 signs for a region; without one the base URL alone cannot say it.
        if aws_credentials.is_some()
            && region.is_none()
            && f.get("region").is_none()
            && base_url_given
        {
            let msg = "required to sign requests with AWS credentials (SigV4), also when base_url is given";
            self.problem(&child(path, "region"), msg);
        }

        let timeouts = match f.get("timeouts") {
            Some(v) => self.timeouts(&child(path, "timeouts"), v),
            None => Timeouts::default(),
        };
        let headers = match f.get("headers") {
            Some(v) => self.headers(&child(path, "headers"), v),
            None => BTreeMap::new(),
        };
        let ca_file = f
            .get("ca_file")
            .and_then(|v| self.ca_file(&child(path, "ca_file"), v));
        let mock = match f.get("mock") {
            Some(v) if applies("mock") => self.mock(&child(path, "mock"), v),
            _ => MockSettings::default(),
        };
        // Allowed for every kind, the mock included: it never fails, so the breaker is inert.
        let breaker = match f.get("breaker") {
            Some(v) => self.breaker(&child(path, "breaker"), v),
            None => BreakerConfig::default(),
        };
        Some(ProviderConfig {
            id: id.to_string(),
            kind: kind?,
            base_url,
            keys,
            auth,
            timeouts,
            headers,
            ca_file,
            mock,
            api_version,
            region,
            aws_credentials,
            anthropic_version,
            breaker,
        })
    }

    fn kind(&mut self, path: &str, v: &Value) -> Option<ProviderKind> {
        let name = self.string(path, v)?;
        let kind = match name.as_str() {
            "openai" => ProviderKind::OpenAi,
            "anthropic" => ProviderKind::Anthropic,
            "gemini" => ProviderKind::Gemini,
            "azure" => ProviderKind::Azure,
            "bedrock" => ProviderKind::Bedrock,
            "mock" => ProviderKind::Mock,
            _ => {
                let supported = SUPPORTED_KINDS.join(", ");
                let msg = if presets::find(&name).is_some() {
                    // `kind: groq` is a natural guess; the vendor is a preset of kind openai.
                    format!("unknown provider kind {name:?} (did you mean preset: {name}?)")
                } else if let Some((_, kind)) = KIND_ALIASES.iter().find(|(a, _)| *a == name) {
                    format!(
                        "unknown provider kind {name:?} (did you mean {kind:?}?) (supported: {supported})"
                    )
                } else {
                    let hint = did_you_mean(&name, SUPPORTED_KINDS.iter().copied());
                    format!("unknown provider kind {name:?}{hint} (supported: {supported})")
                };
                self.problem(path, msg);
                return None;
            }
        };
        Some(kind)
    }

    /// Azure's `api-version` query value (`2024-10-21`, `2025-04-01-preview`); limited to the
    /// characters that need no escaping in a query string.
    fn api_version(&mut self, path: &str, v: &Value) -> Option<String> {
        let text = self.string(path, v)?;
        let ok = !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if !ok {
            let msg = format!(
                "expected an API version like \"2024-10-21\" (letters, digits, '-', '.', '_'), got {}",
                self.got(&Value::String(text))
            );
            self.problem(path, msg);
            return None;
        }
        Some(text)
    }

    /// Anthropic versions are dates (`2023-06-01`); anything else fails every request.
    fn anthropic_version(&mut self, path: &str, v: &Value) -> Option<String> {
        let text = self.string(path, v)?;
        let bytes = text.as_bytes();
        let ok = bytes.len() == 10
            && bytes.iter().enumerate().all(|(i, b)| match i {
                4 | 7 => *b == b'-',
                _ => b.is_ascii_digit(),
            });
        if !ok {
            let msg = format!(
                "expected a version date like \"2023-06-01\", got {}",
                self.got(&Value::String(text))
            );
            self.problem(path, msg);
            return None;
        }
        Some(text)
    }

    /// An AWS region name (`us-east-1`): it goes into the host name and the SigV4 scope.
    fn region(&mut self, path: &str, v: &Value) -> Option<String> {
        let text = self.string(path, v)?;
        let ok = text.starts_with(|c: char| c.is_ascii_lowercase())
            && !text.ends_with('-')
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            let msg = format!(
                "expected an AWS region like \"us-east-1\" (lowercase letters, digits and dashes), got {}",
                self.got(&Value::String(text))
            );
            self.problem(path, msg);
            return None;
        }
        Some(text)
    }

    /// `aws_access_key_id` / `aws_secret_access_key` / `aws_session_token`, decoded without
    /// ever echoing a value. `Some` only when both halves of the pair are valid.
    fn aws_fields(&mut self, path: &str, f: &Fields) -> Option<AwsCredentialsConfig> {
        const ID: &str = "aws_access_key_id";
        const SECRET: &str = "aws_secret_access_key";
        const TOKEN: &str = "aws_session_token";
        self.redact = true;
        let secret = |d: &mut Self, name: &str| {
            let p = child(path, name);
            let value = d.string(&p, f.get(name)?)?;
            if value.is_empty() {
                d.problem(&p, "must not be empty");
                return None;
            }
            Some(value)
        };
        let id = secret(self, ID);
        let key = secret(self, SECRET);
        let token = secret(self, TOKEN);
        self.redact = false;
        match (f.get(ID).is_some(), f.get(SECRET).is_some()) {
            (true, false) => self.problem(
                &child(path, SECRET),
                format!("required when {ID} is given (give both or neither)"),
            ),
            (false, true) => self.problem(
                &child(path, ID),
                format!("required when {SECRET} is given (give both or neither)"),
            ),
            (false, false) if f.get(TOKEN).is_some() => self.problem(
                &child(path, TOKEN),
                format!("only used together with {ID} and {SECRET}"),
            ),
            _ => {}
        }
        Some(AwsCredentialsConfig {
            access_key_id: id?,
            secret_access_key: key?,
            session_token: token,
        })
    }

    /// Bedrock credentials from the environment when the file gives none: a Bedrock API key
    /// (`AWS_BEARER_TOKEN_BEDROCK`) if set, else the standard AWS credential variables. (Ones
    /// written in the file were an explicit choice, so they are never overridden from here.)
    fn bedrock_env_credentials(
        &mut self,
        path: &str,
    ) -> (Vec<KeyConfig>, Option<AwsCredentialsConfig>) {
        let env = |name: &str| (self.env)(name).filter(|v| !v.is_empty());
        if let Some(value) = env(BEDROCK_KEY_ENV) {
            return (
                vec![KeyConfig {
                    value,
                    weight: 1,
                    rpm: None,
                    tpm: None,
                }],
                None,
            );
        }
        let id = env(AWS_ACCESS_KEY_ID_ENV);
        let secret = env(AWS_SECRET_ACCESS_KEY_ENV);
        let token = env(AWS_SESSION_TOKEN_ENV);
        let (set, unset) = match (id, secret) {
            (Some(access_key_id), Some(secret_access_key)) => {
                let creds = AwsCredentialsConfig {
                    access_key_id,
                    secret_access_key,
                    session_token: token,
                };
                return (Vec::new(), Some(creds));
            }
            (Some(_), None) => (AWS_ACCESS_KEY_ID_ENV, AWS_SECRET_ACCESS_KEY_ENV),
            (None, Some(_)) => (AWS_SECRET_ACCESS_KEY_ENV, AWS_ACCESS_KEY_ID_ENV),
            (None, None) => {
                let msg = format!(
                    "not given, and no credentials found: set {BEDROCK_KEY_ENV} (a Bedrock API key), \
                     or {AWS_ACCESS_KEY_ID_ENV} and {AWS_SECRET_ACCESS_KEY_ENV} (signed requests; \
                     {AWS_SESSION_TOKEN_ENV} optional), or give keys, or aws_access_key_id and \
                     aws_secret_access_key"
                );
                self.problem(path, msg);
                return (Vec::new(), None);
            }
        };
        let msg = format!(
            "not given, and environment variable {unset} is not set ({set} is; AWS credentials need both)"
        );
        self.problem(path, msg);
        (Vec::new(), None)
    }

    /// The key a kind reads from its vendor's variables when `keys` is not given: the first
    /// one set. None set is a problem rather than "no key", which would only surface as
    /// upstream 401s.
    fn env_key(&mut self, path: &str, names: &[&str], kind: ProviderKind) -> Vec<KeyConfig> {
        if let Some(value) = names
            .iter()
            .find_map(|name| (self.env)(name).filter(|v| !v.is_empty()))
        {
            return vec![KeyConfig {
                value,
                weight: 1,
                rpm: None,
                tpm: None,
            }];
        }
        let kind = kind.as_str();
        let msg = match names {
            [one] => format!(
                "not given, and environment variable {one} (read by kind {kind}) is not set"
            ),
            _ => format!(
                "not given, and none of the environment variables {} (read by kind {kind}) is set",
                names.join(", ")
            ),
        };
        self.problem(path, msg);
        Vec::new()
    }

    fn preset(&mut self, path: &str, v: &Value) -> Option<&'static Preset> {
        let name = self.string(path, v)?;
        let found = presets::find(&name);
        if found.is_none() {
            let hint = did_you_mean(&name, presets::ids());
            let msg = if hint.is_empty() {
                let known: Vec<&str> = presets::ids().collect();
                format!("unknown preset {name:?} (known: {})", known.join(", "))
            } else {
                format!("unknown preset {name:?}{hint}")
            };
            self.problem(path, msg);
        }
        found
    }

    /// The key a preset reads from its vendor's variable when `keys` is not given. A missing
    /// variable is a problem rather than "no key", which would only surface as upstream 401s.
    fn preset_key(&mut self, path: &str, preset: &Preset) -> Vec<KeyConfig> {
        match (self.env)(preset.key_env).filter(|k| !k.is_empty()) {
            Some(value) => vec![KeyConfig {
                value,
                weight: 1,
                rpm: None,
                tpm: None,
            }],
            None => {
                let msg = format!(
                    "not given, and environment variable {} (read by preset {:?}) is not set",
                    preset.key_env, preset.id
                );
                self.problem(path, msg);
                Vec::new()
            }
        }
    }

    fn base_url(&mut self, path: &str, v: &Value, kind: Option<ProviderKind>) -> Option<String> {
        let text = self.string(path, v)?;
        let trimmed = text.trim_end_matches('/');
        let uri = trimmed.parse::<http::Uri>().ok().filter(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some_and(|h| !h.is_empty())
                && uri.query().is_none()
        });
        let Some(uri) = uri else {
            let msg = format!(
                "expected an absolute http:// or https:// URL without a query, got {:?}",
                text
            );
            self.problem(path, msg);
            return None;
        };
        if let Some(kind) = kind {
            let appended = appended_paths(kind);
            let url_path = uri.path().trim_end_matches('/');
            let doubled = appended
                .ends
                .iter()
                .find(|end| url_path.ends_with(**end))
                .map(|end| format!("ends with {end:?}"));
            let pasted = || {
                appended
                    .holds
                    .iter()
                    .find(|piece| url_path.contains(**piece))
                    .map(|piece| format!("contains {piece:?}"))
            };
            if let Some(what) = doubled.or_else(pasted) {
                let msg = format!(
                    "{what}, which the gateway appends itself for kind {}; give the base URL only, like {}",
                    kind.as_str(),
                    appended.example
                );
                self.problem(path, msg);
                return None;
            }
        }
        Some(trimmed.to_string())
    }

    fn auth(&mut self, path: &str, v: &Value) -> AuthMode {
        match self.string(path, v).as_deref() {
            Some("keys") | None => AuthMode::Keys,
            Some("passthrough") => AuthMode::Passthrough,
            Some(other) => {
                let hint = did_you_mean(other, AUTH_MODES.iter().copied());
                let msg = format!("expected keys or passthrough, got {other:?}{hint}");
                self.problem(path, msg);
                AuthMode::Keys
            }
        }
    }

    fn keys(&mut self, path: &str, v: &Value) -> Vec<KeyConfig> {
        self.redact = true;
        let keys = self.keys_redacted(path, v);
        self.redact = false;
        keys
    }

    fn keys_redacted(&mut self, path: &str, v: &Value) -> Vec<KeyConfig> {
        let Some(items) = self.sequence(path, v) else {
            return Vec::new();
        };
        let mut keys = Vec::with_capacity(items.len());
        for (i, entry) in items.iter().enumerate() {
            let p = item(path, i);
            // A bare string is shorthand for `{ value: ..., weight: 1 }`.
            let (value, weight, rpm, tpm) = if entry.is_mapping() {
                let Some(f) = self.fields(&p, entry, KEY_FIELDS) else {
                    continue;
                };
                let value = self.required_string(&f, &p, "value");
                let weight = self.field_u32(&f, &p, "weight", 1).unwrap_or(1);
                let rpm = self.field_u32(&f, &p, "rpm", 1);
                let tpm = self.field_u64(&f, &p, "tpm", 1);
                (value.map(|v| (v, child(&p, "value"))), weight, rpm, tpm)
            } else {
                (
                    self.string(&p, entry).map(|v| (v, p.clone())),
                    1,
                    None,
                    None,
                )
            };
            if let Some((value, value_path)) = value {
                if value.is_empty() {
                    self.problem(&value_path, "must not be empty");
                } else {
                    keys.push(KeyConfig {
                        value,
                        weight,
                        rpm,
                        tpm,
                    });
                }
            }
        }
        keys
    }

    fn timeouts(&mut self, path: &str, v: &Value) -> Timeouts {
        let mut t = Timeouts::default();
        let Some(f) = self.fields(path, v, TIMEOUT_FIELDS) else {
            return t;
        };
        t.connect_ms = self
            .field_u64(&f, path, "connect_ms", 1)
            .unwrap_or(t.connect_ms);
        t.first_byte_ms = self
            .field_u64(&f, path, "first_byte_ms", 1)
            .unwrap_or(t.first_byte_ms);
        t.first_token_ms = self.field_u64(&f, path, "first_token_ms", 1);
        t.stall_ms = self.field_u64(&f, path, "stall_ms", 1);
        let total = self.field_u64(&f, path, "total_ms", 1);
        t.total_ms = total.unwrap_or(t.total_ms);
        // An invalid total_ms was reported already; comparing with the default would add a
        // second-hand problem.
        let total_given = f.get("total_ms").is_some();
        if total.is_some() || !total_given {
            self.within_total(
                path,
                "first_token_ms",
                t.first_token_ms,
                t.total_ms,
                total_given,
            );
            self.within_total(path, "stall_ms", t.stall_ms, t.total_ms, total_given);
        }
        t
    }

    /// A first-token or stall limit past the total one could never fire.
    fn within_total(
        &mut self,
        path: &str,
        field: &str,
        ms: Option<u64>,
        total_ms: u64,
        total_given: bool,
    ) {
        let Some(ms) = ms.filter(|&ms| ms > total_ms) else {
            return;
        };
        let default = if total_given { "" } else { ", the default" };
        let msg = format!("must not exceed total_ms ({total_ms}{default}), got {ms}");
        self.problem(&child(path, field), msg);
    }

    fn breaker(&mut self, path: &str, v: &Value) -> BreakerConfig {
        let mut b = BreakerConfig::default();
        let Some(f) = self.fields(path, v, BREAKER_FIELDS) else {
            return b;
        };
        b.consecutive_failures = self
            .field_u32(&f, path, "consecutive_failures", 1)
            .unwrap_or(b.consecutive_failures);
        if let Some(v) = f.get("error_rate") {
            b.error_rate = self
                .error_rate(&child(path, "error_rate"), v)
                .unwrap_or(b.error_rate);
        }
        b.min_requests = self
            .field_u32(&f, path, "min_requests", 1)
            .unwrap_or(b.min_requests);
        b.window_ms = self
            .field_u64(&f, path, "window_ms", 1)
            .unwrap_or(b.window_ms);
        b.cooldown_ms = self
            .field_u64(&f, path, "cooldown_ms", 1)
            .unwrap_or(b.cooldown_ms);
        b
    }

    /// A fraction in `(0, 1]`, given as a number or (after expansion) a numeric string.
    fn error_rate(&mut self, path: &str, v: &Value) -> Option<f64> {
        let parsed = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => self.expand(path, s)?.trim().parse::<f64>().ok(),
            _ => None,
        };
        // NaN fails both comparisons, so it is refused too.
        if let Some(rate) = parsed.filter(|r| *r > 0.0 && *r <= 1.0) {
            return Some(rate);
        }
        // 50 for 50% is the likely slip; say what it should be.
        let hint = match parsed {
            Some(r) if r > 1.0 && r <= 100.0 && r.fract() == 0.0 => {
                format!(" (a fraction: {r}% is {})", r / 100.0)
            }
            _ => String::new(),
        };
        let msg = format!(
            "expected a number greater than 0 and at most 1, got {}{hint}",
            self.got(v)
        );
        self.problem(path, msg);
        None
    }

    fn mock(&mut self, path: &str, v: &Value) -> MockSettings {
        let mut m = MockSettings::default();
        let Some(f) = self.fields(path, v, MOCK_FIELDS) else {
            return m;
        };
        m.chunks = self.field_u32(&f, path, "chunks", 1).unwrap_or(m.chunks);
        m.chunk_delay_ms = self
            .field_u64(&f, path, "chunk_delay_ms", 0)
            .unwrap_or(m.chunk_delay_ms);
        m.latency_ms = self
            .field_u64(&f, path, "latency_ms", 0)
            .unwrap_or(m.latency_ms);
        m.reply_words = self
            .field_u32(&f, path, "reply_words", 0)
            .unwrap_or(m.reply_words);
        if let Some(v) = f.get("dialect") {
            m.dialect = self
                .mock_dialect(&child(path, "dialect"), v)
                .unwrap_or(m.dialect);
        }
        m
    }

    fn mock_dialect(&mut self, path: &str, v: &Value) -> Option<Dialect> {
        let name = self.string(path, v)?;
        match name.as_str() {
            "openai" => return Some(Dialect::OpenAi),
            "anthropic" => return Some(Dialect::Anthropic),
            "gemini" => return Some(Dialect::Gemini),
            _ => {}
        }
        let msg = if name == "bedrock" {
            // Bedrock is only ever an upstream (SigV4, binary event streams); no client speaks it.
            "bedrock is not a mock dialect (expected openai, anthropic or gemini)".to_string()
        } else {
            let hint = did_you_mean(&name, MOCK_DIALECTS.iter().copied());
            format!("expected openai, anthropic or gemini, got {name:?}{hint}")
        };
        self.problem(path, msg);
        None
    }

    /// Extra upstream headers, keyed by lower-case name (HTTP names are case-insensitive).
    fn headers(&mut self, path: &str, v: &Value) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(entries) = self.entries(path, v) else {
            return out;
        };
        for (name, value) in entries {
            let p = child(path, name);
            // Header values may be tokens for custom auth schemes: never echo them.
            self.redact = true;
            let value = self.string(&p, value);
            self.redact = false;
            let Ok(header) = http::HeaderName::from_bytes(name.as_bytes()) else {
                self.problem(&p, "invalid header name");
                continue;
            };
            let lower = header.as_str();
            let refusal = if HOP_BY_HOP.contains(&lower) {
                Some("hop-by-hop header; it cannot be sent upstream")
            } else if CREDENTIAL_HEADERS.contains(&lower) {
                Some("credentials cannot be set as headers; use keys (or auth: passthrough)")
            } else if MANAGED_HEADERS.contains(&lower) {
                Some("set by the gateway for each request; it cannot be overridden")
            } else if out.contains_key(lower) {
                Some("duplicate header (names are case-insensitive)")
            } else {
                None
            };
            if let Some(msg) = refusal {
                self.problem(&p, msg);
                continue;
            }
            let Some(value) = value else { continue };
            if http::HeaderValue::from_str(&value).is_err() {
                self.problem(
                    &p,
                    "invalid header value (control characters are not allowed)",
                );
                continue;
            }
            out.insert(lower.to_string(), value);
        }
        out
    }

    fn ca_file(&mut self, path: &str, v: &Value) -> Option<PathBuf> {
        let text = self.string(path, v)?;
        let mut file = PathBuf::from(text);
        if let (true, Some(base)) = (file.is_relative(), self.base_dir) {
            file = base.join(file);
        }
        let pem = match std::fs::read(&file) {
            Ok(pem) => pem,
            Err(e) => {
                self.problem(path, format!("cannot read {}: {e}", file.display()));
                return None;
            }
        };
        let mut certs = 0usize;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            if let Err(e) = cert {
                let msg = format!("invalid PEM in {}: {e}", file.display());
                self.problem(path, msg);
                return None;
            }
            certs += 1;
        }
        if certs == 0 {
            let msg = format!("no PEM certificate found in {}", file.display());
            self.problem(path, msg);
            return None;
        }
        Some(file)
    }
}

// `models`.
impl Decoder<'_> {
    fn models(&mut self, path: &str, v: &Value, known: &KnownProviders) -> Vec<ModelConfig> {
        let Some(items) = self.sequence(path, v) else {
            return Vec::new();
        };
        let names = self.model_names(items);
        let mut first_index: HashMap<String, usize> = HashMap::new();
        let mut models = Vec::with_capacity(items.len());
        for (i, entry) in items.iter().enumerate() {
            let p = item(path, i);
            let Some(f) = self.fields(&p, entry, MODEL_FIELDS) else {
                continue;
            };
            let name = self.required_string(&f, &p, "name");
            match &name {
                Some(n) if n.is_empty() => self.problem(&child(&p, "name"), "must not be empty"),
                Some(n) => {
                    if let Some(first) = first_index.get(n) {
                        let msg = format!(
                            "duplicate model name {n:?} (first defined at {path}[{first}])"
                        );
                        self.problem(&child(&p, "name"), msg);
                    } else {
                        first_index.insert(n.clone(), i);
                    }
                }
                None => {}
            }
            // Without targets the model is dropped, but its other fields are still checked so
            // that one run reports everything.
            let targets = match f.get("targets") {
                Some(v) => Some(self.targets(&child(&p, "targets"), v, known)),
                None => {
                    let msg = "missing required field (a list of { provider, model, weight })";
                    self.problem(&child(&p, "targets"), msg);
                    None
                }
            };
            let mut model = self.model_resilience(&p, &f, name.as_deref(), &names, known);
            if let Some(targets) = targets {
                model.name = name.unwrap_or_default();
                model.targets = targets;
                models.push(model);
            }
        }
        models
    }

    /// Every model name written in the file, valid or not (like provider ids), split into
    /// exact names and glob patterns, so fallbacks may refer to models further down and a
    /// model with its own problems does not also make each fallback naming it "unknown".
    /// Nothing is reported here; the names are checked where they are decoded.
    fn model_names(&self, items: &[Value]) -> ModelNames {
        let mut names = ModelNames::default();
        for entry in items {
            let name = match entry.get("name") {
                Some(Value::String(s)) => match env::expand(s, self.env) {
                    Ok(expanded) => expanded.into_owned(),
                    Err(_) => s.clone(),
                },
                Some(Value::Number(n)) => n.to_string(),
                _ => continue,
            };
            if glob::is_glob(&name) {
                names.globs.push(name);
            } else {
                names.exact.push(name);
            }
        }
        names
    }

    /// The resilience settings of one model (everything but `name` and `targets`), with the
    /// checks that tie them to its targets.
    fn model_resilience(
        &mut self,
        path: &str,
        f: &Fields,
        name: Option<&str>,
        names: &ModelNames,
        known: &KnownProviders,
    ) -> ModelConfig {
        let mut m = ModelConfig::default();
        // Counted as written, so a target that failed to decode changes no verdict below.
        let written_targets = f.get("targets").and_then(Value::as_sequence);
        let mut balance_failed = false;
        if let Some(v) = f.get("balance") {
            let bp = child(path, "balance");
            let decoded = self.balance(&bp, v);
            balance_failed = decoded.is_none();
            if let Some(balance) = decoded {
                m.balance = balance;
                let limited = written_targets.is_some_and(|targets| {
                    targets.iter().any(|t| {
                        ["rpm", "tpm"]
                            .iter()
                            .any(|k| t.get(*k).is_some_and(|v| !v.is_null()))
                            || t.get("provider")
                                .and_then(Value::as_str)
                                .is_some_and(|p| known.key_limited.contains(&p))
                    })
                });
                if balance == Balance::UsageAware && written_targets.is_some() && !limited {
                    let msg = "usage_aware needs rpm or tpm on at least one target, or on a key of a target's provider (the limits it balances against)";
                    self.problem(&bp, msg);
                }
            }
        }
        if m.balance != Balance::UsageAware && !balance_failed {
            // Only usage-aware balancing reads a target's limits; elsewhere they would be inert.
            // (An invalid limit is reported on its own, not again here.)
            let valid = |v: &Value| match v {
                Value::Number(n) => n.as_u64().is_some_and(|n| n > 0),
                Value::String(s) => s.contains("${"),
                _ => false,
            };
            for (j, t) in written_targets.into_iter().flatten().enumerate() {
                for k in ["rpm", "tpm"] {
                    if t.get(k).is_some_and(valid) {
                        let tp = child(&item(&child(path, "targets"), j), k);
                        let msg =
                            "only applies with balance: usage_aware (the limits it balances by)";
                        self.problem(&tp, msg);
                    }
                }
            }
        }
        if let Some(v) = f.get("retry") {
            m.retry = self.retry(&child(path, "retry"), v);
        }
        m.deadline_ms = self.field_u64(f, path, "deadline_ms", 1);
        if let Some(v) = f.get("timeouts") {
            m.timeouts = self.timeout_overrides(&child(path, "timeouts"), v);
        }
        if let Some(v) = f.get("hedge") {
            let hp = child(path, "hedge");
            m.hedge = self.hedge(&hp, v);
            let one_target = written_targets.is_some_and(|t| t.len() == 1);
            // A `fallbacks` that is not a list is reported on its own; hedge is not blamed too.
            let has_fallbacks = f
                .get("fallbacks")
                .is_some_and(|v| v.as_sequence().is_none_or(|l| !l.is_empty()));
            if one_target && !has_fallbacks {
                let msg = "nothing to hedge to: the model has one target and no fallbacks (add a target or fallbacks, or remove hedge)";
                self.problem(&hp, msg);
            }
        }
        for list in FALLBACK_LISTS {
            let Some(v) = f.get(list) else { continue };
            let decoded = self.fallbacks(&child(path, list), v, name, names, known);
            match *list {
                "fallbacks" => m.fallbacks = decoded,
                "context_window_fallbacks" => m.context_window_fallbacks = decoded,
                _ => m.content_policy_fallbacks = decoded,
            }
        }
        m
    }

    fn balance(&mut self, path: &str, v: &Value) -> Option<Balance> {
        let name = self.string(path, v)?;
        let balance = match name.as_str() {
            "weighted" => Balance::Weighted,
            "least_in_flight" => Balance::LeastInFlight,
            "lowest_latency" => Balance::LowestLatency,
            "usage_aware" => Balance::UsageAware,
            _ => {
                let hint = did_you_mean(&name, BALANCE_MODES.iter().copied());
                let msg = format!(
                    "expected weighted, least_in_flight, lowest_latency or usage_aware, got {name:?}{hint}"
                );
                self.problem(path, msg);
                return None;
            }
        };
        Some(balance)
    }

    fn retry(&mut self, path: &str, v: &Value) -> RetryConfig {
        let mut r = RetryConfig::default();
        let Some(f) = self.fields(path, v, RETRY_FIELDS) else {
            return r;
        };
        if let Some(v) = f.get("attempts") {
            r.attempts = self
                .uint(&child(path, "attempts"), v, 1, MAX_RETRY_ATTEMPTS)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(r.attempts);
        }
        let initial = self.field_u64(&f, path, "backoff_initial_ms", 0);
        let max = self.field_u64(&f, path, "backoff_max_ms", 0);
        r.retry_after_max_ms = self
            .field_u64(&f, path, "retry_after_max_ms", 0)
            .unwrap_or(r.retry_after_max_ms);
        // Compared only when neither was invalid (reported already).
        let initial_ok = initial.is_some() || f.get("backoff_initial_ms").is_none();
        let max_ok = max.is_some() || f.get("backoff_max_ms").is_none();
        r.backoff_initial_ms = initial.unwrap_or(r.backoff_initial_ms);
        r.backoff_max_ms = max.unwrap_or(r.backoff_max_ms);
        if initial_ok && max_ok && r.backoff_max_ms < r.backoff_initial_ms {
            let (initial, max) = (r.backoff_initial_ms, r.backoff_max_ms);
            if f.get("backoff_max_ms").is_some() {
                let msg = format!("must be at least backoff_initial_ms ({initial}), got {max}");
                self.problem(&child(path, "backoff_max_ms"), msg);
            } else {
                let msg =
                    format!("must not exceed backoff_max_ms ({max}, the default), got {initial}");
                self.problem(&child(path, "backoff_initial_ms"), msg);
            }
        }
        r
    }

    /// Replacements for the provider timeouts. Only a `first_token_ms` past a `total_ms` given
    /// here is refused: the total that applies otherwise depends on each target's provider.
    fn timeout_overrides(&mut self, path: &str, v: &Value) -> TimeoutOverrides {
        let Some(f) = self.fields(path, v, TIMEOUT_FIELDS) else {
            return TimeoutOverrides::default();
        };
        if f.get("connect_ms").is_some() {
            // Connections are pooled per provider (and reused across models), so the connect
            // deadline can only be the provider's.
            let msg = "is a provider setting (connections are pooled per provider): set it under providers.<id>.timeouts";
            self.problem(&child(path, "connect_ms"), msg);
        }
        let o = TimeoutOverrides {
            first_byte_ms: self.field_u64(&f, path, "first_byte_ms", 1),
            first_token_ms: self.field_u64(&f, path, "first_token_ms", 1),
            stall_ms: self.field_u64(&f, path, "stall_ms", 1),
            total_ms: self.field_u64(&f, path, "total_ms", 1),
        };
        if let Some(total_ms) = o.total_ms {
            self.within_total(path, "first_token_ms", o.first_token_ms, total_ms, true);
            self.within_total(path, "stall_ms", o.stall_ms, total_ms, true);
        }
        o
    }

    /// `{ after_ms: N }` (a fixed delay) or `{ after: p95, min_ms: N }`, plus `max_hedges`.
    fn hedge(&mut self, path: &str, v: &Value) -> Option<HedgeConfig> {
        let f = self.fields(path, v, HEDGE_FIELDS)?;
        let after = match (f.get("after_ms"), f.get("after")) {
            (Some(_), Some(_)) => {
                let msg = "give after_ms (a fixed delay) or after: p95, not both";
                self.problem(path, msg);
                None
            }
            (Some(v), None) => {
                if f.get("min_ms").is_some() {
                    let msg = "only applies with after: p95 (after_ms is a fixed delay)";
                    self.problem(&child(path, "min_ms"), msg);
                }
                self.uint(&child(path, "after_ms"), v, 1, u64::MAX)
                    .map(HedgeDelay::FixedMs)
            }
            (None, Some(v)) => {
                let p95 = self.hedge_after(&child(path, "after"), v);
                let min_ms = match f.get("min_ms") {
                    Some(v) => self.uint(&child(path, "min_ms"), v, 0, u64::MAX),
                    None => Some(DEFAULT_HEDGE_MIN_MS),
                };
                p95.and(min_ms).map(|min_ms| HedgeDelay::P95 { min_ms })
            }
            (None, None) => {
                let msg = "expected after_ms (a fixed delay, like after_ms: 2000) or after: p95 (the target's live p95 time to first token)";
                self.problem(path, msg);
                None
            }
        };
        let max_hedges = match f.get("max_hedges") {
            Some(v) => self
                .uint(&child(path, "max_hedges"), v, 1, MAX_HEDGES)
                .and_then(|n| u32::try_from(n).ok()),
            None => Some(DEFAULT_MAX_HEDGES),
        };
        Some(HedgeConfig {
            after: after?,
            max_hedges: max_hedges?,
        })
    }

    /// The adaptive hedge delay's name; `Some(())` when it is `p95`.
    fn hedge_after(&mut self, path: &str, v: &Value) -> Option<()> {
        let text = self.string(path, v)?;
        if text == HEDGE_P95 {
            return Some(());
        }
        let hint = if text.trim().parse::<u64>().is_ok() {
            format!(" (for a fixed delay, use after_ms: {})", text.trim())
        } else {
            did_you_mean(&text, [HEDGE_P95])
        };
        let msg = format!(
            "expected {HEDGE_P95}, got {}{hint}",
            self.got(&Value::String(text.clone()))
        );
        self.problem(path, msg);
        None
    }

    /// A list of models to try after this one: exact configured model names, or
    /// `provider/model` with a known provider. Cycles across models are fine (the engine tries
    /// each model at most once per request), so only a model naming itself is refused.
    fn fallbacks(
        &mut self,
        path: &str,
        v: &Value,
        own: Option<&str>,
        names: &ModelNames,
        known: &KnownProviders,
    ) -> Vec<String> {
        let Some(items) = self.sequence(path, v) else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        let mut first_at: HashMap<String, usize> = HashMap::new();
        for (i, entry) in items.iter().enumerate() {
            let p = item(path, i);
            let Some(target) = self.string(&p, entry) else {
                continue;
            };
            if let Some(first) = first_at.get(&target) {
                let msg = format!("{target:?} is already listed at {path}[{first}]");
                self.problem(&p, msg);
                continue;
            }
            first_at.insert(target.clone(), i);
            if let Some(msg) = fallback_problem(&target, own, names, known) {
                self.problem(&p, msg);
                continue;
            }
            out.push(target);
        }
        out
    }

    fn targets(&mut self, path: &str, v: &Value, known: &KnownProviders) -> Vec<TargetConfig> {
        let Some(items) = self.sequence(path, v) else {
            return Vec::new();
        };
        if items.is_empty() {
            self.problem(path, "must list at least one target");
        }
        let mut targets = Vec::with_capacity(items.len());
        for (i, entry) in items.iter().enumerate() {
            let p = item(path, i);
            let Some(f) = self.fields(&p, entry, TARGET_FIELDS) else {
                continue;
            };
            let provider = self.required_string(&f, &p, "provider");
            if let Some(provider) = &provider {
                self.check_provider_ref(&child(&p, "provider"), provider, known.ids);
            }
            let model = f
                .get("model")
                .and_then(|v| self.string(&child(&p, "model"), v));
            if model.as_deref() == Some("") {
                let msg = "must not be empty (omit it to forward the client's model name)";
                self.problem(&child(&p, "model"), msg);
            }
            let weight = self.field_u32(&f, &p, "weight", 1).unwrap_or(1);
            let deployment = match f.get("deployment") {
                Some(v) => {
                    let dp = child(&p, "deployment");
                    let kind = provider.as_deref().and_then(|id| known.kinds.get(id));
                    match kind {
                        Some(kind) if *kind != ProviderKind::Azure => {
                            let msg = format!(
                                "only applies to kind azure (provider {:?} is kind {})",
                                provider.as_deref().unwrap_or_default(),
                                kind.as_str()
                            );
                            self.problem(&dp, msg);
                            None
                        }
                        _ => self.deployment(&dp, v),
                    }
                }
                None => None,
            };
            let max_concurrency = self.field_u32(&f, &p, "max_concurrency", 1);
            let queue = self.field_u32(&f, &p, "queue", 0).unwrap_or(0);
            if f.get("queue").is_some() && f.get("max_concurrency").is_none() {
                // Without a concurrency limit nothing ever waits, so the queue would be inert.
                let msg = "only applies together with max_concurrency (requests wait for a slot only when concurrency is limited)";
                self.problem(&child(&p, "queue"), msg);
            }
            targets.push(TargetConfig {
                provider: provider.unwrap_or_default(),
                model,
                weight,
                deployment,
                max_concurrency,
                queue,
                rpm: self.field_u32(&f, &p, "rpm", 1),
                tpm: self.field_u64(&f, &p, "tpm", 1),
            });
        }
        targets
    }

    /// An Azure deployment name; it goes into the request path, so it must be one segment.
    fn deployment(&mut self, path: &str, v: &Value) -> Option<String> {
        let name = self.string(path, v)?;
        if name.is_empty() {
            let msg = "must not be empty (omit it to use the model name as the deployment)";
            self.problem(path, msg);
            return None;
        }
        if name.chars().any(|c| {
            matches!(c, '/' | '?' | '#' | '%' | '\\') || c.is_whitespace() || c.is_control()
        }) {
            let msg = format!(
                "expected a deployment name (it goes into the request path: no '/', '?', '#', '%', '\\' or spaces), got {}",
                self.got(&Value::String(name))
            );
            self.problem(path, msg);
            return None;
        }
        Some(name)
    }

    fn check_provider_ref(&mut self, path: &str, provider: &str, ids: &[String]) {
        if provider == BUILTIN_MOCK || ids.iter().any(|id| id == provider) {
            return;
        }
        let known = || {
            ids.iter()
                .map(String::as_str)
                .chain((!ids.iter().any(|id| id == BUILTIN_MOCK)).then_some(BUILTIN_MOCK))
        };
        let hint = did_you_mean(provider, known());
        let msg = if hint.is_empty() {
            let list: Vec<&str> = known().collect();
            format!("unknown provider {provider:?} (known: {})", list.join(", "))
        } else {
            format!("unknown provider {provider:?}{hint}")
        };
        self.problem(path, msg);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let env = |name: &str| (name == "T").then(|| "2000".to_string());
        let root: Value = match serde_yaml_ng::from_str(yaml) {
            Ok(root) => root,
            Err(e) => panic!("test YAML does not parse: {e}"),
        };
        match decode(&root, &env, None) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn size_strings() {
        assert_eq!(parse_size("33554432"), Some(33_554_432));
        assert_eq!(parse_size("32MiB"), Some(32 << 20));
        assert_eq!(parse_size("512KiB"), Some(512 << 10));
        assert_eq!(parse_size("1MB"), Some(1_000_000));
        assert_eq!(parse_size(" 2 gib "), Some(2 << 30));
        assert_eq!(parse_size("10b"), Some(10));
        for bad in [
            "",
            "0",
            "0MiB",
            "MiB",
            "1.5MiB",
            "32M",
            "-1",
            "99999999999GiB",
            "1 MiB x",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn server_settings_accept_sizes_and_numeric_strings() {
        let root: Value = serde_yaml_ng::from_str(
            "server: { body_limit_bytes: 512KiB, drain_timeout_ms: \"${T}\" }",
        )
        .unwrap_or(Value::Null);
        let env = |name: &str| (name == "T").then(|| "2000".to_string());
        let server = decode(&root, &env, None).map(|c| c.server);
        assert_eq!(
            server,
            Ok(ServerSettings {
                body_limit_bytes: 512 * 1024,
                drain_timeout_ms: 2000,
                ..ServerSettings::default()
            })
        );
        assert_eq!(
            problems("server: { body_limit_bytes: 32M, header_read_timeout_ms: 0 }"),
            [
                "server.body_limit_bytes: expected a size in bytes greater than 0, like 33554432 or \"32MiB\", got \"32M\"",
                "server.header_read_timeout_ms: expected a positive integer, got 0",
            ]
        );
    }

    #[test]
    fn root_and_type_errors() {
        assert_eq!(problems("- a"), ["<file>: expected a mapping, got a list"]);
        assert_eq!(
            problems("listen: localhost"),
            ["listen: expected an IP address and port like 127.0.0.1:8080, got \"localhost\""]
        );
        assert_eq!(
            problems(
                "providers: { m: { kind: mock, mock: { chunks: 0, reply_words: 5000000000 } } }"
            ),
            [
                "providers.m.mock.chunks: expected a positive integer, got 0",
                "providers.m.mock.reply_words: must be at most 4294967295, got 5000000000",
            ]
        );
    }

    #[test]
    fn headers_are_checked() {
        let got = problems(
            "providers:\n  p:\n    kind: mock\n    headers:\n      Connection: close\n      X-Api-Key: s3cret\n      Host: h\n      \"bad name\": x\n      X-Ok: \"a\\nb\"\n      HTTP-Referer: https://e.com\n      http-referer: again\n",
        );
        assert_eq!(
            got,
            [
                "providers.p.headers.Connection: hop-by-hop header; it cannot be sent upstream",
                "providers.p.headers.X-Api-Key: credentials cannot be set as headers; use keys (or auth: passthrough)",
                "providers.p.headers.Host: set by the gateway for each request; it cannot be overridden",
                "providers.p.headers.bad name: invalid header name",
                "providers.p.headers.X-Ok: invalid header value (control characters are not allowed)",
                "providers.p.headers.http-referer: duplicate header (names are case-insensitive)",
            ]
        );
        assert!(got.iter().all(|m| !m.contains("s3cret")));
    }

    #[test]
    fn kind_messages() {
        assert_eq!(
            problems("providers: { g: { kind: groq }, o: { kind: opnai, base_url: 'http://x' }, c: { kind: claude }, n: { base_url: 'http://x' } }"),
            [
                "providers.g.kind: unknown provider kind \"groq\" (did you mean preset: groq?)",
                "providers.o.kind: unknown provider kind \"opnai\" (did you mean \"openai\"?) (supported: openai, anthropic, gemini, azure, bedrock, mock)",
                "providers.c.kind: unknown provider kind \"claude\" (did you mean \"anthropic\"?) (supported: openai, anthropic, gemini, azure, bedrock, mock)",
                "providers.n.kind: missing required field (supported: openai, anthropic, gemini, azure, bedrock, mock), or set preset",
            ]
        );
        let config = decoded(
            "providers:\n  o: { kind: openai, base_url: 'http://x' }\n  a: { kind: anthropic, keys: [k] }\n  g: { kind: gemini, keys: [k] }\n  z: { kind: azure, base_url: 'https://r.openai.azure.com', keys: [k] }\n  b: { kind: bedrock, region: us-east-1, keys: [k] }\n  m: { kind: mock }\n",
            &[],
        );
        let kinds: Vec<ProviderKind> = config.providers.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [
                ProviderKind::OpenAi,
                ProviderKind::Anthropic,
                ProviderKind::Gemini,
                ProviderKind::Azure,
                ProviderKind::Bedrock,
                ProviderKind::Mock,
            ]
        );
    }

    /// Decodes with exactly these environment variables; panics with the problems otherwise.
    fn decoded(yaml: &str, vars: &[(&str, &str)]) -> Config {
        match decode_with(yaml, vars) {
            Ok(config) => config,
            Err(problems) => panic!("unexpected problems: {problems:#?}"),
        }
    }

    fn decode_with(yaml: &str, vars: &[(&str, &str)]) -> Result<Config, Vec<String>> {
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let root: Value = match serde_yaml_ng::from_str(yaml) {
            Ok(root) => root,
            Err(e) => panic!("test YAML does not parse: {e}"),
        };
        decode(&root, &env, None)
            .map_err(|problems| problems.iter().map(ToString::to_string).collect())
    }

    fn problems_with(yaml: &str, vars: &[(&str, &str)]) -> Vec<String> {
        decode_with(yaml, vars).err().unwrap_or_default()
    }

    fn key_values(p: &ProviderConfig) -> Vec<&str> {
        p.keys.iter().map(|k| k.value.as_str()).collect()
    }

    #[test]
    fn native_kinds_get_vendor_base_urls_and_key_variables() {
        let vars = [
            ("ANTHROPIC_API_KEY", "sk-ant-env"),
            ("GEMINI_API_KEY", "gem-env"),
            ("GOOGLE_API_KEY", "goog-env"),
            ("AZURE_OPENAI_API_KEY", "az-env"),
            ("AWS_BEARER_TOKEN_BEDROCK", "bedrock-env"),
        ];
        let config = decoded(
            "providers:\n  a: { kind: anthropic }\n  g: { kind: gemini }\n  z: { kind: azure, base_url: 'https://r.openai.azure.com/' }\n  b: { kind: bedrock, region: eu-west-3 }\n  m: { kind: mock }\n",
            &vars,
        );
        let summary: Vec<_> = config
            .providers
            .iter()
            .map(|p| (p.id.as_str(), p.base_url.as_deref(), key_values(p)))
            .collect();
        assert_eq!(
            summary,
            [
                ("a", Some("https://api.anthropic.com"), vec!["sk-ant-env"]),
                (
                    "g",
                    Some("https://generativelanguage.googleapis.com"),
                    vec!["gem-env"]
                ),
                ("z", Some("https://r.openai.azure.com"), vec!["az-env"]),
                (
                    "b",
                    Some("https://bedrock-runtime.eu-west-3.amazonaws.com"),
                    vec!["bedrock-env"]
                ),
                ("m", None, vec![]),
            ]
        );
        assert_eq!(config.providers[3].region.as_deref(), Some("eu-west-3"));
        assert!(config.providers.iter().all(|p| p.aws_credentials.is_none()
            && p.api_version.is_none()
            && p.anthropic_version.is_none()));

        // GOOGLE_API_KEY when GEMINI_API_KEY is unset or empty; explicit base URLs win.
        let config = decoded(
            "providers:\n  g: { kind: gemini, base_url: 'https://proxy.example/gemini/' }\n",
            &[("GEMINI_API_KEY", ""), ("GOOGLE_API_KEY", "goog-env")],
        );
        assert_eq!(key_values(&config.providers[0]), ["goog-env"]);
        assert_eq!(
            config.providers[0].base_url.as_deref(),
            Some("https://proxy.example/gemini")
        );

        // Given keys and passthrough read no variable.
        let config = decoded(
            "providers:\n  a: { kind: anthropic, keys: [own] }\n  g: { kind: gemini, auth: passthrough }\n",
            &vars,
        );
        assert_eq!(key_values(&config.providers[0]), ["own"]);
        assert!(config.providers[1].keys.is_empty());
        assert_eq!(config.providers[1].auth, AuthMode::Passthrough);
    }

    #[test]
    fn missing_key_variables_and_base_urls_are_reported() {
        assert_eq!(
            problems_with(
                "providers:\n  a: { kind: anthropic }\n  g: { kind: gemini }\n  z: { kind: azure }\n  b: { kind: bedrock }\n",
                &[],
            ),
            [
                "providers.a.keys: not given, and environment variable ANTHROPIC_API_KEY (read by kind anthropic) is not set",
                "providers.g.keys: not given, and none of the environment variables GEMINI_API_KEY, GOOGLE_API_KEY (read by kind gemini) is set",
                "providers.z.base_url: required for kind azure: the resource endpoint, like https://my-resource.openai.azure.com",
                "providers.z.keys: not given, and environment variable AZURE_OPENAI_API_KEY (read by kind azure) is not set",
                "providers.b.region: required for kind bedrock (like us-east-1), unless base_url is given",
                "providers.b.keys: not given, and no credentials found: set AWS_BEARER_TOKEN_BEDROCK (a Bedrock API key), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (signed requests; AWS_SESSION_TOKEN optional), or give keys, or aws_access_key_id and aws_secret_access_key",
            ]
        );
    }

    #[test]
    fn fields_of_another_kind_are_problems() {
        let yaml = r#"
providers:
  o: { kind: openai, base_url: "http://x", api_version: 2024-10-21, mock: { chunks: 2 } }
  a: { kind: anthropic, keys: [k], region: us-east-1, preset: groq }
  g: { kind: gemini, keys: [k], anthropic_version: "2023-06-01" }
  z: { kind: azure, base_url: "https://r.openai.azure.com", keys: [k], aws_access_key_id: AKIDSECRET1, aws_secret_access_key: SECRETSECRET2, aws_session_token: TOKENSECRET3 }
  m: { kind: mock, api_version: x, region: us-east-1, anthropic_version: "2023-06-01" }
"#;
        let got = problems(yaml);
        assert_eq!(
            got,
            [
                "providers.o.mock: only applies to kind mock",
                "providers.o.api_version: only applies to kind azure",
                "providers.a.preset: only applies to kind openai",
                "providers.a.region: only applies to kind bedrock",
                "providers.g.anthropic_version: only applies to kind anthropic",
                "providers.z.aws_access_key_id: only applies to kind bedrock",
                "providers.z.aws_secret_access_key: only applies to kind bedrock",
                "providers.z.aws_session_token: only applies to kind bedrock",
                "providers.m.api_version: only applies to kind azure",
                "providers.m.region: only applies to kind bedrock",
                "providers.m.anthropic_version: only applies to kind anthropic",
            ]
        );
        for secret in ["AKIDSECRET1", "SECRETSECRET2", "TOKENSECRET3"] {
            assert!(got.iter().all(|m| !m.contains(secret)), "{secret} leaked");
        }
        // A preset does not lend its base URL or key variable to another kind.
        let config = decoded(
            "providers:\n  a: { kind: anthropic, keys: [k] }\n",
            &[("GROQ_API_KEY", "gsk")],
        );
        assert_eq!(
            config.providers[0].base_url.as_deref(),
            Some(ANTHROPIC_BASE_URL)
        );
    }

    #[test]
    fn kind_specific_values_are_validated() {
        let yaml = r#"
providers:
  z: { kind: azure, base_url: "https://r.openai.azure.com", keys: [k], api_version: "2024-10-21&x=1" }
  z2: { kind: azure, base_url: "https://r.openai.azure.com", keys: [k], api_version: "" }
  a: { kind: anthropic, keys: [k], anthropic_version: "2023-6-1" }
  b1: { kind: bedrock, keys: [k], region: US-East-1 }
  b2: { kind: bedrock, keys: [k], region: us_east_1 }
  b3: { kind: bedrock, keys: [k], region: "us-east-" }
  b4: { kind: bedrock, keys: [k], region: "1us" }
"#;
        assert_eq!(
            problems(yaml),
            [
                "providers.z.api_version: expected an API version like \"2024-10-21\" (letters, digits, '-', '.', '_'), got \"2024-10-21&x=1\"",
                "providers.z2.api_version: expected an API version like \"2024-10-21\" (letters, digits, '-', '.', '_'), got \"\"",
                "providers.a.anthropic_version: expected a version date like \"2023-06-01\", got \"2023-6-1\"",
                "providers.b1.region: expected an AWS region like \"us-east-1\" (lowercase letters, digits and dashes), got \"US-East-1\"",
                "providers.b2.region: expected an AWS region like \"us-east-1\" (lowercase letters, digits and dashes), got \"us_east_1\"",
                "providers.b3.region: expected an AWS region like \"us-east-1\" (lowercase letters, digits and dashes), got \"us-east-\"",
                "providers.b4.region: expected an AWS region like \"us-east-1\" (lowercase letters, digits and dashes), got \"1us\"",
            ]
        );
        let config = decoded(
            "providers:\n  z: { kind: azure, base_url: 'https://r.openai.azure.com', keys: [k], api_version: 2025-04-01-preview }\n  a: { kind: anthropic, keys: [k], anthropic_version: '${V}' }\n  b: { kind: bedrock, keys: [k], region: '${R}' }\n",
            &[("V", "2023-06-01"), ("R", "ap-southeast-2")],
        );
        assert_eq!(
            config.providers[0].api_version.as_deref(),
            Some("2025-04-01-preview")
        );
        assert_eq!(
            config.providers[1].anthropic_version.as_deref(),
            Some("2023-06-01")
        );
        assert_eq!(
            config.providers[2].base_url.as_deref(),
            Some("https://bedrock-runtime.ap-southeast-2.amazonaws.com")
        );
    }

    #[test]
    fn base_urls_must_not_carry_the_appended_api_path() {
        let yaml = r#"
providers:
  a: { kind: anthropic, keys: [k], base_url: "https://api.anthropic.com/v1/" }
  a2: { kind: anthropic, keys: [k], base_url: "https://api.anthropic.com/v1/messages" }
  g: { kind: gemini, keys: [k], base_url: "https://generativelanguage.googleapis.com/v1beta" }
  g2: { kind: gemini, keys: [k], base_url: "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent" }
  z: { kind: azure, keys: [k], base_url: "https://r.openai.azure.com/openai/v1" }
  z2: { kind: azure, keys: [k], base_url: "https://r.openai.azure.com/openai/deployments/gpt-4o/chat/completions" }
"#;
        assert_eq!(
            problems(yaml),
            [
                "providers.a.base_url: ends with \"/v1\", which the gateway appends itself for kind anthropic; give the base URL only, like https://api.anthropic.com",
                "providers.a2.base_url: contains \"/v1/messages\", which the gateway appends itself for kind anthropic; give the base URL only, like https://api.anthropic.com",
                "providers.g.base_url: ends with \"/v1beta\", which the gateway appends itself for kind gemini; give the base URL only, like https://generativelanguage.googleapis.com",
                "providers.g2.base_url: contains \"/models/\", which the gateway appends itself for kind gemini; give the base URL only, like https://generativelanguage.googleapis.com",
                "providers.z.base_url: ends with \"/openai/v1\", which the gateway appends itself for kind azure; give the base URL only, like https://my-resource.openai.azure.com",
                "providers.z2.base_url: contains \"/openai/deployments/\", which the gateway appends itself for kind azure; give the base URL only, like https://my-resource.openai.azure.com",
            ]
        );
        // A proxy whose own path has a version segment in the middle is fine, and OpenAI keeps
        // its `/v1` (OpenAI base URLs include it).
        let config = decoded(
            "providers:\n  a: { kind: anthropic, keys: [k], base_url: 'https://gateway.ai.cloudflare.com/v1/acct/gw/anthropic' }\n  o: { kind: openai, base_url: 'https://api.openai.com/v1' }\n",
            &[],
        );
        assert_eq!(
            config.providers[0].base_url.as_deref(),
            Some("https://gateway.ai.cloudflare.com/v1/acct/gw/anthropic")
        );
    }

    #[test]
    fn bedrock_credentials_resolution() {
        let yaml = "providers:\n  b: { kind: bedrock, region: us-west-2 }\n";
        // A Bedrock API key in the environment wins over SigV4 variables.
        let config = decoded(
            yaml,
            &[
                ("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key"),
                ("AWS_ACCESS_KEY_ID", "AKIAENV"),
                ("AWS_SECRET_ACCESS_KEY", "env-secret"),
            ],
        );
        assert_eq!(key_values(&config.providers[0]), ["bedrock-api-key"]);
        assert_eq!(config.providers[0].aws_credentials, None);

        // The standard AWS variables, session token included.
        let config = decoded(
            yaml,
            &[
                ("AWS_BEARER_TOKEN_BEDROCK", ""),
                ("AWS_ACCESS_KEY_ID", "AKIAENV"),
                ("AWS_SECRET_ACCESS_KEY", "env-secret"),
                ("AWS_SESSION_TOKEN", "env-token"),
            ],
        );
        assert!(config.providers[0].keys.is_empty());
        assert_eq!(
            config.providers[0].aws_credentials,
            Some(AwsCredentialsConfig {
                access_key_id: "AKIAENV".into(),
                secret_access_key: "env-secret".into(),
                session_token: Some("env-token".into()),
            })
        );

        // Credentials written in the file win over everything in the environment, and do not
        // pick up the environment's session token (it belongs to other credentials).
        let config = decoded(
            "providers:\n  b: { kind: bedrock, region: us-west-2, aws_access_key_id: AKIAFILE, aws_secret_access_key: '${S}' }\n",
            &[
                ("S", "file-secret"),
                ("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key"),
                ("AWS_SESSION_TOKEN", "env-token"),
            ],
        );
        assert!(config.providers[0].keys.is_empty());
        assert_eq!(
            config.providers[0].aws_credentials,
            Some(AwsCredentialsConfig {
                access_key_id: "AKIAFILE".into(),
                secret_access_key: "file-secret".into(),
                session_token: None,
            })
        );

        // `keys` are Bedrock API keys.
        let config = decoded(
            "providers:\n  b: { kind: bedrock, region: us-west-2, keys: [abk-1] }\n",
            &[
                ("AWS_ACCESS_KEY_ID", "AKIAENV"),
                ("AWS_SECRET_ACCESS_KEY", "s"),
            ],
        );
        assert_eq!(key_values(&config.providers[0]), ["abk-1"]);
        assert_eq!(config.providers[0].aws_credentials, None);

        // Passthrough reads nothing.
        let config = decoded(
            "providers:\n  b: { kind: bedrock, region: us-west-2, auth: passthrough }\n",
            &[
                ("AWS_ACCESS_KEY_ID", "AKIAENV"),
                ("AWS_SECRET_ACCESS_KEY", "s"),
            ],
        );
        assert!(config.providers[0].keys.is_empty());
        assert_eq!(config.providers[0].aws_credentials, None);
    }

    #[test]
    fn bedrock_credential_problems_never_show_secrets() {
        let yaml = r#"
providers:
  only_id: { kind: bedrock, region: us-east-1, aws_access_key_id: AKIASECRETID1 }
  only_secret: { kind: bedrock, region: us-east-1, aws_secret_access_key: SECRETVALUE2 }
  only_token: { kind: bedrock, region: us-east-1, keys: [k], aws_session_token: TOKENVALUE3 }
  both: { kind: bedrock, region: us-east-1, keys: [k], aws_access_key_id: AKIASECRETID4, aws_secret_access_key: SECRETVALUE5 }
  pass: { kind: bedrock, region: us-east-1, auth: passthrough, aws_access_key_id: AKIASECRETID6, aws_secret_access_key: SECRETVALUE7 }
  bad: { kind: bedrock, region: us-east-1, aws_access_key_id: [AKIASECRETID8], aws_secret_access_key: "" }
  num: { kind: bedrock, region: us-east-1, aws_access_key_id: 123456789, aws_secret_access_key: { v: SECRETVALUE9 } }
"#;
        let got = problems_with(yaml, &[("AWS_ACCESS_KEY_ID", "AKIAENVSECRET")]);
        assert_eq!(
            got,
            [
                "providers.only_id.aws_secret_access_key: required when aws_access_key_id is given (give both or neither)",
                "providers.only_secret.aws_access_key_id: required when aws_secret_access_key is given (give both or neither)",
                "providers.only_token.aws_session_token: only used together with aws_access_key_id and aws_secret_access_key",
                "providers.both.keys: Bedrock API keys cannot be combined with aws_access_key_id / aws_secret_access_key; give one or the other",
                "providers.pass.auth: passthrough forwards the client's own credentials, so it cannot be combined with aws_access_key_id / aws_secret_access_key",
                "providers.bad.aws_access_key_id: expected a string, got a list",
                "providers.bad.aws_secret_access_key: must not be empty",
                "providers.num.aws_secret_access_key: expected a string, got a mapping",
            ]
        );
        for secret in [
            "AKIASECRETID",
            "SECRETVALUE",
            "TOKENVALUE",
            "AKIAENVSECRET",
            "123456789",
        ] {
            assert!(got.iter().all(|m| !m.contains(secret)), "{secret} leaked");
        }

        // Half of the AWS variables names the missing one, never a value.
        let got = problems_with(
            "providers:\n  b: { kind: bedrock, region: us-east-1 }\n",
            &[("AWS_SECRET_ACCESS_KEY", "ENVSECRETVALUE")],
        );
        assert_eq!(
            got,
            ["providers.b.keys: not given, and environment variable AWS_ACCESS_KEY_ID is not set (AWS_SECRET_ACCESS_KEY is; AWS credentials need both)"]
        );
        assert!(!got[0].contains("ENVSECRETVALUE"));
    }

    #[test]
    fn bedrock_region_rules() {
        // base_url instead of region is fine with a Bedrock API key...
        let config = decoded(
            "providers:\n  b: { kind: bedrock, base_url: 'https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com', keys: [k] }\n",
            &[],
        );
        assert_eq!(config.providers[0].region, None);
        assert_eq!(
            config.providers[0].base_url.as_deref(),
            Some("https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com")
        );
        // ...but SigV4 needs the region for its signing scope.
        assert_eq!(
            problems_with(
                "providers:\n  b: { kind: bedrock, base_url: 'https://proxy.internal' }\n",
                &[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "s")],
            ),
            ["providers.b.region: required to sign requests with AWS credentials (SigV4), also when base_url is given"]
        );
        // Both given: the base URL wins, the region stays for signing.
        let config = decoded(
            "providers:\n  b: { kind: bedrock, region: eu-central-1, base_url: 'https://proxy.internal/' }\n",
            &[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "s")],
        );
        assert_eq!(
            config.providers[0].base_url.as_deref(),
            Some("https://proxy.internal")
        );
        assert_eq!(config.providers[0].region.as_deref(), Some("eu-central-1"));
    }

    #[test]
    fn mock_dialect() {
        let config = decoded(
            "providers:\n  d: { kind: mock }\n  a: { kind: mock, mock: { dialect: anthropic } }\n  g: { kind: mock, mock: { dialect: gemini, chunks: 3 } }\n  o: { kind: mock, mock: { dialect: openai } }\n",
            &[],
        );
        let dialects: Vec<Dialect> = config.providers.iter().map(|p| p.mock.dialect).collect();
        assert_eq!(
            dialects,
            [
                Dialect::OpenAi,
                Dialect::Anthropic,
                Dialect::Gemini,
                Dialect::OpenAi
            ]
        );
        assert_eq!(config.providers[2].mock.chunks, 3);
        assert_eq!(
            problems("providers:\n  b: { kind: mock, mock: { dialect: bedrock } }\n  t: { kind: mock, mock: { dialect: antropic } }\n  n: { kind: mock, mock: { dialect: [openai] } }\n"),
            [
                "providers.b.mock.dialect: bedrock is not a mock dialect (expected openai, anthropic or gemini)",
                "providers.t.mock.dialect: expected openai, anthropic or gemini, got \"antropic\" (did you mean \"anthropic\"?)",
                "providers.n.mock.dialect: expected a string, got a list",
            ]
        );
    }

    #[test]
    fn target_deployment_is_for_azure_only() {
        let providers = "providers:\n  az: { kind: azure, base_url: 'https://r.openai.azure.com', keys: [k] }\n  oa: { kind: openai, base_url: 'http://x' }\n  broken: { kind: nope }\n";
        let config = decoded(
            &format!("{providers}models:\n  - name: gpt-4o\n    targets: [{{ provider: az, deployment: prod-gpt-4o }}, {{ provider: az }}, {{ provider: az, model: gpt-4o, deployment: '${{D}}' }}]\n").replace("  broken: { kind: nope }\n", ""),
            &[("D", "dep.2")],
        );
        let targets: Vec<(&str, Option<&str>, Option<&str>)> = config.models[0]
            .targets
            .iter()
            .map(|t| {
                (
                    t.provider.as_str(),
                    t.model.as_deref(),
                    t.deployment.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            targets,
            [
                ("az", None, Some("prod-gpt-4o")),
                ("az", None, None),
                ("az", Some("gpt-4o"), Some("dep.2")),
            ]
        );
        assert_eq!(
            problems(&format!("{providers}models:\n  - name: m\n    targets:\n      - {{ provider: oa, deployment: d }}\n      - {{ provider: mock, deployment: d }}\n      - {{ provider: broken, deployment: d }}\n      - {{ provider: ghost, deployment: d }}\n      - {{ provider: az, deployment: 'a/b' }}\n      - {{ provider: az, deployment: '' }}\n      - {{ provider: az, deployment: 'has space' }}\n")),
            [
                "providers.broken.kind: unknown provider kind \"nope\" (supported: openai, anthropic, gemini, azure, bedrock, mock)",
                "models[0].targets[0].deployment: only applies to kind azure (provider \"oa\" is kind openai)",
                "models[0].targets[1].deployment: only applies to kind azure (provider \"mock\" is kind mock)",
                "models[0].targets[3].provider: unknown provider \"ghost\" (known: az, oa, broken, mock)",
                "models[0].targets[4].deployment: expected a deployment name (it goes into the request path: no '/', '?', '#', '%', '\\' or spaces), got \"a/b\"",
                "models[0].targets[5].deployment: must not be empty (omit it to use the model name as the deployment)",
                "models[0].targets[6].deployment: expected a deployment name (it goes into the request path: no '/', '?', '#', '%', '\\' or spaces), got \"has space\"",
            ]
        );
        // A file's own `mock` provider of another kind is what `provider: mock` means.
        assert_eq!(
            problems("providers:\n  mock: { kind: azure, base_url: 'https://r.openai.azure.com', keys: [k] }\nmodels: [{ name: m, targets: [{ provider: mock, deployment: d }] }]\n"),
            Vec::<String>::new()
        );
    }

    // Resilience settings.

    /// A mock provider and two models, so resilience snippets have something to refer to.
    const TWO_MODELS: &str = "providers:\n  up: { kind: openai, base_url: 'http://x/v1' }\n  alt: { kind: mock }\nmodels:\n  - { name: a, targets: [{ provider: up }, { provider: alt }] }\n  - { name: b, targets: [{ provider: alt }] }\n";

    #[test]
    fn provider_timeouts_first_token_and_stall() {
        let config = decoded(
            "providers:\n  p: { kind: mock, timeouts: { first_token_ms: 1500, stall_ms: '${S}', total_ms: 9000 } }\n  d: { kind: mock, timeouts: { connect_ms: 100 } }\n",
            &[("S", "4000")],
        );
        assert_eq!(
            config.providers[0].timeouts,
            Timeouts {
                first_token_ms: Some(1500),
                stall_ms: Some(4000),
                total_ms: 9000,
                ..Timeouts::default()
            }
        );
        assert_eq!(config.providers[1].timeouts.first_token_ms, None);
        assert_eq!(config.providers[1].timeouts.stall_ms, None);
        assert_eq!(
            problems(
                r#"
providers:
  zero: { kind: mock, timeouts: { first_token_ms: 0, stall_ms: soon } }
  over: { kind: mock, timeouts: { first_token_ms: 9001, total_ms: 9000 } }
  over_default: { kind: mock, timeouts: { first_token_ms: 600001 } }
  equal: { kind: mock, timeouts: { first_token_ms: 9000, total_ms: 9000 } }
  bad_total: { kind: mock, timeouts: { first_token_ms: 700000, total_ms: -1 } }
  typo: { kind: mock, timeouts: { stall: 5 } }
"#
            ),
            [
                "providers.zero.timeouts.first_token_ms: expected a positive integer, got 0",
                "providers.zero.timeouts.stall_ms: expected a positive integer, got \"soon\"",
                "providers.over.timeouts.first_token_ms: must not exceed total_ms (9000), got 9001",
                "providers.over_default.timeouts.first_token_ms: must not exceed total_ms (600000, the default), got 600001",
                "providers.bad_total.timeouts.total_ms: expected a positive integer, got -1",
                "providers.typo.timeouts.stall: unknown field (did you mean \"stall_ms\"?)",
            ]
        );
    }

    #[test]
    fn provider_breaker() {
        let config = decoded(
            "providers:\n  p: { kind: openai, base_url: 'http://x/v1', breaker: { consecutive_failures: 3, error_rate: 0.25, min_requests: 10, window_ms: 60000, cooldown_ms: '${C}' } }\n  part: { kind: mock, breaker: { error_rate: '${R}' } }\n  none: { kind: mock }\n",
            &[("C", "15000"), ("R", "1")],
        );
        assert_eq!(
            config.providers[0].breaker,
            BreakerConfig {
                consecutive_failures: 3,
                error_rate: 0.25,
                min_requests: 10,
                window_ms: 60_000,
                cooldown_ms: 15_000,
            }
        );
        assert_eq!(
            config.providers[1].breaker,
            BreakerConfig {
                error_rate: 1.0,
                ..BreakerConfig::default()
            }
        );
        assert_eq!(config.providers[2].breaker, BreakerConfig::default());
        assert_eq!(
            problems(
                r#"
providers:
  a: { kind: mock, breaker: { error_rate: 0, consecutive_failures: 0 } }
  b: { kind: mock, breaker: { error_rate: 50, min_requests: 0, window_ms: 0, cooldown_ms: x } }
  c: { kind: mock, breaker: { error_rate: 1.5 } }
  d: { kind: mock, breaker: { error_rate: half } }
  e: { kind: mock, breaker: { error_rate: .nan } }
  f: { kind: mock, breaker: { cooldown: 5 } }
  g: { kind: mock, breaker: 5 }
"#
            ),
            [
                "providers.a.breaker.consecutive_failures: expected a positive integer, got 0",
                "providers.a.breaker.error_rate: expected a number greater than 0 and at most 1, got 0",
                "providers.b.breaker.error_rate: expected a number greater than 0 and at most 1, got 50 (a fraction: 50% is 0.5)",
                "providers.b.breaker.min_requests: expected a positive integer, got 0",
                "providers.b.breaker.window_ms: expected a positive integer, got 0",
                "providers.b.breaker.cooldown_ms: expected a positive integer, got \"x\"",
                "providers.c.breaker.error_rate: expected a number greater than 0 and at most 1, got 1.5",
                "providers.d.breaker.error_rate: expected a number greater than 0 and at most 1, got \"half\"",
                "providers.e.breaker.error_rate: expected a number greater than 0 and at most 1, got .nan",
                "providers.f.breaker.cooldown: unknown field (did you mean \"cooldown_ms\"?)",
                "providers.g.breaker: expected a mapping, got 5",
            ]
        );
    }

    #[test]
    fn model_balance() {
        let yaml = "models:\n  - { name: w, targets: [{ provider: mock }] }\n  - { name: l, balance: least_in_flight, targets: [{ provider: mock }] }\n  - { name: t, balance: lowest_latency, targets: [{ provider: mock }] }\n  - { name: u, balance: usage_aware, targets: [{ provider: mock, tpm: 100000 }, { provider: mock }] }\n  - { name: x, balance: '${B}', targets: [{ provider: mock }] }\n";
        let config = decoded(yaml, &[("B", "weighted")]);
        let modes: Vec<Balance> = config.models.iter().map(|m| m.balance).collect();
        assert_eq!(
            modes,
            [
                Balance::Weighted,
                Balance::LeastInFlight,
                Balance::LowestLatency,
                Balance::UsageAware,
                Balance::Weighted
            ]
        );
        assert_eq!(
            problems(
                r#"
models:
  - { name: a, balance: least-in-flight, targets: [{ provider: mock }] }
  - { name: b, balance: round_robin, targets: [{ provider: mock }] }
  - { name: c, balance: usage_aware, targets: [{ provider: mock }, { provider: mock }] }
  - { name: d, balance: usage_aware, targets: [{ provider: mock, rpm: 0 }] }
  - { name: e, balance: [weighted], targets: [{ provider: mock }] }
"#
            ),
            [
                "models[0].balance: expected weighted, least_in_flight, lowest_latency or usage_aware, got \"least-in-flight\" (did you mean \"least_in_flight\"?)",
                "models[1].balance: expected weighted, least_in_flight, lowest_latency or usage_aware, got \"round_robin\"",
                "models[2].balance: usage_aware needs rpm or tpm on at least one target, or on a key of a target's provider (the limits it balances against)",
                // The invalid rpm is reported; the balance is not blamed for it as well.
                "models[3].targets[0].rpm: expected a positive integer, got 0",
                "models[4].balance: expected a string, got a list",
            ]
        );
    }

    #[test]
    fn model_retry_and_deadline() {
        let config = decoded(
            "models:\n  - name: r\n    targets: [{ provider: mock }]\n    retry: { attempts: 3, backoff_initial_ms: 100, backoff_max_ms: 100, retry_after_max_ms: 0 }\n    deadline_ms: 45000\n  - name: part\n    targets: [{ provider: mock }]\n    retry: { attempts: '${N}' }\n  - { name: none, targets: [{ provider: mock }] }\n",
            &[("N", "10")],
        );
        assert_eq!(
            config.models[0].retry,
            RetryConfig {
                attempts: 3,
                backoff_initial_ms: 100,
                backoff_max_ms: 100,
                retry_after_max_ms: 0,
            }
        );
        assert_eq!(config.models[0].deadline_ms, Some(45_000));
        assert_eq!(
            config.models[1].retry,
            RetryConfig {
                attempts: 10,
                ..RetryConfig::default()
            }
        );
        assert_eq!(config.models[2].retry, RetryConfig::default());
        assert_eq!(config.models[2].deadline_ms, None);
        assert_eq!(
            problems(
                r#"
models:
  - name: a
    targets: [{ provider: mock }]
    retry: { attempts: 0, backoff_initial_ms: 500, backoff_max_ms: 499 }
    deadline_ms: 0
  - name: b
    targets: [{ provider: mock }]
    retry: { attempts: 11, backoff_initial_ms: 6000 }
  - name: c
    targets: [{ provider: mock }]
    retry: { backoff_initial_ms: soon, backoff_max_ms: 1, retry_after_max_ms: -5, attemps: 2 }
"#
            ),
            [
                "models[0].retry.attempts: expected a positive integer, got 0",
                "models[0].retry.backoff_max_ms: must be at least backoff_initial_ms (500), got 499",
                "models[0].deadline_ms: expected a positive integer, got 0",
                "models[1].retry.attempts: must be at most 10, got 11",
                "models[1].retry.backoff_initial_ms: must not exceed backoff_max_ms (5000, the default), got 6000",
                "models[2].retry.attemps: unknown field (did you mean \"attempts\"?)",
                "models[2].retry.backoff_initial_ms: expected a non-negative integer, got \"soon\"",
                "models[2].retry.retry_after_max_ms: expected a non-negative integer, got -5",
            ]
        );
    }

    #[test]
    fn model_timeout_overrides() {
        let config = decoded(
            "models:\n  - name: m\n    targets: [{ provider: mock }]\n    timeouts: { first_byte_ms: 2, first_token_ms: 3, stall_ms: 4, total_ms: 5 }\n  - name: n\n    targets: [{ provider: mock }]\n    timeouts: { stall_ms: 700, first_token_ms: 900000 }\n",
            &[],
        );
        assert_eq!(
            config.models[0].timeouts,
            TimeoutOverrides {
                first_byte_ms: Some(2),
                first_token_ms: Some(3),
                stall_ms: Some(4),
                total_ms: Some(5),
            }
        );
        // Without a total here, the provider's applies, which may differ per target.
        assert_eq!(
            config.models[1].timeouts,
            TimeoutOverrides {
                first_token_ms: Some(900_000),
                stall_ms: Some(700),
                ..TimeoutOverrides::default()
            }
        );
        assert_eq!(
            problems(
                "models:\n  - name: m\n    targets: [{ provider: mock }]\n    timeouts: { first_token_ms: 10, total_ms: 9, stall_ms: 0, firstbyte_ms: 1, connect_ms: 5 }\n"
            ),
            [
                "models[0].timeouts.firstbyte_ms: unknown field (did you mean \"first_byte_ms\"?)",
                "models[0].timeouts.connect_ms: is a provider setting (connections are pooled per provider): set it under providers.<id>.timeouts",
                "models[0].timeouts.stall_ms: expected a positive integer, got 0",
                "models[0].timeouts.first_token_ms: must not exceed total_ms (9), got 10",
            ]
        );
    }

    #[test]
    fn model_hedge() {
        let yaml = "models:\n  - { name: f, targets: [{ provider: mock }, { provider: mock }], hedge: { after_ms: 1500 } }\n  - { name: p, targets: [{ provider: mock }], fallbacks: [f], hedge: { after: p95, min_ms: 300, max_hedges: 3 } }\n  - { name: d, targets: [{ provider: mock }, { provider: mock }], hedge: { after: '${A}' } }\n  - { name: n, targets: [{ provider: mock }], hedge: }\n";
        let config = decoded(yaml, &[("A", "p95")]);
        let hedges: Vec<Option<HedgeConfig>> = config.models.iter().map(|m| m.hedge).collect();
        assert_eq!(
            hedges,
            [
                Some(HedgeConfig {
                    after: HedgeDelay::FixedMs(1500),
                    max_hedges: 1
                }),
                Some(HedgeConfig {
                    after: HedgeDelay::P95 { min_ms: 300 },
                    max_hedges: 3
                }),
                Some(HedgeConfig {
                    after: HedgeDelay::P95 { min_ms: 200 },
                    max_hedges: 1
                }),
                None,
            ]
        );
        let two = "targets: [{ provider: mock }, { provider: mock }]";
        assert_eq!(
            problems(&format!(
                r#"
models:
  - {{ name: a, {two}, hedge: {{ after_ms: 100, after: p95 }} }}
  - {{ name: b, {two}, hedge: {{ max_hedges: 2 }} }}
  - {{ name: c, {two}, hedge: {{ after_ms: 100, min_ms: 50 }} }}
  - {{ name: d, {two}, hedge: {{ after: p99 }} }}
  - {{ name: e, {two}, hedge: {{ after: 500 }} }}
  - {{ name: f, {two}, hedge: {{ after_ms: 0, max_hedges: 0 }} }}
  - {{ name: g, {two}, hedge: {{ after: p95, max_hedges: 4, min_ms: x }} }}
  - {{ name: h, targets: [{{ provider: mock }}], hedge: {{ after_ms: 100 }} }}
  - {{ name: i, targets: [{{ provider: mock }}], fallbacks: [], hedge: {{ after: p95 }} }}
  - {{ name: j, {two}, hedge: {{ after_ms: 100, delay: 1 }} }}
  - {{ name: k, targets: [{{ provider: mock }}], fallbacks: j, hedge: {{ after_ms: 100 }} }}
"#
            )),
            [
                "models[0].hedge: give after_ms (a fixed delay) or after: p95, not both",
                "models[1].hedge: expected after_ms (a fixed delay, like after_ms: 2000) or after: p95 (the target's live p95 time to first token)",
                "models[2].hedge.min_ms: only applies with after: p95 (after_ms is a fixed delay)",
                "models[3].hedge.after: expected p95, got \"p99\" (did you mean \"p95\"?)",
                "models[4].hedge.after: expected p95, got \"500\" (for a fixed delay, use after_ms: 500)",
                "models[5].hedge.after_ms: expected a positive integer, got 0",
                "models[5].hedge.max_hedges: expected a positive integer, got 0",
                "models[6].hedge.min_ms: expected a non-negative integer, got \"x\"",
                "models[6].hedge.max_hedges: must be at most 3, got 4",
                "models[7].hedge: nothing to hedge to: the model has one target and no fallbacks (add a target or fallbacks, or remove hedge)",
                "models[8].hedge: nothing to hedge to: the model has one target and no fallbacks (add a target or fallbacks, or remove hedge)",
                "models[9].hedge.delay: unknown field (expected one of: after_ms, after, min_ms, max_hedges)",
                "models[10].fallbacks: expected a list, got \"j\"",
            ]
        );
    }

    #[test]
    fn model_fallbacks() {
        let yaml = r#"
providers:
  up: { kind: openai, base_url: "http://x/v1" }
models:
  - name: a
    targets: [{ provider: up }]
    fallbacks: [b, up/gpt-4o, mock/any, "${B}"]
    context_window_fallbacks: [c]
    content_policy_fallbacks: [up/safe-model]
  - name: b
    targets: [{ provider: up }]
    fallbacks: [a]
  - name: c
    targets: [{ provider: up }]
    fallbacks: [b, a]
  - name: "claude-*"
    targets: [{ provider: up }]
    fallbacks: [a, org/model-with-slash]
  - name: org/model-with-slash
    targets: [{ provider: up }]
"#;
        let config = decoded(yaml, &[("B", "c")]);
        let a = &config.models[0];
        assert_eq!(a.fallbacks, ["b", "up/gpt-4o", "mock/any", "c"]);
        assert_eq!(a.context_window_fallbacks, ["c"]);
        assert_eq!(a.content_policy_fallbacks, ["up/safe-model"]);
        // Cycles (a -> b -> a, a -> c -> a) are allowed: each model is tried once per request.
        assert_eq!(config.models[1].fallbacks, ["a"]);
        assert_eq!(config.models[2].fallbacks, ["b", "a"]);
        assert_eq!(config.models[3].fallbacks, ["a", "org/model-with-slash"]);
        assert!(config.models[4].fallbacks.is_empty());

        let yaml = r#"
providers:
  openai: { kind: openai, base_url: "http://x/v1" }
models:
  - name: gpt-4o
    targets: [{ provider: openai }]
    fallbacks: [gpt-4o, gpt4o-mini, "claude-*", claude-3-haiku, opnai/gpt-4o, zz/top, "openai/", "", gpt-4o-mini, gpt-4o-mini, [x], nothing-like-it]
  - name: gpt-4o-mini
    targets: [{ provider: openai }]
    context_window_fallbacks: gpt-4o
    content_policy_fallbacks: [org/gpt-4o]
  - name: "claude-*"
    targets: [{ provider: openai }]
    fallbacks: ["claude-*"]
"#;
        assert_eq!(
            problems(yaml),
            [
                "models[0].fallbacks[0]: a model cannot fall back to itself",
                "models[0].fallbacks[1]: unknown model \"gpt4o-mini\" (did you mean \"gpt-4o-mini\"?)",
                "models[0].fallbacks[2]: \"claude-*\" is a pattern; fallbacks name exact models, or provider/model",
                "models[0].fallbacks[3]: unknown model \"claude-3-haiku\" (it matches the pattern \"claude-*\", but fallbacks name exact models, or provider/model)",
                "models[0].fallbacks[4]: unknown provider \"opnai\" in \"opnai/gpt-4o\" (did you mean \"openai\"?)",
                "models[0].fallbacks[5]: unknown provider \"zz\" in \"zz/top\" (known: openai, mock)",
                "models[0].fallbacks[6]: expected provider/model, got \"openai/\" (nothing after the '/')",
                "models[0].fallbacks[7]: must not be empty",
                "models[0].fallbacks[9]: \"gpt-4o-mini\" is already listed at models[0].fallbacks[8]",
                "models[0].fallbacks[10]: expected a string, got a list",
                "models[0].fallbacks[11]: unknown model \"nothing-like-it\" (expected a configured model name, or provider/model with a known provider)",
                "models[1].context_window_fallbacks: expected a list, got \"gpt-4o\"",
                "models[1].content_policy_fallbacks[0]: unknown model \"org/gpt-4o\" (did you mean \"gpt-4o\"?)",
                "models[2].fallbacks[0]: a model cannot fall back to itself",
            ]
        );
        // A model whose own entry has problems is still a known name: no second-hand problem.
        assert_eq!(
            problems("models:\n  - { name: a, targets: [{ provider: ghost }] }\n  - { name: b, targets: [{ provider: mock }], fallbacks: [a] }\n"),
            ["models[0].targets[0].provider: unknown provider \"ghost\" (known: mock)"]
        );
    }

    #[test]
    fn target_rate_limits_need_usage_aware_and_limits_fit_the_total() {
        assert_eq!(
            problems(
                "models:\n  - name: m\n    targets: [{ provider: mock, rpm: 10 }, { provider: mock, tpm: 100 }]\n  - name: n\n    balance: least_in_flight\n    targets: [{ provider: mock, rpm: 5 }]\n    timeouts: { stall_ms: 10, total_ms: 5 }\n"
            ),
            [
                "models[0].targets[0].rpm: only applies with balance: usage_aware (the limits it balances by)",
                "models[0].targets[1].tpm: only applies with balance: usage_aware (the limits it balances by)",
                "models[1].targets[0].rpm: only applies with balance: usage_aware (the limits it balances by)",
                "models[1].timeouts.stall_ms: must not exceed total_ms (5), got 10",
            ]
        );
        assert!(problems(
            "models:\n  - name: m\n    balance: usage_aware\n    targets: [{ provider: mock, rpm: 10 }, { provider: mock }]\n"
        )
        .is_empty());
    }

    #[test]
    fn target_concurrency_and_rate_limits() {
        let config = decoded(
            "models:\n  - name: m\n    balance: usage_aware\n    targets:\n      - { provider: mock, max_concurrency: 8, queue: 16, rpm: 600, tpm: 5000000000 }\n      - { provider: mock, max_concurrency: '${C}' }\n      - { provider: mock }\n",
            &[("C", "1")],
        );
        let t = &config.models[0].targets;
        assert_eq!(
            t[0],
            TargetConfig {
                provider: "mock".into(),
                weight: 1,
                max_concurrency: Some(8),
                queue: 16,
                rpm: Some(600),
                tpm: Some(5_000_000_000),
                ..TargetConfig::default()
            }
        );
        assert_eq!((t[1].max_concurrency, t[1].queue), (Some(1), 0));
        assert_eq!(
            (t[2].max_concurrency, t[2].queue, t[2].rpm, t[2].tpm),
            (None, 0, None, None)
        );
        assert_eq!(
            problems(
                r#"
models:
  - name: m
    targets:
      - { provider: mock, max_concurrency: 0, queue: -1 }
      - { provider: mock, queue: 10 }
      - { provider: mock, rpm: 0, tpm: lots }
      - { provider: mock, max_concurency: 4 }
"#
            ),
            [
                "models[0].targets[0].max_concurrency: expected a positive integer, got 0",
                "models[0].targets[0].queue: expected a non-negative integer, got -1",
                "models[0].targets[1].queue: only applies together with max_concurrency (requests wait for a slot only when concurrency is limited)",
                "models[0].targets[2].rpm: expected a positive integer, got 0",
                "models[0].targets[2].tpm: expected a positive integer, got \"lots\"",
                "models[0].targets[3].max_concurency: unknown field (did you mean \"max_concurrency\"?)",
            ]
        );
    }

    #[test]
    fn model_without_targets_still_has_its_settings_checked() {
        assert_eq!(
            problems(&format!(
                "{TWO_MODELS}  - {{ name: c, retry: {{ attempts: 0 }}, fallbacks: [nowhere] }}\n"
            )),
            [
                "models[2].targets: missing required field (a list of { provider, model, weight })",
                "models[2].retry.attempts: expected a positive integer, got 0",
                "models[2].fallbacks[0]: unknown model \"nowhere\" (expected a configured model name, or provider/model with a known provider)",
            ]
        );
        // The snippet itself is valid, and a model that names no resilience setting gets the
        // defaults.
        let config = decoded(TWO_MODELS, &[]);
        assert_eq!(
            config.models[1],
            ModelConfig {
                name: "b".into(),
                targets: vec![TargetConfig {
                    provider: "alt".into(),
                    weight: 1,
                    ..TargetConfig::default()
                }],
                ..ModelConfig::default()
            }
        );
        assert_eq!(config.models[1].retry, RetryConfig::default());
        assert_eq!(config.models[1].balance, Balance::Weighted);
    }
}
