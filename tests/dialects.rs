//! Every client dialect against every provider kind, through the real binary: same-dialect
//! pass-through (byte-exact bodies, paths, credentials, usage metering), translation between
//! OpenAI, Anthropic, Gemini and Bedrock (streams, whole answers, errors in the client's
//! dialect), Azure and preset URL conventions, count_tokens, `/v1/models`, the Responses API,
//! path aliases and the built-in mock answering in other dialects.
//!
//! One `MockUpstream` serves every provider of a gateway (each kind's paths differ); answers are
//! the recordings in `tests/fixtures/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Black-box tests time the gateway from outside with the system clock.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Topology: one gateway with a provider of every kind, all pointing at one mock upstream.
// ---------------------------------------------------------------------------------------------

const ANT_KEY: &str = "sk-ant-provider-key-0001";
const GEM_KEY: &str = "gemini-provider-key-0001";
const OAI_KEY: &str = "sk-oai-provider-key-0001";
const AZ_KEY: &str = "azure-provider-key-0001";
const BED_KEY: &str = "bedrock-api-key-0001";
const AKID: &str = "AKIDEXAMPLE0001";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

const CLAUDE: &str = "claude-sonnet-4-20250514";
const GEMINI_FLASH: &str = "gemini-2.5-flash";
const GEMINI_PRO: &str = "gemini-3-pro-preview";
const NOVA: &str = "us.amazon.nova-micro-v1:0";
const NOVA_PATH: &str = "us.amazon.nova-micro-v1%3A0";

const ANT_NONSTREAM: &str = "anthropic-messages-nonstream.json";
const ANT_STREAM_TOOL: &str = "anthropic-stream-text-tool-use.sse";
const ANT_OVERLOADED: &str = "anthropic-stream-error-overloaded.sse";
const ANT_400: &str = "anthropic-error-400-invalid-request.json";
const ANT_COUNT: &str = "anthropic-count-tokens.json";
const ANT_COUNT_REQUEST: &str = "anthropic-count-tokens.request.json";
const ANT_PARALLEL_REQUEST: &str = "anthropic-parallel-tool-use.turn1.request.json";
const ANT_PARALLEL: &str = "anthropic-parallel-tool-use.turn1.json";
const GEM_STREAM_TEXT: &str = "gemini-stream-text.sse";
const GEM_STREAM_TEXT_REQUEST: &str = "gemini-stream-text.request.json";
const GEM_STREAM_TOOL: &str = "gemini-stream-function-call.sse";
const GEM_STREAM_TOOL_REQUEST: &str = "gemini-stream-function-call.request.json";
const GEM_NONSTREAM_TOOL: &str = "gemini-generatecontent-function-call.json";
const BED_STREAM: &str = "bedrock-converse-stream.eventstream.bin";
const BED_NONSTREAM: &str = "bedrock-converse.json";
const RESP_STREAM: &str = "openai-responses-stream-text.sse";
const RESP_REQUEST: &str = "openai-responses-stream-text.request.json";

/// Text of `anthropic-stream-text-tool-use.sse` and its tool call.
const ANT_STREAM_TEXT: &str = "I'll check the current weather in Paris for you.";
const ANT_TOOL_ID: &str = "toolu_01NRLabsLyVHZPKxbKvkfSMn";
const ANT_TOOL_ARGS: &str = "{\"location\": \"Paris\"}";

fn topology(base: &str) -> String {
    format!(
        r#"server: {{ request_log: false }}
providers:
  ant: {{ kind: anthropic, base_url: "{base}", keys: ["{ANT_KEY}"] }}
  gem: {{ kind: gemini, base_url: "{base}", keys: ["{GEM_KEY}"] }}
  oai: {{ kind: openai, base_url: "{base}/v1", keys: ["{OAI_KEY}"] }}
  az: {{ kind: azure, base_url: "{base}", api_version: "2024-10-21", keys: ["{AZ_KEY}"] }}
  az1: {{ kind: azure, base_url: "{base}", keys: ["{AZ_KEY}"] }}
  bedk: {{ kind: bedrock, base_url: "{base}", keys: ["{BED_KEY}"] }}
  beds: {{ kind: bedrock, base_url: "{base}", region: us-east-1, aws_access_key_id: "{AKID}", aws_secret_access_key: "{AWS_SECRET}" }}
  fake-ant: {{ kind: mock, mock: {{ dialect: anthropic, chunks: 3, reply_words: 7 }} }}
  fake-gem: {{ kind: mock, mock: {{ dialect: gemini, chunks: 3, reply_words: 7 }} }}
  fake-oai: {{ kind: mock, mock: {{ chunks: 3, reply_words: 7 }} }}
models:
  - name: claude-sonnet
    targets: [{{ provider: ant, model: "{CLAUDE}" }}]
  - name: claude-same
    targets: [{{ provider: ant }}]
  - name: gemini-flash
    targets: [{{ provider: gem, model: "{GEMINI_FLASH}" }}]
  - name: gemini-pro
    targets: [{{ provider: gem, model: "{GEMINI_PRO}" }}]
  - name: gpt-up
    targets: [{{ provider: oai, model: gpt-4o-mini }}]
  - name: gpt-az
    targets: [{{ provider: az, deployment: prod-41 }}]
  - name: gpt-az1
    targets: [{{ provider: az1, model: gpt-4.1-mini }}]
  - name: nova
    targets: [{{ provider: bedk, model: "{NOVA}" }}]
  - name: nova-signed
    targets: [{{ provider: beds, model: "{NOVA}" }}]
  - name: mock-ant
    targets: [{{ provider: fake-ant, model: mock-model }}]
  - name: mock-gem
    targets: [{{ provider: fake-gem, model: mock-model }}]
  - name: mock-oai
    targets: [{{ provider: fake-oai, model: mock-model }}]
"#
    )
}

async fn start() -> (MockUpstream, Gateway) {
    let up = MockUpstream::start().await;
    let gw = Gateway::start(&topology(&format!("http://{}", up.addr()))).await;
    (up, gw)
}

fn to_vec(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

/// No header and not the path or body of `req` contains the client's key.
#[track_caller]
fn assert_client_key_absent(req: &RecordedRequest) {
    for (name, value) in &req.headers {
        assert!(
            !String::from_utf8_lossy(value.as_bytes()).contains(CLIENT_KEY),
            "the client's key reached the upstream in header {name}"
        );
    }
    assert!(
        !req.path.contains(CLIENT_KEY),
        "the client's key reached the upstream in the URL: {}",
        req.path
    );
    assert!(
        !contains(&req.body, CLIENT_KEY.as_bytes()),
        "client key in the body"
    );
}

/// Polls `ferrogate_tokens_total{model, kind}` until it reaches `want`, then asserts equality.
async fn assert_tokens(gw: &Gateway, model: &str, kind: &str, want: u64) {
    let labels = [("model", model), ("kind", kind)];
    let got = gw
        .wait_metric(
            "ferrogate_tokens_total",
            &labels,
            want as f64,
            Duration::from_secs(3),
        )
        .await;
    assert_eq!(
        got,
        want as f64,
        "ferrogate_tokens_total{{model={model},kind={kind}}}\nmetrics:\n{}",
        gw.metrics().await
    );
}

// ---------------------------------------------------------------------------------------------
// SSE reading, for either line ending.
// ---------------------------------------------------------------------------------------------

/// (event name, data) per SSE event; `\r\n` and `\n` line endings alike.
fn sse(body: &[u8]) -> Vec<(Option<String>, String)> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    text.split("\n\n")
        .filter(|e| e.lines().any(|l| !l.is_empty() && !l.starts_with(':')))
        .map(|e| {
            let mut name = None;
            let mut data = Vec::new();
            for line in e.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            (name, data.join("\n"))
        })
        .collect()
}

/// JSON data of every event that has some (skips `[DONE]`).
fn sse_json(body: &[u8]) -> Vec<Value> {
    sse(body)
        .into_iter()
        .filter_map(|(_, d)| serde_json::from_str(&d).ok())
        .collect()
}

/// What an OpenAI chat stream says.
#[derive(Debug, Default)]
struct OaiStream {
    chunks: Vec<Value>,
    text: String,
    /// (index, id, name, concatenated arguments), by first appearance.
    tool_calls: Vec<(u64, String, String, String)>,
    finish: Option<String>,
    usage: Option<Value>,
    error: Option<Value>,
    done_last: bool,
    done_count: usize,
}

fn openai_stream(body: &[u8]) -> OaiStream {
    let events = sse(body);
    let mut s = OaiStream {
        done_last: events.last().is_some_and(|(_, d)| d == "[DONE]"),
        done_count: events.iter().filter(|(_, d)| d == "[DONE]").count(),
        ..OaiStream::default()
    };
    for (_, data) in &events {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        if let Some(e) = v.get("error") {
            s.error = Some(e.clone());
            continue;
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            s.usage = Some(u.clone());
        }
        for choice in v["choices"].as_array().into_iter().flatten() {
            if let Some(t) = choice.pointer("/delta/content").and_then(Value::as_str) {
                s.text.push_str(t);
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                s.finish = Some(f.to_owned());
            }
            for tc in choice
                .pointer("/delta/tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let index = tc["index"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("tool call delta without an index: {v}"));
                let args = tc
                    .pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                match s.tool_calls.iter_mut().find(|t| t.0 == index) {
                    Some(t) => t.3.push_str(args),
                    None => s.tool_calls.push((
                        index,
                        tc["id"].as_str().unwrap_or("").to_owned(),
                        tc.pointer("/function/name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                        args.to_owned(),
                    )),
                }
            }
        }
        s.chunks.push(v);
    }
    s
}

/// Asserts the chunks are well-formed OpenAI chat chunks of one completion.
#[track_caller]
fn assert_openai_chunks(s: &OaiStream, model: &str) {
    assert!(!s.chunks.is_empty(), "no chunks");
    let id = s.chunks[0]["id"].as_str().expect("chunk id").to_owned();
    for c in &s.chunks {
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
        assert_eq!(
            c["id"].as_str(),
            Some(id.as_str()),
            "one id per stream: {c}"
        );
        assert_eq!(c["model"], model, "{c}");
        assert!(c["choices"].is_array(), "choices must be present: {c}");
    }
}

/// What an Anthropic Messages stream says, after checking its event grammar.
#[derive(Debug, Default)]
struct AntStream {
    text: String,
    /// (id, name, concatenated partial_json)
    tool_uses: Vec<(String, String, String)>,
    stop_reason: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    /// `partial_json` fragments in order, per tool block.
    fragments: Vec<Vec<String>>,
    error: Option<Value>,
}

/// Checks the grammar (one message_start first, one message_stop last unless an error ends it,
/// blocks opened and closed by index, deltas only inside open blocks, event names matching data
/// types) and collects the content.
#[track_caller]
fn anthropic_stream(body: &[u8]) -> AntStream {
    let events = sse(body);
    assert!(!events.is_empty(), "empty Anthropic stream");
    let mut s = AntStream::default();
    let mut open: Option<(u64, String)> = None;
    let mut seen_blocks = Vec::new();
    let mut starts = 0;
    let mut stops = 0;
    for (i, (name, data)) in events.iter().enumerate() {
        let v: Value = serde_json::from_str(data)
            .unwrap_or_else(|e| panic!("event {i} is not JSON ({e}): {data}"));
        let ty = v["type"].as_str().expect("type").to_owned();
        assert_eq!(
            name.as_deref(),
            Some(ty.as_str()),
            "event name vs type: {data}"
        );
        match ty.as_str() {
            "message_start" => {
                assert_eq!(i, 0, "message_start must come first");
                starts += 1;
                assert_eq!(v["message"]["role"], "assistant", "{v}");
                assert_eq!(v["message"]["type"], "message", "{v}");
                s.input_tokens = v
                    .pointer("/message/usage/input_tokens")
                    .and_then(Value::as_u64);
            }
            "content_block_start" => {
                assert!(open.is_none(), "block started while another is open: {v}");
                let idx = v["index"].as_u64().expect("index");
                assert_eq!(
                    idx,
                    seen_blocks.len() as u64,
                    "block indices are dense: {v}"
                );
                seen_blocks.push(idx);
                let block = &v["content_block"];
                let kind = block["type"].as_str().expect("block type").to_owned();
                if kind == "tool_use" {
                    s.tool_uses.push((
                        block["id"].as_str().expect("id").to_owned(),
                        block["name"].as_str().expect("name").to_owned(),
                        String::new(),
                    ));
                    s.fragments.push(Vec::new());
                }
                open = Some((idx, kind));
            }
            "content_block_delta" => {
                let (idx, kind) = open.as_ref().expect("delta outside a block");
                assert_eq!(v["index"].as_u64(), Some(*idx), "{v}");
                match v["delta"]["type"].as_str() {
                    Some("text_delta") => {
                        assert_eq!(kind, "text");
                        s.text.push_str(v["delta"]["text"].as_str().expect("text"));
                    }
                    Some("input_json_delta") => {
                        assert_eq!(kind, "tool_use");
                        let frag = v["delta"]["partial_json"].as_str().expect("partial_json");
                        s.tool_uses.last_mut().expect("tool").2.push_str(frag);
                        s.fragments.last_mut().expect("tool").push(frag.to_owned());
                    }
                    other => panic!("unexpected delta type {other:?}: {v}"),
                }
            }
            "content_block_stop" => {
                let (idx, _) = open.take().expect("stop without a start");
                assert_eq!(v["index"].as_u64(), Some(idx), "{v}");
            }
            "message_delta" => {
                assert!(open.is_none(), "message_delta while a block is open");
                s.stop_reason = v["delta"]["stop_reason"].as_str().map(str::to_owned);
                s.output_tokens = v["usage"]["output_tokens"].as_u64();
                if let Some(n) = v["usage"]["input_tokens"].as_u64() {
                    s.input_tokens = Some(n);
                }
            }
            "message_stop" => {
                assert_eq!(i, events.len() - 1, "message_stop must be last");
                stops += 1;
            }
            "error" => {
                assert_eq!(i, events.len() - 1, "error must be last");
                s.error = Some(v["error"].clone());
            }
            "ping" => {}
            other => panic!("unexpected event type {other}"),
        }
    }
    assert_eq!(starts, 1, "exactly one message_start");
    if s.error.is_none() {
        assert_eq!(stops, 1, "exactly one message_stop");
        assert!(open.is_none(), "a block was never stopped");
    }
    s
}

/// Anthropic error body `{"type":"error","error":{"type":..,"message":..}}`; returns the type.
#[track_caller]
fn assert_anthropic_error(reply: &Reply, status: u16) -> String {
    assert_eq!(reply.status, status, "body: {}", reply.text());
    let v = reply.json();
    assert_eq!(v["type"], "error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    v["error"]["type"].as_str().expect("error.type").to_owned()
}

/// Gemini error body `{"error":{"code":N,"message":..,"status":..}}`; returns the status name.
#[track_caller]
fn assert_gemini_error(reply: &Reply, status: u16) -> String {
    assert_eq!(reply.status, status, "body: {}", reply.text());
    let v = reply.json();
    assert_eq!(v["error"]["code"].as_u64(), Some(u64::from(status)), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    v["error"]["status"]
        .as_str()
        .expect("error.status")
        .to_owned()
}

/// Joined text parts and the last finishReason / usageMetadata of a Gemini stream or answer.
fn gemini_chunks_text(chunks: &[Value]) -> (String, Option<String>, Option<Value>) {
    let mut text = String::new();
    let mut finish = None;
    let mut usage = None;
    for c in chunks {
        for part in c
            .pointer("/candidates/0/content/parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(t) = part["text"].as_str() {
                text.push_str(t);
            }
        }
        if let Some(f) = c
            .pointer("/candidates/0/finishReason")
            .and_then(Value::as_str)
        {
            finish = Some(f.to_owned());
        }
        if c["usageMetadata"].is_object() {
            usage = Some(c["usageMetadata"].clone());
        }
    }
    (text, finish, usage)
}

// ---------------------------------------------------------------------------------------------
// Fixture variants.
// ---------------------------------------------------------------------------------------------

/// The first `n` events of an SSE fixture (each with its blank line).
fn first_events(name: &str, n: usize) -> Vec<u8> {
    sse_events(&fixture(name))[..n].concat()
}

/// The Anthropic non-stream recording with cache reads (100) and writes (20) filled in, so
/// cache accounting is visible (the recording has zeros there).
fn anthropic_nonstream_cached() -> Vec<u8> {
    let raw = fixture(ANT_NONSTREAM);
    let raw = replace_once(
        &raw,
        b"\"cache_creation_input_tokens\": 0",
        b"\"cache_creation_input_tokens\": 20",
    );
    replace_once(
        &raw,
        b"\"cache_read_input_tokens\": 0",
        b"\"cache_read_input_tokens\": 100",
    )
}

/// The Anthropic tool-use stream with cache reads (100) and writes (20) in `message_start`.
fn anthropic_stream_cached() -> Vec<u8> {
    let raw = fixture(ANT_STREAM_TOOL);
    let raw = replace_once(
        &raw,
        b"\"cache_creation_input_tokens\":0",
        b"\"cache_creation_input_tokens\":20",
    );
    replace_once(
        &raw,
        b"\"cache_read_input_tokens\":0",
        b"\"cache_read_input_tokens\":100",
    )
}

// =============================================================================================
// 1. Anthropic client -> Anthropic provider (pass-through)
// =============================================================================================

/// A Messages request with odd spacing, so a re-serialisation would show.
fn anthropic_request(model: &str, stream: bool) -> Vec<u8> {
    format!(
        "{{ \"model\" : \"x\",\"max_tokens\": 256, \"stream\": {stream},\n  \"messages\": [{{\"role\": \"user\", \"content\": \"Weather in Paris?\"}}],\
         \"tools\": [{{\"name\":\"get_weather\",\"input_schema\":{{\"type\":\"object\",\"properties\":{{\"location\":{{\"type\":\"string\"}}}}}}}}] }}"
    )
    .replace("\"model\" : \"x\"", &format!("\"model\" : \"{model}\""))
    .into_bytes()
}

#[tokio::test]
async fn anthropic_nonstream_passthrough_is_byte_exact_with_renamed_model_and_provider_key() {
    let (up, gw) = start().await;
    for path in ["/v1/messages", "/anthropic/v1/messages"] {
        up.push(Behavior::json_fixture(200, ANT_NONSTREAM));
        let body = anthropic_request("claude-sonnet", false);
        let reply = post_with(
            &gw.url(path),
            body.clone(),
            &[
                ("x-api-key", CLIENT_KEY),
                ("authorization", &format!("Bearer {CLIENT_KEY}")),
                ("anthropic-beta", "token-efficient-tools-2025-02-19"),
            ],
        )
        .await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_bytes_eq(&reply.body, &fixture(ANT_NONSTREAM), path);
        assert_eq!(
            reply.header("x-ferrogate-target").as_deref(),
            Some(format!("ant/{CLAUDE}").as_str())
        );

        let req = up.last_request();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1/messages", "{path}");
        assert_eq!(req.header("x-api-key").as_deref(), Some(ANT_KEY), "{path}");
        assert_eq!(req.header("authorization"), None, "{path}");
        assert_eq!(
            req.header("anthropic-version").as_deref(),
            Some("2023-06-01"),
            "defaulted when the client sent none"
        );
        assert_eq!(
            req.header("anthropic-beta").as_deref(),
            Some("token-efficient-tools-2025-02-19")
        );
        let expected = replace_once(
            &body,
            b"\"model\" : \"claude-sonnet\"",
            format!("\"model\" : \"{CLAUDE}\"").as_bytes(),
        );
        assert_bytes_eq(
            &req.body,
            &expected,
            "upstream body: only the model renamed",
        );
        assert_client_key_absent(&req);
    }
    // Cache-free recording: prompt = 12 per request.
    assert_tokens(&gw, "claude-sonnet", "prompt", 24).await;
    assert_tokens(&gw, "claude-sonnet", "completion", 58).await;
}

#[tokio::test]
async fn anthropic_passthrough_keeps_the_clients_version_and_unrenamed_body() {
    let (up, gw) = start().await;
    up.push(Behavior::json_fixture(200, ANT_NONSTREAM));
    let body = anthropic_request("claude-same", false);
    let reply = post_with(
        &gw.url("/v1/messages"),
        body.clone(),
        &[
            ("anthropic-version", "2023-01-01"),
            ("x-api-key", CLIENT_KEY),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let req = up.only_request();
    assert_eq!(
        req.header("anthropic-version").as_deref(),
        Some("2023-01-01")
    );
    assert_eq!(req.header_all("anthropic-version").len(), 1);
    assert_bytes_eq(&req.body, &body, "no target model: body untouched");
}

#[tokio::test]

async fn anthropic_passthrough_forwards_the_beta_query() {
    // anthropic-sdk-python's beta client calls `/v1/messages?beta=true`
    // (anthropic-parallel-tool-use.turn1.request.json).
    let (up, gw) = start().await;
    up.push(Behavior::json_fixture(200, ANT_NONSTREAM));
    let reply = post(
        &gw.url("/v1/messages?beta=true"),
        anthropic_request("claude-sonnet", false),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.only_request().path, "/v1/messages?beta=true");
}

#[tokio::test]
async fn anthropic_stream_passthrough_is_byte_exact_under_any_framing() {
    let (up, gw) = start().await;
    let raw = fixture(ANT_STREAM_TOOL);
    let framings = [
        ("/v1/messages", Framing::SseEvents),
        ("/v1/messages", Framing::Every(7)),
        ("/anthropic/v1/messages", Framing::Every(1)),
        ("/anthropic/v1/messages", Framing::Whole),
    ];
    for (path, framing) in framings.iter().cloned() {
        up.push(Behavior::sse(raw.clone()).framing(framing.clone()));
        let reply = post_with(
            &gw.url(path),
            anthropic_request("claude-sonnet", true),
            &[("x-api-key", CLIENT_KEY)],
        )
        .await;
        assert_eq!(reply.status, 200, "{path} {framing:?}: {}", reply.text());
        assert!(
            reply
                .header("content-type")
                .is_some_and(|c| c.starts_with("text/event-stream")),
            "{:?}",
            reply.headers
        );
        assert_bytes_eq(&reply.body, &raw, &format!("{path} {framing:?}"));
        let req = up.last_request();
        assert_eq!(req.path, "/v1/messages");
        assert_eq!(req.header("x-api-key").as_deref(), Some(ANT_KEY));
        assert_eq!(req.json()["stream"], true);
    }
    let n = framings.len() as u64;
    assert_tokens(&gw, "claude-sonnet", "prompt", 377 * n).await;
    assert_tokens(&gw, "claude-sonnet", "completion", 65 * n).await;
}

#[tokio::test]
async fn anthropic_stream_usage_counts_cache_reads_and_writes_as_prompt() {
    let (up, gw) = start().await;
    let raw = anthropic_stream_cached();
    up.push(Behavior::sse(raw.clone()));
    let reply = post(
        &gw.url("/v1/messages"),
        anthropic_request("claude-sonnet", true),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_bytes_eq(&reply.body, &raw, "stream");
    // input 377 + cache reads 100 + cache writes 20.
    assert_tokens(&gw, "claude-sonnet", "prompt", 497).await;
    assert_tokens(&gw, "claude-sonnet", "cached", 100).await;
    assert_tokens(&gw, "claude-sonnet", "completion", 65).await;
}

#[tokio::test]
async fn anthropic_mid_stream_error_event_is_forwarded_untouched() {
    let (up, gw) = start().await;
    let mut raw = first_events(ANT_STREAM_TOOL, 5);
    raw.extend_from_slice(&fixture(ANT_OVERLOADED));
    up.push(Behavior::sse(raw.clone()));
    let reply = post(
        &gw.url("/v1/messages"),
        anthropic_request("claude-sonnet", true),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_bytes_eq(&reply.body, &raw, "stream with an in-band error");
    let s = anthropic_stream(&reply.body);
    assert_eq!(
        s.error.as_ref().map(|e| e["type"].clone()),
        Some(json!("overloaded_error"))
    );
}

// =============================================================================================
// 2. Gemini client -> Gemini provider (pass-through)
// =============================================================================================

/// The mock frames a Gemini stream one event per frame: its events end in `\r\n\r\n`, and each
/// frame is one whole event (the bytes unchanged).
#[test]
fn gemini_streams_are_framed_one_event_per_frame() {
    for name in [GEM_STREAM_TEXT, GEM_STREAM_TOOL] {
        let raw = fixture(name);
        let frames = Behavior::sse_fixture(name).frames();
        let data_lines = raw.windows(5).filter(|w| *w == b"data:").count();
        assert!(data_lines > 1, "{name}: {data_lines} events");
        assert_eq!(frames.len(), data_lines, "{name}: one frame per event");
        for f in &frames {
            assert!(f.starts_with(b"data:"), "{name}: {f:?}");
            assert!(f.ends_with(b"\r\n\r\n"), "{name}: {f:?}");
        }
        assert_eq!(frames.concat(), raw, "{name}: bytes preserved");
    }
    // `\n\n` events (OpenAI, Anthropic) split as before.
    let raw = fixture(STREAM_TEXT);
    let events = sse_events(&raw);
    assert!(events.len() > 2);
    assert!(events.iter().all(|e| e.ends_with(b"\n\n")));
    assert_eq!(events.concat(), raw);
}

#[tokio::test]
async fn gemini_stream_passthrough_moves_the_key_out_of_the_url_and_is_byte_exact() {
    let (up, gw) = start().await;
    let raw = fixture(GEM_STREAM_TEXT);
    let body = to_vec(&fixture_request_body(GEM_STREAM_TEXT_REQUEST));
    for prefix in ["", "/genai"] {
        up.push(Behavior::sse(raw.clone()).split_every(97));
        let url = gw.url(&format!(
            "{prefix}/v1beta/models/gemini-flash:streamGenerateContent?alt=sse&key={CLIENT_KEY}"
        ));
        let reply = post(&url, body.clone()).await;
        assert_eq!(reply.status, 200, "{prefix}: {}", reply.text());
        assert_bytes_eq(&reply.body, &raw, "CRLF-delimited stream");

        let req = up.last_request();
        assert_eq!(
            req.path,
            format!("/v1beta/models/{GEMINI_FLASH}:streamGenerateContent?alt=sse")
        );
        assert_eq!(req.header("x-goog-api-key").as_deref(), Some(GEM_KEY));
        assert_client_key_absent(&req);
        assert_bytes_eq(
            &req.body,
            &body,
            "the body has no model: forwarded untouched",
        );
    }
    // Output includes the 35 thinking tokens.
    assert_tokens(&gw, "gemini-flash", "prompt", 36).await;
    assert_tokens(&gw, "gemini-flash", "completion", 230).await;
    assert_tokens(&gw, "gemini-flash", "reasoning", 70).await;
}

#[tokio::test]
async fn gemini_nonstream_passthrough_with_header_key() {
    let (up, gw) = start().await;
    let body = to_vec(&fixture_request_body(GEM_STREAM_TOOL_REQUEST));
    for prefix in ["", "/genai"] {
        up.push(Behavior::json_fixture(200, GEM_NONSTREAM_TOOL));
        let reply = post_with(
            &gw.url(&format!(
                "{prefix}/v1beta/models/gemini-pro:generateContent"
            )),
            body.clone(),
            &[("x-goog-api-key", CLIENT_KEY)],
        )
        .await;
        assert_eq!(reply.status, 200, "{prefix}: {}", reply.text());
        assert_bytes_eq(&reply.body, &fixture(GEM_NONSTREAM_TOOL), "generateContent");
        let req = up.last_request();
        assert_eq!(
            req.path,
            format!("/v1beta/models/{GEMINI_PRO}:generateContent")
        );
        assert_eq!(req.header("x-goog-api-key").as_deref(), Some(GEM_KEY));
        assert_client_key_absent(&req);
    }
    assert_tokens(&gw, "gemini-pro", "prompt", 58).await;
    assert_tokens(&gw, "gemini-pro", "completion", 2 * (15 + 893)).await;
}

// =============================================================================================
// 3. OpenAI client -> Anthropic provider (translated)
// =============================================================================================

fn weather_tool() -> Value {
    json!({
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
        }
    })
}

fn openai_request(model: &str, stream: bool, include_usage: bool) -> Vec<u8> {
    let mut v = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Paris?"}
        ],
        "tools": [weather_tool()],
    });
    if stream {
        v["stream"] = json!(true);
        if include_usage {
            v["stream_options"] = json!({"include_usage": true});
        }
    }
    to_vec(&v)
}

#[tokio::test]
async fn openai_to_anthropic_nonstream_translates_request_answer_and_cache_usage() {
    let (up, gw) = start().await;
    up.push(Behavior::json(200, anthropic_nonstream_cached()));
    let reply = post_with(
        &gw.url("/v1/chat/completions"),
        openai_request("claude-sonnet", false, false),
        &[("authorization", &format!("Bearer {CLIENT_KEY}"))],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(v["model"], "claude-sonnet", "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello! I'm doing well, thanks for asking. How are you doing today? Is there anything I can help you with?"
    );
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // OpenAI's prompt_tokens include cached ones: 12 + 100 read + 20 written.
    assert_eq!(v["usage"]["prompt_tokens"], 132, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 29, "{v}");
    assert_eq!(v["usage"]["total_tokens"], 161, "{v}");
    assert_eq!(
        v["usage"]["prompt_tokens_details"]["cached_tokens"], 100,
        "{v}"
    );
    assert_tokens(&gw, "claude-sonnet", "prompt", 132).await;

    let req = up.only_request();
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.header("x-api-key").as_deref(), Some(ANT_KEY));
    assert_eq!(
        req.header("anthropic-version").as_deref(),
        Some("2023-06-01")
    );
    assert_eq!(req.header("authorization"), None);
    assert_client_key_absent(&req);
    let b = req.json();
    assert_eq!(b["model"], CLAUDE, "{b}");
    assert!(
        b["max_tokens"].as_u64().is_some_and(|n| n > 0),
        "max_tokens required: {b}"
    );
    assert_ne!(b["stream"], true, "{b}");
    let system = match &b["system"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|x| x["text"].as_str()).collect(),
        other => panic!("system not hoisted: {other} in {b}"),
    };
    assert_eq!(system, "You are terse.");
    let msgs = b["messages"].as_array().expect("messages");
    assert!(msgs.iter().all(|m| m["role"] != "system"), "{b}");
    assert_eq!(msgs.len(), 1, "{b}");
    assert_eq!(msgs[0]["role"], "user");
    assert_eq!(b["tools"][0]["name"], "get_weather", "{b}");
    assert_eq!(
        b["tools"][0]["input_schema"],
        weather_tool()["function"]["parameters"],
        "{b}"
    );
    assert!(b["tools"][0].get("function").is_none(), "{b}");
}

#[tokio::test]
async fn openai_to_anthropic_stream_tool_call_starts_at_index_zero() {
    let (up, gw) = start().await;
    up.push(Behavior::sse(anthropic_stream_cached()).split_every(13));
    let reply = post(
        &gw.url("/v1/chat/completions"),
        openai_request("claude-sonnet", true, true),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream")));
    let s = openai_stream(&reply.body);
    assert_openai_chunks(&s, "claude-sonnet");
    assert_eq!(s.text, ANT_STREAM_TEXT);
    // Pitfall 1: the Anthropic block index is 1, the OpenAI tool-call index must be 0.
    assert_eq!(s.tool_calls.len(), 1, "{:?}", s.tool_calls);
    let (index, id, name, args) = &s.tool_calls[0];
    assert_eq!(*index, 0);
    assert_eq!(id, ANT_TOOL_ID);
    assert_eq!(name, "get_weather");
    assert_eq!(args, ANT_TOOL_ARGS);
    assert_eq!(s.finish.as_deref(), Some("tool_calls"));
    assert!(s.done_last, "[DONE] must be last");
    assert_eq!(s.done_count, 1);
    assert!(s.error.is_none());
    let usage = s.usage.expect("usage chunk (include_usage)");
    assert_eq!(usage["prompt_tokens"], 497, "{usage}");
    assert_eq!(usage["completion_tokens"], 65, "{usage}");
    let usage_chunk = s
        .chunks
        .iter()
        .find(|c| c["usage"].is_object())
        .expect("usage chunk");
    assert_eq!(usage_chunk["choices"], json!([]), "{usage_chunk}");
    let first_tool_chunk = s
        .chunks
        .iter()
        .find(|c| c.pointer("/choices/0/delta/tool_calls").is_some())
        .expect("tool chunk");
    assert_eq!(
        first_tool_chunk.pointer("/choices/0/delta/tool_calls/0/type"),
        Some(&json!("function"))
    );
    assert_tokens(&gw, "claude-sonnet", "prompt", 497).await;
    assert_tokens(&gw, "claude-sonnet", "completion", 65).await;

    let b = up.only_request().json();
    assert_eq!(b["stream"], true, "{b}");
    assert!(
        b.get("stream_options").is_none(),
        "OpenAI-only field leaked: {b}"
    );
}

#[tokio::test]
async fn openai_to_anthropic_stream_has_no_usage_chunk_unless_asked() {
    let (up, gw) = start().await;
    up.push(Behavior::sse_fixture(ANT_STREAM_TOOL));
    let reply = post(
        &gw.url("/v1/chat/completions"),
        openai_request("claude-sonnet", true, false),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let s = openai_stream(&reply.body);
    assert_eq!(s.text, ANT_STREAM_TEXT);
    assert!(
        s.usage.is_none(),
        "usage without include_usage: {:?}",
        s.usage
    );
    assert!(s
        .chunks
        .iter()
        .all(|c| !c["choices"].as_array().is_some_and(|a| a.is_empty())));
    assert!(s.done_last);
    // Metered all the same.
    assert_tokens(&gw, "claude-sonnet", "prompt", 377).await;
}

#[tokio::test]
async fn openai_to_anthropic_upstream_400_is_an_openai_error() {
    let (up, gw) = start().await;
    up.push(
        Behavior::json_fixture(400, ANT_400).header("request-id", "req_011Ca7jT9AHpgXgdv8igm4z9"),
    );
    let reply = post(
        &gw.url("/v1/chat/completions"),
        openai_request("claude-sonnet", false, false),
    )
    .await;
    let msg = assert_openai_error(&reply, 400);
    assert!(msg.contains("effort level 'xhigh'"), "{msg}");
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");

    // Same for a stream request: an HTTP error, not a 200 stream.
    up.push(Behavior::json_fixture(400, ANT_400));
    let reply = post(
        &gw.url("/v1/chat/completions"),
        openai_request("claude-sonnet", true, false),
    )
    .await;
    assert_openai_error(&reply, 400);
}

#[tokio::test]
async fn openai_to_anthropic_error_before_content_is_an_http_error() {
    let (up, gw) = start().await;
    let mut raw = first_events(ANT_STREAM_TOOL, 1); // message_start only
    raw.extend_from_slice(&fixture(ANT_OVERLOADED));
    up.push(Behavior::sse(raw));
    let reply = post(
        &gw.url("/v1/chat/completions"),
        openai_request("claude-sonnet", true, true),
    )
    .await;
    // Anthropic's 529 overloaded has no OpenAI equivalent: 503.
    let msg = assert_openai_error(&reply, 503);
    assert!(msg.contains("Overloaded"), "{msg}");
    assert!(
        !reply.text().contains("data:"),
        "not a stream: {}",
        reply.text()
    );
}

#[tokio::test]
async fn openai_to_anthropic_error_after_content_ends_the_stream_with_an_error_event() {
    let (up, gw) = start().await;
    let mut raw = first_events(ANT_STREAM_TOOL, 5); // text "I" + "'ll check ..."
    raw.extend_from_slice(&fixture(ANT_OVERLOADED));
    up.push(Behavior::sse(raw));
    let reply = post(
        &gw.url("/v1/chat/completions"),
        openai_request("claude-sonnet", true, true),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let s = openai_stream(&reply.body);
    assert_eq!(s.text, ANT_STREAM_TEXT);
    let err = s.error.expect("an error event ends the stream");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("Overloaded")),
        "{err}"
    );
    assert_eq!(s.done_count, 0, "no [DONE] after an error");
    let last = sse(&reply.body).pop().expect("events").1;
    assert!(
        last.contains("\"error\""),
        "error is the last event: {last}"
    );
}

#[tokio::test]
async fn openai_to_anthropic_dropped_connection_ends_with_an_error_event() {
    let (up, gw) = start().await;
    up.push(Behavior::sse_fixture(ANT_STREAM_TOOL).drop_after(6));
    let reply = post(
        &gw.url("/v1/chat/completions"),
        openai_request("claude-sonnet", true, false),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let s = openai_stream(&reply.body);
    assert_eq!(s.text, ANT_STREAM_TEXT);
    assert!(s.error.is_some(), "no error event: {}", reply.text());
    assert_eq!(s.done_count, 0);
    assert_ne!(
        s.finish.as_deref(),
        Some("tool_calls"),
        "no invented finish"
    );
    // The gateway keeps serving.
    up.push(Behavior::json_fixture(200, ANT_NONSTREAM));
    let again = post(
        &gw.url("/v1/chat/completions"),
        openai_request("claude-sonnet", false, false),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.text());
}

// =============================================================================================
// 4. Anthropic client -> OpenAI provider (translated)
// =============================================================================================

/// The OpenAI tool-call fixture's conversation, as an Anthropic client sends it.
fn anthropic_capital_request(model: &str, stream: bool) -> Vec<u8> {
    to_vec(&json!({
        "model": model,
        "max_tokens": 1024,
        "stream": stream,
        "system": "Answer briefly.",
        "messages": [{"role": "user", "content": "What is the capital of the UK? Use the tool, then answer."}],
        "tools": [{
            "name": "get_capital",
            "description": "",
            "input_schema": {"additionalProperties": false, "properties": {"country": {"type": "string"}}, "required": ["country"], "type": "object"}
        }],
        "tool_choice": {"type": "auto"}
    }))
}

#[tokio::test]
async fn anthropic_to_openai_stream_is_a_well_formed_message_stream() {
    let (up, gw) = start().await;
    up.push(Behavior::sse_fixture(STREAM_TOOL).split_every(61));
    let reply = post_with(
        &gw.url("/v1/messages"),
        anthropic_capital_request("gpt-up", true),
        &[
            ("x-api-key", CLIENT_KEY),
            ("anthropic-version", "2023-06-01"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let s = anthropic_stream(&reply.body);
    assert!(s.error.is_none());
    assert_eq!(s.tool_uses.len(), 1, "{s:?}");
    let (id, name, input) = &s.tool_uses[0];
    assert_eq!(id, "call_ZR5UUuTt3pf61kjwAJIYdVMj");
    assert_eq!(name, "get_capital");
    assert_eq!(input, "{\"country\":\"UK\"}");
    // Fragments in the order OpenAI sent them (empty ones may be dropped).
    let frags: Vec<&str> = s.fragments[0]
        .iter()
        .map(String::as_str)
        .filter(|f| !f.is_empty())
        .collect();
    assert_eq!(frags, ["{\"", "country", "\":\"", "UK", "\"}"]);
    assert_eq!(s.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(s.output_tokens, Some(15));
    assert_eq!(s.input_tokens, Some(53));
    assert_tokens(&gw, "gpt-up", "prompt", 53).await;
    assert_tokens(&gw, "gpt-up", "completion", 15).await;

    let req = up.only_request();
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(
        req.header("authorization").as_deref(),
        Some(format!("Bearer {OAI_KEY}").as_str())
    );
    assert_eq!(req.header("x-api-key"), None);
    assert_eq!(req.header("anthropic-version"), None);
    assert_client_key_absent(&req);
    let b = req.json();
    assert_eq!(b["model"], "gpt-4o-mini");
    assert_eq!(b["stream"], true);
    assert_eq!(b["stream_options"]["include_usage"], true, "{b}");
    assert_eq!(b["max_completion_tokens"], 1024, "{b}");
    assert_eq!(b["messages"][0]["role"], "system", "{b}");
    assert_eq!(b["messages"][0]["content"], "Answer briefly.", "{b}");
    assert_eq!(b["messages"][1]["role"], "user", "{b}");
    assert_eq!(b["tools"][0]["type"], "function", "{b}");
    assert_eq!(b["tools"][0]["function"]["name"], "get_capital", "{b}");
    assert_eq!(
        b["tools"][0]["function"]["parameters"]["required"],
        json!(["country"]),
        "{b}"
    );
}

#[tokio::test]
async fn anthropic_to_openai_parallel_tool_results_become_tool_messages_in_order() {
    let (up, gw) = start().await;
    up.push(Behavior::json_fixture(200, CHAT_NONSTREAM));
    // Turn 2 of the parallel tool-use recording: its request, the recorded assistant turn and
    // one user turn with the four results.
    let mut body = fixture_request_body(ANT_PARALLEL_REQUEST);
    body["model"] = json!("gpt-up");
    let turn1: Value = serde_json::from_slice(&fixture(ANT_PARALLEL)).expect("json");
    let calls: Vec<Value> = turn1["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .cloned()
        .collect();
    assert_eq!(calls.len(), 4);
    let results: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"type": "tool_result", "tool_use_id": c["id"], "content": format!("age {}", 40 - i * 10)})
        })
        .collect();
    let msgs = body["messages"].as_array_mut().expect("messages");
    msgs.push(json!({"role": "assistant", "content": turn1["content"]}));
    msgs.push(json!({"role": "user", "content": results}));
    let reply = post(&gw.url("/v1/messages"), to_vec(&body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // The answer, as an Anthropic message.
    let v = reply.json();
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["role"], "assistant", "{v}");
    assert_eq!(v["model"], "gpt-up", "{v}");
    let oai: Value = serde_json::from_slice(&fixture(CHAT_NONSTREAM)).expect("json");
    assert_eq!(v["content"][0]["type"], "text", "{v}");
    assert_eq!(
        v["content"][0]["text"],
        oai["choices"][0]["message"]["content"]
    );
    assert_eq!(v["stop_reason"], "end_turn", "{v}");
    assert_eq!(v["usage"]["input_tokens"], 16, "{v}");
    assert_eq!(v["usage"]["output_tokens"], 363, "{v}");

    // The upstream conversation: system, user, assistant with 4 tool calls, 4 tool messages.
    let b = up.only_request().json();
    assert_eq!(b["model"], "gpt-4o-mini");
    assert_eq!(b["max_completion_tokens"], 4096, "{b}");
    assert_ne!(b["stream"], true);
    let m = b["messages"].as_array().expect("messages");
    let roles: Vec<&str> = m
        .iter()
        .map(|x| x["role"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        roles,
        [
            "system",
            "user",
            "assistant",
            "tool",
            "tool",
            "tool",
            "tool"
        ],
        "{b}"
    );
    let tool_calls = m[2]["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(tool_calls.len(), 4, "{b}");
    for (i, call) in calls.iter().enumerate() {
        assert_eq!(tool_calls[i]["id"], call["id"], "{b}");
        assert_eq!(tool_calls[i]["function"]["name"], "retrieve_entity_info");
        let args: Value = serde_json::from_str(
            tool_calls[i]["function"]["arguments"]
                .as_str()
                .expect("arguments string"),
        )
        .expect("arguments JSON");
        assert_eq!(args, call["input"]);
        assert_eq!(
            m[3 + i]["tool_call_id"],
            call["id"],
            "tool message order: {b}"
        );
        let content = match &m[3 + i]["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
            other => panic!("tool content {other}"),
        };
        assert_eq!(content, format!("age {}", 40 - i * 10));
    }
    assert_eq!(b["tool_choice"], "auto", "{b}");
}

#[tokio::test]
async fn anthropic_to_openai_rate_limit_is_an_anthropic_429() {
    let (up, gw) = start().await;
    up.push(Behavior::json_fixture(429, ERR_429).header("retry-after", "1"));
    let reply = post(
        &gw.url("/v1/messages"),
        anthropic_capital_request("gpt-up", false),
    )
    .await;
    assert_eq!(assert_anthropic_error(&reply, 429), "rate_limit_error");
    assert!(
        reply.text().contains("Rate limit reached"),
        "{}",
        reply.text()
    );

    up.push(Behavior::json_fixture(429, ERR_429));
    let reply = post(
        &gw.url("/v1/messages"),
        anthropic_capital_request("gpt-up", true),
    )
    .await;
    assert_eq!(assert_anthropic_error(&reply, 429), "rate_limit_error");
}

// =============================================================================================
// 5. Gemini <-> OpenAI
// =============================================================================================

#[tokio::test]
async fn gemini_client_to_openai_provider_stream_and_nonstream() {
    let (up, gw) = start().await;
    let body = to_vec(&fixture_request_body(GEM_STREAM_TEXT_REQUEST));

    up.push(Behavior::sse_fixture(STREAM_TEXT));
    let reply = post(
        &gw.url(&format!(
            "/v1beta/models/gpt-up:streamGenerateContent?alt=sse&key={CLIENT_KEY}"
        )),
        body.clone(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let chunks = sse_json(&reply.body);
    assert!(chunks.len() > 1, "streamed in pieces: {}", reply.text());
    assert!(
        !reply.text().contains("[DONE]"),
        "Gemini streams have no [DONE]"
    );
    let (text, finish, usage) = gemini_chunks_text(&chunks);
    assert_eq!(text, "The capital of the UK is London.");
    assert_eq!(finish.as_deref(), Some("STOP"));
    let usage = usage.expect("usageMetadata");
    assert_eq!(usage["promptTokenCount"], 78, "{usage}");
    assert_eq!(usage["candidatesTokenCount"], 9, "{usage}");

    let req = up.last_request();
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(
        req.header("authorization").as_deref(),
        Some(format!("Bearer {OAI_KEY}").as_str())
    );
    assert_client_key_absent(&req);
    let b = req.json();
    assert_eq!(b["model"], "gpt-4o-mini");
    assert_eq!(b["stream"], true);
    assert_eq!(b["stream_options"]["include_usage"], true, "{b}");
    assert_eq!(b["messages"][0]["role"], "user", "{b}");
    let content = match &b["messages"][0]["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        other => panic!("content {other}"),
    };
    assert_eq!(
        content,
        "Count from 1 to 30, one number per line, digits only."
    );

    up.push(Behavior::json_fixture(200, CHAT_NONSTREAM));
    let reply = post(&gw.url("/genai/v1beta/models/gpt-up:generateContent"), body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    let oai: Value = serde_json::from_slice(&fixture(CHAT_NONSTREAM)).expect("json");
    let (text, finish, usage) = gemini_chunks_text(std::slice::from_ref(&v));
    assert_eq!(
        text,
        oai["choices"][0]["message"]["content"]
            .as_str()
            .expect("text")
    );
    assert_eq!(finish.as_deref(), Some("STOP"));
    assert_eq!(usage.expect("usage")["promptTokenCount"], 16);
    assert_ne!(up.last_request().json()["stream"], true);
    assert_tokens(&gw, "gpt-up", "prompt", 78 + 16).await;
}

#[tokio::test]
async fn gemini_client_to_openai_provider_tool_call_becomes_function_call() {
    let (up, gw) = start().await;
    up.push(Behavior::sse_fixture(STREAM_TOOL));
    let body = json!({
        "contents": [{"role": "user", "parts": [{"text": "What is the capital of the UK?"}]}],
        "tools": [{"functionDeclarations": [{"name": "get_capital", "description": "", "parameters": {"type": "object", "properties": {"country": {"type": "string"}}}}]}]
    });
    let reply = post(
        &gw.url("/v1beta/models/gpt-up:streamGenerateContent?alt=sse"),
        to_vec(&body),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let calls: Vec<Value> = sse_json(&reply.body)
        .iter()
        .flat_map(|c| {
            c.pointer("/candidates/0/content/parts")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| p.get("functionCall").cloned())
        .collect();
    assert_eq!(calls.len(), 1, "one whole function call: {}", reply.text());
    assert_eq!(calls[0]["name"], "get_capital");
    assert_eq!(calls[0]["args"], json!({"country": "UK"}));
    let b = up.only_request().json();
    assert_eq!(b["tools"][0]["function"]["name"], "get_capital", "{b}");
}

#[tokio::test]
async fn openai_client_to_gemini_provider_stream_tool_call_gets_an_id_and_tool_calls_finish() {
    let (up, gw) = start().await;
    up.push(Behavior::sse_fixture(GEM_STREAM_TOOL).split_every(211));
    let body = json!({
        "model": "gemini-pro",
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "What is the capital of the user country? Call the tool"}],
        "tools": [{"type": "function", "function": {"name": "get_country", "description": "", "parameters": {"type": "object", "properties": {}, "additionalProperties": false}}}]
    });
    let reply = post_with(
        &gw.url("/v1/chat/completions"),
        to_vec(&body),
        &[("authorization", &format!("Bearer {CLIENT_KEY}"))],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let s = openai_stream(&reply.body);
    assert_openai_chunks(&s, "gemini-pro");
    assert_eq!(s.tool_calls.len(), 1, "{:?}", s.tool_calls);
    let (index, id, name, args) = &s.tool_calls[0];
    assert_eq!(*index, 0);
    assert!(
        !id.is_empty(),
        "Gemini calls have no id: one must be synthesized"
    );
    assert_eq!(name, "get_country");
    assert_eq!(
        serde_json::from_str::<Value>(args).expect("args JSON"),
        json!({})
    );
    // Gemini says STOP; a turn with a function call finishes with tool_calls.
    assert_eq!(s.finish.as_deref(), Some("tool_calls"));
    assert!(s.done_last);
    let usage = s.usage.expect("usage");
    assert_eq!(usage["prompt_tokens"], 29);
    assert_eq!(
        usage["completion_tokens"],
        10 + 202,
        "thoughts count as output: {usage}"
    );

    let req = up.only_request();
    assert_eq!(
        req.path,
        format!("/v1beta/models/{GEMINI_PRO}:streamGenerateContent?alt=sse")
    );
    assert_eq!(req.header("x-goog-api-key").as_deref(), Some(GEM_KEY));
    assert_eq!(req.header("authorization"), None);
    assert_client_key_absent(&req);
    let b = req.json();
    assert_eq!(b["contents"][0]["role"], "user", "{b}");
    assert_eq!(
        b["tools"][0]["functionDeclarations"][0]["name"], "get_country",
        "{b}"
    );
    assert!(
        b.get("model").is_none() && b.get("messages").is_none(),
        "{b}"
    );
}

#[tokio::test]
async fn openai_client_to_gemini_provider_text_stream_and_nonstream_tool_call() {
    let (up, gw) = start().await;
    up.push(Behavior::sse_fixture(GEM_STREAM_TEXT));
    let body = to_vec(&json!({
        "model": "gemini-flash",
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Count from 1 to 30, one number per line, digits only."}]
    }));
    let reply = post(&gw.url("/v1/chat/completions"), body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let s = openai_stream(&reply.body);
    let expected: Vec<String> = (1..=30).map(|i| i.to_string()).collect();
    assert_eq!(s.text, expected.join("\n"));
    assert_eq!(s.finish.as_deref(), Some("stop"));
    let usage = s.usage.expect("usage");
    assert_eq!(
        (
            usage["prompt_tokens"].as_u64(),
            usage["completion_tokens"].as_u64()
        ),
        (Some(18), Some(115)),
        "{usage}"
    );
    assert!(s.done_last);

    up.push(Behavior::json_fixture(200, GEM_NONSTREAM_TOOL));
    let body = to_vec(&json!({
        "model": "gemini-pro",
        "messages": [{"role": "user", "content": "Weather in San Francisco?"}],
        "tools": [weather_tool()]
    }));
    let reply = post(&gw.url("/v1/chat/completions"), body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function", "{v}");
    assert!(call["id"].as_str().is_some_and(|id| !id.is_empty()), "{v}");
    assert_eq!(call["function"]["name"], "weather");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().expect("string"))
        .expect("json");
    assert_eq!(args, json!({"location": "San Francisco"}));
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 29);
    assert_eq!(v["usage"]["completion_tokens"], 15 + 893);
    assert_eq!(
        up.last_request().path,
        format!("/v1beta/models/{GEMINI_PRO}:generateContent")
    );
}

// =============================================================================================
// 5b. The remaining pairs: Anthropic <-> Gemini, Anthropic/Gemini -> Bedrock, upstream errors.
// =============================================================================================

#[tokio::test]
async fn anthropic_client_to_gemini_provider_stream_tool_call() {
    let (up, gw) = start().await;
    up.push(Behavior::sse_fixture(GEM_STREAM_TOOL));
    let body = to_vec(&json!({
        "model": "gemini-pro", "max_tokens": 512, "stream": true,
        "messages": [{"role": "user", "content": "What is the capital of the user country? Call the tool"}],
        "tools": [{"name": "get_country", "description": "", "input_schema": {"type": "object", "properties": {}}}]
    }));
    let reply = post_with(&gw.url("/v1/messages"), body, &[("x-api-key", CLIENT_KEY)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let s = anthropic_stream(&reply.body);
    assert_eq!(s.tool_uses.len(), 1, "{s:?}");
    let (id, name, input) = &s.tool_uses[0];
    assert!(!id.is_empty(), "a synthesized tool_use id");
    assert_eq!(name, "get_country");
    let input: Value =
        serde_json::from_str(if input.is_empty() { "{}" } else { input }).expect("input JSON");
    assert_eq!(input, json!({}));
    assert_eq!(s.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(s.output_tokens, Some(10 + 202));

    let req = up.only_request();
    assert_eq!(
        req.path,
        format!("/v1beta/models/{GEMINI_PRO}:streamGenerateContent?alt=sse")
    );
    assert_eq!(req.header("x-goog-api-key").as_deref(), Some(GEM_KEY));
    assert_client_key_absent(&req);
    let b = req.json();
    assert_eq!(b["generationConfig"]["maxOutputTokens"], 512, "{b}");
    assert_eq!(
        b["tools"][0]["functionDeclarations"][0]["name"], "get_country",
        "{b}"
    );
}

#[tokio::test]
async fn gemini_client_to_anthropic_provider_stream_tool_call() {
    let (up, gw) = start().await;
    up.push(Behavior::sse_fixture(ANT_STREAM_TOOL));
    let body = to_vec(&json!({
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}],
        "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}]}]
    }));
    let reply = post(
        &gw.url(&format!(
            "/v1beta/models/claude-sonnet:streamGenerateContent?alt=sse&key={CLIENT_KEY}"
        )),
        body,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let chunks = sse_json(&reply.body);
    let (text, finish, usage) = gemini_chunks_text(&chunks);
    assert_eq!(text, ANT_STREAM_TEXT);
    let calls: Vec<Value> = chunks
        .iter()
        .flat_map(|c| {
            c.pointer("/candidates/0/content/parts")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| p.get("functionCall").cloned())
        .collect();
    assert_eq!(calls.len(), 1, "{}", reply.text());
    assert_eq!(calls[0]["name"], "get_weather");
    assert_eq!(calls[0]["args"], json!({"location": "Paris"}));
    assert_eq!(finish.as_deref(), Some("STOP"));
    let usage = usage.expect("usageMetadata");
    assert_eq!(usage["promptTokenCount"], 377, "{usage}");
    assert_eq!(usage["candidatesTokenCount"], 65, "{usage}");

    let req = up.only_request();
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.header("x-api-key").as_deref(), Some(ANT_KEY));
    assert_client_key_absent(&req);
    let b = req.json();
    assert_eq!(b["model"], CLAUDE);
    assert!(b["max_tokens"].as_u64().is_some_and(|n| n > 0), "{b}");
    assert_eq!(b["stream"], true);
    assert_eq!(b["tools"][0]["name"], "get_weather", "{b}");
}

#[tokio::test]
async fn anthropic_and_gemini_clients_to_bedrock() {
    let (up, gw) = start().await;
    up.push(
        Behavior::bytes("application/vnd.amazon.eventstream", fixture(BED_STREAM))
            .split_every(1000),
    );
    let reply = post(
        &gw.url("/v1/messages"),
        to_vec(&json!({
            "model": "nova", "max_tokens": 300, "stream": true,
            "messages": [{"role": "user", "content": "What is the capital of France?"}]
        })),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let s = anthropic_stream(&reply.body);
    assert_eq!(s.text, bedrock_stream_text());
    assert_eq!(s.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(s.output_tokens, Some(82));
    let req = up.last_request();
    assert_eq!(req.path, format!("/model/{NOVA_PATH}/converse-stream"));
    assert_eq!(req.json()["inferenceConfig"]["maxTokens"], 300);

    up.push(Behavior::json_fixture(200, BED_NONSTREAM));
    let reply = post(
        &gw.url("/v1beta/models/nova:generateContent"),
        to_vec(&json!({"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (text, finish, usage) = gemini_chunks_text(&[reply.json()]);
    assert!(
        text.starts_with("Hello! How can I assist you today?"),
        "{text}"
    );
    assert_eq!(finish.as_deref(), Some("STOP"));
    assert_eq!(usage.expect("usage")["promptTokenCount"], 7);
    assert_eq!(
        up.last_request().path,
        format!("/model/{NOVA_PATH}/converse")
    );
}

#[tokio::test]
async fn upstream_errors_pass_through_or_translate() {
    let (up, gw) = start().await;
    let gem_body = to_vec(&fixture_request_body(GEM_STREAM_TEXT_REQUEST));
    // Same dialect: the provider's error body, untouched.
    up.push(Behavior::json_fixture(429, "gemini-error-429.json"));
    let reply = post(
        &gw.url("/v1beta/models/gemini-flash:generateContent"),
        gem_body,
    )
    .await;
    assert_eq!(reply.status, 429);
    assert_bytes_eq(&reply.body, &fixture("gemini-error-429.json"), "gemini 429");

    up.push(Behavior::json_fixture(400, ANT_400));
    let reply = post(
        &gw.url("/v1/messages"),
        anthropic_request("claude-sonnet", false),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_bytes_eq(&reply.body, &fixture(ANT_400), "anthropic 400");

    // Translated: Gemini's 429 as an OpenAI and an Anthropic error.
    up.push(Behavior::json_fixture(429, "gemini-error-429.json"));
    let reply = post(
        &gw.url("/v1/chat/completions"),
        chat_body("gemini-flash", None),
    )
    .await;
    let msg = assert_openai_error(&reply, 429);
    assert!(msg.contains("exceeded your current quota"), "{msg}");
    up.push(Behavior::json_fixture(429, "gemini-error-429.json"));
    let reply = post(
        &gw.url("/v1/messages"),
        simple_anthropic("gemini-flash", true),
    )
    .await;
    assert_eq!(assert_anthropic_error(&reply, 429), "rate_limit_error");
}

// =============================================================================================
// 6. OpenAI client -> Bedrock provider
// =============================================================================================

/// Text of the Bedrock ConverseStream recording.
fn bedrock_stream_text() -> String {
    [
        "The",
        " capital of France is Paris.",
        " Paris is not",
        " only the capital city but",
        " also the most",
        " populous city in France",
        ", and",
        " it is",
        " a",
        " major center",
        " for",
        " culture",
        ", commerce, fashion",
        ", and international diplomacy",
        ". Known",
        " for its",
        " historical",
        " landmarks, such",
        " as the Eiffel Tower, the",
        " Louvre Museum, and Notre",
        "-Dame Cathedral",
        ", Paris is often",
        " referred to as \"",
        "The City of Light",
        "\"",
        " or \"The",
        " City",
        " of Love",
        ".\"",
    ]
    .concat()
}

#[tokio::test]
async fn openai_to_bedrock_with_api_key_streams_the_event_stream() {
    let (up, gw) = start().await;
    up.push(
        Behavior::bytes("application/vnd.amazon.eventstream", fixture(BED_STREAM)).split_every(333),
    );
    let body = to_vec(&json!({
        "model": "nova",
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": 300,
        "messages": [{"role": "system", "content": "Be helpful."}, {"role": "user", "content": "What is the capital of France?"}]
    }));
    let reply = post_with(
        &gw.url("/v1/chat/completions"),
        body,
        &[("authorization", &format!("Bearer {CLIENT_KEY}"))],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let s = openai_stream(&reply.body);
    assert_openai_chunks(&s, "nova");
    assert_eq!(s.text, bedrock_stream_text());
    assert_eq!(s.finish.as_deref(), Some("stop"));
    let usage = s.usage.expect("usage");
    assert_eq!(
        (
            usage["prompt_tokens"].as_u64(),
            usage["completion_tokens"].as_u64()
        ),
        (Some(13), Some(82)),
        "{usage}"
    );
    assert!(s.done_last);
    assert_tokens(&gw, "nova", "prompt", 13).await;
    assert_tokens(&gw, "nova", "completion", 82).await;

    let req = up.only_request();
    assert_eq!(req.path, format!("/model/{NOVA_PATH}/converse-stream"));
    assert_eq!(
        req.header("authorization").as_deref(),
        Some(format!("Bearer {BED_KEY}").as_str())
    );
    assert_client_key_absent(&req);
    let b = req.json();
    assert_eq!(b["system"][0]["text"], "Be helpful.", "{b}");
    assert_eq!(b["messages"][0]["role"], "user", "{b}");
    assert_eq!(
        b["messages"][0]["content"][0]["text"], "What is the capital of France?",
        "{b}"
    );
    assert_eq!(b["inferenceConfig"]["maxTokens"], 300, "{b}");
    assert!(b.get("model").is_none(), "the model is in the path: {b}");
}

#[tokio::test]
async fn openai_to_bedrock_signed_with_sigv4_nonstream() {
    let (up, gw) = start().await;
    up.push(Behavior::json_fixture(200, BED_NONSTREAM));
    let body = to_vec(&json!({
        "model": "nova-signed",
        "messages": [{"role": "user", "content": "Hello"}]
    }));
    let reply = post(&gw.url("/v1/chat/completions"), body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello! How can I assist you today? Whether you have questions, need information, or just want to chat, I'm here to help."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 7);
    assert_eq!(v["usage"]["completion_tokens"], 30);

    let req = up.only_request();
    assert_eq!(req.path, format!("/model/{NOVA_PATH}/converse"));
    let auth = req.header("authorization").expect("authorization");
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={AKID}/")),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
    assert!(
        auth.contains("SignedHeaders=") && auth.contains("x-amz-date"),
        "{auth}"
    );
    assert!(auth.contains("Signature="), "{auth}");
    assert!(
        !auth.contains(AWS_SECRET),
        "the secret itself is never sent"
    );
    let date = req.header("x-amz-date").expect("x-amz-date");
    assert_eq!(date.len(), 16, "{date}");
    assert!(date.ends_with('Z') && date.as_bytes()[8] == b'T', "{date}");
    assert_eq!(
        &auth[auth.find('/').unwrap() + 1..][..8],
        &date[..8],
        "scope date"
    );
}

/// A Bedrock HTTP error (the exception named in `x-amzn-errortype`, the message in the body)
/// reaches an OpenAI client as an OpenAI error object with Bedrock's status and message.
#[tokio::test]
async fn openai_to_bedrock_http_error_is_an_openai_error() {
    let (up, gw) = start().await;
    let message = "The provided model identifier is invalid.";
    for stream in [false, true] {
        up.push(
            Behavior::json(400, json!({ "message": message }).to_string()).header(
                "x-amzn-errortype",
                "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            ),
        );
        let reply = post(
            &gw.url("/v1/chat/completions"),
            chat_body("nova", Some(stream)),
        )
        .await;
        let msg = assert_openai_error(&reply, 400);
        assert_eq!(msg, message, "stream: {stream}");
        let err = &reply.json()["error"];
        assert_eq!(err["type"], "invalid_request_error", "{err}");
        // The exception's name, without the type URI Bedrock appends to it.
        assert_eq!(err["code"], "ValidationException", "{err}");
    }
    assert_eq!(up.request_count(), 2, "a 400 is not retried");
}

/// One event-stream frame: `total_len | headers_len | prelude CRC | headers | payload | CRC`,
/// big-endian, CRC32 (IEEE); string headers (type 7) only.
fn event_stream_frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut hb = Vec::new();
    for (name, value) in headers {
        hb.push(u8::try_from(name.len()).unwrap());
        hb.extend_from_slice(name.as_bytes());
        hb.push(7);
        hb.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        hb.extend_from_slice(value.as_bytes());
    }
    let total = 12 + hb.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).unwrap().to_be_bytes());
    out.extend_from_slice(&u32::try_from(hb.len()).unwrap().to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&hb);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// The first `n` frames of an event-stream body, as sent.
fn first_frames(body: &[u8], n: usize) -> Vec<u8> {
    let mut end = 0;
    for _ in 0..n {
        let len = u32::from_be_bytes(body[end..end + 4].try_into().unwrap());
        end += usize::try_from(len).unwrap();
    }
    body[..end].to_vec()
}

/// A Bedrock `exception` message after some content: the OpenAI client has the content, then
/// an error event saying what happened, and no `[DONE]`.
#[tokio::test]
async fn openai_to_bedrock_exception_mid_stream_ends_with_an_error_event() {
    let (up, gw) = start().await;
    // messageStart, then the deltas "The" and " capital of France is Paris.".
    let mut raw = first_frames(&fixture(BED_STREAM), 3);
    let message = "Too many tokens, please wait before trying again.";
    let exception = event_stream_frame(
        &[
            (":exception-type", "throttlingException"),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        json!({ "message": message }).to_string().as_bytes(),
    );
    raw.extend_from_slice(&exception);
    up.push(Behavior::bytes("application/vnd.amazon.eventstream", raw).split_every(97));
    let reply = post(
        &gw.url("/v1/chat/completions"),
        chat_body("nova", Some(true)),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let s = openai_stream(&reply.body);
    assert_openai_chunks(&s, "nova");
    assert_eq!(s.text, "The capital of France is Paris.");
    let err = s.error.expect("an error event ends the stream");
    assert_eq!(err["message"], message, "{err}");
    // Throttling is a rate limit in OpenAI's terms; the exception's name is kept as the code.
    assert_eq!(err["type"], "rate_limit_error", "{err}");
    assert_eq!(err["code"], "throttlingException", "{err}");
    assert_eq!(s.done_count, 0, "no [DONE] after an error");
    let last = sse(&reply.body).pop().expect("events").1;
    assert!(
        last.contains("\"error\""),
        "error is the last event: {last}"
    );
    assert_eq!(up.request_count(), 1, "content was sent: no retry");
}

// =============================================================================================
// 7. Azure
// =============================================================================================

#[tokio::test]
async fn azure_deployment_form_and_v1_form_pass_through_byte_exact() {
    let (up, gw) = start().await;
    up.push(Behavior::json_fixture(200, CHAT_NONSTREAM));
    let body = chat_body("gpt-az", None);
    let reply = post_with(
        &gw.url("/v1/chat/completions?api-version=1999-01-01"),
        body.clone(),
        &[("authorization", &format!("Bearer {CLIENT_KEY}"))],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(&reply.body, &fixture(CHAT_NONSTREAM), "azure answer");
    let req = up.last_request();
    assert_eq!(
        req.path,
        "/openai/deployments/prod-41/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(req.header("api-key").as_deref(), Some(AZ_KEY));
    assert_eq!(req.header("authorization"), None);
    assert_client_key_absent(&req);
    assert_bytes_eq(&req.body, &body, "no target model: body untouched");

    up.push(Behavior::json_fixture(200, CHAT_NONSTREAM));
    let body = chat_body("gpt-az1", None);
    let reply = post(&gw.url("/v1/chat/completions"), body.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(&reply.body, &fixture(CHAT_NONSTREAM), "azure v1 answer");
    let req = up.last_request();
    assert_eq!(req.path, "/openai/v1/chat/completions");
    assert_eq!(req.header("api-key").as_deref(), Some(AZ_KEY));
    assert_bytes_eq(
        &req.body,
        &replace_once(&body, b"\"gpt-az1\"", b"\"gpt-4.1-mini\""),
        "model renamed",
    );
}

#[tokio::test]
async fn azure_stream_passthrough_is_byte_exact() {
    let (up, gw) = start().await;
    up.push(Behavior::sse_fixture(STREAM_TEXT));
    let mut body = fixture_request_body(STREAM_TEXT_REQUEST);
    body["model"] = json!("gpt-az");
    let reply = post(&gw.url("/openai/v1/chat/completions"), to_vec(&body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(&reply.body, &fixture(STREAM_TEXT), "azure stream");
    assert_eq!(
        up.only_request().path,
        "/openai/deployments/prod-41/chat/completions?api-version=2024-10-21"
    );
    assert_tokens(&gw, "gpt-az", "prompt", 78).await;
}

// =============================================================================================
// 8. Presets
// =============================================================================================

/// (preset, path of the vendor's real base URL, key variable).
const PRESETS: &[(&str, &str, &str)] = &[
    ("openai", "/v1", "OPENAI_API_KEY"),
    ("groq", "/openai/v1", "GROQ_API_KEY"),
    ("mistral", "/v1", "MISTRAL_API_KEY"),
    ("deepseek", "/v1", "DEEPSEEK_API_KEY"),
    ("openrouter", "/api/v1", "OPENROUTER_API_KEY"),
    ("together", "/v1", "TOGETHER_API_KEY"),
    ("fireworks", "/inference/v1", "FIREWORKS_API_KEY"),
    ("xai", "/v1", "XAI_API_KEY"),
    ("cerebras", "/v1", "CEREBRAS_API_KEY"),
    ("perplexity", "", "PERPLEXITY_API_KEY"),
    ("ollama", "/v1", ""),
    ("vllm", "/v1", ""),
    ("lmstudio", "/v1", ""),
];

async fn check_preset(preset: &str, path: &str, key_env: &str) {
    let up = MockUpstream::start().await;
    let yaml = format!(
        "server: {{ request_log: false }}\nproviders:\n  p: {{ preset: {preset}, base_url: \"http://{}{path}\" }}\nmodels:\n  - name: m\n    targets: [{{ provider: p, model: vendor-model }}]\n",
        up.addr()
    );
    let key = format!("sk-{preset}-test-key");
    let env: Vec<(&str, &str)> = if key_env.is_empty() {
        Vec::new()
    } else {
        vec![(key_env, key.as_str())]
    };
    let gw = Gateway::start_with_env(&yaml, &env).await;
    up.push(Behavior::json_fixture(200, CHAT_NONSTREAM));
    let reply = post_with(
        &gw.url("/v1/chat/completions"),
        chat_body("m", None),
        &[("authorization", &format!("Bearer {CLIENT_KEY}"))],
    )
    .await;
    assert_eq!(reply.status, 200, "{preset}: {}", reply.text());
    assert_bytes_eq(&reply.body, &fixture(CHAT_NONSTREAM), preset);
    let req = up.only_request();
    assert_eq!(req.path, format!("{path}/chat/completions"), "{preset}");
    let expected_auth = (!key_env.is_empty()).then(|| format!("Bearer {key}"));
    assert_eq!(req.header("authorization"), expected_auth, "{preset}");
    assert_eq!(req.json()["model"], "vendor-model", "{preset}");
    assert_client_key_absent(&req);
}

#[tokio::test]
async fn every_preset_calls_the_vendor_path_with_its_key() {
    let started = std::time::Instant::now();
    futures_util::future::join_all(
        PRESETS
            .iter()
            .map(|(preset, path, env)| check_preset(preset, path, env)),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(15));
}

// =============================================================================================
// 9. count_tokens
// =============================================================================================

#[tokio::test]
async fn count_tokens_is_forwarded_to_anthropic_and_estimated_elsewhere() {
    let (up, gw) = start().await;
    up.push(Behavior::json_fixture(200, ANT_COUNT));
    let mut body = fixture_request_body(ANT_COUNT_REQUEST);
    body["model"] = json!("claude-sonnet");
    let sent = to_vec(&body);
    let reply = post_with(
        &gw.url("/v1/messages/count_tokens"),
        sent.clone(),
        &[("x-api-key", CLIENT_KEY)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(&reply.body, &fixture(ANT_COUNT), "count_tokens answer");
    assert_eq!(reply.header("x-ferrogate-token-estimate"), None);
    let req = up.only_request();
    assert_eq!(req.path, "/v1/messages/count_tokens");
    assert_eq!(req.header("x-api-key").as_deref(), Some(ANT_KEY));
    assert!(req.header("anthropic-version").is_some());
    assert_bytes_eq(
        &req.body,
        &replace_once(
            &sent,
            b"\"model\":\"claude-sonnet\"",
            format!("\"model\":\"{CLAUDE}\"").as_bytes(),
        ),
        "count_tokens body",
    );

    body["model"] = json!("gpt-up");
    let reply = post(
        &gw.url("/anthropic/v1/messages/count_tokens"),
        to_vec(&body),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let n = reply.json()["input_tokens"].as_u64().expect("input_tokens");
    assert!(n > 100, "a 5 KB request estimates to many tokens: {n}");
    assert!(reply.header("x-ferrogate-token-estimate").is_some());
    assert_eq!(up.request_count(), 1, "estimates never reach the upstream");
}

// =============================================================================================
// 10. /v1/models
// =============================================================================================

#[tokio::test]
async fn models_list_in_the_callers_shape() {
    let (_up, gw) = start().await;
    let reply = send(
        client()
            .get(gw.url("/v1/models"))
            .header("anthropic-version", "2023-06-01"),
    )
    .await;
    assert_eq!(reply.status, 200);
    let v = reply.json();
    let data = v["data"].as_array().expect("data");
    assert!(data.iter().all(|m| m["type"] == "model"), "{v}");
    assert!(data.iter().any(|m| m["id"] == "claude-sonnet"), "{v}");
    assert!(v["has_more"].is_boolean(), "{v}");

    let reply = get(&gw.url("/v1/models")).await;
    assert_eq!(reply.status, 200);
    let v = reply.json();
    assert_eq!(v["object"], "list", "{v}");
    let data = v["data"].as_array().expect("data");
    assert!(data.iter().all(|m| m["object"] == "model"), "{v}");
    assert!(data.iter().any(|m| m["id"] == "gemini-flash"), "{v}");
    assert!(v.get("has_more").is_none(), "{v}");
}

// =============================================================================================
// 11. Responses API
// =============================================================================================

#[tokio::test]
async fn responses_stream_passes_through_and_meters_usage() {
    let (up, gw) = start().await;
    up.push(Behavior::sse_fixture(RESP_STREAM).split_every(101));
    let mut body = fixture_request_body(RESP_REQUEST);
    body["model"] = json!("gpt-up");
    let reply = post(&gw.url("/v1/responses"), to_vec(&body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(&reply.body, &fixture(RESP_STREAM), "responses stream");
    let req = up.only_request();
    assert_eq!(req.path, "/v1/responses");
    assert_eq!(req.json()["model"], "gpt-4o-mini");
    assert_tokens(&gw, "gpt-up", "prompt", 278).await;
    assert_tokens(&gw, "gpt-up", "completion", 9).await;
}

/// The Responses object a non-stream `POST /v1/responses` answers with: the one the recorded
/// stream's `response.completed` event carries, pretty-printed as OpenAI sends JSON.
fn responses_nonstream_body() -> Vec<u8> {
    let completed = sse_json(&fixture(RESP_STREAM))
        .into_iter()
        .find(|v| v["type"] == "response.completed")
        .expect("response.completed event");
    let response = &completed["response"];
    assert_eq!(response["object"], "response", "{response}");
    serde_json::to_vec_pretty(response).expect("json")
}

#[tokio::test]
async fn responses_nonstream_passes_through_and_meters_usage() {
    let (up, gw) = start().await;
    let answer = responses_nonstream_body();
    up.push(Behavior::json(200, answer.clone()));
    let mut body = fixture_request_body(RESP_REQUEST);
    body["model"] = json!("gpt-up");
    body["stream"] = json!(false);
    let reply = post(&gw.url("/v1/responses"), to_vec(&body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(&reply.body, &answer, "responses answer");
    let req = up.only_request();
    assert_eq!(req.path, "/v1/responses");
    assert_eq!(
        req.header("authorization").as_deref(),
        Some(format!("Bearer {OAI_KEY}").as_str())
    );
    let sent = req.json();
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(sent["stream"], false);
    assert_eq!(
        sent["input"], body["input"],
        "the input is forwarded as sent"
    );
    assert_tokens(&gw, "gpt-up", "prompt", 278).await;
    assert_tokens(&gw, "gpt-up", "completion", 9).await;
}

#[tokio::test]
async fn responses_for_an_anthropic_model_is_a_400_pointing_to_chat_completions() {
    let (up, gw) = start().await;
    let mut body = fixture_request_body(RESP_REQUEST);
    body["model"] = json!("claude-sonnet");
    let reply = post(&gw.url("/v1/responses"), to_vec(&body)).await;
    let msg = assert_openai_error(&reply, 400);
    assert!(msg.contains("/v1/chat/completions"), "{msg}");
    assert_eq!(up.request_count(), 0);
}

// =============================================================================================
// 12. Aliases and errors in the client's dialect
// =============================================================================================

#[tokio::test]
async fn openai_alias_path_passes_through() {
    let (up, gw) = start().await;
    up.push(Behavior::json_fixture(200, CHAT_NONSTREAM));
    let reply = post(
        &gw.url("/openai/v1/chat/completions"),
        chat_body("gpt-up", None),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_bytes_eq(&reply.body, &fixture(CHAT_NONSTREAM), "alias");
    assert_eq!(up.only_request().path, "/v1/chat/completions");
}

#[tokio::test]
async fn errors_come_back_in_the_clients_dialect() {
    let (up, gw) = start().await;
    let reply = post(
        &gw.url("/v1/messages"),
        anthropic_request("no-such-model", false),
    )
    .await;
    assert_eq!(assert_anthropic_error(&reply, 404), "not_found_error");

    let reply = post(&gw.url("/anthropic/v1/messages"), &b"{not json"[..]).await;
    assert_eq!(assert_anthropic_error(&reply, 400), "invalid_request_error");

    let reply = post(
        &gw.url("/v1beta/models/gpt-up:generateContent"),
        &b"{\"contents\": [oops"[..],
    )
    .await;
    assert_eq!(assert_gemini_error(&reply, 400), "INVALID_ARGUMENT");

    let reply = post(
        &gw.url("/v1beta/models/no-such-model:generateContent"),
        to_vec(&fixture_request_body(GEM_STREAM_TEXT_REQUEST)),
    )
    .await;
    assert_eq!(assert_gemini_error(&reply, 404), "NOT_FOUND");

    let reply = get(&gw.url("/v1/messages")).await;
    assert_eq!(assert_anthropic_error(&reply, 405), "invalid_request_error");
    assert_eq!(reply.header("allow").as_deref(), Some("POST"));

    let reply = post(
        &gw.url("/v1/chat/completions"),
        chat_body("no-such-model", None),
    )
    .await;
    assert_openai_error(&reply, 404);
    assert_eq!(up.request_count(), 0);
}

// =============================================================================================
// 13. The built-in mock in other dialects
// =============================================================================================

fn simple_anthropic(model: &str, stream: bool) -> Vec<u8> {
    to_vec(&json!({
        "model": model, "max_tokens": 100, "stream": stream,
        "messages": [{"role": "user", "content": "Say hello"}]
    }))
}

#[tokio::test]
async fn anthropic_dialect_mock_answers_anthropic_and_openai_clients_alike() {
    let (up, gw) = start().await;
    // The Anthropic client gets the mock's native stream.
    let reply = post(&gw.url("/v1/messages"), simple_anthropic("mock-ant", true)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let events = sse(&reply.body);
    assert_eq!(
        events.first().and_then(|e| e.0.as_deref()),
        Some("message_start")
    );
    assert_eq!(
        events.last().and_then(|e| e.0.as_deref()),
        Some("message_stop")
    );
    let a = anthropic_stream(&reply.body);
    assert_eq!(a.text.split_whitespace().count(), 7, "{:?}", a.text);
    assert_eq!(a.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(a.output_tokens, Some(7));

    // Non-stream Anthropic: the same words.
    let reply = post(&gw.url("/v1/messages"), simple_anthropic("mock-ant", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["content"][0]["text"], a.text.as_str(), "{v}");

    // The OpenAI client gets OpenAI chunks with the same words.
    let reply = post(
        &gw.url("/v1/chat/completions"),
        chat_body("mock-ant", Some(true)),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let s = openai_stream(&reply.body);
    assert_openai_chunks(&s, "mock-ant");
    assert_eq!(s.text, a.text, "same words through the translation");
    assert_eq!(s.finish.as_deref(), Some("stop"));
    assert!(s.done_last);
    assert_eq!(up.request_count(), 0, "the mock never touches the network");
}

#[tokio::test]
async fn gemini_dialect_mock_answers_gemini_and_openai_clients_alike() {
    let (up, gw) = start().await;
    let body = to_vec(&json!({"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]}));
    let reply = post(
        &gw.url("/v1beta/models/mock-gem:streamGenerateContent?alt=sse"),
        body.clone(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let chunks = sse_json(&reply.body);
    assert!(chunks.len() >= 2, "{}", reply.text());
    let (text, finish, usage) = gemini_chunks_text(&chunks);
    assert_eq!(text.split_whitespace().count(), 7, "{text:?}");
    assert_eq!(finish.as_deref(), Some("STOP"));
    assert_eq!(usage.expect("usage")["candidatesTokenCount"], 7);

    let reply = post(&gw.url("/v1beta/models/mock-gem:generateContent"), body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (whole, _, _) = gemini_chunks_text(&[reply.json()]);
    assert_eq!(whole, text);

    let reply = post(
        &gw.url("/v1/chat/completions"),
        chat_body("mock-gem", Some(true)),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let s = openai_stream(&reply.body);
    assert_eq!(s.text, text, "same words through the translation");
    assert!(s.done_last);
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn openai_dialect_mock_answers_an_anthropic_client() {
    let (_up, gw) = start().await;
    let reply = post(&gw.url("/v1/messages"), simple_anthropic("mock-oai", true)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let a = anthropic_stream(&reply.body);
    assert_eq!(a.text.split_whitespace().count(), 7, "{:?}", a.text);
    let reply = post(
        &gw.url("/v1/chat/completions"),
        chat_body("mock-oai", Some(true)),
    )
    .await;
    assert_eq!(openai_stream(&reply.body).text, a.text);
}
