//! How long to wait before retrying: exponential backoff with full jitter, and the upstream's
//! own `retry-after` hint.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

/// Longest wait [`retry_after`] reports. Larger hints are clamped to it, so callers can add the
/// result to an `Instant` without overflow; any sane `retry_after_max` is far below it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The wait before retry number `retry` (1 for the first retry): uniformly random in
/// `[0, min(max, initial * 2^(retry-1))]` ("full jitter", which spreads retries of requests that
/// failed together instead of synchronising them). `retry` 0 is treated as 1.
pub fn delay(retry: u32, initial: Duration, max: Duration) -> Duration {
    let cap = cap(retry, initial, max);
    Duration::from_nanos(fastrand::u64(0..=super::nanos(cap)))
}

/// The upper bound of [`delay`] for `retry`: `min(max, initial * 2^(retry-1))`, without overflow.
pub fn cap(retry: u32, initial: Duration, max: Duration) -> Duration {
    let shift = retry.saturating_sub(1);
    let grown = 1u32
        .checked_shl(shift)
        .and_then(|factor| initial.checked_mul(factor))
        .unwrap_or(Duration::MAX);
    grown.min(max)
}

/// The upstream's wait hint: `retry-after-ms` (milliseconds, fractions allowed; OpenAI and
/// Azure), else `retry-after` (delay-seconds, or an HTTP-date taken relative to `now`). A date in
/// the past gives zero; missing, negative or unparseable values give `None` (the caller then
/// uses [`delay`]). Values above [`MAX_RETRY_AFTER`] are clamped to it. Reset headers such as
/// `x-ratelimit-reset-requests` are deliberately not read: they say when a quota window resets,
/// not when this request may be retried.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(parse_decimal) {
        return Some(clamp_secs(ms / 1000.0));
    }
    let value = header("retry-after")?;
    if let Some(secs) = parse_decimal(value) {
        return Some(clamp_secs(secs));
    }
    let date = parse_imf_fixdate(value)?;
    Some(
        date.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// A non-negative decimal (`12`, `1.5`). Signs, exponents, `inf`/`NaN` and anything else that
/// `f64::from_str` would also accept are refused.
fn parse_decimal(s: &str) -> Option<f64> {
    let mut digits = 0usize;
    let mut dots = 0usize;
    for b in s.bytes() {
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' => dots += 1,
            _ => return None,
        }
    }
    if digits == 0 || dots > 1 {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn clamp_secs(secs: f64) -> Duration {
    if secs >= MAX_RETRY_AFTER.as_secs_f64() {
        MAX_RETRY_AFTER
    } else {
        // In range and non-negative by construction; the fallback only guards the impossible.
        Duration::try_from_secs_f64(secs).unwrap_or(MAX_RETRY_AFTER)
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7), the form every current
/// server sends. Parsed by hand because `httpdate` is only a transitive dependency here (not in
/// Cargo.toml); the two obsolete forms (RFC 850, asctime) are not accepted and give `None`.
fn parse_imf_fixdate(s: &str) -> Option<SystemTime> {
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let b = s.as_bytes();
    if b.len() != 29
        || &b[3..5] != b", "
        || b[7] != b' '
        || b[11] != b' '
        || b[16] != b' '
        || b[19] != b':'
        || b[22] != b':'
        || &b[25..] != b" GMT"
        || !DAYS.contains(&&b[0..3])
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let day = num(5..7)?;
    let month = MONTHS.iter().position(|m| *m == &b[8..11])? as u32 + 1;
    let year = num(12..16)?;
    let (hour, minute, second) = (num(17..19)?, num(20..22)?, num(23..25)?);
    // Second 60 is a leap second; it reads as the next second's start.
    if day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    match u64::try_from(secs) {
        Ok(secs) => UNIX_EPOCH.checked_add(Duration::from_secs(secs)),
        // Before 1970: certainly in the past.
        Err(_) => Some(UNIX_EPOCH),
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const MS: Duration = Duration::from_millis(1);

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    /// 1994-11-06T08:49:37Z, the RFC's example date.
    fn rfc_example() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(784_111_777)
    }

    #[test]
    fn cap_grows_exponentially_then_stops_at_max() {
        let (i, m) = (200 * MS, 5_000 * MS);
        assert_eq!(cap(1, i, m), 200 * MS);
        assert_eq!(cap(2, i, m), 400 * MS);
        assert_eq!(cap(3, i, m), 800 * MS);
        assert_eq!(cap(5, i, m), 3_200 * MS);
        assert_eq!(cap(6, i, m), 5_000 * MS);
        // Retry 0 means the first retry; huge retry numbers must not overflow.
        assert_eq!(cap(0, i, m), 200 * MS);
        assert_eq!(cap(33, i, m), 5_000 * MS);
        assert_eq!(cap(u32::MAX, i, m), 5_000 * MS);
        assert_eq!(
            cap(40, Duration::from_secs(u64::MAX / 2), Duration::MAX),
            Duration::MAX
        );
    }

    #[test]
    fn delay_is_full_jitter_within_the_cap() {
        fastrand::seed(42);
        let (i, m) = (100 * MS, 1_000 * MS);
        let mut sum = Duration::ZERO;
        let mut min = Duration::MAX;
        let mut max = Duration::ZERO;
        for _ in 0..10_000 {
            let d = delay(3, i, m);
            assert!(d <= 400 * MS, "{d:?}");
            sum += d;
            min = min.min(d);
            max = max.max(d);
        }
        // Uniform on [0, 400 ms]: mean near 200 ms, and both ends of the range are reached.
        let mean = sum / 10_000;
        assert!((190 * MS..210 * MS).contains(&mean), "mean {mean:?}");
        assert!(min < 5 * MS, "min {min:?}");
        assert!(max > 395 * MS, "max {max:?}");
        // Past the cap the bound is `max`.
        assert!((0..1_000).all(|_| delay(20, i, m) <= m));
        assert_eq!(delay(1, Duration::ZERO, m), Duration::ZERO);
    }

    #[test]
    fn retry_after_ms_takes_fractional_milliseconds() {
        let now = rfc_example();
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "120")]), now),
            Some(120 * MS)
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "1.5")]), now),
            Some(Duration::from_micros(1_500))
        );
        // retry-after-ms is preferred over retry-after (it is the more precise of the two).
        assert_eq!(
            retry_after(
                &headers(&[("retry-after-ms", "250"), ("retry-after", "3")]),
                now
            ),
            Some(250 * MS)
        );
    }

    #[test]
    fn retry_after_seconds() {
        let now = rfc_example();
        assert_eq!(
            retry_after(&headers(&[("retry-after", "3")]), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", " 0 ")]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2.5")]), now),
            Some(Duration::from_millis(2_500))
        );
    }

    #[test]
    fn retry_after_http_date_is_relative_to_now() {
        let now = rfc_example();
        let h = headers(&[("retry-after", "Sun, 06 Nov 1994 08:50:07 GMT")]);
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        // The same instant: no wait. A date in the past: no wait either.
        let h = headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        let h = headers(&[("retry-after", "Thu, 01 Jan 1970 00:00:00 GMT")]);
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        // A leap day and the far future (clamped).
        let h = headers(&[("retry-after", "Thu, 29 Feb 2024 00:00:10 GMT")]);
        let feb29 = UNIX_EPOCH + Duration::from_secs(1_709_164_800);
        assert_eq!(retry_after(&h, feb29), Some(Duration::from_secs(10)));
        let h = headers(&[("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")]);
        assert_eq!(retry_after(&h, now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn retry_after_caps_huge_values() {
        let now = rfc_example();
        for (name, v) in [
            ("retry-after", "99999999999999999999999"),
            ("retry-after", "86401"),
            ("retry-after-ms", "184467440737095516150000"),
        ] {
            let got = retry_after(&headers(&[(name, v)]), now);
            assert_eq!(got, Some(MAX_RETRY_AFTER), "{name}: {v}");
        }
        // Just under the cap is kept as is.
        assert_eq!(
            retry_after(&headers(&[("retry-after", "86399")]), now),
            Some(Duration::from_secs(86_399))
        );
    }

    #[test]
    fn negative_and_garbage_give_none() {
        let now = rfc_example();
        for v in [
            "-1",
            "+5",
            "",
            "soon",
            "1e3",
            "inf",
            "NaN",
            "1.2.3",
            ".",
            "0x10",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 2023 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                retry_after(&headers(&[("retry-after", v)]), now),
                None,
                "retry-after {v:?}"
            );
        }
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "-5")]), now),
            None
        );
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
        // A garbage retry-after-ms does not hide a usable retry-after.
        assert_eq!(
            retry_after(
                &headers(&[("retry-after-ms", "abc"), ("retry-after", "4")]),
                now
            ),
            Some(Duration::from_secs(4))
        );
        // Reset headers are not wait hints.
        assert_eq!(
            retry_after(&headers(&[("x-ratelimit-reset-requests", "1s")]), now),
            None
        );
        // Non-visible-ASCII bytes in the value.
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_bytes(b"\xff3").unwrap());
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    }
}
