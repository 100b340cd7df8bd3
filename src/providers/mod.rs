//! How to talk to each provider kind: the operation's upstream path (`endpoint`, `urls`), header
//! hygiene both ways (`openai`), SigV4 for Bedrock (`bedrock_sign`), and the built-in mock. A
//! provider that speaks the OpenAI dialect is configuration (`presets`), not code.

pub mod bedrock_sign;
mod endpoint;
pub mod mock;
pub mod openai;
pub mod urls;

pub use endpoint::Endpoint;
