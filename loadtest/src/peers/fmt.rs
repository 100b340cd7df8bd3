//! Number formatting shared by peers.md, the README table and docs/performance.md.

/// A duration in µs with a unit that keeps 3 significant figures readable:
/// `182 µs`, `2.31 ms`, `1.24 s`.
pub fn time_us(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2} s", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1} ms", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.2} ms", v / 1e3)
    } else if a >= 10.0 {
        format!("{v:.0} µs")
    } else {
        format!("{v:.1} µs")
    }
}

/// Like `time_us` with an explicit sign (added latency).
pub fn signed_us(v: f64) -> String {
    if v >= 0.0 {
        format!("+{}", time_us(v))
    } else {
        format!("−{}", time_us(-v))
    }
}

pub fn ratio(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}×")
    } else if v >= 10.0 {
        format!("{v:.1}×")
    } else {
        format!("{v:.2}×")
    }
}

pub fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

pub fn rps(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

pub fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(time_us(182.4), "182 µs");
        assert_eq!(time_us(7.25), "7.2 µs");
        assert_eq!(time_us(2310.0), "2.31 ms");
        assert_eq!(time_us(16400.0), "16.4 ms");
        assert_eq!(time_us(1_240_000.0), "1.24 s");
        assert_eq!(signed_us(-40.0), "−40 µs");
        assert_eq!(ratio(512.3), "512×");
        assert_eq!(ratio(23.46), "23.5×");
        assert_eq!(ratio(1.234), "1.23×");
        assert_eq!(rps(32_076.0), "32.1k");
        assert_eq!(mib(27_443), "26.8 MiB");
    }
}
