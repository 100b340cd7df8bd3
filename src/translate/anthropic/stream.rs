//! Anthropic streams (protocols.md §5.3, §8.4, §8.5): upstream SSE events → IR events, and IR
//! events → Anthropic SSE for an Anthropic client.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{error_info, OutErrorBody, WireError};
use super::response::{
    message_id, stop_reason_from_wire, stop_reason_to_wire, OutUsage, UsageCounters, WireBlock,
    WireUsage,
};
use crate::translate::ir::{
    EncodeOptions, ErrorInfo, ErrorKind, RawEvent, StopReason, StreamDecode, StreamEncode,
    StreamEvent,
};
use crate::usage::Usage;

// ---------------------------------------------------------------------------------------------
// Decode: upstream Anthropic events → IR

/// Every Anthropic stream event in one flat struct: the members used depend on `type`, and
/// unknown events or members must not fail the parse.
///
/// Strings are borrowed from the event where they have no escapes (the common case), so a text
/// delta costs one allocation (its IR `String`) instead of three. The members that come once per
/// stream or block are boxed: they keep the struct small, and it is moved on every event.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    message: Option<Box<WireStartMessage<'a>>>,
    index: Option<u32>,
    content_block: Option<Box<WireBlock>>,
    #[serde(borrow)]
    delta: Option<WireDelta<'a>>,
    usage: Option<Box<WireUsage>>,
    error: Option<Box<WireError>>,
}

/// A JSON string borrowed from the payload unless it has escapes. (A bare `Option<Cow<str>>`
/// member would always be copied: serde borrows only a `Cow` that is the member itself.)
#[derive(Debug, Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

impl Str<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }

    fn into_string(self) -> String {
        self.0.into_owned()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireStartMessage<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    model: Option<Str<'a>>,
    usage: Option<WireUsage>,
}

/// A `content_block_delta`'s or a `message_delta`'s `delta`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireDelta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    text: Option<Str<'a>>,
    #[serde(borrow)]
    thinking: Option<Str<'a>>,
    #[serde(borrow)]
    signature: Option<Str<'a>>,
    #[serde(borrow)]
    partial_json: Option<Str<'a>>,
    #[serde(borrow)]
    stop_reason: Option<Str<'a>>,
    #[serde(borrow)]
    stop_sequence: Option<Str<'a>>,
}

/// A non-empty string member as an owned `String` for the IR.
fn non_empty(s: Option<Str<'_>>) -> Option<String> {
    s.filter(|s| !s.as_str().is_empty()).map(Str::into_string)
}

/// Parses one event's payload. The payload is checked as UTF-8 once, whole, so that serde_json
/// (`from_str`) need not check every key and string of it again (`from_slice` does): a third of
/// the parse cost on a typical text delta. `scratch` is for a parser that works in place.
fn parse_event<'a>(data: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<WireEvent<'a>, String> {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    crate::translate::json::from_str(text, scratch).map_err(|e| e.to_string())
}

/// The event most of a stream is made of, a text delta, exactly as Anthropic writes it:
/// `{"type":"content_block_delta","index":N,"delta":{"type":"text_delta","text":"…"}}`. Read
/// without the general parser: matching the fixed parts and finding the text's end is a few
/// hundred instructions, against a few thousand for serde (callgrind, 20-chunk translated
/// stream, with `is_inert` below: 312k → 252k instructions per request). Any other shape
/// (other member order, spaces, extra members, bad JSON) returns `None` and takes the general
/// parser, which also reports errors.
fn plain_text_delta(data: &[u8]) -> Option<Cow<'_, str>> {
    const HEAD: &[u8] = br#"{"type":"content_block_delta","index":"#;
    const DELTA: &[u8] = br#","delta":{"type":"text_delta","text":""#;
    let rest = data.strip_prefix(HEAD)?;
    let rest = &rest[json_index_len(rest)?..];
    let rest = rest.strip_prefix(DELTA)?;
    let (text, used) = crate::translate::json_text::string_body(rest)?;
    (trim_json_ws_end(&rest[used..]) == b"}}").then_some(text)
}

/// A `ping` or a `content_block_stop`, exactly as Anthropic writes them: events that change
/// nothing here (a block is closed by the next block's start or by the message's end), told
/// apart without the general parser. Any other spelling is parsed as usual.
fn is_inert(data: &[u8]) -> bool {
    const STOP: &[u8] = br#"{"type":"content_block_stop","index":"#;
    if data == br#"{"type": "ping"}"# || data == br#"{"type":"ping"}"# {
        return true;
    }
    data.strip_prefix(STOP)
        .and_then(|rest| rest.strip_suffix(b"}"))
        .is_some_and(|digits| json_index_len(digits) == Some(digits.len()))
}

/// Length of the block index that `s` starts with, when it is one as JSON writes it: 1 to 9
/// digits, no leading zero (serde rejects `01`, so the fast paths must too).
fn json_index_len(s: &[u8]) -> Option<usize> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    ((1..=9).contains(&digits) && (digits == 1 || s[0] != b'0')).then_some(digits)
}

/// `s` without trailing JSON whitespace (space, tab, CR, LF; not the form feed and vertical
/// tab that `trim_ascii_end` also removes).
fn trim_json_ws_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t' | b'\r' | b'\n'] = s {
        s = rest;
    }
    s
}

/// What an upstream content block is, by its block index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    /// A tool_use block and its tool-call index (counting tool calls only; pitfall 1).
    Tool(u32),
    /// Server-tool and unknown blocks: their deltas are ignored.
    Other,
}

/// Anthropic upstream stream → IR events.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    /// `message_stop` or `error` seen (or the stream failed): nothing more is emitted.
    done: bool,
    tool_count: u32,
    blocks: HashMap<u32, Block>,
    usage: UsageCounters,
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Content before `message_start` (not sent by Anthropic, possible from compatible
    /// servers) still gets its `Start` first.
    fn ensure_started(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: String::new(),
                model: String::new(),
                usage: Usage::default(),
            });
        }
    }

    fn fail(&mut self, message: String, out: &mut Vec<StreamEvent>) {
        self.done = true;
        out.push(StreamEvent::Error(ErrorInfo {
            status: 502,
            kind: ErrorKind::Server,
            message,
            code: None,
            param: None,
        }));
    }

    fn block_start(&mut self, index: u32, block: WireBlock, out: &mut Vec<StreamEvent>) {
        let kind = match block.kind.as_str() {
            "text" => {
                if !block.text.is_empty() {
                    out.push(StreamEvent::TextDelta(block.text));
                }
                Block::Text
            }
            "thinking" => {
                if !block.thinking.is_empty() {
                    out.push(StreamEvent::ThinkingDelta(block.thinking));
                }
                if let Some(sig) = block.signature.filter(|s| !s.is_empty()) {
                    out.push(StreamEvent::ThinkingSignature(sig));
                }
                Block::Thinking
            }
            "redacted_thinking" => {
                out.push(StreamEvent::RedactedThinking(block.data));
                Block::Other
            }
            "tool_use" => {
                let tool = self.tool_count;
                self.tool_count += 1;
                out.push(StreamEvent::ToolCallStart {
                    index: tool,
                    id: block.id,
                    name: block.name,
                    signature: None,
                });
                // Anthropic starts with `input: {}` and streams the arguments; a compatible
                // server that puts them all in the start block must not lose them.
                if let Some(input) = block
                    .input
                    .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
                {
                    out.push(StreamEvent::ToolArgsDelta {
                        index: tool,
                        fragment: input.to_string(),
                    });
                }
                Block::Tool(tool)
            }
            _ => Block::Other,
        };
        self.blocks.insert(index, kind);
    }

    fn block_delta(
        &mut self,
        index: Option<u32>,
        delta: WireDelta<'_>,
        out: &mut Vec<StreamEvent>,
    ) {
        let block = index.and_then(|i| self.blocks.get(&i).copied());
        match delta.kind.as_ref().map(Str::as_str) {
            Some("text_delta") => {
                if let Some(text) = non_empty(delta.text) {
                    out.push(StreamEvent::TextDelta(text));
                }
            }
            Some("thinking_delta") => {
                if let Some(t) = non_empty(delta.thinking) {
                    out.push(StreamEvent::ThinkingDelta(t));
                }
            }
            Some("signature_delta") => {
                if let Some(s) = non_empty(delta.signature) {
                    out.push(StreamEvent::ThinkingSignature(s));
                }
            }
            Some("input_json_delta") => {
                // The first fragment is usually "" (nothing to forward).
                if let (Some(Block::Tool(tool)), Some(fragment)) =
                    (block, non_empty(delta.partial_json))
                {
                    out.push(StreamEvent::ToolArgsDelta {
                        index: tool,
                        fragment,
                    });
                }
            }
            // citations_delta and newer delta types carry nothing the IR keeps.
            _ => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        self.done = true;
        let mut reason = stop_reason_from_wire(self.stop_reason.as_deref());
        if self.tool_count > 0 && reason == StopReason::EndTurn {
            reason = StopReason::ToolUse;
        }
        out.push(StreamEvent::Finish {
            reason,
            stop_sequence: self.stop_sequence.take(),
            usage: self.usage.to_usage(),
        });
    }
}

impl StreamDecode for StreamDecoder {
    fn event(&mut self, raw: RawEvent<'_>, out: &mut Vec<StreamEvent>) {
        if self.done || raw.data.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        if is_inert(raw.data) {
            return;
        }
        if let Some(text) = plain_text_delta(raw.data) {
            self.ensure_started(out);
            if !text.is_empty() {
                out.push(StreamEvent::TextDelta(text.into_owned()));
            }
            return;
        }
        let mut scratch = Vec::new();
        let ev = match parse_event(raw.data, &mut scratch) {
            Ok(ev) => ev,
            Err(e) => {
                return self.fail(format!("invalid event in the Anthropic stream: {e}"), out);
            }
        };
        // The JSON `type` is authoritative; the SSE name stands in when it is missing.
        let kind = ev
            .kind
            .as_ref()
            .map(Str::as_str)
            .or_else(|| raw.name_str())
            .unwrap_or("");
        match kind {
            "message_start" => {
                if self.started {
                    return;
                }
                self.started = true;
                let msg = ev.message.unwrap_or_default();
                if let Some(u) = &msg.usage {
                    self.usage.update(u);
                }
                out.push(StreamEvent::Start {
                    id: msg.id.map(Str::into_string).unwrap_or_default(),
                    model: msg.model.map(Str::into_string).unwrap_or_default(),
                    usage: self.usage.to_usage(),
                });
            }
            "content_block_start" => {
                self.ensure_started(out);
                if let (Some(index), Some(block)) = (ev.index, ev.content_block) {
                    self.block_start(index, *block, out);
                }
            }
            "content_block_delta" => {
                self.ensure_started(out);
                if let Some(delta) = ev.delta {
                    self.block_delta(ev.index, delta, out);
                }
            }
            "message_delta" => {
                self.ensure_started(out);
                if let Some(d) = ev.delta {
                    if let Some(reason) = d.stop_reason {
                        self.stop_reason = Some(reason.into_string());
                    }
                    if let Some(seq) = d.stop_sequence {
                        self.stop_sequence = Some(seq.into_string());
                    }
                }
                if let Some(u) = &ev.usage {
                    self.usage.update(u);
                }
            }
            "message_stop" => {
                self.ensure_started(out);
                self.finish(out);
            }
            "error" => {
                self.done = true;
                out.push(StreamEvent::Error(error_info(ev.error.map(|e| *e), None)));
            }
            // ping, content_block_stop and event types newer than this code.
            _ => {}
        }
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.done {
            self.fail(
                "the Anthropic stream ended before message_stop".to_owned(),
                out,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encode: IR events → Anthropic SSE for an Anthropic client

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutEvent<'a> {
    MessageStart {
        message: OutStartMessage<'a>,
    },
    ContentBlockStart {
        index: u32,
        content_block: OutStartBlock<'a>,
    },
    ContentBlockDelta {
        index: u32,
        delta: OutDelta<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: OutMessageDelta<'a>,
        usage: OutUsage,
    },
    MessageStop,
}

impl OutEvent<'_> {
    fn name(&self) -> &'static str {
        match self {
            OutEvent::MessageStart { .. } => "message_start",
            OutEvent::ContentBlockStart { .. } => "content_block_start",
            OutEvent::ContentBlockDelta { .. } => "content_block_delta",
            OutEvent::ContentBlockStop { .. } => "content_block_stop",
            OutEvent::MessageDelta { .. } => "message_delta",
            OutEvent::MessageStop => "message_stop",
        }
    }
}

#[derive(Serialize)]
struct OutStartMessage<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: OutUsage,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutStartBlock<'a> {
    Text {
        text: &'static str,
    },
    Thinking {
        thinking: &'static str,
        signature: &'static str,
    },
    RedactedThinking {
        data: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Map<String, Value>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum OutDelta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

#[derive(Serialize)]
struct OutMessageDelta<'a> {
    stop_reason: &'static str,
    stop_sequence: Option<&'a str>,
}

/// Appends `event: <name>\ndata: <json>\n\n`.
fn write_sse<T: Serialize>(out: &mut Vec<u8>, name: &str, payload: &T) {
    let mark = out.len();
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Serialising these borrowed structs into a Vec cannot fail; if it ever did, the event is
    // left out whole rather than half-written.
    if serde_json::to_writer(&mut *out, payload).is_err() {
        out.truncate(mark);
        return;
    }
    out.extend_from_slice(b"\n\n");
}

fn write_event(out: &mut Vec<u8>, ev: &OutEvent<'_>) {
    write_sse(out, ev.name(), ev);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenKind {
    Text,
    Thinking,
    /// A tool_use block and the IR tool-call index it carries.
    Tool(u32),
}

/// IR events → Anthropic SSE for an Anthropic client (§8.5).
///
/// Anthropic content blocks are strictly sequential: one is open at a time, each started block
/// is stopped before the next starts, indices count up from 0 across all block kinds. Text and
/// argument deltas are written as they arrive. A tool call's block stays open until some other
/// block must start; an argument fragment for a tool call whose block was already closed (the
/// IR allows interleaved arguments, Anthropic does not) can be neither placed after the fact
/// nor dropped without handing the client a corrupt call, so the stream ends there with an
/// `error` event (`api_error`). No provider this gateway decodes interleaves arguments (OpenAI,
/// Anthropic, Gemini and Bedrock all finish one call before the next), so this is a guard, not
/// a path taken in practice. Fragments for a tool call that never started are dropped (no id or
/// name to give them).
#[derive(Debug)]
pub struct StreamEncoder {
    opts: EncodeOptions,
    started: bool,
    /// `message_stop` or `error` written: nothing more is.
    done: bool,
    next_block: u32,
    open: Option<(u32, OpenKind)>,
    /// IR tool-call index → its block index.
    tool_blocks: HashMap<u32, u32>,
    refused: bool,
    /// Usage from `Start`, for a `Finish` that reports no input (OpenAI-style ends do).
    start_usage: Usage,
}

impl StreamEncoder {
    pub fn new(opts: EncodeOptions) -> Self {
        StreamEncoder {
            opts,
            started: false,
            done: false,
            next_block: 0,
            open: None,
            tool_blocks: HashMap::new(),
            refused: false,
            start_usage: Usage::default(),
        }
    }

    fn message_start(&mut self, id: &str, usage: &Usage, out: &mut Vec<u8>) {
        self.started = true;
        self.start_usage = *usage;
        write_event(
            out,
            &OutEvent::MessageStart {
                message: OutStartMessage {
                    id: message_id(id),
                    kind: "message",
                    role: "assistant",
                    model: &self.opts.model,
                    content: [],
                    stop_reason: None,
                    stop_sequence: None,
                    usage: OutUsage::from(usage),
                },
            },
        );
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.message_start("", &Usage::default(), out);
        }
    }

    fn close_open(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            write_event(out, &OutEvent::ContentBlockStop { index });
        }
    }

    /// Starts a new block (closing the open one) and returns its index.
    fn open_block(
        &mut self,
        block: OutStartBlock<'_>,
        kind: Option<OpenKind>,
        out: &mut Vec<u8>,
    ) -> u32 {
        self.close_open(out);
        let index = self.next_block;
        self.next_block += 1;
        write_event(
            out,
            &OutEvent::ContentBlockStart {
                index,
                content_block: block,
            },
        );
        self.open = kind.map(|k| (index, k));
        index
    }

    /// The open block's index if it is of `kind`, else a fresh block of that kind.
    fn ensure_open(&mut self, kind: OpenKind, out: &mut Vec<u8>) -> u32 {
        match self.open {
            Some((index, k)) if k == kind => index,
            _ => {
                let block = match kind {
                    OpenKind::Thinking => OutStartBlock::Thinking {
                        thinking: "",
                        signature: "",
                    },
                    _ => OutStartBlock::Text { text: "" },
                };
                self.open_block(block, Some(kind), out)
            }
        }
    }

    fn delta(&mut self, kind: OpenKind, delta: OutDelta<'_>, out: &mut Vec<u8>) {
        let index = self.ensure_open(kind, out);
        write_event(out, &OutEvent::ContentBlockDelta { index, delta });
    }

    fn error(&mut self, err: &ErrorInfo, out: &mut Vec<u8>) {
        self.done = true;
        write_sse(out, "error", &OutErrorBody::new(err));
    }

    fn finish(
        &mut self,
        reason: StopReason,
        stop_sequence: Option<&str>,
        usage: &Usage,
        out: &mut Vec<u8>,
    ) {
        self.close_open(out);
        self.done = true;
        let mut usage = *usage;
        if usage.input == 0 {
            usage.input = self.start_usage.input;
            usage.cache_read = self.start_usage.cache_read;
            usage.cache_write = self.start_usage.cache_write;
        }
        write_event(
            out,
            &OutEvent::MessageDelta {
                delta: OutMessageDelta {
                    stop_reason: stop_reason_to_wire(
                        reason,
                        !self.tool_blocks.is_empty(),
                        self.refused,
                    ),
                    stop_sequence,
                },
                usage: OutUsage::from(&usage),
            },
        );
        write_event(out, &OutEvent::MessageStop);
    }
}

impl StreamEncode for StreamEncoder {
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match ev {
            StreamEvent::Start { id, usage, .. } => {
                if !self.started {
                    self.message_start(id, usage, out);
                }
            }
            StreamEvent::TextDelta(text) => {
                // Never open an empty text block.
                if !text.is_empty() {
                    self.ensure_started(out);
                    self.delta(OpenKind::Text, OutDelta::Text { text }, out);
                }
            }
            StreamEvent::RefusalDelta(text) => {
                self.refused = true;
                if !text.is_empty() {
                    self.ensure_started(out);
                    self.delta(OpenKind::Text, OutDelta::Text { text }, out);
                }
            }
            StreamEvent::ThinkingDelta(thinking) => {
                if !thinking.is_empty() {
                    self.ensure_started(out);
                    self.delta(OpenKind::Thinking, OutDelta::Thinking { thinking }, out);
                }
            }
            StreamEvent::ThinkingSignature(signature) => {
                if !signature.is_empty() {
                    self.ensure_started(out);
                    self.delta(OpenKind::Thinking, OutDelta::Signature { signature }, out);
                }
            }
            StreamEvent::RedactedThinking(data) => {
                self.ensure_started(out);
                let index = self.open_block(OutStartBlock::RedactedThinking { data }, None, out);
                write_event(out, &OutEvent::ContentBlockStop { index });
            }
            StreamEvent::ToolCallStart {
                index, id, name, ..
            } => {
                self.ensure_started(out);
                let block = self.open_block(
                    OutStartBlock::ToolUse {
                        id,
                        name,
                        input: Map::new(),
                    },
                    Some(OpenKind::Tool(*index)),
                    out,
                );
                self.tool_blocks.insert(*index, block);
            }
            StreamEvent::ToolArgsDelta { index, fragment } => {
                if fragment.is_empty() {
                    return;
                }
                match self.open {
                    Some((block, OpenKind::Tool(tool))) if tool == *index => write_event(
                        out,
                        &OutEvent::ContentBlockDelta {
                            index: block,
                            delta: OutDelta::InputJson {
                                partial_json: fragment,
                            },
                        },
                    ),
                    _ if self.tool_blocks.contains_key(index) => {
                        let err = ErrorInfo {
                            status: 502,
                            kind: ErrorKind::Server,
                            message: format!(
                                "arguments of tool call {index} arrived after its content block was closed; \
                                 interleaved tool calls cannot be streamed as Anthropic content blocks"
                            ),
                            code: None,
                            param: None,
                        };
                        self.error(&err, out);
                    }
                    _ => {}
                }
            }
            StreamEvent::Finish {
                reason,
                stop_sequence,
                usage,
            } => {
                self.ensure_started(out);
                self.finish(*reason, stop_sequence.as_deref(), usage, out);
            }
            StreamEvent::Error(err) => self.error(err, out),
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if !self.done {
            // Never a silent truncation: a stream that stopped without Finish says so.
            let err = ErrorInfo {
                status: 502,
                kind: ErrorKind::Server,
                message: "the upstream stream ended before the answer was complete".to_owned(),
                code: None,
                param: None,
            };
            self.error(&err, out);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::sse::{data_payload, event_name, is_comment_only, SseSplitter};
    use crate::translate::test_ir::{args, finish, tool_start};

    const TEXT_TOOL_SSE: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/anthropic-stream-text-tool-use.sse"
    ));
    const TEXT_CHUNKS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/anthropic-stream-text.chunks.jsonl"
    ));
    const OVERLOADED_SSE: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/anthropic-stream-error-overloaded.sse"
    ));

    /// Whole SSE events of a byte stream, the unterminated last one included.
    fn sse_events(bytes: &[u8]) -> Vec<Bytes> {
        let mut s = SseSplitter::new();
        let mut events = Vec::new();
        s.push(Bytes::copy_from_slice(bytes), |e| events.push(e));
        events.extend(s.finish());
        events
    }

    /// Feeds SSE bytes to a decoder; `end` closes the stream.
    fn decode_sse(dec: &mut StreamDecoder, bytes: &[u8], end: bool) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        for e in sse_events(bytes) {
            if is_comment_only(&e) {
                continue;
            }
            let data = data_payload(&e).unwrap_or_default();
            dec.event(
                RawEvent {
                    name: event_name(&e).map(str::as_bytes),
                    data: &data,
                    exception: false,
                },
                &mut out,
            );
        }
        if end {
            dec.end(&mut out);
        }
        out
    }

    fn decode_all(bytes: &[u8]) -> Vec<StreamEvent> {
        decode_sse(&mut StreamDecoder::new(), bytes, true)
    }

    /// The chunks fixture re-framed as `event: <type>\ndata: <line>\n\n`.
    fn reframed_text_stream() -> Vec<u8> {
        let mut out = Vec::new();
        for line in TEXT_CHUNKS.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap();
            out.extend_from_slice(
                format!("event: {}\ndata: {line}\n\n", v["type"].as_str().unwrap()).as_bytes(),
            );
        }
        out
    }

    fn encode_all(events: &[StreamEvent]) -> Vec<u8> {
        let mut enc = StreamEncoder::new(EncodeOptions {
            model: "client-model".into(),
            stream_usage: false,
            created: 0,
        });
        let mut out = Vec::new();
        for ev in events {
            enc.event(ev, &mut out);
        }
        enc.end(&mut out);
        out
    }

    /// Encoder output as (event name, JSON) pairs, checking the framing of each event.
    fn parse_out(bytes: &[u8]) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(bytes).unwrap();
        assert!(text.is_empty() || text.ends_with("\n\n"), "{text}");
        text.split_terminator("\n\n")
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                let name = name.strip_prefix("event: ").unwrap();
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                if name != "error" {
                    assert_eq!(data["type"], name, "the JSON type matches the SSE name");
                }
                (name.to_owned(), data)
            })
            .collect()
    }

    fn names(events: &[(String, Value)]) -> Vec<&str> {
        events.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Meaning of an IR stream: text, thinking, tool calls (id, name, joined args), finish.
    #[derive(Debug, PartialEq, Default)]
    struct Meaning {
        text: String,
        thinking: String,
        signature: String,
        tools: Vec<(u32, String, String, String)>,
        finish: Option<(StopReason, Option<String>, Usage)>,
        error: Option<ErrorKind>,
    }

    fn meaning(events: &[StreamEvent]) -> Meaning {
        let mut m = Meaning::default();
        for ev in events {
            match ev {
                StreamEvent::TextDelta(t) | StreamEvent::RefusalDelta(t) => m.text.push_str(t),
                StreamEvent::ThinkingDelta(t) => m.thinking.push_str(t),
                StreamEvent::ThinkingSignature(s) => m.signature.push_str(s),
                StreamEvent::ToolCallStart {
                    index, id, name, ..
                } => m
                    .tools
                    .push((*index, id.clone(), name.clone(), String::new())),
                StreamEvent::ToolArgsDelta { index, fragment } => {
                    // Arguments for a call that never started have nowhere to go.
                    if let Some(t) = m.tools.iter_mut().find(|t| t.0 == *index) {
                        t.3.push_str(fragment);
                    }
                }
                StreamEvent::Finish {
                    reason,
                    stop_sequence,
                    usage,
                } => m.finish = Some((*reason, stop_sequence.clone(), *usage)),
                StreamEvent::Error(e) => m.error = Some(e.kind),
                StreamEvent::Start { .. } | StreamEvent::RedactedThinking(_) => {}
            }
        }
        m
    }

    #[test]
    fn decodes_the_text_tool_use_fixture() {
        let events = decode_all(TEXT_TOOL_SSE);
        assert_eq!(
            events[0],
            StreamEvent::Start {
                id: "msg_019Q1hrJbZG26Fb9BQhrkHEr".into(),
                model: "claude-sonnet-4-20250514".into(),
                usage: Usage {
                    input: 377,
                    output: 1,
                    ..Usage::default()
                }
            }
        );
        assert_eq!(
            &events[1..],
            &[
                StreamEvent::TextDelta("I".into()),
                StreamEvent::TextDelta("'ll check the current weather in Paris for you.".into()),
                // Pitfall 1: the first tool call is index 0 although its block is index 1.
                tool_start(0, "toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather"),
                // The leading "" fragment is skipped.
                args(0, "{\"locati"),
                args(0, "on\": \"P"),
                args(0, "ar"),
                args(0, "is\"}"),
                StreamEvent::Finish {
                    reason: StopReason::ToolUse,
                    stop_sequence: None,
                    // message_delta reports output only: input stays from message_start.
                    usage: Usage {
                        input: 377,
                        output: 65,
                        ..Usage::default()
                    }
                },
            ]
        );
    }

    #[test]
    fn decodes_the_reframed_text_chunks_fixture() {
        let events = decode_all(&reframed_text_stream());
        let m = meaning(&events);
        assert_eq!(
            m.text,
            "Hello! I'm doing well, thank you for asking. How are you doing today? Is there anything I can help you with?"
        );
        assert!(m.tools.is_empty());
        assert_eq!(
            m.finish,
            Some((
                StopReason::EndTurn,
                None,
                Usage {
                    input: 12,
                    output: 30,
                    ..Usage::default()
                }
            ))
        );
        assert!(
            matches!(&events[0], StreamEvent::Start { id, .. } if id == "msg_01QC4g3HwBThD4BaNtBckFDJ")
        );
    }

    #[test]
    fn a_mid_stream_overload_is_an_error_and_ends_the_stream() {
        // The fixture spliced after the first three events of another stream, as it arrives.
        let prefix: Vec<u8> = sse_events(TEXT_TOOL_SSE)[..4].concat();
        let mut bytes = prefix;
        bytes.extend_from_slice(OVERLOADED_SSE);
        bytes.extend_from_slice(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        let events = decode_all(&bytes);
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[1], StreamEvent::TextDelta("I".into()));
        let StreamEvent::Error(e) = &events[2] else {
            panic!("{events:?}")
        };
        assert_eq!(e.kind, ErrorKind::Overloaded);
        assert_eq!(e.status, 529);
        assert_eq!(e.message, "Overloaded");
        assert_eq!(e.code.as_deref(), Some("overloaded_error"));
    }

    #[test]
    fn a_stream_cut_before_message_stop_is_an_error() {
        let cut: Vec<u8> = sse_events(TEXT_TOOL_SSE)[..8].concat();
        let events = decode_all(&cut);
        assert!(!events
            .iter()
            .any(|e| matches!(e, StreamEvent::Finish { .. })));
        assert!(
            matches!(events.last(), Some(StreamEvent::Error(e)) if e.status == 502 && e.message.contains("message_stop"))
        );
        // Nothing at all is also an early end.
        assert!(matches!(
            decode_all(b"").as_slice(),
            [StreamEvent::Error(_)]
        ));
    }

    #[test]
    fn tolerates_padding_names_without_space_and_unknown_events() {
        let stream = concat!(
            "event:message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_p\",\"model\":\"m\",\"usage\":{\"input_tokens\":43,\"cache_creation_input_tokens\":5,\"cache_read_input_tokens\":100,\"output_tokens\":1}}    }\n\n",
            ": keep-alive\n\n",
            "event:brand_new_event\ndata: {\"type\":\"brand_new_event\",\"x\":[1]}\n\n",
            "event: ping\ndata: {\"type\": \"ping\"}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\",\"citations\":[]} }\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"citations_delta\",\"citation\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"ok\"}   }\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"stop_sequence\",\"stop_sequence\":\"###\"},\"usage\":{\"input_tokens\":61,\"cache_read_input_tokens\":100,\"output_tokens\":7,\"output_tokens_details\":{\"thinking_tokens\":2}}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"   }\n\n",
        );
        let events = decode_all(stream.as_bytes());
        assert_eq!(
            events,
            vec![
                StreamEvent::Start {
                    id: "msg_p".into(),
                    model: "m".into(),
                    usage: Usage {
                        input: 148,
                        output: 1,
                        cache_read: 100,
                        cache_write: 5,
                        reasoning: 0,
                        estimated: false
                    }
                },
                StreamEvent::TextDelta("ok".into()),
                StreamEvent::Finish {
                    reason: StopReason::StopSequence,
                    stop_sequence: Some("###".into()),
                    // Last values win: input 43 → 61; cache write kept from the start.
                    usage: Usage {
                        input: 166,
                        output: 7,
                        cache_read: 100,
                        cache_write: 5,
                        reasoning: 2,
                        estimated: false
                    }
                },
            ]
        );
    }

    #[test]
    fn decodes_thinking_redacted_and_counts_tools_not_blocks() {
        let stream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_t\",\"model\":\"m\",\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me think\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQB\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"redacted_thinking\",\"data\":\"EmwK\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_a\",\"name\":\"a\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_b\",\"name\":\"b\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"x\\\":1}\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":3}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":50}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let events = decode_all(stream.as_bytes());
        assert_eq!(events[1], StreamEvent::ThinkingDelta("Let me think".into()));
        assert_eq!(events[2], StreamEvent::ThinkingSignature("EqQB".into()));
        assert_eq!(events[3], StreamEvent::RedactedThinking("EmwK".into()));
        let m = meaning(&events);
        assert_eq!(
            m.tools,
            vec![
                (0, "toolu_a".into(), "a".into(), String::new()),
                (1, "toolu_b".into(), "b".into(), "{\"x\":1}".into()),
            ]
        );
        assert_eq!(m.finish.map(|f| f.0), Some(StopReason::ToolUse));
    }

    #[test]
    fn pitfall_2_cache_tokens_only_in_message_delta() {
        // Some Anthropic-compatible gateways report cache usage only at the end.
        let stream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_c\",\"model\":\"m\",\"usage\":{\"input_tokens\":7,\"output_tokens\":0}}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":4,\"cache_read_input_tokens\":900,\"cache_creation_input_tokens\":50}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let m = meaning(&decode_all(stream.as_bytes()));
        assert_eq!(
            m.finish,
            Some((
                StopReason::EndTurn,
                None,
                Usage {
                    input: 957,
                    output: 4,
                    cache_read: 900,
                    cache_write: 50,
                    reasoning: 0,
                    estimated: false
                }
            ))
        );
    }

    #[test]
    fn malformed_json_is_a_protocol_error() {
        let mut dec = StreamDecoder::new();
        let events = decode_sse(&mut dec, b"event: message_start\ndata: {not json\n\n", true);
        assert_eq!(events.len(), 1);
        assert!(matches!(&events[0], StreamEvent::Error(e) if e.status == 502));
    }

    #[test]
    fn invalid_utf8_is_a_protocol_error() {
        let mut dec = StreamDecoder::new();
        let events = decode_sse(
            &mut dec,
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\xff\"}}\n\n",
            true,
        );
        // Nothing before it: the failed event is the whole answer (no Start is forced).
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            matches!(&events[0], StreamEvent::Error(e) if e.status == 502 && e.message.contains("utf-8"))
        );
    }

    #[test]
    fn text_deltas_read_without_serde_mean_what_serde_reads() {
        let canonical = br#"{"type":"content_block_delta","index":12,"delta":{"type":"text_delta","text":"Hi \"there\"\n"}}"#;
        assert_eq!(
            plain_text_delta(canonical).as_deref(),
            Some("Hi \"there\"\n")
        );
        // Other shapes take the general parser: spacing, member order, extra members, other
        // delta types, trailing garbage, broken strings.
        let others: [&[u8]; 9] = [
            br#"{"type": "content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}"#,
            br#"{"index":0,"type":"content_block_delta","delta":{"type":"text_delta","text":"a"}}"#,
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","x":1}}"#,
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"a"}}"#,
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}x"#,
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a}}"#,
            br#"{"type":"content_block_delta","index":,"delta":{"type":"text_delta","text":"a"}}"#,
            br#"{"type":"content_block_delta","index":00,"delta":{"type":"text_delta","text":"a"}}"#,
            b"{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"}}\x0c",
        ];
        for data in others {
            assert_eq!(
                plain_text_delta(data),
                None,
                "{}",
                String::from_utf8_lossy(data)
            );
        }
        // Whichever path reads an event, the decoder gives the same IR.
        let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"m\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n";
        for data in [&canonical[..], others[0], others[1], others[2]] {
            let stream = format!(
                "{start}event: content_block_delta\ndata: {}\n\n",
                std::str::from_utf8(data).unwrap()
            );
            let mut dec = StreamDecoder::new();
            let events = decode_sse(&mut dec, stream.as_bytes(), false);
            let text = if data == canonical {
                "Hi \"there\"\n"
            } else {
                "a"
            };
            assert_eq!(
                events[1..],
                [StreamEvent::TextDelta(text.into())],
                "{stream}"
            );
        }
        // Pings and block stops change nothing, read either way.
        assert!(is_inert(br#"{"type": "ping"}"#));
        assert!(is_inert(br#"{"type":"content_block_stop","index":10}"#));
        for data in [
            &br#"{"type":"content_block_stop","index":}"#[..],
            br#"{"type":"content_block_stop","index":01}"#,
            br#"{"type":"content_block_stop","index":1,"x":2}"#,
            br#"{"type":"content_block_stop"}"#,
            br#"{"type":"pong"}"#,
        ] {
            assert!(!is_inert(data), "{}", String::from_utf8_lossy(data));
        }
        // A bad string is reported by the general parser as before.
        let stream = format!("{start}event: content_block_delta\ndata: {}\n\n", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\u{1}\"}}");
        let events = decode_sse(&mut StreamDecoder::new(), stream.as_bytes(), false);
        assert!(
            matches!(&events[1], StreamEvent::Error(e) if e.status == 502),
            "{events:?}"
        );
    }

    #[test]
    fn strings_are_borrowed_unless_escaped_and_escapes_decode() {
        let data = br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"plain"}}"#;
        let mut scratch = Vec::new();
        let ev = parse_event(data, &mut scratch).unwrap();
        assert!(matches!(
            ev.kind,
            Some(Str(Cow::Borrowed("content_block_delta")))
        ));
        let delta = ev.delta.unwrap();
        assert!(matches!(delta.text, Some(Str(Cow::Borrowed("plain")))));

        let stream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_e\",\"model\":\"m\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\\\"b\\\\c\\n\\u00e9\\ud83d\\ude00\"}}\n\n",
            // `null` members read as absent.
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":null}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":null}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let events = decode_all(stream.as_bytes());
        assert_eq!(events[1], StreamEvent::TextDelta("a\"b\\c\né😀".into()));
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(matches!(
            &events[2],
            StreamEvent::Finish { reason: StopReason::EndTurn, stop_sequence: None, usage } if usage.input == 1
        ));
    }

    fn start(input: u64, cache_read: u64) -> StreamEvent {
        StreamEvent::Start {
            id: "chatcmpl-1".into(),
            model: "gpt".into(),
            usage: Usage {
                input,
                cache_read,
                ..Usage::default()
            },
        }
    }

    #[test]
    fn encodes_the_exact_event_sequence() {
        let out = parse_out(&encode_all(&[
            start(100, 40),
            StreamEvent::TextDelta("Hel".into()),
            StreamEvent::TextDelta("".into()),
            StreamEvent::TextDelta("lo".into()),
            tool_start(0, "call_a", "a"),
            args(0, "{\"x\":"),
            args(0, "1}"),
            tool_start(1, "call_b", "b"),
            args(1, "{}"),
            // OpenAI says `stop` for this turn sometimes; tool calls make it tool_use.
            finish(
                StopReason::EndTurn,
                Usage {
                    input: 100,
                    output: 12,
                    cache_read: 40,
                    ..Usage::default()
                },
            ),
            StreamEvent::TextDelta("after the end".into()),
        ]));
        assert_eq!(
            names(&out),
            vec![
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(
            out[0].1,
            serde_json::json!({"type": "message_start", "message": {
                "id": "msg_chatcmpl-1", "type": "message", "role": "assistant", "model": "client-model",
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 60, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 40, "output_tokens": 0}
            }})
        );
        assert_eq!(
            out[1].1,
            serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        );
        assert_eq!(
            out[3].1["delta"],
            serde_json::json!({"type": "text_delta", "text": "lo"})
        );
        assert_eq!(
            out[5].1,
            serde_json::json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": "call_a", "name": "a", "input": {}}})
        );
        assert_eq!(
            out[7].1,
            serde_json::json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "1}"}})
        );
        assert_eq!(out[9].1["index"], 2);
        assert_eq!(out[10].1["index"], 2);
        assert_eq!(out[11].1["index"], 2);
        assert_eq!(
            out[12].1,
            serde_json::json!({"type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"input_tokens": 60, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 40, "output_tokens": 12}})
        );
    }

    #[test]
    fn encodes_thinking_signature_redacted_and_refusal() {
        let out = parse_out(&encode_all(&[
            start(0, 0),
            StreamEvent::ThinkingDelta("hmm".into()),
            StreamEvent::ThinkingSignature("sig".into()),
            StreamEvent::RedactedThinking("opaque".into()),
            StreamEvent::RefusalDelta("No.".into()),
            finish(StopReason::EndTurn, Usage::default()),
        ]));
        assert_eq!(
            out.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()[1..8],
            [
                serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
                serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
                serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}}),
                serde_json::json!({"type": "content_block_stop", "index": 0}),
                serde_json::json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "opaque"}}),
                serde_json::json!({"type": "content_block_stop", "index": 1}),
                serde_json::json!({"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}}),
            ]
        );
        assert_eq!(out[10].1["delta"]["stop_reason"], "refusal");
    }

    #[test]
    fn an_error_is_the_last_event() {
        let err = ErrorInfo {
            status: 529,
            kind: ErrorKind::Overloaded,
            message: "Overloaded".into(),
            code: None,
            param: None,
        };
        let out = parse_out(&encode_all(&[
            start(5, 0),
            StreamEvent::TextDelta("partial".into()),
            StreamEvent::Error(err),
            StreamEvent::TextDelta("more".into()),
            finish(StopReason::EndTurn, Usage::default()),
        ]));
        assert_eq!(
            names(&out),
            vec![
                "message_start",
                "content_block_start",
                "content_block_delta",
                "error"
            ]
        );
        assert_eq!(
            out[3].1,
            serde_json::json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        );
    }

    #[test]
    fn an_unfinished_stream_ends_with_an_error_event() {
        let out = parse_out(&encode_all(&[
            start(1, 0),
            StreamEvent::TextDelta("x".into()),
        ]));
        assert_eq!(names(&out).last(), Some(&"error"));
        assert_eq!(out.last().unwrap().1["error"]["type"], "api_error");
        // A stream with no event at all still tells the client it failed.
        assert_eq!(names(&parse_out(&encode_all(&[]))), vec!["error"]);
    }

    /// The encoder's output for a tool-use turn: a start, `events`, then a `tool_use` finish.
    fn encode_tool_turn(events: &[StreamEvent]) -> Vec<(String, Value)> {
        let mut all = vec![start(1, 0)];
        all.extend_from_slice(events);
        all.push(finish(StopReason::ToolUse, Usage::default()));
        parse_out(&encode_all(&all))
    }

    #[test]
    fn late_arguments_for_a_closed_tool_block_end_the_stream_with_an_error() {
        let out = encode_tool_turn(&[
            tool_start(0, "a", "a"),
            tool_start(1, "b", "b"),
            args(0, "{}"),
            // Unknown tool index: dropped, not an error.
            args(7, "{}"),
        ]);
        assert_eq!(
            names(&out),
            vec![
                "message_start",
                "content_block_start",
                "content_block_stop",
                "content_block_start",
                "error"
            ]
        );
        assert!(out[4].1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tool call 0"));
    }

    #[test]
    fn a_tool_only_stream_starts_at_block_zero() {
        // Bifrost PR #3441: with no text before it, the first tool call is block 0.
        let out = encode_tool_turn(&[tool_start(0, "call_1", "f"), args(0, ""), args(0, "{}")]);
        assert_eq!(
            names(&out),
            vec![
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(out[1].1["index"], 0);
        assert_eq!(out[2].1["delta"]["partial_json"], "{}");
        assert_eq!(out[4].1["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn content_before_start_still_opens_with_message_start() {
        let out = parse_out(&encode_all(&[
            StreamEvent::TextDelta("hi".into()),
            start(3, 0),
            finish(StopReason::MaxTokens, Usage::default()),
        ]));
        assert_eq!(
            names(&out)
                .iter()
                .filter(|n| **n == "message_start")
                .count(),
            1
        );
        assert_eq!(out[0].0, "message_start");
        assert_eq!(out.last().unwrap().0, "message_stop");
        assert_eq!(out[out.len() - 2].1["delta"]["stop_reason"], "max_tokens");
    }

    #[test]
    fn fixture_streams_round_trip_through_the_encoder() {
        for fixture in [TEXT_TOOL_SSE.to_vec(), reframed_text_stream()] {
            let first = decode_all(&fixture);
            let encoded = encode_all(&first);
            let second = decode_all(&encoded);
            assert_eq!(meaning(&second), meaning(&first));
            assert!(meaning(&first).finish.is_some());
            // Usage survives the net-of-cache conversion both ways.
            let (StreamEvent::Start { usage: a, .. }, StreamEvent::Start { usage: b, .. }) =
                (&first[0], &second[0])
            else {
                panic!()
            };
            assert_eq!(a.input, b.input);
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Text(String),
        Thinking(String),
        Signature,
        Redacted,
        Refusal(String),
        NewTool,
        /// Arguments for the tool call `sel % (calls so far + 1)`: usually the open one, but
        /// also earlier (closed) calls and one that never started.
        Args(u8, String),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            1 => "[a-z ]{0,4}".prop_map(Step::Text),
            1 => "[a-z]{0,3}".prop_map(Step::Thinking),
            1 => Just(Step::Signature),
            1 => Just(Step::Redacted),
            1 => "[a-z]{0,2}".prop_map(Step::Refusal),
            1 => Just(Step::NewTool),
            // Weighted so most fragments go to the newest call, as providers send them.
            3 => (any::<u8>(), "[{}\":a-z0-9]{0,4}").prop_map(|(s, f)| Step::Args(s, f)),
        ]
    }

    /// IR events for the steps, the number of tool calls, and whether some non-empty
    /// fragment targets a call whose block must already be closed (the documented error case).
    fn to_events(steps: &[Step]) -> (Vec<StreamEvent>, u32, bool) {
        let mut events = vec![start(10, 2)];
        let mut tools = 0u32;
        // Which call's block is open, as Anthropic's sequential blocks force it.
        let mut open_tool: Option<u32> = None;
        let mut late = false;
        for s in steps {
            let ev = match s {
                Step::Text(t) => StreamEvent::TextDelta(t.clone()),
                Step::Thinking(t) => StreamEvent::ThinkingDelta(t.clone()),
                Step::Signature => StreamEvent::ThinkingSignature("sig".into()),
                Step::Redacted => StreamEvent::RedactedThinking("data".into()),
                Step::Refusal(t) => StreamEvent::RefusalDelta(t.clone()),
                Step::NewTool => {
                    tools += 1;
                    StreamEvent::ToolCallStart {
                        index: tools - 1,
                        id: format!("call_{tools}"),
                        name: "f".into(),
                        signature: None,
                    }
                }
                Step::Args(sel, f) => StreamEvent::ToolArgsDelta {
                    index: u32::from(*sel) % (tools + 1),
                    fragment: f.clone(),
                },
            };
            match &ev {
                StreamEvent::ToolCallStart { index, .. } => open_tool = Some(*index),
                StreamEvent::ToolArgsDelta { index, fragment } => {
                    if !fragment.is_empty() && open_tool != Some(*index) && *index < tools && !late
                    {
                        late = true;
                    }
                }
                StreamEvent::TextDelta(t)
                | StreamEvent::ThinkingDelta(t)
                | StreamEvent::RefusalDelta(t) => {
                    if !t.is_empty() {
                        open_tool = None;
                    }
                }
                _ => open_tool = None,
            }
            events.push(ev);
        }
        events.push(finish(
            StopReason::EndTurn,
            Usage {
                input: 10,
                output: 3,
                cache_read: 2,
                ..Usage::default()
            },
        ));
        (events, tools, late)
    }

    proptest! {
        #[test]
        fn any_event_sequence_gives_a_well_formed_anthropic_stream(steps in prop::collection::vec(step(), 0..40)) {
            let (events, tools, late) = to_events(&steps);
            let out = parse_out(&encode_all(&events));
            prop_assert_eq!(out.iter().filter(|(n, _)| n == "message_start").count(), 1);
            prop_assert_eq!(&out[0].0, "message_start");
            // Exactly one terminal event, last: message_stop, or error for a late fragment.
            let terminal = if late { "error" } else { "message_stop" };
            prop_assert_eq!(&out.last().unwrap().0, terminal);
            prop_assert_eq!(out.iter().filter(|(n, _)| n == "message_stop" || n == "error").count(), 1);
            let mut open: Option<u64> = None;
            let mut next = 0u64;
            let mut tool_blocks = 0;
            for (name, v) in &out {
                match name.as_str() {
                    "content_block_start" => {
                        prop_assert!(open.is_none(), "a block started while another was open");
                        prop_assert_eq!(v["index"].as_u64(), Some(next), "indices are sequential");
                        if v["content_block"]["type"] == "tool_use" {
                            tool_blocks += 1;
                        }
                        open = Some(next);
                        next += 1;
                    }
                    "content_block_delta" => {
                        prop_assert_eq!(v["index"].as_u64(), open);
                        let d = &v["delta"];
                        let s = d["text"].as_str().or(d["thinking"].as_str()).or(d["partial_json"].as_str()).or(d["signature"].as_str());
                        prop_assert!(s.is_some_and(|s| !s.is_empty()), "no empty delta: {}", v);
                    }
                    "content_block_stop" => {
                        prop_assert_eq!(v["index"].as_u64(), open);
                        open = None;
                    }
                    "message_delta" => {
                        prop_assert!(open.is_none(), "every started block was stopped");
                        let reason = v["delta"]["stop_reason"].as_str().unwrap();
                        if tools > 0 {
                            prop_assert_eq!(reason, "tool_use");
                        }
                        prop_assert_eq!(v["usage"]["input_tokens"].as_u64(), Some(8));
                        prop_assert_eq!(v["usage"]["cache_read_input_tokens"].as_u64(), Some(2));
                    }
                    _ => {}
                }
            }
            if !late {
                prop_assert_eq!(tool_blocks, tools);
                // What was sent decodes back to the same text, tools and arguments.
                let back = meaning(&decode_all(&encode_all(&events)));
                let sent = meaning(&events);
                prop_assert_eq!(back.text, sent.text);
                prop_assert_eq!(back.thinking, sent.thinking);
                prop_assert_eq!(back.tools, sent.tools);
                prop_assert_eq!(back.finish.map(|f| f.2.output), Some(3));
            }
        }
    }
}
