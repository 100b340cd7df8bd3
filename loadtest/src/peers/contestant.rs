//! The contestants of a `peers` run and how each one is started, configured
//! against the shared mock upstream, and addressed by the load generator.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::install::{version_of, PeersDir};
use super::loopback::ensure_loopback_only;
use super::model::ContestantInfo;
use crate::procs::{bare_proxy_spec, free_port, spawn, spawn_http_ready, SpawnSpec, Spawned};
use crate::proctree::{self, RssWatch};
use crate::run::gateway_spec;
use crate::workload::MODEL;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The mock upstream itself, called with no gateway in between.
    Direct,
    /// `loadtest bare-proxy`: a bare hyper reverse proxy, the floor any forwarding proxy pays
    /// on this machine, measured in the same run as everyone else.
    Bare,
    Ferrogate,
    Litellm,
    Portkey,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Direct,
        Kind::Bare,
        Kind::Ferrogate,
        Kind::Litellm,
        Kind::Portkey,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Bare => "bare",
            Kind::Ferrogate => "ferrogate",
            Kind::Litellm => "litellm",
            Kind::Portkey => "portkey",
        }
    }

    /// Parses `direct,bare,ferrogate,litellm,portkey` (any subset; `direct` is
    /// always added first, since "added latency" is measured against it).
    pub fn parse_list(s: &str) -> anyhow::Result<Vec<Kind>> {
        let mut out = vec![Kind::Direct];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let k = Kind::ALL
                .into_iter()
                .find(|k| k.name() == part)
                .with_context(|| {
                    format!(
                        "unknown contestant `{part}` (direct, bare, ferrogate, litellm, portkey)"
                    )
                })?;
            if !out.contains(&k) {
                out.push(k);
            }
        }
        Ok(out)
    }
}

/// What every contestant's start-up needs.
pub struct Setup<'a> {
    pub peers: &'a PeersDir,
    pub logdir: &'a Path,
    pub mock: SocketAddr,
    /// This `loadtest` binary (the bare proxy is one of its subcommands).
    pub loadtest: &'a Path,
    /// CPU the contestant (and every process it forks) is pinned to.
    pub cpu: Option<usize>,
    pub ferrogate: &'a Path,
    pub gateway_env: &'a [(String, String)],
    pub ready_timeout: Duration,
    pub litellm_workers: usize,
    pub python: &'a str,
}

/// A started contestant.
pub struct Running {
    pub kind: Kind,
    pub addr: SocketAddr,
    /// Extra request headers the generator sends to this contestant.
    pub headers: Vec<(String, String)>,
    pub info: ContestantInfo,
    /// None for `direct` (the mock belongs to the orchestrator).
    pub process: Option<Spawned>,
    pub rss: Option<RssWatch>,
}

impl Running {
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.pid)
    }

    /// The contestant and its descendants now (empty for `direct`).
    pub fn tree(&self) -> Vec<u32> {
        self.pid().map(proctree::list).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_none_or(|p| p.is_running())
    }

    /// Stops the process group; idempotent.
    pub fn stop(&mut self) {
        self.rss = None;
        if let Some(p) = self.process.as_mut() {
            p.stop(Duration::from_secs(5));
        }
    }
}

/// A strong random LiteLLM master key (it refuses weak ones).
fn master_key() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format!(
        "sk-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// LiteLLM's proxy config: `mock-gpt` → `openai/mock-gpt` at the mock.
pub fn litellm_config(mock: SocketAddr) -> String {
    format!(
        "model_list:\n  - model_name: {MODEL}\n    litellm_params:\n      model: openai/{MODEL}\n      api_base: http://{mock}/v1\n      api_key: sk-mock\nlitellm_settings:\n  drop_params: true\n  set_verbose: false\n  request_timeout: 30\ngeneral_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n"
    )
}

/// Environment that keeps LiteLLM offline and quiet.
fn litellm_env(key: &str) -> Vec<(String, String)> {
    [
        // Otherwise it retries a remote cost-map download at start-up.
        ("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
        ("LITELLM_LOG", "ERROR"),
        ("DISABLE_ADMIN_UI", "True"),
        ("NO_DOCS", "True"),
        ("HF_HUB_OFFLINE", "1"),
        ("TRANSFORMERS_OFFLINE", "1"),
        ("LITELLM_MASTER_KEY", key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Portkey routes per request: these headers point it at the mock.
pub fn portkey_headers(mock: SocketAddr) -> Vec<(String, String)> {
    vec![
        ("x-portkey-provider".into(), "openai".into()),
        ("x-portkey-custom-host".into(), format!("http://{mock}/v1")),
        ("authorization".into(), "Bearer sk-mock".into()),
    ]
}

fn spec(
    name: &str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    addr: SocketAddr,
    s: &Setup,
) -> SpawnSpec {
    SpawnSpec {
        name: name.to_string(),
        program,
        args,
        wrapper: Vec::new(),
        cpu: s.cpu,
        expected_addr: Some(addr),
        ready_timeout: s.ready_timeout,
        health_check: false,
        env,
    }
}

/// Starts one contestant and waits until it is ready. For `direct` nothing is started.
pub fn start(kind: Kind, s: &Setup) -> anyhow::Result<Running> {
    let name = kind.name();
    let t0 = Instant::now();
    let (process, headers, version) = match kind {
        Kind::Direct => {
            return Ok(Running {
                kind,
                addr: s.mock,
                headers: Vec::new(),
                info: ContestantInfo {
                    name: name.into(),
                    version: "loadtest mock (no gateway)".into(),
                    command: "the mock upstream, called directly".into(),
                    ..ContestantInfo::default()
                },
                process: None,
                rss: None,
            });
        }
        Kind::Bare => {
            let spec = bare_proxy_spec(s.loadtest.to_path_buf(), s.mock, s.cpu);
            let version = format!(
                "loadtest bare-proxy {} (hyper 1, hyper-util legacy client, 1 thread)",
                env!("CARGO_PKG_VERSION")
            );
            (spawn(&spec, s.logdir)?, Vec::new(), version)
        }
        Kind::Ferrogate => {
            let config = s.logdir.join("ferrogate.yaml");
            std::fs::write(&config, crate::run::gateway_config(s.mock))?;
            let spec = gateway_spec(
                s.ferrogate,
                None,
                name,
                &config,
                s.mock,
                s.cpu,
                s.gateway_env,
            )?;
            let version = version_of(&spec.program, &["--version"]);
            (spawn(&spec, s.logdir)?, Vec::new(), version)
        }
        Kind::Litellm => {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let config = s.logdir.join("litellm.yaml");
            std::fs::write(&config, litellm_config(s.mock))?;
            let key = master_key()?;
            let args = vec![
                "--config".into(),
                config.display().to_string(),
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                addr.port().to_string(),
                "--num_workers".into(),
                s.litellm_workers.to_string(),
            ];
            let spec = spec(
                name,
                s.peers.litellm_bin(),
                args,
                litellm_env(&key),
                addr,
                s,
            );
            let python = version_of(&s.peers.litellm_venv().join("bin/python"), &["--version"]);
            let version = format!(
                "litellm[proxy] {} ({python}, {} worker{})",
                super::install::LITELLM_VERSION,
                s.litellm_workers,
                if s.litellm_workers == 1 { "" } else { "s" }
            );
            let p = spawn_http_ready(&spec, s.logdir, "/health/liveliness")?;
            (
                p,
                vec![("authorization".into(), format!("Bearer {key}"))],
                version,
            )
        }
        Kind::Portkey => {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let args = vec![
                "--require".into(),
                s.peers.loopback_preload().display().to_string(),
                s.peers.portkey_entry().display().to_string(),
                format!("--port={}", addr.port()),
                "--headless".into(),
            ];
            let env = vec![("NODE_ENV".to_string(), "production".to_string())];
            let spec = spec(name, PathBuf::from("node"), args, env, addr, s);
            let version = format!(
                "@portkey-ai/gateway {} (Node {}, @hono/node-server {})",
                super::install::PORTKEY_VERSION,
                version_of(Path::new("node"), &["--version"]),
                super::install::HONO_NODE_SERVER_VERSION
            );
            (
                spawn_http_ready(&spec, s.logdir, "/")?,
                portkey_headers(s.mock),
                version,
            )
        }
    };
    let ready_after = t0.elapsed().as_secs_f64();
    let mut running = Running {
        kind,
        addr: process.addr,
        headers,
        info: ContestantInfo {
            name: name.into(),
            version,
            command: redact(&process.command),
            ready_after_s: Some(ready_after),
            ..ContestantInfo::default()
        },
        rss: Some(RssWatch::start(process.pid, Duration::from_millis(200))),
        process: Some(process),
    };
    if let Err(e) = ensure_loopback_only(name, running.addr.port()) {
        running.stop();
        return Err(e);
    }
    Ok(running)
}

/// Hides the LiteLLM master key in the recorded command line.
fn redact(command: &str) -> String {
    command
        .split(' ')
        .map(|part| match part.split_once('=') {
            Some(("LITELLM_MASTER_KEY", _)) => "LITELLM_MASTER_KEY=sk-…".to_string(),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contestant_list() {
        assert_eq!(
            Kind::parse_list("ferrogate,portkey").ok(),
            Some(vec![Kind::Direct, Kind::Ferrogate, Kind::Portkey])
        );
        assert_eq!(
            Kind::parse_list("direct,litellm,direct").ok(),
            Some(vec![Kind::Direct, Kind::Litellm])
        );
        assert_eq!(
            Kind::parse_list("bare,ferrogate").ok(),
            Some(vec![Kind::Direct, Kind::Bare, Kind::Ferrogate])
        );
        assert!(Kind::parse_list("bifrost").is_err());
    }

    #[test]
    fn configs_point_at_the_mock() {
        let mock = SocketAddr::from(([127, 0, 0, 1], 9000));
        let y = litellm_config(mock);
        assert!(y.contains("model_name: mock-gpt"));
        assert!(y.contains("model: openai/mock-gpt"));
        assert!(y.contains("api_base: http://127.0.0.1:9000/v1"));
        assert!(portkey_headers(mock)
            .iter()
            .any(|(k, v)| k == "x-portkey-custom-host" && v == "http://127.0.0.1:9000/v1"));
    }

    #[test]
    fn redacts_master_key() {
        let c = redact("LITELLM_LOG=ERROR LITELLM_MASTER_KEY=sk-abc litellm --port 1");
        assert_eq!(
            c,
            "LITELLM_LOG=ERROR LITELLM_MASTER_KEY=sk-… litellm --port 1"
        );
    }
}
