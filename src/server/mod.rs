//! The listening side: accept loop, connection settings (keep-alive, `TCP_NODELAY`, header read
//! timeout), and graceful shutdown that lets in-flight requests and streams finish.
//!
//! `serve` takes a bound listener and a shutdown future, so tests and `main` drive it the same way.

pub mod drain;
pub mod endpoints;
pub mod write_stall;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::state::AppState;

/// How a `serve` call ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Every in-flight request finished.
    Clean,
    /// The drain deadline passed with requests still running.
    DeadlinePassed,
}

/// Serves until `shutdown` resolves, then stops accepting and drains for the configured time.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> Drained {
    let settings = state.snapshot.load().settings.clone();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(settings.header_read_timeout_ms))
        .keep_alive(true);
    let write_stall = Duration::from_millis(settings.write_stall_timeout_ms);
    let graceful = drain::Drain::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                let svc = service_fn(move |req| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(endpoints::dispatch(state, req, peer).await) }
                });
                let io = write_stall::WriteStallGuard::new(stream, write_stall);
                let conn = builder.serve_connection(TokioIo::new(io), svc);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    // Live tails never end by themselves: end them, or the drain would wait them out.
    state.logs.end_tails();
    let drain = Duration::from_millis(state.snapshot.load().settings.drain_timeout_ms);
    tracing::info!(?drain, "shutting down: draining in-flight requests");
    let drained = tokio::select! {
        _ = graceful.shutdown() => Drained::Clean,
        _ = tokio::time::sleep(drain) => Drained::DeadlinePassed,
    };
    state.logs.drain();
    drained
}
