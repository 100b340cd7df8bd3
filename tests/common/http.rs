//! Client-side helpers: a reqwest client that never uses a proxy, body readers with timeouts,
//! request builders and OpenAI error assertions.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// Upper bound for any single wait in the suite.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .expect("reqwest client")
}

/// A finished response: status, headers, whole body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends and reads the whole response (bounded by `WAIT`).
pub async fn send(req: reqwest::RequestBuilder) -> Reply {
    let fut = async {
        let resp = req.send().await.expect("send request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("read body");
        Reply {
            status,
            headers,
            body,
        }
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("request did not finish within 10 s")
}

/// POSTs raw bytes as JSON to `url`.
pub async fn post(url: &str, body: impl Into<Bytes>) -> Reply {
    send(
        client()
            .post(url)
            .header("content-type", "application/json")
            .body(body.into()),
    )
    .await
}

/// POSTs raw bytes with extra headers.
pub async fn post_with(url: &str, body: impl Into<Bytes>, headers: &[(&str, &str)]) -> Reply {
    let mut rb = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.into());
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    send(rb).await
}

pub async fn get(url: &str) -> Reply {
    send(client().get(url)).await
}

/// A small chat request body.
pub fn chat_body(model: &str, stream: Option<bool>) -> Vec<u8> {
    let mut v = json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hello"}],
    });
    if let Some(s) = stream {
        v["stream"] = json!(s);
    }
    serde_json::to_vec(&v).expect("json")
}

/// Reads a streaming response to its end, bounded by `WAIT`. Returns (bytes, ended_cleanly).
pub async fn read_stream(resp: reqwest::Response) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    let fut = async {
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => out.extend_from_slice(&c),
                Err(_) => return false,
            }
        }
        true
    };
    let clean = tokio::time::timeout(WAIT, fut)
        .await
        .expect("stream did not end within 10 s");
    (out, clean)
}

/// Reads from `stream` until `buf` contains `needle` (bounded by `timeout`); returns whether
/// it was found. `buf` keeps everything read.
pub async fn read_until<S>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    needle: &[u8],
    timeout: Duration,
) -> bool
where
    S: futures_util::Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    let fut = async {
        loop {
            if super::fixtures::contains(buf, needle) {
                return true;
            }
            match stream.next().await {
                Some(Ok(c)) => buf.extend_from_slice(&c),
                _ => return super::fixtures::contains(buf, needle),
            }
        }
    };
    tokio::time::timeout(timeout, fut).await.unwrap_or(false)
}

/// Asserts an OpenAI-shaped error body `{"error":{"message","type","param","code"}}` with
/// the given status; returns the message.
#[track_caller]
pub fn assert_openai_error(reply: &Reply, status: u16) -> String {
    assert_eq!(
        reply.status,
        status,
        "expected status {status}, got {} with body {}",
        reply.status,
        reply.text()
    );
    let v = reply.json();
    let err = v
        .get("error")
        .unwrap_or_else(|| panic!("no `error` object in {v}"));
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("error.message not a string in {v}"));
    assert!(!message.is_empty(), "empty error.message");
    assert!(
        err.get("type").is_some_and(Value::is_string),
        "error.type not a string in {v}"
    );
    assert!(err.get("param").is_some(), "error.param missing in {v}");
    assert!(err.get("code").is_some(), "error.code missing in {v}");
    message.to_string()
}

/// Raw TCP: connect to `addr`, write `bytes`, keep the connection open.
pub async fn raw_connect(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect timeout")
        .expect("connect")
}

/// Reads until EOF (or error) within `timeout`; None if the connection stayed open.
pub async fn read_to_close(
    stream: &mut tokio::net::TcpStream,
    timeout: Duration,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let fut = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(()) => Some(buf),
        Err(_) => None,
    }
}
