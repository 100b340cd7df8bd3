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
    AuthMode, Balance, BreakerConfig, Config, HedgeConfig, MockDialect, MockSettings, ModelConfig,
    ProviderConfig, ProviderKind, RetryConfig, ServerSettings, TimeoutOverrides, Timeouts,
};
use crate::glob;
use crate::pricing::{Price, PriceTable, ProviderPrices};
use crate::providers::bedrock_sign::AwsCredentials;
pub use crate::providers::Endpoint;
use crate::resilience::limits::ConcurrencyLimit;
use crate::routing::health::{HealthRegistry, ProviderHealth};
use crate::routing::pick;
use crate::routing::target_state::{key_fingerprint, KeyState, TargetState};
use crate::telemetry::metrics::RouteMetrics;
use crate::translate::ir::Dialect;
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
    #[error("pricing.{key}: {detail}")]
    Pricing { key: String, detail: String },
    #[error("{what} needs a restart; the running configuration is kept")]
    Restart { what: &'static str },
}

const OPENAI_ENDPOINTS: [Endpoint; 4] = [
    Endpoint::ChatCompletions,
    Endpoint::Completions,
    Endpoint::Embeddings,
    Endpoint::Responses,
];

pub struct ApiKey {
    /// The credential header's value (`Bearer <key>` or the bare key, by provider kind),
    /// marked sensitive so it is never printed.
    pub header: HeaderValue,
    pub weight: u32,
    /// Disabled for a while after the provider rejected it (401/403); survives reloads.
    pub state: Arc<KeyState>,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
}

/// Default `anthropic-version` sent to Anthropic when the client did not send one.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A provider, ready for the request path.
pub struct ProviderRt {
    pub id: Arc<str>,
    /// What this provider charges per model (its own `pricing:` entries, then its vendor's).
    pub prices: ProviderPrices,
    pub kind: ProviderKind,
    /// The wire protocol the provider speaks (a mock's configured dialect).
    pub dialect: Dialect,
    /// OpenAI kind: upstream URIs per OpenAI endpoint (`None` otherwise).
    uris: Option<[Uri; 4]>,
    /// Base URL without a trailing slash, for URIs that depend on the request (`None` for
    /// the mock).
    base: Option<Box<str>>,
    /// Header that carries a key (`authorization`, `x-api-key`, `x-goog-api-key`, `api-key`).
    pub auth_header: HeaderName,
    pub keys: Vec<ApiKey>,
    /// Bedrock without keys: SigV4 credentials and region.
    pub aws: Option<(AwsCredentials, Box<str>)>,
    /// Azure: `api-version` of the deployments form; `None` uses `/openai/v1`.
    pub api_version: Option<Box<str>>,
    /// Anthropic: `anthropic-version` sent when the client sent none.
    pub anthropic_version: HeaderValue,
    key_weight: u32,
    pub auth: AuthMode,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub first_token_timeout: Option<Duration>,
    pub stall_timeout: Option<Duration>,
    pub total_timeout: Duration,
    pub breaker: BreakerConfig,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub pool: Option<Arc<Pool>>,
    pub mock: MockSettings,
    pub health: Arc<ProviderHealth>,
    /// Metrics for `provider/model` requests, labelled by provider only (bounded series).
    pub direct_metrics: Arc<RouteMetrics>,
}

impl ProviderRt {
    /// The pre-built URI of an OpenAI-kind provider's endpoint.
    pub fn uri(&self, endpoint: Endpoint) -> Option<&Uri> {
        let uris = self.uris.as_ref()?;
        OPENAI_ENDPOINTS
            .iter()
            .position(|e| *e == endpoint)
            .map(|i| &uris[i])
    }

    /// The upstream URI for one request: `model` is the upstream model name (in the path for
    /// Gemini and Bedrock; Azure's deployment when the target names none).
    pub fn upstream_uri(
        &self,
        endpoint: Endpoint,
        model: &str,
        deployment: Option<&str>,
        stream: bool,
    ) -> Result<Uri, String> {
        if let Some(uri) = self.uri(endpoint) {
            return Ok(uri.clone());
        }
        let base = self.base.as_deref().ok_or("provider has no base URL")?;
        crate::providers::urls::upstream_uri(
            self.kind,
            base,
            self.api_version.as_deref(),
            endpoint,
            model,
            deployment,
            stream,
        )
    }

    /// A key by weighted choice, or `None` when the provider has none. A key the resilience
    /// loop disabled (401/403) is passed over while another is enabled; checking costs one
    /// atomic load, and the clock is read only when the picked key was ever disabled.
    pub fn pick_key(&self) -> Option<&ApiKey> {
        let key =
            pick::weighted(&self.keys, self.key_weight, |k| k.weight).map(|i| &self.keys[i])?;
        if !key.state.ever_disabled() {
            return Some(key);
        }
        let now = tokio::time::Instant::now().into_std();
        if key.state.is_enabled(now) {
            return Some(key);
        }
        Some(self.pick_enabled_key(now).map_or(key, |i| &self.keys[i]))
    }

    /// A key by weighted choice among the enabled ones, as an index; `None` when the provider
    /// has no keys or every key is disabled.
    fn pick_enabled_key(&self, now: std::time::Instant) -> Option<usize> {
        let total: u32 = self
            .keys
            .iter()
            .filter(|k| k.state.is_enabled(now))
            .map(|k| k.weight)
            .sum();
        if total == 0 {
            return None;
        }
        let mut r = fastrand::u32(..total);
        for (i, k) in self.keys.iter().enumerate() {
            if !k.state.is_enabled(now) {
                continue;
            }
            if r < k.weight {
                return Some(i);
            }
            r -= k.weight;
        }
        None
    }

    /// A key for one attempt on the resilience path: by the model's balancing strategy over
    /// the enabled keys (weighted random when the strategy is the default and no key has
    /// limits). `None` when the provider has no keys or every key is disabled.
    pub fn choose_key(&self, balance: Balance, now: std::time::Instant) -> Option<usize> {
        if self.keys.len() <= 1
            || balance == Balance::Weighted
                && self.keys.iter().all(|k| k.rpm.is_none() && k.tpm.is_none())
        {
            return self.pick_enabled_key(now);
        }
        let cands: Vec<crate::resilience::balance::Candidate<'_>> = self
            .keys
            .iter()
            .map(|k| crate::resilience::balance::Candidate {
                weight: k.weight,
                stats: &k.state.stats,
                rpm_limit: k.rpm,
                tpm_limit: k.tpm,
                available: k.state.is_enabled(now),
            })
            .collect();
        // Keys with limits but a non-usage strategy: still spread by headroom.
        let strategy = if balance == Balance::Weighted {
            Balance::UsageAware
        } else {
            balance
        };
        crate::resilience::balance::choose(strategy, &cands, now)
    }

    /// Whether requests can be authenticated now (no keys needed, or one is enabled).
    pub fn has_usable_key(&self, now: std::time::Instant) -> bool {
        self.keys.is_empty() || self.keys.iter().any(|k| k.state.is_enabled(now))
    }
}

pub struct TargetRt {
    pub provider: Arc<ProviderRt>,
    /// Azure: the deployment that selects the model.
    pub deployment: Option<Arc<str>>,
    /// Upstream model name; `None` forwards the client's.
    pub model: Option<Arc<str>>,
    pub weight: u32,
    pub metrics: Arc<RouteMetrics>,
    /// Pre-built `x-ferrogate-target` value when the upstream model is fixed.
    pub served_header: Option<HeaderValue>,
    /// Breaker and live statistics, kept across reloads by target id.
    pub state: Arc<TargetState>,
    /// Concurrency limit with its bounded queue; `None`: unlimited.
    pub limit: Option<Arc<ConcurrencyLimit>>,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    /// `Some`: the model this target serves is known when the config is compiled (the target
    /// names it, or the route's name is not a glob) and this is its price (`Some(None)`:
    /// unpriced); `None`: looked up per request.
    pub served_price: Option<Option<Price>>,
}

impl TargetRt {
    /// The price of `served`, the model this target is asked for.
    pub fn price(&self, served: &str) -> Option<Price> {
        self.served_price
            .unwrap_or_else(|| self.provider.prices.lookup(served))
    }
}

pub struct Route {
    pub name: Arc<str>,
    pub targets: Vec<TargetRt>,
    total_weight: u32,
    pub balance: Balance,
    pub retry: RetryConfig,
    /// Overall time for a request, attempts and fallbacks included.
    pub deadline: Option<Duration>,
    pub fallbacks: Vec<Arc<str>>,
    pub context_window_fallbacks: Vec<Arc<str>>,
    pub content_policy_fallbacks: Vec<Arc<str>>,
    pub timeouts: TimeoutOverrides,
    pub hedge: Option<HedgeConfig>,
    /// Anything above configured: requests go through the resilience loop. Otherwise the
    /// single-attempt path, exactly as without the feature.
    pub resilient: bool,
}

impl Route {
    /// A one-target route to `provider/model` (a `provider/model` fallback), with default
    /// resilience settings and a breaker of its own for the request.
    pub fn direct(provider: &Arc<ProviderRt>, model: &str) -> Route {
        // Labels use `provider/*` (like direct requests' metrics): the model name may come
        // from a request header, and metric series must stay bounded.
        let label = Arc::clone(&provider.direct_metrics.target);
        let served = format!("{}/{}", provider.id, model);
        Route {
            name: Arc::clone(&label),
            targets: vec![TargetRt {
                provider: Arc::clone(provider),
                deployment: None,
                model: Some(Arc::from(model)),
                weight: 1,
                metrics: Arc::clone(&provider.direct_metrics),
                served_header: HeaderValue::from_str(&served).ok(),
                state: Arc::new(TargetState::new(label, provider.breaker)),
                limit: None,
                rpm: None,
                tpm: None,
                served_price: Some(provider.prices.lookup(model)),
            }],
            total_weight: 1,
            balance: Balance::Weighted,
            retry: RetryConfig::default(),
            deadline: None,
            fallbacks: Vec::new(),
            context_window_fallbacks: Vec::new(),
            content_policy_fallbacks: Vec::new(),
            timeouts: TimeoutOverrides::default(),
            hedge: None,
            resilient: true,
        }
    }

    pub fn pick(&self) -> Option<&TargetRt> {
        pick::weighted(&self.targets, self.total_weight, |t| t.weight).map(|i| &self.targets[i])
    }

    /// A weighted pick among the targets `admit` accepts (a governed key's allowlists).
    #[inline(never)]
    pub fn pick_where(&self, admit: impl Fn(&TargetRt) -> bool) -> Option<&TargetRt> {
        let total: u32 = self
            .targets
            .iter()
            .filter(|t| admit(t))
            .map(|t| t.weight)
            .sum();
        if total == 0 {
            return None;
        }
        let mut r = fastrand::u32(..total);
        for t in self.targets.iter().filter(|t| admit(t)) {
            if r < t.weight {
                return Some(t);
            }
            r -= t.weight;
        }
        None
    }
}

/// What a request's model resolved to.
pub enum Resolved<'s> {
    Route(&'s Arc<Route>),
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
    /// The same list in Anthropic's shape (for clients that send `anthropic-version`).
    pub models_json_anthropic: Bytes,
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
    let prices =
        PriceTable::with_overrides(config.pricing.iter().map(|o| (o.key.as_str(), o.price)))
            .map_err(|(key, e)| CompileError::Pricing {
                key,
                detail: e.to_string(),
            })?;
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
        breaker: Default::default(),
    };
    let needs_builtin = !config.providers.iter().any(|p| p.id == BUILTIN_MOCK);
    let all = config
        .providers
        .iter()
        .chain(needs_builtin.then_some(&builtin_mock));
    for p in all {
        let rt = compile_provider(p, pools, health, &prices)?;
        provider_index.insert(Arc::clone(&rt.id), providers.len());
        providers.push(Arc::new(rt));
    }

    let mut exact = HashMap::new();
    let mut globs = Vec::new();
    for (index, m) in config.models.iter().enumerate() {
        let route = Arc::new(compile_route(
            index,
            m,
            &providers,
            &provider_index,
            health,
        )?);
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
    let models_json_anthropic = render_models_anthropic(config);
    Ok(Snapshot {
        settings: config.server.clone(),
        providers,
        provider_index,
        exact,
        globs,
        models_json,
        models_json_anthropic,
        routed_health,
    })
}

fn compile_route(
    index: usize,
    m: &ModelConfig,
    providers: &[Arc<ProviderRt>],
    provider_index: &HashMap<Arc<str>, usize>,
    health: &HealthRegistry,
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
        let state_id = match &t.deployment {
            Some(d) => format!("{target_label}@{d}"),
            None => target_label.to_string(),
        };
        let state = health.target(&state_id, provider.breaker);
        let limit = health.limit(&state_id, t.max_concurrency, t.queue);
        let served = match &t.model {
            Some(model) => Some(model.as_str()),
            None => (!glob::is_glob(&m.name)).then_some(m.name.as_str()),
        };
        targets.push(TargetRt {
            served_price: served.map(|model| provider.prices.lookup(model)),
            served_header,
            state,
            limit,
            rpm: t.rpm,
            tpm: t.tpm,
            metrics: Arc::new(RouteMetrics::new(Arc::clone(&name), target_label)),
            model: t.model.as_deref().map(Arc::from),
            deployment: t.deployment.as_deref().map(Arc::from),
            weight: t.weight.max(1),
            provider,
        });
    }
    let total_weight = targets.iter().map(|t| t.weight).sum();
    let names = |v: &[String]| v.iter().map(|n| Arc::from(n.as_str())).collect::<Vec<_>>();
    let resilient = m.retry.attempts > 1
        || !m.fallbacks.is_empty()
        || !m.context_window_fallbacks.is_empty()
        || !m.content_policy_fallbacks.is_empty()
        || m.deadline_ms.is_some()
        || m.hedge.is_some()
        || m.balance != Balance::Weighted
        || m.timeouts != TimeoutOverrides::default()
        || targets.iter().any(|t| {
            t.limit.is_some()
                || t.provider.first_token_timeout.is_some()
                || t.provider.stall_timeout.is_some()
                || t.provider.breaker != BreakerConfig::default()
        });
    Ok(Route {
        name,
        targets,
        total_weight,
        balance: m.balance,
        retry: m.retry,
        deadline: m.deadline_ms.map(Duration::from_millis),
        fallbacks: names(&m.fallbacks),
        context_window_fallbacks: names(&m.context_window_fallbacks),
        content_policy_fallbacks: names(&m.content_policy_fallbacks),
        timeouts: m.timeouts,
        hedge: m.hedge,
        resilient,
    })
}

/// The vendor whose list prices a provider charges: its kind, or for an OpenAI-compatible
/// provider the preset its base URL belongs to. `None` for a server of no known vendor (a
/// self-hosted or custom endpoint) and for Azure (deployment names are the user's own): such a
/// provider is priced only by `pricing:` entries for its id.
fn vendor_of(p: &ProviderConfig) -> Option<&'static str> {
    match p.kind {
        ProviderKind::Anthropic => Some("anthropic"),
        ProviderKind::Gemini => Some("gemini"),
        ProviderKind::Bedrock => Some("bedrock"),
        // Answered by the gateway itself: the built-in table prices it at 0.
        ProviderKind::Mock => Some("mock"),
        ProviderKind::Azure => None,
        ProviderKind::OpenAi => {
            let base = p.base_url.as_deref()?.trim_end_matches('/');
            crate::config::presets::PRESETS
                .iter()
                .find(|preset| preset.base_url == base)
                .map(|preset| preset.id)
        }
    }
}

fn compile_provider(
    p: &ProviderConfig,
    pools: &PoolCache,
    health: &HealthRegistry,
    prices: &PriceTable,
) -> Result<ProviderRt, CompileError> {
    let id: Arc<str> = Arc::from(p.id.as_str());
    let err = |detail: String| CompileError::BaseUrl {
        provider: p.id.clone(),
        detail,
    };
    let (uris, base, pool) = match p.kind {
        ProviderKind::Mock => (None, None, None),
        kind => {
            let base = p
                .base_url
                .as_deref()
                .ok_or_else(|| err(format!("required for kind {}", kind.as_str())))?
                .trim_end_matches('/');
            let uris = if kind == ProviderKind::OpenAi {
                let mut built = Vec::with_capacity(OPENAI_ENDPOINTS.len());
                for e in OPENAI_ENDPOINTS {
                    built.push(join_uri(base, e.path()).map_err(err)?);
                }
                built.try_into().ok()
            } else {
                None
            };
            let probe = join_uri(base, "/").map_err(err)?;
            let origin = match (probe.scheme_str(), probe.authority()) {
                (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
                _ => return Err(err("must be an absolute http:// or https:// URL".into())),
            };
            let pool = PoolKey::new(
                origin,
                p.ca_file.clone(),
                Duration::from_millis(p.timeouts.connect_ms),
                Duration::from_millis(p.timeouts.idle_ms),
            )
            .and_then(|key| pools.get(&key))
            .map_err(|e| CompileError::Provider {
                provider: p.id.clone(),
                detail: e.to_string(),
            })?;
            (uris, Some(Box::from(base)), Some(pool))
        }
    };
    let (auth_header, bearer) = match p.kind {
        ProviderKind::Anthropic => (HeaderName::from_static("x-api-key"), false),
        ProviderKind::Gemini => (HeaderName::from_static("x-goog-api-key"), false),
        ProviderKind::Azure => (HeaderName::from_static("api-key"), false),
        _ => (http::header::AUTHORIZATION, true),
    };
    let mut keys = Vec::with_capacity(p.keys.len());
    for k in &p.keys {
        let value = if bearer {
            format!("Bearer {}", k.value)
        } else {
            k.value.clone()
        };
        let mut header = HeaderValue::from_str(&value).map_err(|_| CompileError::Provider {
            provider: p.id.clone(),
            detail: "an API key contains characters not allowed in a header".into(),
        })?;
        header.set_sensitive(true);
        keys.push(ApiKey {
            header,
            weight: k.weight.max(1),
            state: health.key(key_fingerprint(&p.id, &k.value)),
            rpm: k.rpm,
            tpm: k.tpm,
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
    let aws = match (p.kind, &p.aws_credentials) {
        (ProviderKind::Bedrock, Some(creds)) if p.keys.is_empty() => {
            let region = p.region.as_deref().ok_or_else(|| CompileError::Provider {
                provider: p.id.clone(),
                detail: "region is required to sign requests".into(),
            })?;
            let creds = AwsCredentials {
                access_key_id: creds.access_key_id.clone(),
                secret_access_key: creds.secret_access_key.clone(),
                session_token: creds.session_token.clone(),
            };
            Some((creds, Box::from(region)))
        }
        _ => None,
    };
    let anthropic_version =
        HeaderValue::from_str(p.anthropic_version.as_deref().unwrap_or(ANTHROPIC_VERSION))
            .map_err(|_| CompileError::Provider {
                provider: p.id.clone(),
                detail: "anthropic_version is not a valid header value".into(),
            })?;
    let dialect = match p.kind {
        ProviderKind::OpenAi | ProviderKind::Azure => Dialect::OpenAi,
        ProviderKind::Anthropic => Dialect::Anthropic,
        ProviderKind::Gemini => Dialect::Gemini,
        ProviderKind::Bedrock => Dialect::Bedrock,
        ProviderKind::Mock => match p.mock.dialect {
            MockDialect::OpenAi => Dialect::OpenAi,
            MockDialect::Anthropic => Dialect::Anthropic,
            MockDialect::Gemini => Dialect::Gemini,
        },
    };
    let direct_label: Arc<str> = format!("{id}/*").into();
    Ok(ProviderRt {
        key_weight: keys.iter().map(|k| k.weight).sum(),
        keys,
        uris,
        base,
        auth_header,
        aws,
        api_version: p.api_version.as_deref().map(Box::from),
        anthropic_version,
        dialect,
        kind: p.kind,
        auth: p.auth.clone(),
        connect_timeout: Duration::from_millis(p.timeouts.connect_ms),
        first_byte_timeout: Duration::from_millis(p.timeouts.first_byte_ms),
        first_token_timeout: p.timeouts.first_token_ms.map(Duration::from_millis),
        stall_timeout: p.timeouts.stall_ms.map(Duration::from_millis),
        breaker: p.breaker,
        total_timeout: Duration::from_millis(p.timeouts.total_ms),
        headers,
        pool,
        mock: p.mock,
        health: health.get(&p.id),
        direct_metrics: Arc::new(RouteMetrics::new(Arc::clone(&direct_label), direct_label)),
        prices: prices.for_provider(&p.id, vendor_of(p)),
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

fn render_models_anthropic(config: &Config) -> Bytes {
    let data: Vec<serde_json::Value> = config
        .models
        .iter()
        .map(|m| {
            serde_json::json!({"type": "model", "id": m.name, "display_name": m.name,
                "created_at": "1970-01-01T00:00:00Z"})
        })
        .collect();
    let first = config.models.first().map(|m| m.name.as_str());
    let last = config.models.last().map(|m| m.name.as_str());
    Bytes::from(
        serde_json::json!({"data": data, "has_more": false, "first_id": first, "last_id": last})
            .to_string(),
    )
}

#[cfg(test)]
// Tests hand their own instants to the code under test; no deadline is decided by the clock.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::config::{KeyConfig, TargetConfig};

    /// An OpenAI-kind provider with one key, as the config file would give it.
    fn provider(id: &str) -> ProviderConfig {
        let yaml = format!(
            "providers:\n  {id}: {{ kind: openai, base_url: \"http://127.0.0.1:9/v1/\", keys: [sk-test] }}\n"
        );
        let mut config = crate::config::parse_str(&yaml, &|_| None).unwrap();
        let at = config.providers.iter().position(|p| p.id == id).unwrap();
        config.providers.swap_remove(at)
    }

    #[test]
    fn keys_are_balanced_by_the_models_strategy() {
        let pools = PoolCache::default();
        let health = HealthRegistry::default();
        let mut p = provider("k");
        p.keys = vec![
            KeyConfig {
                value: "key-a".into(),
                weight: 1,
                rpm: Some(10),
                tpm: None,
            },
            KeyConfig {
                value: "key-b".into(),
                weight: 1,
                rpm: Some(10),
                tpm: None,
            },
        ];
        let rt = compile_provider(&p, &pools, &health, PriceTable::builtin()).unwrap();
        let now = std::time::Instant::now();
        // Key a used up its rpm: usage-aware balancing (also the default when keys have
        // limits) picks b every time.
        for _ in 0..10 {
            rt.keys[0].state.stats.record_request(now);
        }
        for balance in [Balance::UsageAware, Balance::Weighted] {
            for _ in 0..20 {
                assert_eq!(rt.choose_key(balance, now), Some(1));
            }
        }
        // Least in flight: a key with a request in flight is avoided.
        let _busy = rt.keys[1].state.stats.enter();
        assert_eq!(rt.choose_key(Balance::LeastInFlight, now), Some(0));
        // A disabled key is never chosen.
        rt.keys[0].state.disable(now, Duration::from_secs(60));
        assert_eq!(rt.choose_key(Balance::LeastInFlight, now), Some(1));
        rt.keys[1].state.disable(now, Duration::from_secs(60));
        assert_eq!(rt.choose_key(Balance::Weighted, now), None);
        assert!(!rt.has_usable_key(now));
    }

    #[test]
    fn upstream_uris_follow_each_vendors_base_url_convention() {
        let pools = PoolCache::default();
        let health = HealthRegistry::default();
        let mk = |kind, base: &str| {
            let mut p = provider("p");
            p.kind = kind;
            p.base_url = Some(base.into());
            compile_provider(&p, &pools, &health, PriceTable::builtin()).unwrap()
        };
        let ch = Endpoint::ChatCompletions;
        let a = mk(ProviderKind::Anthropic, "https://api.anthropic.com");
        assert_eq!(
            a.upstream_uri(ch, "claude-x", None, true).unwrap(),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(
            a.upstream_uri(Endpoint::CountTokens, "claude-x", None, false)
                .unwrap(),
            "https://api.anthropic.com/v1/messages/count_tokens"
        );
        assert_eq!(a.auth_header, "x-api-key");
        assert_eq!(a.keys[0].header, "sk-test");
        let g = mk(
            ProviderKind::Gemini,
            "https://generativelanguage.googleapis.com/",
        );
        assert_eq!(
            g.upstream_uri(ch, "gemini-2.5-flash", None, true).unwrap(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            g.upstream_uri(ch, "gemini-2.5-flash", None, false).unwrap(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        let b = mk(
            ProviderKind::Bedrock,
            "https://bedrock-runtime.us-east-1.amazonaws.com",
        );
        assert_eq!(
            b.upstream_uri(ch, "us.amazon.nova-micro-v1:0", None, true).unwrap(),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.amazon.nova-micro-v1%3A0/converse-stream"
        );
        assert_eq!(b.keys[0].header, "Bearer sk-test");
        let mut az = provider("az");
        az.kind = ProviderKind::Azure;
        az.base_url = Some("https://r.openai.azure.com".into());
        az.api_version = Some("2024-10-21".into());
        let az = compile_provider(&az, &pools, &health, PriceTable::builtin()).unwrap();
        assert_eq!(
            az.upstream_uri(ch, "gpt-4o", Some("prod-4o"), false).unwrap(),
            "https://r.openai.azure.com/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(az.auth_header, "api-key");
        let v1 = mk(ProviderKind::Azure, "https://r.openai.azure.com");
        assert_eq!(
            v1.upstream_uri(ch, "gpt-4o", None, false).unwrap(),
            "https://r.openai.azure.com/openai/v1/chat/completions"
        );
        assert!(g
            .upstream_uri(Endpoint::Embeddings, "m", None, false)
            .is_err());
    }

    fn model(name: &str, provider: &str, target: Option<&str>) -> ModelConfig {
        ModelConfig {
            name: name.into(),
            targets: vec![TargetConfig {
                provider: provider.into(),
                model: target.map(Into::into),
                weight: 1,
                deployment: None,
                ..Default::default()
            }],
            ..Default::default()
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
            pricing: Vec::new(),
            governance: None,
            logs: Default::default(),
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
