//! `loadtest peers`: ferrogate against other LLM gateways (LiteLLM proxy,
//! Portkey's open-source gateway) and against a bare hyper proxy (the floor)
//! on the same mock upstream, in one interleaved run; and `loadtest report`,
//! which puts the result in the README and docs/performance.md.
//!
//! `run` orchestrates and `trial` measures one contestant at one load;
//! `install` fetches the peers; `contestant` starts them;
//! `sustain` decides when a rate is too much; `metric` reads the compared
//! figures; `goals` computes the ratios of issue #3 and `bare` the figures
//! against the bare proxy; `model` is the JSON; `markdown`, `bare_tables`,
//! `section`, `charts` and `output` render it; `readme` swaps the sections.

pub mod args;
pub mod bare;
pub mod bare_tables;
pub mod charts;
pub mod contestant;
pub mod fmt;
pub mod goals;
pub mod install;
pub mod loopback;
pub mod markdown;
pub mod metric;
pub mod model;
pub mod notes;
pub mod output;
pub mod readme;
pub mod run;
pub mod section;
pub mod sustain;
pub mod trial;

pub use args::{PeersArgs, ReportArgs};
