//! The built-in `mock` provider (`mock/<model>` and `kind: mock` providers): OpenAI-dialect,
//! deterministic, word-counted usage, configurable chunking, `max_tokens` truncation.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Black-box tests time the gateway from outside with the system clock.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const SLOW: &str = "  slow: { kind: mock, mock: { chunks: 4, chunk_delay_ms: 100, latency_ms: 300, reply_words: 8 } }\n";

async fn start() -> (MockUpstream, Gateway) {
    setup_with(|mut c| {
        c.extra_providers.push_str(SLOW);
        c.model("  - name: mocky\n    targets: [{ provider: fake, model: mock-target }]")
    })
    .await
}

/// Two messages with 3 + 4 = 7 whitespace-separated words.
fn request(model: &str, extra: Value) -> Vec<u8> {
    let mut v = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "hello there  world"},
            {"role": "user", "content": "one\ttwo\nthree four"}
        ]
    });
    for (k, val) in extra.as_object().expect("object") {
        v[k] = val.clone();
    }
    serde_json::to_vec(&v).expect("json")
}

fn content_of(v: &Value) -> String {
    v.pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no choices[0].message.content in {v}"))
        .to_string()
}

fn usage_of(v: &Value) -> (u64, u64, u64) {
    (
        v["usage"]["prompt_tokens"].as_u64().expect("prompt_tokens"),
        v["usage"]["completion_tokens"]
            .as_u64()
            .expect("completion_tokens"),
        v["usage"]["total_tokens"].as_u64().expect("total_tokens"),
    )
}

/// Events of a stream that carry a non-empty `delta.content`.
fn content_events(body: &[u8]) -> usize {
    sse_events(body)
        .iter()
        .filter_map(|e| event_json(e))
        .filter(|v| {
            v.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        })
        .count()
}

fn last_finish_reason(body: &[u8]) -> Option<String> {
    sse_events(body)
        .iter()
        .filter_map(|e| event_json(e))
        .filter_map(|v| {
            v.pointer("/choices/0/finish_reason")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .next_back()
}

#[tokio::test]
async fn builtin_mock_answers_in_openai_dialect_without_network() {
    let (up, gw) = start().await;
    let reply = post(&gw.chat_url(), request("mock/some-model", json!({}))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("x-ferrogate-target").as_deref(),
        Some("mock/some-model")
    );
    let v = reply.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].is_string(), "id: {v}");
    assert_eq!(
        v.pointer("/choices/0/message/role"),
        Some(&json!("assistant"))
    );
    assert_eq!(v.pointer("/choices/0/finish_reason"), Some(&json!("stop")));
    let content = content_of(&v);
    assert!(!content.trim().is_empty(), "empty mock reply");
    let (p, c, t) = usage_of(&v);
    assert_eq!(p, 7, "prompt_tokens = words over all message contents");
    assert_eq!(c, content.split_whitespace().count() as u64);
    assert_eq!(t, p + c);
    assert_eq!(
        up.request_count(),
        0,
        "the mock provider must not touch the network"
    );
}

#[tokio::test]
async fn mock_answers_are_deterministic() {
    let (_up, gw) = start().await;
    let a = post(&gw.chat_url(), request("mock/det", json!({}))).await;
    let b = post(&gw.chat_url(), request("mock/det", json!({}))).await;
    assert_eq!(a.status, 200);
    assert_eq!(b.status, 200);
    assert_eq!(content_of(&a.json()), content_of(&b.json()));
}

#[tokio::test]
async fn configured_mock_provider_uses_its_reply_words_and_counts_usage() {
    let (_up, gw) = start().await;
    for model in ["fake/anything", "mocky"] {
        let reply = post(&gw.chat_url(), request(model, json!({}))).await;
        assert_eq!(reply.status, 200, "{model}: {}", reply.text());
        let v = reply.json();
        let content = content_of(&v);
        assert_eq!(
            content.split_whitespace().count(),
            10,
            "{model}: reply_words 10, got {content:?}"
        );
        assert_eq!(usage_of(&v), (7, 10, 17), "{model}");
    }
    let reply = post(&gw.chat_url(), request("mocky", json!({}))).await;
    assert_eq!(
        reply.header("x-ferrogate-target").as_deref(),
        Some("fake/mock-target")
    );
}

#[tokio::test]
async fn mock_stream_has_configured_chunks_and_ends_with_done() {
    let (_up, gw) = start().await;
    let reply = post(&gw.chat_url(), request("fake/s", json!({"stream": true}))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "content-type {:?}",
        reply.header("content-type")
    );
    let events = sse_events(&reply.body);
    assert_eq!(
        events.last().map(|e| e.as_slice()),
        Some(&b"data: [DONE]\n\n"[..]),
        "stream must end with data: [DONE]"
    );
    assert_eq!(content_events(&reply.body), 5, "chunks: 5");
    for e in &events[..events.len() - 1] {
        let v = event_json(e)
            .unwrap_or_else(|| panic!("non-JSON event {:?}", String::from_utf8_lossy(e)));
        assert_eq!(v["object"], "chat.completion.chunk", "{v}");
        assert!(
            !v.get("usage").is_some_and(Value::is_object),
            "usage chunk sent although the client did not ask: {v}"
        );
    }
    assert_eq!(last_finish_reason(&reply.body).as_deref(), Some("stop"));
}

#[tokio::test]
async fn mock_stream_matches_nonstream_content_and_usage() {
    let (_up, gw) = start().await;
    for model in ["fake/same", "mock/same"] {
        let whole = post(&gw.chat_url(), request(model, json!({}))).await;
        assert_eq!(whole.status, 200);
        let v = whole.json();
        let streamed = post(
            &gw.chat_url(),
            request(
                model,
                json!({"stream": true, "stream_options": {"include_usage": true}}),
            ),
        )
        .await;
        assert_eq!(streamed.status, 200, "{}", streamed.text());
        assert_eq!(
            stream_content(&streamed.body),
            content_of(&v),
            "{model}: concatenated stream content == non-stream content"
        );
        let (p, c, _) = usage_of(&v);
        assert_eq!(
            stream_usage(&streamed.body),
            Some((p, c)),
            "{model}: usage chunk must carry the non-stream numbers"
        );
        assert!(streamed.body.ends_with(b"data: [DONE]\n\n"));
    }
}

#[tokio::test]
async fn mock_max_tokens_cuts_reply_with_finish_reason_length() {
    let (_up, gw) = start().await;
    let reply = post(
        &gw.chat_url(),
        request("fake/cut", json!({"max_tokens": 3})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    let content = content_of(&v);
    assert_eq!(content.split_whitespace().count(), 3, "{content:?}");
    assert_eq!(
        v.pointer("/choices/0/finish_reason"),
        Some(&json!("length"))
    );
    assert_eq!(usage_of(&v), (7, 3, 10));

    let streamed = post(
        &gw.chat_url(),
        request(
            "fake/cut",
            json!({"max_tokens": 3, "stream": true, "stream_options": {"include_usage": true}}),
        ),
    )
    .await;
    assert_eq!(streamed.status, 200);
    assert_eq!(stream_content(&streamed.body), content);
    assert_eq!(
        last_finish_reason(&streamed.body).as_deref(),
        Some("length")
    );
    assert_eq!(stream_usage(&streamed.body), Some((7, 3)));
}

#[tokio::test]
async fn mock_latency_and_chunk_delay_are_applied() {
    let (_up, gw) = start().await;
    let started = Instant::now();
    let reply = post(&gw.chat_url(), request("slow/x", json!({}))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        started.elapsed() >= Duration::from_millis(280),
        "latency_ms 300 not applied: {:?}",
        started.elapsed()
    );
    assert_eq!(content_of(&reply.json()).split_whitespace().count(), 8);

    let started = Instant::now();
    let streamed = post(&gw.chat_url(), request("slow/x", json!({"stream": true}))).await;
    assert_eq!(streamed.status, 200);
    assert_eq!(content_events(&streamed.body), 4);
    assert!(
        started.elapsed() >= Duration::from_millis(280 + 280),
        "latency 300 + 3-4 chunk delays of 100 ms expected, took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn mock_usage_is_metered() {
    let (_up, gw) = start().await;
    let reply = post(&gw.chat_url(), request("mocky", json!({}))).await;
    assert_eq!(reply.status, 200);
    let streamed = post(&gw.chat_url(), request("mocky", json!({"stream": true}))).await;
    assert_eq!(streamed.status, 200);
    let p = gw
        .wait_metric(
            "ferrogate_tokens_total",
            &[("model", "mocky"), ("kind", "prompt")],
            14.0,
            Duration::from_secs(3),
        )
        .await;
    let c = gw
        .wait_metric(
            "ferrogate_tokens_total",
            &[("model", "mocky"), ("kind", "completion")],
            20.0,
            Duration::from_secs(3),
        )
        .await;
    assert_eq!((p, c), (14.0, 20.0), "{}", gw.metrics().await);
}
