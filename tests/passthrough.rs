//! Proxying to an OpenAI-compatible upstream: byte-exact bodies, model rewriting, routing,
//! header hygiene, streaming (frame-by-frame, usage injection/stripping) and usage metering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const TARGET: &str = "up/upstream-model-x";

/// The fixture request for `STREAM_TEXT` with `model` set; `include_usage == false` drops the
/// client's `stream_options` entirely.
fn stream_request(model: &str, include_usage: bool) -> Vec<u8> {
    let mut body = fixture_request_body(STREAM_TEXT_REQUEST);
    body["model"] = json!(model);
    if !include_usage {
        body.as_object_mut()
            .expect("object")
            .remove("stream_options");
    }
    serde_json::to_vec(&body).expect("json")
}

#[track_caller]
fn assert_target_headers(reply: &Reply, target: &str) {
    assert_eq!(
        reply.header("x-ferrogate-target").as_deref(),
        Some(target),
        "x-ferrogate-target"
    );
    let overhead = reply
        .header("x-ferrogate-overhead-us")
        .expect("x-ferrogate-overhead-us header");
    assert!(
        overhead.parse::<u64>().is_ok(),
        "x-ferrogate-overhead-us is not an integer: {overhead:?}"
    );
}

/// Polls the token counters until they reach the expected values, then asserts exact equality.
async fn assert_tokens(gw: &Gateway, labels: &[(&str, &str)], prompt: u64, completion: u64) {
    let mut p = labels.to_vec();
    p.push(("kind", "prompt"));
    let mut c = labels.to_vec();
    c.push(("kind", "completion"));
    let got_p = gw
        .wait_metric(
            "ferrogate_tokens_total",
            &p,
            prompt as f64,
            Duration::from_secs(3),
        )
        .await;
    let got_c = gw
        .wait_metric(
            "ferrogate_tokens_total",
            &c,
            completion as f64,
            Duration::from_secs(3),
        )
        .await;
    assert_eq!(
        (got_p, got_c),
        (prompt as f64, completion as f64),
        "ferrogate_tokens_total{labels:?} (prompt, completion)\nmetrics:\n{}",
        gw.metrics().await
    );
}

// ---------------------------------------------------------------- non-stream bodies & routing

#[tokio::test]
async fn nonstream_request_body_forwarded_byte_exact_except_model_value() {
    let (up, gw) = setup().await;
    // Odd spacing and `0.70` would not survive a parse/re-serialize round trip.
    let prefix = br#"{ "messages" : [ {"role":"user", "content":"Hi  there\u00e9"} ],"temperature":0.70, "model" : "#;
    let suffix = br#" , "max_tokens" : 5 }"#;
    let body = [&prefix[..], br#""gpt-4o-mini""#, &suffix[..]].concat();
    let expected = [&prefix[..], br#""upstream-model-x""#, &suffix[..]].concat();

    let reply = post(&gw.chat_url(), body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let req = up.last_request();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/chat/completions");
    assert_bytes_eq(&req.body, &expected, "upstream request body");
}

#[tokio::test]
async fn nonstream_response_body_returned_byte_exact_with_target_headers() {
    let (_up, gw) = setup().await;
    let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(
        &reply.body,
        &fixture(CHAT_NONSTREAM),
        "client response body",
    );
    assert_target_headers(&reply, TARGET);
}

#[tokio::test]
async fn model_without_target_model_is_forwarded_unchanged() {
    let (up, gw) = setup().await;
    let body = br#"{"model":"claude-3-haiku","messages":[{"role":"user","content":"x"}]}"#.to_vec();
    let reply = post(&gw.chat_url(), body.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(&up.last_request().body, &body, "upstream body");
    assert_target_headers(&reply, "up/claude-3-haiku");
}

#[tokio::test]
async fn exact_model_name_wins_over_glob_and_longest_glob_wins() {
    let (up, gw) = setup_with(|c| {
        c.model("  - name: claude-exact\n    targets: [{ provider: up, model: exact-target }]")
            .model("  - name: \"claude-3-*\"\n    targets: [{ provider: up, model: long-glob-target }]")
    })
    .await;

    let reply = post(&gw.chat_url(), chat_body("claude-exact", None)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.last_request().json()["model"], "exact-target");
    assert_target_headers(&reply, "up/exact-target");

    let reply = post(&gw.chat_url(), chat_body("claude-3-opus", None)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.last_request().json()["model"], "long-glob-target");
    assert_target_headers(&reply, "up/long-glob-target");

    let reply = post(&gw.chat_url(), chat_body("claude-2", None)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.last_request().json()["model"], "claude-2");
}

#[tokio::test]
async fn provider_slash_model_goes_straight_to_that_provider() {
    let (up, gw) = setup().await;
    let reply = post(&gw.chat_url(), chat_body("up/some-raw-model", None)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let req = up.last_request();
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.json()["model"], "some-raw-model");
    assert_target_headers(&reply, "up/some-raw-model");
}

#[tokio::test]
async fn endpoints_work_without_v1_prefix() {
    let (up, gw) = setup().await;
    let reply = post(&gw.url("/chat/completions"), chat_body("gpt-4o-mini", None)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.last_request().path, "/v1/chat/completions");

    let reply = post(
        &gw.url("/embeddings"),
        r#"{"model":"gpt-4o-mini","input":["a","b"]}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.last_request().path, "/v1/embeddings");
}

#[tokio::test]
async fn embeddings_are_proxied_byte_exact() {
    let (up, gw) = setup().await;
    up.push(Behavior::json_fixture(200, EMBEDDINGS));
    let body = br#"{"input":["hello","world"],"model":"gpt-4o-mini","encoding_format":"float"}"#;
    let reply = post(&gw.url("/v1/embeddings"), body.to_vec()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(&reply.body, &fixture(EMBEDDINGS), "embeddings response");
    let req = up.last_request();
    assert_eq!(req.path, "/v1/embeddings");
    assert_bytes_eq(
        &req.body,
        br#"{"input":["hello","world"],"model":"upstream-model-x","encoding_format":"float"}"#,
        "embeddings upstream body",
    );
    assert_target_headers(&reply, TARGET);
}

#[tokio::test]
async fn legacy_completions_are_proxied() {
    let (up, gw) = setup().await;
    let answer = br#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"upstream-model-x","choices":[{"text":" world","index":0,"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}"#;
    up.push(Behavior::json(200, answer.to_vec()));
    let reply = post(
        &gw.url("/v1/completions"),
        r#"{"model":"gpt-4o-mini","prompt":"hello"}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(&reply.body, answer, "completions response");
    let req = up.last_request();
    assert_eq!(req.path, "/v1/completions");
    assert_bytes_eq(
        &req.body,
        br#"{"model":"upstream-model-x","prompt":"hello"}"#,
        "completions upstream body",
    );
}

#[tokio::test]
async fn nested_model_before_top_level_model_is_left_alone() {
    let (up, gw) = setup().await;
    let prefix = br#"{"metadata":{"model":"gpt-4o-mini"},"tools":[{"type":"function","function":{"name":"pick","parameters":{"type":"object","properties":{"model":{"type":"string","default":"gpt-4o-mini"}}}}}],"messages":[{"role":"user","content":"\"model\":\"gpt-4o-mini\""}],"#;
    let body = [&prefix[..], br#""model":"gpt-4o-mini"}"#].concat();
    let expected = [&prefix[..], br#""model":"upstream-model-x"}"#].concat();

    let reply = post(&gw.chat_url(), body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(&up.last_request().body, &expected, "upstream body");
    assert_target_headers(&reply, TARGET);
}

#[tokio::test]
async fn nested_stream_true_with_top_level_stream_absent_is_not_a_stream() {
    let (up, gw) = setup().await;
    let prefix =
        br#"{"messages":[{"role":"user","stream":true,"content":"\"stream\": true"}],"model":"#;
    let body = [&prefix[..], br#""gpt-4o-mini"}"#].concat();
    let expected = [&prefix[..], br#""upstream-model-x"}"#].concat();

    let reply = post(&gw.chat_url(), body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // No stream_options injected: the body is untouched apart from the model value.
    assert_bytes_eq(&up.last_request().body, &expected, "upstream body");
    assert_bytes_eq(&reply.body, &fixture(CHAT_NONSTREAM), "client body");
    // Metered as a non-stream answer.
    assert_tokens(
        &gw,
        &[("model", "gpt-4o-mini"), ("target", TARGET)],
        16,
        363,
    )
    .await;
}

#[tokio::test]
async fn nested_stream_true_with_top_level_stream_false_is_not_a_stream() {
    let (up, gw) = setup().await;
    let prefix =
        br#"{"messages":[{"role":"user","content":"x","stream":true}],"stream":false,"model":"#;
    let body = [&prefix[..], br#""gpt-4o-mini"}"#].concat();
    let expected = [&prefix[..], br#""upstream-model-x"}"#].concat();

    let reply = post(&gw.chat_url(), body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(&up.last_request().body, &expected, "upstream body");
    assert_bytes_eq(&reply.body, &fixture(CHAT_NONSTREAM), "client body");
}

// ---------------------------------------------------------------- headers & credentials

#[tokio::test]
async fn client_credentials_replaced_by_configured_key() {
    let (up, gw) = setup().await;
    let bearer = format!("Bearer {CLIENT_KEY}");
    let reply = post_with(
        &gw.url(&format!("/v1/chat/completions?key={CLIENT_KEY}")),
        chat_body("gpt-4o-mini", None),
        &[
            ("authorization", bearer.as_str()),
            ("x-api-key", CLIENT_KEY),
            ("x-goog-api-key", CLIENT_KEY),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let req = up.last_request();
    let auth = req.header_all("authorization");
    assert!(
        auth == vec![format!("Bearer {KEY_1}")] || auth == vec![format!("Bearer {KEY_2}")],
        "upstream authorization: {auth:?}"
    );
    assert_eq!(req.header("x-api-key"), None);
    assert_eq!(req.header("x-goog-api-key"), None);
    assert!(
        req.path.starts_with("/v1/chat/completions") && !req.path.contains(CLIENT_KEY),
        "upstream path leaks the client key: {}",
        req.path
    );
    for (name, value) in req.headers.iter() {
        assert!(
            !String::from_utf8_lossy(value.as_bytes()).contains(CLIENT_KEY),
            "upstream header {name} carries the client key"
        );
    }
}

#[tokio::test]
async fn weighted_keys_are_both_used_in_proportion() {
    let (up, gw) = setup().await;
    for _ in 0..40 {
        let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let auths: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or_default())
        .collect();
    let k1 = auths
        .iter()
        .filter(|a| **a == format!("Bearer {KEY_1}"))
        .count();
    let k2 = auths
        .iter()
        .filter(|a| **a == format!("Bearer {KEY_2}"))
        .count();
    assert_eq!(
        k1 + k2,
        40,
        "every request carries one of the keys: {auths:?}"
    );
    // Weights 3:1 -> expected 30/10; these bounds fail with probability < 1e-3.
    assert!(k2 >= 1, "key 2 (weight 1) never chosen");
    assert!(k1 > k2, "key 1 (weight 3) chosen {k1}x vs key 2 {k2}x");
}

#[tokio::test]
async fn provider_without_keys_sends_no_authorization() {
    let (up, gw) = setup_with(|mut c| {
        c.keys = None;
        c
    })
    .await;
    let bearer = format!("Bearer {CLIENT_KEY}");
    let reply = post_with(
        &gw.chat_url(),
        chat_body("gpt-4o-mini", None),
        &[("authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.last_request().header("authorization"), None);
}

#[tokio::test]
async fn passthrough_auth_forwards_client_authorization() {
    let (up, gw) = setup_with(|mut c| {
        c.keys = None;
        c.auth = Some("passthrough".into());
        c
    })
    .await;
    let bearer = format!("Bearer {CLIENT_KEY}");
    let reply = post_with(
        &gw.chat_url(),
        chat_body("gpt-4o-mini", None),
        &[("authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.last_request().header_all("authorization"), vec![bearer]);
}

#[tokio::test]
async fn end_to_end_headers_forwarded_and_hop_by_hop_stripped() {
    let (up, gw) = setup().await;
    let reply = post_with(
        &gw.chat_url(),
        chat_body("gpt-4o-mini", None),
        &[
            ("OpenAI-Organization", "org-test"),
            ("x-foo", "bar"),
            ("accept-encoding", "gzip, br"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-foo"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("proxy-connection", "keep-alive"),
            ("x-request-id", "req-from-client-42"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let req = up.last_request();
    assert_eq!(
        req.header("openai-organization").as_deref(),
        Some("org-test")
    );
    assert_eq!(req.header("x-foo").as_deref(), Some("bar"));
    assert_eq!(
        req.header("x-extra").as_deref(),
        Some("yes"),
        "provider headers"
    );
    assert_eq!(
        req.header_all("accept-encoding"),
        vec!["identity".to_string()]
    );
    for h in [
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
    ] {
        assert_eq!(
            req.header(h),
            None,
            "hop-by-hop header {h} forwarded upstream"
        );
    }
    assert_eq!(
        req.header("x-request-id").as_deref(),
        Some("req-from-client-42")
    );
    assert_eq!(
        reply.header("x-request-id").as_deref(),
        Some("req-from-client-42")
    );
}

#[tokio::test]
async fn request_id_is_generated_when_client_sends_none() {
    let (up, gw) = setup().await;
    let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let upstream_id = up
        .last_request()
        .header("x-request-id")
        .expect("x-request-id sent upstream");
    assert!(!upstream_id.trim().is_empty());
    assert_eq!(reply.header("x-request-id"), Some(upstream_id.clone()));

    let reply2 = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
    assert_ne!(
        reply2.header("x-request-id"),
        Some(upstream_id),
        "request ids must differ between requests"
    );
}

#[tokio::test]
async fn ratelimit_and_processing_headers_pass_back() {
    let (up, gw) = setup().await;
    up.push(
        Behavior::json_fixture(200, CHAT_NONSTREAM)
            .header("x-ratelimit-limit-requests", "500")
            .header("x-ratelimit-remaining-requests", "499")
            .header("x-ratelimit-reset-tokens", "6ms")
            .header("openai-processing-ms", "123"),
    );
    let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("x-ratelimit-limit-requests").as_deref(),
        Some("500")
    );
    assert_eq!(
        reply.header("x-ratelimit-remaining-requests").as_deref(),
        Some("499")
    );
    assert_eq!(
        reply.header("x-ratelimit-reset-tokens").as_deref(),
        Some("6ms")
    );
    assert_eq!(reply.header("openai-processing-ms").as_deref(), Some("123"));
}

// ---------------------------------------------------------------- streaming

#[tokio::test]
async fn stream_with_client_include_usage_is_byte_identical() {
    let (up, gw) = setup().await;
    up.push(Behavior::sse_fixture(STREAM_TEXT));
    let body = stream_request("gpt-4o-mini", true);
    let reply = post(&gw.chat_url(), body.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/event-stream")),
        "content-type: {:?}",
        reply.header("content-type")
    );
    assert_target_headers(&reply, TARGET);
    assert_bytes_eq(&reply.body, &fixture(STREAM_TEXT), "client stream");
    // The request needed no injection: only the model value changed.
    let expected_up = replace_once(
        &body,
        br#""model":"gpt-4o-mini""#,
        br#""model":"upstream-model-x""#,
    );
    assert_bytes_eq(&up.last_request().body, &expected_up, "upstream body");
}

#[tokio::test]
async fn stream_without_include_usage_is_injected_upstream_and_stripped_for_client() {
    let (up, gw) = setup().await;
    up.push(Behavior::sse_fixture(STREAM_TEXT));
    let body = stream_request("gpt-4o-mini", false);
    let reply = post(&gw.chat_url(), body.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(
        &reply.body,
        &strip_usage(&fixture(STREAM_TEXT)),
        "client stream (usage stripped)",
    );

    let sent = up.last_request().json();
    let mut expected: Value = serde_json::from_slice(&body).expect("json");
    expected["model"] = json!("upstream-model-x");
    expected["stream_options"] = json!({"include_usage": true});
    assert_eq!(sent, expected, "upstream request (as JSON)");
}

#[tokio::test]
async fn stream_options_without_include_usage_gets_it_added() {
    let (up, gw) = setup().await;
    up.push(Behavior::sse_fixture(STREAM_TEXT));
    let body = br#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"x_custom":1},"messages":[{"role":"user","content":"hi"}]}"#;
    let reply = post(&gw.chat_url(), body.to_vec()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sent = up.last_request().json();
    assert_eq!(
        sent["stream_options"],
        json!({"x_custom": 1, "include_usage": true}),
        "upstream stream_options"
    );
    assert_eq!(sent["model"], "upstream-model-x");
    assert_eq!(sent["stream"], true);
    assert_bytes_eq(
        &reply.body,
        &strip_usage(&fixture(STREAM_TEXT)),
        "client stream (usage stripped)",
    );
}

#[tokio::test]
async fn stream_split_at_odd_byte_boundaries_with_include_usage_is_byte_identical() {
    let (up, gw) = setup().await;
    up.push(Behavior::sse_fixture(STREAM_TEXT).split_every(7));
    let reply = post(&gw.chat_url(), stream_request("gpt-4o-mini", true)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(&reply.body, &fixture(STREAM_TEXT), "client stream");
}

#[tokio::test]
async fn stream_split_at_odd_byte_boundaries_is_stripped_exactly() {
    for n in [1usize, 5, 13, 64] {
        let (up, gw) = setup().await;
        up.push(Behavior::sse_fixture(STREAM_TEXT).split_every(n));
        let reply = post(&gw.chat_url(), stream_request("gpt-4o-mini", false)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_bytes_eq(
            &reply.body,
            &strip_usage(&fixture(STREAM_TEXT)),
            &format!("client stream, upstream frames of {n} bytes"),
        );
        assert_tokens(&gw, &[("model", "gpt-4o-mini"), ("target", TARGET)], 78, 9).await;
    }
}

#[tokio::test]
async fn tool_call_stream_is_stripped_when_client_did_not_ask_usage() {
    let (up, gw) = setup().await;
    up.push(Behavior::sse_fixture(STREAM_TOOL));
    let mut body = fixture_request_body(STREAM_TOOL_REQUEST);
    body.as_object_mut()
        .expect("object")
        .remove("stream_options");
    let reply = post(&gw.chat_url(), serde_json::to_vec(&body).expect("json")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(
        &reply.body,
        &strip_usage(&fixture(STREAM_TOOL)),
        "client tool-call stream",
    );
    assert_tokens(&gw, &[("model", "gpt-4o-mini"), ("target", TARGET)], 53, 15).await;
}

#[tokio::test]
async fn tool_call_stream_with_include_usage_is_byte_identical() {
    let (up, gw) = setup().await;
    up.push(Behavior::sse_fixture(STREAM_TOOL).split_every(11));
    let body = serde_json::to_vec(&fixture_request_body(STREAM_TOOL_REQUEST)).expect("json");
    let reply = post(&gw.chat_url(), body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(
        &reply.body,
        &fixture(STREAM_TOOL),
        "client tool-call stream",
    );
}

#[tokio::test]
async fn finish_length_and_refusal_streams_pass_through() {
    for name in [STREAM_LENGTH, STREAM_REFUSAL] {
        let (up, gw) = setup().await;
        up.push(Behavior::sse_fixture(name));
        up.push(Behavior::sse_fixture(name).split_every(3));
        let with_usage = post(&gw.chat_url(), stream_request("gpt-4o-mini", true)).await;
        assert_eq!(with_usage.status, 200, "{}", with_usage.text());
        assert_bytes_eq(&with_usage.body, &fixture(name), name);

        let without = post(&gw.chat_url(), stream_request("gpt-4o-mini", false)).await;
        assert_eq!(without.status, 200, "{}", without.text());
        let expected = strip_usage(&fixture(name));
        assert!(
            expected.len() < fixture(name).len(),
            "fixture has a usage chunk"
        );
        assert_bytes_eq(&without.body, &expected, name);
    }
}

#[tokio::test]
async fn in_band_error_event_is_forwarded_untouched() {
    let error_event = b"data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n";
    let events = sse_events(&fixture(STREAM_TEXT));
    let upstream_body = [
        events[0].as_slice(),
        events[1].as_slice(),
        events[2].as_slice(),
        error_event,
    ]
    .concat();

    let (up, gw) = setup().await;
    up.push(Behavior::sse(upstream_body.clone()));
    up.push(Behavior::sse(upstream_body.clone()).split_every(9));

    let reply = post(&gw.chat_url(), stream_request("gpt-4o-mini", true)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(
        &reply.body,
        &upstream_body,
        "stream with error (include_usage)",
    );

    let reply = post(&gw.chat_url(), stream_request("gpt-4o-mini", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let expected = [
        strip_usage(&upstream_body[..upstream_body.len() - error_event.len()]),
        error_event.to_vec(),
    ]
    .concat();
    assert_bytes_eq(&reply.body, &expected, "stream with error (usage stripped)");
    assert!(reply.body.ends_with(error_event));
}

/// Releases upstream frames one by one and checks each reaches the client before the next
/// one exists.
async fn frames_forwarded_as_they_arrive(include_usage: bool) {
    let (up, gw) = setup().await;
    let (behavior, gate) = Behavior::sse_fixture(STREAM_TEXT).gated();
    up.push(behavior);
    let events = sse_events(&fixture(STREAM_TEXT));
    let expected_event = |i: usize| -> Vec<u8> {
        if include_usage {
            events[i].clone()
        } else {
            strip_usage(&events[i])
        }
    };

    let url = gw.chat_url();
    let body = stream_request("gpt-4o-mini", include_usage);
    let pending = tokio::spawn(async move { client().post(url).body(body).send().await });
    gate.release(1);
    let resp = tokio::time::timeout(WAIT, pending)
        .await
        .expect("response head within 10 s")
        .expect("join")
        .expect("send");
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();

    let mut want = Vec::new();
    for i in 0..3 {
        if i > 0 {
            gate.release(1);
        }
        want.extend_from_slice(&expected_event(i));
        let got = read_until(&mut stream, &mut buf, &want, Duration::from_secs(5)).await;
        assert!(
            got,
            "frame {i} not forwarded before frame {} was released; client has {:?}",
            i + 1,
            String::from_utf8_lossy(&buf)
        );
        assert_eq!(gate.sent(), i + 1, "upstream sent more than released");
        assert_bytes_eq(&buf, &want, &format!("client bytes after frame {i}"));
    }

    gate.release(1000);
    let rest = async {
        use futures_util::StreamExt;
        while let Some(c) = stream.next().await {
            buf.extend_from_slice(&c.expect("stream chunk"));
        }
    };
    tokio::time::timeout(WAIT, rest).await.expect("stream end");
    let full = if include_usage {
        fixture(STREAM_TEXT)
    } else {
        strip_usage(&fixture(STREAM_TEXT))
    };
    assert_bytes_eq(&buf, &full, "whole client stream");
}

#[tokio::test]
async fn stream_frames_forwarded_as_they_arrive_with_client_include_usage() {
    frames_forwarded_as_they_arrive(true).await;
}

#[tokio::test]
async fn stream_frames_forwarded_as_they_arrive_when_usage_injected() {
    frames_forwarded_as_they_arrive(false).await;
}

// ---------------------------------------------------------------- metering & metrics

#[tokio::test]
async fn nonstream_usage_is_metered() {
    let (_up, gw) = setup().await;
    let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_tokens(
        &gw,
        &[("model", "gpt-4o-mini"), ("target", TARGET)],
        16,
        363,
    )
    .await;
}

#[tokio::test]
async fn stream_usage_is_metered_with_and_without_client_include_usage() {
    let (up, gw) = setup().await;
    up.push(Behavior::sse_fixture(STREAM_TEXT));
    let reply = post(&gw.chat_url(), stream_request("gpt-4o-mini", true)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_tokens(&gw, &[("model", "gpt-4o-mini"), ("target", TARGET)], 78, 9).await;

    up.push(Behavior::sse_fixture(STREAM_TEXT));
    let reply = post(&gw.chat_url(), stream_request("gpt-4o-mini", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_tokens(
        &gw,
        &[("model", "gpt-4o-mini"), ("target", TARGET)],
        2 * 78,
        2 * 9,
    )
    .await;
}

#[tokio::test]
async fn provider_slash_model_usage_is_labelled_with_wildcard() {
    let (up, gw) = setup().await;
    let reply = post(&gw.chat_url(), chat_body("up/some-raw-model", None)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    up.push(Behavior::sse_fixture(STREAM_TEXT));
    let reply = post(&gw.chat_url(), stream_request("up/other-raw-model", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_tokens(
        &gw,
        &[("model", "up/*"), ("target", "up/*")],
        16 + 78,
        363 + 9,
    )
    .await;
}

#[tokio::test]
async fn request_metrics_are_exported() {
    let (_up, gw) = setup().await;
    let reply = post(&gw.chat_url(), chat_body("gpt-4o-mini", None)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let n = gw
        .wait_metric(
            "ferrogate_requests_total",
            &[
                ("model", "gpt-4o-mini"),
                ("target", TARGET),
                ("status", "200"),
            ],
            1.0,
            Duration::from_secs(3),
        )
        .await;
    assert_eq!(n, 1.0, "ferrogate_requests_total{{status=\"200\"}}");
    let text = gw.metrics().await;
    assert!(
        has_metric(&text, "ferrogate_request_duration_seconds_bucket"),
        "request duration histogram buckets missing:\n{text}"
    );
    for name in [
        "ferrogate_upstream_ttfb_seconds",
        "ferrogate_overhead_seconds",
    ] {
        assert!(
            common::metrics::parse(&text)
                .iter()
                .any(|s| s.name.starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
    assert!(
        has_metric(&text, "ferrogate_requests_in_flight"),
        "ferrogate_requests_in_flight missing:\n{text}"
    );
    assert_eq!(
        metric_sum(&text, "ferrogate_requests_in_flight", &[]),
        Some(0.0),
        "nothing is in flight once the response was read"
    );
}

// ---------------------------------------------------------------- other endpoints

#[tokio::test]
async fn models_endpoint_lists_configured_names() {
    let (_up, gw) = setup().await;
    let reply = get(&gw.url("/v1/models")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|m| m["id"].as_str().expect("id string"))
        .collect();
    assert!(ids.contains(&"gpt-4o-mini"), "ids: {ids:?}");
    assert!(ids.contains(&"claude-*"), "ids: {ids:?}");
    for m in v["data"].as_array().expect("data") {
        assert_eq!(m["object"], "model", "entry {m}");
    }
}

#[tokio::test]
async fn health_and_ready_answer_200() {
    let (_up, gw) = setup().await;
    assert_eq!(get(&gw.url("/health")).await.status, 200);
    assert_eq!(get(&gw.url("/ready")).await.status, 200);
}

#[tokio::test]
async fn keep_alive_client_connection_serves_many_requests() {
    let (up, gw) = setup().await;
    let c = client();
    for i in 0..5 {
        let reply = send(
            c.post(gw.chat_url())
                .header("content-type", "application/json")
                .body(chat_body("gpt-4o-mini", None)),
        )
        .await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        assert_bytes_eq(&reply.body, &fixture(CHAT_NONSTREAM), "body");
    }
    assert_eq!(up.request_count(), 5);
}
