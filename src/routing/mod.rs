//! Routing: the immutable snapshot compiled from a config, model lookup (exact, glob,
//! `provider/model`), weighted target and key choice, and provider health.

pub mod health;
pub mod pick;
pub mod snapshot;
pub mod target_state;

pub use snapshot::{compile, CompileError, ProviderRt, Resolved, Route, Snapshot, TargetRt};
