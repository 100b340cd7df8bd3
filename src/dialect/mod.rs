//! Wire formats of the APIs clients and providers speak: what the hot path must read from them and
//! how errors look in each. Pure code: no tokio or hyper types in here.

pub mod max_tokens;
pub mod openai;
