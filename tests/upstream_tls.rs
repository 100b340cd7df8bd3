//! The gateway's own upstream pool against real servers: HTTPS with a private CA, HTTP/2 chosen
//! by ALPN (one shared connection), HTTP/1.1 keep-alive reuse over TLS, streaming over h2,
//! untrusted certificates, and idle connections the server closed meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::http::Version;
use bytes::Bytes;
use common::tls::{Answer, Pki, TlsUpstream};
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
const H1_ONLY: &[&[u8]] = &[b"http/1.1"];

/// Every test runs under this bound (gateway start included).
const TEST_BOUND: Duration = Duration::from_secs(10);

async fn bounded<F: Future<Output = ()>>(fut: F) {
    tokio::time::timeout(TEST_BOUND, fut)
        .await
        .expect("test did not finish within 10 s");
}

/// A config with one openai provider `tls` at `base_url` and model `m` -> `tls/upstream-m`.
fn config(base_url: &str, ca_file: Option<&Path>) -> String {
    let ca = match ca_file {
        Some(p) => format!("    ca_file: {}\n", p.display()),
        None => String::new(),
    };
    format!(
        "providers:\n  tls:\n    kind: openai\n    base_url: {base_url}\n    keys: [\"sk-tls-test\"]\n{ca}\
         \x20   timeouts: {{ connect_ms: 2000, first_byte_ms: 5000, total_ms: 8000 }}\n\
         models:\n  - name: m\n    targets: [{{ provider: tls, model: upstream-m }}]\n"
    )
}

/// A gateway pointing at `https://localhost:PORT/v1`, trusting `pki`'s CA; keeps the CA file's
/// directory alive alongside.
async fn gateway_for(up: &TlsUpstream, pki: &Pki) -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = pki.write_ca(dir.path());
    let base = format!("https://localhost:{}/v1", up.port());
    let gw = Gateway::start(&config(&base, Some(&ca))).await;
    (gw, dir)
}

/// Sends `n` sequential non-stream chat requests; each must be a 200 with the fixture bytes.
async fn chat_n_times(gw: &Gateway, n: usize) {
    let expected = fixture(CHAT_NONSTREAM);
    for i in 0..n {
        let reply = post(&gw.chat_url(), chat_body("m", None)).await;
        assert_eq!(
            reply.status,
            200,
            "request {i}: {}\ngateway output:\n{}",
            reply.text(),
            gw.all_output()
        );
        assert_bytes_eq(&reply.body, &expected, &format!("request {i} body"));
    }
}

// ---------------------------------------------------------------- TLS + ALPN

#[tokio::test]
async fn https_upstream_with_private_ca_negotiates_http2() {
    bounded(async {
        let pki = Pki::private_ca();
        let answer = Answer::Json(fixture(CHAT_NONSTREAM).into());
        let up = TlsUpstream::start(&pki, H2_AND_H1, answer).await;
        let (gw, _dir) = gateway_for(&up, &pki).await;

        chat_n_times(&gw, 5).await;

        let seen = up.seen();
        assert_eq!(seen.len(), 5, "upstream requests");
        for (i, s) in seen.iter().enumerate() {
            assert_eq!(s.version, Version::HTTP_2, "request {i} version");
            assert_eq!(s.path, "/v1/chat/completions", "request {i} path");
            let body: Value = serde_json::from_slice(&s.body).expect("upstream body is JSON");
            assert_eq!(body["model"], json!("upstream-m"), "request {i} model");
        }
        assert_eq!(
            up.connections(),
            1,
            "HTTP/2 requests must share one connection"
        );
    })
    .await;
}

#[tokio::test]
async fn https_upstream_http1_only_reuses_keep_alive_connections() {
    bounded(async {
        let pki = Pki::private_ca();
        let answer = Answer::Json(fixture(CHAT_NONSTREAM).into());
        let up = TlsUpstream::start(&pki, H1_ONLY, answer).await;
        let (gw, _dir) = gateway_for(&up, &pki).await;

        chat_n_times(&gw, 5).await;

        let versions: Vec<Version> = up.seen().iter().map(|s| s.version).collect();
        assert_eq!(versions, vec![Version::HTTP_11; 5], "upstream versions");
        assert_eq!(
            up.connections(),
            1,
            "sequential HTTP/1.1 requests must reuse the kept-alive connection"
        );
    })
    .await;
}

#[tokio::test]
async fn https_stream_passes_through_over_http2() {
    bounded(async {
        let pki = Pki::private_ca();
        let sse = fixture(STREAM_TEXT);
        let up = TlsUpstream::start(&pki, H2_AND_H1, Answer::Sse(sse.clone().into())).await;
        let (gw, _dir) = gateway_for(&up, &pki).await;

        let mut body = fixture_request_body(STREAM_TEXT_REQUEST);
        body["model"] = json!("m");
        assert_eq!(body["stream_options"]["include_usage"], json!(true));
        let reply = post(&gw.chat_url(), serde_json::to_vec(&body).expect("json")).await;
        assert_eq!(
            reply.status,
            200,
            "{}\ngateway output:\n{}",
            reply.text(),
            gw.all_output()
        );
        assert!(
            reply
                .header("content-type")
                .is_some_and(|ct| ct.starts_with("text/event-stream")),
            "content-type: {:?}",
            reply.header("content-type")
        );
        assert_bytes_eq(&reply.body, &sse, "client stream");

        let seen = up.seen();
        assert_eq!(seen.len(), 1, "upstream requests");
        assert_eq!(seen[0].version, Version::HTTP_2, "upstream version");
        assert_eq!(up.connections(), 1, "upstream connections");
    })
    .await;
}

#[tokio::test]
async fn untrusted_certificate_is_a_502() {
    bounded(async {
        let pki = Pki::self_signed();
        let answer = Answer::Json(fixture(CHAT_NONSTREAM).into());
        let up = TlsUpstream::start(&pki, H2_AND_H1, answer).await;
        let base = format!("https://localhost:{}/v1", up.port());
        let gw = Gateway::start(&config(&base, None)).await;

        let reply = post(&gw.chat_url(), chat_body("m", None)).await;
        assert_openai_error(&reply, 502);
        assert_eq!(
            reply.json()["error"]["type"],
            json!("upstream_error"),
            "{}",
            reply.text()
        );
        assert!(up.connections() >= 1, "the gateway never tried to connect");
        assert!(
            up.seen().is_empty(),
            "a request reached the untrusted server: {:?}",
            up.seen()
        );
    })
    .await;
}

// ---------------------------------------------------------------- stale idle connections

/// A plain-HTTP upstream on a raw socket: per connection it answers exactly one request with a
/// keep-alive response (the non-stream fixture), then waits `linger` and closes the socket, as
/// a server with a short idle timeout would.
struct OneShotUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
    task: tokio::task::AbortHandle,
}

impl OneShotUpstream {
    async fn start(linger: Duration) -> OneShotUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let body = Bytes::from(fixture(CHAT_NONSTREAM));
        let (conns, done) = (connections.clone(), answered.clone());
        let task = tokio::spawn(async move {
            // Owned by this task: aborting it aborts every connection too.
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    break;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let (body, done) = (body.clone(), done.clone());
                tasks.spawn(async move {
                    // An error means the gateway hung up first: nothing to answer.
                    let _ = answer_once(sock, &body, linger, &done).await;
                });
                while tasks.try_join_next().is_some() {}
            }
        })
        .abort_handle();
        OneShotUpstream {
            addr,
            connections,
            answered,
            task,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }
}

impl Drop for OneShotUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request (head up to `\r\n\r\n`, then `content-length` bytes of body),
/// writes a keep-alive 200 with `body`, waits `linger` and closes the connection.
async fn answer_once(
    mut sock: TcpStream,
    body: &[u8],
    linger: Duration,
    answered: &AtomicUsize,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos + 4;
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let content_length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().expect("content-length value"))
        .unwrap_or(0);
    while buf.len() < head_end + content_length {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    sock.write_all(&response).await?;
    sock.flush().await?;
    answered.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(linger).await;
    drop(sock); // the "idle timeout": close without saying so in the response
    Ok(())
}

/// Two requests with `pause` between them against an upstream that closes each connection
/// `linger` after answering: both succeed, over two connections.
async fn stale_connection_case(linger: Duration, pause: Duration) {
    let up = OneShotUpstream::start(linger).await;
    let gw = Gateway::start(&config(&up.base_url(), None)).await;
    let expected = fixture(CHAT_NONSTREAM);

    let first = post(&gw.chat_url(), chat_body("m", None)).await;
    assert_eq!(first.status, 200, "first request: {}", first.text());
    assert_bytes_eq(&first.body, &expected, "first body");

    tokio::time::sleep(pause).await;

    let second = post(&gw.chat_url(), chat_body("m", None)).await;
    assert_eq!(
        second.status,
        200,
        "second request (after the upstream closed the idle connection): {}\ngateway output:\n{}",
        second.text(),
        gw.all_output()
    );
    assert_bytes_eq(&second.body, &expected, "second body");
    assert_eq!(up.answered(), 2, "requests answered by the upstream");
    assert_eq!(up.connections(), 2, "upstream connections");
}

#[tokio::test]
async fn stale_idle_connection_is_replaced_transparently() {
    bounded(stale_connection_case(
        Duration::from_millis(100),
        Duration::from_millis(300),
    ))
    .await;
}

#[tokio::test]
async fn idle_connection_closed_right_after_the_response_is_replaced() {
    bounded(stale_connection_case(
        Duration::ZERO,
        Duration::from_millis(300),
    ))
    .await;
}
