//! The resilience timings under tokio's paused clock: the service runs in-process (the real
//! `AppState` and `server::serve` on a 127.0.0.1 listener) against an in-process
//! `MockUpstream`, all on the test's runtime, so a 20 s `retry-after` or a 30 s breaker cooldown is
//! checked to the millisecond without waiting for it. Auto-advance moves the clock only when
//! every task is idle (after loopback I/O has been polled), so the virtual times measured here
//! are the gateway's own sleeps and deadlines.
//!
//! The HTTP client has no timeout of its own (a 10 s client timeout would fire first in virtual
//! time); each test is bounded by its real-time limit instead.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Black-box tests time the gateway from outside with the system clock.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{
    chat_body, fixture, oai, overloaded_503, Behavior, MockUpstream, CHAT_NONSTREAM, STREAM_TEXT,
};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The timer wheel's resolution: a sleep ends on the next millisecond tick.
const TICK: Duration = Duration::from_millis(2);

/// The gateway in-process; dropping it stops the server.
struct Service {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Service {
    async fn start(providers: &str, models: &str) -> Self {
        let yaml =
            format!("server: {{ request_log: false }}\nproviders:\n{providers}models:\n{models}");
        let config = ferrogate::config::parse_str(&yaml, &|_| None)
            .unwrap_or_else(|e| panic!("config: {e:?}\n{yaml}"));
        // A second AppState in this process finds the Prometheus recorder installed already.
        let state = ferrogate::state::AppState::new(&config, None, None, None).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(ferrogate::server::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Service { addr, _stop: stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: bytes::Bytes,
    /// Virtual time from sending to the end of the body.
    took: Duration,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn post(url: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
    let t0 = Instant::now();
    let mut rb = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let resp = rb.send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body");
    Answer {
        status,
        headers,
        body,
        took: t0.elapsed(),
    }
}

fn assert_between(got: Duration, low: Duration, high: Duration, what: &str) {
    assert!(
        got >= low && got <= high,
        "{what}: {got:?}, expected within [{low:?}, {high:?}]"
    );
}

/// 20 s rather than 30: the mock's hyper server closes idle keep-alive connections after its
/// default 30 s header-read timeout, which would race the retry on the pooled connection.
#[tokio::test(start_paused = true)]
async fn retry_after_20s_is_honoured_in_virtual_time() {
    let real = std::time::Instant::now();
    let up = MockUpstream::start().await;
    up.push(overloaded_503().header("retry-after", "20"));
    let svc = Service::start(
        &oai("a", &up),
        "  - name: m\n    targets: [{ provider: a, model: x }]\n    retry: { attempts: 2, retry_after_max_ms: 60000 }\n",
    )
    .await;
    let r = post(&svc.url("/v1/chat/completions"), chat_body("m", None), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_ref(), fixture(CHAT_NONSTREAM).as_slice());
    assert_eq!(r.header("x-ferrogate-attempts"), Some("2"));
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    assert_between(
        reqs[1].at - reqs[0].at,
        Duration::from_secs(20),
        Duration::from_secs(20) + TICK,
        "retry-after: 20",
    );
    assert_between(
        r.took,
        Duration::from_secs(20),
        Duration::from_secs(20) + TICK,
        "request",
    );
    assert!(real.elapsed() < Duration::from_secs(5), "no real 20 s wait");
}

#[tokio::test(start_paused = true)]
async fn retry_after_above_the_maximum_is_not_waited_for() {
    let up = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    up.set_default(overloaded_503().header("retry-after", "120"));
    let svc = Service::start(
        &format!("{}{}", oai("a", &up), oai("b", &b)),
        "  - name: m\n    targets: [{ provider: a, model: x }]\n    retry: { attempts: 3, retry_after_max_ms: 10000 }\n    fallbacks: [n]\n\
         \x20 - name: n\n    targets: [{ provider: b, model: y }]\n",
    )
    .await;
    let r = post(&svc.url("/v1/chat/completions"), chat_body("m", None), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ferrogate-fallback"), Some("n"));
    assert_eq!(up.request_count(), 1, "no retry into a 120 s retry-after");
    assert!(r.took < TICK, "moved on at once: {:?}", r.took);
}

#[tokio::test(start_paused = true)]
async fn backoff_stays_within_its_exponential_caps() {
    let up = MockUpstream::start().await;
    up.set_default(overloaded_503());
    let svc = Service::start(
        &oai("a", &up),
        "  - name: m\n    targets: [{ provider: a, model: x }]\n    retry: { attempts: 4, backoff_initial_ms: 1000, backoff_max_ms: 3000 }\n",
    )
    .await;
    let r = post(&svc.url("/v1/chat/completions"), chat_body("m", None), &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-ferrogate-attempts"), Some("4"));
    let reqs = up.requests();
    assert_eq!(reqs.len(), 4);
    // Full jitter: retry n waits up to min(max, initial * 2^(n-1)): 1 s, 2 s, then 3 s.
    let mut waited = Duration::ZERO;
    for (n, cap_ms) in [(1, 1000), (2, 2000), (3, 3000)] {
        let gap = reqs[n].at - reqs[n - 1].at;
        assert!(
            gap <= Duration::from_millis(cap_ms) + TICK,
            "retry {n} waited {gap:?}, cap {cap_ms} ms"
        );
        waited += gap;
    }
    // And the gateway did wait: without backoff the gaps are ~0 in virtual time. The three
    // waits are independent and uniform on [0, 1 s], [0, 2 s], [0, 3 s]; their sum stays under
    // 50 ms with probability 0.05³ / 6 / (1 × 2 × 3) ≈ 3.5e-6 (the corner simplex of the box),
    // about one run in 290 000.
    assert!(
        waited >= Duration::from_millis(50),
        "the three retries waited {waited:?} in all: no backoff?"
    );
    assert!(
        r.took <= Duration::from_millis(6000) + 3 * TICK,
        "{:?}",
        r.took
    );
}

#[tokio::test(start_paused = true)]
async fn hedge_starts_exactly_after_its_delay() {
    let slow = MockUpstream::start().await;
    let fast = MockUpstream::start().await;
    slow.set_default(
        Behavior::json_fixture(200, CHAT_NONSTREAM).head_delay(Duration::from_secs(10)),
    );
    let svc = Service::start(
        &format!("{}{}", oai("slow", &slow), oai("fast", &fast)),
        "  - name: m\n    targets: [{ provider: slow, model: x, weight: 1000000 }, { provider: fast, model: y, weight: 1 }]\n    hedge: { after_ms: 2000 }\n",
    )
    .await;
    let r = post(&svc.url("/v1/chat/completions"), chat_body("m", None), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ferrogate-target"), Some("fast/y"));
    let gap = fast.last_request().at - slow.last_request().at;
    assert_between(
        gap,
        Duration::from_secs(2),
        Duration::from_secs(2) + TICK,
        "hedge delay",
    );
    assert_between(
        r.took,
        Duration::from_secs(2),
        Duration::from_secs(2) + TICK,
        "hedged request",
    );
    assert!(slow.wait_cancels(1, Duration::from_secs(1)).await);
}

#[tokio::test(start_paused = true)]
async fn first_byte_override_fires_at_its_virtual_time() {
    let up = MockUpstream::start().await;
    up.push(Behavior::json_fixture(200, CHAT_NONSTREAM).head_delay(Duration::from_secs(60)));
    let svc = Service::start(
        &oai("a", &up),
        "  - name: m\n    targets: [{ provider: a, model: x }]\n",
    )
    .await;
    let r = post(
        &svc.url("/v1/chat/completions"),
        chat_body("m", None),
        &[("x-ferrogate-first-byte-timeout-ms", "7000")],
    )
    .await;
    assert_eq!(r.status, 504);
    assert_between(
        r.took,
        Duration::from_secs(7),
        Duration::from_secs(7) + TICK,
        "first-byte deadline",
    );
}

/// A stream whose upstream sends its head and a role-only chunk, then nothing: the first-token
/// deadline (5 s) answers 504 exactly 5 s after the request went upstream.
#[tokio::test(start_paused = true)]
async fn first_token_deadline_fires_at_its_virtual_time() {
    let up = MockUpstream::start().await;
    up.push(Behavior::openai_stream(STREAM_TEXT, true).stall_after(1));
    let svc = Service::start(
        &oai("a", &up),
        "  - name: m\n    targets: [{ provider: a, model: x }]\n    timeouts: { first_token_ms: 5000 }\n",
    )
    .await;
    // Some virtual time has passed before the request (as after any earlier wait in a test).
    tokio::time::sleep(Duration::from_secs(60)).await;
    let body = serde_json::to_vec(&json!({
        "model": "m",
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": true,
    }))
    .unwrap();
    let r = post(&svc.url("/v1/chat/completions"), body, &[]).await;
    assert_eq!(r.status, 504, "{}", String::from_utf8_lossy(&r.body));
    assert_between(
        r.took,
        Duration::from_secs(5),
        Duration::from_secs(5) + TICK,
        "first-token deadline",
    );
}

#[tokio::test(start_paused = true)]
async fn breaker_cooldown_in_virtual_time() {
    let up = MockUpstream::start().await;
    up.push(Behavior::json(
        500,
        json!({"error": {"message": "boom", "type": "server_error", "param": null, "code": null}})
            .to_string(),
    ));
    // The mock upstream closes a connection idle for 30 s (hyper's header-read timeout), the
    // very moment the probe below reuses it; a request written into a connection the server is
    // closing is lost, so (as with any HTTP client) the pool must let idle connections go
    // before the server does. Without `idle_ms` this test failed about one run in eight.
    let provider = format!(
        "  a: {{ kind: openai, base_url: \"{}\", keys: [\"k\"], timeouts: {{ idle_ms: 20000 }}, breaker: {{ consecutive_failures: 1, cooldown_ms: 30000 }} }}\n",
        up.base_url()
    );
    let svc = Service::start(
        &provider,
        "  - name: m\n    targets: [{ provider: a, model: x }]\n    deadline_ms: 600000\n",
    )
    .await;
    let url = svc.url("/v1/chat/completions");
    assert_eq!(post(&url, chat_body("m", None), &[]).await.status, 500);
    let r = post(&url, chat_body("m", None), &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("30"));
    // Just before the end of the cooldown: still open.
    tokio::time::sleep(Duration::from_millis(29_900)).await;
    assert_eq!(post(&url, chat_body("m", None), &[]).await.status, 503);
    assert_eq!(up.request_count(), 1);
    // After it: one probe goes up and closes the breaker.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = post(&url, chat_body("m", None), &[]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(up.request_count(), 2);
}
