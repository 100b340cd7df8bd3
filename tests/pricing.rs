//! Cost: the built-in price table and `pricing:` overrides, applied to each answer's real usage
//! (recorded provider answers replayed by the mock upstream): `x-ferrogate-cost-usd` on whole
//! answers, the cost metric, the request log's `cost_usd`, and an unknown price reported as
//! unknown (never 0).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;

/// The standard topology plus `pricing:` entries.
async fn start(pricing: &str) -> (MockUpstream, Gateway) {
    let up = MockUpstream::start().await;
    let yaml = format!("{}pricing:\n{pricing}", Cfg::new(&up.base_url()).yaml());
    let gw = Gateway::start(&yaml).await;
    (up, gw)
}

/// A non-stream chat request for `model`, tagged with `id` (to find its request log line).
async fn chat(gw: &Gateway, model: &str, id: &str) -> Reply {
    post_with(
        &gw.chat_url(),
        chat_body(model, None),
        &[("x-request-id", id)],
    )
    .await
}

fn cost_header(reply: &Reply) -> Option<f64> {
    reply
        .header("x-ferrogate-cost-usd")
        .map(|v| v.parse().unwrap_or_else(|_| panic!("not a number: {v:?}")))
}

/// The request log line of the request `id` (the gateway writes one JSON line per request).
async fn log_line(gw: &Gateway, id: &str) -> serde_json::Value {
    for _ in 0..100 {
        if let Some(line) = gw
            .stderr_lines()
            .into_iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
            .find(|v| v["request_id"] == id)
        {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no log line for {id}:\n{}", gw.all_output());
}

#[tokio::test]
async fn a_whole_answer_carries_its_cost_and_the_metric_and_log_add_it_up() {
    // gpt-4o-mini routes to `up` with upstream model `upstream-model-x`: priced for this
    // provider only.
    let (up, gw) = start(
        "  \"up/upstream-model-x\": { input_per_mtok: 2.5, output_per_mtok: 10, cache_read_per_mtok: 1.25 }\n",
    )
    .await;
    up.push(Behavior::json_fixture(200, "openai-chat-nonstream.json"));
    let reply = chat(&gw, "gpt-4o-mini", "priced-1").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let usage = &reply.json()["usage"];
    let (input, output) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!((input, output), (16, 363), "the fixture's usage");
    let expected = (16.0 * 2.5 + 363.0 * 10.0) / 1e6;
    let got = cost_header(&reply).expect("x-ferrogate-cost-usd");
    assert!((got - expected).abs() < 1e-12, "{got} != {expected}");

    let metric = gw
        .wait_metric(
            "ferrogate_cost_usd_total",
            &[("model", "gpt-4o-mini")],
            expected,
            Duration::from_secs(5),
        )
        .await;
    assert!((metric - expected).abs() < 1e-12, "{metric}");
    let line = log_line(&gw, "priced-1").await;
    assert!(
        (line["cost_usd"].as_f64().unwrap() - expected).abs() < 1e-12,
        "{line}"
    );
}

#[tokio::test]
async fn a_model_without_a_price_is_served_with_an_unknown_cost_never_zero() {
    let (up, gw) =
        start("  \"up/upstream-model-x\": { input_per_mtok: 1, output_per_mtok: 1 }\n").await;
    // An upstream that is itself a gateway states its own cost: not passed on as this one's.
    let mut answer = Behavior::json_fixture(200, "openai-chat-nonstream.json");
    answer
        .headers
        .push(("x-ferrogate-cost-usd".into(), "0.5".into()));
    up.push(answer);
    // `claude-*` forwards the client's model name, which nothing prices for `up`.
    let reply = chat(&gw, "claude-unpriced", "unpriced-1").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-ferrogate-cost-usd"), None);
    let unpriced = gw
        .wait_metric(
            "ferrogate_unpriced_requests_total",
            &[("model", "claude-*")],
            1.0,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(unpriced, 1.0);
    let line = log_line(&gw, "unpriced-1").await;
    assert!(line["cost_usd"].is_null(), "{line}");
    assert_eq!(line["prompt_tokens"], 16, "{line}");
}

#[tokio::test]
async fn a_stream_is_costed_from_its_usage_chunk() {
    let (up, gw) = start(
        "  \"up/*\": { input_per_mtok: 1000, output_per_mtok: 2000, cache_read_per_mtok: 100 }\n",
    )
    .await;
    up.push(Behavior::sse_fixture("openai-chat-stream-text-usage.sse"));
    let resp = client()
        .post(gw.chat_url())
        .header("content-type", "application/json")
        .header("x-request-id", "stream-1")
        .body(
            serde_json::json!({
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": true,
                "stream_options": {"include_usage": true}
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-ferrogate-cost-usd").is_none());
    let (body, _) = read_stream(resp).await;
    // The usage the fixture's usage chunk reports.
    let usage = sse_events(&body)
        .iter()
        .filter_map(|e| event_json(e))
        .find_map(|v| v.get("usage").filter(|u| u.is_object()).cloned())
        .expect("the client asked for usage");
    let input = usage["prompt_tokens"].as_f64().unwrap();
    let output = usage["completion_tokens"].as_f64().unwrap();
    let cached = usage["prompt_tokens_details"]["cached_tokens"]
        .as_f64()
        .unwrap_or(0.0);
    let expected = ((input - cached) * 1000.0 + cached * 100.0 + output * 2000.0) / 1e6;
    let line = log_line(&gw, "stream-1").await;
    let logged = line["cost_usd"].as_f64().expect("cost_usd");
    assert!((logged - expected).abs() < 1e-12, "{logged} != {expected}");
}

#[tokio::test]
async fn the_builtin_mock_provider_is_priced_through_its_id() {
    let (_up, gw) = start("  \"fake/*\": { input_per_mtok: 1000, output_per_mtok: 2000 }\n").await;
    let reply = post(&gw.chat_url(), chat_body("fake/anything", None)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let usage = &reply.json()["usage"];
    let expected = (usage["prompt_tokens"].as_f64().unwrap() * 1000.0
        + usage["completion_tokens"].as_f64().unwrap() * 2000.0)
        / 1e6;
    let got = cost_header(&reply).expect("x-ferrogate-cost-usd");
    assert!(expected > 0.0);
    assert!((got - expected).abs() < 1e-12, "{got} != {expected}");
}

/// Translated answers are costed from the usage the provider reported; an answer without usage
/// has no cost at all (the decoder's zero usage is not priced as 0).
#[tokio::test]
async fn a_translated_answer_is_costed_and_one_without_usage_is_not() {
    let (up, gw) =
        start("  \"up/upstream-model-x\": { input_per_mtok: 2.5, output_per_mtok: 10 }\n").await;
    let anthropic = |id: &'static str| {
        let url = gw.url("/v1/messages");
        async move {
            post_with(
                &url,
                serde_json::json!({
                    "model": "gpt-4o-mini",
                    "max_tokens": 100,
                    "messages": [{"role": "user", "content": "hi"}]
                })
                .to_string(),
                &[("anthropic-version", "2023-06-01"), ("x-request-id", id)],
            )
            .await
        }
    };
    up.push(Behavior::json_fixture(200, "openai-chat-nonstream.json"));
    let reply = anthropic("translated-1").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json()["usage"]["output_tokens"],
        363,
        "{}",
        reply.text()
    );
    let got = cost_header(&reply).expect("x-ferrogate-cost-usd");
    let expected = (16.0 * 2.5 + 363.0 * 10.0) / 1e6;
    assert!((got - expected).abs() < 1e-12, "{got} != {expected}");

    let mut answer: serde_json::Value =
        serde_json::from_slice(&fixture("openai-chat-nonstream.json")).unwrap();
    answer.as_object_mut().unwrap().remove("usage");
    up.push(Behavior::json(200, answer.to_string()));
    let reply = anthropic("translated-2").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-ferrogate-cost-usd"), None);
    let line = log_line(&gw, "translated-2").await;
    assert!(line["cost_usd"].is_null(), "{line}");
}
