//! Load-test harness for ferrogate.
//!
//! Each module does one job: `mock` is the fake OpenAI upstream, `bare_proxy`
//! the minimal hyper baseline, `openloop`/`closedloop` the load generators,
//! `procstat` the /proc probes, `run` and `callgrind` the orchestrators.

pub mod bare_proxy;
pub mod callgrind;
pub mod client;
pub mod closedloop;
pub mod loadgen;
pub mod measure;
pub mod mock;
pub mod openloop;
pub mod peers;
pub mod plot;
pub mod procs;
pub mod procstat;
pub mod proctree;
pub mod report;
pub mod resilience;
pub mod run;
pub mod server;
pub mod signals;
pub mod stats;
pub mod sysinfo;
pub mod timerfd;
pub mod util;
pub mod workload;
