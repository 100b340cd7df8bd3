//! The clock for per-frame timing of streams, calibrated once per process.

/// Raw TSC reads scaled once per stream (see `proxy::stream_body`).
pub static CLOCK: std::sync::LazyLock<quanta::Clock> = std::sync::LazyLock::new(quanta::Clock::new);

/// Calibrates the frame clock now (it takes a few milliseconds) rather than on the first stream.
pub fn init() {
    std::sync::LazyLock::force(&CLOCK);
}
