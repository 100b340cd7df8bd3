//! Per-provider outbound details: how a request is addressed and authenticated, and the
//! built-in mock. A provider that speaks the OpenAI dialect is configuration (`config::presets`), not code.

pub mod bedrock_sign;
pub mod mock;
pub mod openai;
pub mod outbound;
