//! An OpenAI SDK client talking to the gateway, which proxies to a `MockUpstream` replaying the
//! recorded OpenAI fixtures: what the SDK accumulates must equal the fixture's content.
//!
//! The `async_openai` tests (in `mod sdk`) drive the gateway with a real OpenAI client crate.
//!
//! The always-on tests below consume the stream the way the SDKs do (SSE `data:` lines until
//! `[DONE]`, each chunk deserialized and accumulated) using reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;

/// `choices[0].message.content` of the non-stream fixture.
fn fixture_nonstream_content() -> String {
    let v: Value = serde_json::from_slice(&fixture(CHAT_NONSTREAM)).expect("json");
    v["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string()
}

/// Concatenated delta content of the stream fixture ("The capital of the UK is London.").
fn fixture_stream_content() -> String {
    stream_content(&fixture(STREAM_TEXT))
}

/// What an SDK does with an SSE body: parse `data:` events until `[DONE]`, deserialize each.
fn sdk_style_chunks(body: &[u8]) -> (Vec<Value>, bool) {
    let text = std::str::from_utf8(body).expect("utf-8 stream");
    let mut chunks = Vec::new();
    let mut done = false;
    for event in text.split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.trim_start())
            .collect();
        if data.is_empty() {
            continue;
        }
        let data = data.join("\n");
        if data == "[DONE]" {
            done = true;
            break;
        }
        chunks.push(
            serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("SDK would fail to parse chunk ({e}): {data}")),
        );
    }
    (chunks, done)
}

#[tokio::test]
async fn sdk_style_nonstream_chat_gets_fixture_content() {
    let (_up, gw) = setup().await;
    let reply = post_with(
        &gw.url("/v1/chat/completions"),
        chat_body("gpt-4o-mini", None),
        &[("authorization", "Bearer client-key")],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    assert_eq!(
        v["choices"][0]["message"]["content"].as_str(),
        Some(fixture_nonstream_content().as_str())
    );
}

#[tokio::test]
async fn sdk_style_stream_accumulates_fixture_content() {
    let (up, gw) = setup().await;
    up.push(Behavior::sse_fixture(STREAM_TEXT).split_every(17));
    let reply = post_with(
        &gw.url("/v1/chat/completions"),
        chat_body("gpt-4o-mini", Some(true)),
        &[("authorization", "Bearer client-key")],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (chunks, done) = sdk_style_chunks(&reply.body);
    assert!(done, "no data: [DONE]");
    let content: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(content, fixture_stream_content());
    assert_eq!(content, "The capital of the UK is London.");
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert!(
            c["choices"].as_array().is_some_and(|a| !a.is_empty()),
            "client did not ask for usage but got a usage-only chunk: {c}"
        );
    }
}

#[tokio::test]
async fn sdk_style_stream_accumulates_tool_call_arguments() {
    let (up, gw) = setup().await;
    up.push(Behavior::sse_fixture(STREAM_TOOL));
    let body = serde_json::to_vec(&fixture_request_body(STREAM_TOOL_REQUEST)).expect("json");
    let reply = post_with(
        &gw.url("/v1/chat/completions"),
        body,
        &[("authorization", "Bearer client-key")],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (chunks, done) = sdk_style_chunks(&reply.body);
    assert!(done);
    let args: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(args, r#"{"country":"UK"}"#);
    let usage = chunks
        .iter()
        .find_map(|c| c.get("usage").filter(|u| u.is_object()))
        .expect("client asked for include_usage: usage chunk expected");
    assert_eq!(usage["prompt_tokens"], 53);
    assert_eq!(usage["completion_tokens"], 15);
}

mod sdk {
    use super::common::*;
    use super::{fixture_nonstream_content, fixture_stream_content};

    use async_openai::config::OpenAIConfig;
    use async_openai::types::chat::{
        ChatCompletionRequestUserMessageArgs, ChatCompletionStreamOptions,
        CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
    };
    use async_openai::Client;
    use futures_util::StreamExt;

    fn sdk(gw: &Gateway) -> Client<OpenAIConfig> {
        Client::with_config(
            OpenAIConfig::new()
                .with_api_base(gw.url("/v1"))
                .with_api_key("client-key"),
        )
    }

    fn request(include_usage: bool) -> CreateChatCompletionRequest {
        let mut args = CreateChatCompletionRequestArgs::default();
        args.model("gpt-4o-mini")
            .messages([ChatCompletionRequestUserMessageArgs::default()
                .content("What is the capital of the UK?")
                .build()
                .expect("message")
                .into()]);
        if include_usage {
            args.stream_options(ChatCompletionStreamOptions {
                include_usage: Some(true),
                ..Default::default()
            });
        }
        args.build().expect("request")
    }

    #[tokio::test]
    async fn sdk_nonstream_chat_returns_fixture_content() {
        let (up, gw) = setup().await;
        up.push(Behavior::json_fixture(200, CHAT_NONSTREAM));
        let resp = tokio::time::timeout(WAIT, sdk(&gw).chat().create(request(false)))
            .await
            .expect("timeout")
            .expect("SDK create");
        assert_eq!(
            resp.choices[0].message.content.as_deref(),
            Some(fixture_nonstream_content().as_str())
        );
        let usage = resp.usage.expect("usage");
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (16, 363));
        let auth = up
            .last_request()
            .header("authorization")
            .unwrap_or_default();
        assert!(
            auth == format!("Bearer {KEY_1}") || auth == format!("Bearer {KEY_2}"),
            "upstream authorization {auth:?}"
        );
    }

    async fn stream_content_via_sdk(
        gw: &Gateway,
        include_usage: bool,
    ) -> (String, Option<(u32, u32)>) {
        let fut = async {
            let mut stream = sdk(gw)
                .chat()
                .create_stream(request(include_usage))
                .await
                .expect("SDK create_stream");
            let mut content = String::new();
            let mut usage = None;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.expect("SDK stream chunk");
                for choice in &chunk.choices {
                    if let Some(c) = &choice.delta.content {
                        content.push_str(c);
                    }
                }
                if let Some(u) = &chunk.usage {
                    usage = Some((u.prompt_tokens, u.completion_tokens));
                }
            }
            (content, usage)
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .expect("SDK stream timeout")
    }

    #[tokio::test]
    async fn sdk_stream_chat_accumulates_fixture_content() {
        let (up, gw) = setup().await;
        up.push(Behavior::sse_fixture(STREAM_TEXT).split_every(13));
        let (content, usage) = stream_content_via_sdk(&gw, false).await;
        assert_eq!(content, fixture_stream_content());
        assert_eq!(usage, None, "SDK did not ask for usage");
    }

    #[tokio::test]
    async fn sdk_stream_chat_with_include_usage_sees_usage() {
        let (up, gw) = setup().await;
        up.push(Behavior::sse_fixture(STREAM_TEXT));
        let (content, usage) = stream_content_via_sdk(&gw, true).await;
        assert_eq!(content, fixture_stream_content());
        assert_eq!(usage, Some((78, 9)));
    }
}
