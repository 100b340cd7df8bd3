//! Shared HTTP/1.1 server plumbing for the mock upstream and the bare proxy:
//! bind, announce readiness on stdout, accept with TCP_NODELAY, keep-alive.

use std::error::Error as StdError;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Binds and prints `NAME listening on http://ADDR` (the readiness line the
/// orchestrator waits for; port 0 picks a free port).
pub async fn bind(name: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{name} listening on http://{local}")?;
    out.flush()?;
    Ok(listener)
}

/// Accepts forever, serving each connection with a fresh service from `make`.
pub async fn accept_loop<F, S, B>(listener: TcpListener, make: F) -> anyhow::Result<()>
where
    F: Fn() -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    loop {
        let (tcp, _peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("accept error: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("set_nodelay: {e}");
        }
        let svc = make();
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
