//! Gemini codec tests. Input → output cases are golden files under
//! `src/translate/testdata/gemini/` (see `translate::golden`); what stays here are properties:
//! ids that must agree across calls, chunking, round trips and the request round-trip property.
//! Regressions for protocols.md §9 pitfalls 1, 2, 5, 6, 8, 11, 12 and 13 are named in the case
//! files and below.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::sse::{data_payload, is_comment_only, SseSplitter};
use crate::translate::golden::{self, ir_json, Input};
use crate::translate::ir::{
    ChatRequest, EncodeOptions, ErrorInfo, ErrorKind, Message, Part, RawEvent, Role, StreamDecode,
    StreamEncode, StreamEvent, TextBlock, Tool, ToolChoice,
};

const STREAM_TEXT: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/gemini-stream-text.sse"
));
const STREAM_CALL: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/gemini-stream-function-call.sse"
));
const NONSTREAM_CALL: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/gemini-generatecontent-function-call.json"
));

// ---------------------------------------------------------------------------------------------
// helpers

fn text(s: &str) -> Part {
    Part::Text(TextBlock {
        text: s.to_owned(),
        cache_control: None,
    })
}

fn msg(role: Role, content: Vec<Part>) -> Message {
    Message { role, content }
}

/// SSE bytes → data payloads, split by the gateway's own splitter in `step`-byte chunks.
fn payloads(bytes: &[u8], step: usize) -> Vec<Vec<u8>> {
    let mut splitter = SseSplitter::new();
    let mut events = Vec::new();
    for chunk in bytes.chunks(step.max(1)) {
        splitter.push(Bytes::copy_from_slice(chunk), |e| events.push(e));
    }
    events.extend(splitter.finish());
    events
        .iter()
        .filter(|e| !is_comment_only(e))
        .filter_map(|e| data_payload(e).map(|d| d.into_owned()))
        .collect()
}

fn decode_payloads<P: AsRef<[u8]>>(payloads: &[P]) -> Vec<StreamEvent> {
    let mut dec = StreamDecoder::new();
    let mut out = Vec::new();
    for data in payloads {
        dec.event(
            RawEvent {
                name: None,
                data: data.as_ref(),
                exception: false,
            },
            &mut out,
        );
    }
    dec.end(&mut out);
    out
}

fn decode_stream(bytes: &[u8]) -> Vec<StreamEvent> {
    decode_payloads(&payloads(bytes, bytes.len()))
}

fn encode_stream(events: &[StreamEvent], model: &str) -> Vec<u8> {
    let mut enc = StreamEncoder::new(&EncodeOptions {
        model: model.to_owned(),
        ..EncodeOptions::default()
    });
    let mut out = Vec::new();
    for ev in events {
        enc.event(ev, &mut out);
    }
    enc.end(&mut out);
    out
}

fn all_text(events: &[StreamEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

fn tool_call_ids(events: &[StreamEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallStart { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// golden files: testdata/gemini/<kind>/

/// Gemini request (`{url, body}` as recorded: model and stream come from the URL; a table's
/// lines are bodies for model `m`, not streamed) → IR request.
#[test]
fn golden_request_decode() {
    let decode = |body: &[u8], model: &str, stream: bool| {
        golden::result(decode_request(body, model, stream), |r| {
            ir_json::ChatRequest::from(&r)
        })
    };
    golden::check(
        "gemini/request_decode",
        &[
            "gemini-stream-text.request.json",
            "gemini-stream-function-call.request.json",
        ],
        |input: &Input| {
            if input.ext == "jsonl" {
                return golden::table(input, |line| decode(line, "m", false));
            }
            let v = input.json();
            let url = v["url"].as_str().expect("url");
            let tail = url.rsplit("/models/").next().unwrap();
            let (model, method) = tail.split_once(':').unwrap();
            let stream = method.starts_with("streamGenerateContent");
            golden::pretty(&decode(&golden::body_bytes(&v["body"]), model, stream))
        },
    );
}

/// IR request → Gemini body (a table: one IR request per line → one body per line).
#[test]
fn golden_request_encode() {
    let encode = |req: Value| golden::encoded(encode_request(&golden::ir_request(req)));
    golden::check("gemini/request_encode", &[], |input: &Input| {
        golden::json_cases(input, encode)
    });
}

/// Gemini response body → IR response (a table: one body per line).
#[test]
fn golden_response_decode() {
    let decode = |body: &[u8]| golden::decoded_response(decode_response(body));
    golden::check(
        "gemini/response_decode",
        &["gemini-generatecontent-function-call.json"],
        |input: &Input| golden::body_cases(input, decode),
    );
}

/// `{model, response}`: IR response → the Gemini body a client reads.
#[test]
fn golden_response_encode() {
    golden::check("gemini/response_encode", &[], |input: &Input| {
        let v = input.json();
        let resp: ir_json::ChatResponse = serde_json::from_value(v["response"].clone()).unwrap();
        let opts = EncodeOptions {
            model: v["model"].as_str().unwrap().to_owned(),
            ..EncodeOptions::default()
        };
        golden::body(&encode_response(&resp.into(), &opts))
    });
}

/// SSE (recorded) or one data payload per line (`.jsonl`, sent as is) → IR events, one a line.
#[test]
fn golden_stream_decode() {
    golden::check(
        "gemini/stream_decode",
        &["gemini-stream-text.sse", "gemini-stream-function-call.sse"],
        |input: &Input| match input.ext.as_str() {
            "sse" => golden::events(&decode_stream(&input.bytes)),
            _ => golden::events(&decode_payloads(&input.lines().collect::<Vec<_>>())),
        },
    );
}

/// `{model, events}`: each IR event (`> ...`) followed by the SSE events it produced at once,
/// so the snapshot also shows what the encoder holds back and when it lets go.
#[test]
fn golden_stream_encode() {
    golden::check("gemini/stream_encode", &[], |input: &Input| {
        let v = input.json();
        let mut enc = StreamEncoder::new(&EncodeOptions {
            model: v["model"].as_str().unwrap().to_owned(),
            ..EncodeOptions::default()
        });
        let mut out = String::new();
        for e in v["events"].as_array().unwrap() {
            let ev: ir_json::StreamEvent = serde_json::from_value(e.clone()).unwrap();
            let mut bytes = Vec::new();
            enc.event(&ev.into(), &mut bytes);
            out += &format!("> {}\n{}", golden::line(e), golden::sse(&bytes));
        }
        let mut bytes = Vec::new();
        enc.end(&mut bytes);
        out + "> end\n" + &golden::sse(&bytes)
    });
}

/// `{status, body}` (or `{status, fixture}`) → IR error (a table: one per line).
#[test]
fn golden_error_decode() {
    let decode = |v: Value| {
        let body = match v.get("fixture") {
            Some(name) => golden::fixture(name.as_str().unwrap()),
            None => golden::body_bytes(&v["body"]),
        };
        let status = v["status"].as_u64().unwrap() as u16;
        serde_json::to_value(ir_json::ErrorInfo::from(&decode_error(status, &body))).unwrap()
    };
    golden::check("gemini/error_decode", &[], |input: &Input| {
        golden::json_cases(input, decode)
    });
}

/// IR error → Gemini error body.
#[test]
fn golden_error_encode() {
    golden::check("gemini/error_encode", &[], |input: &Input| {
        let err: ir_json::ErrorInfo = input.parse();
        golden::body(&encode_error(&err.into()))
    });
}

// ---------------------------------------------------------------------------------------------
// properties

/// Pitfall 12: synthesised ids are the same for the same request, and differ between calls
/// (the golden file `pitfall12_results_resolve_by_name` shows which result answers which).
#[test]
fn pitfall12_synthesised_ids_are_deterministic_and_distinct() {
    let body = serde_json::to_vec(&json!({"contents": [
        {"role": "model", "parts": [
            {"functionCall": {"name": "a", "args": {}}},
            {"functionCall": {"name": "a", "args": {}}},
        ]},
        {"role": "model", "parts": [{"functionCall": {"name": "a", "args": {}}}]},
    ]}))
    .unwrap();
    let first = decode_request(&body, "m", false).unwrap();
    assert_eq!(first, decode_request(&body, "m", false).unwrap());
    let ids: Vec<&str> = first
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|p| match p {
            Part::ToolCall { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(
        ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2],
        "{ids:?}"
    );
}

/// Pitfall 1: the stream and the non-stream decoder synthesise the same id for the same call,
/// and a stream's calls get distinct ids.
#[test]
fn pitfall1_stream_and_nonstream_ids_agree() {
    let stream = [
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Checking."}]}}],
            "responseId": "r1", "modelVersion": "g"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "w", "args": {"c": "A"}}},
            {"functionCall": {"name": "w", "args": {"c": "B"}}}
        ]}, "finishReason": "STOP"}], "responseId": "r1"}),
    ];
    let payloads: Vec<Vec<u8>> = stream
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect();
    let ids = tool_call_ids(&decode_payloads(&payloads));
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    let whole = json!({"candidates": [{"content": {"parts": [
        {"text": "Checking."},
        {"functionCall": {"name": "w", "args": {"c": "A"}}},
        {"functionCall": {"name": "w", "args": {"c": "B"}}}
    ]}, "finishReason": "STOP"}], "responseId": "r1"});
    let resp = decode_response(&serde_json::to_vec(&whole).unwrap()).unwrap();
    let nonstream_ids: Vec<String> = resp
        .content
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(nonstream_ids, ids);
}

#[test]
fn response_round_trip_keeps_the_meaning() {
    let original = decode_response(NONSTREAM_CALL).unwrap();
    let opts = EncodeOptions {
        model: original.model.clone(),
        ..EncodeOptions::default()
    };
    let again = decode_response(&encode_response(&original, &opts)).unwrap();
    assert_eq!(again, original);
}

/// Pitfall 13: CRLF-delimited events decode the same however the bytes are chunked.
#[test]
fn pitfall13_crlf_stream_decodes_the_same_at_every_chunk_size() {
    for fixture in [STREAM_TEXT, STREAM_CALL] {
        let whole = decode_stream(fixture);
        for step in [1, 2, 3, 7, 64, 500] {
            assert_eq!(
                decode_payloads(&payloads(fixture, step)),
                whole,
                "step {step}"
            );
        }
    }
}

/// Pitfall 5: a failure after the HTTP 200 and a stream cut before its finish both surface as
/// one Error, and nothing follows it (the recorded stream, cut or with an error put in).
#[test]
fn pitfall5_stream_errors_and_early_ends_become_one_error() {
    let mut cut = payloads(STREAM_TEXT, STREAM_TEXT.len());
    cut.pop();
    let out = decode_payloads(&cut);
    assert!(matches!(out.first(), Some(StreamEvent::Start { .. })));
    assert!(matches!(out.last(), Some(StreamEvent::Error(e)) if e.status == 502));
    assert!(!out.iter().any(|e| matches!(e, StreamEvent::Finish { .. })));

    let mut with_error = payloads(STREAM_TEXT, STREAM_TEXT.len());
    with_error.insert(
        1,
        br#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#
            .to_vec(),
    );
    let out = decode_payloads(&with_error);
    assert_eq!(out.len(), 3, "start, first text, error: {out:?}");
    assert_eq!(
        out[2],
        StreamEvent::Error(ErrorInfo {
            status: 503,
            kind: ErrorKind::Overloaded,
            message: "The model is overloaded.".into(),
            code: Some("UNAVAILABLE".into()),
            param: None,
        })
    );
}

/// Fixture stream → IR → Gemini SSE → IR: the same meaning (ids are re-synthesised from the
/// same responseId, so they match too).
#[test]
fn stream_round_trip_keeps_the_meaning() {
    for fixture in [STREAM_TEXT, STREAM_CALL] {
        let first = decode_stream(fixture);
        let StreamEvent::Start { model, .. } = &first[0] else {
            panic!()
        };
        let encoded = encode_stream(&first, model);
        let again = decode_stream(&encoded);
        assert_eq!(all_text(&again), all_text(&first));
        let calls = |evs: &[StreamEvent]| -> Vec<StreamEvent> {
            evs.iter()
                .filter(|e| {
                    matches!(
                        e,
                        StreamEvent::ToolCallStart { .. } | StreamEvent::ToolArgsDelta { .. }
                    )
                })
                .cloned()
                .collect()
        };
        assert_eq!(calls(&again), calls(&first));
        assert_eq!(again.first(), first.first(), "start: id and model");
        // Finish: reason and final usage survive.
        assert_eq!(again.last(), first.last());
    }
}

/// Every error kind survives encode → decode.
#[test]
fn error_kinds_survive_a_round_trip() {
    for kind in [
        ErrorKind::InvalidRequest,
        ErrorKind::Authentication,
        ErrorKind::Permission,
        ErrorKind::NotFound,
        ErrorKind::RateLimit,
        ErrorKind::Overloaded,
        ErrorKind::Timeout,
        ErrorKind::Server,
    ] {
        let err = ErrorInfo {
            status: kind.status(),
            kind,
            message: "x".into(),
            code: None,
            param: None,
        };
        assert_eq!(decode_error(err.status, &encode_error(&err)).kind, kind);
    }
}

fn tool(name: &str) -> Tool {
    Tool {
        name: name.into(),
        description: Some(format!("{name} tool")),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        strict: Some(true),
    }
}

// ---------------------------------------------------------------------------------------------
// property: request decode(encode(x)) keeps the meaning

/// What a request means, independent of ids (compared by which call a result answers) and of
/// how same-role turns are split.
#[derive(Debug, PartialEq)]
enum Meaning {
    Text(String),
    Call {
        ordinal: usize,
        name: String,
        args: Value,
    },
    Result {
        call: Option<usize>,
        name: String,
        text: String,
        is_error: bool,
    },
}

fn meaning(req: &ChatRequest) -> Vec<(Role, Vec<Meaning>)> {
    let mut ordinals = std::collections::HashMap::new();
    let mut names = std::collections::HashMap::new();
    let mut turns: Vec<(Role, Vec<Meaning>)> = Vec::new();
    for m in &req.messages {
        let mut items = Vec::new();
        for p in &m.content {
            match p {
                Part::Text(b) => items.push(Meaning::Text(b.text.clone())),
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                    ..
                } => {
                    let ordinal = ordinals.len();
                    ordinals.insert(id.clone(), ordinal);
                    names.insert(id.clone(), name.clone());
                    items.push(Meaning::Call {
                        ordinal,
                        name: name.clone(),
                        args: serde_json::from_str(arguments).unwrap(),
                    });
                }
                Part::ToolResult {
                    id,
                    name,
                    content,
                    is_error,
                } => items.push(Meaning::Result {
                    call: ordinals.get(id).copied(),
                    name: name.clone().or_else(|| names.get(id).cloned()).unwrap(),
                    text: content
                        .iter()
                        .filter_map(|p| match p {
                            Part::Text(b) => Some(b.text.clone()),
                            _ => None,
                        })
                        .collect(),
                    is_error: *is_error,
                }),
                other => panic!("not generated: {other:?}"),
            }
        }
        if items.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((role, prev)) if *role == m.role => prev.extend(items),
            _ => turns.push((m.role, items)),
        }
    }
    turns
}

#[derive(Debug, Clone)]
enum Step {
    UserText(String),
    AssistantText(String),
    /// Calls (name, args) and whether each result names its function.
    Calls(Vec<(String, Value, bool, String, bool)>),
}

fn arb_step() -> impl Strategy<Value = Step> {
    let word = "[a-zA-Z0-9 ,.]{1,16}";
    let args = prop::collection::btree_map("[a-z]{1,4}", any::<i32>(), 0..3)
        .prop_map(|m| serde_json::to_value(m).unwrap());
    let call = (
        prop::sample::select(vec!["get_weather", "lookup", "sum"]),
        args,
        any::<bool>(),
        "[a-z ]{0,12}",
        any::<bool>(),
    )
        .prop_map(|(n, a, named, r, err)| (n.to_owned(), a, named, r, err));
    prop_oneof![
        word.prop_map(Step::UserText),
        word.prop_map(Step::AssistantText),
        prop::collection::vec(call, 1..4).prop_map(Step::Calls),
    ]
}

fn build_request(
    steps: Vec<Step>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
) -> ChatRequest {
    let mut messages = Vec::new();
    let mut next_id = 0;
    for step in steps {
        match step {
            Step::UserText(t) => messages.push(msg(Role::User, vec![text(&t)])),
            Step::AssistantText(t) => messages.push(msg(Role::Assistant, vec![text(&t)])),
            Step::Calls(calls) => {
                let mut call_parts = Vec::new();
                let mut result_parts = Vec::new();
                for (name, args, named, result, is_error) in calls {
                    let id = format!("id_{next_id}");
                    next_id += 1;
                    call_parts.push(Part::ToolCall {
                        id: id.clone(),
                        name: name.clone(),
                        arguments: args.to_string(),
                        signature: None,
                    });
                    result_parts.push(Part::ToolResult {
                        id,
                        name: named.then_some(name),
                        content: vec![text(&result)],
                        is_error,
                    });
                }
                messages.push(msg(Role::Assistant, call_parts));
                messages.push(msg(Role::User, result_parts));
            }
        }
    }
    ChatRequest {
        model: "gemini-x".into(),
        messages,
        tools: vec![tool("get_weather"), tool("lookup"), tool("sum")],
        tool_choice: Some(ToolChoice::Auto),
        temperature,
        max_tokens,
        stream: true,
        stream_usage: true,
        ..ChatRequest::default()
    }
}

proptest! {
    #[test]
    fn request_decode_of_encode_keeps_the_meaning(
        steps in prop::collection::vec(arb_step(), 1..8),
        temperature in prop::option::of(0.0f64..2.0),
        max_tokens in prop::option::of(1u32..100_000),
    ) {
        let original = build_request(steps, temperature, max_tokens);
        let body = encode_request(&original).unwrap();
        let decoded = decode_request(&body, "gemini-x", true).unwrap();
        prop_assert_eq!(meaning(&decoded), meaning(&original));
        prop_assert_eq!(&decoded.tools, &original.tools.iter().map(|t| Tool { strict: None, ..t.clone() }).collect::<Vec<_>>());
        prop_assert_eq!(&decoded.tool_choice, &original.tool_choice);
        // serde_json's default float parser may be off by one ulp.
        prop_assert_eq!(decoded.temperature.is_some(), original.temperature.is_some());
        if let (Some(a), Some(b)) = (decoded.temperature, original.temperature) {
            prop_assert!((a - b).abs() < 1e-12);
        }
        prop_assert_eq!(decoded.max_tokens, original.max_tokens);
        prop_assert_eq!(decoded.model, original.model);
    }
}
