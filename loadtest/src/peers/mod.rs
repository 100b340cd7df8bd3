//! `loadtest peers`: ferrogate against other LLM gateways (LiteLLM proxy,
//! Portkey's open-source gateway) on the same mock upstream, in one
//! interleaved run; and `loadtest report`, which puts the result in the README.
//!
//! `run` orchestrates and `trial` measures one contestant at one load;
//! `install` fetches the peers; `contestant` starts them;
//! `sustain` decides when a rate is too much; `goals` computes the ratios of
//! issue #3; `model` is the JSON; `markdown`, `section`, `charts` and
//! `output` render it; `readme` swaps the README section.

pub mod args;
pub mod charts;
pub mod contestant;
pub mod fmt;
pub mod goals;
pub mod install;
pub mod loopback;
pub mod markdown;
pub mod model;
pub mod notes;
pub mod output;
pub mod readme;
pub mod run;
pub mod section;
pub mod sustain;
pub mod trial;

pub use args::{PeersArgs, ReportArgs};
