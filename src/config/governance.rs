//! The `governance:` section (virtual keys, budgets, limits; off when absent) and the access
//! policy a key, team or customer carries. The policy types are decoded the same way from the
//! config file and from admin API JSON, so a field means one thing in both places and a
//! misspelt one is refused in both (never silently ignored).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values as v;
use super::yaml::Secret;

/// Spend and counters are written to the store at least this often by default.
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 1_000;
/// Longest allowed flush interval: what a SIGKILL may lose is bounded by it.
pub const MAX_FLUSH_INTERVAL_MS: u64 = 60_000;
/// How often each instance looks for keys changed by another instance's admin API.
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 1_000;
/// Output tokens reserved for a request that does not say how many it may generate.
pub const DEFAULT_OUTPUT_ALLOWANCE: u64 = 4_096;

/// Whether `s` is shaped like a virtual key: `fg-` and 20 to 128 of `[A-Za-z0-9_-]` (the
/// gateway's own keys are `fg-` and 43 base62 characters). A value elsewhere in a key header
/// that is not so shaped is a provider key, not a virtual one.
pub fn is_virtual_key_shape(s: &str) -> bool {
    s.strip_prefix("fg-").is_some_and(|body| {
        VIRTUAL_KEY_BODY_LEN.contains(&body.len())
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// How many characters follow a virtual key's `fg-`.
pub const VIRTUAL_KEY_BODY_LEN: std::ops::RangeInclusive<usize> = 20..=128;

/// The `governance:` section as written.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct GovernanceFile {
    pub master_key: Option<Secret<String>>,
    pub store: Option<String>,
    pub redis: Option<String>,
    #[serde(deserialize_with = "v::opt_positive")]
    pub flush_interval_ms: Option<u64>,
    #[serde(deserialize_with = "v::opt_positive")]
    pub sync_interval_ms: Option<u64>,
    #[serde(deserialize_with = "v::opt_positive")]
    pub default_output_tokens: Option<u64>,
    pub keys: Vec<KeyFile>,
}

/// A key declared in the file: its name, its value (usually `${VAR}`) and its policy.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct KeyFile {
    pub name: String,
    pub value: Secret<String>,
    pub models: Option<Vec<String>>,
    pub providers: Option<Vec<String>>,
    pub budget: Option<BudgetConfig>,
    pub limits: LimitConfig,
    #[serde(deserialize_with = "timestamp")]
    pub expires_at: Option<i64>,
}

/// Governance as validated.
#[derive(Clone, PartialEq)]
pub struct GovernanceConfig {
    /// Guards `/admin/v1/*` (and `/admin/health`). Never logged or echoed.
    pub master_key: String,
    pub store: StoreUrl,
    /// Shared counters and reservations for several instances.
    pub redis: Option<String>,
    /// Spend is written in batches at least this often; SIGKILL loses at most this much.
    pub flush_interval: Duration,
    /// Keys changed through another instance's admin API take effect within this.
    pub sync_interval: Duration,
    /// Output tokens reserved for a request that names no maximum.
    pub default_output_tokens: u64,
    pub keys: Vec<DeclaredKey>,
}

impl std::fmt::Debug for GovernanceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GovernanceConfig")
            .field("master_key", &"<redacted>")
            .field("store", &self.store)
            .field("redis", &self.redis.as_ref().map(|_| "<set>"))
            .field("flush_interval", &self.flush_interval)
            .field("sync_interval", &self.sync_interval)
            .field("default_output_tokens", &self.default_output_tokens)
            .field("keys", &self.keys)
            .finish()
    }
}

/// Where keys, spend and the audit log are kept.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An SQLite file (WAL mode), created if missing.
    Sqlite(PathBuf),
    /// An SQLite database in memory: nothing survives a restart (tests, demos).
    SqliteMemory,
    /// A PostgreSQL connection URL (may hold a password: never shown).
    Postgres(String),
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreUrl::SqliteMemory => f.write_str("sqlite::memory:"),
            StoreUrl::Postgres(_) => f.write_str("postgres://<redacted>"),
        }
    }
}

impl StoreUrl {
    /// `sqlite:PATH` (relative to `base_dir`), `sqlite::memory:`, or `postgres://…`.
    pub fn parse(text: &str, base_dir: Option<&Path>) -> Result<Self, String> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(text.to_string()));
        }
        let Some(rest) = text.strip_prefix("sqlite:") else {
            return Err("expected `sqlite:PATH`, `sqlite::memory:` or `postgres://…`".into());
        };
        if rest == ":memory:" {
            return Ok(StoreUrl::SqliteMemory);
        }
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        if rest.is_empty() {
            return Err("`sqlite:` needs a file path, e.g. `sqlite:ferrogate.db`".into());
        }
        let path = PathBuf::from(rest);
        Ok(StoreUrl::Sqlite(match base_dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        }))
    }
}

/// A key written in the config file (its value from the environment, usually).
#[derive(Clone, PartialEq)]
pub struct DeclaredKey {
    pub name: String,
    pub value: String,
    pub policy: AccessPolicy,
}

impl std::fmt::Debug for DeclaredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeclaredKey")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("policy", &self.policy)
            .finish()
    }
}

/// What a key, team or customer admits: models and providers (globs; `None` admits all), a
/// USD budget, rate limits and an expiry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessPolicy {
    pub models: Option<Vec<String>>,
    pub providers: Option<Vec<String>>,
    pub budget: Option<BudgetConfig>,
    pub limits: LimitConfig,
    /// Unix seconds; an RFC 3339 time or a number when written.
    #[serde(deserialize_with = "timestamp", serialize_with = "rfc3339")]
    pub expires_at: Option<i64>,
}

/// A USD budget per period.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    #[serde(deserialize_with = "v::price")]
    pub usd: f64,
    pub period: BudgetPeriod,
    /// Windows start at UTC calendar boundaries (the hour, midnight, Monday, the 1st); when
    /// false they run from the hour the budget was created. `1mo` is always calendar.
    #[serde(default = "yes")]
    pub calendar_aligned: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum BudgetPeriod {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "1d")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Days30,
    /// A calendar month, UTC.
    #[serde(rename = "1mo")]
    Month,
    /// Never resets.
    #[serde(rename = "total")]
    Total,
}

/// Rate limits; absent means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitConfig {
    #[serde(
        deserialize_with = "v::opt_non_negative",
        skip_serializing_if = "Option::is_none"
    )]
    pub rpm: Option<u64>,
    #[serde(
        deserialize_with = "v::opt_non_negative",
        skip_serializing_if = "Option::is_none"
    )]
    pub tpm: Option<u64>,
    #[serde(
        deserialize_with = "v::opt_positive",
        skip_serializing_if = "Option::is_none"
    )]
    pub concurrency: Option<u64>,
}

impl LimitConfig {
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.concurrency.is_none()
    }
}

/// A point in time: RFC 3339 (`2027-01-31T00:00:00Z`) or Unix seconds.
pub(crate) fn timestamp<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::{self, Visitor};
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a time in RFC 3339 form (2027-01-31T00:00:00Z) or Unix seconds")
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            i64::try_from(n)
                .map(Some)
                .map_err(|_| E::custom("too far in the future"))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Ok(Some(n))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            parse_time(s)
                .map(Some)
                .ok_or_else(|| E::invalid_value(de::Unexpected::Str(s), &self))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// RFC 3339 → Unix seconds (a bare number is taken as Unix seconds too).
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

/// Unix seconds → RFC 3339 (UTC, seconds).
pub fn format_time(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

fn rfc3339<S: serde::Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(secs) => s.serialize_str(&format_time(*secs)),
        None => s.serialize_none(),
    }
}

impl AccessPolicy {
    /// Problems a policy can have beyond single values: empty lists and unusable globs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (field, list) in [("models", &self.models), ("providers", &self.providers)] {
            let Some(list) = list else { continue };
            if list.is_empty() {
                out.push((
                    field,
                    "an empty list admits nothing; leave it out to admit all".to_string(),
                ));
            }
            if list.iter().any(|p| p.trim().is_empty()) {
                out.push((field, "an entry is empty".to_string()));
            }
        }
        out
    }
}
