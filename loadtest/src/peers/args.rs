//! Command-line flags of `loadtest peers` and `loadtest report`.

use std::path::PathBuf;
use std::time::Duration;

use crate::run::parse_env;
use crate::util::parse_duration;

#[derive(clap::Args, Clone, Debug)]
pub struct PeersArgs {
    /// Contestants, comma-separated (direct is always measured: "added" is relative to it;
    /// `bare` is the bare hyper proxy, the floor each gateway's figures are set against).
    #[arg(long, default_value = "direct,bare,ferrogate,litellm,portkey")]
    pub contestants: String,
    /// Open-loop rates (req/s), ascending; a contestant stops at the first one it cannot sustain.
    #[arg(long, default_value = "50,500,1000,5000")]
    pub rates: String,
    /// Scenarios, comma-separated: non-stream, stream.
    #[arg(long, default_value = "non-stream,stream")]
    pub scenarios: String,
    /// Measured duration of each open-loop run.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before each measured run (same load, not recorded).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// After the last scheduled send, how long queued and in-flight requests may still finish.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Per-request timeout (generous: LiteLLM under overload takes seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Keep-alive connections of the open-loop generator.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Connections of the closed-loop max-throughput runs.
    #[arg(long, default_value_t = 16)]
    pub max_connections: usize,
    /// Measured duration of each max-throughput run (default: --duration).
    #[arg(long, value_parser = parse_duration)]
    pub max_duration: Option<Duration>,
    /// Skip the max-throughput runs.
    #[arg(long)]
    pub no_max: bool,
    /// Content chunks per streamed response.
    #[arg(long, default_value_t = 20)]
    pub chunks: usize,
    /// Pin each contestant (with every process it forks) on CPU 0, mock and generator on CPU 1.
    #[arg(long)]
    pub pin: bool,
    /// ferrogate binary (started as `serve --config F --listen A --workers 1`).
    #[arg(long, default_value = "target/release/ferrogate")]
    pub ferrogate: PathBuf,
    /// Environment for ferrogate, KEY=VALUE (repeatable).
    #[arg(long = "gateway-env", value_parser = parse_env)]
    pub gateway_env: Vec<(String, String)>,
    /// LiteLLM `--num_workers`.
    #[arg(long, default_value_t = 1)]
    pub litellm_workers: usize,
    /// Python used to create LiteLLM's virtualenv.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Where the peers are installed (default: loadtest/.peers).
    #[arg(long)]
    pub peers_dir: Option<PathBuf>,
    /// Do not install missing peers; a missing peer is reported as not started.
    #[arg(long)]
    pub no_install: bool,
    /// Time limit of each install command.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub install_timeout: Duration,
    /// How long a peer may take to answer its readiness URL.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    pub ready_timeout: Duration,
    /// Upper bound of the wait, after each run, for the contestant to go idle.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Output directory (default: loadtest/results).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also rewrite the README's headline table and docs/performance.md's peers
    /// section (as `loadtest report` does).
    #[arg(long, alias = "update-readme")]
    pub update_docs: bool,
    /// Keep the temp dir with generated configs and child logs.
    #[arg(long)]
    pub keep_logs: bool,
}

#[derive(clap::Args, Clone, Debug, Default)]
pub struct ReportArgs {
    /// The `peers` result to render (default: loadtest/results/peers.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// README whose `<!-- peers-headline:begin -->`…`<!-- peers-headline:end -->` table is
    /// replaced (default: the workspace README.md).
    #[arg(long)]
    pub readme: Option<PathBuf>,
    /// Document whose `<!-- peers:begin -->`…`<!-- peers:end -->` section is replaced
    /// (default: the workspace docs/performance.md).
    #[arg(long)]
    pub performance_doc: Option<PathBuf>,
}
