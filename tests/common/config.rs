//! YAML config builder for the standard test topology: provider `up` (kind openai, pointing at a
//! `MockUpstream`), provider `fake` (kind mock), model `gpt-4o-mini` -> `up/upstream-model-x`,
//! glob `claude-*` -> `up` with the client's model name.

use super::mock_upstream::MockUpstream;

pub const KEY_1: &str = "sk-up-1";
pub const KEY_2: &str = "sk-up-2";
/// The client's own credential in tests; must never reach the upstream (unless passthrough)
/// nor appear in responses/logs.
pub const CLIENT_KEY: &str = "client-secret-key-0123456789";

#[derive(Clone, Debug)]
pub struct Cfg {
    pub base_url: String,
    pub body_limit_bytes: u64,
    pub header_read_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    pub drain_timeout_ms: u64,
    /// YAML flow value for `up.keys`, or None to omit keys.
    pub keys: Option<String>,
    /// `up.auth` (e.g. `passthrough`).
    pub auth: Option<String>,
    pub connect_ms: u64,
    pub first_byte_ms: u64,
    pub total_ms: u64,
    /// Extra `models:` list entries (YAML, each starting with `  - name:`).
    pub extra_models: String,
    /// Extra `providers:` entries (YAML, indented by 2).
    pub extra_providers: String,
}

impl Cfg {
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.to_string(),
            body_limit_bytes: 33_554_432,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            drain_timeout_ms: 30_000,
            keys: Some(format!(
                r#"[{{ value: "{KEY_1}", weight: 3 }}, {{ value: "{KEY_2}", weight: 1 }}]"#
            )),
            auth: None,
            connect_ms: 2_000,
            first_byte_ms: 30_000,
            total_ms: 600_000,
            extra_models: String::new(),
            extra_providers: String::new(),
        }
    }

    pub fn model(mut self, yaml_entry: &str) -> Self {
        self.extra_models.push_str(yaml_entry);
        if !yaml_entry.ends_with('\n') {
            self.extra_models.push('\n');
        }
        self
    }

    pub fn yaml(&self) -> String {
        let mut up = format!("  up:\n    kind: openai\n    base_url: {}\n", self.base_url);
        if let Some(k) = &self.keys {
            up.push_str(&format!("    keys: {k}\n"));
        }
        if let Some(a) = &self.auth {
            up.push_str(&format!("    auth: {a}\n"));
        }
        up.push_str(&format!(
            "    timeouts: {{ connect_ms: {}, first_byte_ms: {}, total_ms: {} }}\n",
            self.connect_ms, self.first_byte_ms, self.total_ms
        ));
        up.push_str("    headers: { X-Extra: \"yes\" }\n");
        format!(
            "server: {{ body_limit_bytes: {}, header_read_timeout_ms: {}, body_read_timeout_ms: {}, drain_timeout_ms: {} }}\n\
             providers:\n{up}  fake: {{ kind: mock, mock: {{ chunks: 5, chunk_delay_ms: 0, latency_ms: 0, reply_words: 10 }} }}\n{}\
             models:\n  - name: gpt-4o-mini\n    targets: [{{ provider: up, model: upstream-model-x, weight: 1 }}]\n  - name: \"claude-*\"\n    targets: [{{ provider: up }}]\n{}",
            self.body_limit_bytes,
            self.header_read_timeout_ms,
            self.body_read_timeout_ms,
            self.drain_timeout_ms,
            self.extra_providers,
            self.extra_models,
        )
    }
}

/// A `providers:` entry: OpenAI-kind provider `id` on `up`, with the one key `key-{id}`.
pub fn oai(id: &str, up: &MockUpstream) -> String {
    format!(
        "  {id}: {{ kind: openai, base_url: \"{}\", keys: [\"key-{id}\"] }}\n",
        up.base_url()
    )
}
