//! End to end with the official Python SDKs — `openai`, `anthropic` and `google-genai`, code no
//! one here wrote — against the real gateway, which forwards to a scripted upstream of each
//! dialect (`MockUpstream`) replaying recorded provider answers (tests/fixtures).
//!
//! What is checked is what each SDK's OWN accumulator made of the answer (openai's
//! `chat.completions.stream(...).get_final_completion()`, anthropic's
//! `messages.stream(...).get_final_message()`, google-genai's response objects `.text` /
//! `.function_calls`), the SDK's own exception classes for upstream errors, and what the upstream
//! received (tool results as each dialect requires them).
//!
//! One script per SDK lives in tests/python/ (a JSON job on stdin, one JSON result on stdout).
//! The interpreter and the pinned SDKs come from `common::python::python_with`: a virtualenv
//! under the target dir, created on first use (or `FERROGATE_TEST_PYTHON`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use common::python::{python_with, run_script};
use common::*;
use serde_json::{json, Value};

/// The model every client asks for; the gateway routes `*` to the upstream's own model name.
const CLIENT_MODEL: &str = "sdk-test-model";
/// One SDK run: interpreter start, imports, one exchange through the gateway.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);
const UPSTREAM_KEY: &str = "sk-upstream-1";
/// Distribution names, as pinned in tests/python/requirements.txt.
const SDK_PACKAGES: &[&str] = &["openai", "anthropic", "google-genai"];

// ---------------------------------------------------------------------------------------------
// The upstream.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Dialect {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Dialect {
    fn kind(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
            Dialect::Gemini => "gemini",
        }
    }

    /// The model name the gateway sends upstream (in the body, or in the path for Gemini).
    fn upstream_model(self) -> &'static str {
        match self {
            Dialect::OpenAi => "gpt-4o-mini",
            Dialect::Anthropic => "claude-sonnet-4-5",
            Dialect::Gemini => "gemini-2.5-flash",
        }
    }

    /// `base_url` as each vendor documents it (OpenAI's includes `/v1`).
    fn base_url(self, addr: SocketAddr) -> String {
        match self {
            Dialect::OpenAi => format!("http://{addr}/v1"),
            Dialect::Anthropic | Dialect::Gemini => format!("http://{addr}"),
        }
    }
}

/// A `MockUpstream` (it answers every dialect's paths) and the gateway with one provider of
/// dialect `d` pointing at it; every model name routes there.
async fn setup(d: Dialect) -> (MockUpstream, Gateway) {
    let up = MockUpstream::start().await;
    let yaml = format!(
        "providers:\n  up:\n    kind: {}\n    base_url: {}\n    keys: [{{ value: \"{UPSTREAM_KEY}\", weight: 1 }}]\n\
         models:\n  - name: \"*\"\n    targets: [{{ provider: up, model: {}, weight: 1 }}]\n",
        d.kind(),
        d.base_url(up.addr()),
        d.upstream_model(),
    );
    let gw = Gateway::start(&yaml).await;
    (up, gw)
}

// ---------------------------------------------------------------------------------------------
// The SDK side.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Sdk {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Sdk {
    fn script(self) -> &'static str {
        match self {
            Sdk::OpenAi => "openai_sdk.py",
            Sdk::Anthropic => "anthropic_sdk.py",
            Sdk::Gemini => "genai_sdk.py",
        }
    }

    /// The SDK's `base_url` for this gateway: plain paths, or under the dialect's prefix
    /// (`/openai/v1`, `/anthropic`, `/genai`).
    fn base_url(self, gw: &Gateway, prefixed: bool) -> String {
        let path = match (self, prefixed) {
            (Sdk::OpenAi, false) => "/v1",
            (Sdk::OpenAi, true) => "/openai/v1",
            (Sdk::Anthropic, false) => "",
            (Sdk::Anthropic, true) => "/anthropic",
            (Sdk::Gemini, false) => "",
            (Sdk::Gemini, true) => "/genai",
        };
        gw.url(path)
    }

    /// The finish reason each SDK reports for a finished text answer / a tool-call turn.
    fn text_finish(self) -> &'static str {
        match self {
            Sdk::OpenAi => "stop",
            Sdk::Anthropic => "end_turn",
            Sdk::Gemini => "STOP",
        }
    }

    fn tool_finish(self) -> &'static str {
        match self {
            Sdk::OpenAi => "tool_calls",
            Sdk::Anthropic => "tool_use",
            // Gemini has no tool-specific reason: a function-call turn ends with STOP.
            Sdk::Gemini => "STOP",
        }
    }
}

fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| python_with(SDK_PACKAGES)).clone()
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("python")
}

/// Runs `sdk`'s script for `scenario` against `base_url` and returns its JSON result. Blocking
/// work runs off the runtime, which keeps serving the upstream meanwhile.
async fn run_sdk(sdk: Sdk, base_url: String, scenario: &str) -> Value {
    let job = json!({"base_url": base_url, "scenario": scenario, "model": CLIENT_MODEL});
    let scenario = scenario.to_owned();
    tokio::task::spawn_blocking(move || {
        let py = python();
        let dir = scripts_dir();
        let script = dir.join(sdk.script());
        // `python -c` with the script run as `__main__`: `run_script` bounds it in time. No
        // __pycache__ is written into the source tree.
        let boot = format!(
            "import runpy, sys\nsys.dont_write_bytecode = True\nsys.path.insert(0, {dir})\n\
             sys.argv = [{script}]\n\
             runpy.run_path({script}, run_name='__main__')\n",
            dir = json!(dir.to_str().expect("utf-8 path")),
            script = json!(script.to_str().expect("utf-8 path")),
        );
        let out = run_script(&py, &boot, job.to_string().as_bytes(), SCRIPT_TIMEOUT);
        let line = out.lines().last().unwrap_or_default();
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{sdk:?} `{scenario}`: result is not JSON ({e}):\n{out}"));
        eprintln!("[{sdk:?} {scenario}] {v}");
        v
    })
    .await
    .expect("SDK run panicked")
}

/// Input and output tokens as the SDK reports them; Gemini's output is candidates + thoughts
/// (the others' output tokens include reasoning).
fn sdk_usage(sdk: Sdk, r: &Value) -> (u64, u64) {
    let u = &r["usage"];
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let input = u["input"]
        .as_u64()
        .unwrap_or_else(|| panic!("{sdk:?}: no input tokens in {r}"));
    let output = match sdk {
        Sdk::Gemini => n("output") + n("thoughts"),
        _ => n("output"),
    };
    (input, output)
}

// ---------------------------------------------------------------------------------------------
// The recorded answers and what they mean.
// ---------------------------------------------------------------------------------------------

const ANTHROPIC_NONSTREAM: &str = "anthropic-messages-nonstream.json";
const ANTHROPIC_STREAM_CHUNKS: &str = "anthropic-stream-text.chunks.jsonl";
const ANTHROPIC_STREAM_TOOL: &str = "anthropic-stream-text-tool-use.sse";
const ANTHROPIC_PARALLEL_TOOLS: &str = "anthropic-parallel-tool-use.turn1.json";
const ANTHROPIC_400: &str = "anthropic-error-400-invalid-request.json";
const GEMINI_STREAM_TEXT: &str = "gemini-stream-text.sse";
const GEMINI_STREAM_TOOL: &str = "gemini-stream-function-call.sse";
const GEMINI_NONSTREAM_TOOL: &str = "gemini-generatecontent-function-call.json";
const GEMINI_429: &str = "gemini-error-429.json";

/// The fixture's `data:` payloads (either line delimiter).
fn data_payloads(body: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

/// Anthropic's stream fixture lost its `event:` lines to the fixture author; frame each payload
/// again as Anthropic sends it (`event: <type>`).
fn anthropic_stream_text() -> Vec<u8> {
    let raw = String::from_utf8(fixture(ANTHROPIC_STREAM_CHUNKS)).expect("utf-8");
    let mut out = String::new();
    for line in raw.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).expect("jsonl line");
        let ty = v["type"].as_str().expect("type");
        out.push_str(&format!("event: {ty}\ndata: {line}\n\n"));
    }
    out.into_bytes()
}

/// Gemini's non-stream answer has the same schema as each stream chunk (GenerateContentResponse);
/// with no non-stream text recording at hand, the stream recording folded into one response
/// stands in: its text parts joined, the last chunk's finish reason and usage.
fn gemini_nonstream_text() -> Vec<u8> {
    let chunks = data_payloads(&fixture(GEMINI_STREAM_TEXT));
    let last = chunks.last().expect("chunks").clone();
    let text: String = chunks
        .iter()
        .filter_map(|c| c.pointer("/candidates/0/content/parts/0/text")?.as_str())
        .collect();
    let mut whole = last;
    whole["candidates"][0]["content"]["parts"] = json!([{ "text": text }]);
    serde_json::to_vec(&whole).expect("json")
}

/// The upstream's recorded text answer, non-stream or stream.
fn text_reply(d: Dialect, stream: bool) -> Behavior {
    match (d, stream) {
        (Dialect::OpenAi, false) => Behavior::json_fixture(200, CHAT_NONSTREAM),
        (Dialect::OpenAi, true) => Behavior::sse(fixture(STREAM_TEXT)),
        (Dialect::Anthropic, false) => Behavior::json_fixture(200, ANTHROPIC_NONSTREAM),
        (Dialect::Anthropic, true) => Behavior::sse(anthropic_stream_text()),
        (Dialect::Gemini, false) => Behavior::json(200, gemini_nonstream_text()),
        (Dialect::Gemini, true) => Behavior::sse(fixture(GEMINI_STREAM_TEXT)),
    }
}

/// What that answer says: text, input tokens, output tokens (reasoning included).
fn expected_text(d: Dialect, stream: bool) -> (String, u64, u64) {
    match (d, stream) {
        (Dialect::OpenAi, false) => {
            let v: Value = serde_json::from_slice(&fixture(CHAT_NONSTREAM)).expect("json");
            let text = v["choices"][0]["message"]["content"]
                .as_str()
                .expect("text");
            (text.to_owned(), 16, 363)
        }
        (Dialect::OpenAi, true) => ("The capital of the UK is London.".to_owned(), 78, 9),
        (Dialect::Anthropic, false) => (
            "Hello! I'm doing well, thanks for asking. How are you doing today? Is there \
             anything I can help you with?"
                .to_owned(),
            12,
            29,
        ),
        (Dialect::Anthropic, true) => (
            "Hello! I'm doing well, thank you for asking. How are you doing today? Is there \
             anything I can help you with?"
                .to_owned(),
            12,
            30,
        ),
        // 80 candidate tokens + 35 thoughts.
        (Dialect::Gemini, _) => (
            (1..=30)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            18,
            115,
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Text, non-stream and stream: every SDK against every upstream dialect.
// ---------------------------------------------------------------------------------------------

async fn check_text(sdk: Sdk, d: Dialect, stream: bool) {
    let (up, gw) = setup(d).await;
    up.push(text_reply(d, stream));
    // Streams go through the dialect's path prefix, non-streams through the plain paths.
    let scenario = if stream { "stream" } else { "text" };
    let r = run_sdk(sdk, sdk.base_url(&gw, stream), scenario).await;
    let (text, input, output) = expected_text(d, stream);
    assert_eq!(r["text"], text, "{sdk:?} <- {d:?}: {r}");
    assert_eq!(r["finish"], sdk.text_finish(), "{sdk:?} <- {d:?}: {r}");
    assert_eq!(r["tool_calls"], json!([]), "{sdk:?} <- {d:?}: {r}");
    assert_eq!(
        sdk_usage(sdk, &r),
        (input, output),
        "{sdk:?} <- {d:?} usage: {r}"
    );
    if stream {
        // The SDK really streamed: openai/anthropic saw delta events, genai several chunks.
        match sdk {
            Sdk::OpenAi => assert!(r["event_types"]["content.delta"].as_u64() > Some(1), "{r}"),
            Sdk::Anthropic => assert!(r["event_types"]["text"].as_u64() > Some(1), "{r}"),
            Sdk::Gemini => assert!(r["chunks"].as_u64() > Some(1), "{r}"),
        }
    }

    let req = up.only_request();
    assert_upstream_request(&req, d, stream);
}

/// The upstream request is the dialect's own: path, credentials, model, stream flag.
fn assert_upstream_request(req: &RecordedRequest, d: Dialect, stream: bool) {
    let body = req.json();
    match d {
        Dialect::OpenAi => {
            assert_eq!(req.path, "/v1/chat/completions");
            assert_eq!(
                req.header("authorization").as_deref(),
                Some(format!("Bearer {UPSTREAM_KEY}").as_str())
            );
            assert_eq!(body["model"], d.upstream_model());
            assert_eq!(body["stream"].as_bool().unwrap_or(false), stream, "{body}");
        }
        Dialect::Anthropic => {
            assert_eq!(req.path, "/v1/messages");
            assert_eq!(req.header("x-api-key").as_deref(), Some(UPSTREAM_KEY));
            assert!(
                req.header("anthropic-version").is_some(),
                "no anthropic-version"
            );
            assert_eq!(body["model"], d.upstream_model());
            assert!(body["max_tokens"].as_u64() > Some(0), "{body}");
            assert_eq!(body["stream"].as_bool().unwrap_or(false), stream, "{body}");
        }
        Dialect::Gemini => {
            let expected = if stream {
                format!(
                    "/v1beta/models/{}:streamGenerateContent?alt=sse",
                    d.upstream_model()
                )
            } else {
                format!("/v1beta/models/{}:generateContent", d.upstream_model())
            };
            assert_eq!(req.path, expected);
            assert_eq!(req.header("x-goog-api-key").as_deref(), Some(UPSTREAM_KEY));
            assert!(body["contents"].is_array(), "{body}");
        }
    }
    assert!(
        req.header("authorization")
            .is_none_or(|a| !a.contains("client-key"))
            && req
                .header("x-api-key")
                .is_none_or(|a| !a.contains("client-key"))
            && req
                .header("x-goog-api-key")
                .is_none_or(|a| !a.contains("client-key")),
        "the client's key reached the upstream"
    );
}

macro_rules! text_tests {
    ($($name:ident: $sdk:ident <- $d:ident, $stream:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            check_text(Sdk::$sdk, Dialect::$d, $stream).await;
        }
    )*};
}

text_tests! {
    openai_text_from_openai: OpenAi <- OpenAi, false;
    openai_stream_from_openai: OpenAi <- OpenAi, true;
    openai_text_from_anthropic: OpenAi <- Anthropic, false;
    openai_stream_from_anthropic: OpenAi <- Anthropic, true;
    openai_text_from_gemini: OpenAi <- Gemini, false;
    openai_stream_from_gemini: OpenAi <- Gemini, true;
    anthropic_text_from_openai: Anthropic <- OpenAi, false;
    anthropic_stream_from_openai: Anthropic <- OpenAi, true;
    anthropic_text_from_anthropic: Anthropic <- Anthropic, false;
    anthropic_stream_from_anthropic: Anthropic <- Anthropic, true;
    anthropic_text_from_gemini: Anthropic <- Gemini, false;
    anthropic_stream_from_gemini: Anthropic <- Gemini, true;
    genai_text_from_openai: Gemini <- OpenAi, false;
    genai_stream_from_openai: Gemini <- OpenAi, true;
    genai_text_from_anthropic: Gemini <- Anthropic, false;
    genai_stream_from_anthropic: Gemini <- Anthropic, true;
    genai_text_from_gemini: Gemini <- Gemini, false;
    genai_stream_from_gemini: Gemini <- Gemini, true;
}

// ---------------------------------------------------------------------------------------------
// Tool calls: the SDK gets name and parsed arguments; the upstream got the tools declared.
// ---------------------------------------------------------------------------------------------

/// Tools the scripts declare (tests/python/_job.py).
const DECLARED_TOOLS: &[&str] = &[
    "get_weather",
    "weather",
    "get_capital",
    "get_country",
    "retrieve_entity_info",
];

/// A recorded tool-call answer.
struct ToolAnswer {
    reply: Behavior,
    /// Whether the client streams it.
    stream: bool,
    /// The text before the calls ("" when none).
    text: &'static str,
    calls: Vec<(&'static str, Value)>,
}

fn tool_answer(fixture_name: &str) -> ToolAnswer {
    let (reply, stream, text, calls) = match fixture_name {
        STREAM_TOOL => (
            Behavior::sse(fixture(STREAM_TOOL)),
            true,
            "",
            vec![("get_capital", json!({"country": "UK"}))],
        ),
        ANTHROPIC_STREAM_TOOL => (
            Behavior::sse(fixture(ANTHROPIC_STREAM_TOOL)),
            true,
            "I'll check the current weather in Paris for you.",
            vec![("get_weather", json!({"location": "Paris"}))],
        ),
        ANTHROPIC_PARALLEL_TOOLS => (
            Behavior::json_fixture(200, ANTHROPIC_PARALLEL_TOOLS),
            false,
            "I'll help you find out who is the youngest by retrieving information about each \
             family member. I'll retrieve their entity information to compare their ages.",
            ["Alice", "Bob", "Charlie", "Daisy"]
                .into_iter()
                .map(|n| ("retrieve_entity_info", json!({ "name": n })))
                .collect(),
        ),
        GEMINI_STREAM_TOOL => (
            Behavior::sse(fixture(GEMINI_STREAM_TOOL)),
            true,
            "",
            vec![("get_country", json!({}))],
        ),
        GEMINI_NONSTREAM_TOOL => (
            Behavior::json_fixture(200, GEMINI_NONSTREAM_TOOL),
            false,
            "",
            vec![("weather", json!({"location": "San Francisco"}))],
        ),
        other => panic!("no tool answer for {other}"),
    };
    ToolAnswer {
        reply,
        stream,
        text,
        calls,
    }
}

/// The names of the tools in an upstream request, in the dialect's shape.
fn upstream_tool_names(d: Dialect, body: &Value) -> Vec<String> {
    let names = |arr: Option<&Vec<Value>>, ptr: &str| -> Vec<String> {
        arr.into_iter()
            .flatten()
            .filter_map(|t| t.pointer(ptr)?.as_str().map(str::to_owned))
            .collect()
    };
    match d {
        Dialect::OpenAi => names(body["tools"].as_array(), "/function/name"),
        Dialect::Anthropic => {
            let tools = body["tools"].as_array();
            for t in tools.into_iter().flatten() {
                assert!(t["input_schema"].is_object(), "Anthropic tool shape: {t}");
            }
            names(tools, "/name")
        }
        Dialect::Gemini => body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| {
                t["functionDeclarations"]
                    .as_array()
                    .or_else(|| t["function_declarations"].as_array())
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|f| f["name"].as_str().map(str::to_owned))
            .collect(),
    }
}

async fn check_tools(sdk: Sdk, d: Dialect, fixture_name: &str) {
    let (up, gw) = setup(d).await;
    let ToolAnswer {
        reply,
        stream,
        text,
        calls,
    } = tool_answer(fixture_name);
    up.push(reply);
    let scenario = if stream { "tools_stream" } else { "tools" };
    let r = run_sdk(sdk, sdk.base_url(&gw, false), scenario).await;
    let got = r["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(got.len(), calls.len(), "{sdk:?} <- {fixture_name}: {r}");
    for (g, (name, args)) in got.iter().zip(&calls) {
        assert_eq!(g["name"], *name, "{r}");
        assert_eq!(g["args"], *args, "{r}");
        if sdk != Sdk::Gemini {
            // OpenAI and Anthropic clients answer a call by its id: there must be one, even
            // when the upstream (Gemini) gave none.
            assert!(
                g["id"].as_str().is_some_and(|id| !id.is_empty()),
                "tool call without id: {r}"
            );
        }
    }
    if sdk != Sdk::Gemini {
        let ids: std::collections::HashSet<_> =
            got.iter().filter_map(|g| g["id"].as_str()).collect();
        assert_eq!(ids.len(), got.len(), "tool call ids must be distinct: {r}");
    }
    assert_eq!(
        r["finish"],
        sdk.tool_finish(),
        "{sdk:?} <- {fixture_name}: {r}"
    );
    // SDKs say "no text" as null or "".
    assert_eq!(
        r["text"].as_str().unwrap_or(""),
        text,
        "{sdk:?} <- {fixture_name}: {r}"
    );

    let req = up.only_request();
    assert_upstream_request(&req, d, stream);
    let mut names = upstream_tool_names(d, &req.json());
    names.sort();
    let mut want: Vec<String> = DECLARED_TOOLS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names, want, "tools the upstream got: {}", req.json());
}

macro_rules! tool_tests {
    ($($name:ident: $sdk:ident <- $d:ident, $fixture:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            check_tools(Sdk::$sdk, Dialect::$d, $fixture).await;
        }
    )*};
}

tool_tests! {
    openai_tool_call_stream_from_anthropic: OpenAi <- Anthropic, ANTHROPIC_STREAM_TOOL;
    openai_parallel_tool_calls_from_anthropic: OpenAi <- Anthropic, ANTHROPIC_PARALLEL_TOOLS;
    openai_tool_call_from_gemini: OpenAi <- Gemini, GEMINI_NONSTREAM_TOOL;
    openai_tool_call_stream_from_openai: OpenAi <- OpenAi, STREAM_TOOL;
    anthropic_tool_call_stream_from_openai: Anthropic <- OpenAi, STREAM_TOOL;
    anthropic_tool_call_stream_from_gemini: Anthropic <- Gemini, GEMINI_STREAM_TOOL;
    anthropic_tool_call_stream_from_anthropic: Anthropic <- Anthropic, ANTHROPIC_STREAM_TOOL;
    genai_tool_call_stream_from_openai: Gemini <- OpenAi, STREAM_TOOL;
    genai_parallel_tool_calls_from_anthropic: Gemini <- Anthropic, ANTHROPIC_PARALLEL_TOOLS;
    genai_tool_call_stream_from_anthropic: Gemini <- Anthropic, ANTHROPIC_STREAM_TOOL;
    genai_tool_call_stream_from_gemini: Gemini <- Gemini, GEMINI_STREAM_TOOL;
}

// ---------------------------------------------------------------------------------------------
// Parallel tool results: two results of one assistant turn, as each upstream dialect requires.
// ---------------------------------------------------------------------------------------------

/// The two calls and results the scripts send (tests/python/_job.py `PARALLEL_CALLS`).
const PARALLEL: [(&str, &str); 2] = [("Paris", "sunny, 24C"), ("London", "rainy, 12C")];

/// Text of a tool result's content, whatever its shape (string, blocks, object).
fn result_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn assert_openai_tool_results(body: &Value) {
    let msgs = body["messages"].as_array().expect("messages");
    let asst = msgs
        .iter()
        .position(|m| m["role"] == "assistant")
        .unwrap_or_else(|| panic!("no assistant message: {body}"));
    let calls = msgs[asst]["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(calls.len(), 2, "{body}");
    let tools: Vec<&Value> = msgs[asst + 1..].iter().collect();
    assert_eq!(tools.len(), 2, "two tool messages after the call: {body}");
    for ((call, tool), (city, result)) in calls.iter().zip(&tools).zip(PARALLEL) {
        assert_eq!(call["function"]["name"], "get_weather", "{body}");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().expect("arguments"))
                .expect("arguments are JSON");
        assert_eq!(args, json!({ "location": city }), "{body}");
        assert_eq!(tool["role"], "tool", "{body}");
        let id = call["id"].as_str().expect("call id");
        assert!(!id.is_empty(), "{body}");
        assert_eq!(
            tool["tool_call_id"], id,
            "result paired with its call: {body}"
        );
        assert!(result_text(&tool["content"]).contains(result), "{body}");
    }
}

fn assert_anthropic_tool_results(body: &Value) {
    let msgs = body["messages"].as_array().expect("messages");
    assert_eq!(
        msgs.len(),
        3,
        "user, assistant, ONE user with both results: {body}"
    );
    assert_eq!(msgs[1]["role"], "assistant", "{body}");
    let uses: Vec<&Value> = msgs[1]["content"]
        .as_array()
        .expect("assistant blocks")
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .collect();
    assert_eq!(uses.len(), 2, "{body}");
    assert_eq!(msgs[2]["role"], "user", "{body}");
    let blocks = msgs[2]["content"].as_array().expect("user blocks");
    // Anthropic requires the tool_result blocks to come first in the user message.
    for ((block, tool_use), (city, result)) in blocks.iter().zip(&uses).zip(PARALLEL) {
        assert_eq!(block["type"], "tool_result", "{body}");
        assert_eq!(tool_use["name"], "get_weather", "{body}");
        assert_eq!(tool_use["input"], json!({ "location": city }), "{body}");
        let id = tool_use["id"].as_str().expect("tool_use id");
        assert!(!id.is_empty(), "{body}");
        assert_eq!(
            block["tool_use_id"], id,
            "result paired with its call: {body}"
        );
        assert!(result_text(&block["content"]).contains(result), "{body}");
    }
}

fn assert_gemini_tool_results(body: &Value) {
    let contents = body["contents"].as_array().expect("contents");
    let model = contents
        .iter()
        .position(|c| c["role"] == "model")
        .unwrap_or_else(|| panic!("no model turn: {body}"));
    let calls: Vec<&Value> = contents[model]["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .filter_map(|p| p.get("functionCall"))
        .collect();
    assert_eq!(calls.len(), 2, "{body}");
    let responses: Vec<&Value> = contents[model + 1..]
        .iter()
        .filter_map(|c| c["parts"].as_array())
        .flatten()
        .filter_map(|p| p.get("functionResponse"))
        .collect();
    assert_eq!(responses.len(), 2, "{body}");
    for ((call, resp), (city, result)) in calls.iter().zip(&responses).zip(PARALLEL) {
        assert_eq!(call["name"], "get_weather", "{body}");
        assert_eq!(call["args"], json!({ "location": city }), "{body}");
        // Gemini matches a response to its call by name: it must be there.
        assert_eq!(resp["name"], "get_weather", "{body}");
        assert!(resp["response"].to_string().contains(result), "{body}");
    }
}

async fn check_tool_results(sdk: Sdk, d: Dialect) {
    let (up, gw) = setup(d).await;
    up.push(text_reply(d, false));
    let r = run_sdk(sdk, sdk.base_url(&gw, false), "tool_results").await;
    assert_eq!(
        r["text"],
        expected_text(d, false).0,
        "{sdk:?} <- {d:?}: {r}"
    );
    let req = up.only_request();
    assert_upstream_request(&req, d, false);
    let body = req.json();
    match d {
        Dialect::OpenAi => assert_openai_tool_results(&body),
        Dialect::Anthropic => assert_anthropic_tool_results(&body),
        Dialect::Gemini => assert_gemini_tool_results(&body),
    }
}

macro_rules! tool_result_tests {
    ($($name:ident: $sdk:ident -> $d:ident;)*) => {$(
        #[tokio::test]
        async fn $name() {
            check_tool_results(Sdk::$sdk, Dialect::$d).await;
        }
    )*};
}

tool_result_tests! {
    openai_tool_results_to_openai: OpenAi -> OpenAi;
    openai_tool_results_to_anthropic: OpenAi -> Anthropic;
    openai_tool_results_to_gemini: OpenAi -> Gemini;
    anthropic_tool_results_to_openai: Anthropic -> OpenAi;
    anthropic_tool_results_to_anthropic: Anthropic -> Anthropic;
    anthropic_tool_results_to_gemini: Anthropic -> Gemini;
    genai_tool_results_to_openai: Gemini -> OpenAi;
    genai_tool_results_to_anthropic: Gemini -> Anthropic;
    genai_tool_results_to_gemini: Gemini -> Gemini;
}

// ---------------------------------------------------------------------------------------------
// Errors: an upstream 4xx surfaces as the SDK's own exception class with the right status.
// ---------------------------------------------------------------------------------------------

/// The recorded error answer of a dialect and a phrase of its message.
fn error_reply(d: Dialect, status: u16) -> (Behavior, &'static str) {
    match (d, status) {
        (Dialect::OpenAi, 429) => (Behavior::json_fixture(429, ERR_429), "Rate limit reached"),
        (Dialect::OpenAi, 400) => (
            Behavior::json_fixture(400, ERR_400_INVALID_PARAM),
            "Web search options not supported",
        ),
        (Dialect::Anthropic, 400) => (
            Behavior::json_fixture(400, ANTHROPIC_400),
            "does not support effort level",
        ),
        (Dialect::Gemini, 429) => (
            Behavior::json_fixture(429, GEMINI_429),
            "You exceeded your current quota",
        ),
        other => panic!("no recorded error for {other:?}"),
    }
}

async fn check_error(sdk: Sdk, d: Dialect, status: u16, stream: bool, class: &str) {
    let (up, gw) = setup(d).await;
    let (reply, phrase) = error_reply(d, status);
    up.push(reply);
    let scenario = if stream { "error_stream" } else { "error" };
    let r = run_sdk(sdk, sdk.base_url(&gw, stream), scenario).await;
    assert_eq!(r["status"], status, "{sdk:?} <- {d:?} {status}: {r}");
    assert_eq!(r["error_class"], class, "{sdk:?} <- {d:?} {status}: {r}");
    let module = r["error_module"].as_str().unwrap_or_default();
    let root = match sdk {
        Sdk::OpenAi => "openai",
        Sdk::Anthropic => "anthropic",
        Sdk::Gemini => "google.genai",
    };
    assert!(module.starts_with(root), "{class} from {module}: {r}");
    assert!(
        r["message"].as_str().is_some_and(|m| m.contains(phrase)),
        "the upstream's message should reach the client: {r}"
    );
    // Exactly one attempt: the SDKs run with retries off, and the gateway must not retry a 4xx.
    assert_eq!(up.requests().len(), 1, "upstream attempts");
}

macro_rules! error_tests {
    ($($name:ident: $sdk:ident <- $d:ident, $status:expr, $stream:expr, $class:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            check_error(Sdk::$sdk, Dialect::$d, $status, $stream, $class).await;
        }
    )*};
}

error_tests! {
    openai_bad_request_from_anthropic: OpenAi <- Anthropic, 400, false, "BadRequestError";
    openai_stream_bad_request_from_anthropic: OpenAi <- Anthropic, 400, true, "BadRequestError";
    openai_rate_limit_from_gemini: OpenAi <- Gemini, 429, false, "RateLimitError";
    openai_rate_limit_from_openai: OpenAi <- OpenAi, 429, false, "RateLimitError";
    anthropic_rate_limit_from_openai: Anthropic <- OpenAi, 429, false, "RateLimitError";
    anthropic_stream_rate_limit_from_gemini: Anthropic <- Gemini, 429, true, "RateLimitError";
    anthropic_bad_request_from_openai: Anthropic <- OpenAi, 400, false, "BadRequestError";
    anthropic_bad_request_from_anthropic: Anthropic <- Anthropic, 400, false, "BadRequestError";
    genai_rate_limit_from_openai: Gemini <- OpenAi, 429, false, "ClientError";
    genai_stream_bad_request_from_anthropic: Gemini <- Anthropic, 400, true, "ClientError";
    genai_rate_limit_from_gemini: Gemini <- Gemini, 429, false, "ClientError";
}
