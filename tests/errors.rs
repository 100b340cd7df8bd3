//! Error handling: request validation, limits and timeouts, upstream failures, upstream error
//! pass-through, and secrets never leaking into responses or logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Black-box tests time the gateway from outside with the system clock.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt;

// ---------------------------------------------------------------- request validation

#[tokio::test]
async fn malformed_json_is_400() {
    let (up, gw) = setup().await;
    let reply = post(&gw.chat_url(), r#"{"model":"gpt-4o-mini","messages":[{"#).await;
    assert_openai_error(&reply, 400);
    assert_eq!(up.request_count(), 0, "nothing must reach the upstream");
}

#[tokio::test]
async fn missing_model_is_400() {
    let (up, gw) = setup().await;
    let reply = post(
        &gw.chat_url(),
        r#"{"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    let msg = assert_openai_error(&reply, 400);
    assert!(
        msg.contains("model"),
        "message should mention `model`: {msg}"
    );
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn non_string_model_is_400() {
    let (up, gw) = setup().await;
    for body in [
        r#"{"model":42,"messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":null,"messages":[]}"#,
        r#"{"model":{"name":"gpt-4o-mini"},"messages":[]}"#,
    ] {
        let reply = post(&gw.chat_url(), body).await;
        assert_openai_error(&reply, 400);
    }
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn unknown_model_is_404_and_suggests_close_name() {
    let (up, gw) = setup().await;
    let reply = post(&gw.chat_url(), chat_body("gpt-4o-mni", None)).await;
    let msg = assert_openai_error(&reply, 404);
    assert!(
        msg.contains("gpt-4o-mini"),
        "404 message should suggest `gpt-4o-mini`: {msg}"
    );
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn unknown_provider_prefix_is_404() {
    let (up, gw) = setup().await;
    let reply = post(&gw.chat_url(), chat_body("nosuchprovider/some-model", None)).await;
    assert_openai_error(&reply, 404);
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn body_over_limit_is_413_and_body_under_limit_passes() {
    let (up, gw) = setup_with(|mut c| {
        c.body_limit_bytes = 2048;
        c
    })
    .await;
    let small = chat_body("gpt-4o-mini", None);
    assert!(small.len() < 2048);
    let reply = post(&gw.chat_url(), small).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let big = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(8 * 1024)
    );
    let reply = post(&gw.chat_url(), big).await;
    assert_openai_error(&reply, 413);
    assert_eq!(
        up.request_count(),
        1,
        "the oversized body must not be forwarded"
    );
}

// ---------------------------------------------------------------- upstream failures

#[tokio::test]
async fn refused_upstream_connection_is_502() {
    let url = format!("http://127.0.0.1:{}/v1", refused_port());
    let gw = Gateway::start(&Cfg::new(&url).yaml()).await;
    let started = Instant::now();
    let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
    assert_openai_error(&reply, 502);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn ready_is_503_once_every_routed_provider_is_known_down() {
    let url = format!("http://127.0.0.1:{}/v1", refused_port());
    let gw = Gateway::start(&Cfg::new(&url).yaml()).await;
    assert_eq!(get(&gw.url("/ready")).await.status, 200);
    for _ in 0..5 {
        let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
        assert_openai_error(&reply, 502);
    }
    assert_eq!(get(&gw.url("/ready")).await.status, 503);
    assert_eq!(
        get(&gw.url("/health")).await.status,
        200,
        "liveness is not readiness"
    );
}

#[tokio::test]
async fn upstream_head_slower_than_first_byte_timeout_is_504() {
    let (up, gw) = setup_with(|mut c| {
        c.first_byte_ms = 300;
        c
    })
    .await;
    up.push(Behavior::json_fixture(200, CHAT_NONSTREAM).head_delay(Duration::from_secs(4)));
    let started = Instant::now();
    let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
    let elapsed = started.elapsed();
    assert_openai_error(&reply, 504);
    assert!(
        elapsed < Duration::from_millis(2500),
        "504 took {elapsed:?} with first_byte_ms 300"
    );
    assert!(
        elapsed >= Duration::from_millis(250),
        "504 too early: {elapsed:?}"
    );
}

#[tokio::test]
async fn stream_request_with_slow_upstream_head_is_504() {
    let (up, gw) = setup_with(|mut c| {
        c.first_byte_ms = 300;
        c
    })
    .await;
    up.push(Behavior::sse_fixture(STREAM_TEXT).head_delay(Duration::from_secs(4)));
    let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", Some(true))).await;
    assert_openai_error(&reply, 504);
}

#[tokio::test]
async fn upstream_dropping_connection_mid_stream_ends_client_stream() {
    let (up, gw) = setup().await;
    up.push(Behavior::sse_fixture(STREAM_TEXT).drop_after(3));
    let mut body = fixture_request_body(STREAM_TEXT_REQUEST);
    body["model"] = serde_json::json!("gpt-4o-mini");
    let resp = client()
        .post(gw.chat_url())
        .body(serde_json::to_vec(&body).expect("json"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let (bytes, _clean) = read_stream(resp).await; // panics if it does not end within 10 s
    let events = sse_events(&fixture(STREAM_TEXT));
    let prefix = events[..3].concat();
    assert!(
        bytes.starts_with(&prefix),
        "client should get the 3 frames sent before the drop; got {:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(
        !contains(&bytes, b"data: [DONE]"),
        "the gateway must not invent a clean end"
    );
    // The gateway keeps serving.
    assert_eq!(get(&gw.url("/health")).await.status, 200);
    let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn stalled_upstream_stream_is_cut_after_total_timeout() {
    let (up, gw) = setup_with(|mut c| {
        c.total_ms = 1500;
        c
    })
    .await;
    up.push(Behavior::sse_fixture(STREAM_TEXT).stall_after(2));
    let started = Instant::now();
    let resp = client()
        .post(gw.chat_url())
        .body(chat_body("gpt-4o-mini", Some(true)))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let (bytes, _clean) = read_stream(resp).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "stream with total_ms 1500 lasted {elapsed:?}"
    );
    assert!(
        contains(&bytes, br#""content":"The""#),
        "first frames forwarded"
    );
    assert!(
        up.wait_cancels(1, Duration::from_secs(2)).await,
        "the upstream connection should be closed when total_ms expires"
    );
}

// ---------------------------------------------------------------- upstream errors pass through

#[tokio::test]
async fn upstream_429_passes_through_with_status_and_exact_body() {
    let (up, gw) = setup().await;
    up.push(Behavior::json_fixture(429, ERR_429).header("retry-after", "1"));
    let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
    assert_eq!(reply.status, 429);
    assert_bytes_eq(&reply.body, &fixture(ERR_429), "429 body");
    assert_eq!(
        reply.header("x-ferrogate-target").as_deref(),
        Some("up/upstream-model-x")
    );
}

#[tokio::test]
async fn upstream_400s_pass_through_with_status_and_exact_body() {
    let (up, gw) = setup().await;
    for name in [ERR_400_INVALID_PARAM, ERR_400_UNSUPPORTED] {
        up.push(Behavior::json_fixture(400, name));
        let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
        assert_eq!(reply.status, 400, "{name}");
        assert_bytes_eq(&reply.body, &fixture(name), name);
    }
}

#[tokio::test]
async fn upstream_error_on_stream_request_passes_through() {
    let (up, gw) = setup().await;
    up.push(Behavior::json_fixture(400, ERR_400_UNSUPPORTED));
    let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", Some(true))).await;
    assert_eq!(reply.status, 400);
    assert_bytes_eq(
        &reply.body,
        &fixture(ERR_400_UNSUPPORTED),
        "stream error body",
    );
}

// ---------------------------------------------------------------- slow clients

#[tokio::test]
async fn client_that_never_sends_its_body_gets_408() {
    let (up, gw) = setup_with(|mut c| {
        c.body_read_timeout_ms = 500;
        c
    })
    .await;
    let mut s = raw_connect(gw.addr()).await;
    s.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"model\":\"gpt-4o-mini\"",
    )
    .await
    .expect("write");
    let started = Instant::now();
    let head = read_head(&mut s, Duration::from_secs(5)).await;
    let head = head.expect("no response within 5 s (body_read_timeout_ms 500)");
    assert!(
        head.starts_with("HTTP/1.1 408"),
        "expected 408, got: {head:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn client_that_never_finishes_its_header_is_disconnected() {
    let (_up, gw) = setup_with(|mut c| {
        c.header_read_timeout_ms = 500;
        c
    })
    .await;
    let mut s = raw_connect(gw.addr()).await;
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .expect("write");
    let started = Instant::now();
    let got = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(
        got.is_some(),
        "connection still open 5 s after a partial header (header_read_timeout_ms 500)"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "closed too early: {:?}",
        started.elapsed()
    );
    // Other clients are unaffected.
    assert_eq!(get(&gw.url("/health")).await.status, 200);
}

/// Reads until the end of a response head (or EOF) within `timeout`.
async fn read_head(s: &mut tokio::net::TcpStream, timeout: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let fut = async {
        let mut chunk = [0u8; 1024];
        loop {
            if contains(&buf, b"\r\n\r\n") {
                return;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(timeout, fut).await.ok()?;
    if buf.is_empty() {
        None
    } else {
        Some(String::from_utf8_lossy(&buf).into_owned())
    }
}

// ---------------------------------------------------------------- secrets

#[tokio::test]
async fn keys_never_appear_in_responses_or_logs() {
    let down = format!("http://127.0.0.1:{}/v1", refused_port());
    let up = MockUpstream::start().await;
    let mut cfg = Cfg::new(&up.base_url())
        .model("  - name: down-model\n    targets: [{ provider: down, model: gone }]");
    cfg.first_byte_ms = 300;
    cfg.extra_providers = format!(
        "  down:\n    kind: openai\n    base_url: {down}\n    keys: [{{ value: \"{KEY_1}\" }}]\n"
    );
    let gw = Gateway::start_with_env(&cfg.yaml(), &[("RUST_LOG", "debug")]).await;

    up.push(Behavior::json_fixture(200, CHAT_NONSTREAM));
    up.push(Behavior::json_fixture(429, ERR_429));
    up.push(Behavior::json(
        401,
        r#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
    ));
    up.push(Behavior::json_fixture(200, CHAT_NONSTREAM).head_delay(Duration::from_secs(2)));
    up.push(Behavior::sse_fixture(STREAM_TEXT));

    let bearer = format!("Bearer {CLIENT_KEY}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("x-api-key", CLIENT_KEY),
    ];
    let url = format!("{}?key={CLIENT_KEY}", gw.chat_url());
    let bodies = [
        chat_body("gpt-4o-mini", None),       // 200
        chat_body("gpt-4o-mini", None),       // upstream 429
        chat_body("gpt-4o-mini", None),       // upstream 401
        chat_body("gpt-4o-mini", None),       // 504
        chat_body("gpt-4o-mini", Some(true)), // stream
        chat_body("gpt-4o-mni", None),        // 404
        b"{not json".to_vec(),                // 400
        chat_body("down-model", None),        // 502
    ];
    let mut statuses = Vec::new();
    for body in bodies {
        let reply = post_with(&url, body, &headers).await;
        statuses.push(reply.status);
        let mut everything = reply.text();
        for (name, value) in reply.headers.iter() {
            everything.push_str(&format!(
                "\n{name}: {}",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        for secret in [KEY_1, KEY_2, CLIENT_KEY] {
            assert!(
                !everything.contains(secret),
                "response (status {}) contains secret {secret}:\n{everything}",
                reply.status
            );
        }
    }
    assert_eq!(statuses, vec![200, 429, 401, 504, 200, 404, 400, 502]);

    // Give the log writer a moment, then scan everything the process printed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = gw.all_output();
    for secret in [KEY_1, KEY_2, CLIENT_KEY] {
        assert!(
            !logs.contains(secret),
            "logs contain secret {secret}:\n{logs}"
        );
    }
}
