//! Gemini SSE streams (`streamGenerateContent?alt=sse`) ⇄ IR `StreamEvent`s.
//!
//! Every Gemini event is a whole `GenerateContentResponse` holding only the new parts; usage is
//! cumulative per event; there is no end marker (the stream ends on close) and function calls
//! arrive whole, without ids.

use super::error::{status_name, status_to_info};
use super::response::{answer_part, call_part};
use super::wire::{Candidate, Content, GenerateContentResponse, Status, UsageMetadata, WirePart};
use super::{
    args_text, finish_reason, response_call_id, stop_reason, usage_from_wire, usage_to_wire,
    with_tool_use,
};
use crate::translate::ir::{
    EncodeOptions, ErrorInfo, ErrorKind, Part, RawEvent, StopReason, StreamDecode, StreamEncode,
    StreamEvent, TextBlock,
};
use crate::usage::Usage;

/// Upstream Gemini SSE events → IR.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    /// An `Error` was emitted: nothing follows.
    failed: bool,
    response_id: String,
    /// Function calls seen so far (the next call's index).
    calls: u32,
    finish: Option<StopReason>,
    /// The last (cumulative) usage reported.
    usage: Usage,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    fn fail(&mut self, info: ErrorInfo, out: &mut Vec<StreamEvent>) {
        self.failed = true;
        out.push(StreamEvent::Error(info));
    }
}

impl StreamDecode for StreamDecoder {
    fn event(&mut self, raw: RawEvent<'_>, out: &mut Vec<StreamEvent>) {
        if self.failed {
            return;
        }
        let data = raw.data.trim_ascii();
        if data.is_empty() {
            return;
        }
        let wire: GenerateContentResponse = match crate::translate::json::from_slice(data) {
            Ok(w) => w,
            Err(e) => {
                let info = ErrorInfo {
                    status: 502,
                    kind: ErrorKind::Server,
                    message: format!("invalid Gemini stream event: {e}"),
                    code: None,
                    param: None,
                };
                return self.fail(info, out);
            }
        };
        if let Some(status) = wire.error {
            // Gemini reports a failure after the HTTP 200 as an event holding only `error`.
            let http = status
                .code
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| (400..600).contains(c))
                .unwrap_or(500);
            return self.fail(status_to_info(http, status), out);
        }
        if !self.started {
            self.started = true;
            self.response_id = wire.response_id.clone().unwrap_or_default();
            let usage = wire.usage_metadata.as_ref().map(usage_from_wire);
            out.push(StreamEvent::Start {
                id: self.response_id.clone(),
                model: wire.model_version.clone().unwrap_or_default(),
                // The prompt side is final from the first event; output is not.
                usage: Usage {
                    input: usage.map_or(0, |u| u.input),
                    cache_read: usage.map_or(0, |u| u.cache_read),
                    ..Usage::default()
                },
            });
        }
        if let Some(u) = &wire.usage_metadata {
            self.usage = usage_from_wire(u);
        }
        if wire
            .prompt_feedback
            .as_ref()
            .is_some_and(|f| f.block_reason.as_deref().is_some_and(|r| !r.is_empty()))
        {
            self.finish = Some(StopReason::ContentFilter);
        }
        let Some(candidate) = wire.candidate0() else {
            return;
        };
        for p in candidate.content.iter().flat_map(|c| &c.parts) {
            self.part(p, out);
        }
        if let Some(reason) = candidate.finish_reason.as_deref() {
            self.finish = Some(stop_reason(reason));
        }
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) {
        if self.failed {
            return;
        }
        match self.finish {
            Some(reason) => out.push(StreamEvent::Finish {
                reason: with_tool_use(reason, self.calls > 0),
                stop_sequence: None,
                usage: self.usage,
            }),
            None => {
                let info = ErrorInfo {
                    status: 502,
                    kind: ErrorKind::Server,
                    message: "Gemini stream ended before a finishReason".to_owned(),
                    code: None,
                    param: None,
                };
                self.fail(info, out);
            }
        }
    }
}

impl StreamDecoder {
    fn part(&mut self, p: &WirePart, out: &mut Vec<StreamEvent>) {
        if let Some(call) = &p.function_call {
            let index = self.calls;
            self.calls += 1;
            out.push(StreamEvent::ToolCallStart {
                index,
                id: response_call_id(&self.response_id, index, &call.name),
                name: call.name.clone(),
                signature: p.thought_signature.clone(),
            });
            // Calls arrive whole: the complete arguments are one fragment.
            out.push(StreamEvent::ToolArgsDelta {
                index,
                fragment: args_text(call.args.as_ref()),
            });
            return;
        }
        let text = p.text.as_deref().unwrap_or("");
        if p.thought == Some(true) {
            if !text.is_empty() {
                out.push(StreamEvent::ThinkingDelta(text.to_owned()));
            }
            if let Some(sig) = &p.thought_signature {
                out.push(StreamEvent::ThinkingSignature(sig.clone()));
            }
            return;
        }
        // A signed plain text part: keep the signature for replay (see `request::decode_part`).
        if let Some(sig) = &p.thought_signature {
            out.push(StreamEvent::ThinkingSignature(sig.clone()));
        }
        // The trailing event often carries an empty text part next to finishReason.
        if !text.is_empty() {
            out.push(StreamEvent::TextDelta(text.to_owned()));
        }
    }
}

/// A tool call being collected: Gemini sends calls whole, so its argument fragments are held
/// until the call is complete (the one place this encoder buffers).
#[derive(Debug)]
struct PendingCall {
    index: u32,
    name: String,
    signature: Option<String>,
    args: String,
}

/// IR → Gemini SSE (`data: <json>\r\n\r\n`) for a Gemini client.
#[derive(Debug)]
pub struct StreamEncoder {
    model: String,
    response_id: String,
    /// Prompt-side usage known from `Start`, repeated on every chunk as Gemini does.
    prompt_usage: Option<UsageMetadata>,
    pending: Option<PendingCall>,
    /// Finish or Error was written: nothing follows.
    done: bool,
}

impl StreamEncoder {
    pub fn new(opts: &EncodeOptions) -> Self {
        Self {
            model: opts.model.clone(),
            response_id: String::new(),
            prompt_usage: None,
            pending: None,
            done: false,
        }
    }

    fn write(&self, wire: &GenerateContentResponse, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: ");
        // Plain structs with string keys: serialisation cannot fail.
        if serde_json::to_writer(&mut *out, wire).is_err() {
            out.extend_from_slice(b"{}");
        }
        out.extend_from_slice(b"\r\n\r\n");
    }

    fn chunk(&self, parts: Vec<WirePart>) -> GenerateContentResponse {
        GenerateContentResponse {
            candidates: vec![Candidate {
                content: Some(Content {
                    role: Some("model".to_owned()),
                    parts,
                }),
                finish_reason: None,
                index: Some(0),
            }],
            prompt_feedback: None,
            usage_metadata: self.prompt_usage.clone(),
            model_version: Some(self.model.clone()),
            response_id: Some(self.response_id.clone()),
            error: None,
        }
    }

    fn write_part(&self, part: WirePart, out: &mut Vec<u8>) {
        self.write(&self.chunk(vec![part]), out);
    }

    /// Writes the call being collected, now complete.
    fn flush_call(&mut self, out: &mut Vec<u8>) {
        if let Some(call) = self.pending.take() {
            self.write_part(call_part(&call.name, &call.args, call.signature), out);
        }
    }
}

impl StreamEncode for StreamEncoder {
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if let StreamEvent::ToolArgsDelta { index, fragment } = ev {
            match &mut self.pending {
                Some(call) if call.index == *index => call.args.push_str(fragment),
                // Arguments for a call already sent or never started: IR decoders send each
                // call's fragments before the next call starts, so there is nowhere to put them.
                _ => {}
            }
            return;
        }
        // Any other event means the call being collected is complete.
        if !matches!(ev, StreamEvent::Error(_)) {
            self.flush_call(out);
        }
        match ev {
            StreamEvent::Start { id, model, usage } => {
                // Gemini has no start event: the id, model and usage so far ride on every chunk.
                self.response_id = id.clone();
                if usage.input > 0 {
                    let mut u = usage_to_wire(usage);
                    // Only the prompt side is known yet.
                    u.candidates_token_count = None;
                    u.thoughts_token_count = None;
                    u.total_token_count = Some(usage.input);
                    self.prompt_usage = Some(u);
                }
                if self.model.is_empty() {
                    self.model = model.clone();
                }
            }
            StreamEvent::TextDelta(text) | StreamEvent::RefusalDelta(text) => {
                let part = Part::Text(TextBlock {
                    text: text.clone(),
                    cache_control: None,
                });
                if let Some(p) = answer_part(&part) {
                    self.write_part(p, out);
                }
            }
            StreamEvent::ThinkingDelta(text) if !text.is_empty() => {
                self.write_part(
                    WirePart {
                        text: Some(text.clone()),
                        thought: Some(true),
                        ..WirePart::default()
                    },
                    out,
                );
            }
            StreamEvent::ThinkingSignature(sig) => {
                self.write_part(
                    WirePart {
                        text: Some(String::new()),
                        thought: Some(true),
                        thought_signature: Some(sig.clone()),
                        ..WirePart::default()
                    },
                    out,
                );
            }
            StreamEvent::ToolCallStart {
                index,
                name,
                signature,
                ..
            } => {
                self.pending = Some(PendingCall {
                    index: *index,
                    name: name.clone(),
                    signature: signature.clone(),
                    args: String::new(),
                });
            }
            StreamEvent::Finish { reason, usage, .. } => {
                // Like Gemini's own last event: an empty text part beside the reason.
                let mut wire = self.chunk(vec![WirePart {
                    text: Some(String::new()),
                    ..WirePart::default()
                }]);
                if let Some(c) = wire.candidates.first_mut() {
                    c.finish_reason = Some(finish_reason(*reason).to_owned());
                }
                wire.usage_metadata = Some(usage_to_wire(usage));
                self.write(&wire, out);
                self.done = true;
            }
            StreamEvent::Error(info) => {
                // A call cut off by the failure is incomplete: dropped, not sent half-done.
                self.pending = None;
                let wire = GenerateContentResponse {
                    error: Some(Status {
                        code: Some(i64::from(info.status)),
                        message: Some(info.message.clone()),
                        status: Some(status_name(info.kind).to_owned()),
                        details: Vec::new(),
                    }),
                    ..GenerateContentResponse::default()
                };
                self.write(&wire, out);
                self.done = true;
            }
            // No Gemini counterpart: encrypted reasoning of another provider, empty thoughts.
            StreamEvent::RedactedThinking(_) | StreamEvent::ThinkingDelta(_) => {}
            StreamEvent::ToolArgsDelta { .. } => {}
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if !self.done {
            self.flush_call(out);
        }
    }
}
