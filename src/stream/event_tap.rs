//! The usage tap for pass-through streams in dialects other than OpenAI chat: Anthropic
//! messages, Gemini and the OpenAI Responses API, one SSE event at a time.
//!
//! Bytes are forwarded untouched by the pipeline; only the few events that carry usage are
//! parsed: Anthropic `message_start`/`message_delta`, the last Gemini event (usage is
//! cumulative, so it is parsed once at the end), the Responses terminal event.

use crate::sse::{data_payload, event_name};
use crate::usage::{self, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventDialect {
    Anthropic,
    Gemini,
    Responses,
}

pub struct EventTap {
    dialect: EventDialect,
    usage: Option<Usage>,
    /// Gemini: the last event that carried usage, parsed when the stream ends (empty when
    /// none did; the buffer is reused from event to event).
    last_usage_event: Vec<u8>,
    data_events: u64,
    estimated_input: u64,
}

impl EventTap {
    pub fn new(dialect: EventDialect, request_len: usize) -> Self {
        Self {
            dialect,
            usage: None,
            last_usage_event: Vec::new(),
            data_events: 0,
            estimated_input: (request_len / 4) as u64,
        }
    }

    pub fn dialect(&self) -> EventDialect {
        self.dialect
    }

    /// One complete upstream event.
    pub fn on_event(&mut self, event: &[u8]) {
        self.data_events += 1;
        match self.dialect {
            EventDialect::Anthropic => {
                if matches!(event_name(event), Some("message_start" | "message_delta")) {
                    if let Some(data) = data_payload(event) {
                        usage::update_from_anthropic_json(&data, &mut self.usage);
                    }
                }
            }
            EventDialect::Gemini => {
                if memchr::memmem::find(event, b"\"usageMetadata\"").is_some() {
                    self.last_usage_event.clear();
                    self.last_usage_event.extend_from_slice(event);
                }
            }
            EventDialect::Responses => {
                if matches!(
                    event_name(event),
                    Some("response.completed" | "response.incomplete" | "response.failed")
                ) {
                    if let Some(u) =
                        data_payload(event).and_then(|d| usage::from_responses_json(&d))
                    {
                        self.usage = Some(u);
                    }
                }
            }
        }
    }

    /// The stream ended: Gemini's cumulative usage is read from its last usage event.
    pub fn finish(&mut self) {
        if !self.last_usage_event.is_empty() {
            let event = std::mem::take(&mut self.last_usage_event);
            if let Some(u) = data_payload(&event).and_then(|d| usage::from_gemini_json(&d)) {
                self.usage = Some(u);
            }
        }
    }

    /// Usage as reported, or estimated when the stream ended before it was reported.
    pub fn usage(&self) -> Option<Usage> {
        crate::usage::reported_or_estimated(self.usage, self.data_events, self.estimated_input)
    }
}
