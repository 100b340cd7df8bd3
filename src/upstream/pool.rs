//! A connection pool for one upstream origin, keyed by the provider rather than by a hashed
//! (scheme, authority) per request.
//!
//! Hand-written instead of hyper-util's legacy pool because the gateway knows its origins when
//! it compiles a snapshot: checking out a connection is a lock-free queue pop, where the legacy
//! pool hashed its key with SipHash and took a mutex on every request (~5k instructions, a tenth
//! of a bare proxy's whole cost). HTTP/1.1 connections are leased exclusively and returned once
//! their response body has been read to the end; one HTTP/2 connection (chosen by ALPN) is
//! shared by all requests.
//!
//! Idle expiry: a connection left idle for `idle_timeout` is closed, whether or not a request
//! comes. Time is counted in ticks of a light per-pool task (`idle_timeout / 8` apart) that also
//! closes what expired, so the request path reads an atomic tick counter instead of the clock:
//! a checkout compares two integers, a release stamps one. A connection is closed after between
//! 1 and 1.125 idle timeouts.
//!
//! Connects: an HTTP/1.1 origin gets connections in parallel, as many as requests need. While
//! the protocol is unknown (first connect) or known to be h2, connects are single-flight behind
//! an async mutex held only across the connect, so N requests arriving together at an h2 origin
//! open one connection and share it; those that waited on a connect that failed share its error
//! instead of queueing their own connect behind it.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
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

/// Reaper ticks per idle timeout: the expiry's resolution (an eighth of the timeout).
const TICKS_PER_TIMEOUT: u64 = 8;

/// The shortest reaper period, so a tiny idle timeout cannot make the task spin.
const MIN_TICK: Duration = Duration::from_millis(1);

/// What ALPN chose on this origin's last connect; decides whether connects are single-flight.
const PROTO_UNKNOWN: u8 = 0;
const PROTO_H1: u8 = 1;
const PROTO_H2: u8 = 2;

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

/// A connect failure that requests which waited on that connect share.
#[derive(Clone)]
enum ConnectFailure {
    Connect(String),
    Timeout,
}

impl ConnectFailure {
    fn of(e: &SendError) -> Option<Self> {
        match e {
            SendError::Connect(detail) => Some(Self::Connect(detail.clone())),
            SendError::ConnectTimeout => Some(Self::Timeout),
            // A failed h2/h1 handshake carries a `hyper::Error`, which cannot be cloned: the
            // waiters try for themselves.
            SendError::Request(_) => None,
        }
    }

    fn to_error(&self) -> SendError {
        match self {
            Self::Connect(detail) => SendError::Connect(detail.clone()),
            Self::Timeout => SendError::ConnectTimeout,
        }
    }
}

/// An idle HTTP/1.1 connection and the reaper tick at which it was released.
struct IdleConn {
    sender: http1::SendRequest<UpstreamBody>,
    since: u64,
}

/// The shared HTTP/2 connection. Every request on it holds an `Arc` until its response is done,
/// so the strong count above the pool's own reference is the number of requests in flight.
struct H2Conn {
    sender: http2::SendRequest<UpstreamBody>,
    /// The tick at which it was last seen busy (a request finished, or the reaper saw one in
    /// flight).
    last_active: AtomicU64,
    /// The pool's tick counter, shared so a finishing request can stamp `last_active`.
    ticks: Arc<AtomicU64>,
}

pub struct Pool {
    connector: HttpsConnector<ProxyConnector>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    origin: Uri,
    host: HeaderValue,
    idle: ArrayQueue<IdleConn>,
    /// The shared HTTP/2 connection, once ALPN chose h2. Loaded without a lock (only when the
    /// origin is known to speak h2); replaced on connect, cleared when it closes or expires.
    h2: ArcSwapOption<H2Conn>,
    /// `PROTO_*`: lets the HTTP/1.1 path skip the h2 slot with one relaxed load.
    proto: AtomicU8,
    /// Reaper ticks since the pool's first connect: the idle clock.
    ticks: Arc<AtomicU64>,
    /// Single-flight for connects while the protocol is unknown or h2; holds the failure of the
    /// last connect made under it (if it failed), for the requests that waited on it.
    gate: tokio::sync::Mutex<Option<ConnectFailure>>,
    /// Connects finished under `gate`, so a waiter can tell that one finished while it waited.
    gated_connects: AtomicU64,
    /// The reaper task, started by the first connect (the pool may be built outside a runtime).
    reaper: OnceLock<tokio::task::AbortHandle>,
}

/// A leased connection. For HTTP/1.1 it is returned to the pool by `release` once the response
/// body has been read completely; dropping it instead closes the connection (the safe choice
/// when a response was abandoned half-way). For HTTP/2 it marks the shared connection busy
/// until it is released or dropped.
pub struct Lease {
    h1: Option<(http1::SendRequest<UpstreamBody>, Arc<Pool>)>,
    // Held for its `Drop`, which marks the shared h2 connection active.
    _h2: Option<H2InFlight>,
}

impl Lease {
    pub fn release(mut self) {
        if let Some((sender, pool)) = self.h1.take() {
            if !sender.is_closed() {
                let since = pool.ticks.load(Ordering::Relaxed);
                let _ = pool.idle.push(IdleConn { sender, since });
            }
        }
    }
}

/// A request in flight on the shared HTTP/2 connection.
struct H2InFlight(Arc<H2Conn>);

impl Drop for H2InFlight {
    fn drop(&mut self) {
        let now = self.0.ticks.load(Ordering::Relaxed);
        // Read first: requests finishing within one tick leave the shared line unwritten.
        if self.0.last_active.load(Ordering::Relaxed) != now {
            self.0.last_active.store(now, Ordering::Relaxed);
        }
    }
}

enum Conn {
    H1(http1::SendRequest<UpstreamBody>),
    H2(Arc<H2Conn>, http2::SendRequest<UpstreamBody>),
}

/// Whether something stamped at tick `since` has been idle for a whole timeout at tick `now`.
/// A stamp is taken somewhere within its tick, so only `TICKS_PER_TIMEOUT + 1` ticks later is
/// at least one timeout sure to have passed.
fn expired(since: u64, now: u64) -> bool {
    now.saturating_sub(since) > TICKS_PER_TIMEOUT
}

impl Pool {
    pub fn new(
        connector: HttpsConnector<ProxyConnector>,
        connect_timeout: Duration,
        idle_timeout: Duration,
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
            idle_timeout,
            origin,
            host,
            idle: ArrayQueue::new(MAX_IDLE),
            h2: ArcSwapOption::empty(),
            proto: AtomicU8::new(PROTO_UNKNOWN),
            ticks: Arc::new(AtomicU64::new(0)),
            gate: tokio::sync::Mutex::new(None),
            gated_connects: AtomicU64::new(0),
            reaper: OnceLock::new(),
        })
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Sends `req` (absolute URI) and returns the response head with the lease to release once
    /// its body is finished. A request that an idle connection could not even start (closed
    /// by the server meanwhile) is retried on another connection.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        loop {
            let (conn, fresh) = match self.checkout().await {
                Some(c) => (c, false),
                None => (self.connect().await?, true),
            };
            let (mut err, used_h2) = match conn {
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
                                h1: Some((sender, Arc::clone(self))),
                                _h2: None,
                            };
                            return Ok((resp, lease));
                        }
                        Err(e) => (e, None),
                    }
                }
                Conn::H2(h2, mut sender) => match sender.try_send_request(req).await {
                    Ok(resp) => {
                        let lease = Lease {
                            h1: None,
                            _h2: Some(H2InFlight(h2)),
                        };
                        return Ok((resp, lease));
                    }
                    Err(e) => (e, Some(h2)),
                },
            };
            match err.take_message() {
                // The idle connection died before our request went out: nothing was sent, so
                // trying again on another connection is safe. A dead shared h2 connection is
                // forgotten so the retry connects afresh.
                Some(unsent) if !fresh => {
                    if let Some(h2) = used_h2 {
                        self.forget_h2(&h2);
                    }
                    req = unsent;
                }
                _ => return Err(SendError::Request(err.into_error())),
            }
        }
    }

    /// An idle, ready connection, if there is one. The HTTP/1.1 path costs a relaxed load of
    /// the protocol, the queue pop and a load and compare of the tick counter; no lock, no clock.
    async fn checkout(&self) -> Option<Conn> {
        if self.proto.load(Ordering::Relaxed) == PROTO_H2 {
            return self.live_h2();
        }
        let now = self.ticks.load(Ordering::Relaxed);
        while let Some(idle) = self.idle.pop() {
            // Dropping an expired or closed sender closes its connection.
            if expired(idle.since, now) || idle.sender.is_closed() {
                continue;
            }
            let mut c = idle.sender;
            if c.is_ready() || c.ready().await.is_ok() {
                return Some(Conn::H1(c));
            }
        }
        None
    }

    fn live_h2(&self) -> Option<Conn> {
        let guard = self.h2.load();
        let h2 = guard.as_ref().filter(|c| !c.sender.is_closed())?;
        Some(Conn::H2(Arc::clone(h2), h2.sender.clone()))
    }

    /// Clears the h2 slot if it still holds `h2`; requests in flight on it finish, then the
    /// connection closes (hyper closes it once every sender is gone).
    fn forget_h2(&self, h2: &Arc<H2Conn>) {
        let _ = self.h2.compare_and_swap(h2, None);
    }

    /// A new connection. HTTP/1.1 origins connect in parallel; otherwise single-flight.
    async fn connect(self: &Arc<Self>) -> Result<Conn, SendError> {
        self.start_reaper();
        if self.proto.load(Ordering::Relaxed) == PROTO_H1 {
            return self.open().await;
        }
        let seen = self.gated_connects.load(Ordering::Acquire);
        let mut gate = self.gate.lock().await;
        if let Some(c) = self.live_h2() {
            return Ok(c);
        }
        if self.gated_connects.load(Ordering::Acquire) != seen {
            // A connect finished while we waited: share its failure, or, when it found an
            // HTTP/1.1 origin, connect in parallel like any HTTP/1.1 request.
            if let Some(failure) = gate.as_ref() {
                return Err(failure.to_error());
            }
            if self.proto.load(Ordering::Relaxed) == PROTO_H1 {
                drop(gate);
                return self.open().await;
            }
        }
        let result = self.open().await;
        *gate = result.as_ref().err().and_then(ConnectFailure::of);
        self.gated_connects.fetch_add(1, Ordering::Release);
        result
    }

    /// Connects, handshakes whichever protocol ALPN chose, and records it.
    async fn open(&self) -> Result<Conn, SendError> {
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
            let h2 = self.install_h2(sender);
            self.proto.store(PROTO_H2, Ordering::Relaxed);
            let sender = h2.sender.clone();
            return Ok(Conn::H2(h2, sender));
        }
        let (sender, conn) = http1::Builder::new().handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        self.proto.store(PROTO_H1, Ordering::Relaxed);
        Ok(Conn::H1(sender))
    }

    /// Makes `sender` the shared h2 connection (the previous one, if any, closes once its
    /// requests finish).
    fn install_h2(&self, sender: http2::SendRequest<UpstreamBody>) -> Arc<H2Conn> {
        let h2 = Arc::new(H2Conn {
            sender,
            last_active: AtomicU64::new(self.ticks.load(Ordering::Relaxed)),
            ticks: Arc::clone(&self.ticks),
        });
        self.h2.store(Some(Arc::clone(&h2)));
        h2
    }

    fn tick_period(&self) -> Duration {
        (self.idle_timeout / TICKS_PER_TIMEOUT as u32).max(MIN_TICK)
    }

    /// Starts the reaper once. It holds only a `Weak`, and the pool's `Drop` aborts it.
    fn start_reaper(self: &Arc<Self>) {
        self.reaper.get_or_init(|| {
            tokio::spawn(reap_every(Arc::downgrade(self), self.tick_period())).abort_handle()
        });
    }

    /// One reaper tick: advance the idle clock, close the idle connections that expired.
    fn reap(&self) {
        let now = self.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        // The queue is FIFO in release order, so the oldest idle connections are at its head:
        // pop until one is still fresh, and put that one back (at the tail, which only delays
        // its own expiry by the age difference of those ahead of it).
        while let Some(idle) = self.idle.pop() {
            if expired(idle.since, now) || idle.sender.is_closed() {
                continue;
            }
            let _ = self.idle.push(idle);
            break;
        }
        if let Some(h2) = self.h2.load_full() {
            if h2.sender.is_closed() {
                self.forget_h2(&h2);
            } else if Arc::strong_count(&h2) > 2 {
                // Requests in flight beyond the slot's reference and ours: busy now.
                h2.last_active.store(now, Ordering::Relaxed);
            } else if expired(h2.last_active.load(Ordering::Relaxed), now) {
                self.forget_h2(&h2);
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The idle connections close as their senders drop with the pool's fields.
        if let Some(reaper) = self.reaper.get() {
            reaper.abort();
        }
    }
}

async fn reap_every(pool: Weak<Pool>, period: Duration) {
    // Missed ticks fire late but never early, so a tick count never overstates idle time.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        ticks.tick().await;
        match pool.upgrade() {
            Some(pool) => pool.reap(),
            None => return,
        }
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

#[cfg(test)]
mod tests;
