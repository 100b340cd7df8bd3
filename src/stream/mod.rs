//! The stream pipeline: upstream bytes in, client bytes out, with no IO types.
//!
//! framing (SSE, or AWS event-stream for Bedrock) → provider decoder → client encoder, or, when
//! client and provider speak the same dialect, the upstream bytes forwarded untouched with a
//! usage tap (and, where a deadline or priming needs it, the provider decoder watching the same
//! events on the side). Each upstream chunk is split into events once, whatever observes them.
//!
//! The pipeline also keeps what the body around it needs to decide: whether content has been
//! seen (priming, first-token and stall deadlines), the fault that ended the stream before any
//! content, and the usage. Faults are turned into exactly one terminal error event in the
//! client's dialect through [`fault::Fault::info`], the same for both modes.
//!
//! Must never: import tokio, hyper or http (enforced by `tests/architecture.rs`), copy a
//! pass-through chunk, or hold output back (the body decides what to hold while priming).

pub mod event_tap;
pub mod fault;
pub mod openai_tap;

use bytes::Bytes;

use crate::sse::{last_line_start, SseEvent, SseSplitter};
use crate::translate::eventstream::EventStreamDecoder;
use crate::translate::ir::{
    Dialect, EncodeOptions, ErrorInfo, RawEvent, StreamDecode, StreamEncode, StreamEvent,
};
use crate::usage::Usage;
use event_tap::{EventDialect, EventTap};
pub use fault::{is_content, Fault};
use openai_tap::OpenAiTap;

/// How upstream bytes are cut into events.
pub enum Framing {
    Sse(SseSplitter),
    /// Bedrock ConverseStream's binary `application/vnd.amazon.eventstream`.
    EventStream(Box<EventStreamDecoder>),
}

impl Framing {
    pub fn sse() -> Self {
        Framing::Sse(SseSplitter::new())
    }

    /// The framing a response's content type announces, if it is a stream.
    pub fn for_content_type(content_type: &[u8]) -> Option<Self> {
        if content_type.starts_with(b"text/event-stream") {
            Some(Self::sse())
        } else if content_type.starts_with(b"application/vnd.amazon.eventstream") {
            Some(Framing::EventStream(Box::new(EventStreamDecoder::new())))
        } else {
            None
        }
    }
}

/// The usage tap of a pass-through stream, by dialect.
pub enum Tap {
    /// OpenAI chat/completions: the tuned tap, with the strip of injected usage.
    OpenAi(OpenAiTap),
    /// Anthropic, Gemini, Responses API: bytes untouched, usage read from a few events.
    Events(EventTap),
}

impl Tap {
    pub fn openai(strip: bool, request_len: usize) -> Self {
        Tap::OpenAi(OpenAiTap::new(strip, request_len))
    }

    pub fn events(dialect: EventDialect, request_len: usize) -> Self {
        Tap::Events(EventTap::new(dialect, request_len))
    }

    #[inline]
    fn on_event(&mut self, event: SseEvent<'_>) {
        match self {
            Tap::OpenAi(t) => t.on_event(event.bytes, event.last_line),
            Tap::Events(t) => t.on_event(event.bytes),
        }
    }

    fn usage(&self) -> Option<Usage> {
        match self {
            Tap::OpenAi(t) => t.usage(),
            Tap::Events(t) => t.usage(),
        }
    }

    /// One terminal error event in the stream's dialect.
    fn error_event(&self, info: &ErrorInfo, out: &mut Vec<u8>) {
        match self {
            Tap::OpenAi(_) => crate::translate::stream_error_event(Dialect::OpenAi, info, out),
            Tap::Events(t) => match t.dialect() {
                EventDialect::Anthropic => {
                    crate::translate::stream_error_event(Dialect::Anthropic, info, out)
                }
                EventDialect::Gemini => {
                    crate::translate::stream_error_event(Dialect::Gemini, info, out)
                }
                EventDialect::Responses => {
                    crate::translate::openai::responses_error_event(info, out)
                }
            },
        }
    }
}

enum Mode {
    /// Same dialect: upstream chunks forwarded as they are (strip mode aside); `watch`
    /// decodes the events on the side while deadlines or priming need content detection.
    Forward {
        tap: Tap,
        watch: Option<Box<dyn StreamDecode>>,
    },
    /// Other dialect: every event decoded and re-encoded at once.
    Translate {
        decoder: Box<dyn StreamDecode>,
        encoder: Box<dyn StreamEncode>,
        out: Vec<u8>,
        /// The capacity the last output needed, reserved up front for the next: one
        /// allocation per frame instead of a chain of reallocations while an event is written
        /// piece by piece.
        out_hint: usize,
        usage: Option<Usage>,
        deltas: u64,
        estimated_input: u64,
    },
}

pub struct Pipeline {
    framing: Framing,
    mode: Mode,
    events: Vec<StreamEvent>,
    /// Content events seen so far (what the content deadlines and priming wait for).
    content: u64,
    /// The fault that ended the stream before any content, if one did.
    early: Option<Fault>,
    /// Nothing more may be sent: the stream was ended by an error event or a fault.
    ended: bool,
}

impl Pipeline {
    /// A pass-through stream (always SSE): bytes forwarded, usage tapped; `watch` is the
    /// provider dialect's decoder when content must be detected.
    pub fn forward(tap: Tap, watch: Option<Box<dyn StreamDecode>>) -> Self {
        Self::new(Framing::sse(), Mode::Forward { tap, watch })
    }

    /// A translated stream: decoded by `decoder`, re-encoded by `encoder`.
    pub fn translate(
        framing: Framing,
        decoder: Box<dyn StreamDecode>,
        encoder: Box<dyn StreamEncode>,
        request_len: usize,
    ) -> Self {
        Self::new(
            framing,
            Mode::Translate {
                decoder,
                encoder,
                out: Vec::new(),
                out_hint: 256,
                usage: None,
                deltas: 0,
                estimated_input: (request_len / 4) as u64,
            },
        )
    }

    fn new(framing: Framing, mode: Mode) -> Self {
        Self {
            framing,
            mode,
            events: Vec::new(),
            content: 0,
            early: None,
            ended: false,
        }
    }

    /// Whether the output is re-encoded (its frames need not match the upstream's).
    pub fn translates(&self) -> bool {
        matches!(self.mode, Mode::Translate { .. })
    }

    /// Content events seen so far.
    #[inline]
    pub fn content(&self) -> u64 {
        self.content
    }

    /// The stream has ended (an error event went out, or a fault); read no further.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Whether priming can stop: content arrived, or the stream failed or ended before it.
    pub fn primed(&self) -> bool {
        self.content > 0 || self.early.is_some() || self.ended
    }

    /// The fault that ended the stream before any content (priming failed), taken.
    pub fn take_early_fault(&mut self) -> Option<Fault> {
        if self.content > 0 {
            return None;
        }
        self.early.take()
    }

    /// Stops decoding a pass-through stream on the side (nothing needs content detection any
    /// more): the rest is forwarded at pass-through cost.
    pub fn stop_watching(&mut self) {
        if let Mode::Forward { watch, .. } = &mut self.mode {
            *watch = None;
        }
    }

    /// One upstream chunk; returns what to send to the client now, if anything.
    pub fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        let events = &mut self.events;
        match (&mut self.framing, &mut self.mode) {
            (Framing::Sse(splitter), Mode::Forward { tap, watch }) => {
                let forward = match tap {
                    Tap::OpenAi(t) if t.strips() => {
                        t.reserve(chunk.len());
                        None
                    }
                    _ => Some(chunk.clone()),
                };
                splitter.push_each(&chunk, |event| {
                    tap.on_event(event);
                    if let Some(decoder) = watch {
                        feed_sse_event(decoder.as_mut(), event, events);
                    }
                });
                let out = match tap {
                    Tap::OpenAi(t) if forward.is_none() => t.take_output(),
                    _ => forward,
                };
                self.observe();
                out
            }
            (Framing::Sse(splitter), Mode::Translate { decoder, .. }) => {
                splitter.push_each(&chunk, |event| {
                    feed_sse_event(decoder.as_mut(), event, events)
                });
                self.observe();
                self.take_translated()
            }
            (Framing::EventStream(es), Mode::Translate { decoder, .. }) => {
                es.push(&chunk);
                loop {
                    match es.next_message() {
                        Ok(Some(msg)) => {
                            crate::translate::bedrock::feed_message(decoder.as_mut(), &msg, events)
                        }
                        Ok(None) => break,
                        Err(e) => {
                            self.observe();
                            if self.ended {
                                // An error event in this chunk already ended the stream: what
                                // it encoded (that error included) still goes out.
                                return self.take_translated();
                            }
                            return self.fault(Fault::BadFraming(e.to_string()));
                        }
                    }
                }
                self.observe();
                self.take_translated()
            }
            (Framing::EventStream(_), Mode::Forward { .. }) => {
                // Not built: pass-through streams are SSE. Forward untouched all the same.
                Some(chunk)
            }
        }
    }

    /// The upstream ended cleanly: the rest of a last event without its blank line, what the
    /// decoder still owes, and the encoder's closing bytes.
    pub fn finish(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        let rest = match &mut self.framing {
            Framing::Sse(splitter) => splitter.finish(),
            Framing::EventStream(_) => None,
        };
        let events = &mut self.events;
        let out = match &mut self.mode {
            Mode::Forward { tap, watch } => {
                let mut out = None;
                if let Some(rest) = rest {
                    let rest = SseEvent {
                        bytes: &rest,
                        last_line: last_line_start(&rest),
                    };
                    tap.on_event(rest);
                    if let Some(decoder) = watch {
                        feed_sse_event(decoder.as_mut(), rest, events);
                    }
                    // Already forwarded with its chunk, unless strip mode holds whole events.
                    if let Tap::OpenAi(t) = tap {
                        out = t.take_output();
                    }
                }
                if let Some(decoder) = watch {
                    decoder.end(events);
                }
                if let Tap::Events(t) = tap {
                    t.finish();
                }
                self.observe();
                out
            }
            Mode::Translate { decoder, .. } => {
                if let Some(rest) = rest {
                    let rest = SseEvent {
                        bytes: &rest,
                        last_line: last_line_start(&rest),
                    };
                    feed_sse_event(decoder.as_mut(), rest, events);
                }
                decoder.end(events);
                self.observe();
                if let Mode::Translate { encoder, out, .. } = &mut self.mode {
                    if !self.ended {
                        encoder.end(out);
                    }
                }
                self.take_translated()
            }
        };
        self.ended = true;
        out
    }

    /// Ends the stream with one error event in the client's dialect (nothing if it already
    /// ended). A fault before any content is kept for the priming decision.
    pub fn fault(&mut self, fault: Fault) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        let info = fault.info();
        if self.content == 0 && self.early.is_none() {
            self.early = Some(fault);
        }
        self.ended = true;
        match &mut self.mode {
            Mode::Forward { tap, .. } => {
                let mut out = Vec::new();
                // Start a fresh event if the client is in the middle of one (strip mode only
                // sends whole events, so it never is).
                let mid_event = match (&self.framing, &*tap) {
                    (_, Tap::OpenAi(t)) if t.strips() => false,
                    (Framing::Sse(s), _) => s.pending() > 0,
                    _ => false,
                };
                if mid_event {
                    out.extend_from_slice(b"\n\n");
                }
                tap.error_event(&info, &mut out);
                Some(Bytes::from(out))
            }
            Mode::Translate { encoder, out, .. } => {
                encoder.event(&StreamEvent::Error(info), out);
                self.take_translated()
            }
        }
    }

    /// The usage to settle with: as reported, or estimated when the stream was cut short.
    pub fn usage(&self) -> Option<Usage> {
        match &self.mode {
            Mode::Forward { tap, .. } => tap.usage(),
            Mode::Translate {
                usage,
                deltas,
                estimated_input,
                ..
            } => usage.filter(|u| u.output > 0 || u.input > 0).or_else(|| {
                (*deltas > 0 || usage.is_some()).then(|| Usage {
                    input: usage
                        .map(|u| u.input)
                        .filter(|&i| i > 0)
                        .unwrap_or(*estimated_input),
                    output: *deltas,
                    estimated: true,
                    ..Usage::default()
                })
            }),
        }
    }

    /// Notes what the decoder produced (content, usage, errors) and, when translating,
    /// encodes it for the client.
    #[inline]
    fn observe(&mut self) {
        // A pass-through stream without a watch produces no events: nothing to look at.
        if self.events.is_empty() {
            return;
        }
        for ev in self.events.drain(..) {
            let content = is_content(&ev);
            if content {
                self.content += 1;
            }
            if let StreamEvent::Error(info) = &ev {
                if self.content == 0 && self.early.is_none() {
                    self.early = Some(Fault::Upstream(info.clone()));
                }
            }
            if let Mode::Translate {
                encoder,
                out,
                out_hint,
                usage,
                deltas,
                ..
            } = &mut self.mode
            {
                if out.capacity() == 0 {
                    out.reserve(*out_hint);
                }
                match &ev {
                    StreamEvent::Start { usage: u, .. } if *u != Usage::default() => {
                        *usage = Some(*u)
                    }
                    StreamEvent::Finish { usage: u, .. } => *usage = Some(*u),
                    StreamEvent::Error(_) => self.ended = true,
                    StreamEvent::TextDelta(_)
                    | StreamEvent::ThinkingDelta(_)
                    | StreamEvent::RefusalDelta(_)
                    | StreamEvent::ToolArgsDelta { .. } => *deltas += 1,
                    _ => {}
                }
                encoder.event(&ev, out);
            }
        }
    }

    fn take_translated(&mut self) -> Option<Bytes> {
        match &mut self.mode {
            Mode::Translate { out, out_hint, .. } if !out.is_empty() => {
                // Encoders reserve room for the worst case of an event before writing it, so
                // a hint of the used length would make every frame allocate and then grow:
                // the capacity the frame grew to, but no more than twice what it used (a large
                // frame does not make every later one large).
                *out_hint = out
                    .capacity()
                    .min(out.len().saturating_mul(2))
                    .clamp(256, 16 * 1024);
                Some(Bytes::from(std::mem::take(out)))
            }
            _ => None,
        }
    }
}

/// Feeds one SSE event to a decoder (comment-only keep-alives carry no data and are skipped).
/// The one place SSE events meet a stream decoder.
pub fn feed_sse_event(
    decoder: &mut dyn StreamDecode,
    event: SseEvent<'_>,
    out: &mut Vec<StreamEvent>,
) {
    let (name, Some(data)) = event.name_and_data() else {
        return;
    };
    decoder.event(
        RawEvent {
            name,
            data: &data,
            exception: false,
        },
        out,
    );
}

/// Re-encodes a list of SSE frames from one dialect into another, one output frame per input
/// frame that produced output (the built-in mock answers in any dialect this way).
pub fn translate_frames(
    frames: &[Bytes],
    from: Dialect,
    to: Dialect,
    opts: EncodeOptions,
    model: &str,
) -> Vec<Bytes> {
    let mut pipeline = Pipeline::translate(
        Framing::sse(),
        crate::translate::stream_decoder(from, model),
        crate::translate::stream_encoder(to, opts),
        0,
    );
    let mut out: Vec<Bytes> = frames
        .iter()
        .filter_map(|f| pipeline.push(f.clone()))
        .collect();
    out.extend(pipeline.finish());
    out
}

#[cfg(test)]
mod tests;
