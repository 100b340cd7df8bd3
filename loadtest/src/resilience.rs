//! The resilience scenario: one model with retries over two targets, where target A (a mock
//! with `--fail-ratio`) answers a share of requests with 503 and target B (a mock with
//! `--latency-us`) is slow; and the same route settings over two healthy targets as the
//! reference, measured interleaved with it. Also the `/metrics` scrape that counts the
//! gateway's upstream attempts per request (`ferrogate_upstream_attempts_total`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::client::Conn;
use crate::procs::{named_mock_spec, spawn, Spawned};
use crate::workload::{Scenario, RESILIENT_HEALTHY_MODEL, RESILIENT_MODEL};

/// How the resilience scenario's targets misbehave.
#[derive(clap::Args, Clone, Debug)]
pub struct FaultArgs {
    /// Resilience scenario: share of requests target A answers with 503 (every 5th at 0.2).
    #[arg(long, default_value_t = 0.2)]
    pub fail_ratio: f64,
    /// Resilience scenario: target B holds every response head this long (ms).
    #[arg(long, default_value_t = 20)]
    pub slow_ms: u64,
}

impl Default for FaultArgs {
    fn default() -> Self {
        Self {
            fail_ratio: 0.2,
            slow_ms: 20,
        }
    }
}

/// Providers of the resilient models: A fails some requests, B is slow; H1 and H2 are both
/// the healthy mock (two providers, so each target has a breaker of its own).
pub const FAILING: &str = "res-a";
pub const SLOW: &str = "res-b";
pub const HEALTHY_1: &str = "res-h1";
pub const HEALTHY_2: &str = "res-h2";

/// A breaker that a 20% failure rate does not trip (error_rate 0.5) and that the evenly
/// spread failures never trip by consecutive count either (one in a row at most).
const BREAKER: &str = "{ consecutive_failures: 5, error_rate: 0.5, min_requests: 20, window_ms: 10000, cooldown_ms: 5000 }";
/// The model's retry budget: the first attempt and up to two more.
const RETRY: &str = "{ attempts: 3 }";

/// The providers a scenario's model is served by (the `target` labels of its attempts).
pub fn providers_of(sc: Scenario) -> &'static [&'static str] {
    match sc {
        Scenario::ResilienceNonStream | Scenario::ResilienceStream => &[FAILING, SLOW],
        Scenario::ResilienceHealthyNonStream | Scenario::ResilienceHealthyStream => {
            &[HEALTHY_1, HEALTHY_2]
        }
        _ => &[],
    }
}

/// The two misbehaving mocks.
pub struct FaultyMocks {
    pub failing: Spawned,
    pub slow: Spawned,
}

impl FaultyMocks {
    pub fn spawn(
        exe: &Path,
        chunks: usize,
        cpu: Option<usize>,
        logdir: &Path,
        faults: &FaultArgs,
    ) -> anyhow::Result<Self> {
        if !(0.0..=1.0).contains(&faults.fail_ratio) {
            anyhow::bail!(
                "--fail-ratio must be from 0 to 1, got {}",
                faults.fail_ratio
            );
        }
        let spec = |name: &str, extra: Vec<String>| {
            named_mock_spec(PathBuf::from(exe), name, chunks, cpu, &extra)
        };
        let failing = spawn(
            &spec(
                "mock-fail",
                vec!["--fail-ratio".into(), faults.fail_ratio.to_string()],
            ),
            logdir,
        )?;
        let slow = spawn(
            &spec(
                "mock-slow",
                vec![
                    "--latency-us".into(),
                    (faults.slow_ms.saturating_mul(1000)).to_string(),
                ],
            ),
            logdir,
        )?;
        Ok(Self { failing, slow })
    }

    pub fn addrs(&self) -> (SocketAddr, SocketAddr) {
        (self.failing.addr, self.slow.addr)
    }
}

/// Config lines (providers, models) for the resilient models: the healthy one always, the
/// misbehaving one when its mocks (`faulty` = failing, slow) are running.
pub fn config_lines(
    healthy: SocketAddr,
    faulty: Option<(SocketAddr, SocketAddr)>,
) -> (String, String) {
    let provider = |id: &str, addr: SocketAddr| {
        format!("  {id}: {{ kind: openai, base_url: \"http://{addr}/v1\", breaker: {BREAKER} }}\n")
    };
    let model = |name: &str, a: &str, b: &str| {
        format!(
            "  - name: {name}\n    targets: [{{ provider: {a} }}, {{ provider: {b} }}]\n    retry: {RETRY}\n"
        )
    };
    let mut providers = provider(HEALTHY_1, healthy) + &provider(HEALTHY_2, healthy);
    let mut models = model(RESILIENT_HEALTHY_MODEL, HEALTHY_1, HEALTHY_2);
    if let Some((failing, slow)) = faulty {
        providers += &provider(FAILING, failing);
        providers += &provider(SLOW, slow);
        models += &model(RESILIENT_MODEL, FAILING, SLOW);
    }
    (providers, models)
}

/// Upstream attempts the gateway made for one model, and the requests it settled, from
/// its Prometheus counters (or the difference of two scrapes).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attempts {
    /// `ferrogate_upstream_attempts_total` over the model's targets, all outcomes.
    pub attempts: f64,
    /// `ferrogate_requests_total{model=…}`, all targets and statuses.
    pub requests: f64,
    /// Attempts by outcome (`success`, `retry`, …).
    pub by_outcome: BTreeMap<String, f64>,
}

impl Attempts {
    /// Counts for `sc`'s model in a `/metrics` text.
    pub fn from_metrics(text: &str, sc: Scenario) -> Self {
        let providers = providers_of(sc);
        let mut out = Attempts::default();
        if providers.is_empty() {
            // A plain route makes no counted attempts: no figure rather than 0 per request.
            return out;
        }
        for s in parse_prometheus(text) {
            match s.name.as_str() {
                "ferrogate_upstream_attempts_total" => {
                    // Target label: `provider/model` (`provider/*` without a fixed model).
                    let provider = s.label("target").and_then(|t| t.split('/').next());
                    if provider.is_some_and(|p| providers.contains(&p)) {
                        out.attempts += s.value;
                        let outcome = s.label("outcome").unwrap_or("-").to_string();
                        *out.by_outcome.entry(outcome).or_default() += s.value;
                    }
                }
                "ferrogate_requests_total" if s.label("model") == Some(sc.model()) => {
                    out.requests += s.value;
                }
                _ => {}
            }
        }
        out
    }

    /// What happened between two scrapes (`self` after, `before` before).
    pub fn since(&self, before: &Attempts) -> Attempts {
        let mut by_outcome = self.by_outcome.clone();
        for (k, v) in &before.by_outcome {
            *by_outcome.entry(k.clone()).or_default() -= v;
        }
        by_outcome.retain(|_, v| *v != 0.0);
        Attempts {
            attempts: self.attempts - before.attempts,
            requests: self.requests - before.requests,
            by_outcome,
        }
    }

    pub fn add(&mut self, other: &Attempts) {
        self.attempts += other.attempts;
        self.requests += other.requests;
        for (k, v) in &other.by_outcome {
            *self.by_outcome.entry(k.clone()).or_default() += v;
        }
    }

    pub fn per_request(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| self.attempts / self.requests)
    }
}

/// One sample of the Prometheus text format.
#[derive(Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Series {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the samples of a Prometheus text exposition (comments and lines that don't parse
/// are skipped: a scrape is a measurement aid, never a reason to fail a run).
pub fn parse_prometheus(text: &str) -> Vec<Series> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Series> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let (labels, rest) = parse_labels(&line[open + 1..])?;
            (&line[..open], labels, rest)
        }
        None => {
            let sp = line.find(char::is_whitespace)?;
            (&line[..sp], Vec::new(), &line[sp..])
        }
    };
    // Value, then an optional timestamp.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Series {
        name: name.trim().to_string(),
        labels,
        value,
    })
}

/// `k="v",k2="v2"}` → the pairs and what follows the `}`.
fn parse_labels(s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_string();
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut escaped = false;
        let mut end = None;
        for (i, c) in chars {
            match (escaped, c) {
                (true, 'n') => {
                    value.push('\n');
                    escaped = false;
                }
                (true, c) => {
                    value.push(c);
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        rest = &rest[end?..];
        labels.push((key, value));
    }
}

/// `GET /metrics` from the gateway at `addr`.
pub fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let rt = crate::util::current_thread_runtime()?;
    rt.block_on(async {
        let mut conn = Conn::connect(addr).await?;
        let (status, body) = tokio::time::timeout(
            Duration::from_secs(5),
            crate::client::get(&mut conn, addr, "/metrics"),
        )
        .await
        .context("GET /metrics timed out")??;
        if status != 200 {
            anyhow::bail!("GET /metrics: status {status}");
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# TYPE ferrogate_upstream_attempts_total counter
ferrogate_upstream_attempts_total{target="res-a/*",outcome="success"} 80
ferrogate_upstream_attempts_total{target="res-a/*",outcome="retry"} 20
ferrogate_upstream_attempts_total{target="res-b/*",outcome="success"} 120
ferrogate_upstream_attempts_total{target="res-h1/*",outcome="success"} 7
# TYPE ferrogate_requests_total counter
ferrogate_requests_total{model="mock-resilient",target="res-a/*",status="200"} 80
ferrogate_requests_total{model="mock-resilient",target="res-b/*",status="200"} 120
ferrogate_requests_total{model="mock-resilient-healthy",target="res-h1/*",status="200"} 7
ferrogate_requests_total{model="mock-gpt",target="up/*",status="200"} 1000
ferrogate_requests_in_flight 0
"#;

    #[test]
    fn counts_attempts_per_model() {
        let a = Attempts::from_metrics(METRICS, Scenario::ResilienceNonStream);
        assert_eq!(a.attempts, 220.0);
        assert_eq!(a.requests, 200.0);
        assert!((a.per_request().unwrap() - 1.1).abs() < 1e-12);
        assert_eq!(a.by_outcome.get("retry"), Some(&20.0));
        assert_eq!(a.by_outcome.get("success"), Some(&200.0));
        let h = Attempts::from_metrics(METRICS, Scenario::ResilienceHealthyStream);
        assert_eq!((h.attempts, h.requests), (7.0, 7.0));
        // A scenario without a resilient model counts nothing.
        let n = Attempts::from_metrics(METRICS, Scenario::NonStream);
        assert_eq!(n.attempts, 0.0);
        assert_eq!(n.per_request(), None);
    }

    #[test]
    fn differences_and_sums() {
        let before = Attempts::from_metrics(METRICS, Scenario::ResilienceNonStream);
        let after_text = METRICS
            .replace("outcome=\"retry\"} 20", "outcome=\"retry\"} 30")
            .replace("outcome=\"success\"} 120", "outcome=\"success\"} 170")
            .replace("status=\"200\"} 120", "status=\"200\"} 170");
        let after = Attempts::from_metrics(&after_text, Scenario::ResilienceNonStream);
        let d = after.since(&before);
        assert_eq!((d.attempts, d.requests), (60.0, 50.0));
        assert!((d.per_request().unwrap() - 1.2).abs() < 1e-12);
        assert_eq!(d.by_outcome.get("retry"), Some(&10.0));
        assert_eq!(d.by_outcome.get("success"), Some(&50.0));
        let mut total = d.clone();
        total.add(&d);
        assert_eq!((total.attempts, total.requests), (120.0, 100.0));
        assert_eq!(total.by_outcome.get("retry"), Some(&20.0));
    }

    #[test]
    fn parses_the_text_format() {
        let s = parse_prometheus(METRICS);
        assert_eq!(s.len(), 9, "comments skipped");
        assert_eq!(s[0].name, "ferrogate_upstream_attempts_total");
        assert_eq!(s[0].label("target"), Some("res-a/*"));
        assert_eq!(s[0].label("outcome"), Some("success"));
        assert_eq!(s[8].name, "ferrogate_requests_in_flight");
        assert!(s[8].labels.is_empty());
        // Escapes in label values, a timestamp, and junk.
        let s = parse_prometheus(
            "m{a=\"x\\\"y\",b=\"p\\\\q\"} 2.5 1700000000\nbroken{a=\"x\" 1\nm2 NaN\nm3\n",
        );
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].label("a"), Some("x\"y"));
        assert_eq!(s[0].label("b"), Some("p\\q"));
        assert_eq!(s[0].value, 2.5);
        assert!(s[1].value.is_nan());
    }

    #[test]
    fn config_routes_each_model_to_its_targets() {
        let healthy = SocketAddr::from(([127, 0, 0, 1], 9000));
        let (p, m) = config_lines(healthy, None);
        assert!(p.contains("res-h1: { kind: openai, base_url: \"http://127.0.0.1:9000/v1\", breaker: { consecutive_failures: 5, error_rate: 0.5"));
        assert!(p.contains("res-h2: { kind: openai, base_url: \"http://127.0.0.1:9000/v1\""));
        assert!(!p.contains("res-a"), "no faulty provider without its mocks");
        assert!(m.contains("- name: mock-resilient-healthy\n    targets: [{ provider: res-h1 }, { provider: res-h2 }]\n    retry: { attempts: 3 }\n"));
        assert!(!m.contains("- name: mock-resilient\n"));
        let (p, m) = config_lines(
            healthy,
            Some((
                SocketAddr::from(([127, 0, 0, 1], 9001)),
                SocketAddr::from(([127, 0, 0, 1], 9002)),
            )),
        );
        assert!(p.contains("res-a: { kind: openai, base_url: \"http://127.0.0.1:9001/v1\""));
        assert!(p.contains("res-b: { kind: openai, base_url: \"http://127.0.0.1:9002/v1\""));
        assert!(m.contains("- name: mock-resilient\n    targets: [{ provider: res-a }, { provider: res-b }]\n    retry: { attempts: 3 }\n"));
        assert_eq!(providers_of(Scenario::ResilienceStream), &[FAILING, SLOW]);
        assert!(providers_of(Scenario::Stream).is_empty());
    }
}
