//! JSON string literals on the stream paths, by hand: writing a short text as a JSON string,
//! and reading one that starts at a known place. The stream codecs do this once per event, on
//! texts of a few bytes, where serde_json's per-call setup and byte-by-byte escape loop cost
//! more than the work (kept apart from `json`, the module that picks the parser).

/// Whether `s` is written as JSON exactly as it is, between quotes: serde_json escapes only
/// `"`, `\` and control characters below 0x20, so any other text needs no escaping. Written as
/// one pass without early exit, which the compiler vectorises.
#[inline]
fn needs_no_escape(s: &[u8]) -> bool {
    !s.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

/// Appends `s` as a JSON string, the same bytes as `serde_json::to_writer(out, s)`. The stream
/// encoders write one short text per event; most need no escape and are copied as they are,
/// without serde_json's byte-by-byte escape loop.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    if needs_no_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Reads the JSON string literal that starts right after an opening quote at `rest[0]`:
/// returns the decoded text and how many bytes of `rest` it used (its closing quote included).
/// `None` when `rest` holds no complete, valid string (the caller's general parser then reports
/// what is wrong). Text without escapes is borrowed.
pub fn string_body(rest: &[u8]) -> Option<(std::borrow::Cow<'_, str>, usize)> {
    let mut at = 0;
    let mut escaped = false;
    let end = loop {
        let p = at + memchr::memchr2(b'"', b'\\', &rest[at..])?;
        if rest[p] == b'"' {
            break p;
        }
        escaped = true;
        at = p + 2;
        if at > rest.len() {
            return None;
        }
    };
    let raw = &rest[..end];
    if raw.iter().any(|&b| b < 0x20) {
        return None; // raw control characters are not allowed inside a JSON string
    }
    let text = if escaped {
        // `raw` plus its quotes is a whole JSON string; serde_json decodes the escapes.
        let quoted = rest.get(..end + 1).and_then(|q| {
            let mut with_open = Vec::with_capacity(q.len() + 1);
            with_open.push(b'"');
            with_open.extend_from_slice(q);
            serde_json::from_slice::<String>(&with_open).ok()
        })?;
        std::borrow::Cow::Owned(quoted)
    } else {
        std::borrow::Cow::Borrowed(std::str::from_utf8(raw).ok()?)
    };
    Some((text, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_str_writes_the_bytes_serde_json_writes() {
        for s in [
            "",
            "plain words",
            "quote \" and backslash \\",
            "new\nline\ttab\r\u{1}\u{1f}",
            "ünïcödé ✓ 🎉 and \u{7f}",
            "</script>",
        ] {
            let mut ours = Vec::new();
            write_str(&mut ours, s);
            assert_eq!(ours, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn string_body_borrows_plain_text_and_decodes_escapes() {
        let (text, used) = string_body(br#"Hello"}}"#).unwrap();
        assert!(matches!(text, std::borrow::Cow::Borrowed("Hello")));
        assert_eq!(used, 6);
        let (text, used) = string_body(br#"a\"b\\c\n\u00e9\ud83c\udf89"}"#).unwrap();
        assert_eq!(text, "a\"b\\c\né🎉");
        assert_eq!(used, 28);
        // Unterminated, a dangling escape, a raw control character, invalid UTF-8, a lone
        // surrogate: none of them is read here.
        for bad in [
            &b"abc"[..],
            b"abc\\",
            b"a\nb\"",
            b"\xff\"",
            br#"\ud800""#,
            br#"\x""#,
        ] {
            assert!(
                string_body(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
