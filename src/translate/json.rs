//! The one place that picks the JSON parser for the documents translation decodes per request
//! and per stream event: client request bodies, upstream answers and upstream stream events.
//!
//! It is serde_json. simd-json was measured against it on these same types and entry points
//! (`benches/json_decode`, which compiles `translate` a second time with a simd-json version of
//! this module) and was not adopted (docs/json-decoding.md): it is not clearly faster on the
//! gateway's documents (its serde path copies the input into a mutable buffer and builds a tape
//! before serde sees the first token; the time then goes into the same `String`s and `Value`s),
//! and it decodes differently: no recursion limit (a 200 KB body of nested `[` overflows the
//! stack), integers beyond 64 bits rejected instead of read as `f64`, lone surrogate escapes
//! accepted, error texts without line and column, and no borrowed strings.
//!
//! Error bodies and tool-call argument strings are parsed with serde_json directly: they are not
//! per-event work.

use serde::de::{Deserialize, DeserializeOwned};

/// The parse error the decoders report (its `Display` text reaches the client or the log).
pub type Error = serde_json::Error;

/// Parses a whole document into an owned value.
pub fn from_slice<T: DeserializeOwned>(data: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(data)
}

/// Parses a document already checked as UTF-8 into a value that may borrow strings from it.
/// `_scratch` is where a parser that works in place would copy the text (serde_json does not
/// need it, and an untouched `Vec::new()` costs nothing).
pub fn from_str<'a, T: Deserialize<'a>>(
    text: &'a str,
    _scratch: &'a mut Vec<u8>,
) -> Result<T, Error> {
    serde_json::from_str(text)
}
