//! The `ferrogate` command line: parse arguments, then call the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use ferrogate::config::{self, Config, DEFAULT_LISTEN};
use ferrogate::server::{self, Drained};
use ferrogate::state::AppState;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ferrogate",
    version,
    about = "A single-binary LLM gateway with microsecond overhead"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Configuration file (YAML). Without it: the built-in mock plus every provider whose
        /// API key is in the environment.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Address to listen on (overrides the file's `listen`; default 127.0.0.1:8080).
        #[arg(long, short)]
        listen: Option<SocketAddr>,
        /// Runtime worker threads (default: one per core).
        #[arg(long, short)]
        workers: Option<usize>,
    },
    /// Validate a configuration file and print every problem in it.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Manage virtual keys of a running gateway through its admin API (master key from
    /// FERROGATE_MASTER_KEY).
    #[command(subcommand)]
    Keys(ferrogate::admin::client::KeysCommand),
    /// Follow or look up request records of a running gateway (`tail`, `show`).
    #[command(subcommand)]
    Logs(ferrogate::admin::logs_client::LogsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Keys(cmd) => admin_cli(Box::pin(ferrogate::admin::client::run(cmd))),
        Command::Logs(cmd) => admin_cli(Box::pin(ferrogate::admin::logs_client::run(cmd))),
        Command::Serve {
            config,
            listen,
            workers,
        } => {
            let _log_guard = init_tracing();
            match serve(config, listen, workers) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ferrogate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Logs go through a non-blocking writer (a background thread), so a slow stderr never stalls
/// the runtime; the guard flushes what is left at exit.
fn init_tracing() -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERROGATE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    guard
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load_file(path) {
        Ok(c) => {
            println!(
                "{}: ok ({} providers, {} models)",
                path.display(),
                c.providers.len(),
                c.models.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Ok(config::load_file(p)?),
        None => {
            let (config, found) = config::zero_config(&config::env::process_env);
            tracing::info!("no --config: built-in mock provider is available as mock/<any-model>");
            if found.is_empty() {
                tracing::info!("no provider API keys found in the environment");
            } else {
                tracing::info!(providers = %found.join(", "), "providers found in the environment (use as provider/model)");
            }
            Ok(config)
        }
    }
}

fn serve(
    path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    workers: Option<usize>,
) -> anyhow::Result<()> {
    let config = load(path.as_ref())?;
    let addr = match listen.or(config.listen) {
        Some(a) => a,
        None => DEFAULT_LISTEN.parse().context("default listen address")?,
    };
    let workers = workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    // One worker: a current-thread runtime avoids cross-thread wake-ups entirely.
    let runtime = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        // Boxed: the store's and Redis's futures stay out of the serving future, whose size
        // steers LLVM's inlining of the scheduler's loop (one `block_on` in the program, too).
        let governor = match &config.governance {
            Some(g) => Some(
                Box::pin(ferrogate::governance::Governor::start(g))
                    .await
                    .context("opening the governance store")?,
            ),
            None => None,
        };
        if let Some(g) = &governor {
            g.spawn_tasks();
        }
        // The metrics recorder first: the log queue's drop counter is registered with it.
        ferrogate::telemetry::metrics::install();
        let logs = Box::pin(ferrogate::logs::Logs::open(
            &config.logs,
            ferrogate::telemetry::request_log::RequestLog::standard(config.server.request_log),
        ))
        .await
        .context("opening the request-log store")?;
        let state = AppState::new(&config, path.clone(), governor.clone(), Some(logs))
            .context("compiling the configuration")?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let bound = listener.local_addr()?;
        if let Some(handle) = state.prometheus.clone() {
            ferrogate::telemetry::metrics::spawn_upkeep(handle);
        }
        state.logs.start();
        let logs = Arc::clone(&state.logs);
        ferrogate::reload::spawn(state.clone());
        // Listen for SIGTERM before announcing readiness, so an early signal still drains.
        let shutdown = shutdown_signal()?;
        tracing::info!(%bound, workers, "ferrogate ready");
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "ferrogate listening on http://{bound}")?;
            out.flush()?;
        }
        match server::serve(listener, state, shutdown).await {
            Drained::Clean => tracing::info!("drained; bye"),
            Drained::DeadlinePassed => {
                tracing::warn!("drain deadline passed with requests still running")
            }
        }
        // Every settled request's spend and record reach their stores before the process
        // ends.
        Box::pin(logs.flush()).await;
        if let Some(g) = governor {
            Box::pin(g.shutdown()).await;
        }
        logs.close().await;
        Ok(())
    })
}

/// Runs an admin API client command (`keys`, `logs`). Every command's future is boxed into
/// one type, so there is one instantiation of the runtime's `block_on` for all of them.
fn admin_cli(
    command: std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>>>>,
) -> ExitCode {
    // The multi-thread scheduler, entered through its handle: a second instantiation of the
    // current-thread scheduler's `block_on` (which `Runtime::block_on` makes whatever the
    // flavour) would share, and un-inline, the serving loop's scheduler code (+1.7k
    // instructions per streamed request, measured).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferrogate: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.handle().block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrogate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Registers the shutdown signals now and returns a future that resolves on the first one.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
