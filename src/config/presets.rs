//! Well-known OpenAI-compatible vendors, so a config can say `preset: groq` instead of spelling
//! out the base URL and key variable, and so zero-config mode can discover providers from the
//! environment.

/// One vendor's connection defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// Lower-case vendor name, used as `preset:` value and as the zero-config provider id.
    pub id: &'static str,
    /// OpenAI-compatible API root, without a trailing `/`.
    pub base_url: &'static str,
    /// Environment variable holding the vendor's API key; empty for local servers that need
    /// none (those are never auto-discovered, since there is nothing to discover them by).
    pub key_env: &'static str,
}

/// All presets, in the order zero-config discovery reports them.
pub const PRESETS: &[Preset] = &[
    preset("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    preset("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    preset("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    preset(
        "deepseek",
        "https://api.deepseek.com/v1",
        "DEEPSEEK_API_KEY",
    ),
    preset(
        "openrouter",
        "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY",
    ),
    preset(
        "together",
        "https://api.together.xyz/v1",
        "TOGETHER_API_KEY",
    ),
    preset(
        "fireworks",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_KEY",
    ),
    preset("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
    preset("cerebras", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
    preset(
        "perplexity",
        "https://api.perplexity.ai",
        "PERPLEXITY_API_KEY",
    ),
    preset("ollama", "http://127.0.0.1:11434/v1", ""),
    preset("vllm", "http://127.0.0.1:8000/v1", ""),
    preset("lmstudio", "http://127.0.0.1:1234/v1", ""),
];

const fn preset(id: &'static str, base_url: &'static str, key_env: &'static str) -> Preset {
    Preset {
        id,
        base_url,
        key_env,
    }
}

/// The preset with exactly this id (ids are lower-case; no case folding, so the config file
/// stays unambiguous).
pub fn find(id: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.id == id)
}

/// Ids of all presets, for "did you mean" suggestions and help text.
pub fn ids() -> impl Iterator<Item = &'static str> {
    PRESETS.iter().map(|p| p.id)
}
