//! `loadtest`: load-test harness for ferrogate. See loadtest/README.md.

use clap::{Parser, Subcommand};

use loadtest::bare_proxy::BareProxyArgs;
use loadtest::callgrind::CallgrindArgs;
use loadtest::mock::MockArgs;
use loadtest::peers::{PeersArgs, ReportArgs};
use loadtest::run::RunArgs;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "loadtest",
    about = "Load-test harness for ferrogate (default subcommand: run)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Rewrite the README's peers table and docs/performance.md's peers section from
    /// loadtest/results/peers.json (same as `report`).
    #[arg(long)]
    report: bool,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Full comparison: direct vs bare proxy vs ferrogate; writes loadtest/results/.
    Run(RunArgs),
    /// Instructions per request under callgrind (bare proxy vs ferrogate).
    Callgrind(CallgrindArgs),
    /// ferrogate vs the bare proxy vs LiteLLM vs Portkey (installed when missing) on one mock;
    /// writes results/peers.*.
    Peers(PeersArgs),
    /// Rewrite the README's `<!-- peers-headline:begin -->` table and docs/performance.md's
    /// `<!-- peers:begin -->` section from results/peers.json.
    Report(ReportArgs),
    /// Mock OpenAI upstream.
    Mock(MockArgs),
    /// Bare hyper reverse proxy (the baseline).
    BareProxy(BareProxyArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None if cli.report => loadtest::peers::readme::run(&ReportArgs::default()),
        None => loadtest::run::run(&cli.run),
        Some(Cmd::Run(args)) => loadtest::run::run(&args),
        Some(Cmd::Callgrind(args)) => loadtest::callgrind::run(&args),
        Some(Cmd::Peers(args)) => loadtest::peers::run::run(&args),
        Some(Cmd::Report(args)) => loadtest::peers::readme::run(&args),
        Some(Cmd::Mock(args)) => loadtest::mock::serve(&args),
        Some(Cmd::BareProxy(args)) => loadtest::bare_proxy::serve(&args),
    };
    // Children were stopped when the orchestrator's values were dropped.
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
