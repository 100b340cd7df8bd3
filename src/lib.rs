//! ferrogate: a single-binary LLM gateway. See ARCHITECTURE.md for the map.

pub mod admin;
pub mod config;
pub mod dialect;
pub mod error;
pub mod glob;
pub mod governance;
pub mod http_headers;
pub mod logs;
pub mod pricing;
pub mod providers;
pub mod proxy;
pub mod reload;
pub mod resilience;
pub mod routing;
pub mod server;
pub mod sse;
pub mod state;
pub mod stream;
pub mod telemetry;
pub mod translate;
pub mod upstream;
pub mod usage;
