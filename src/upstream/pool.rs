//! A connection pool for one upstream origin, keyed by the provider rather than by a hashed
//! (scheme, authority) per request.
//!
//! Hand-written instead of hyper-util's legacy pool because the gateway knows its origins when
//! it compiles a snapshot: checking out a connection is a lock-free queue pop, where the legacy
//! pool hashed its key with SipHash and took a mutex on every request (~5k instructions, a tenth
//! of a bare proxy's whole cost). HTTP/1.1 connections are leased exclusively and returned once
//! their response body has been read to the end; one HTTP/2 connection (chosen by ALPN) is
//! shared by all requests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use http::header::{HeaderValue, HOST};
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::Connection;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;

use super::ProxyConnector;

pub type UpstreamBody = Full<Bytes>;

/// Idle HTTP/1.1 connections kept per origin.
const MAX_IDLE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The connection could not be set up (TCP, proxy tunnel or TLS).
    #[error("connect failed: {0}")]
    Connect(String),
    /// Connecting took longer than the connect timeout.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The request failed on an established connection.
    #[error("{0}")]
    Request(#[from] hyper::Error),
}

pub struct Pool {
    connector: HttpsConnector<ProxyConnector>,
    connect_timeout: Duration,
    origin: Uri,
    host: HeaderValue,
    idle: ArrayQueue<http1::SendRequest<UpstreamBody>>,
    /// The shared HTTP/2 connection, once ALPN chose h2. Locked only to clone or replace it.
    h2: Mutex<Option<http2::SendRequest<UpstreamBody>>>,
}

/// A leased HTTP/1.1 connection, returned to the pool by `release` once the response body has
/// been read completely; dropping it instead closes the connection (the safe choice when a
/// response was abandoned half-way).
pub struct Lease {
    conn: Option<(http1::SendRequest<UpstreamBody>, Arc<Pool>)>,
}

impl Lease {
    fn none() -> Self {
        Lease { conn: None }
    }

    pub fn release(mut self) {
        if let Some((conn, pool)) = self.conn.take() {
            if !conn.is_closed() {
                let _ = pool.idle.push(conn);
            }
        }
    }
}

enum Conn {
    H1(http1::SendRequest<UpstreamBody>),
    H2(http2::SendRequest<UpstreamBody>),
}

impl Pool {
    pub fn new(
        connector: HttpsConnector<ProxyConnector>,
        connect_timeout: Duration,
        scheme: Scheme,
        authority: Authority,
    ) -> Result<Self, String> {
        let host = HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?;
        let origin = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query("/")
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            connector,
            connect_timeout,
            origin,
            host,
            idle: ArrayQueue::new(MAX_IDLE),
            h2: Mutex::new(None),
        })
    }

    /// Sends `req` (absolute URI) and returns the response head with the lease to release once
    /// its body is finished. A request that an idle connection could not even start (closed
    /// by the server meanwhile) is retried once on a fresh connection.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        loop {
            let (conn, fresh) = match self.idle_conn().await {
                Some(c) => (c, false),
                None => (self.connect().await?, true),
            };
            let result = match conn {
                Conn::H1(mut sender) => {
                    // HTTP/1.1 wants origin-form plus `Host`; the absolute URI's path is kept.
                    if req.uri().scheme().is_some() {
                        if let Some(pq) = req.uri().path_and_query().cloned() {
                            *req.uri_mut() = Uri::from(pq);
                        }
                        req.headers_mut().insert(HOST, self.host.clone());
                    }
                    match sender.try_send_request(req).await {
                        Ok(resp) => {
                            let lease = Lease {
                                conn: Some((sender, Arc::clone(self))),
                            };
                            return Ok((resp, lease));
                        }
                        Err(e) => e,
                    }
                }
                Conn::H2(mut sender) => match sender.try_send_request(req).await {
                    Ok(resp) => return Ok((resp, Lease::none())),
                    Err(e) => e,
                },
            };
            let mut err = result;
            match err.take_message() {
                // The idle connection died before our request went out: nothing was sent, so
                // trying again on a new connection is safe.
                Some(unsent) if !fresh => req = unsent,
                _ => return Err(SendError::Request(err.into_error())),
            }
        }
    }

    /// An idle, ready connection, if there is one.
    async fn idle_conn(&self) -> Option<Conn> {
        if let Some(h2) = self.shared_h2() {
            return Some(Conn::H2(h2));
        }
        while let Some(mut c) = self.idle.pop() {
            if c.is_closed() {
                continue;
            }
            if c.is_ready() || c.ready().await.is_ok() {
                return Some(Conn::H1(c));
            }
        }
        None
    }

    fn shared_h2(&self) -> Option<http2::SendRequest<UpstreamBody>> {
        let guard = self.h2.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let mut connector = self.connector.clone();
        let io =
            match tokio::time::timeout(self.connect_timeout, connector.call(self.origin.clone()))
                .await
            {
                Err(_) => return Err(SendError::ConnectTimeout),
                Ok(Err(e)) => {
                    if is_timeout(e.as_ref()) {
                        return Err(SendError::ConnectTimeout);
                    }
                    return Err(SendError::Connect(error_chain(e.as_ref())));
                }
                Ok(Ok(io)) => io,
            };
        if io.connected().is_negotiated_h2() {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(30))
                .handshake(io)
                .await?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream h2 connection ended");
                }
            });
            let mut guard = self.h2.lock().unwrap_or_else(|p| p.into_inner());
            *guard = Some(sender.clone());
            return Ok(Conn::H2(sender));
        }
        let (sender, conn) = http1::Builder::new().handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(Conn::H1(sender))
    }
}

/// An error with its whole source chain, for messages and logs.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = err.source();
    }
    false
}
