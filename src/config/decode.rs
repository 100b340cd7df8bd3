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
    AuthMode, Config, KeyConfig, MockSettings, ModelConfig, ProviderConfig, ProviderKind,
    ServerSettings, TargetConfig, Timeouts, DEFAULT_LISTEN,
};
use crate::config::ConfigProblem;
use crate::providers::presets::{self, Preset};

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
    "kind", "preset", "base_url", "keys", "auth", "timeouts", "headers", "ca_file", "mock",
];
const KEY_FIELDS: &[&str] = &["value", "weight"];
const TIMEOUT_FIELDS: &[&str] = &["connect_ms", "first_byte_ms", "total_ms"];
const MOCK_FIELDS: &[&str] = &["chunks", "chunk_delay_ms", "latency_ms", "reply_words"];
const MODEL_FIELDS: &[&str] = &["name", "targets"];
const TARGET_FIELDS: &[&str] = &["provider", "model", "weight"];

const SUPPORTED_KINDS: &[&str] = &["openai", "mock"];
/// Kinds people will try because other gateways have them; they get a clearer message than
/// "unknown".
const PLANNED_KINDS: &[&str] = &["anthropic", "gemini", "azure", "bedrock"];
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
        if let Some(v) = f.get("models") {
            config.models = self.models("models", v, &ids);
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
        let preset = f
            .get("preset")
            .and_then(|v| self.preset(&child(path, "preset"), v));
        let kind = match f.get("kind") {
            Some(v) => self.kind(&child(path, "kind"), v),
            None if preset_given => Some(ProviderKind::OpenAi),
            None => {
                let msg = "missing required field (supported: openai, mock), or set preset";
                self.problem(&child(path, "kind"), msg);
                None
            }
        };
        if kind == Some(ProviderKind::Mock) && preset_given {
            self.problem(&child(path, "preset"), "only applies to kind openai");
        }
        if kind == Some(ProviderKind::OpenAi) && f.get("mock").is_some() {
            self.problem(&child(path, "mock"), "only applies to kind mock");
        }

        let base_url = match f.get("base_url") {
            Some(v) => self.base_url(&child(path, "base_url"), v),
            None => preset.map(|p| p.base_url.to_string()),
        };
        if kind == Some(ProviderKind::OpenAi) && !preset_given && f.get("base_url").is_none() {
            let msg = "required for kind openai (or set preset, e.g. preset: openai)";
            self.problem(&child(path, "base_url"), msg);
        }

        let auth = match f.get("auth") {
            Some(v) => self.auth(&child(path, "auth"), v),
            None => AuthMode::Keys,
        };
        let mut keys = match f.get("keys") {
            Some(v) => self.keys(&child(path, "keys"), v),
            None => Vec::new(),
        };
        if auth == AuthMode::Passthrough && f.get("keys").is_some() {
            let msg = "passthrough forwards the client's own credentials, so it cannot be combined with keys";
            self.problem(&child(path, "auth"), msg);
        }
        if let Some(p) = preset {
            if auth == AuthMode::Keys && f.get("keys").is_none() && !p.key_env.is_empty() {
                keys = self.preset_key(&child(path, "keys"), p);
            }
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
            Some(v) => self.mock(&child(path, "mock"), v),
            None => MockSettings::default(),
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
            api_version: None,
            region: None,
            aws_credentials: None,
            anthropic_version: None,
        })
    }

    fn kind(&mut self, path: &str, v: &Value) -> Option<ProviderKind> {
        let name = self.string(path, v)?;
        match name.as_str() {
            "openai" => return Some(ProviderKind::OpenAi),
            "mock" => return Some(ProviderKind::Mock),
            _ => {}
        }
        let msg = if PLANNED_KINDS.contains(&name.as_str()) {
            format!("provider kind {name:?} is not supported yet (supported: openai, mock)")
        } else if presets::find(&name).is_some() {
            // `kind: groq` is a natural guess; the vendor is a preset of kind openai.
            format!("unknown provider kind {name:?} (did you mean preset: {name}?)")
        } else {
            let hint = did_you_mean(&name, SUPPORTED_KINDS.iter().copied());
            format!("unknown provider kind {name:?}{hint} (supported: openai, mock)")
        };
        self.problem(path, msg);
        None
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
            Some(value) => vec![KeyConfig { value, weight: 1 }],
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

    fn base_url(&mut self, path: &str, v: &Value) -> Option<String> {
        let text = self.string(path, v)?;
        let trimmed = text.trim_end_matches('/');
        let ok = trimmed.parse::<http::Uri>().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some_and(|h| !h.is_empty())
                && uri.query().is_none()
        });
        if ok {
            Some(trimmed.to_string())
        } else {
            let msg = format!(
                "expected an absolute http:// or https:// URL without a query, got {:?}",
                text
            );
            self.problem(path, msg);
            None
        }
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
            let (value, weight) = if entry.is_mapping() {
                let Some(f) = self.fields(&p, entry, KEY_FIELDS) else {
                    continue;
                };
                let value = self.required_string(&f, &p, "value");
                let weight = self.field_u32(&f, &p, "weight", 1).unwrap_or(1);
                (value.map(|v| (v, child(&p, "value"))), weight)
            } else {
                (self.string(&p, entry).map(|v| (v, p.clone())), 1)
            };
            if let Some((value, value_path)) = value {
                if value.is_empty() {
                    self.problem(&value_path, "must not be empty");
                } else {
                    keys.push(KeyConfig { value, weight });
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
        t.total_ms = self
            .field_u64(&f, path, "total_ms", 1)
            .unwrap_or(t.total_ms);
        t
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
        m
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
    fn models(&mut self, path: &str, v: &Value, ids: &[String]) -> Vec<ModelConfig> {
        let Some(items) = self.sequence(path, v) else {
            return Vec::new();
        };
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
            let targets = match f.get("targets") {
                Some(v) => self.targets(&child(&p, "targets"), v, ids),
                None => {
                    let msg = "missing required field (a list of { provider, model, weight })";
                    self.problem(&child(&p, "targets"), msg);
                    continue;
                }
            };
            models.push(ModelConfig {
                name: name.unwrap_or_default(),
                targets,
            });
        }
        models
    }

    fn targets(&mut self, path: &str, v: &Value, ids: &[String]) -> Vec<TargetConfig> {
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
                self.check_provider_ref(&child(&p, "provider"), provider, ids);
            }
            let model = f
                .get("model")
                .and_then(|v| self.string(&child(&p, "model"), v));
            if model.as_deref() == Some("") {
                let msg = "must not be empty (omit it to forward the client's model name)";
                self.problem(&child(&p, "model"), msg);
            }
            let weight = self.field_u32(&f, &p, "weight", 1).unwrap_or(1);
            targets.push(TargetConfig {
                provider: provider.unwrap_or_default(),
                model,
                weight,
                deployment: None,
            });
        }
        targets
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
            problems("providers: { a: { kind: anthropic }, g: { kind: groq }, o: { kind: opnai, base_url: 'http://x' } }"),
            [
                "providers.a.kind: provider kind \"anthropic\" is not supported yet (supported: openai, mock)",
                "providers.g.kind: unknown provider kind \"groq\" (did you mean preset: groq?)",
                "providers.o.kind: unknown provider kind \"opnai\" (did you mean \"openai\"?) (supported: openai, mock)",
            ]
        );
    }
}
