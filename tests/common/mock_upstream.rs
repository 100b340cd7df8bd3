//! `MockUpstream`: a scripted OpenAI-compatible upstream (hyper 1, http1, keep-alive) on
//! 127.0.0.1:0 that records every request and reports mid-stream cancellations.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::AbortHandle;

use super::fixtures::{fixture, sse_events, strip_usage};

type Body = BoxBody<Bytes, std::io::Error>;

/// How a response body is cut into HTTP (chunked) frames.
#[derive(Clone, Debug, PartialEq)]
pub enum Framing {
    /// One frame (a `Content-Length` body unless delays/stall/drop/gate force streaming).
    Whole,
    /// One frame per SSE event (ending `\n\n` or `\r\n\r\n`, see `sse_events`).
    SseEvents,
    /// Frames of `n` bytes (odd boundaries, splitting events and lines).
    Every(usize),
}

/// Lets a test release upstream frames one at a time.
#[derive(Clone)]
pub struct Gate {
    permits: Arc<Semaphore>,
    sent: Arc<AtomicUsize>,
    sent_notify: Arc<Notify>,
}

impl Gate {
    fn new() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(0)),
            sent: Arc::new(AtomicUsize::new(0)),
            sent_notify: Arc::new(Notify::new()),
        }
    }

    /// Allows `n` more frames to be sent.
    pub fn release(&self, n: usize) {
        self.permits.add_permits(n);
    }

    /// Frames handed to hyper so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` frames were handed to hyper.
    pub async fn wait_sent(&self, n: usize, timeout: Duration) -> bool {
        wait_count(&self.sent, &self.sent_notify, n, timeout).await
    }
}

/// One scripted response.
#[derive(Clone)]
pub struct Behavior {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub framing: Framing,
    pub head_delay: Duration,
    pub frame_delay: Duration,
    pub stall_after: Option<usize>,
    pub drop_after: Option<usize>,
    pub gate: Option<Gate>,
    /// Read the request, then close the connection without any response (a reset before
    /// headers, as a crashing or overloaded upstream produces).
    pub reset: bool,
}

impl Behavior {
    /// A JSON response with the given status and body bytes.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
            framing: Framing::Whole,
            head_delay: Duration::ZERO,
            frame_delay: Duration::ZERO,
            stall_after: None,
            drop_after: None,
            gate: None,
            reset: false,
        }
    }

    /// Accepts the request, then closes the connection without sending a response head.
    pub fn reset() -> Self {
        Self {
            reset: true,
            ..Self::json(200, Bytes::new())
        }
    }

    /// A JSON response whose body is a fixture file.
    pub fn json_fixture(status: u16, name: &str) -> Self {
        Self::json(status, fixture(name))
    }

    /// A 200 response with any content type (e.g. Bedrock's binary
    /// `application/vnd.amazon.eventstream`), sent as one frame unless re-framed.
    pub fn bytes(content_type: &str, body: impl Into<Bytes>) -> Self {
        Self {
            headers: vec![("content-type".into(), content_type.into())],
            ..Self::json(200, body)
        }
    }

    /// A 200 `text/event-stream` response, one frame per SSE event.
    pub fn sse(body: impl Into<Bytes>) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: body.into(),
            framing: Framing::SseEvents,
            ..Self::json(200, Bytes::new())
        }
    }

    /// A 200 stream replaying an SSE fixture byte-for-byte.
    pub fn sse_fixture(name: &str) -> Self {
        Self::sse(fixture(name))
    }

    /// An OpenAI stream built from a fixture recorded with `include_usage:true`; with
    /// `include_usage == false` the usage parts are removed (what OpenAI sends without it).
    pub fn openai_stream(name: &str, include_usage: bool) -> Self {
        let raw = fixture(name);
        if include_usage {
            Self::sse(raw)
        } else {
            Self::sse(strip_usage(&raw))
        }
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Frames of `n` bytes regardless of event boundaries.
    pub fn split_every(self, n: usize) -> Self {
        assert!(n > 0);
        self.framing(Framing::Every(n))
    }

    pub fn head_delay(mut self, d: Duration) -> Self {
        self.head_delay = d;
        self
    }

    pub fn frame_delay(mut self, d: Duration) -> Self {
        self.frame_delay = d;
        self
    }

    /// Sends `k` frames, then neither sends more nor ends the body.
    pub fn stall_after(mut self, k: usize) -> Self {
        self.stall_after = Some(k);
        self
    }

    /// Sends `k` frames, then aborts the connection without terminating the chunked body.
    pub fn drop_after(mut self, k: usize) -> Self {
        self.drop_after = Some(k);
        self
    }

    /// Each frame waits for an explicit `Gate::release`.
    pub fn gated(mut self) -> (Self, Gate) {
        let gate = Gate::new();
        self.gate = Some(gate.clone());
        (self, gate)
    }

    /// The frames this behaviour sends (before stall/drop truncation).
    pub fn frames(&self) -> Vec<Bytes> {
        match self.framing {
            Framing::Whole => vec![self.body.clone()],
            Framing::SseEvents => sse_events(&self.body)
                .into_iter()
                .map(Bytes::from)
                .collect(),
            Framing::Every(n) => self.body.chunks(n).map(Bytes::copy_from_slice).collect(),
        }
    }

    fn needs_streaming(&self) -> bool {
        self.framing != Framing::Whole
            || !self.frame_delay.is_zero()
            || self.stall_after.is_some()
            || self.drop_after.is_some()
            || self.gate.is_some()
    }
}

/// A request as the upstream received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, e.g. `/v1/chat/completions`.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When the request head arrived (tokio's clock, so paused-clock tests see virtual time).
    pub at: tokio::time::Instant,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "upstream body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

#[derive(Default)]
struct State {
    queue: Mutex<VecDeque<Behavior>>,
    default: Mutex<Option<Behavior>>,
    requests: Mutex<Vec<RecordedRequest>>,
    request_count: AtomicUsize,
    request_notify: Notify,
    cancels: AtomicUsize,
    cancel_notify: Notify,
    completed: AtomicUsize,
    completed_notify: Notify,
    connections: AtomicUsize,
    tasks: Mutex<Vec<AbortHandle>>,
}

pub struct MockUpstream {
    addr: SocketAddr,
    state: Arc<State>,
}

impl MockUpstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind mock upstream");
        let addr = listener.local_addr().expect("mock addr");
        let state = Arc::new(State::default());
        let st = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st2 = st.clone();
                let conn = tokio::spawn(async move {
                    // An `Err` from the service makes hyper close the connection without
                    // writing a response: that is how `Behavior::reset` is played.
                    let svc = service_fn(move |req| {
                        let st3 = st2.clone();
                        async move { handle(st3, req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .timer(TokioTimer::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                st.tasks
                    .lock()
                    .expect("tasks lock")
                    .push(conn.abort_handle());
            }
        });
        state
            .tasks
            .lock()
            .expect("tasks lock")
            .push(accept.abort_handle());
        Self { addr, state }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues a behaviour (FIFO) for the next request.
    pub fn push(&self, b: Behavior) {
        self.state.queue.lock().expect("queue").push_back(b);
    }

    /// Drops every queued behaviour (e.g. the one a test armed on the target that a request
    /// did not go to).
    pub fn clear_queue(&self) {
        self.state.queue.lock().expect("queue").clear();
    }

    /// Behaviour used when the queue is empty (otherwise: chat/completions fixture, or the
    /// embeddings fixture for `/embeddings`).
    pub fn set_default(&self, b: Behavior) {
        *self.state.default.lock().expect("default") = Some(b);
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().expect("requests").clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.request_count.load(Ordering::SeqCst)
    }

    /// The one request the upstream received (panics on none or several, naming their paths).
    #[track_caller]
    pub fn only_request(&self) -> RecordedRequest {
        let mut reqs = self.requests();
        assert_eq!(
            reqs.len(),
            1,
            "expected exactly one upstream request, got {:?}",
            reqs.iter().map(|r| &r.path).collect::<Vec<_>>()
        );
        reqs.remove(0)
    }

    /// The last recorded request (panics if none).
    pub fn last_request(&self) -> RecordedRequest {
        self.requests()
            .pop()
            .expect("the upstream received no request")
    }

    pub async fn wait_requests(&self, n: usize, timeout: Duration) -> bool {
        wait_count(
            &self.state.request_count,
            &self.state.request_notify,
            n,
            timeout,
        )
        .await
    }

    /// Streams the gateway abandoned before the end (send failed / connection closed).
    pub fn cancels(&self) -> usize {
        self.state.cancels.load(Ordering::SeqCst)
    }

    pub async fn wait_cancels(&self, n: usize, timeout: Duration) -> bool {
        wait_count(&self.state.cancels, &self.state.cancel_notify, n, timeout).await
    }

    /// Streamed responses whose every frame was handed to hyper and the body ended normally.
    pub fn completed(&self) -> usize {
        self.state.completed.load(Ordering::SeqCst)
    }

    pub async fn wait_completed(&self, n: usize, timeout: Duration) -> bool {
        wait_count(
            &self.state.completed,
            &self.state.completed_notify,
            n,
            timeout,
        )
        .await
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        if let Ok(tasks) = self.state.tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}

/// Waits until `counter >= n` (woken by `notify.notify_waiters()`), at most `timeout`.
pub async fn wait_count(
    counter: &AtomicUsize,
    notify: &Notify,
    n: usize,
    timeout: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if counter.load(Ordering::SeqCst) >= n {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return counter.load(Ordering::SeqCst) >= n;
        }
    }
}

fn bump(counter: &AtomicUsize, notify: &Notify) {
    counter.fetch_add(1, Ordering::SeqCst);
    notify.notify_waiters();
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let at = tokio::time::Instant::now();
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let headers = req.headers().clone();
    let body = match req.into_body().collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    };
    state
        .requests
        .lock()
        .expect("requests")
        .push(RecordedRequest {
            method: method.clone(),
            path: path.clone(),
            headers,
            body,
            at,
        });
    bump(&state.request_count, &state.request_notify);

    let bare = path.split('?').next().unwrap_or("");
    // Every dialect's generation endpoints: OpenAI (and Azure), Responses, Anthropic
    // Messages and count_tokens, Gemini generateContent, Bedrock Converse.
    let known = bare.ends_with("/chat/completions")
        || bare.ends_with("/completions")
        || bare.ends_with("/embeddings")
        || bare.ends_with("/responses")
        || bare.ends_with("/messages")
        || bare.ends_with("/messages/count_tokens")
        || bare.ends_with(":generateContent")
        || bare.ends_with(":streamGenerateContent")
        || bare.ends_with("/converse")
        || bare.ends_with("/converse-stream");
    if method != "POST" || !known {
        let mut r = Response::new(full(
            r#"{"error":{"message":"mock: no such route","type":"invalid_request_error","param":null,"code":null}}"#,
        ));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return Ok(r);
    }

    let queued = state.queue.lock().expect("queue").pop_front();
    let behavior = match queued {
        Some(b) => b,
        None => match state.default.lock().expect("default").clone() {
            Some(b) => b,
            None if bare.ends_with("/embeddings") => {
                Behavior::json_fixture(200, super::fixtures::EMBEDDINGS)
            }
            None => Behavior::json_fixture(200, super::fixtures::CHAT_NONSTREAM),
        },
    };
    if behavior.reset {
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "mock: closing the connection without a response",
        ));
    }
    Ok(respond(state, behavior).await)
}

/// Counts a cancellation if dropped while armed: hyper drops a service future when the peer
/// (the gateway) closes the connection before the response head is sent.
struct CancelOnDrop(Option<Arc<State>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(state) = self.0.take() {
            bump(&state.cancels, &state.cancel_notify);
        }
    }
}

async fn respond(state: Arc<State>, b: Behavior) -> Response<Body> {
    if !b.head_delay.is_zero() {
        let mut guard = CancelOnDrop(Some(Arc::clone(&state)));
        tokio::time::sleep(b.head_delay).await;
        guard.0 = None;
    }
    let body = if b.needs_streaming() {
        let (tx, mut rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        tokio::spawn(stream_frames(state, b.clone(), tx));
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        BodyExt::boxed(StreamBody::new(stream))
    } else {
        full(b.body.clone())
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(b.status).expect("valid status");
    for (k, v) in &b.headers {
        resp.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(v).expect("header value"),
        );
    }
    resp
}

async fn stream_frames(
    state: Arc<State>,
    b: Behavior,
    tx: mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
) {
    let cancelled = || bump(&state.cancels, &state.cancel_notify);
    for (i, frame) in b.frames().into_iter().enumerate() {
        if b.stall_after == Some(i) {
            // Stall forever; report when the gateway gives up on us.
            tx.closed().await;
            cancelled();
            return;
        }
        if b.drop_after == Some(i) {
            let _ = tx
                .send(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "mock: dropping connection mid-stream",
                )))
                .await;
            return;
        }
        if let Some(gate) = &b.gate {
            tokio::select! {
                permit = gate.permits.acquire() => {
                    match permit {
                        Ok(p) => p.forget(),
                        Err(_) => return,
                    }
                }
                _ = tx.closed() => { cancelled(); return; }
            }
        }
        if i > 0 && !b.frame_delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(b.frame_delay) => {}
                _ = tx.closed() => { cancelled(); return; }
            }
        }
        if tx.send(Ok(Frame::data(frame))).await.is_err() {
            cancelled();
            return;
        }
        if let Some(gate) = &b.gate {
            bump(&gate.sent, &gate.sent_notify);
        }
    }
    if b.stall_after.is_some() {
        // stall_after >= frame count: stall after the last frame without ending the body.
        tx.closed().await;
        cancelled();
        return;
    }
    if b.drop_after.is_some() {
        let _ = tx
            .send(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "mock: dropping connection at end",
            )))
            .await;
        return;
    }
    // Wait until hyper has taken the last frame (channel drained) before counting completion.
    let _ = tx.reserve().await;
    bump(&state.completed, &state.completed_notify);
}

/// An OpenAI error body `{"error":{"message","type","param":null,"code"}}`.
pub fn openai_error(message: &str, kind: &str, code: Option<&str>) -> String {
    serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        .to_string()
}

/// OpenAI's 503 when the engine is overloaded (a retryable failure).
pub fn overloaded_503() -> Behavior {
    Behavior::json(
        503,
        openai_error(
            "The engine is currently overloaded, please try again later",
            "server_error",
            None,
        ),
    )
}

/// A 127.0.0.1 port with nothing listening (connections are refused).
pub fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}
