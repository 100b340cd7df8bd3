//! JSON decoding on the translated path: serde_json (the gateway's parser) against simd-json, on
//! the gateway's own types and through its own entry points. Run:
//! `cargo bench --bench json_decode -- --warm-up-time 1 --measurement-time 3`.
//!
//! Every parse that translation does per request or per stream event goes through
//! `translate::json` (src/translate/json.rs). This bench compiles the translate sources a second
//! time, as the module `translate` below, with a simd-json version of that one module; everything
//! else is the same code. So `serde_json/…` is `ferrogate::translate` as shipped and
//! `simd_json/…` is the same decoder with simd-json underneath, measured in the same run.
//!
//! simd-json's serde path parses in place, so it needs a mutable copy of the input; the gateway
//! holds immutable `Bytes`, and the copy is part of the measured cost. Its parser buffers and the
//! copy are reused per thread (its best case; allocating them per call is slower still, see the
//! `raw_parse` group).
//!
//! Groups:
//! - `stream/*`: a recorded upstream stream (tests/fixtures), every event fed through a fresh
//!   provider `StreamDecode`, as the translating stream does. Events are split beforehand.
//! - `response/*`: `decode_response` on recorded non-stream answers.
//! - `request/*`: `decode_request` on OpenAI and Anthropic agent conversations of ~4 KB, ~64 KB
//!   and ~512 KB (the recorded request fixtures' turns, repeated), and the pass-through path's
//!   `read_request_fields` on the same bodies.
//! - `raw_parse/*`: the parsers alone (DOM, simd-json's tape and borrowed value) on the same
//!   inputs: the floor under any simd-json-based decoder.

use std::hint::black_box;
use std::path::Path;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value};
use simd_json::prelude::*;

use ferrogate::dialect::openai::read_request_fields;
use ferrogate::translate::eventstream::EventStreamDecoder;

// ---------------------------------------------------------------------------------------------
// The translate sources again, with simd-json behind `translate::json` (translate.rs).
// `crate::usage` and `crate::sse` in those files resolve to the modules below.)

#[allow(dead_code, unused_imports, clippy::all)]
mod translate;

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../src/usage.rs"]
mod usage;

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../src/sse.rs"]
mod sse;

// ---------------------------------------------------------------------------------------------
// Inputs

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

fn fixture_json(name: &str) -> Value {
    match serde_json::from_slice(&fixture(name)) {
        Ok(v) => v,
        Err(e) => panic!("{name}: {e}"),
    }
}

/// One upstream event: its name (SSE `event:` or the event-stream's event type) and payload.
struct Event {
    name: Option<String>,
    data: Vec<u8>,
    exception: bool,
}

fn sse_events(name: &str) -> Vec<Event> {
    let mut splitter = ferrogate::sse::SseSplitter::new();
    let mut raw = Vec::new();
    splitter.push(Bytes::from(fixture(name)), |e| raw.push(e));
    raw.extend(splitter.finish());
    raw.iter()
        .filter(|e| !ferrogate::sse::is_comment_only(e))
        .filter_map(|e| {
            let data = ferrogate::sse::data_payload(e)?;
            Some(Event {
                name: ferrogate::sse::event_name(e).map(str::to_owned),
                data: data.into_owned(),
                exception: false,
            })
        })
        .collect()
}

/// `event: <type>\ndata: <line>` for a stripped Anthropic `.chunks.jsonl` (MANIFEST.md).
fn anthropic_jsonl_events(name: &str) -> Vec<Event> {
    let text = String::from_utf8(fixture(name)).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Event {
            name: serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_owned)),
            data: l.as_bytes().to_vec(),
            exception: false,
        })
        .collect()
}

fn eventstream_events(name: &str) -> Vec<Event> {
    let mut d = EventStreamDecoder::new();
    d.push(&fixture(name));
    let mut out = Vec::new();
    while let Ok(Some(m)) = d.next_message() {
        out.push(Event {
            name: if m.is_exception() {
                m.exception_type.clone()
            } else {
                m.event_type.clone()
            },
            exception: m.is_exception(),
            data: m.payload.to_vec(),
        });
    }
    out
}

/// An agent conversation in OpenAI's shape of at least `target` bytes: the recorded tool-loop
/// turn (user question, assistant tool call, tool result) followed by an answer, repeated.
fn openai_request(target: usize) -> Vec<u8> {
    let mut body = fixture_json("openai-chat-stream-text-usage.request.json")["body"].clone();
    let turn = body["messages"].as_array().cloned().unwrap_or_default();
    body["messages"] = json!([]);
    // The serialized length so far: messages are joined by commas inside `[]`.
    let mut size = serde_json::to_vec(&body).map_or(0, |b| b.len()) - 1;
    let mut messages = Vec::new();
    let mut i = 0;
    while size < target {
        let start = messages.len();
        for m in &turn {
            let mut m = m.clone();
            if let Some(calls) = m["tool_calls"].as_array_mut() {
                for c in calls {
                    c["id"] = json!(format!("call_{i}"));
                }
            }
            if m.get("tool_call_id").is_some() {
                m["tool_call_id"] = json!(format!("call_{i}"));
            }
            messages.push(m);
        }
        messages.push(json!({"role": "assistant", "content": "The capital of the United Kingdom is London. It has been the capital since the Roman era, when it was called Londinium, and it is the largest city in the country."}));
        i += 1;
        size += json_len(&messages[start..]);
    }
    body["messages"] = Value::Array(messages);
    serde_json::to_vec(&body).unwrap_or_default()
}

fn json_len(v: &[Value]) -> usize {
    v.iter()
        .map(|m| serde_json::to_vec(m).map_or(0, |b| b.len() + 1))
        .sum()
}

/// An agent conversation in Anthropic's shape of at least `target` bytes: the recorded user
/// question, the recorded answer with its four parallel tool calls, their tool results, repeated.
fn anthropic_request(target: usize) -> Vec<u8> {
    let mut body = fixture_json("anthropic-parallel-tool-use.turn1.request.json")["body"].clone();
    let question = body["messages"][0].clone();
    let answer = fixture_json("anthropic-parallel-tool-use.turn1.json")["content"].clone();
    body["messages"] = json!([]);
    // The serialized length so far: messages are joined by commas inside `[]`.
    let mut size = serde_json::to_vec(&body).map_or(0, |b| b.len()) - 1;
    let mut messages = Vec::new();
    let mut i = 0;
    while size < target {
        let start = messages.len();
        let mut blocks = answer.as_array().cloned().unwrap_or_default();
        let mut results = Vec::new();
        for (j, b) in blocks.iter_mut().enumerate() {
            if b["type"] == "tool_use" {
                let id = format!("toolu_{i}_{j}");
                b["id"] = json!(id);
                results.push(json!({"type": "tool_result", "tool_use_id": id, "content": [{"type": "text", "text": format!("{{\"name\": {}, \"age\": {}, \"relation\": \"family member\"}}", b["input"]["name"], 20 + j)}]}));
            }
        }
        messages.push(question.clone());
        messages.push(json!({"role": "assistant", "content": blocks}));
        messages.push(json!({"role": "user", "content": results}));
        messages.push(json!({"role": "assistant", "content": [{"type": "text", "text": "Daisy is the youngest of the family: she is 23, the others are 20, 21 and 22."}]}));
        i += 1;
        size += json_len(&messages[start..]);
    }
    body["messages"] = Value::Array(messages);
    serde_json::to_vec(&body).unwrap_or_default()
}

fn kib(n: usize) -> String {
    format!("{}KB", n.div_ceil(1024))
}

// ---------------------------------------------------------------------------------------------
// Benches

/// Feeds `$events` to the fresh decoder `$decoder` from the module `$m` (`ferrogate::translate`
/// or the simd-json `translate`), then ends it; returns the IR events.
macro_rules! decode_stream {
    ($($m:ident)::+, $decoder:expr, $events:expr) => {{
        let mut decoder = $decoder;
        let mut out = Vec::new();
        for e in $events {
            let raw = $($m)::+::ir::RawEvent {
                name: e.name.as_deref().map(str::as_bytes),
                data: &e.data,
                exception: e.exception,
            };
            $($m)::+::ir::StreamDecode::event(&mut decoder, raw, &mut out);
        }
        $($m)::+::ir::StreamDecode::end(&mut decoder, &mut out);
        out
    }};
}

// The measured functions are not inlined so that callgrind can count each one's instructions
// (docs/json-decoding.md).
#[inline(never)]
fn decode_serde(dialect: &str, events: &[Event]) -> Vec<ferrogate::translate::ir::StreamEvent> {
    use ferrogate::translate as t;
    match dialect {
        "openai" => decode_stream!(
            ferrogate::translate,
            t::openai::StreamDecoder::new(),
            events
        ),
        "anthropic" => {
            decode_stream!(
                ferrogate::translate,
                t::anthropic::StreamDecoder::new(),
                events
            )
        }
        "gemini" => decode_stream!(
            ferrogate::translate,
            t::gemini::StreamDecoder::new(),
            events
        ),
        _ => decode_stream!(
            ferrogate::translate,
            t::bedrock::StreamDecoder::new("m"),
            events
        ),
    }
}

#[inline(never)]
fn decode_simd(dialect: &str, events: &[Event]) -> Vec<translate::ir::StreamEvent> {
    use translate as t;
    match dialect {
        "openai" => decode_stream!(translate, t::openai::StreamDecoder::new(), events),
        "anthropic" => decode_stream!(translate, t::anthropic::StreamDecoder::new(), events),
        "gemini" => decode_stream!(translate, t::gemini::StreamDecoder::new(), events),
        _ => decode_stream!(translate, t::bedrock::StreamDecoder::new("m"), events),
    }
}

fn streams(c: &mut Criterion) {
    let cases: Vec<(&str, &str, Vec<Event>)> = vec![
        (
            "anthropic",
            "text_tool_use",
            sse_events("anthropic-stream-text-tool-use.sse"),
        ),
        (
            "anthropic",
            "text",
            anthropic_jsonl_events("anthropic-stream-text.chunks.jsonl"),
        ),
        (
            "openai",
            "text_usage",
            sse_events("openai-chat-stream-text-usage.sse"),
        ),
        (
            "openai",
            "tool_call_usage",
            sse_events("openai-chat-stream-tool-call-usage.sse"),
        ),
        ("gemini", "text", sse_events("gemini-stream-text.sse")),
        (
            "gemini",
            "function_call",
            sse_events("gemini-stream-function-call.sse"),
        ),
        (
            "bedrock",
            "converse_stream",
            eventstream_events("bedrock-converse-stream.eventstream.bin"),
        ),
    ];
    let mut g = c.benchmark_group("stream");
    for (dialect, name, events) in &cases {
        let bytes: usize = events.iter().map(|e| e.data.len()).sum();
        let id = format!("{dialect}_{name}_{}ev_{bytes}B", events.len());
        // Both parsers must give the same IR events (a parse failure would end the stream early).
        // Bedrock streams carry no id: the decoder makes a random one for `Start`, skipped here.
        let skip = usize::from(*dialect == "bedrock");
        assert_eq!(
            format!("{:?}", &decode_serde(dialect, events)[skip..]),
            format!("{:?}", &decode_simd(dialect, events)[skip..]),
            "{id}: serde_json and simd-json decode differently"
        );
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function(BenchmarkId::new("serde_json", &id), |b| {
            b.iter(|| decode_serde(dialect, black_box(events)))
        });
        g.bench_function(BenchmarkId::new("simd_json", &id), |b| {
            b.iter(|| decode_simd(dialect, black_box(events)))
        });
    }
    g.finish();
}

#[inline(never)]
fn response_serde(
    dialect: &str,
    b: &[u8],
) -> Result<ferrogate::translate::ir::ChatResponse, String> {
    use ferrogate::translate as t;
    match dialect {
        "openai" => t::openai::decode_response(b),
        "anthropic" => t::anthropic::decode_response(b),
        "gemini" => t::gemini::decode_response(b),
        _ => t::bedrock::decode_response(b),
    }
    .map_err(|e| e.to_string())
}

#[inline(never)]
fn response_simd(dialect: &str, b: &[u8]) -> Result<translate::ir::ChatResponse, String> {
    use translate as t;
    match dialect {
        "openai" => t::openai::decode_response(b),
        "anthropic" => t::anthropic::decode_response(b),
        "gemini" => t::gemini::decode_response(b),
        _ => t::bedrock::decode_response(b),
    }
    .map_err(|e| e.to_string())
}

#[inline(never)]
fn request_serde(dialect: &str, b: &[u8]) -> Result<ferrogate::translate::ir::ChatRequest, String> {
    use ferrogate::translate as t;
    match dialect {
        "openai" => t::openai::decode_request(b),
        _ => t::anthropic::decode_request(b),
    }
    .map_err(|e| e.to_string())
}

#[inline(never)]
fn request_simd(dialect: &str, b: &[u8]) -> Result<translate::ir::ChatRequest, String> {
    use translate as t;
    match dialect {
        "openai" => t::openai::decode_request(b),
        _ => t::anthropic::decode_request(b),
    }
    .map_err(|e| e.to_string())
}

#[inline(never)]
fn fields_serde(body: &[u8]) -> Option<bool> {
    read_request_fields(body).map(|f| f.stream).ok()
}

/// simd-json's tape of a copy of the body, and the three top-level look-ups.
#[inline(never)]
fn fields_simd_tape(
    copy: &mut Vec<u8>,
    buffers: &mut simd_json::Buffers,
    body: &[u8],
) -> Option<(Option<usize>, Option<bool>, bool)> {
    copy.clear();
    copy.extend_from_slice(body);
    let tape = simd_json::to_tape_with_buffers(copy, buffers).ok()?;
    let top = tape.as_value();
    let model = top.get("model").and_then(|m| m.as_str().map(str::len));
    let stream = top.get("stream").and_then(|s| s.as_bool());
    let opts = top.get("stream_options").is_some();
    Some((model, stream, opts))
}

fn responses(c: &mut Criterion) {
    let cases = [
        ("openai", "openai-chat-nonstream.json"),
        ("anthropic", "anthropic-messages-nonstream.json"),
        ("anthropic", "anthropic-parallel-tool-use.turn1.json"),
        ("gemini", "gemini-generatecontent-function-call.json"),
        ("bedrock", "bedrock-converse.json"),
    ];
    let mut g = c.benchmark_group("response");
    for (dialect, file) in cases {
        let body = fixture(file);
        let id = format!("{}_{}B", file.trim_end_matches(".json"), body.len());
        let serde = |b: &[u8]| response_serde(dialect, b);
        let simd = |b: &[u8]| response_simd(dialect, b);
        if let Err(e) = serde(&body) {
            panic!("{file}: {e}");
        }
        if let Err(e) = simd(&body) {
            panic!("{file} (simd-json): {e}");
        }
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(BenchmarkId::new("serde_json", &id), |b| {
            b.iter(|| serde(black_box(&body)).is_ok())
        });
        g.bench_function(BenchmarkId::new("simd_json", &id), |b| {
            b.iter(|| simd(black_box(&body)).is_ok())
        });
    }
    g.finish();
}

fn requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("request");
    for target in [4 << 10, 64 << 10, 512 << 10] {
        if target > 64 << 10 {
            g.sample_size(20);
        }
        for (dialect, body) in [
            ("openai", openai_request(target)),
            ("anthropic", anthropic_request(target)),
        ] {
            let serde = |b: &[u8]| request_serde(dialect, b);
            let simd = |b: &[u8]| request_simd(dialect, b);
            // The bench inputs must translate (and the same way) or the numbers mean nothing.
            match (serde(&body), simd(&body)) {
                (Ok(a), Ok(b)) => assert_eq!(
                    format!("{a:?}"),
                    format!("{b:?}"),
                    "{dialect}: the parsers disagree"
                ),
                (a, b) => panic!("{dialect} {target}: {:?} / {:?}", a.err(), b.err()),
            }
            let id = format!("{dialect}_{}", kib(body.len()));
            g.throughput(Throughput::Bytes(body.len() as u64));
            g.bench_function(BenchmarkId::new("decode_request/serde_json", &id), |b| {
                b.iter(|| serde(black_box(&body)).is_ok())
            });
            g.bench_function(BenchmarkId::new("decode_request/simd_json", &id), |b| {
                b.iter(|| simd(black_box(&body)).is_ok())
            });
            // The pass-through scan: serde_json borrows `model`/`stream`/`stream_options` as
            // raw spans (for byte-splice edits) and skips the rest. simd-json has no spans into
            // the original bytes; its tape plus three look-ups is what a simd-json scan would
            // at least cost.
            g.bench_function(
                BenchmarkId::new("read_request_fields/serde_json", &id),
                |b| b.iter(|| fields_serde(black_box(&body))),
            );
            let mut copy = Vec::new();
            let mut buffers = simd_json::Buffers::default();
            g.bench_function(
                BenchmarkId::new("read_request_fields/simd_json_tape", &id),
                |b| b.iter(|| fields_simd_tape(&mut copy, &mut buffers, black_box(&body))),
            );
        }
    }
    g.finish();
}

/// The parsers alone: serde_json's DOM against simd-json's tape, borrowed value and serde path
/// into the same `serde_json::Value`, with fresh and with reused simd-json buffers.
fn raw_parse(c: &mut Criterion) {
    let inputs = [
        (
            "anthropic_text_delta",
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello! I can help you with that."}}"#.to_vec(),
        ),
        ("openai_chat_nonstream", fixture("openai-chat-nonstream.json")),
        ("openai_request_64KB", openai_request(64 << 10)),
    ];
    let mut g = c.benchmark_group("raw_parse");
    for (name, body) in &inputs {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(BenchmarkId::new("serde_json_value", name), |b| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(body)).is_ok())
        });
        g.bench_function(BenchmarkId::new("serde_json_ignored_any", name), |b| {
            b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(body)).is_ok())
        });
        g.bench_function(BenchmarkId::new("simd_json_serde_value_fresh", name), |b| {
            b.iter(|| {
                let mut copy = black_box(body).clone();
                simd_json::serde::from_slice::<Value>(&mut copy).is_ok()
            })
        });
        let mut copy = Vec::new();
        let mut buffers = simd_json::Buffers::default();
        g.bench_function(
            BenchmarkId::new("simd_json_serde_value_reused", name),
            |b| {
                b.iter(|| {
                    copy.clear();
                    copy.extend_from_slice(black_box(body));
                    simd_json::serde::from_slice_with_buffers::<Value>(&mut copy, &mut buffers)
                        .is_ok()
                })
            },
        );
        g.bench_function(BenchmarkId::new("simd_json_borrowed_value", name), |b| {
            b.iter(|| {
                copy.clear();
                copy.extend_from_slice(black_box(body));
                simd_json::value::borrowed::to_value_with_buffers(&mut copy, &mut buffers).is_ok()
            })
        });
        g.bench_function(BenchmarkId::new("simd_json_tape", name), |b| {
            b.iter(|| {
                copy.clear();
                copy.extend_from_slice(black_box(body));
                simd_json::to_tape_with_buffers(&mut copy, &mut buffers)
                    .map(|t| t.0.len())
                    .ok()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, streams, responses, requests, raw_parse);
criterion_main!(benches);
