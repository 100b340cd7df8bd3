//! Shared test kit: `MockUpstream` (scripted upstream), `Gateway` (the real binary), fixtures,
//! metrics parsing and HTTP helpers. Each test file does `mod common;` and uses a subset.
#![allow(dead_code, unused_imports)]
// The test kit is not the gateway: its mock servers may lock and read the system clock.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

pub mod config;
pub mod fixtures;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod mock_upstream;
pub mod proc;
pub mod python;
pub mod stores;
pub mod tls;

pub use config::{oai, Cfg, CLIENT_KEY, KEY_1, KEY_2};
pub use fixtures::*;
pub use gateway::{run_cli, Gateway};
pub use http::*;
pub use metrics::{has_metric, metric_sum, metric_value};
pub use mock_upstream::{
    openai_error, overloaded_503, refused_port, Behavior, Framing, Gate, MockUpstream,
    RecordedRequest,
};

/// A `MockUpstream` plus a `Gateway` configured by `cfg` (pointing at it).
pub async fn setup_with(cfg: impl FnOnce(Cfg) -> Cfg) -> (MockUpstream, Gateway) {
    let up = MockUpstream::start().await;
    let yaml = cfg(Cfg::new(&up.base_url())).yaml();
    let gw = Gateway::start(&yaml).await;
    (up, gw)
}

/// The standard topology (see `config`).
pub async fn setup() -> (MockUpstream, Gateway) {
    setup_with(|c| c).await
}
