//! Observability: Prometheus metrics and the request log, both kept off the request path's
//! critical section (pre-resolved handles, a lock-free queue drained in the background).

pub mod clock;
pub mod metrics;
pub mod request_log;
