//! One keep-alive HTTP/1.1 client connection and one timed request on it.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::util::now_ns;
use crate::workload::{Dialect, Scenario, Tail, ANTHROPIC_VERSION};

/// Header the gateway uses to report its own overhead.
pub const OVERHEAD_HEADER: &str = "x-ferrogate-overhead-us";
/// Header with the number of upstream attempts a resilient route made.
pub const ATTEMPTS_HEADER: &str = "x-ferrogate-attempts";

const X_API_KEY: &str = "x-api-key";
const ANTHROPIC_VERSION_HEADER: &str = "anthropic-version";

/// What to send and where.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub scenario: Scenario,
    host: HeaderValue,
    uri: Uri,
    body: Bytes,
    /// Per-subject headers (e.g. a gateway's API key or routing headers); they
    /// replace the defaults of the same name.
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Target {
    pub fn new(addr: SocketAddr, scenario: Scenario) -> anyhow::Result<Self> {
        Ok(Self {
            addr,
            scenario,
            host: HeaderValue::from_str(&addr.to_string())?,
            uri: Uri::from_static(scenario.path()),
            body: scenario.body(),
            headers: Vec::new(),
        })
    }

    /// The same target with extra request headers (`name: value` pairs).
    pub fn with_headers(mut self, headers: &[(String, String)]) -> anyhow::Result<Self> {
        for (name, value) in headers {
            self.headers.push((
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| anyhow::anyhow!("header name `{name}`: {e}"))?,
                HeaderValue::from_str(value)
                    .map_err(|e| anyhow::anyhow!("header `{name}` value: {e}"))?,
            ));
        }
        Ok(self)
    }

    fn request(&self) -> anyhow::Result<Request<Full<Bytes>>> {
        let builder = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // Each client dialect authenticates the way its SDK does.
        let builder = match self.scenario.client_dialect() {
            Dialect::OpenAi => builder.header(
                AUTHORIZATION,
                HeaderValue::from_static("Bearer sk-loadtest-0000"),
            ),
            Dialect::Anthropic => builder
                .header(X_API_KEY, HeaderValue::from_static("sk-ant-loadtest-0000"))
                .header(
                    ANTHROPIC_VERSION_HEADER,
                    HeaderValue::from_static(ANTHROPIC_VERSION),
                ),
        };
        let mut req = builder.body(Full::new(self.body.clone()))?;
        for (name, value) in &self.headers {
            req.headers_mut().insert(name.clone(), value.clone());
        }
        Ok(req)
    }
}

pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Connects with TCP_NODELAY; the connection task is spawned on the current runtime.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { sender })
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// `GET path` on `conn`; returns the status and the whole body (for `/metrics` scrapes).
pub async fn get(conn: &mut Conn, addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Bytes)> {
    let req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(HOST, HeaderValue::from_str(&addr.to_string())?)
        .body(Full::new(Bytes::new()))?;
    conn.sender.ready().await?;
    let resp = conn.sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Result of one request; times are absolute `now_ns()` values.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    pub status: u16,
    /// The body arrived complete (see `Tail::complete`).
    pub complete: bool,
    pub first_byte_ns: u64,
    pub done_ns: u64,
    pub bytes: u64,
    pub overhead_us: Option<u64>,
    /// `x-ferrogate-attempts`, when present.
    pub attempts: Option<u32>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.status == 200 && self.complete
    }
}

/// Sends one request on `conn` and reads the whole body, timing the first and last byte.
/// An `Err` means the connection is no longer usable.
pub async fn execute(conn: &mut Conn, target: &Target) -> anyhow::Result<Outcome> {
    let req = target.request()?;
    conn.sender.ready().await?;
    let resp = conn.sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let overhead_us = resp
        .headers()
        .get(OVERHEAD_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let attempts = resp
        .headers()
        .get(ATTEMPTS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let mut body = resp.into_body();
    let mut tail = Tail::default();
    let mut first_byte_ns = 0;
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if data.is_empty() {
                continue;
            }
            if first_byte_ns == 0 {
                first_byte_ns = now_ns();
            }
            bytes += data.len() as u64;
            tail.push(&data);
        }
    }
    let done_ns = now_ns();
    if first_byte_ns == 0 {
        first_byte_ns = done_ns;
    }
    Ok(Outcome {
        status,
        complete: tail.complete(target.scenario, bytes as usize),
        first_byte_ns,
        done_ns,
        bytes,
        overhead_us,
        attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_headers_replace_defaults() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 9));
        let t = Target::new(addr, Scenario::NonStream).and_then(|t| {
            t.with_headers(&[
                ("authorization".into(), "Bearer sk-peer".into()),
                ("x-portkey-provider".into(), "openai".into()),
            ])
        });
        let req = t.and_then(|t| t.request());
        let req = req.unwrap_or_else(|e| panic!("{e}"));
        let h = req.headers();
        assert_eq!(h.get_all(AUTHORIZATION).iter().count(), 1);
        assert_eq!(
            h.get(AUTHORIZATION).map(|v| v.as_bytes()),
            Some(&b"Bearer sk-peer"[..])
        );
        assert_eq!(
            h.get("x-portkey-provider").map(|v| v.as_bytes()),
            Some(&b"openai"[..])
        );
        assert!(Target::new(addr, Scenario::Stream)
            .and_then(|t| t.with_headers(&[("bad header".into(), "x".into())]))
            .is_err());
    }

    #[test]
    fn requests_follow_the_client_dialect() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 9));
        for sc in Scenario::ALL {
            let req = Target::new(addr, sc)
                .and_then(|t| t.request())
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(req.uri().path(), sc.path(), "{}", sc.name());
            let h = req.headers();
            let anthropic = sc.client_dialect() == Dialect::Anthropic;
            assert_eq!(h.contains_key(X_API_KEY), anthropic, "{}", sc.name());
            assert_eq!(
                h.get(ANTHROPIC_VERSION_HEADER).map(|v| v.as_bytes()),
                anthropic.then_some(ANTHROPIC_VERSION.as_bytes()),
                "{}",
                sc.name()
            );
            assert_eq!(h.contains_key(AUTHORIZATION), !anthropic, "{}", sc.name());
        }
        let t = Target::new(addr, Scenario::AnthropicStream).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.uri.path(), "/v1/messages");
        let t = Target::new(addr, Scenario::TranslatedStream).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.uri.path(), "/v1/chat/completions");
    }
}
