//! Configuration: YAML text to a validated [`Config`].
//!
//! A bad file is reported in one go: every problem, in file order, each with its line and
//! column and the path of the value it is about (`models[0].targets[1].weight`), so fixing a
//! config is one edit-run cycle, not many. The types in `types.rs` are decoded by their serde
//! derives (`yaml.rs` keeps decoding past an error); the rules that tie values together are a
//! separate validation pass (`validate.rs`).
//!
//! Config imports no other part of the gateway but foundations (`glob`, `http_headers`), so
//! routing and providers can depend on it.

/// The default listen address, as a literal so messages can `concat!` it.
macro_rules! default_listen {
    () => {
        "127.0.0.1:8080"
    };
}

pub mod env;
pub mod governance;
pub mod logs;
pub mod presets;
mod suggest;
pub mod types;
mod validate;
mod values;
mod yaml;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

pub use suggest::suggest;
pub use types::*;
pub use values::parse_size;

use presets::{Preset, PRESETS};

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Where: `listen`, `providers.openai.base_url`, `models[2].targets[0].provider`, or
    /// `<file>` for the file as a whole (YAML syntax).
    pub path: String,
    /// What, never including a secret's value.
    pub message: String,
    /// Where in the text, when known: the value the problem is about, or for a field that is
    /// missing, the mapping that lacks it.
    pub location: Option<Location>,
    /// The file, when the config was read from one (as the caller named it).
    pub file: Option<String>,
}

/// A position in the config text, both 1-based (the column counts characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// `config.yaml:14:7: models[2].targets[0].provider: unknown provider "opnai"`, with the
/// parts that are known.
impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
        }
        if let Some(at) = self.location {
            write!(f, "{}:{}:", at.line, at.column)?;
        }
        if self.file.is_some() || self.location.is_some() {
            f.write_str(" ")?;
        }
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Every problem found, in file order. Never empty.
    #[error("{}", format_problems(.0))]
    Invalid(Vec<ConfigProblem>),
}

impl ConfigError {
    /// The validation problems; empty for a read error.
    pub fn problems(&self) -> &[ConfigProblem] {
        match self {
            ConfigError::Invalid(problems) => problems,
            ConfigError::Read { .. } => &[],
        }
    }
}

fn format_problems(problems: &[ConfigProblem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// Parses and validates config text. `env` looks up variables for `${NAME}` expansion (tests
/// pass a closure; [`load_file`] uses the process environment). Relative `ca_file` paths are
/// taken relative to the working directory.
pub fn parse_str(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    parse_with_base(text, env, None)
}

/// Reads and validates a config file, expanding `${NAME}` from the process environment.
/// Relative `ca_file` paths are taken relative to the file's directory, so a config works the
/// same whatever directory the gateway is started from. Problems name the file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().filter(|dir| !dir.as_os_str().is_empty());
    parse_with_base(&text, &env::process_env, base).map_err(|e| match e {
        ConfigError::Invalid(mut problems) => {
            let file = path.display().to_string();
            for p in &mut problems {
                p.file = Some(file.clone());
            }
            ConfigError::Invalid(problems)
        }
        read => read,
    })
}

fn parse_with_base(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    base_dir: Option<&Path>,
) -> Result<Config, ConfigError> {
    let decoded = yaml::decode::<validate::FileConfig>(text, env);
    validate::validate(decoded, env, base_dir).map_err(ConfigError::Invalid)
}

/// The configuration used when no file is given: one provider per preset whose API key
/// variable is set (and non-empty), then `anthropic` (from `ANTHROPIC_API_KEY`) and `gemini`
/// (from `GEMINI_API_KEY`, else `GOOGLE_API_KEY`) with their native APIs; no model aliases,
/// default server settings.
///
/// Also returns what was found, e.g. `["openai (OPENAI_API_KEY)"]`, for the startup banner.
pub fn zero_config(env: &dyn Fn(&str) -> Option<String>) -> (Config, Vec<String>) {
    let mut providers = Vec::new();
    let mut found = Vec::new();
    let key = |name: &str| env(name).filter(|k| !k.is_empty());
    for preset in PRESETS.iter().filter(|p| !p.key_env.is_empty()) {
        if let Some(key) = key(preset.key_env) {
            providers.push(preset_provider(preset, key));
            found.push(format!("{} ({})", preset.id, preset.key_env));
        }
    }
    let native = [
        (
            ProviderKind::Anthropic,
            validate::ANTHROPIC_BASE_URL,
            validate::ANTHROPIC_KEY_ENVS,
        ),
        (
            ProviderKind::Gemini,
            validate::GEMINI_BASE_URL,
            validate::GEMINI_KEY_ENVS,
        ),
    ];
    for (kind, base_url, names) in native {
        // The first variable set wins, as in a config file without `keys`.
        if let Some((name, value)) = names.iter().find_map(|n| key(n).map(|v| (*n, v))) {
            providers.push(native_provider(kind, base_url, value));
            found.push(format!("{} ({name})", kind.as_str()));
        }
    }
    let config = Config {
        listen: None,
        server: ServerSettings::default(),
        providers,
        models: Vec::new(),
        pricing: Vec::new(),
        governance: None,
        logs: logs::LogsConfig::default(),
    };
    (config, found)
}

fn preset_provider(preset: &Preset, key: String) -> ProviderConfig {
    ProviderConfig {
        id: preset.id.to_string(),
        ..native_provider(ProviderKind::OpenAi, preset.base_url, key)
    }
}

/// A zero-config provider of `kind`, named after the kind, with one key and defaults otherwise.
fn native_provider(kind: ProviderKind, base_url: &str, key: String) -> ProviderConfig {
    ProviderConfig {
        id: kind.as_str().to_string(),
        kind,
        base_url: Some(base_url.to_string()),
        keys: vec![validate::one_key(key)],
        auth: AuthMode::Keys,
        timeouts: Timeouts::default(),
        headers: Default::default(),
        ca_file: None,
        mock: MockSettings::default(),
        api_version: None,
        region: None,
        aws_credentials: None,
        anthropic_version: None,
        breaker: Default::default(),
    }
}
