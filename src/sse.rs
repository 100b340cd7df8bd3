//! Incremental Server-Sent-Events framing.
//!
//! Splits a byte stream into whole events (each slice includes its terminating blank line) without
//! copying when an event lies inside one chunk; only a partial event at a chunk's end is carried
//! over. Accepts `\n`, `\r\n` and `\r` line endings (Gemini sends `\r\n\r\n`), and flushes a final
//! event that lacks its blank line at end of stream.
//!
//! Hand-written because it is the streaming hot path: events are borrowed slices of the chunk,
//! and the split reports where each event's last line starts so the taps need not look again.

use std::borrow::Cow;

use bytes::{Buf, Bytes, BytesMut};

/// Where an unfinished scan stopped: the start of the last, incomplete line, how far it was
/// already searched for a line terminator, and where the last complete non-empty line began.
#[derive(Debug, Default, Clone, Copy)]
struct Resume {
    line_start: usize,
    searched: usize,
    last_line: usize,
}

/// A complete event found by a scan: it ends at `end` (its blank line included), and its last
/// non-empty line starts at `last_line`.
#[derive(Debug, Clone, Copy)]
struct Found {
    end: usize,
    last_line: usize,
}

/// Scans `buf` from `at`. `Ok`: the first event and where it ends. `Err(resume)`: no complete
/// event yet; the next scan continues from there, so each byte is searched about once however
/// finely an event is fragmented.
#[inline]
fn scan(buf: &[u8], at: Resume) -> Result<Found, Resume> {
    let mut line_start = at.line_start;
    let mut last_line = at.last_line;
    let mut i = at.searched.max(at.line_start);
    while let Some(off) = memchr::memchr2(b'\n', b'\r', &buf[i..]) {
        let p = i + off;
        let term_len = if buf[p] == b'\r' {
            match buf.get(p + 1) {
                Some(b'\n') => 2,
                Some(_) => 1,
                None => {
                    return Err(Resume {
                        line_start,
                        searched: p,
                        last_line,
                    })
                }
            }
        } else {
            1
        };
        let next = p + term_len;
        if p == line_start {
            // An empty line ends the event (a blank line at the very start is a tiny event of
            // its own, which callers forward unchanged).
            return Ok(Found {
                end: next,
                last_line,
            });
        }
        last_line = line_start;
        // `\n\n`, the usual end of an event: no second search for a one-byte line.
        if buf.get(next) == Some(&b'\n') {
            return Ok(Found {
                end: next + 1,
                last_line,
            });
        }
        line_start = next;
        i = next;
    }
    Err(Resume {
        line_start,
        searched: buf.len(),
        last_line,
    })
}

/// Bytes held for one unfinished event before it is handed on unsplit: an upstream that never
/// sends a blank line must not make the gateway buffer without bound.
pub const MAX_PENDING: usize = 8 * 1024 * 1024;

/// One complete event, borrowed from the chunk (or from the splitter's carry-over when it
/// spans chunks).
#[derive(Debug, Clone, Copy)]
pub struct SseEvent<'a> {
    /// The event, its terminating blank line included.
    pub bytes: &'a [u8],
    /// Where its last non-empty line starts (0 for a one-line event): the `data:` line of the
    /// common event, found by the split already, so the taps need not search for it again.
    pub last_line: usize,
}

impl<'a> SseEvent<'a> {
    /// [`name_and_data`] of this event, read from where its last line starts for the common
    /// shapes (`data: X` alone, or `event: N` then `data: X`): the data is not searched again.
    /// The name is given as bytes (whoever needs it as text checks it then).
    #[inline]
    pub fn name_and_data(&self) -> (Option<&'a [u8]>, Option<Cow<'a, [u8]>>) {
        let (head, last) = self.bytes.split_at(self.last_line.min(self.bytes.len()));
        if let Some(value) = last.strip_prefix(b"data:") {
            let value = trim_line_ends(value);
            let value = Cow::Borrowed(value.strip_prefix(b" ").unwrap_or(value));
            if head.is_empty() {
                return (None, Some(value));
            }
            if let Some(name) = head.strip_prefix(b"event:") {
                let name = trim_line_ends(name);
                if memchr::memchr2(b'\n', b'\r', name).is_none() {
                    return (Some(name.strip_prefix(b" ").unwrap_or(name)), Some(value));
                }
            }
        }
        let (name, data) = name_and_data(self.bytes);
        (name.map(str::as_bytes), data)
    }
}

fn trim_line_ends(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = line {
        line = rest;
    }
    line
}

/// Splits a stream of chunks into whole events.
#[derive(Debug, Default)]
pub struct SseSplitter {
    carry: BytesMut,
    /// Where scanning `carry` resumes.
    resume: Resume,
}

impl SseSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held back because they don't complete an event yet.
    pub fn pending(&self) -> usize {
        self.carry.len()
    }

    /// Feeds one chunk and calls `on_event` with every event it completes, in order. Events
    /// inside one chunk are slices of it (no copy, no reference count touched); only an
    /// unfinished tail is copied (once).
    #[inline]
    pub fn push_each(&mut self, chunk: &[u8], mut on_event: impl FnMut(SseEvent<'_>)) {
        if self.carry.is_empty() {
            let mut at = 0;
            loop {
                match scan(&chunk[at..], Resume::default()) {
                    Ok(found) => {
                        on_event(SseEvent {
                            bytes: &chunk[at..at + found.end],
                            last_line: found.last_line,
                        });
                        at += found.end;
                    }
                    Err(resume) => {
                        if at < chunk.len() {
                            self.carry.extend_from_slice(&chunk[at..]);
                            self.resume = resume;
                        }
                        return;
                    }
                }
            }
        }
        self.carry.extend_from_slice(chunk);
        while !self.carry.is_empty() {
            match scan(&self.carry, self.resume) {
                Ok(found) => {
                    on_event(SseEvent {
                        bytes: &self.carry[..found.end],
                        last_line: found.last_line,
                    });
                    self.carry.advance(found.end);
                    self.resume = Resume::default();
                }
                Err(resume) => {
                    self.resume = resume;
                    break;
                }
            }
        }
        if self.carry.len() > MAX_PENDING {
            on_event(SseEvent {
                bytes: &self.carry,
                last_line: last_line_start(&self.carry),
            });
            self.carry.clear();
            self.resume = Resume::default();
        }
    }

    /// [`push_each`](Self::push_each) with each event as `Bytes`: zero-copy slices of `chunk`
    /// for events inside it, copies for events that spanned chunks.
    pub fn push(&mut self, chunk: Bytes, mut on_event: impl FnMut(Bytes)) {
        let range = chunk.as_ptr_range();
        self.push_each(&chunk, |event| {
            let bytes = event.bytes;
            on_event(if range.contains(&bytes.as_ptr()) {
                chunk.slice_ref(bytes)
            } else {
                Bytes::copy_from_slice(bytes)
            })
        });
    }

    /// At end of stream: the unterminated last event, if any.
    pub fn finish(&mut self) -> Option<Bytes> {
        self.resume = Resume::default();
        if self.carry.is_empty() {
            None
        } else {
            Some(self.carry.split().freeze())
        }
    }
}

/// Where the last non-empty line of `event` starts (what the split reports for the events it
/// completes; this is for the unterminated last event of a stream).
pub fn last_line_start(event: &[u8]) -> usize {
    let mut end = event.len();
    while end > 0 && matches!(event[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    memchr::memrchr2(b'\n', b'\r', &event[..end]).map_or(0, |i| i + 1)
}

/// For `rest`, what follows `data:` on an event's last field line: the value (one leading space
/// stripped) when nothing but that line's end and the blank line follows, else `None`.
fn last_data_value(rest: &[u8]) -> Option<&[u8]> {
    let eol = memchr::memchr2(b'\n', b'\r', rest)?;
    if rest.len() - eol <= 4 && rest[eol..].iter().all(|&b| b == b'\n' || b == b'\r') {
        let value = &rest[..eol];
        Some(value.strip_prefix(b" ").unwrap_or(value))
    } else {
        None
    }
}

/// The `data:` payload of one event (several `data:` lines joined by `\n`), if it has one.
pub fn data_payload(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    // Fast path for the common shape `data: <payload><eol><eol>` (every OpenAI event).
    if let Some(value) = event.strip_prefix(b"data:").and_then(last_data_value) {
        return Some(Cow::Borrowed(value));
    }
    let mut found: Option<Cow<'_, [u8]>> = None;
    for line in lines(event) {
        let Some(rest) = line.strip_prefix(b"data:") else {
            continue;
        };
        let value = rest.strip_prefix(b" ").unwrap_or(rest);
        found = Some(match found {
            None => Cow::Borrowed(value),
            Some(prev) => {
                let mut joined = prev.into_owned();
                joined.push(b'\n');
                joined.extend_from_slice(value);
                Cow::Owned(joined)
            }
        });
    }
    found
}

/// The `event:` name of one event, if it has one (a single optional space after the colon is
/// stripped, so `event:x` and `event: x` both give `x`).
pub fn event_name(event: &[u8]) -> Option<&str> {
    lines(event).find_map(|line| {
        let rest = line.strip_prefix(b"event:")?;
        let value = rest.strip_prefix(b" ").unwrap_or(rest);
        std::str::from_utf8(value).ok()
    })
}

/// `(event_name(event), data_payload(event))`, in one pass over the event for the shape
/// `event: <name><eol>data: <payload><eol><eol>` (every Anthropic event): the general functions
/// scan the event once per field they look up. Events without data (comments, keep-alives)
/// give `None` data.
pub fn name_and_data(event: &[u8]) -> (Option<&str>, Option<Cow<'_, [u8]>>) {
    if let Some(rest) = event.strip_prefix(b"event:") {
        if let Some(eol) = memchr::memchr2(b'\n', b'\r', rest) {
            let term = if rest[eol..].starts_with(b"\r\n") {
                2
            } else {
                1
            };
            let next = &rest[eol + term..];
            if let Some(data) = next.strip_prefix(b"data:").and_then(last_data_value) {
                let name = &rest[..eol];
                let name = name.strip_prefix(b" ").unwrap_or(name);
                return (std::str::from_utf8(name).ok(), Some(Cow::Borrowed(data)));
            }
        }
    }
    (event_name(event), data_payload(event))
}

/// True for an event with no fields but comments (`: keep-alive`) or nothing at all.
pub fn is_comment_only(event: &[u8]) -> bool {
    lines(event).all(|line| line.is_empty() || line.starts_with(b":"))
}

/// Lines of an event, without their terminators.
fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = event;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match memchr::memchr2(b'\n', b'\r', rest) {
            Some(p) => {
                let line = &rest[..p];
                let skip = if rest[p] == b'\r' && rest.get(p + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[p + skip..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = &[];
                Some(line)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(input: &[u8], step: usize) -> Vec<Vec<u8>> {
        let mut s = SseSplitter::new();
        let mut out = Vec::new();
        for chunk in input.chunks(step.max(1)) {
            s.push(Bytes::copy_from_slice(chunk), |e| out.push(e.to_vec()));
        }
        if let Some(rest) = s.finish() {
            out.push(rest.to_vec());
        }
        out
    }

    #[test]
    fn splits_lf_crlf_and_cr_events() {
        for sep in ["\n", "\r\n", "\r"] {
            let text = format!("data: a{sep}{sep}event: x{sep}data: b{sep}{sep}");
            let events = split_all(text.as_bytes(), 1000);
            assert_eq!(events.len(), 2, "sep {sep:?}");
            assert_eq!(events.concat(), text.as_bytes());
        }
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let text = b"data: {\"a\":1}\n\nevent: e\r\ndata: x\r\n\r\n: comment\n\ndata: [DONE]\n\n";
        let whole = split_all(text, text.len());
        assert_eq!(whole.len(), 4);
        for step in 1..text.len() {
            assert_eq!(split_all(text, step), whole, "step {step}");
        }
    }

    #[test]
    fn a_huge_event_is_scanned_linearly_and_bounded() {
        // 3 MB in one `data:` line arriving in 4 KB pieces, then its blank line.
        let mut event = b"data: ".to_vec();
        event.extend(std::iter::repeat_n(b'x', 3 << 20));
        event.extend_from_slice(b"\n\n");
        let mut s = SseSplitter::new();
        let mut got = Vec::new();
        for c in event.chunks(4096) {
            s.push(Bytes::copy_from_slice(c), |e| got.push(e.len()));
        }
        assert_eq!(got, vec![event.len()]);
        // Past the cap, pending bytes are handed on rather than held.
        let mut s = SseSplitter::new();
        let mut handed = 0;
        for _ in 0..(MAX_PENDING / 65536 + 2) {
            s.push(Bytes::from(vec![b'y'; 65536]), |e| handed += e.len());
        }
        assert!(s.pending() <= MAX_PENDING);
        assert!(handed > 0);
        // A many-line event handed on unsplit still says where its last line starts.
        let mut s = SseSplitter::new();
        let line = b"data: {\"usage\":null}\n".repeat(MAX_PENDING / 20 + 1);
        let mut seen = Vec::new();
        for piece in [&line[..10], &line[10..]] {
            s.push_each(piece, |e| {
                seen.push((e.last_line, last_line_start(e.bytes)))
            });
        }
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, seen[0].1);
        assert!(seen[0].0 > 0);
    }

    #[test]
    fn the_last_line_is_reported_at_every_split_point() {
        let text: &[u8] =
            b"data: {\"a\":1}\n\nevent: e\r\ndata: x\r\n\r\nevent:f\ndata:\n\nid: 1\ndata: y\n: c\n\n\ndata: z\r\r: end\n\n";
        let expected: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (
                b"data: {\"a\":1}\n\n".to_vec(),
                b"data: {\"a\":1}\n\n".to_vec(),
            ),
            (
                b"event: e\r\ndata: x\r\n\r\n".to_vec(),
                b"data: x\r\n\r\n".to_vec(),
            ),
            (b"event:f\ndata:\n\n".to_vec(), b"data:\n\n".to_vec()),
            (b"id: 1\ndata: y\n: c\n\n".to_vec(), b": c\n\n".to_vec()),
            (b"\n".to_vec(), b"\n".to_vec()),
            (b"data: z\r\r".to_vec(), b"data: z\r\r".to_vec()),
            (b": end\n\n".to_vec(), b": end\n\n".to_vec()),
        ];
        for step in 1..=text.len() {
            let mut s = SseSplitter::new();
            let mut got = Vec::new();
            for chunk in text.chunks(step) {
                s.push_each(chunk, |e| {
                    got.push((e.bytes.to_vec(), e.bytes[e.last_line..].to_vec()));
                    assert_eq!(e.last_line, last_line_start(e.bytes), "step {step}");
                    let (name, data) = name_and_data(e.bytes);
                    assert_eq!(
                        e.name_and_data(),
                        (name.map(str::as_bytes), data),
                        "step {step}"
                    );
                });
            }
            assert_eq!(got, expected, "step {step}");
        }
    }

    #[test]
    fn events_inside_a_chunk_are_borrowed_from_it() {
        let chunk: &[u8] = b"data: 1\n\ndata: 2\n\ndata: 3";
        let mut s = SseSplitter::new();
        let mut offsets = Vec::new();
        s.push_each(chunk, |e| {
            offsets.push(e.bytes.as_ptr() as usize - chunk.as_ptr() as usize)
        });
        assert_eq!(offsets, [0, 9]);
        assert_eq!(s.pending(), 7);
    }

    #[test]
    fn flushes_the_last_event_without_blank_line() {
        let events = split_all(b"data: 1\n\ndata: 2\n", 4);
        assert_eq!(events, vec![b"data: 1\n\n".to_vec(), b"data: 2\n".to_vec()]);
    }

    #[test]
    fn zero_copy_when_events_are_whole() {
        let chunk = Bytes::from_static(b"data: 1\n\ndata: 2\n\n");
        let base = chunk.as_ptr();
        let mut s = SseSplitter::new();
        let mut ptrs = Vec::new();
        s.push(chunk, |e| ptrs.push(e.as_ptr()));
        assert_eq!(ptrs.len(), 2);
        assert_eq!(ptrs[0], base);
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn data_payload_joins_lines_and_strips_one_space() {
        assert_eq!(
            data_payload(b"event: x\ndata: {}\n\n").as_deref(),
            Some(&b"{}"[..])
        );
        assert_eq!(
            data_payload(b"data:a\ndata:  b\n\n").as_deref(),
            Some(&b"a\n b"[..])
        );
        assert_eq!(data_payload(b": ping\n\n"), None);
    }

    #[test]
    fn name_and_data_reads_both_fields() {
        for (event, name, data) in [
            (
                &b"event: message_start\ndata: {\"a\":1}\n\n"[..],
                Some("message_start"),
                Some(&b"{\"a\":1}"[..]),
            ),
            (b"event:x\r\ndata:y\r\n\r\n", Some("x"), Some(b"y")),
            (b"event: x\rdata: y\r\r", Some("x"), Some(b"y")),
            (b"data: y\n\n", None, Some(b"y")),
            (b"event: ping\n\n", Some("ping"), None),
            (b": keep-alive\n\n", None, None),
            // Not the one-pass shape: answered by the general functions.
            (b"event: x\ndata: a\ndata: b\n\n", Some("x"), Some(b"a\nb")),
            (b"event: x\nid: 7\ndata: y\n\n", Some("x"), Some(b"y")),
            (b"event: x\ndata: y", Some("x"), Some(b"y")),
            (b"event: \xff\ndata: y\n\n", None, Some(b"y")),
        ] {
            let (n, d) = name_and_data(event);
            assert_eq!(n, name, "{event:?}");
            assert_eq!(d.as_deref(), data, "{event:?}");
        }
    }

    proptest::proptest! {
        /// The one-pass reader agrees with the general functions on any event.
        #[test]
        fn name_and_data_agrees_with_event_name_and_data_payload(
            bytes in proptest::collection::vec(
                proptest::sample::select(b"event:dat \r\n:xy\xff".to_vec()), 0..48),
            prefix in proptest::sample::select(vec!["", "event:", "event: x\n", "event: x\ndata:", "event: x\r\ndata:", "event:\rdata: y"]),
        ) {
            let mut event = prefix.as_bytes().to_vec();
            event.extend_from_slice(&bytes);
            let (name, data) = name_and_data(&event);
            proptest::prop_assert_eq!(name, event_name(&event));
            proptest::prop_assert_eq!(data, data_payload(&event));
        }

        /// Any stream of events, with any line endings, cut at any points, splits into the
        /// same events as when it arrives whole, and loses no byte.
        #[test]
        fn splitting_is_independent_of_chunk_boundaries(
            events in proptest::collection::vec(
                (proptest::option::of("[a-z_]{1,12}"), "[ -~]{0,40}", 0usize..3), 1..12),
            cuts in proptest::collection::vec(1usize..40, 1..30),
        ) {
            let mut text = Vec::new();
            let mut expected = Vec::new();
            for (name, data, eol) in &events {
                let eol = ["\n", "\r\n", "\r"][*eol];
                let mut ev = String::new();
                if let Some(n) = name {
                    ev.push_str(&format!("event: {n}{eol}"));
                }
                ev.push_str(&format!("data: {data}{eol}{eol}"));
                expected.push(ev.clone().into_bytes());
                text.extend_from_slice(ev.as_bytes());
            }
            let mut s = SseSplitter::new();
            let mut out: Vec<Vec<u8>> = Vec::new();
            let mut at = 0;
            let mut i = 0;
            while at < text.len() {
                let n = cuts[i % cuts.len()].min(text.len() - at);
                s.push(Bytes::copy_from_slice(&text[at..at + n]), |e| out.push(e.to_vec()));
                at += n;
                i += 1;
            }
            if let Some(rest) = s.finish() {
                out.push(rest.to_vec());
            }
            proptest::prop_assert_eq!(out.concat(), text.clone());
            // A bare `\r` line end followed by the next event's `\r` can only be told apart
            // from `\r\n` once the next byte arrives, so compare payloads, not slices.
            let payloads: Vec<Vec<u8>> = out
                .iter()
                .filter_map(|e| data_payload(e).map(|d| d.into_owned()))
                .collect();
            let want: Vec<Vec<u8>> = expected
                .iter()
                .filter_map(|e| data_payload(e).map(|d| d.into_owned()))
                .collect();
            proptest::prop_assert_eq!(payloads, want);
        }
    }
}
