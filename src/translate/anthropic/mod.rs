//! Anthropic Messages (`POST /v1/messages`) codec: requests, responses, streams and errors to
//! and from the internal model (`ir`). See `shared/protocols.md` §5 and §8.
//!
//! - `request`: client request → IR (`decode_request`), IR → upstream request (`encode_request`).
//! - `response`: upstream message → IR (`decode_response`), IR → client message
//!   (`encode_response`); also the usage and stop-reason mappings the stream shares.
//! - `stream`: upstream SSE events → IR events (`StreamDecoder`), IR events → client SSE
//!   (`StreamEncoder`).
//! - `error`: error bodies both ways.

mod error;
mod request;
mod response;
mod stream;

pub use error::{decode_error, encode_error, error_type};
/// Claude's thinking budget for a request's reasoning settings (Bedrock's Claude models take
/// the same).
pub(crate) use request::thinking_budget;
pub use request::{decode_request, encode_request};
pub use response::{decode_response, encode_response};
pub use stream::{StreamDecoder, StreamEncoder};
