//! The validation pass: from the file as decoded to a [`Config`], with the rules that tie values
//! together (a target's provider exists, a field belongs to its provider's kind, keys come from
//! somewhere, fallbacks name models, limits fit the total). Single values were checked while
//! decoding; a value that failed there gets no second-hand problems here.
//!
//! Messages name fields, variables and ids, never a key's or credential's value.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use super::presets::{self, Preset};
use super::suggest::did_you_mean;
use super::types::*;
use super::values as v;
use super::yaml::{child_path, problem, serde_names, Decoded, Secret};
use super::{ConfigProblem, Location};
use crate::{glob, http_headers};

/// The provider id that is always available, even when the file does not declare it.
const BUILTIN_MOCK: &str = "mock";

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
/// Names people write for a kind because vendors or other gateways use them.
const KIND_ALIASES: &[(&str, &str)] = &[
    ("claude", "anthropic"),
    ("google", "gemini"),
    ("aws", "bedrock"),
    ("azure_openai", "azure"),
    ("azure-openai", "azure"),
];

/// The file's top level.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(deserialize_with = "v::listen")]
    listen: Option<SocketAddr>,
    server: ServerSettings,
    providers: IndexMap<String, ProviderFile>,
    models: Vec<ModelConfig>,
    pricing: IndexMap<String, PriceEntry>,
    governance: Option<super::governance::GovernanceFile>,
    logs: Option<super::logs::LogsFile>,
}

/// A provider as written; the validation pass turns it into a [`ProviderConfig`].
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ProviderFile {
    kind: Option<ProviderKind>,
    /// An OpenAI-compatible vendor by name (`preset: groq`): base URL and key variable.
    preset: Option<String>,
    #[serde(deserialize_with = "v::base_url")]
    base_url: Option<String>,
    keys: Option<Secret<Vec<KeyConfig>>>,
    auth: Option<AuthMode>,
    timeouts: Timeouts,
    headers: Secret<IndexMap<String, String>>,
    ca_file: Option<String>,
    mock: Option<MockSettings>,
    #[serde(deserialize_with = "v::api_version")]
    api_version: Option<String>,
    #[serde(deserialize_with = "v::region")]
    region: Option<String>,
    aws_access_key_id: Option<Secret<String>>,
    aws_secret_access_key: Option<Secret<String>>,
    aws_session_token: Option<Secret<String>>,
    #[serde(deserialize_with = "v::anthropic_version")]
    anthropic_version: Option<String>,
    breaker: BreakerConfig,
}

/// "unknown field" with the closest known names: the message for a key a struct lacks.
pub(crate) fn unknown_field(owner: &str, key: &str, fields: &[&str]) -> String {
    if owner == "TimeoutOverrides" && ["connect_ms", "idle_ms"].contains(&key) {
        // Connections are pooled per provider (and reused across models).
        return "is a provider setting (connections are pooled per provider): set it under providers.<id>.timeouts".into();
    }
    unknown("unknown field".into(), key, fields, "expected one of")
}

/// `what` with the closest of `names` to `name`, or else all of them after `label`.
fn unknown(what: String, name: &str, names: &[&str], label: &str) -> String {
    match did_you_mean(name, names.iter().copied()) {
        hint if hint.is_empty() => format!("{what} ({label}: {})", names.join(", ")),
        hint => format!("{what}{hint}"),
    }
}

/// The message for a name an enum lacks (`kind: opnai`); `shown` is the value as a message
/// may show it.
pub(crate) fn unknown_variant(enum_name: &str, value: &str, shown: &str, names: &[&str]) -> String {
    let hint = did_you_mean(value, names.iter().copied());
    let expected = one_of(names);
    match enum_name {
        "ProviderKind" => {
            let supported = names.join(", ");
            if presets::find(value).is_some() {
                // `kind: groq` is a natural guess; the vendor is a preset of kind openai.
                format!("unknown provider kind {shown} (did you mean preset: {value}?)")
            } else if let Some((_, kind)) = KIND_ALIASES.iter().find(|(a, _)| *a == value) {
                format!("unknown provider kind {shown} (did you mean {kind:?}?) (supported: {supported})")
            } else {
                format!("unknown provider kind {shown}{hint} (supported: {supported})")
            }
        }
        // Bedrock is only ever an upstream (SigV4, binary event streams); no client speaks it.
        "MockDialect" if value == "bedrock" => {
            format!("bedrock is not a mock dialect (expected {expected})")
        }
        "HedgeAfter" if value.trim().parse::<u64>().is_ok() => format!(
            "expected {expected}, got {shown} (for a fixed delay, use after_ms: {})",
            value.trim()
        ),
        _ => format!("expected {expected}, got {shown}{hint}"),
    }
}

/// `a, b or c`.
fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// Runs the validation pass over a decoded file. `base_dir` resolves relative `ca_file` paths.
pub(crate) fn validate(
    decoded: Decoded<FileConfig>,
    env: &dyn Fn(&str) -> Option<String>,
    base_dir: Option<&Path>,
) -> Result<Config, Vec<ConfigProblem>> {
    let Decoded {
        value: file,
        problems,
        seen,
        failed,
    } = decoded;
    let mut c = Check {
        env,
        base_dir,
        seen: &seen,
        failed: &failed,
        problems,
    };
    let providers = c.providers(&file.providers);
    let models = c.models(&file.models, &file.providers, &providers);
    let pricing = c.pricing(&file.pricing);
    let governance = file.governance.and_then(|g| c.governance(g));
    let logs = c.logs(file.logs, governance.as_ref().map(|g| &g.store));
    let mut problems = c.problems;
    if !problems.is_empty() {
        // File order; problems at one place keep the order they were found in.
        problems.sort_by_key(|p| p.location.map(|l| (l.line, l.column)));
        return Err(problems);
    }
    Ok(Config {
        listen: file.listen,
        server: file.server,
        providers,
        models,
        pricing,
        governance,
        logs,
    })
}

/// One `pricing:` entry as written: USD per million tokens.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct PriceEntry {
    #[serde(deserialize_with = "v::price")]
    input_per_mtok: f64,
    #[serde(deserialize_with = "v::price")]
    output_per_mtok: f64,
    #[serde(default, deserialize_with = "v::opt_price")]
    cache_read_per_mtok: Option<f64>,
    #[serde(default, deserialize_with = "v::opt_price")]
    cache_write_per_mtok: Option<f64>,
    #[serde(default, deserialize_with = "v::opt_price")]
    reasoning_per_mtok: Option<f64>,
}

struct Check<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    base_dir: Option<&'a Path>,
    seen: &'a HashMap<String, Location>,
    failed: &'a HashSet<String>,
    problems: Vec<ConfigProblem>,
}

/// `path`, then each enclosing path: `a.b[0].c`, `a.b[0]`, `a.b`, `a`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(path), |p| p.rfind(['.', '[']).map(|i| &p[..i]))
}

/// What targets and fallbacks may refer to: every provider id written in the file, and the
/// kinds of those that decoded (the built-in mock included unless the file redefines `mock`).
struct Known<'a> {
    ids: Vec<&'a str>,
    kinds: HashMap<&'a str, ProviderKind>,
    /// Providers with at least one key carrying `rpm` or `tpm` (usage-aware balancing can
    /// spread by those too).
    key_limited: Vec<&'a str>,
    /// Model names written in the file, exact ones and glob patterns.
    exact: Vec<&'a str>,
    globs: Vec<&'a str>,
}

impl Known<'_> {
    /// Ids a `provider/model` may use: the file's, and the built-in mock unless redefined.
    fn ids(&self) -> impl Iterator<Item = &str> + Clone {
        let builtin = !self.ids.contains(&BUILTIN_MOCK);
        self.ids
            .iter()
            .copied()
            .chain(builtin.then_some(BUILTIN_MOCK))
    }

    fn unknown_provider(&self, provider: &str, within: &str) -> String {
        let what = format!("unknown provider {provider:?}{within}");
        unknown(what, provider, &self.ids().collect::<Vec<_>>(), "known")
    }
}

impl Check<'_> {
    /// The `governance:` section: a master key, a store, keys with unique names and
    /// values shaped like virtual keys.
    fn governance(
        &mut self,
        g: super::governance::GovernanceFile,
    ) -> Option<super::governance::GovernanceConfig> {
        use super::governance::*;
        let master_key = match g.master_key {
            Some(Secret(k)) if !k.trim().is_empty() => k,
            _ => {
                if !self.failed("governance.master_key") {
                    self.problem(
                        "governance.master_key",
                        "is required when governance is on (it guards /admin/v1); e.g. \"${FERROGATE_MASTER_KEY}\"",
                    );
                }
                String::new()
            }
        };
        let store = match StoreUrl::parse(
            g.store.as_deref().unwrap_or("sqlite:ferrogate.db"),
            self.base_dir,
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                self.problem("governance.store", e);
                None
            }
        };
        if let Some(url) = &g.redis {
            if !url.starts_with("redis://") {
                self.problem(
                    "governance.redis",
                    "expected a `redis://host:port` URL (TLS to Redis is not supported yet)",
                );
            }
        }
        let flush = g.flush_interval_ms.unwrap_or(DEFAULT_FLUSH_INTERVAL_MS);
        if flush > MAX_FLUSH_INTERVAL_MS {
            self.problem(
                "governance.flush_interval_ms",
                format!(
                    "must be at most {MAX_FLUSH_INTERVAL_MS} (a crash loses up to this much spend)"
                ),
            );
        }
        let mut keys = Vec::new();
        let mut names = HashSet::new();
        for (i, k) in g.keys.into_iter().enumerate() {
            let path = format!("governance.keys[{i}]");
            if self.failed(&path) {
                continue;
            }
            if k.name.trim().is_empty() {
                self.problem(&format!("{path}.name"), "is required");
            } else if !names.insert(k.name.clone()) {
                self.problem(
                    &format!("{path}.name"),
                    format!("{:?} is declared twice", k.name),
                );
            }
            let value = k.value.0;
            if !is_virtual_key_shape(&value) && !self.failed(&format!("{path}.value")) {
                self.problem(
                    &format!("{path}.value"),
                    "must be a virtual key: `fg-` and 20 to 128 letters, digits, `-` or `_` (`ferrogate keys create` makes one)",
                );
            }
            let policy = AccessPolicy {
                models: k.models,
                providers: k.providers,
                budget: k.budget,
                limits: k.limits,
                expires_at: k.expires_at,
            };
            for (field, message) in policy.problems() {
                self.problem(&format!("{path}.{field}"), message);
            }
            keys.push(DeclaredKey {
                name: k.name,
                value,
                policy,
            });
        }
        Some(GovernanceConfig {
            master_key,
            store: store?,
            redis: g.redis,
            flush_interval: std::time::Duration::from_millis(flush),
            sync_interval: std::time::Duration::from_millis(
                g.sync_interval_ms.unwrap_or(DEFAULT_SYNC_INTERVAL_MS),
            ),
            default_output_tokens: g.default_output_tokens.unwrap_or(DEFAULT_OUTPUT_ALLOWANCE),
            keys,
        })
    }
}

impl Check<'_> {
    /// The `logs:` section; without one, memory (or the governance store).
    fn logs(
        &mut self,
        file: Option<super::logs::LogsFile>,
        governance: Option<&super::governance::StoreUrl>,
    ) -> super::logs::LogsConfig {
        use super::governance::StoreUrl;
        use super::logs::*;
        let mut out = LogsConfig::default_for(governance);
        let Some(l) = file else {
            return out;
        };
        match l.store.as_deref().map(str::trim) {
            None => {}
            Some("memory") => {
                out.store = LogStoreUrl::Memory {
                    capacity: DEFAULT_MEMORY_CAPACITY,
                }
            }
            Some(text) => match StoreUrl::parse(text, self.base_dir) {
                Ok(url) => out.store = LogStoreUrl::Db(url),
                Err(e) => self.problem("logs.store", format!("{e}, or `memory`")),
            },
        }
        if let Some(capacity) = l.capacity {
            if capacity > MAX_MEMORY_CAPACITY as u64 {
                self.problem(
                    "logs.capacity",
                    format!(
                        "must be at most {MAX_MEMORY_CAPACITY} (keep more in `sqlite:` or `postgres://`)"
                    ),
                );
            }
            match &mut out.store {
                LogStoreUrl::Memory { capacity: c } => {
                    *c = usize::try_from(capacity).unwrap_or(usize::MAX)
                }
                LogStoreUrl::Db(_) => self.problem(
                    "logs.capacity",
                    "applies to the memory store only (a database store keeps `retention`)",
                ),
            }
        }
        if let Some(text) = &l.retention {
            match parse_retention(text) {
                Ok(d) => out.retention = d,
                Err(e) => self.problem("logs.retention", e),
            }
            if matches!(out.store, LogStoreUrl::Memory { .. }) {
                self.problem(
                    "logs.retention",
                    "applies to a database store only (the memory store keeps `capacity` records)",
                );
            }
        }
        if let Some(size) = l.max_size {
            if matches!(out.store, LogStoreUrl::Db(StoreUrl::Sqlite(_))) {
                out.max_size = Some(size);
            } else {
                self.problem(
                    "logs.max_size",
                    "applies to an SQLite file store only (PostgreSQL is bounded by `retention`)",
                );
            }
        }
        if let Some(f) = l.file {
            match f.path.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
                Some(p) => {
                    let path = PathBuf::from(p);
                    out.file = Some(FileSinkConfig {
                        path: match self.base_dir {
                            Some(dir) if path.is_relative() => dir.join(path),
                            _ => path,
                        },
                        max_size: f.max_size.unwrap_or(DEFAULT_FILE_MAX_SIZE),
                        keep: f.keep.unwrap_or(DEFAULT_FILE_KEEP),
                    });
                }
                None if self.failed("logs.file.path") => {}
                None => self.problem(
                    "logs.file.path",
                    "is required: the JSON Lines file to write, e.g. `ferrogate-requests.jsonl`",
                ),
            }
        }
        out
    }

    /// `pricing:` entries, checked as the price table will take them.
    fn pricing(&mut self, entries: &IndexMap<String, PriceEntry>) -> Vec<PriceOverride> {
        let mut out = Vec::new();
        for (key, e) in entries {
            let path = child_path("pricing", key);
            if self.failed(&path) {
                continue;
            }
            let price = crate::pricing::Price {
                input: e.input_per_mtok,
                output: e.output_per_mtok,
                cache_read: e.cache_read_per_mtok,
                cache_write: e.cache_write_per_mtok,
                reasoning: e.reasoning_per_mtok,
            };
            match crate::pricing::PriceTable::default().insert(key, price) {
                Ok(()) => out.push(PriceOverride {
                    key: key.clone(),
                    price,
                }),
                Err(e) => self.problem(&path, e.to_string()),
            }
        }
        out
    }

    fn given(&self, path: &str) -> bool {
        self.seen.contains_key(path)
    }

    fn failed(&self, path: &str) -> bool {
        self.failed.contains(path)
    }

    /// Reports a problem at `path`, located at its value or, for a value not given, at the
    /// nearest enclosing one. Nothing is reported about a value that failed to decode.
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problem_at(path, path, message);
    }

    /// A problem reported at `path` but located at `value` (the value it is about).
    fn problem_at(&mut self, path: &str, value: &str, message: impl Into<String>) {
        if ancestors(value).any(|p| self.failed.contains(p)) {
            return;
        }
        let location = ancestors(value).find_map(|p| self.seen.get(p).copied());
        self.problems.push(problem(path, message.into(), location));
    }

    fn providers(&mut self, entries: &IndexMap<String, ProviderFile>) -> Vec<ProviderConfig> {
        let mut out = Vec::with_capacity(entries.len());
        for (id, p) in entries {
            let path = child_path("providers", id);
            if id.is_empty() {
                self.problem_at("providers", &path, "provider id must not be empty");
            } else if id.contains('/') {
                // `provider/model` in a request would be ambiguous.
                self.problem(&path, "provider id must not contain '/'");
            }
            if let Some(provider) = self.provider(&path, id, p) {
                out.push(provider);
            }
        }
        out
    }

    fn provider(&mut self, path: &str, id: &str, p: &ProviderFile) -> Option<ProviderConfig> {
        let at = |field: &str| child_path(path, field);
        let kind = match p.kind {
            Some(kind) => Some(kind),
            None if self.given(&at("kind")) => None,
            None if self.given(&at("preset")) => Some(ProviderKind::OpenAi),
            None => {
                let kinds = serde_names::<ProviderKind>().join(", ");
                let msg = format!("missing required field (supported: {kinds}), or set preset");
                self.problem(&at("kind"), msg);
                None
            }
        };
        // A field of another kind is reported and not used; with the kind unknown, every
        // field is used so its own checks still run.
        let applies = |field: &str| match (kind, KIND_FIELDS.iter().find(|(f, _)| *f == field)) {
            (Some(kind), Some((_, owner))) => kind == *owner,
            _ => true,
        };
        if let Some(kind) = kind {
            for (field, owner) in KIND_FIELDS {
                if kind != *owner && self.given(&at(field)) {
                    self.problem(
                        &at(field),
                        format!("only applies to kind {}", owner.as_str()),
                    );
                }
            }
        }
        let preset = match &p.preset {
            Some(name) if applies("preset") => self.preset(&at("preset"), name),
            _ => None,
        };
        let region = p.region.clone().filter(|_| applies("region"));
        let base_url_given = self.given(&at("base_url"));
        if let (Some(kind), Some(url)) = (kind, &p.base_url) {
            if let Some(msg) = appended_path(kind, url) {
                self.problem(&at("base_url"), msg);
            }
        }
        let base_url = match kind {
            _ if base_url_given => p.base_url.clone(),
            Some(ProviderKind::OpenAi) if preset.is_some() || p.preset.is_some() => {
                preset.map(|p| p.base_url.to_string())
            }
            Some(ProviderKind::OpenAi) => {
                let msg = "required for kind openai (or set preset, e.g. preset: openai)";
                self.problem(&at("base_url"), msg);
                None
            }
            Some(ProviderKind::Anthropic) => Some(ANTHROPIC_BASE_URL.to_string()),
            Some(ProviderKind::Gemini) => Some(GEMINI_BASE_URL.to_string()),
            Some(ProviderKind::Azure) => {
                let msg = "required for kind azure: the resource endpoint, like https://my-resource.openai.azure.com";
                self.problem(&at("base_url"), msg);
                None
            }
            Some(ProviderKind::Bedrock) => {
                if !self.given(&at("region")) {
                    let msg =
                        "required for kind bedrock (like us-east-1), unless base_url is given";
                    self.problem(&at("region"), msg);
                }
                region
                    .as_deref()
                    .map(|r| format!("https://bedrock-runtime.{r}.amazonaws.com"))
            }
            Some(ProviderKind::Mock) | None => None,
        };

        let auth = p.auth.clone().unwrap_or(AuthMode::Keys);
        let keys_given = self.given(&at("keys"));
        let mut keys = p.keys.as_ref().map(|k| k.0.clone()).unwrap_or_default();
        if auth == AuthMode::Passthrough && keys_given {
            let msg = "passthrough forwards the client's own credentials, so it cannot be combined with keys";
            self.problem(&at("auth"), msg);
        }
        let aws_given =
            self.given(&at("aws_access_key_id")) || self.given(&at("aws_secret_access_key"));
        let explicit_aws = if applies("aws_access_key_id") {
            self.aws_fields(path, p)
        } else {
            None
        };
        if kind == Some(ProviderKind::Bedrock) && aws_given {
            if auth == AuthMode::Passthrough {
                let msg = "passthrough forwards the client's own credentials, so it cannot be combined with aws_access_key_id / aws_secret_access_key";
                self.problem(&at("auth"), msg);
            }
            if keys_given {
                let msg = "Bedrock API keys cannot be combined with aws_access_key_id / aws_secret_access_key; give one or the other";
                self.problem(&at("keys"), msg);
            }
        }
        let mut aws_credentials = None;
        if auth == AuthMode::Keys && !keys_given {
            let kp = at("keys");
            match kind {
                Some(ProviderKind::OpenAi) => {
                    if let Some(p) = preset.filter(|p| !p.key_env.is_empty()) {
                        keys = self.env_key(&kp, &[p.key_env], &format!("preset {:?}", p.id));
                    }
                }
                Some(ProviderKind::Anthropic) => {
                    keys = self.env_key(&kp, ANTHROPIC_KEY_ENVS, "kind anthropic");
                }
                Some(ProviderKind::Gemini) => {
                    keys = self.env_key(&kp, GEMINI_KEY_ENVS, "kind gemini");
                }
                Some(ProviderKind::Azure) => keys = self.env_key(&kp, AZURE_KEY_ENVS, "kind azure"),
                Some(ProviderKind::Bedrock) if aws_given => aws_credentials = explicit_aws,
                Some(ProviderKind::Bedrock) => (keys, aws_credentials) = self.bedrock_env(&kp),
                Some(ProviderKind::Mock) | None => {}
            }
        }
        // SigV4 signs for a region; without one the base URL alone cannot say it.
        if aws_credentials.is_some() && !self.given(&at("region")) && base_url_given {
            let msg = "required to sign requests with AWS credentials (SigV4), also when base_url is given";
            self.problem(&at("region"), msg);
        }

        self.within_total(
            &at("timeouts"),
            p.timeouts.first_token_ms,
            p.timeouts.stall_ms,
            p.timeouts.total_ms,
        );
        let headers = self.headers(&at("headers"), &p.headers.0);
        let ca_file = p
            .ca_file
            .as_deref()
            .and_then(|f| self.ca_file(&at("ca_file"), f));
        Some(ProviderConfig {
            id: id.to_string(),
            kind: kind?,
            base_url,
            keys,
            auth,
            timeouts: p.timeouts,
            headers,
            ca_file,
            mock: p.mock.filter(|_| applies("mock")).unwrap_or_default(),
            api_version: p.api_version.clone().filter(|_| applies("api_version")),
            region,
            aws_credentials,
            anthropic_version: p
                .anthropic_version
                .clone()
                .filter(|_| applies("anthropic_version")),
            // Allowed for every kind, the mock included: it never fails, so the breaker is inert.
            breaker: p.breaker,
        })
    }

    fn preset(&mut self, path: &str, name: &str) -> Option<&'static Preset> {
        let found = presets::find(name);
        if found.is_none() {
            let ids: Vec<&str> = presets::ids().collect();
            let msg = unknown(format!("unknown preset {name:?}"), name, &ids, "known");
            self.problem(path, msg);
        }
        found
    }

    /// `aws_access_key_id` / `aws_secret_access_key` / `aws_session_token`: `Some` only when
    /// both halves of the pair are there.
    fn aws_fields(&mut self, path: &str, p: &ProviderFile) -> Option<AwsCredentialsConfig> {
        const ID: &str = "aws_access_key_id";
        const SECRET: &str = "aws_secret_access_key";
        const TOKEN: &str = "aws_session_token";
        let mut value = |field: &str, v: &Option<Secret<String>>| {
            let v = v.as_ref()?.0.clone();
            if v.is_empty() {
                self.problem(&child_path(path, field), "must not be empty");
                return None;
            }
            Some(v)
        };
        let id = value(ID, &p.aws_access_key_id);
        let key = value(SECRET, &p.aws_secret_access_key);
        let token = value(TOKEN, &p.aws_session_token);
        let given = |field: &str| self.given(&child_path(path, field));
        let pair = match (given(ID), given(SECRET)) {
            (true, false) => Some((
                SECRET,
                format!("required when {ID} is given (give both or neither)"),
            )),
            (false, true) => Some((
                ID,
                format!("required when {SECRET} is given (give both or neither)"),
            )),
            (false, false) if given(TOKEN) => {
                Some((TOKEN, format!("only used together with {ID} and {SECRET}")))
            }
            _ => None,
        };
        if let Some((field, msg)) = pair {
            self.problem(&child_path(path, field), msg);
        }
        Some(AwsCredentialsConfig {
            access_key_id: id?,
            secret_access_key: key?,
            session_token: token,
        })
    }

    /// The key a provider reads from its vendor's variables when `keys` is not given: the first
    /// one set. None set is a problem rather than "no key", which would only surface as
    /// upstream 401s.
    fn env_key(&mut self, path: &str, names: &[&str], read_by: &str) -> Vec<KeyConfig> {
        if let Some(value) = names
            .iter()
            .find_map(|n| (self.env)(n).filter(|v| !v.is_empty()))
        {
            return vec![one_key(value)];
        }
        let msg = match names {
            [one] => {
                format!("not given, and environment variable {one} (read by {read_by}) is not set")
            }
            _ => format!(
                "not given, and none of the environment variables {} (read by {read_by}) is set",
                names.join(", ")
            ),
        };
        self.problem(path, msg);
        Vec::new()
    }

    /// Bedrock credentials from the environment when the file gives none: a Bedrock API key if
    /// set, else the standard AWS credential variables. (Ones written in the file were an
    /// explicit choice, so they are never overridden from here.)
    fn bedrock_env(&mut self, path: &str) -> (Vec<KeyConfig>, Option<AwsCredentialsConfig>) {
        let env = |name: &str| (self.env)(name).filter(|v| !v.is_empty());
        if let Some(value) = env(BEDROCK_KEY_ENV) {
            return (vec![one_key(value)], None);
        }
        let token = env(AWS_SESSION_TOKEN_ENV);
        let (set, unset) = match (env(AWS_ACCESS_KEY_ID_ENV), env(AWS_SECRET_ACCESS_KEY_ENV)) {
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

    /// A first-token or stall limit past the total one could never fire. Not compared with a
    /// total that failed to decode (it was reported already).
    fn within_total(
        &mut self,
        path: &str,
        first_token: Option<u64>,
        stall: Option<u64>,
        total: u64,
    ) {
        let total_path = child_path(path, "total_ms");
        if self.failed(&total_path) {
            return;
        }
        let default = if self.given(&total_path) {
            ""
        } else {
            ", the default"
        };
        for (field, ms) in [("first_token_ms", first_token), ("stall_ms", stall)] {
            if let Some(ms) = ms.filter(|&ms| ms > total) {
                let msg = format!("must not exceed total_ms ({total}{default}), got {ms}");
                self.problem(&child_path(path, field), msg);
            }
        }
    }

    /// Extra upstream headers, keyed by lower-case name (HTTP names are case-insensitive).
    fn headers(
        &mut self,
        path: &str,
        given: &IndexMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (name, value) in given {
            let p = child_path(path, name);
            let Ok(header) = http::HeaderName::from_bytes(name.as_bytes()) else {
                self.problem(&p, "invalid header name");
                continue;
            };
            let refusal = if http_headers::is_hop_by_hop(&header) {
                "hop-by-hop header; it cannot be sent upstream"
            } else if http_headers::is_client_credential(&header) {
                "credentials cannot be set as headers; use keys (or auth: passthrough)"
            } else if http_headers::is_set_per_request(&header) {
                "set by the gateway for each request; it cannot be overridden"
            } else if out.contains_key(header.as_str()) {
                "duplicate header (names are case-insensitive)"
            } else if http::HeaderValue::from_str(value).is_err() {
                "invalid header value (control characters are not allowed)"
            } else {
                out.insert(header.as_str().to_string(), value.clone());
                continue;
            };
            self.problem(&p, refusal);
        }
        out
    }

    fn ca_file(&mut self, path: &str, text: &str) -> Option<PathBuf> {
        let mut file = PathBuf::from(text);
        if let (true, Some(base)) = (file.is_relative(), self.base_dir) {
            file = base.join(file);
        }
        let problem = match std::fs::read(&file) {
            Err(e) => format!("cannot read {}: {e}", file.display()),
            Ok(pem) => match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
                Err(e) => format!("invalid PEM in {}: {e}", file.display()),
                Ok(certs) if certs.is_empty() => {
                    format!("no PEM certificate found in {}", file.display())
                }
                Ok(_) => return Some(file),
            },
        };
        self.problem(path, problem);
        None
    }

    fn models(
        &mut self,
        models: &[ModelConfig],
        written: &IndexMap<String, ProviderFile>,
        providers: &[ProviderConfig],
    ) -> Vec<ModelConfig> {
        // Every id and model name written in the file, valid or not, so an entry with its own
        // problems does not also make each reference to it "unknown".
        let ids: Vec<&str> = written.keys().map(String::as_str).collect();
        let mut kinds: HashMap<&str, ProviderKind> =
            providers.iter().map(|p| (p.id.as_str(), p.kind)).collect();
        if !ids.contains(&BUILTIN_MOCK) {
            kinds.insert(BUILTIN_MOCK, ProviderKind::Mock);
        }
        let key_limited = providers
            .iter()
            .filter(|p| p.keys.iter().any(|k| k.rpm.is_some() || k.tpm.is_some()))
            .map(|p| p.id.as_str())
            .collect();
        let named = models
            .iter()
            .enumerate()
            .filter(|(i, _)| self.given(&format!("models[{i}].name")))
            .map(|(_, m)| m.name.as_str());
        let (globs, exact) = named.partition(|n| glob::is_glob(n));
        let known = Known {
            ids,
            kinds,
            key_limited,
            exact,
            globs,
        };
        let mut first_index: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::with_capacity(models.len());
        for (i, m) in models.iter().enumerate() {
            let path = format!("models[{i}]");
            let at = |field: &str| child_path(&path, field);
            let name_given = self.given(&at("name"));
            if !name_given {
                self.problem(&at("name"), "missing required field");
            } else if m.name.is_empty() {
                self.problem(&at("name"), "must not be empty");
            } else if let Some(first) = first_index.get(m.name.as_str()) {
                let msg = format!(
                    "duplicate model name {:?} (first defined at models[{first}])",
                    m.name
                );
                self.problem(&at("name"), msg);
            } else {
                first_index.insert(&m.name, i);
            }
            let targets_given = self.given(&at("targets"));
            if !targets_given {
                let msg = "missing required field (a list of { provider, model, weight })";
                self.problem(&at("targets"), msg);
            } else if m.targets.is_empty() {
                self.problem(&at("targets"), "must list at least one target");
            }
            for (j, t) in m.targets.iter().enumerate() {
                self.target(&format!("{path}.targets[{j}]"), t, &known);
            }
            let own = (name_given && !m.name.is_empty()).then_some(m.name.as_str());
            self.model_settings(&path, m, own, &known);
            if targets_given {
                out.push(m.clone());
            }
        }
        out
    }

    fn target(&mut self, path: &str, t: &TargetConfig, known: &Known) {
        let at = |field: &str| child_path(path, field);
        if !self.given(&at("provider")) {
            self.problem(&at("provider"), "missing required field");
        } else if !known.ids().any(|id| id == t.provider) {
            self.problem(&at("provider"), known.unknown_provider(&t.provider, ""));
        }
        if t.model.as_deref() == Some("") {
            let msg = "must not be empty (omit it to forward the client's model name)";
            self.problem(&at("model"), msg);
        }
        match known.kinds.get(t.provider.as_str()) {
            Some(kind) if *kind != ProviderKind::Azure && self.given(&at("deployment")) => {
                let msg = format!(
                    "only applies to kind azure (provider {:?} is kind {})",
                    t.provider,
                    kind.as_str()
                );
                self.problem(&at("deployment"), msg);
            }
            _ => {}
        }
        if self.given(&at("queue")) && !self.given(&at("max_concurrency")) {
            // Without a concurrency limit nothing ever waits, so the queue would be inert.
            let msg = "only applies together with max_concurrency (requests wait for a slot only when concurrency is limited)";
            self.problem(&at("queue"), msg);
        }
    }

    /// The checks that tie a model's resilience settings to its targets and to other models.
    fn model_settings(&mut self, path: &str, m: &ModelConfig, own: Option<&str>, known: &Known) {
        let at = |field: &str| child_path(path, field);
        let target = |j: usize, field: &str| format!("{path}.targets[{j}].{field}");
        if !self.failed(&at("balance")) {
            if m.balance == Balance::UsageAware {
                // Counted as written, so a limit that failed to decode changes no verdict.
                let limited = (0..m.targets.len())
                    .any(|j| self.given(&target(j, "rpm")) || self.given(&target(j, "tpm")))
                    || m.targets
                        .iter()
                        .any(|t| known.key_limited.contains(&t.provider.as_str()));
                if self.given(&at("targets")) && !limited {
                    let msg = "usage_aware needs rpm or tpm on at least one target, or on a key of a target's provider (the limits it balances against)";
                    self.problem(&at("balance"), msg);
                }
            } else {
                // Only usage-aware balancing reads a target's limits; elsewhere they are inert.
                for (j, t) in m.targets.iter().enumerate() {
                    for (field, set) in [("rpm", t.rpm.is_some()), ("tpm", t.tpm.is_some())] {
                        if set {
                            let msg = "only applies with balance: usage_aware (the limits it balances by)";
                            self.problem(&target(j, field), msg);
                        }
                    }
                }
            }
        }
        let (initial, max) = (m.retry.backoff_initial_ms, m.retry.backoff_max_ms);
        let (ip, mp) = (at("retry.backoff_initial_ms"), at("retry.backoff_max_ms"));
        if max < initial && !self.failed(&ip) && !self.failed(&mp) {
            if self.given(&mp) {
                self.problem(
                    &mp,
                    format!("must be at least backoff_initial_ms ({initial}), got {max}"),
                );
            } else {
                let msg =
                    format!("must not exceed backoff_max_ms ({max}, the default), got {initial}");
                self.problem(&ip, msg);
            }
        }
        // Only a total given here is compared: otherwise each target's provider's applies.
        let t = m.timeouts;
        if let Some(total) = t.total_ms {
            self.within_total(&at("timeouts"), t.first_token_ms, t.stall_ms, total);
        }
        if self.given(&at("hedge")) {
            let one_target = self.given(&at("targets")) && m.targets.len() == 1;
            // A `fallbacks` that is not a list is reported on its own; hedge is not blamed too.
            let fallbacks = at("fallbacks");
            let has_fallbacks =
                self.given(&fallbacks) && (self.failed(&fallbacks) || !m.fallbacks.is_empty());
            if one_target && !has_fallbacks {
                let msg = "nothing to hedge to: the model has one target and no fallbacks (add a target or fallbacks, or remove hedge)";
                self.problem(&at("hedge"), msg);
            }
        }
        let lists = [
            ("fallbacks", &m.fallbacks),
            ("context_window_fallbacks", &m.context_window_fallbacks),
            ("content_policy_fallbacks", &m.content_policy_fallbacks),
        ];
        for (list, names) in lists {
            let lp = at(list);
            let mut first_at: HashMap<&str, usize> = HashMap::new();
            for (k, name) in names.iter().enumerate() {
                let p = format!("{lp}[{k}]");
                if self.failed(&p) {
                    continue;
                }
                if let Some(first) = first_at.get(name.as_str()) {
                    self.problem(&p, format!("{name:?} is already listed at {lp}[{first}]"));
                    continue;
                }
                first_at.insert(name, k);
                if let Some(msg) = fallback_problem(name, own, known) {
                    self.problem(&p, msg);
                }
            }
        }
    }
}

pub(crate) fn one_key(value: String) -> KeyConfig {
    KeyConfig {
        value,
        weight: 1,
        rpm: None,
        tpm: None,
    }
}

/// Why `name` cannot be a fallback of the model `own`, if it cannot. Fallbacks are exact
/// configured model names, or `provider/model` with a known provider. Cycles across models are
/// fine (the engine tries each model at most once per request), so only a model naming itself
/// is refused.
fn fallback_problem(name: &str, own: Option<&str>, known: &Known) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if own == Some(name) {
        return Some("a model cannot fall back to itself".into());
    }
    if known.exact.contains(&name) {
        return None;
    }
    if glob::is_glob(name) {
        // Which of the pattern's matches would be meant is anyone's guess.
        return Some(format!(
            "{name:?} is a pattern; fallbacks name exact models, or provider/model"
        ));
    }
    let others = known.exact.iter().copied().filter(|n| Some(*n) != own);
    let model_hint = did_you_mean(name, others);
    if let Some((provider, model)) = name.split_once('/') {
        if known.ids().any(|id| id == provider) {
            return model
                .is_empty()
                .then(|| format!("expected provider/model, got {name:?} (nothing after the '/')"));
        }
        // A slip in a configured name that holds a '/' is as likely as an unknown provider.
        if model_hint.is_empty() {
            return Some(known.unknown_provider(provider, &format!(" in {name:?}")));
        }
    }
    if !model_hint.is_empty() {
        return Some(format!("unknown model {name:?}{model_hint}"));
    }
    if let Some(pattern) = known.globs.iter().find(|g| glob::matches(g, name)) {
        return Some(format!(
            "unknown model {name:?} (it matches the pattern {pattern:?}, but fallbacks name exact models, or provider/model)"
        ));
    }
    Some(format!(
        "unknown model {name:?} (expected a configured model name, or provider/model with a known provider)"
    ))
}

/// Why a base URL would make the gateway's own path appear twice (`.../v1/v1/messages`): it
/// ends with the API version segment the gateway appends for `kind`, or holds a piece of a
/// whole endpoint path (a pasted request URL).
fn appended_path(kind: ProviderKind, url: &str) -> Option<String> {
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
        ProviderKind::OpenAi | ProviderKind::Bedrock | ProviderKind::Mock => return None,
    };
    let path = url
        .parse::<http::Uri>()
        .ok()?
        .path()
        .trim_end_matches('/')
        .to_string();
    let what = ends
        .iter()
        .find(|end| path.ends_with(**end))
        .map(|end| format!("ends with {end:?}"))
        .or_else(|| {
            holds
                .iter()
                .find(|piece| path.contains(**piece))
                .map(|piece| format!("contains {piece:?}"))
        })?;
    Some(format!(
        "{what}, which the gateway appends itself for kind {}; give the base URL only, like {example}",
        kind.as_str()
    ))
}
