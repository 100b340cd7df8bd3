//! The usage tap on an OpenAI-dialect pass-through stream, one SSE event at a time (the
//! pipeline owns the splitter, so a stream is split once however many observers it has).
//!
//! Plain mode only scans events (the pipeline forwards the upstream chunk itself, untouched).
//! Strip mode is for streams where the gateway injected `stream_options.include_usage`: it
//! removes exactly what that option added (the usage-only chunk and the `"usage":null` member of
//! every other chunk), so the client gets the bytes it would have got without the gateway. Strip
//! mode forwards whole events only, as soon as each is complete.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::LazyLock;

use bytes::{BufMut, Bytes, BytesMut};
use memchr::memmem;

use crate::sse::SseEvent;
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

pub struct OpenAiTap {
    out: BytesMut,
    strip: bool,
    usage: Option<Usage>,
    /// Data events seen, for an estimate when the stream ends before its usage chunk.
    data_events: u64,
    /// Rough prompt-size estimate (request bytes / 4) for the same case.
    estimated_input: u64,
}

impl OpenAiTap {
    pub fn new(strip: bool, request_len: usize) -> Self {
        Self {
            out: BytesMut::new(),
            strip,
            usage: None,
            data_events: 0,
            estimated_input: (request_len / 4) as u64,
        }
    }

    /// Whether this tap rewrites the stream (only whole events are forwarded then).
    pub fn strips(&self) -> bool {
        self.strip
    }

    /// Makes room for what a chunk of `len` bytes can produce (strip mode): frames are split
    /// off one shared allocation, so a stream allocates once per block instead of per frame.
    #[inline]
    pub fn reserve(&mut self, len: usize) {
        if self.strip && self.out.capacity() < len {
            self.out.reserve(OUT_BLOCK.max(len));
        }
    }

    /// One complete upstream event (its last line starting at `last_line`): tapped, and in
    /// strip mode written (edited) to the output.
    #[inline]
    pub fn on_event(&mut self, event: &[u8], last_line: usize) {
        if self.strip {
            // The common chunk, `data: {…,"usage":null}` and a blank line: no usage to read,
            // one member to drop, and a tail of known length (copied without a memcpy call).
            const COMMON_END: &[u8] = b",\"usage\":null}\n\n";
            if event.ends_with(COMMON_END) && event[last_line..].starts_with(b"data:") {
                self.data_events += 1;
                self.out.put_slice(&event[..event.len() - COMMON_END.len()]);
                self.out.put_slice(b"}\n\n");
                return;
            }
            if let Some(span) = trailing_usage_null(event, last_line) {
                // The same with other line ends.
                self.data_events += 1;
                self.out.put_slice(&event[..span.start]);
                self.out.put_slice(&event[span.end..]);
                return;
            }
        }
        let kind = inspect(
            SseEvent {
                bytes: event,
                last_line,
            },
            &mut self.usage,
            &mut self.data_events,
        );
        if self.strip && kind != EventKind::UsageOnly {
            write_event(&mut self.out, event, &kind);
        }
    }

    /// Strip mode: what is ready for the client.
    pub fn take_output(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    /// The stream's usage: as reported, or estimated when the stream ended before its usage
    /// chunk (client disconnect, upstream failure).
    pub fn usage(&self) -> Option<Usage> {
        crate::usage::reported_or_estimated(self.usage, self.data_events, self.estimated_input)
    }

    pub fn reported_usage(&self) -> Option<Usage> {
        self.usage
    }
}

/// The `,"usage":null` that `include_usage` added to a chunk, found from the end: OpenAI writes
/// `usage` as the last member, so in the common chunk the event's last line (from `last_line`,
/// which the split found) is a `data:` line ending in exactly `,"usage":null}`. That `}` is the
/// JSON's last byte, so the member belongs to the top-level object (it cannot sit inside a
/// string or a nested object). Anything else — other spacing, a usage object, `[DONE]`,
/// comments after the data — takes the full scan.
fn trailing_usage_null(event: &[u8], last_line: usize) -> Option<Range<usize>> {
    const TAIL: &[u8] = b",\"usage\":null}";
    let mut end = event.len();
    while end > last_line && matches!(event[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    let line = event.get(last_line..end)?;
    if !line.ends_with(TAIL) || !line.starts_with(b"data:") {
        return None;
    }
    Some(end - TAIL.len()..end - 1)
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
fn inspect(event: SseEvent<'_>, usage: &mut Option<Usage>, data_events: &mut u64) -> EventKind {
    let (_, Some(payload)) = event.name_and_data() else {
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
            let base = p.as_ptr() as usize - event.bytes.as_ptr() as usize;
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
