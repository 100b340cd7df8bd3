//! `ConverseStream` events → IR stream events.

use serde::Deserialize;
use serde_json::Value;

use super::error::stream_exception;
use super::response::{derive_tool_use, map_stop_reason, stop_sequence};
use super::{synth_id, BedrockUsage};
use crate::translate::eventstream;
use crate::translate::ir::{ErrorInfo, ErrorKind, RawEvent, StopReason, StreamDecode, StreamEvent};
use crate::usage::Usage;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct BlockStart {
    content_block_index: Option<u32>,
    start: Option<StartUnion>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct StartUnion {
    tool_use: Option<StartToolUse>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct StartToolUse {
    tool_use_id: String,
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct BlockDelta {
    content_block_index: Option<u32>,
    delta: Option<DeltaUnion>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct DeltaUnion {
    text: Option<String>,
    tool_use: Option<DeltaToolUse>,
    reasoning_content: Option<DeltaReasoning>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DeltaToolUse {
    input: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct DeltaReasoning {
    text: Option<String>,
    signature: Option<String>,
    redacted_content: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct MessageStop {
    stop_reason: Option<String>,
    additional_model_response_fields: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Metadata {
    usage: Option<BedrockUsage>,
}

/// Decodes one `ConverseStream` response. Feed it the event-stream messages (`message`, or
/// `event` with a `RawEvent` whose `name` is the `:event-type`, or the `:exception-type` with
/// `exception` set).
#[derive(Debug)]
pub struct StreamDecoder {
    model: String,
    started: bool,
    /// Finish or Error was emitted: nothing more is.
    done: bool,
    /// Content-block index → tool-call index, for the tool calls of this answer.
    tool_blocks: Vec<(Option<u32>, u32)>,
    next_tool: u32,
    stop: Option<(StopReason, Option<String>)>,
    /// Usage when `metadata` came before `messageStop` (Bedrock sends it after).
    usage: Option<Usage>,
}

impl StreamDecoder {
    /// `model` is what `Start` reports: Bedrock's stream does not name its model.
    pub fn new(model: &str) -> Self {
        StreamDecoder {
            model: model.to_owned(),
            started: false,
            done: false,
            tool_blocks: Vec::new(),
            next_tool: 0,
            stop: None,
            usage: None,
        }
    }

    /// One decoded event-stream message (see [`feed_message`]); after the stream failed,
    /// further protocol `error` messages are ignored.
    pub fn message(&mut self, msg: &eventstream::Message, out: &mut Vec<StreamEvent>) {
        if msg.is_error() {
            if self.done {
                return;
            }
            self.done = true;
        }
        feed_message(self, msg, out);
    }

    fn ensure_started(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: synth_id(),
                model: self.model.clone(),
                usage: Usage::default(),
            });
        }
    }

    fn fail(&mut self, out: &mut Vec<StreamEvent>, message: String) {
        self.done = true;
        out.push(StreamEvent::Error(ErrorInfo {
            // The upstream broke its own protocol: a bad gateway, in HTTP terms.
            status: 502,
            kind: ErrorKind::Server,
            message,
            code: None,
            param: None,
        }));
    }

    fn tool_index(&self, block: Option<u32>) -> Option<u32> {
        match block {
            Some(b) => self
                .tool_blocks
                .iter()
                .find(|(blk, _)| *blk == Some(b))
                .map(|(_, t)| *t),
            // Without a block index, a fragment belongs to the latest tool call.
            None => self.tool_blocks.last().map(|(_, t)| *t),
        }
    }

    fn finish_if_ready(&mut self, out: &mut Vec<StreamEvent>) {
        if let (Some((reason, seq)), Some(usage)) = (self.stop.clone(), self.usage) {
            self.ensure_started(out);
            self.done = true;
            out.push(StreamEvent::Finish {
                reason: derive_tool_use(reason, self.next_tool > 0),
                stop_sequence: seq,
                usage,
            });
        }
    }

    fn handle<T: serde::de::DeserializeOwned>(
        &mut self,
        name: &str,
        data: &[u8],
        out: &mut Vec<StreamEvent>,
    ) -> Option<T> {
        match crate::translate::json::from_slice(data) {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(out, format!("Bedrock sent an unreadable {name} event: {e}"));
                None
            }
        }
    }
}

impl StreamDecode for StreamDecoder {
    fn event(&mut self, raw: RawEvent<'_>, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        let name = raw.name_str().unwrap_or("");
        if raw.exception {
            self.done = true;
            out.push(StreamEvent::Error(stream_exception(name, raw.data)));
            return;
        }
        match name {
            "messageStart" => self.ensure_started(out),
            "contentBlockStart" => {
                let Some(ev) = self.handle::<BlockStart>(name, raw.data, out) else {
                    return;
                };
                self.ensure_started(out);
                if let Some(tool) = ev.start.and_then(|s| s.tool_use) {
                    let index = self.next_tool;
                    self.next_tool += 1;
                    // Tool-call indices count tool calls, not content blocks (pitfall 1: a
                    // reasoning or text block before the call must not shift its index).
                    self.tool_blocks.push((ev.content_block_index, index));
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id: tool.tool_use_id,
                        name: tool.name,
                        signature: None,
                    });
                }
            }
            "contentBlockDelta" => {
                let Some(ev) = self.handle::<BlockDelta>(name, raw.data, out) else {
                    return;
                };
                self.ensure_started(out);
                let Some(delta) = ev.delta else { return };
                if let Some(text) = delta.text {
                    if !text.is_empty() {
                        out.push(StreamEvent::TextDelta(text));
                    }
                } else if let Some(tool) = delta.tool_use {
                    match self.tool_index(ev.content_block_index) {
                        Some(index) => {
                            if !tool.input.is_empty() {
                                out.push(StreamEvent::ToolArgsDelta {
                                    index,
                                    fragment: tool.input,
                                });
                            }
                        }
                        None => self.fail(
                            out,
                            "Bedrock sent tool input for a content block that started no tool \
                             call"
                                .to_owned(),
                        ),
                    }
                } else if let Some(r) = delta.reasoning_content {
                    if let Some(text) = r.text.filter(|t| !t.is_empty()) {
                        out.push(StreamEvent::ThinkingDelta(text));
                    }
                    if let Some(sig) = r.signature {
                        out.push(StreamEvent::ThinkingSignature(sig));
                    }
                    if let Some(data) = r.redacted_content {
                        out.push(StreamEvent::RedactedThinking(data));
                    }
                }
            }
            "messageStop" => {
                let Some(ev) = self.handle::<MessageStop>(name, raw.data, out) else {
                    return;
                };
                let reason = ev
                    .stop_reason
                    .as_deref()
                    .map_or(StopReason::Other, map_stop_reason);
                self.stop = Some((
                    reason,
                    stop_sequence(ev.additional_model_response_fields.as_ref()),
                ));
                self.finish_if_ready(out);
            }
            "metadata" => {
                let Some(ev) = self.handle::<Metadata>(name, raw.data, out) else {
                    return;
                };
                self.usage = Some(ev.usage.unwrap_or_default().to_usage());
                self.finish_if_ready(out);
            }
            // contentBlockStop carries nothing the IR needs; unknown events are tolerated.
            _ => {}
        }
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        self.done = true;
        match self.stop.clone() {
            Some((reason, stop_sequence)) => {
                // The answer is complete (messageStop came) but usage never did: finish with
                // the usage marked as unknown rather than fail a whole answer.
                self.ensure_started(out);
                out.push(StreamEvent::Finish {
                    reason: derive_tool_use(reason, self.next_tool > 0),
                    stop_sequence,
                    usage: Usage {
                        estimated: true,
                        ..Usage::default()
                    },
                });
            }
            None => out.push(StreamEvent::Error(ErrorInfo {
                status: 502,
                kind: ErrorKind::Server,
                message: "Bedrock stream ended before messageStop".to_owned(),
                code: None,
                param: None,
            })),
        }
    }
}

/// Feeds one decoded event-stream message to a Bedrock stream decoder: events and exceptions
/// by their `:event-type` / `:exception-type`; a protocol `error` message (its code and text
/// travel in headers, not in the payload) becomes one error event. The translating stream body
/// and the decoder's own [`StreamDecoder::message`] both go through here.
pub fn feed_message(
    decoder: &mut dyn StreamDecode,
    msg: &eventstream::Message,
    out: &mut Vec<StreamEvent>,
) {
    if msg.is_error() {
        let code = msg.error_code.clone().unwrap_or_else(|| "error".to_owned());
        let kind = super::error_kind(&code).unwrap_or(ErrorKind::Server);
        out.push(StreamEvent::Error(ErrorInfo {
            status: kind.status(),
            kind,
            message: msg
                .error_message
                .clone()
                .unwrap_or_else(|| format!("Bedrock stream failed: {code}")),
            code: Some(code),
            param: None,
        }));
        return;
    }
    let exception = msg.is_exception();
    let name = if exception {
        msg.exception_type.as_deref()
    } else {
        msg.event_type.as_deref()
    };
    decoder.event(
        RawEvent {
            name: name.map(str::as_bytes),
            data: &msg.payload,
            exception,
        },
        out,
    );
}
