//! Protocol translation between dialects, through one internal model (`ir`).
//!
//! Each dialect module decodes its wire format into `ir` types and encodes `ir` types back:
//! requests, non-stream responses, streams (as `StreamDecode` / `StreamEncode` state machines
//! that emit output as soon as input arrives) and errors. Same-dialect traffic never comes here:
//! it is passed through byte for byte by `proxy`.

pub mod anthropic;
pub mod bedrock;
pub mod eventstream;
pub mod gemini;
pub mod ir;
pub mod openai;
