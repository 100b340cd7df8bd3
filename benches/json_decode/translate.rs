//! The translate sources of src/translate compiled again, with simd-json behind
//! `translate::json` (the one module that picks the parser); see main.rs.

#[path = "../../src/translate/anthropic/mod.rs"]
pub mod anthropic;
#[path = "../../src/translate/bedrock/mod.rs"]
pub mod bedrock;
#[path = "../../src/translate/eventstream.rs"]
pub mod eventstream;
#[path = "../../src/translate/gemini/mod.rs"]
pub mod gemini;
#[path = "../../src/translate/ir.rs"]
pub mod ir;
// The test-only modules the codecs' own tests import (compiled when clippy builds this bench in
// test mode).
#[cfg(test)]
#[path = "../../src/translate/golden/mod.rs"]
mod golden;
#[path = "../../src/translate/json_text.rs"]
pub mod json_text;
#[path = "../../src/translate/openai/mod.rs"]
pub mod openai;
#[cfg(test)]
#[path = "../../src/translate/test_ir.rs"]
mod test_ir;

/// src/translate/json.rs with simd-json underneath.
pub mod json {
    use std::cell::RefCell;

    use serde::de::{Deserialize, DeserializeOwned};

    pub type Error = simd_json::Error;

    thread_local! {
        /// The mutable copy of the input and simd-json's parser buffers, reused per thread.
        static SCRATCH: RefCell<(Vec<u8>, simd_json::Buffers)> =
            RefCell::new((Vec::new(), simd_json::Buffers::default()));
    }

    pub fn from_slice<T: DeserializeOwned>(data: &[u8]) -> Result<T, Error> {
        SCRATCH.with_borrow_mut(|(copy, buffers)| {
            copy.clear();
            copy.extend_from_slice(data);
            simd_json::serde::from_slice_with_buffers(copy, buffers)
        })
    }

    pub fn from_str<'a, T: Deserialize<'a>>(
        text: &'a str,
        scratch: &'a mut Vec<u8>,
    ) -> Result<T, Error> {
        scratch.clear();
        scratch.extend_from_slice(text.as_bytes());
        SCRATCH.with_borrow_mut(|(_, buffers)| {
            simd_json::serde::from_slice_with_buffers(scratch, buffers)
        })
    }

    impl From<simd_json::Error> for super::ir::TranslateError {
        fn from(e: simd_json::Error) -> Self {
            super::ir::TranslateError::Json(e.to_string())
        }
    }
}
