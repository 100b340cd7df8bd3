//! The resilience features through the real binary and real time: retries (which failures,
//! backoff and `retry-after`, the attempt budget), key rotation on 401, fallbacks (configured,
//! per request, by failure kind), first-token / stall / total deadlines and their per-request
//! overrides, the circuit breaker, concurrency limits, balancing strategies, hedging, and the
//! rule that nothing is retried once bytes reached the client.
//!
//! Each provider is its own `MockUpstream`, so the order of targets and the number of attempts
//! are read from what each mock received. Where a test needs a target to be tried first, the
//! targets' weights are 1 000 000 : 1 (the other order has a one-in-a-million chance).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Black-box tests time the gateway from outside with the system clock.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Topology helpers
// ---------------------------------------------------------------------------------------------

/// First choice by weight (see the file comment).
const HEAVY: u32 = 1_000_000;

const CHAT: &str = "/v1/chat/completions";
const MESSAGES: &str = "/v1/messages";
const ANT_NONSTREAM: &str = "anthropic-messages-nonstream.json";
const ANT_STREAM: &str = "anthropic-stream-text-tool-use.sse";
const ANT_OVERLOADED: &str = "anthropic-stream-error-overloaded.sse";
const ANT_TEXT: &str = "Hello! I'm doing well, thanks for asking. How are you doing today? Is there anything I can help you with?";

/// An OpenAI-kind provider with extra YAML fields (flow style, e.g. `breaker: {...}`).
fn oai_with(id: &str, up: &MockUpstream, extra: &str) -> String {
    format!(
        "  {id}: {{ kind: openai, base_url: \"{}\", keys: [\"key-{id}\"], {extra} }}\n",
        up.base_url()
    )
}

/// An Anthropic provider `id` on `up`, with key `key-{id}`.
fn ant(id: &str, up: &MockUpstream) -> String {
    format!(
        "  {id}: {{ kind: anthropic, base_url: \"http://{}\", keys: [\"key-{id}\"] }}\n",
        up.addr()
    )
}

async fn gateway(providers: &[String], models: &str) -> Gateway {
    let yaml = format!(
        "server: {{ request_log: false }}\nproviders:\n{}models:\n{models}",
        providers.concat()
    );
    Gateway::start(&yaml).await
}

async fn chat(gw: &Gateway, model: &str) -> Reply {
    post(&gw.url(CHAT), chat_body(model, None)).await
}

async fn chat_with(gw: &Gateway, model: &str, headers: &[(&str, &str)]) -> Reply {
    post_with(&gw.url(CHAT), chat_body(model, None), headers).await
}

/// A streamed chat request that asks for usage itself (so the gateway injects and strips
/// nothing, and pass-through bytes can be compared with the fixture exactly).
fn stream_body(model: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": true,
        "stream_options": {"include_usage": true},
    }))
    .unwrap()
}

fn anthropic_body(model: &str, stream: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": stream,
    }))
    .unwrap()
}

async fn anthropic(gw: &Gateway, model: &str, stream: bool) -> Reply {
    post_with(
        &gw.url(MESSAGES),
        anthropic_body(model, stream),
        &[("anthropic-version", "2023-06-01")],
    )
    .await
}

/// Sends a streamed OpenAI chat request; returns the reply (whole body read).
async fn stream_chat(gw: &Gateway, model: &str, headers: &[(&str, &str)]) -> Reply {
    post_with(&gw.url(CHAT), stream_body(model), headers).await
}

fn server_error_500() -> Behavior {
    Behavior::json(
        500,
        openai_error("The server had an error", "server_error", None),
    )
}

/// `/admin/health` as JSON.
async fn health(gw: &Gateway) -> Value {
    get(&gw.url("/admin/health")).await.json()
}

fn breaker_of(h: &Value, target: &str) -> String {
    h["targets"]
        .as_array()
        .expect("targets array")
        .iter()
        .find(|t| t["target"] == target)
        .unwrap_or_else(|| panic!("no target {target} in {h}"))["breaker"]
        .as_str()
        .expect("breaker state")
        .to_string()
}

fn disabled_keys(h: &Value, provider: &str) -> Vec<u64> {
    h["providers"]
        .as_array()
        .expect("providers array")
        .iter()
        .find(|p| p["provider"] == provider)
        .unwrap_or_else(|| panic!("no provider {provider} in {h}"))["disabled_keys"]
        .as_array()
        .expect("disabled_keys")
        .iter()
        .map(|v| v.as_u64().expect("key index"))
        .collect()
}

fn assert_close(got: Duration, want: Duration, tolerance: Duration, what: &str) {
    assert!(
        got + tolerance >= want && got <= want + tolerance,
        "{what}: {got:?}, expected {want:?} ± {tolerance:?}"
    );
}

/// The SSE frames the mock sends for `b` (its framing), the first `n` of them concatenated.
fn first_frames(b: &Behavior, n: usize) -> Vec<u8> {
    b.frames().iter().take(n).flat_map(|f| f.to_vec()).collect()
}

/// The last SSE event of a body, parsed (an error event's JSON).
fn last_event_json(body: &[u8]) -> Value {
    let events = sse_events(body);
    let last = events
        .iter()
        .rev()
        .find(|e| !e.iter().all(|b| b.is_ascii_whitespace()))
        .expect("at least one event");
    event_json(last).unwrap_or_else(|| {
        panic!(
            "last event is not JSON: {:?}",
            String::from_utf8_lossy(last)
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Retries
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn retry_503_then_200_waits_retry_after_ms() {
    let up = MockUpstream::start().await;
    up.push(overloaded_503().header("retry-after-ms", "300"));
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: m\n    targets: [{ provider: a, model: up-m }]\n    retry: { attempts: 3, backoff_initial_ms: 5000, backoff_max_ms: 5000 }\n",
    )
    .await;

    let r = chat(&gw, "m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body.as_ref(), fixture(CHAT_NONSTREAM).as_slice());
    assert_eq!(r.header("x-ferrogate-attempts").as_deref(), Some("2"));
    assert_eq!(r.header("x-ferrogate-target").as_deref(), Some("a/up-m"));
    assert_eq!(up.request_count(), 2);
    let reqs = up.requests();
    let gap = reqs[1].at - reqs[0].at;
    // retry-after-ms (300) replaces the 0..5 s backoff: neither shorter nor the backoff.
    assert!(
        gap >= Duration::from_millis(300) && gap < Duration::from_millis(1_000),
        "second attempt {gap:?} after the first; retry-after-ms was 300"
    );
    let retried = gw
        .metric(
            "ferrogate_upstream_attempts_total",
            &[("target", "a/up-m"), ("outcome", "retry")],
        )
        .await;
    let ok = gw
        .metric(
            "ferrogate_upstream_attempts_total",
            &[("target", "a/up-m"), ("outcome", "success")],
        )
        .await;
    assert_eq!((retried, ok), (1.0, 1.0));
}

#[tokio::test]
async fn rate_limit_429_is_retried_but_insufficient_quota_is_not() {
    let up = MockUpstream::start().await;
    up.push(Behavior::json_fixture(429, ERR_429).header("retry-after-ms", "10"));
    let quota = openai_error(
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
        Some("insufficient_quota"),
    );
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: m\n    targets: [{ provider: a, model: up-m }]\n    retry: { attempts: 3, backoff_initial_ms: 10, backoff_max_ms: 10 }\n",
    )
    .await;

    // An ordinary rate limit: retried.
    let r = chat(&gw, "m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ferrogate-attempts").as_deref(), Some("2"));
    assert_eq!(up.request_count(), 2);

    // An empty account: the same key can't succeed, and it is the only one.
    up.push(Behavior::json(429, quota.clone()));
    let r = chat(&gw, "m").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.text(), quota, "the upstream's answer is passed through");
    assert_eq!(r.header("x-ferrogate-attempts").as_deref(), Some("1"));
    assert_eq!(
        up.request_count(),
        3,
        "insufficient_quota must not be retried"
    );
}

#[tokio::test]
async fn bad_request_400_is_not_retried_and_passed_through() {
    let up = MockUpstream::start().await;
    up.set_default(Behavior::json_fixture(400, ERR_400_INVALID_PARAM));
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: m\n    targets: [{ provider: a, model: up-m }]\n    retry: { attempts: 3, backoff_initial_ms: 10, backoff_max_ms: 10 }\n",
    )
    .await;
    let r = chat(&gw, "m").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body.as_ref(), fixture(ERR_400_INVALID_PARAM).as_slice());
    assert_eq!(r.header("x-ferrogate-attempts").as_deref(), Some("1"));
    assert!(!up.wait_requests(2, Duration::from_millis(200)).await);
    assert_eq!(up.request_count(), 1);
    let fatal = gw
        .metric(
            "ferrogate_upstream_attempts_total",
            &[("target", "a/up-m"), ("outcome", "fatal")],
        )
        .await;
    assert_eq!(fatal, 1.0);
}

#[tokio::test]
async fn anthropic_529_overloaded_is_retried() {
    let up = MockUpstream::start().await;
    let overloaded =
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    up.push(Behavior::json(529, overloaded));
    up.set_default(Behavior::json_fixture(200, ANT_NONSTREAM));
    let gw = gateway(
        &[ant("c", &up)],
        "  - name: claude\n    targets: [{ provider: c, model: claude-up }]\n    retry: { attempts: 2, backoff_initial_ms: 10, backoff_max_ms: 10 }\n",
    )
    .await;

    // Anthropic client, Anthropic provider: pass-through.
    let r = anthropic(&gw, "claude", false).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body.as_ref(), fixture(ANT_NONSTREAM).as_slice());
    assert_eq!(r.header("x-ferrogate-attempts").as_deref(), Some("2"));
    assert_eq!(up.request_count(), 2);
    assert!(up.requests().iter().all(|q| q.path == MESSAGES));

    // OpenAI client, Anthropic provider: translated, retried alike.
    up.push(Behavior::json(529, overloaded));
    let r = chat(&gw, "claude").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["message"]["content"], ANT_TEXT);
    assert_eq!(r.header("x-ferrogate-attempts").as_deref(), Some("2"));
    assert_eq!(up.request_count(), 4);
}

#[tokio::test]
async fn connect_refused_moves_to_the_next_target() {
    let live = MockUpstream::start().await;
    let dead_base = format!("http://127.0.0.1:{}/v1", refused_port());
    let dead = format!("  dead: {{ kind: openai, base_url: \"{dead_base}\", keys: [\"k\"] }}\n");
    let gw = gateway(
        &[dead, oai("live", &live)],
        &format!("  - name: m\n    targets: [{{ provider: dead, model: x, weight: {HEAVY} }}, {{ provider: live, model: y, weight: 1 }}]\n    retry: {{ attempts: 2, backoff_initial_ms: 10, backoff_max_ms: 10 }}\n"),
    )
    .await;
    let r = chat(&gw, "m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ferrogate-target").as_deref(), Some("live/y"));
    assert_eq!(r.header("x-ferrogate-attempts").as_deref(), Some("2"));
    assert_eq!(live.request_count(), 1);
    let refused = gw
        .metric(
            "ferrogate_upstream_attempts_total",
            &[("target", "dead/x"), ("outcome", "retry")],
        )
        .await;
    assert_eq!(refused, 1.0);
}

#[tokio::test]
async fn reset_before_headers_is_retried() {
    let up = MockUpstream::start().await;
    up.push(Behavior::reset());
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: m\n    targets: [{ provider: a, model: up-m }]\n    retry: { attempts: 2, backoff_initial_ms: 10, backoff_max_ms: 10 }\n",
    )
    .await;
    let r = chat(&gw, "m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body.as_ref(), fixture(CHAT_NONSTREAM).as_slice());
    assert_eq!(r.header("x-ferrogate-attempts").as_deref(), Some("2"));
    assert_eq!(up.request_count(), 2);
    assert_eq!(up.connections(), 2, "the reset connection is not reused");
}

#[tokio::test]
async fn attempt_budget_is_respected_and_the_last_error_returned() {
    let up = MockUpstream::start().await;
    up.set_default(overloaded_503());
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: m\n    targets: [{ provider: a, model: up-m }]\n    retry: { attempts: 3, backoff_initial_ms: 10, backoff_max_ms: 10 }\n",
    )
    .await;
    let r = chat(&gw, "m").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), overloaded_503().body, "the last answer, as sent");
    assert_eq!(r.header("x-ferrogate-attempts").as_deref(), Some("3"));
    assert!(!up.wait_requests(4, Duration::from_millis(200)).await);
    assert_eq!(up.request_count(), 3);
}

/// `attempts` counts attempts on the model's targets, the first included: with two failing
/// targets and `attempts: 3`, the third attempt goes to one of them again.
#[tokio::test]
async fn attempt_budget_spans_several_targets() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.set_default(overloaded_503());
    b.set_default(overloaded_503());
    let gw = gateway(
        &[oai("a", &a), oai("b", &b)],
        "  - name: m\n    targets: [{ provider: a, model: x }, { provider: b, model: y }]\n    retry: { attempts: 3, backoff_initial_ms: 10, backoff_max_ms: 10 }\n",
    )
    .await;
    let r = chat(&gw, "m").await;
    assert_eq!(r.status, 503);
    assert_eq!(
        a.request_count() + b.request_count(),
        3,
        "attempts: 3 → three upstream requests"
    );
    assert_eq!(r.header("x-ferrogate-attempts").as_deref(), Some("3"));
}

/// A `retry-after` longer than `retry_after_max_ms` "moves on to another target or fallback"
/// (config docs) — it must not be ignored by retrying the same target at once.
#[tokio::test]
async fn long_retry_after_is_not_ignored_on_the_same_target() {
    let up = MockUpstream::start().await;
    up.set_default(Behavior::json_fixture(429, ERR_429).header("retry-after", "60"));
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: m\n    targets: [{ provider: a, model: up-m }]\n    retry: { attempts: 3, backoff_initial_ms: 10, backoff_max_ms: 10, retry_after_max_ms: 1000 }\n",
    )
    .await;
    let r = chat(&gw, "m").await;
    assert_eq!(r.status, 429);
    assert_eq!(
        up.request_count(),
        1,
        "the upstream asked for 60 s; nothing else to move on to"
    );
}

/// `retry-after` is "waited for when the same target is retried" (config docs); moving to
/// another target needn't wait for the first one's hint.
#[tokio::test]
async fn retry_after_of_one_target_does_not_delay_another() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.set_default(overloaded_503().header("retry-after", "2"));
    let gw = gateway(
        &[oai("a", &a), oai("b", &b)],
        &format!("  - name: m\n    targets: [{{ provider: a, model: x, weight: {HEAVY} }}, {{ provider: b, model: y, weight: 1 }}]\n    retry: {{ attempts: 2, backoff_initial_ms: 10, backoff_max_ms: 10 }}\n"),
    )
    .await;
    let t0 = Instant::now();
    let r = chat(&gw, "m").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ferrogate-target").as_deref(), Some("b/y"));
    assert!(
        t0.elapsed() < Duration::from_millis(1_000),
        "b was tried after {:?}; a's retry-after (2 s) applies to a only",
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// A provider with keys `key-A` and `key-B` whose first answer is `status` with `body` (a
/// rejected credential): the key used is disabled (counted, shown by index only in
/// `/admin/health`), the request is retried with the other key, and later requests use only it.
async fn check_rejected_key_is_disabled(status: u16, body: String) {
    let up = MockUpstream::start().await;
    up.push(Behavior::json(status, body));
    let provider = format!(
        "  a: {{ kind: openai, base_url: \"{}\", keys: [{{ value: key-A, weight: 1 }}, {{ value: key-B, weight: 1 }}] }}\n",
        up.base_url()
    );
    let gw = gateway(
        &[provider],
        "  - name: m\n    targets: [{ provider: a, model: up-m }]\n    retry: { attempts: 2, backoff_initial_ms: 10, backoff_max_ms: 10 }\n",
    )
    .await;

    let r = chat(&gw, "m").await;
    assert_eq!(r.status, 200, "{status}: {}", r.text());
    let keys: Vec<String> = up
        .requests()
        .iter()
        .map(|q| q.header("authorization").expect("authorization"))
        .collect();
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1], "the second attempt uses the other key");
    let (bad, good) = (keys[0].clone(), keys[1].clone());
    let bad_index = if bad == "Bearer key-A" { 0 } else { 1 };
    assert_eq!(
        gw.metric("ferrogate_keys_disabled_total", &[("provider", "a")])
            .await,
        1.0
    );
    assert_eq!(disabled_keys(&health(&gw).await, "a"), vec![bad_index]);
    let health_text = get(&gw.url("/admin/health")).await.text();
    assert!(
        !health_text.contains("key-A") && !health_text.contains("key-B"),
        "key values never shown: {health_text}"
    );

    for _ in 0..4 {
        assert_eq!(chat(&gw, "m").await.status, 200);
    }
    let later: Vec<String> = up.requests()[2..]
        .iter()
        .map(|q| q.header("authorization").expect("authorization"))
        .collect();
    assert_eq!(later, vec![good; 4], "the disabled key is left out");
}

#[tokio::test]
async fn unauthorized_key_is_disabled_and_the_next_key_used() {
    check_rejected_key_is_disabled(
        401,
        openai_error(
            "Incorrect API key provided: key-A. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
    )
    .await;
}

/// 403: the key is valid but may not do this (a restricted project key); another key may.
#[tokio::test]
async fn forbidden_key_is_disabled_and_the_next_key_used() {
    check_rejected_key_is_disabled(
        403,
        openai_error(
            "You have insufficient permissions for this operation. Missing scopes: model.request. Check that you have the correct role in your organization (Reader, Writer, Owner) and project (Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.",
            "invalid_request_error",
            None,
        ),
    )
    .await;
}

/// Four requests to a `usage_aware` model whose provider has two keys of `rpm: 2`, with
/// `target_limits` added to the target; the keys' `authorization` values, sorted.
async fn keys_used_by_four_usage_aware_requests(target_limits: &str) -> Vec<String> {
    let up = MockUpstream::start().await;
    let provider = format!(
        "  a: {{ kind: openai, base_url: \"{}\", keys: [{{ value: key-A, rpm: 2 }}, {{ value: key-B, rpm: 2 }}] }}\n",
        up.base_url()
    );
    // `balance: usage_aware` alone puts the model on the resilient path, where keys are chosen
    // with the model's strategy.
    let gw = gateway(
        &[provider],
        &format!("  - name: m\n    balance: usage_aware\n    targets: [{{ provider: a, model: up-m{target_limits} }}]\n"),
    )
    .await;
    for _ in 0..4 {
        let r = chat(&gw, "m").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut keys: Vec<String> = up
        .requests()
        .iter()
        .map(|q| q.header("authorization").expect("authorization"))
        .collect();
    keys.sort();
    keys
}

/// Keys with `rpm` limits are spread by headroom: each of the two keys serves two of four
/// requests (a weighted-random choice gives 2 + 2 only 6 times in 16). The target's own limit is
/// far from reached, so only the keys' limits decide.
#[tokio::test]
async fn usage_aware_spreads_requests_over_rate_limited_keys() {
    assert_eq!(
        keys_used_by_four_usage_aware_requests(", rpm: 1000").await,
        [
            "Bearer key-A",
            "Bearer key-A",
            "Bearer key-B",
            "Bearer key-B"
        ],
        "each key twice"
    );
}

/// The same with the limits on the keys only (README: "keys may carry their own limits").
#[tokio::test]
async fn usage_aware_spreads_requests_over_keys_limited_on_the_keys_only() {
    assert_eq!(
        keys_used_by_four_usage_aware_requests("").await,
        [
            "Bearer key-A",
            "Bearer key-A",
            "Bearer key-B",
            "Bearer key-B"
        ],
        "each key twice"
    );
}

// ---------------------------------------------------------------------------------------------
// Fallbacks
// ---------------------------------------------------------------------------------------------

/// A: OpenAI-kind, failing; B: Anthropic provider; C, D: OpenAI-kind, healthy.
struct FallbackSetup {
    a: MockUpstream,
    b: MockUpstream,
    c: MockUpstream,
    d: MockUpstream,
    gw: Gateway,
}

async fn fallback_setup() -> FallbackSetup {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let c = MockUpstream::start().await;
    let d = MockUpstream::start().await;
    b.set_default(Behavior::json_fixture(200, ANT_NONSTREAM));
    let gw = gateway(
        &[oai("pa", &a), ant("pb", &b), oai("pc", &c), oai("pd", &d)],
        "  - name: A\n    targets: [{ provider: pa, model: a-up }]\n    retry: { attempts: 2, backoff_initial_ms: 10, backoff_max_ms: 10 }\n    fallbacks: [B]\n    context_window_fallbacks: [C]\n    content_policy_fallbacks: [D]\n\
         \x20 - name: B\n    targets: [{ provider: pb, model: claude-up }]\n\
         \x20 - name: C\n    targets: [{ provider: pc, model: c-up }]\n\
         \x20 - name: D\n    targets: [{ provider: pd, model: d-up }]\n\
         \x20 - name: plain\n    targets: [{ provider: pa, model: plain-up }]\n",
    )
    .await;
    FallbackSetup { a, b, c, d, gw }
}

#[tokio::test]
async fn failing_model_falls_back_to_another_provider_and_dialect() {
    let s = fallback_setup().await;
    s.a.set_default(server_error_500());
    let r = chat(&s.gw, "A").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ferrogate-fallback").as_deref(), Some("B"));
    assert_eq!(
        r.header("x-ferrogate-target").as_deref(),
        Some("pb/claude-up")
    );
    assert_eq!(r.header("x-ferrogate-attempts").as_deref(), Some("3"));
    // The Anthropic answer, translated for the OpenAI client.
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], ANT_TEXT);
    assert_eq!(s.a.request_count(), 2, "A's retry budget used first");
    assert_eq!(s.b.request_count(), 1);
    let q = s.b.last_request();
    assert_eq!(q.path, MESSAGES);
    assert_eq!(q.header("x-api-key").as_deref(), Some("key-pb"));
    assert_eq!(q.json()["model"], "claude-up");
    assert_eq!(s.c.request_count() + s.d.request_count(), 0);
    assert_eq!(
        s.gw.metric(
            "ferrogate_fallbacks_total",
            &[("model", "A"), ("served_by", "B")]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn fallbacks_header_overrides_the_configured_list() {
    let s = fallback_setup().await;
    s.a.set_default(server_error_500());
    let r = chat_with(&s.gw, "A", &[("x-ferrogate-fallbacks", "C")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ferrogate-fallback").as_deref(), Some("C"));
    assert_eq!(r.header("x-ferrogate-target").as_deref(), Some("pc/c-up"));
    assert_eq!(
        s.b.request_count(),
        0,
        "the configured fallback is replaced"
    );
    assert_eq!(s.c.request_count(), 1);

    // A model without any resilience settings takes the header too.
    let r = chat_with(&s.gw, "plain", &[("x-ferrogate-fallbacks", "D, C")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ferrogate-fallback").as_deref(), Some("D"));
    assert_eq!(s.d.request_count(), 1);
    assert_eq!(s.c.request_count(), 1);
}

/// A header naming a model that doesn't exist skips it: the next name serves.
#[tokio::test]
async fn fallbacks_header_skips_an_unknown_model() {
    let s = fallback_setup().await;
    s.a.set_default(server_error_500());
    let r = chat_with(&s.gw, "A", &[("x-ferrogate-fallbacks", "no-such-model, C")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ferrogate-fallback").as_deref(), Some("C"));
    assert_eq!(r.header("x-ferrogate-target").as_deref(), Some("pc/c-up"));
    assert_eq!(s.a.request_count(), 2, "A's retry budget used first");
    assert_eq!(s.c.request_count(), 1);
    assert_eq!(s.b.request_count() + s.d.request_count(), 0);
}

/// Override headers whose value is not a number of milliseconds are ignored: the request is
/// served as without them (not failed, not given a zero deadline).
#[tokio::test]
async fn non_numeric_override_headers_are_ignored() {
    let up = MockUpstream::start().await;
    up.set_default(slow_ok(300));
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: m\n    targets: [{ provider: a, model: x }]\n",
    )
    .await;
    for header in [
        "x-ferrogate-timeout-ms",
        "x-ferrogate-first-byte-timeout-ms",
        "x-ferrogate-first-token-timeout-ms",
        "x-ferrogate-stall-timeout-ms",
    ] {
        for value in ["soon", "-5", "1e2", "100ms"] {
            let r = chat_with(&gw, "m", &[(header, value)]).await;
            assert_eq!(r.status, 200, "{header}: {value}: {}", r.text());
            assert_eq!(r.body.as_ref(), fixture(CHAT_NONSTREAM).as_slice());
        }
    }
    assert_eq!(up.request_count(), 16);
}

#[tokio::test]
async fn context_window_and_content_policy_errors_use_their_own_fallbacks() {
    let s = fallback_setup().await;
    let context = openai_error(
        "This model's maximum context length is 128000 tokens. However, your messages resulted in 131072 tokens. Please reduce the length of the messages.",
        "invalid_request_error",
        Some("context_length_exceeded"),
    );
    s.a.push(Behavior::json(400, context.clone()));
    let r = chat(&s.gw, "A").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ferrogate-fallback").as_deref(), Some("C"));
    assert_eq!(s.a.request_count(), 1, "a context overflow is not retried");
    assert_eq!(s.c.request_count(), 1);
    assert_eq!(s.b.request_count(), 0, "the general fallbacks are skipped");

    let policy = openai_error(
        "Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.",
        "invalid_request_error",
        Some("content_policy_violation"),
    );
    s.a.push(Behavior::json(400, policy));
    let r = chat(&s.gw, "A").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ferrogate-fallback").as_deref(), Some("D"));
    assert_eq!(s.a.request_count(), 2);
    assert_eq!(s.d.request_count(), 1);
    assert_eq!(s.b.request_count() + s.c.request_count(), 1);

    // Without a context-window list the overflow is the answer (no general fallback).
    s.a.push(Behavior::json(400, context.clone()));
    let r = chat_with(&s.gw, "plain", &[("x-ferrogate-fallbacks", "B")]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), context);
    assert_eq!(s.b.request_count(), 0);
}

/// The config docs allow `provider/model` in fallback lists ("Fallbacks are exact model names
/// from this file, or provider/model") and the loader accepts it.
#[tokio::test]
async fn provider_slash_model_fallback_is_tried() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.set_default(server_error_500());
    let gw = gateway(
        &[oai("pa", &a), oai("pb", &b)],
        "  - name: A\n    targets: [{ provider: pa, model: a-up }]\n    fallbacks: [pb/direct-model]\n",
    )
    .await;
    let r = chat(&gw, "A").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(b.request_count(), 1);
    assert_eq!(b.last_request().json()["model"], "direct-model");
}

// ---------------------------------------------------------------------------------------------
// Deadlines
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn first_token_deadline_fails_over_invisibly() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    // A role-only chunk, then nothing: the head is sent but no token comes.
    a.push(Behavior::openai_stream(STREAM_TEXT, true).stall_after(1));
    b.set_default(Behavior::openai_stream(STREAM_TEXT, true));
    let gw = gateway(
        &[oai("a", &a), oai("b", &b)],
        &format!("  - name: m\n    targets: [{{ provider: a, model: x, weight: {HEAVY} }}, {{ provider: b, model: y, weight: 1 }}]\n    retry: {{ attempts: 2, backoff_initial_ms: 1, backoff_max_ms: 1 }}\n    timeouts: {{ first_token_ms: 300 }}\n"),
    )
    .await;
    let t0 = Instant::now();
    let r = stream_chat(&gw, "m", &[]).await;
    let took = t0.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ferrogate-target").as_deref(), Some("b/y"));
    assert_eq!(r.header("x-ferrogate-attempts").as_deref(), Some("2"));
    assert_eq!(
        r.body.as_ref(),
        fixture(STREAM_TEXT).as_slice(),
        "only the second target's bytes, unmodified"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1_000),
        "{took:?}"
    );
    assert!(
        a.wait_cancels(1, WAIT).await,
        "the stalled upstream is closed"
    );
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
}

#[tokio::test]
async fn stall_after_content_ends_with_an_error_event_and_no_retry() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let stalling = Behavior::openai_stream(STREAM_TEXT, true).stall_after(3);
    a.push(stalling.clone());
    let gw = gateway(
        &[oai("a", &a), oai("b", &b)],
        &format!("  - name: m\n    targets: [{{ provider: a, model: x, weight: {HEAVY} }}, {{ provider: b, model: y, weight: 1 }}]\n    retry: {{ attempts: 3, backoff_initial_ms: 1, backoff_max_ms: 1 }}\n    timeouts: {{ stall_ms: 300 }}\n"),
    )
    .await;
    let r = stream_chat(&gw, "m", &[]).await;
    assert_eq!(r.status, 200);
    let sent = first_frames(&stalling, 3);
    assert!(
        r.body.starts_with(&sent),
        "the content already sent comes first, unmodified"
    );
    let tail = &r.body[sent.len()..];
    let err = last_event_json(tail);
    assert_eq!(err["error"]["code"], "upstream_stall", "{err}");
    assert_eq!(
        sse_events(tail).len(),
        1,
        "exactly one error event after the content"
    );
    assert!(!contains(&r.body, b"[DONE]"));
    assert!(
        a.wait_cancels(1, WAIT).await,
        "the upstream connection is closed"
    );
    assert_eq!(
        (a.request_count(), b.request_count()),
        (1, 0),
        "no retry once content reached the client"
    );
}

#[tokio::test]
async fn stall_in_an_anthropic_stream_gives_an_anthropic_error_event() {
    let up = MockUpstream::start().await;
    // message_start, content_block_start, ping, the first text delta; then silence.
    let stalling = Behavior::sse_fixture(ANT_STREAM).stall_after(4);
    up.push(stalling.clone());
    let gw = gateway(
        &[ant("c", &up)],
        "  - name: claude\n    targets: [{ provider: c, model: claude-up }]\n    retry: { attempts: 3, backoff_initial_ms: 1, backoff_max_ms: 1 }\n    timeouts: { stall_ms: 250 }\n",
    )
    .await;
    let t0 = Instant::now();
    let r = anthropic(&gw, "claude", true).await;
    assert_eq!(r.status, 200);
    let sent = first_frames(&stalling, 4);
    assert!(r.body.starts_with(&sent));
    let tail = String::from_utf8_lossy(&r.body[sent.len()..]).into_owned();
    assert!(tail.starts_with("event: error\ndata: "), "{tail:?}");
    let err = last_event_json(tail.as_bytes());
    assert_eq!(err["type"], "error", "{err}");
    // A stall is a timeout in every dialect, passed through or translated (once `api_error`
    // here and `timeout_error` on translated routes).
    assert_eq!(err["error"]["type"], "timeout_error", "{err}");
    assert_close(
        t0.elapsed(),
        Duration::from_millis(250),
        Duration::from_millis(250),
        "stall error",
    );
    assert!(up.wait_cancels(1, WAIT).await);
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn stall_in_a_translated_stream_is_the_same_timeout_error() {
    let up = MockUpstream::start().await;
    let stalling = Behavior::openai_stream(STREAM_TEXT, true).stall_after(3);
    up.push(stalling);
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: claude\n    targets: [{ provider: a, model: x }]\n    timeouts: { stall_ms: 250 }\n",
    )
    .await;
    let r = anthropic(&gw, "claude", true).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let err = last_event_json(&r.body);
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["error"]["type"], "timeout_error", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("stall"),
        "{err}"
    );
}

#[tokio::test]
async fn a_translated_stream_has_the_gateways_own_head() {
    let up = MockUpstream::start().await;
    // An upstream that answers the stream with an unusual 2xx and a header of its own.
    up.push(
        Behavior::openai_stream(STREAM_TEXT, true)
            .status(203)
            .header("x-upstream-only", "1"),
    );
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: claude\n    targets: [{ provider: a, model: x }]\n",
    )
    .await;
    let r = anthropic(&gw, "claude", true).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-upstream-only"), None);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/event-stream")
    );
}

#[tokio::test]
async fn slow_trickle_under_the_stall_deadline_passes_untouched() {
    let up = MockUpstream::start().await;
    up.push(Behavior::openai_stream(STREAM_TEXT, true).frame_delay(Duration::from_millis(60)));
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: m\n    targets: [{ provider: a, model: x }]\n    timeouts: { first_token_ms: 300, stall_ms: 300 }\n",
    )
    .await;
    let r = stream_chat(&gw, "m", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_ref(), fixture(STREAM_TEXT).as_slice());
    assert_eq!(up.cancels(), 0);
}

#[tokio::test]
async fn drop_after_content_is_not_retried() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let dropping = Behavior::openai_stream(STREAM_TEXT, true).drop_after(3);
    a.push(dropping.clone());
    let gw = gateway(
        &[oai("a", &a), oai("b", &b)],
        &format!("  - name: m\n    targets: [{{ provider: a, model: x, weight: {HEAVY} }}, {{ provider: b, model: y, weight: 1 }}]\n    retry: {{ attempts: 3, backoff_initial_ms: 1, backoff_max_ms: 1 }}\n"),
    )
    .await;
    let r = stream_chat(&gw, "m", &[]).await;
    assert_eq!(r.status, 200);
    let sent = first_frames(&dropping, 3);
    assert!(r.body.starts_with(&sent));
    let tail = &r.body[sent.len()..];
    assert_eq!(
        last_event_json(tail)["error"]["code"],
        "upstream_stream_broken"
    );
    assert_eq!(
        sse_events(tail).len(),
        1,
        "one error event, no duplicated content"
    );
    assert!(!b.wait_requests(1, Duration::from_millis(200)).await);
    assert_eq!((a.request_count(), b.request_count()), (1, 0));
}

#[tokio::test]
async fn error_event_before_content_is_retried_invisibly() {
    let up = MockUpstream::start().await;
    // 200, message_start, then Anthropic's overloaded error event: nothing reached the client.
    let message_start = sse_events(&fixture(ANT_STREAM)).remove(0);
    let mut body = message_start;
    body.extend_from_slice(&fixture(ANT_OVERLOADED));
    up.push(Behavior::sse(body));
    up.set_default(Behavior::sse_fixture(ANT_STREAM));
    let gw = gateway(
        &[ant("c", &up)],
        "  - name: claude\n    targets: [{ provider: c, model: claude-up }]\n    retry: { attempts: 2, backoff_initial_ms: 1, backoff_max_ms: 1 }\n",
    )
    .await;
    let r = anthropic(&gw, "claude", true).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ferrogate-attempts").as_deref(), Some("2"));
    assert_eq!(r.body.as_ref(), fixture(ANT_STREAM).as_slice());
    assert_eq!(up.request_count(), 2);

    // With no attempt left, the error is the answer: Anthropic's 529, not a broken stream.
    let mut body = sse_events(&fixture(ANT_STREAM)).remove(0);
    body.extend_from_slice(&fixture(ANT_OVERLOADED));
    up.set_default(Behavior::sse(body));
    let r = anthropic(&gw, "claude", true).await;
    assert_eq!(r.status, 529, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn total_deadline_bounds_the_whole_request() {
    let up = MockUpstream::start().await;
    up.set_default(Behavior::json_fixture(200, CHAT_NONSTREAM).head_delay(Duration::from_secs(3)));
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: m\n    targets: [{ provider: a, model: x }]\n    deadline_ms: 400\n",
    )
    .await;
    let t0 = Instant::now();
    let r = chat(&gw, "m").await;
    let took = t0.elapsed();
    assert_openai_error(&r, 504);
    assert_eq!(
        r.json()["error"]["code"],
        "upstream_timeout",
        "{}",
        r.text()
    );
    assert_close(
        took,
        Duration::from_millis(400),
        Duration::from_millis(250),
        "deadline_ms: 400",
    );
}

#[tokio::test]
async fn total_deadline_header_bounds_the_whole_request() {
    let up = MockUpstream::start().await;
    up.set_default(Behavior::json_fixture(200, CHAT_NONSTREAM).head_delay(Duration::from_secs(3)));
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: m\n    targets: [{ provider: a, model: x }]\n",
    )
    .await;
    let t0 = Instant::now();
    let r = chat_with(&gw, "m", &[("x-ferrogate-timeout-ms", "300")]).await;
    let took = t0.elapsed();
    assert_openai_error(&r, 504);
    assert_eq!(
        r.json()["error"]["code"],
        "upstream_timeout",
        "{}",
        r.text()
    );
    assert_close(
        took,
        Duration::from_millis(300),
        Duration::from_millis(250),
        "x-ferrogate-timeout-ms: 300",
    );
}

/// The 504 of a request's total deadline (`deadline_ms` or `x-ferrogate-timeout-ms`) says so,
/// rather than naming the per-attempt deadline it was enforced through.
#[tokio::test]
async fn total_deadline_error_names_the_total_deadline() {
    let up = MockUpstream::start().await;
    up.set_default(Behavior::json_fixture(200, CHAT_NONSTREAM).head_delay(Duration::from_secs(3)));
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: m\n    targets: [{ provider: a, model: x }]\n    deadline_ms: 400\n\
         \x20 - name: plain\n    targets: [{ provider: a, model: x }]\n",
    )
    .await;
    for (model, headers) in [
        ("m", &[][..]),
        ("plain", &[("x-ferrogate-timeout-ms", "300")][..]),
    ] {
        let r = chat_with(&gw, model, headers).await;
        let message = assert_openai_error(&r, 504);
        assert!(
            message.contains("total deadline"),
            "{model}: the message names the deadline that fired: {message}"
        );
    }
}

#[tokio::test]
async fn first_token_override_header_fires_on_time() {
    let up = MockUpstream::start().await;
    up.push(Behavior::openai_stream(STREAM_TEXT, true).stall_after(1));
    // A model with no resilience settings: the header alone turns the deadline on.
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: m\n    targets: [{ provider: a, model: x }]\n",
    )
    .await;
    let t0 = Instant::now();
    let r = stream_chat(&gw, "m", &[("x-ferrogate-first-token-timeout-ms", "200")]).await;
    let took = t0.elapsed();
    let message = assert_openai_error(&r, 504);
    assert!(message.contains("first-token"), "{message}");
    assert_eq!(r.json()["error"]["code"], "upstream_first_token_timeout");
    assert_close(
        took,
        Duration::from_millis(200),
        Duration::from_millis(150),
        "first-token deadline",
    );
    assert!(up.wait_cancels(1, WAIT).await);
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn first_byte_override_header_fires_on_time() {
    let up = MockUpstream::start().await;
    up.push(Behavior::json_fixture(200, CHAT_NONSTREAM).head_delay(Duration::from_secs(3)));
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: m\n    targets: [{ provider: a, model: x }]\n",
    )
    .await;
    let t0 = Instant::now();
    let r = chat_with(&gw, "m", &[("x-ferrogate-first-byte-timeout-ms", "200")]).await;
    let took = t0.elapsed();
    assert_openai_error(&r, 504);
    assert_close(
        took,
        Duration::from_millis(200),
        Duration::from_millis(150),
        "first-byte deadline",
    );
    assert!(
        up.wait_cancels(1, WAIT).await,
        "the upstream request is abandoned"
    );
}

#[tokio::test]
async fn stall_override_header_fires_on_time() {
    let up = MockUpstream::start().await;
    let stalling = Behavior::openai_stream(STREAM_TEXT, true).stall_after(3);
    up.push(stalling.clone());
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: m\n    targets: [{ provider: a, model: x }]\n",
    )
    .await;
    let resp = client()
        .post(gw.url(CHAT))
        .header("content-type", "application/json")
        .header("x-ferrogate-stall-timeout-ms", "200")
        .body(stream_body("m"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let sent = first_frames(&stalling, 3);
    let mut buf = Vec::new();
    // The last content frame ends with `}\n\n`; wait for all of them.
    while buf.len() < sent.len() {
        let chunk = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("content in time")
            .expect("more bytes")
            .unwrap();
        buf.extend_from_slice(&chunk);
    }
    let t_content = Instant::now();
    assert!(read_until(&mut stream, &mut buf, b"upstream_stall", WAIT).await);
    assert_close(
        t_content.elapsed(),
        Duration::from_millis(200),
        Duration::from_millis(150),
        "stall deadline",
    );
    assert!(buf.starts_with(&sent));
    assert!(up.wait_cancels(1, WAIT).await);
}

// ---------------------------------------------------------------------------------------------
// Circuit breaker
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn breaker_opens_skips_the_target_then_probes_once_and_closes() {
    let up = MockUpstream::start().await;
    up.push(server_error_500());
    up.push(server_error_500());
    let gw = gateway(
        &[oai_with(
            "a",
            &up,
            "breaker: { consecutive_failures: 2, cooldown_ms: 500 }",
        )],
        // deadline_ms only puts the model on the resilient path; one attempt per request.
        "  - name: m\n    targets: [{ provider: a, model: x }]\n    deadline_ms: 10000\n",
    )
    .await;

    assert_eq!(chat(&gw, "m").await.status, 500);
    assert_eq!(breaker_of(&health(&gw).await, "a/x"), "closed");
    assert_eq!(chat(&gw, "m").await.status, 500);
    let tripped = Instant::now();
    let h = health(&gw).await;
    assert_eq!(breaker_of(&h, "a/x"), "open", "{h}");
    assert_eq!(
        gw.metric("ferrogate_breaker_state", &[("target", "a/x")])
            .await,
        1.0
    );

    // Open: the target is skipped; the client gets 503 + retry-after in its own dialect.
    let r = chat(&gw, "m").await;
    assert_openai_error(&r, 503);
    assert_eq!(r.json()["error"]["code"], "no_target_available");
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    let ms: u64 = r.header("retry-after-ms").unwrap().parse().unwrap();
    assert!(ms > 0 && ms <= 500, "retry-after-ms {ms}");
    let r = anthropic(&gw, "m", false).await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    let v = r.json();
    assert_eq!(v["type"], "error", "Anthropic error shape: {v}");
    assert!(
        v["error"]["type"].is_string() && v["error"]["message"].is_string(),
        "{v}"
    );
    assert_eq!(
        up.request_count(),
        2,
        "an open breaker sends nothing upstream"
    );

    // After the cooldown: half-open; the next request is the probe, and its success closes it.
    tokio::time::sleep(Duration::from_millis(550).saturating_sub(tripped.elapsed())).await;
    assert_eq!(breaker_of(&health(&gw).await, "a/x"), "half_open");
    let r = chat(&gw, "m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.request_count(), 3);
    assert_eq!(breaker_of(&health(&gw).await, "a/x"), "closed");
    assert_eq!(chat(&gw, "m").await.status, 200);
    assert_eq!(up.request_count(), 4);
}

/// While the half-open probe is out, other requests are answered 503 at once (a single-target
/// model has nothing else to try); they neither wait nor go upstream as a second probe.
#[tokio::test]
async fn half_open_breaker_admits_a_single_probe() {
    let up = MockUpstream::start().await;
    up.push(server_error_500());
    let gw = gateway(
        &[oai_with(
            "a",
            &up,
            "breaker: { consecutive_failures: 1, cooldown_ms: 200 }",
        )],
        "  - name: m\n    targets: [{ provider: a, model: x }]\n    deadline_ms: 10000\n",
    )
    .await;
    assert_eq!(chat(&gw, "m").await.status, 500);
    tokio::time::sleep(Duration::from_millis(250)).await;
    up.push(slow_ok(1_500));
    let probe = {
        let url = gw.url(CHAT);
        tokio::spawn(async move { post(&url, chat_body("m", None)).await })
    };
    assert!(up.wait_requests(2, WAIT).await);
    let t0 = Instant::now();
    let r = chat(&gw, "m").await;
    let took = t0.elapsed();
    assert_eq!(
        r.status,
        503,
        "only one probe while half-open: {}",
        r.text()
    );
    assert!(
        took < Duration::from_millis(300),
        "answered at once, not after {took:?}"
    );
    assert_eq!(up.request_count(), 2, "no second probe");
    let probe = probe.await.unwrap();
    assert_eq!(probe.status, 200, "{}", probe.text());
    assert_eq!(breaker_of(&health(&gw).await, "a/x"), "closed");
}

#[tokio::test]
async fn open_target_is_skipped_in_favour_of_the_other() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.set_default(server_error_500());
    let gw = gateway(
        &[
            oai_with("a", &a, "breaker: { consecutive_failures: 2, cooldown_ms: 60000 }"),
            oai("b", &b),
        ],
        &format!("  - name: m\n    targets: [{{ provider: a, model: x, weight: {HEAVY} }}, {{ provider: b, model: y, weight: 1 }}]\n    retry: {{ attempts: 2, backoff_initial_ms: 1, backoff_max_ms: 1 }}\n"),
    )
    .await;
    for _ in 0..5 {
        let r = chat(&gw, "m").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-ferrogate-target").as_deref(), Some("b/y"));
    }
    assert_eq!(a.request_count(), 2, "ejected after two failures");
    assert_eq!(b.request_count(), 5);
}

// ---------------------------------------------------------------------------------------------
// Concurrency limits
// ---------------------------------------------------------------------------------------------

fn slow_ok(ms: u64) -> Behavior {
    Behavior::json_fixture(200, CHAT_NONSTREAM).head_delay(Duration::from_millis(ms))
}

#[tokio::test]
async fn full_target_falls_back_to_another_target() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.push(slow_ok(600));
    let gw = gateway(
        &[oai("a", &a), oai("b", &b)],
        &format!("  - name: m\n    targets: [{{ provider: a, model: x, weight: {HEAVY}, max_concurrency: 1, queue: 0 }}, {{ provider: b, model: y, weight: 1 }}]\n"),
    )
    .await;
    let url = gw.url(CHAT);
    let first = tokio::spawn(async move { post(&url, chat_body("m", None)).await });
    assert!(a.wait_requests(1, WAIT).await);
    let t0 = Instant::now();
    let r = chat(&gw, "m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ferrogate-target").as_deref(), Some("b/y"));
    assert!(
        t0.elapsed() < Duration::from_millis(400),
        "no wait for a's slot"
    );
    let first = first.await.unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ferrogate-target").as_deref(), Some("a/x"));
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
}

#[tokio::test]
async fn full_single_target_answers_429_with_retry_after() {
    let up = MockUpstream::start().await;
    up.push(slow_ok(600));
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: m\n    targets: [{ provider: a, model: x, max_concurrency: 1, queue: 0 }]\n",
    )
    .await;
    let url = gw.url(CHAT);
    let first = tokio::spawn(async move { post(&url, chat_body("m", None)).await });
    assert!(up.wait_requests(1, WAIT).await);
    let t0 = Instant::now();
    let r = chat(&gw, "m").await;
    assert_openai_error(&r, 429);
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    assert!(t0.elapsed() < Duration::from_millis(400));
    let r = anthropic(&gw, "m", false).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["type"], "error");
    assert!(r.header("retry-after").is_some());
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn queued_request_waits_for_the_slot_and_succeeds() {
    let up = MockUpstream::start().await;
    up.push(slow_ok(400));
    let gw = gateway(
        &[oai("a", &up)],
        "  - name: m\n    targets: [{ provider: a, model: x, max_concurrency: 1, queue: 1 }]\n",
    )
    .await;
    let url = gw.url(CHAT);
    let first = tokio::spawn(async move { post(&url, chat_body("m", None)).await });
    assert!(up.wait_requests(1, WAIT).await);
    let r = chat(&gw, "m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(first.await.unwrap().status, 200);
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs[1].at - reqs[0].at >= Duration::from_millis(380),
        "the queued request went upstream only when the slot was free ({:?})",
        reqs[1].at - reqs[0].at
    );
}

// ---------------------------------------------------------------------------------------------
// Balancing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn least_in_flight_avoids_the_busy_target() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let (held, gate) = Behavior::openai_stream(STREAM_TEXT, true).gated();
    a.push(held.clone());
    b.push(held);
    let gw = gateway(
        &[oai("a", &a), oai("b", &b)],
        "  - name: m\n    balance: least_in_flight\n    targets: [{ provider: a, model: x }, { provider: b, model: y }]\n",
    )
    .await;
    // One stream held open on whichever target gets it (the head waits for the first frame).
    let url = gw.url(CHAT);
    let held_req = tokio::spawn(async move {
        let resp = client()
            .post(url)
            .header("content-type", "application/json")
            .body(stream_body("m"))
            .send()
            .await
            .unwrap();
        read_stream(resp).await
    });
    let deadline = Instant::now() + WAIT;
    while a.request_count() + b.request_count() == 0 {
        assert!(Instant::now() < deadline, "the held request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (busy, idle) = if a.request_count() == 1 {
        (&a, &b)
    } else {
        (&b, &a)
    };
    // The idle target's held behaviour was for whichever target came first: answer at once.
    idle.clear_queue();
    for _ in 0..6 {
        assert_eq!(chat(&gw, "m").await.status, 200);
    }
    assert_eq!(
        busy.request_count(),
        1,
        "the busy target got none of the next requests"
    );
    assert_eq!(idle.request_count(), 6);
    gate.release(100);
    let (body, clean) = held_req.await.unwrap();
    assert!(clean);
    assert_eq!(body, fixture(STREAM_TEXT));
}

#[tokio::test]
async fn lowest_latency_prefers_the_fast_target() {
    let slow = MockUpstream::start().await;
    let fast = MockUpstream::start().await;
    slow.set_default(slow_ok(150));
    let gw = gateway(
        &[oai("slow", &slow), oai("fast", &fast)],
        "  - name: m\n    balance: lowest_latency\n    targets: [{ provider: slow, model: x }, { provider: fast, model: y }]\n",
    )
    .await;
    for _ in 0..12 {
        assert_eq!(chat(&gw, "m").await.status, 200);
    }
    assert!(
        slow.request_count() <= 2,
        "slow target got {} of 12 (fast {})",
        slow.request_count(),
        fast.request_count()
    );
    assert_eq!(slow.request_count() + fast.request_count(), 12);
}

#[tokio::test]
async fn usage_aware_spreads_by_rpm_headroom() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let gw = gateway(
        &[oai("a", &a), oai("b", &b)],
        "  - name: m\n    balance: usage_aware\n    targets: [{ provider: a, model: x, rpm: 10 }, { provider: b, model: y, rpm: 30 }]\n",
    )
    .await;
    for _ in 0..20 {
        assert_eq!(chat(&gw, "m").await.status, 200);
    }
    // Most headroom first keeps the used shares equal: 5 of 10 and 15 of 30 (ties ± 1).
    let (na, nb) = (a.request_count(), b.request_count());
    assert!(
        (4..=6).contains(&na),
        "a (rpm 10) got {na}, b (rpm 30) got {nb}"
    );
    assert_eq!(na + nb, 20);
}

// ---------------------------------------------------------------------------------------------
// Hedging
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn hedge_serves_the_fast_target_and_cancels_the_slow_one() {
    let slow = MockUpstream::start().await;
    let fast = MockUpstream::start().await;
    slow.set_default(slow_ok(1_000));
    let gw = gateway(
        &[oai("slow", &slow), oai("fast", &fast)],
        &format!("  - name: m\n    targets: [{{ provider: slow, model: x, weight: {HEAVY} }}, {{ provider: fast, model: y, weight: 1 }}]\n    hedge: {{ after_ms: 100 }}\n"),
    )
    .await;
    let t0 = Instant::now();
    let r = chat(&gw, "m").await;
    let took = t0.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ferrogate-target").as_deref(), Some("fast/y"));
    assert_eq!(r.body.as_ref(), fixture(CHAT_NONSTREAM).as_slice());
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(600),
        "{took:?}"
    );
    assert!(
        slow.wait_cancels(1, WAIT).await,
        "the slow attempt is cancelled"
    );
    let fr = fast.last_request();
    let sr = slow.last_request();
    assert!(
        fr.at - sr.at >= Duration::from_millis(90),
        "the hedge starts after after_ms ({:?})",
        fr.at - sr.at
    );
    assert_eq!(
        gw.metric(
            "ferrogate_hedges_total",
            &[("model", "m"), ("outcome", "won")]
        )
        .await,
        1.0
    );
    assert_eq!(
        gw.metric(
            "ferrogate_hedges_total",
            &[("model", "m"), ("outcome", "started")]
        )
        .await,
        1.0
    );
    assert!(
        gw.metric("ferrogate_hedge_wasted_tokens_total", &[("model", "m")])
            .await
            > 0.0
    );
}

#[tokio::test]
async fn hedged_stream_is_served_byte_exact_by_the_twin() {
    let slow = MockUpstream::start().await;
    let fast = MockUpstream::start().await;
    // The primary answers at once but sends no token.
    slow.push(Behavior::openai_stream(STREAM_TEXT, true).stall_after(1));
    fast.set_default(Behavior::openai_stream(STREAM_TEXT, true));
    let gw = gateway(
        &[oai("slow", &slow), oai("fast", &fast)],
        &format!("  - name: m\n    targets: [{{ provider: slow, model: x, weight: {HEAVY} }}, {{ provider: fast, model: y, weight: 1 }}]\n    hedge: {{ after_ms: 100 }}\n"),
    )
    .await;
    let t0 = Instant::now();
    let r = stream_chat(&gw, "m", &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        t0.elapsed() < Duration::from_millis(600),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(r.header("x-ferrogate-target").as_deref(), Some("fast/y"));
    assert_eq!(r.body.as_ref(), fixture(STREAM_TEXT).as_slice());
    assert!(slow.wait_cancels(1, WAIT).await);
}

#[tokio::test]
async fn fast_primary_starts_no_hedge() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let gw = gateway(
        &[oai("a", &a), oai("b", &b)],
        &format!("  - name: m\n    targets: [{{ provider: a, model: x, weight: {HEAVY} }}, {{ provider: b, model: y, weight: 1 }}]\n    hedge: {{ after_ms: 300 }}\n"),
    )
    .await;
    for _ in 0..3 {
        let r = chat(&gw, "m").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-ferrogate-target").as_deref(), Some("a/x"));
    }
    assert_eq!(b.request_count(), 0);
    assert_eq!(
        gw.metric("ferrogate_hedges_total", &[("model", "m")]).await,
        0.0
    );
}

/// Every target at its concurrency limit: an immediate 429, not a request that spins until a
/// slot frees (a refused target stays out for the rest of the request).
#[tokio::test]
async fn all_targets_full_answer_429_at_once() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.push(slow_ok(800));
    b.push(slow_ok(800));
    let gw = gateway(
        &[oai("a", &a), oai("b", &b)],
        "  - name: m\n    targets: [{ provider: a, model: x, max_concurrency: 1 }, { provider: b, model: y, max_concurrency: 1 }]\n",
    )
    .await;
    let (u1, u2) = (gw.url(CHAT), gw.url(CHAT));
    let first = tokio::spawn(async move { post(&u1, chat_body("m", None)).await });
    let second = tokio::spawn(async move { post(&u2, chat_body("m", None)).await });
    assert!(a.wait_requests(1, WAIT).await && b.wait_requests(1, WAIT).await);
    let t0 = Instant::now();
    let r = chat(&gw, "m").await;
    assert_openai_error(&r, 429);
    assert!(
        t0.elapsed() < Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(second.await.unwrap().status, 200);
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
}

/// Model names from requests (glob matches, `x-ferrogate-fallbacks`) never become metric
/// labels: series stay bounded by the configuration.
#[tokio::test]
async fn client_chosen_model_names_are_not_metric_labels() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    a.set_default(Behavior::json(
        500,
        openai_error("boom", "server_error", None),
    ));
    b.set_default(Behavior::json_fixture(200, CHAT_NONSTREAM));
    let gw = gateway(
        &[oai("a", &a), oai("b", &b)],
        "  - name: \"gpt-*\"\n    targets: [{ provider: a }]\n    deadline_ms: 5000\n",
    )
    .await;
    for i in 0..3 {
        let r = post_with(
            &gw.url(CHAT),
            chat_body(&format!("gpt-anything-{i}"), None),
            &[("x-ferrogate-fallbacks", &format!("b/client-chosen-{i}"))],
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-ferrogate-fallback").as_deref(),
            Some(&*format!("b/client-chosen-{i}"))
        );
    }
    let text = gw.metrics().await;
    assert!(!text.contains("client-chosen"), "{text}");
    assert!(!text.contains("gpt-anything"), "{text}");
    assert!(text.contains("served_by=\"b/*\""), "{text}");
}
