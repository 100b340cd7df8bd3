//! The routing snapshot: everything a request needs, compiled once from a config and swapped
//! whole on reload. Pre-resolves URIs, auth header values and metric handles so the request path
//! only reads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::Uri;

use crate::config::{
    AuthMode, Config, MockSettings, ModelConfig, ProviderConfig, ProviderKind, ServerSettings,
    Timeouts,
};
use crate::routing::glob;
use crate::routing::health::{HealthRegistry, ProviderHealth};
use crate::routing::pick;
use crate::telemetry::metrics::RouteMetrics;
use crate::upstream::{Pool, PoolCache, PoolKey};

/// Id of the built-in mock provider, present unless the config defines its own `mock`.
pub const BUILTIN_MOCK: &str = "mock";

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("providers.{provider}.base_url: {detail}")]
    BaseUrl { provider: String, detail: String },
    #[error("providers.{provider}: {detail}")]
    Provider { provider: String, detail: String },
    #[error("models[{index}].targets: unknown provider {provider:?}")]
    UnknownProvider { index: usize, provider: String },
}

/// Which OpenAI endpoint a request is for; selects the upstream path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
        }
    }
}

pub struct ApiKey {
    /// `Bearer <key>`, marked sensitive so it is never printed.
    pub header: HeaderValue,
    pub weight: u32,
}

/// A provider, ready for the request path.
pub struct ProviderRt {
    pub id: Arc<str>,
    pub kind: ProviderKind,
    /// Upstream URIs per endpoint (`None` for the mock).
    uris: Option<[Uri; 3]>,
    pub keys: Vec<ApiKey>,
    key_weight: u32,
    pub auth: AuthMode,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub total_timeout: Duration,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub pool: Option<Arc<Pool>>,
    pub mock: MockSettings,
    pub health: Arc<ProviderHealth>,
    /// Metrics for `provider/model` requests, labelled by provider only (bounded series).
    pub direct_metrics: Arc<RouteMetrics>,
}

impl ProviderRt {
    pub fn uri(&self, endpoint: Endpoint) -> Option<&Uri> {
        let uris = self.uris.as_ref()?;
        Some(match endpoint {
            Endpoint::ChatCompletions => &uris[0],
            Endpoint::Completions => &uris[1],
            Endpoint::Embeddings => &uris[2],
        })
    }

    /// A key by weighted choice, or `None` when the provider has none.
    pub fn pick_key(&self) -> Option<&ApiKey> {
        pick::weighted(&self.keys, self.key_weight, |k| k.weight).map(|i| &self.keys[i])
    }
}

pub struct TargetRt {
    pub provider: Arc<ProviderRt>,
    /// Upstream model name; `None` forwards the client's.
    pub model: Option<Arc<str>>,
    pub weight: u32,
    pub metrics: Arc<RouteMetrics>,
    /// Pre-built `x-ferrogate-target` value when the upstream model is fixed.
    pub served_header: Option<HeaderValue>,
}

pub struct Route {
    pub name: Arc<str>,
    pub targets: Vec<TargetRt>,
    total_weight: u32,
}

impl Route {
    pub fn pick(&self) -> Option<&TargetRt> {
        pick::weighted(&self.targets, self.total_weight, |t| t.weight).map(|i| &self.targets[i])
    }
}

/// What a request's model resolved to.
pub enum Resolved<'s> {
    Route(&'s Route),
    /// `provider/model` not configured as a name: straight to the provider.
    Direct {
        provider: &'s Arc<ProviderRt>,
        model: &'s str,
    },
}

pub struct Snapshot {
    pub settings: ServerSettings,
    pub providers: Vec<Arc<ProviderRt>>,
    provider_index: HashMap<Arc<str>, usize>,
    exact: HashMap<Box<str>, Arc<Route>>,
    /// Longest pattern first, so the most specific glob wins.
    globs: Vec<(Box<str>, Arc<Route>)>,
    /// Pre-rendered `GET /v1/models` body.
    pub models_json: Bytes,
    /// Health of every provider some configured model routes to (deduplicated); empty when no
    /// models are configured, in which case every provider counts for readiness.
    routed_health: Vec<Arc<ProviderHealth>>,
}

impl Snapshot {
    /// Resolves a client's model name: exact name, then the longest matching glob, then
    /// `provider/model`.
    pub fn resolve<'s>(&'s self, model: &'s str) -> Option<Resolved<'s>> {
        if let Some(r) = self.exact.get(model) {
            return Some(Resolved::Route(r));
        }
        if let Some((_, r)) = self.globs.iter().find(|(p, _)| glob::matches(p, model)) {
            return Some(Resolved::Route(r));
        }
        let (provider, rest) = model.split_once('/')?;
        if rest.is_empty() {
            return None;
        }
        let idx = self.provider_index.get(provider)?;
        Some(Resolved::Direct {
            provider: &self.providers[*idx],
            model: rest,
        })
    }

    /// Configured names and provider ids, for "did you mean" messages.
    pub fn known_names(&self) -> impl Iterator<Item = &str> {
        self.exact
            .keys()
            .map(|k| &**k)
            .chain(self.globs.iter().map(|(k, _)| &**k))
    }

    pub fn provider_ids(&self) -> impl Iterator<Item = &str> {
        self.providers.iter().map(|p| &*p.id)
    }

    /// Ready: at least one target (a provider a model routes to, or with no models configured,
    /// any provider) that is not known to be down.
    pub fn has_live_target(&self) -> bool {
        if self.routed_health.is_empty() {
            self.providers.iter().any(|p| !p.health.is_down())
        } else {
            self.routed_health.iter().any(|h| !h.is_down())
        }
    }
}

/// Compiles a validated config into a snapshot, reusing pools and health state by id.
pub fn compile(
    config: &Config,
    pools: &PoolCache,
    health: &HealthRegistry,
) -> Result<Snapshot, CompileError> {
    let mut providers: Vec<Arc<ProviderRt>> = Vec::new();
    let mut provider_index: HashMap<Arc<str>, usize> = HashMap::new();
    let builtin_mock = ProviderConfig {
        id: BUILTIN_MOCK.to_string(),
        kind: ProviderKind::Mock,
        base_url: None,
        keys: Vec::new(),
        auth: AuthMode::Keys,
        timeouts: Timeouts::default(),
        headers: Default::default(),
        ca_file: None,
        mock: MockSettings::default(),
        api_version: None,
        region: None,
        aws_credentials: None,
        anthropic_version: None,
    };
    let needs_builtin = !config.providers.iter().any(|p| p.id == BUILTIN_MOCK);
    let all = config
        .providers
        .iter()
        .chain(needs_builtin.then_some(&builtin_mock));
    for p in all {
        let rt = compile_provider(p, pools, health)?;
        provider_index.insert(Arc::clone(&rt.id), providers.len());
        providers.push(Arc::new(rt));
    }

    let mut exact = HashMap::new();
    let mut globs = Vec::new();
    for (index, m) in config.models.iter().enumerate() {
        let route = Arc::new(compile_route(index, m, &providers, &provider_index)?);
        if glob::is_glob(&m.name) {
            globs.push((m.name.clone().into_boxed_str(), route));
        } else {
            exact.insert(m.name.clone().into_boxed_str(), route);
        }
    }
    globs.sort_by_key(|g| std::cmp::Reverse(g.0.len()));

    let mut routed_health: Vec<Arc<ProviderHealth>> = Vec::new();
    for route in exact.values().chain(globs.iter().map(|(_, r)| r)) {
        for t in &route.targets {
            if !routed_health
                .iter()
                .any(|h| Arc::ptr_eq(h, &t.provider.health))
            {
                routed_health.push(Arc::clone(&t.provider.health));
            }
        }
    }
    let models_json = render_models(config);
    Ok(Snapshot {
        settings: config.server.clone(),
        providers,
        provider_index,
        exact,
        globs,
        models_json,
        routed_health,
    })
}

fn compile_route(
    index: usize,
    m: &ModelConfig,
    providers: &[Arc<ProviderRt>],
    provider_index: &HashMap<Arc<str>, usize>,
) -> Result<Route, CompileError> {
    let name: Arc<str> = Arc::from(m.name.as_str());
    let mut targets = Vec::with_capacity(m.targets.len());
    for t in &m.targets {
        let idx = provider_index.get(t.provider.as_str()).ok_or_else(|| {
            CompileError::UnknownProvider {
                index,
                provider: t.provider.clone(),
            }
        })?;
        let provider = Arc::clone(&providers[*idx]);
        let target_label: Arc<str> = match &t.model {
            Some(model) => format!("{}/{}", provider.id, model).into(),
            None => format!("{}/*", provider.id).into(),
        };
        let served_header = t
            .model
            .as_ref()
            .and_then(|_| HeaderValue::from_str(&target_label).ok());
        targets.push(TargetRt {
            served_header,
            metrics: Arc::new(RouteMetrics::new(Arc::clone(&name), target_label)),
            model: t.model.as_deref().map(Arc::from),
            weight: t.weight.max(1),
            provider,
        });
    }
    let total_weight = targets.iter().map(|t| t.weight).sum();
    Ok(Route {
        name,
        targets,
        total_weight,
    })
}

fn compile_provider(
    p: &ProviderConfig,
    pools: &PoolCache,
    health: &HealthRegistry,
) -> Result<ProviderRt, CompileError> {
    let id: Arc<str> = Arc::from(p.id.as_str());
    let (uris, pool) = match p.kind {
        ProviderKind::Mock => (None, None),
        ProviderKind::Anthropic
        | ProviderKind::Gemini
        | ProviderKind::Azure
        | ProviderKind::Bedrock => {
            return Err(CompileError::Provider {
                provider: p.id.clone(),
                detail: format!("kind {} is not wired yet", p.kind.as_str()),
            })
        }
        ProviderKind::OpenAi => {
            let base = p.base_url.as_deref().ok_or_else(|| CompileError::BaseUrl {
                provider: p.id.clone(),
                detail: "required for kind openai".into(),
            })?;
            let uris = [
                Endpoint::ChatCompletions,
                Endpoint::Completions,
                Endpoint::Embeddings,
            ]
            .map(|e| join_uri(base, e.path()));
            let [a, b, c] = uris;
            let err = |detail: String| CompileError::BaseUrl {
                provider: p.id.clone(),
                detail,
            };
            let uris = [a.map_err(err)?, b.map_err(err)?, c.map_err(err)?];
            let origin = match (uris[0].scheme_str(), uris[0].authority()) {
                (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
                _ => return Err(err("must be an absolute http:// or https:// URL".into())),
            };
            let pool = PoolKey::new(
                origin,
                p.ca_file.clone(),
                Duration::from_millis(p.timeouts.connect_ms),
            )
            .and_then(|key| pools.get(&key))
            .map_err(|e| CompileError::Provider {
                provider: p.id.clone(),
                detail: e.to_string(),
            })?;
            (Some(uris), Some(pool))
        }
    };
    let mut keys = Vec::with_capacity(p.keys.len());
    for k in &p.keys {
        let mut header = HeaderValue::from_str(&format!("Bearer {}", k.value)).map_err(|_| {
            CompileError::Provider {
                provider: p.id.clone(),
                detail: "an API key contains characters not allowed in a header".into(),
            }
        })?;
        header.set_sensitive(true);
        keys.push(ApiKey {
            header,
            weight: k.weight.max(1),
        });
    }
    let mut headers = Vec::with_capacity(p.headers.len());
    for (name, value) in &p.headers {
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| CompileError::Provider {
            provider: p.id.clone(),
            detail: format!("invalid header name {name:?}"),
        })?;
        let v = HeaderValue::from_str(value).map_err(|_| CompileError::Provider {
            provider: p.id.clone(),
            detail: format!("invalid value for header {name:?}"),
        })?;
        headers.push((n, v));
    }
    let direct_label: Arc<str> = format!("{id}/*").into();
    Ok(ProviderRt {
        key_weight: keys.iter().map(|k| k.weight).sum(),
        keys,
        uris,
        kind: p.kind,
        auth: p.auth.clone(),
        connect_timeout: Duration::from_millis(p.timeouts.connect_ms),
        first_byte_timeout: Duration::from_millis(p.timeouts.first_byte_ms),
        total_timeout: Duration::from_millis(p.timeouts.total_ms),
        headers,
        pool,
        mock: p.mock,
        health: health.get(&p.id),
        direct_metrics: Arc::new(RouteMetrics::new(Arc::clone(&direct_label), direct_label)),
        id,
    })
}

/// `base_url` + endpoint path, e.g. `http://h:8000/v1` + `/chat/completions`.
fn join_uri(base: &str, path: &str) -> Result<Uri, String> {
    let full = format!("{}{}", base.trim_end_matches('/'), path);
    let uri: Uri = full.parse().map_err(|e| format!("{e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.authority().is_some() => Ok(uri),
        _ => Err("must be an absolute http:// or https:// URL".into()),
    }
}

fn render_models(config: &Config) -> Bytes {
    let data: Vec<serde_json::Value> = config
        .models
        .iter()
        .map(|m| {
            serde_json::json!({"id": m.name, "object": "model", "created": 0, "owned_by": "ferrogate"})
        })
        .collect();
    Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KeyConfig, TargetConfig};

    fn provider(id: &str) -> ProviderConfig {
        ProviderConfig {
            id: id.into(),
            kind: ProviderKind::OpenAi,
            base_url: Some("http://127.0.0.1:9/v1/".into()),
            keys: vec![KeyConfig {
                value: "sk-test".into(),
                weight: 1,
            }],
            auth: AuthMode::Keys,
            timeouts: Timeouts::default(),
            headers: Default::default(),
            ca_file: None,
            mock: MockSettings::default(),
        }
    }

    fn model(name: &str, provider: &str, target: Option<&str>) -> ModelConfig {
        ModelConfig {
            name: name.into(),
            targets: vec![TargetConfig {
                provider: provider.into(),
                model: target.map(Into::into),
                weight: 1,
            }],
        }
    }

    fn snapshot() -> Snapshot {
        let config = Config {
            listen: None,
            server: ServerSettings::default(),
            providers: vec![provider("up")],
            models: vec![
                model("gpt-4o", "up", Some("exact")),
                model("gpt-4o*", "up", Some("short-glob")),
                model("gpt-4o-m*", "up", Some("long-glob")),
            ],
        };
        compile(&config, &PoolCache::default(), &HealthRegistry::default()).unwrap()
    }

    fn served(s: &Snapshot, model: &str) -> Option<String> {
        match s.resolve(model)? {
            Resolved::Route(r) => r.pick().and_then(|t| t.model.as_deref().map(String::from)),
            Resolved::Direct { provider, model } => Some(format!("{}:{model}", provider.id)),
        }
    }

    #[test]
    fn exact_then_longest_glob_then_provider_model() {
        let s = snapshot();
        assert_eq!(served(&s, "gpt-4o").as_deref(), Some("exact"));
        assert_eq!(served(&s, "gpt-4o-mini").as_deref(), Some("long-glob"));
        assert_eq!(served(&s, "gpt-4o-audio").as_deref(), Some("short-glob"));
        assert_eq!(served(&s, "up/llama-3").as_deref(), Some("up:llama-3"));
        assert_eq!(
            served(&s, "mock/anything").as_deref(),
            Some("mock:anything")
        );
        assert!(s.resolve("nope/x").is_none());
        assert!(s.resolve("up/").is_none());
        assert!(s.resolve("claude").is_none());
    }

    #[test]
    fn uris_join_base_url_and_path() {
        let s = snapshot();
        let up = &s.providers[0];
        assert_eq!(
            up.uri(Endpoint::ChatCompletions).unwrap().to_string(),
            "http://127.0.0.1:9/v1/chat/completions"
        );
        assert!(format!("{:?}", up.keys[0].header).contains("Sensitive"));
    }

    #[test]
    fn models_json_lists_configured_names() {
        let s = snapshot();
        let v: serde_json::Value = serde_json::from_slice(&s.models_json).unwrap();
        assert_eq!(v["data"][0]["id"], "gpt-4o");
        assert_eq!(v["data"].as_array().unwrap().len(), 3);
    }
}
