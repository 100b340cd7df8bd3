//! The usage tap on an OpenAI-dialect SSE stream.
//!
//! Pass-through mode forwards every upstream chunk untouched (same `Bytes`) and only scans it.
//! Strip mode is for streams where the gateway injected `stream_options.include_usage`: it
//! removes exactly what that option added (the usage-only chunk and the `"usage":null` member of
//! every other chunk), so the client gets the bytes it would have got without the gateway. Strip
//! mode forwards whole events only, as soon as each is complete.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::LazyLock;

use bytes::{BufMut, Bytes, BytesMut};
use memchr::memmem;

use crate::dialect::openai;
use crate::sse::{data_payload, SseSplitter};
use crate::usage::{self, Usage, UsageField};

static CHOICES_KEY: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"choices\""));

/// Whether the chunk's `choices` is an empty array, whatever whitespace the server puts around
/// the colon and brackets (Python's default separators write `"choices": []`).
fn has_empty_choices(payload: &[u8]) -> bool {
    CHOICES_KEY.find_iter(payload).any(|at| {
        let mut rest = payload[at + 9..]
            .iter()
            .filter(|b| !b.is_ascii_whitespace());
        rest.next() == Some(&b':') && rest.next() == Some(&b'[') && rest.next() == Some(&b']')
    })
}

/// Output buffer size in strip mode: frames are split off one shared allocation, so a stream
/// allocates once per this many bytes instead of once per frame.
const OUT_BLOCK: usize = 16 * 1024;

pub struct StreamTap {
    splitter: SseSplitter,
    out: BytesMut,
    strip: bool,
    usage: Option<Usage>,
    /// Data events seen, for an estimate when the stream ends before its usage chunk.
    data_events: u64,
    /// Rough prompt-size estimate (request bytes / 4) for the same case.
    estimated_input: u64,
}

impl StreamTap {
    pub fn new(strip: bool, request_len: usize) -> Self {
        Self {
            splitter: SseSplitter::new(),
            out: BytesMut::new(),
            strip,
            usage: None,
            data_events: 0,
            estimated_input: (request_len / 4) as u64,
        }
    }

    /// Processes one upstream chunk; returns what to send to the client now, if anything.
    pub fn on_chunk(&mut self, chunk: Bytes) -> Option<Bytes> {
        if !self.strip {
            let forward = chunk.clone();
            let (usage, events) = (&mut self.usage, &mut self.data_events);
            self.splitter.push(chunk, |event| {
                inspect(&event, usage, events);
            });
            return Some(forward);
        }
        if self.out.capacity() < chunk.len() {
            self.out.reserve(OUT_BLOCK.max(chunk.len()));
        }
        let (usage, events, out) = (&mut self.usage, &mut self.data_events, &mut self.out);
        self.splitter.push(chunk, |event| {
            let kind = inspect(&event, usage, events);
            if kind != EventKind::UsageOnly {
                write_event(out, &event, &kind);
            }
        });
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    /// At the upstream's end: whatever event was left without its blank line.
    pub fn finish(&mut self) -> Option<Bytes> {
        let rest = self.splitter.finish()?;
        let kind = inspect(&rest, &mut self.usage, &mut self.data_events);
        if !self.strip {
            // Already forwarded as part of its chunk.
            return None;
        }
        if kind == EventKind::UsageOnly {
            return None;
        }
        let mut out = BytesMut::with_capacity(rest.len());
        write_event(&mut out, &rest, &kind);
        Some(out.freeze())
    }

    /// A terminal error event in the OpenAI dialect, starting a fresh event if the client is
    /// in the middle of one.
    pub fn error_event(&mut self, message: &str, kind: &str, code: &str) -> Bytes {
        let mid_event = !self.strip && self.splitter.pending() > 0;
        let event = openai::error_event(message, kind, code);
        if mid_event {
            let mut out = BytesMut::with_capacity(event.len() + 2);
            out.put_slice(b"\n\n");
            out.put_slice(&event);
            out.freeze()
        } else {
            event
        }
    }

    /// The stream's usage: as reported, or estimated when the stream ended before its usage
    /// chunk (client disconnect, upstream failure).
    pub fn usage(&self) -> Option<Usage> {
        if self.usage.is_some() {
            return self.usage;
        }
        (self.data_events > 0).then(|| Usage {
            input: self.estimated_input,
            // The first chunk carries only the role; each later one roughly one token.
            output: self.data_events.saturating_sub(1),
            estimated: true,
            ..Usage::default()
        })
    }

    pub fn reported_usage(&self) -> Option<Usage> {
        self.usage
    }
}

#[derive(Debug, PartialEq, Eq)]
enum EventKind {
    Other,
    UsageOnly,
    /// The event carries `"usage":null` at this span of the event bytes (leading comma included
    /// when there is one), which strip mode removes.
    UsageNull(Range<usize>),
}

/// Looks at one event once: counts it, taps usage, and says what strip mode must do with it.
fn inspect(event: &[u8], usage: &mut Option<Usage>, data_events: &mut u64) -> EventKind {
    let Some(payload) = data_payload(event) else {
        return EventKind::Other;
    };
    if &*payload == b"[DONE]" {
        return EventKind::Other;
    }
    *data_events += 1;
    match usage::find_usage_field(&payload) {
        UsageField::Absent => EventKind::Other,
        UsageField::Object { value_at } => {
            if let Some(u) = usage::parse_openai_usage_at(&payload, value_at) {
                *usage = Some(u);
                if has_empty_choices(&payload) {
                    return EventKind::UsageOnly;
                }
            }
            EventKind::Other
        }
        UsageField::Null { key_at, value_end } => {
            // Offsets are into the payload; map them into the event when the payload is a
            // borrowed slice of it (the single-`data:`-line case, i.e. always for OpenAI).
            let Cow::Borrowed(p) = &payload else {
                return EventKind::Other;
            };
            let base = p.as_ptr() as usize - event.as_ptr() as usize;
            let mut start = key_at;
            while start > 0 && p[start - 1].is_ascii_whitespace() {
                start -= 1;
            }
            if start > 0 && p[start - 1] == b',' {
                // `...,"usage":null}`: drop the comma before it.
                return EventKind::UsageNull(base + start - 1..base + value_end);
            }
            // `{"usage":null,...}`: drop the comma after it instead.
            let mut end = value_end;
            while end < p.len() && p[end].is_ascii_whitespace() {
                end += 1;
            }
            if end < p.len() && p[end] == b',' {
                end += 1;
                while end < p.len() && p[end].is_ascii_whitespace() {
                    end += 1;
                }
                return EventKind::UsageNull(base + key_at..base + end);
            }
            EventKind::Other
        }
    }
}

fn write_event(out: &mut BytesMut, event: &[u8], kind: &EventKind) {
    match kind {
        EventKind::UsageNull(span) => {
            out.put_slice(&event[..span.start]);
            out.put_slice(&event[span.end..]);
        }
        _ => out.put_slice(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITH_USAGE: &str = concat!(
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null,\"obfuscation\":\"x\"}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"total_tokens\":9}}\n\n",
        "data: [DONE]\n\n",
    );
    const WITHOUT_USAGE: &str = concat!(
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"obfuscation\":\"x\"}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        "data: [DONE]\n\n",
    );

    fn run(strip: bool, input: &str, step: usize) -> (Vec<u8>, Option<Usage>) {
        let mut tap = StreamTap::new(strip, 100);
        let mut out = Vec::new();
        for c in input.as_bytes().chunks(step) {
            if let Some(b) = tap.on_chunk(Bytes::copy_from_slice(c)) {
                out.extend_from_slice(&b);
            }
        }
        if let Some(b) = tap.finish() {
            out.extend_from_slice(&b);
        }
        (out, tap.reported_usage())
    }

    #[test]
    fn pass_through_is_byte_identical_and_tapped() {
        for step in [1, 7, 64, 4096] {
            let (out, usage) = run(false, WITH_USAGE, step);
            assert_eq!(out, WITH_USAGE.as_bytes());
            assert_eq!(usage.map(|u| (u.input, u.output)), Some((7, 2)));
        }
    }

    #[test]
    fn strip_mode_restores_the_stream_without_include_usage() {
        for step in [1, 5, 33, 4096] {
            let (out, usage) = run(true, WITH_USAGE, step);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                WITHOUT_USAGE,
                "step {step}"
            );
            assert_eq!(usage.map(|u| u.output), Some(2));
        }
    }

    #[test]
    fn strips_usage_null_wherever_it_sits() {
        let input =
            "data: {\"usage\":null, \"id\":\"c\"}\n\ndata: {\"id\":\"c\" , \"usage\": null }\n\n";
        let (out, _) = run(true, input, 4096);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "data: {\"id\":\"c\"}\n\ndata: {\"id\":\"c\"  }\n\n"
        );
    }

    /// Feeds `input` cut at the given offsets.
    fn run_cuts(strip: bool, input: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut tap = StreamTap::new(strip, 100);
        let mut out = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            if cut > at {
                if let Some(b) = tap.on_chunk(Bytes::copy_from_slice(&input[at..cut])) {
                    out.extend_from_slice(&b);
                }
                at = cut;
            }
        }
        if let Some(b) = tap.finish() {
            out.extend_from_slice(&b);
        }
        out
    }

    #[test]
    fn any_framing_gives_the_same_output() {
        // Every single cut point, then many random multi-cut framings (fixed seed).
        let crlf = WITH_USAGE.replace("\n", "\r\n");
        for (input, expected) in [
            (WITH_USAGE.to_string(), WITHOUT_USAGE.to_string()),
            (crlf.clone(), WITHOUT_USAGE.replace("\n", "\r\n")),
        ] {
            let input = input.as_bytes();
            for cut in 0..input.len() {
                assert_eq!(
                    run_cuts(true, input, &[cut]),
                    expected.as_bytes(),
                    "cut {cut}"
                );
                assert_eq!(run_cuts(false, input, &[cut]), input, "cut {cut}");
            }
            let mut rng = fastrand::Rng::with_seed(7);
            for _ in 0..500 {
                let mut cuts: Vec<usize> = (0..rng.usize(1..12))
                    .map(|_| rng.usize(0..input.len()))
                    .collect();
                cuts.sort_unstable();
                assert_eq!(
                    run_cuts(true, input, &cuts),
                    expected.as_bytes(),
                    "cuts {cuts:?}"
                );
                assert_eq!(run_cuts(false, input, &cuts), input, "cuts {cuts:?}");
            }
        }
    }

    #[test]
    fn usage_only_chunk_with_python_separators_is_stripped() {
        let input = "data: {\"id\": \"c\", \"choices\": [{\"delta\": {\"content\": \"a\"}}], \"usage\": null}\n\ndata: {\"id\": \"c\", \"choices\": [ ], \"usage\": {\"prompt_tokens\": 3, \"completion_tokens\": 1}}\n\ndata: [DONE]\n\n";
        let (out, usage) = run(true, input, 4096);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "data: {\"id\": \"c\", \"choices\": [{\"delta\": {\"content\": \"a\"}}]}\n\ndata: [DONE]\n\n"
        );
        assert_eq!(usage.map(|u| u.input), Some(3));
        assert!(!has_empty_choices(br#"{"choices":[{"index":0}]}"#));
    }

    #[test]
    fn pass_through_forwards_the_same_buffer() {
        let mut tap = StreamTap::new(false, 0);
        let chunk = Bytes::from_static(b"data: {}\n\n");
        let out = tap.on_chunk(chunk.clone()).unwrap();
        assert_eq!(out.as_ptr(), chunk.as_ptr());
    }

    #[test]
    fn usage_is_estimated_when_the_stream_is_cut() {
        let mut tap = StreamTap::new(false, 400);
        tap.on_chunk(Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n"));
        let u = tap.usage().unwrap();
        assert_eq!((u.input, u.output), (100, 2));
        assert!(tap.reported_usage().is_none());
    }

    #[test]
    fn error_event_terminates_a_partial_event_first() {
        let mut tap = StreamTap::new(false, 0);
        tap.on_chunk(Bytes::from_static(b"data: {\"choi"));
        let e = tap.error_event("m", "t", "c");
        assert!(e.starts_with(b"\n\ndata: {\"error\""));
    }
}
