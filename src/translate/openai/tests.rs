//! Fixture helpers shared by the codec's test modules, and the cross-file tests: fixture
//! streams decoded, re-encoded for an OpenAI client, and read back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use serde_json::Value;

use super::{StreamDecoder, StreamEncoder};
use crate::sse::{data_payload, event_name, is_comment_only, SseSplitter};
use crate::translate::ir::{EncodeOptions, RawEvent, StreamDecode, StreamEncode, StreamEvent};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $name
        ))
    };
}
pub(super) use fixture;

pub(super) const TEXT_USAGE_SSE: &[u8] = fixture!("openai-chat-stream-text-usage.sse");
pub(super) const TOOL_CALL_SSE: &[u8] = fixture!("openai-chat-stream-tool-call-usage.sse");
pub(super) const FINISH_LENGTH_SSE: &[u8] = fixture!("openai-chat-stream-finish-length.sse");
pub(super) const REFUSAL_SSE: &[u8] = fixture!("openai-chat-stream-refusal.sse");
pub(super) const ANTHROPIC_COMPAT_SSE: &[u8] =
    fixture!("anthropic-via-openai-compat-stream-tool-call.sse");
pub(super) const AZURE_JSONL: &[u8] =
    fixture!("azure-openai-chat-stream-content-filter.chunks.jsonl");

/// One SSE event as the proxy hands it to a decoder: its name and joined data.
#[derive(Debug, Clone)]
pub(super) struct OwnedEvent {
    pub name: Option<String>,
    pub data: Vec<u8>,
}

impl OwnedEvent {
    pub fn raw(&self) -> RawEvent<'_> {
        RawEvent {
            name: self.name.as_deref().map(str::as_bytes),
            data: &self.data,
            exception: false,
        }
    }
}

/// Splits an SSE body into events, `piece` bytes at a time (to cross chunk boundaries), the
/// way the proxy does: comment-only events are skipped, the unterminated last one flushed.
pub(super) fn sse_events_in_pieces(body: &[u8], piece: usize) -> Vec<OwnedEvent> {
    let mut splitter = SseSplitter::new();
    let mut raw = Vec::new();
    for chunk in body.chunks(piece.max(1)) {
        splitter.push(Bytes::copy_from_slice(chunk), |ev| raw.push(ev));
    }
    raw.extend(splitter.finish());
    raw.iter()
        .filter(|ev| !is_comment_only(ev))
        .filter_map(|ev| {
            Some(OwnedEvent {
                name: event_name(ev).map(str::to_owned),
                data: data_payload(ev)?.into_owned(),
            })
        })
        .collect()
}

pub(super) fn sse_events(body: &[u8]) -> Vec<OwnedEvent> {
    sse_events_in_pieces(body, body.len())
}

/// `*.chunks.jsonl`: one `data:` payload per line, framing stripped by the fixture's author.
pub(super) fn jsonl_events(body: &[u8]) -> Vec<OwnedEvent> {
    body.split(|&b| b == b'\n')
        .filter(|line| !line.trim_ascii().is_empty())
        .map(|line| OwnedEvent {
            name: None,
            data: line.to_vec(),
        })
        .collect()
}

/// Runs a decoder over the events, then `end()`.
pub(super) fn decode_all(events: &[OwnedEvent]) -> Vec<StreamEvent> {
    let mut dec = StreamDecoder::new();
    let mut out = Vec::new();
    for ev in events {
        dec.event(ev.raw(), &mut out);
    }
    dec.end(&mut out);
    out
}

pub(super) fn encode_all(events: &[StreamEvent], opts: EncodeOptions) -> Vec<u8> {
    let mut enc = StreamEncoder::new(opts);
    let mut out = Vec::new();
    for ev in events {
        enc.event(ev, &mut out);
    }
    enc.end(&mut out);
    out
}

/// What an OpenAI client rebuilds from a chunk stream.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Rebuilt {
    pub content: String,
    pub refusal: String,
    pub reasoning: String,
    /// (index, id, name, concatenated arguments) in order of first appearance.
    pub tool_calls: Vec<(u64, String, String, String)>,
    pub finish_reason: Option<String>,
    pub usage: Option<Value>,
    pub saw_done: bool,
}

/// Reads OpenAI chunk events back the way the OpenAI SDK accumulates them.
pub(super) fn rebuild(events: &[OwnedEvent]) -> Rebuilt {
    let mut r = Rebuilt::default();
    for ev in events {
        if ev.data == b"[DONE]" {
            r.saw_done = true;
            continue;
        }
        let chunk: Value = serde_json::from_slice(&ev.data).unwrap();
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            r.usage = Some(u.clone());
        }
        for choice in chunk["choices"].as_array().unwrap() {
            let delta = &choice["delta"];
            r.content += delta["content"].as_str().unwrap_or("");
            r.refusal += delta["refusal"].as_str().unwrap_or("");
            r.reasoning += delta["reasoning_content"].as_str().unwrap_or("");
            for tc in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = tc["index"].as_u64().unwrap();
                let args = tc["function"]["arguments"].as_str().unwrap_or("");
                match r.tool_calls.iter_mut().find(|t| t.0 == index) {
                    Some(t) => t.3 += args,
                    None => r.tool_calls.push((
                        index,
                        tc["id"].as_str().unwrap().to_owned(),
                        tc["function"]["name"].as_str().unwrap().to_owned(),
                        args.to_owned(),
                    )),
                }
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                r.finish_reason = Some(f.to_owned());
            }
        }
    }
    r
}

fn opts(stream_usage: bool) -> EncodeOptions {
    EncodeOptions {
        model: "client-model".to_owned(),
        stream_usage,
        created: 1_700_000_000,
    }
}

/// Decode → encode → read back, against the fixture read directly.
fn roundtrip(events: &[OwnedEvent]) -> (Rebuilt, Rebuilt) {
    let decoded = decode_all(events);
    let encoded = encode_all(&decoded, opts(true));
    (rebuild(events), rebuild(&sse_events(&encoded)))
}

#[test]
fn text_stream_survives_decode_and_encode() {
    let (fixture, ours) = roundtrip(&sse_events(TEXT_USAGE_SSE));
    assert_eq!(ours.content, "The capital of the UK is London.");
    assert_eq!(ours.content, fixture.content);
    assert_eq!(ours.finish_reason.as_deref(), Some("stop"));
    let usage = ours.usage.unwrap();
    assert_eq!(usage["prompt_tokens"], 78);
    assert_eq!(usage["completion_tokens"], 9);
    assert_eq!(usage["total_tokens"], 87);
    assert!(ours.saw_done);
}

#[test]
fn tool_call_stream_survives_decode_and_encode() {
    let (fixture, ours) = roundtrip(&sse_events(TOOL_CALL_SSE));
    assert_eq!(
        ours.tool_calls,
        vec![(
            0,
            "call_ZR5UUuTt3pf61kjwAJIYdVMj".to_owned(),
            "get_capital".to_owned(),
            r#"{"country":"UK"}"#.to_owned()
        )]
    );
    assert_eq!(ours.tool_calls, fixture.tool_calls);
    assert_eq!(ours.content, "");
    assert_eq!(ours.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(ours.usage.unwrap()["prompt_tokens"], 53);
}

#[test]
fn refusal_and_length_streams_survive_decode_and_encode() {
    let (fixture, ours) = roundtrip(&sse_events(REFUSAL_SSE));
    assert_eq!(ours.refusal, "I'm sorry, I can't assist with that request.");
    assert_eq!(ours.refusal, fixture.refusal);
    assert_eq!(ours.content, "");

    let (fixture, ours) = roundtrip(&sse_events(FINISH_LENGTH_SSE));
    assert_eq!(ours.content, "{\"");
    assert_eq!(ours.content, fixture.content);
    assert_eq!(ours.finish_reason.as_deref(), Some("length"));
    assert_eq!(ours.usage.unwrap()["completion_tokens"], 1);
}

#[test]
fn azure_stream_survives_decode_and_encode() {
    let (fixture, ours) = roundtrip(&jsonl_events(AZURE_JSONL));
    assert_eq!(ours.content, "Capital of Denmark.");
    assert_eq!(ours.content, fixture.content);
    let usage = ours.usage.unwrap();
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 64);
    assert_eq!(usage["prompt_tokens"], 15);
    // The fixture has no [DONE]; the client still gets a properly closed stream.
    assert!(ours.saw_done);
}

#[test]
fn anthropic_compat_stream_is_reindexed_from_zero() {
    let (fixture, ours) = roundtrip(&sse_events(ANTHROPIC_COMPAT_SSE));
    assert_eq!(ours.content, "Reading it.");
    assert_eq!(fixture.tool_calls[0].0, 1, "the fixture starts at index 1");
    assert_eq!(
        ours.tool_calls,
        vec![(
            0,
            "toolu_sanitized".to_owned(),
            "read_file".to_owned(),
            r#"{"path": "a.txt"}"#.to_owned()
        )]
    );
    assert_eq!(ours.finish_reason.as_deref(), Some("tool_calls"));
}
