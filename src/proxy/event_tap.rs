//! The usage tap for pass-through streams in dialects other than OpenAI chat: Anthropic
//! messages, Gemini and the OpenAI Responses API.
//!
//! Bytes are forwarded untouched (the same `Bytes`); a splitter finds event boundaries and only
//! the few events that carry usage are parsed: Anthropic `message_start`/`message_delta`, the
//! last Gemini event (usage is cumulative, so it is parsed once at the end), the Responses
//! terminal event.

use bytes::Bytes;

use crate::sse::{data_payload, event_name, SseSplitter};
use crate::translate::ir::{Dialect, ErrorInfo, ErrorKind};
use crate::usage::{self, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventDialect {
    Anthropic,
    Gemini,
    Responses,
}

pub struct EventTap {
    dialect: EventDialect,
    splitter: SseSplitter,
    usage: Option<Usage>,
    /// Gemini: the last event that carried usage, parsed when the stream ends.
    last_usage_event: Option<Bytes>,
    data_events: u64,
    estimated_input: u64,
}

impl EventTap {
    pub fn new(dialect: EventDialect, request_len: usize) -> Self {
        Self {
            dialect,
            splitter: SseSplitter::new(),
            usage: None,
            last_usage_event: None,
            data_events: 0,
            estimated_input: (request_len / 4) as u64,
        }
    }

    /// Scans one upstream chunk; returns it unchanged.
    pub fn on_chunk(&mut self, chunk: Bytes) -> Bytes {
        let dialect = self.dialect;
        let usage = &mut self.usage;
        let last = &mut self.last_usage_event;
        let count = &mut self.data_events;
        self.splitter.push(chunk.clone(), |event| {
            *count += 1;
            match dialect {
                EventDialect::Anthropic => {
                    if matches!(event_name(&event), Some("message_start" | "message_delta")) {
                        if let Some(data) = data_payload(&event) {
                            usage::update_from_anthropic_json(&data, usage);
                        }
                    }
                }
                EventDialect::Gemini => {
                    if memchr::memmem::find(&event, b"\"usageMetadata\"").is_some() {
                        *last = Some(event);
                    }
                }
                EventDialect::Responses => {
                    if matches!(
                        event_name(&event),
                        Some("response.completed" | "response.incomplete" | "response.failed")
                    ) {
                        if let Some(data) = data_payload(&event) {
                            if let Some(u) = usage::from_responses_json(&data) {
                                *usage = Some(u);
                            }
                        }
                    }
                }
            }
        });
        chunk
    }

    /// The stream ended; nothing is appended (pass-through), usage is settled.
    pub fn finish(&mut self) {
        if let Some(rest) = self.splitter.finish() {
            // A last event without its blank line still counts.
            let _ = self.on_chunk_final(rest);
        }
        if let Some(event) = self.last_usage_event.take() {
            if let Some(data) = data_payload(&event) {
                if let Some(u) = usage::from_gemini_json(&data) {
                    self.usage = Some(u);
                }
            }
        }
    }

    fn on_chunk_final(&mut self, event: Bytes) -> Option<()> {
        let data = data_payload(&event)?;
        match self.dialect {
            EventDialect::Anthropic => {
                usage::update_from_anthropic_json(&data, &mut self.usage);
            }
            EventDialect::Gemini => {
                if memchr::memmem::find(&event, b"\"usageMetadata\"").is_some() {
                    self.last_usage_event = Some(event.clone());
                }
            }
            EventDialect::Responses => {
                if let Some(u) = usage::from_responses_json(&data) {
                    self.usage = Some(u);
                }
            }
        }
        Some(())
    }

    /// A terminal error event in the stream's dialect, starting a fresh event if the client
    /// is in the middle of one.
    pub fn error_event(&mut self, message: &str, code: &str) -> Bytes {
        let info = ErrorInfo {
            status: 502,
            kind: if code == "upstream_timeout" {
                ErrorKind::Timeout
            } else {
                ErrorKind::Server
            },
            message: message.to_string(),
            code: Some(code.to_string()),
            param: None,
        };
        let mut out = Vec::new();
        if self.splitter.pending() > 0 {
            out.extend_from_slice(b"\n\n");
        }
        match self.dialect {
            EventDialect::Anthropic => {
                out.extend_from_slice(b"event: error\ndata: ");
                out.extend_from_slice(&crate::translate::encode_error(Dialect::Anthropic, &info));
                out.extend_from_slice(b"\n\n");
            }
            EventDialect::Gemini => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&crate::translate::encode_error(Dialect::Gemini, &info));
                out.extend_from_slice(b"\r\n\r\n");
            }
            EventDialect::Responses => {
                let v = serde_json::json!({"type": "error", "code": code, "message": message, "param": null});
                out.extend_from_slice(b"event: error\ndata: ");
                out.extend_from_slice(v.to_string().as_bytes());
                out.extend_from_slice(b"\n\n");
            }
        }
        Bytes::from(out)
    }

    /// Usage as reported, or estimated when the stream ended before it was reported.
    pub fn usage(&self) -> Option<Usage> {
        if self.usage.is_some() {
            return self.usage;
        }
        (self.data_events > 0).then(|| Usage {
            input: self.estimated_input,
            output: self.data_events.saturating_sub(1),
            estimated: true,
            ..Usage::default()
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn run(dialect: EventDialect, body: &[u8], step: usize) -> (Vec<u8>, Option<Usage>) {
        let mut tap = EventTap::new(dialect, 100);
        let mut out = Vec::new();
        for c in body.chunks(step) {
            out.extend_from_slice(&tap.on_chunk(Bytes::copy_from_slice(c)));
        }
        tap.finish();
        (out, tap.usage())
    }

    #[test]
    fn anthropic_stream_usage_is_tapped_and_bytes_untouched() {
        let body = fixture("anthropic-stream-text-tool-use.sse");
        for step in [1, 7, 64, body.len()] {
            let (out, usage) = run(EventDialect::Anthropic, &body, step);
            assert_eq!(out, body);
            let u = usage.unwrap();
            assert!(!u.estimated && u.input > 0 && u.output > 1, "{u:?}");
        }
    }

    #[test]
    fn gemini_stream_usage_is_the_last_events() {
        let body = fixture("gemini-stream-text.sse");
        let (out, usage) = run(EventDialect::Gemini, &body, 13);
        assert_eq!(out, body);
        let u = usage.unwrap();
        assert!(!u.estimated && u.input > 0 && u.output > 0, "{u:?}");
    }

    #[test]
    fn responses_stream_usage_comes_from_the_completed_event() {
        let body = fixture("openai-responses-stream-text.sse");
        let (out, usage) = run(EventDialect::Responses, &body, 29);
        assert_eq!(out, body);
        let u = usage.unwrap();
        assert!(!u.estimated && u.input > 0 && u.output > 0, "{u:?}");
    }
}
