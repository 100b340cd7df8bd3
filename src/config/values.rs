//! Checks of single values that run while decoding (`#[serde(deserialize_with = ...)]`), so a
//! bad value is reported at its own line and column with what it should have been. `{got}` in
//! a message is replaced by the value as written (or its type, for secrets).

use std::net::SocketAddr;

use serde::de::{self, Deserializer, Unexpected, Visitor};

/// Attempts beyond this only pile load onto a failing upstream.
const MAX_RETRY_ATTEMPTS: u64 = 10;
/// Each hedge duplicates the upstream cost of a request; more than three is never worth it.
const MAX_HEDGES: u64 = 3;

/// Integer field types: unsigned and at most 64 bits wide (`Into<u64>` holds for no other), so
/// their largest value follows from their size.
pub(crate) trait Int: TryFrom<u64> + Into<u64> {}
impl<T: TryFrom<u64> + Into<u64>> Int for T {}

struct Bounded {
    min: u64,
    max: u64,
}

impl Visitor<'_> for Bounded {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self.min {
            0 => "a non-negative integer",
            _ => "a positive integer",
        })
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
        if n < self.min {
            Err(E::invalid_value(Unexpected::Unsigned(n), &self))
        } else if n > self.max {
            Err(E::custom(format!("must be at most {}, got {n}", self.max)))
        } else {
            Ok(n)
        }
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
        match u64::try_from(n) {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(n), &self)),
        }
    }
}

fn int<'de, D: Deserializer<'de>, T: Int>(d: D, min: u64, max: u64) -> Result<T, D::Error> {
    let n = d.deserialize_u64(Bounded {
        min,
        max: max.min(u64::MAX >> (64 - 8 * std::mem::size_of::<T>())),
    })?;
    T::try_from(n).map_err(|_| de::Error::custom("out of range"))
}

pub(crate) fn positive<'de, D: Deserializer<'de>, T: Int>(d: D) -> Result<T, D::Error> {
    int(d, 1, u64::MAX)
}

pub(crate) fn non_negative<'de, D: Deserializer<'de>, T: Int>(d: D) -> Result<T, D::Error> {
    int(d, 0, u64::MAX)
}

pub(crate) fn opt_positive<'de, D: Deserializer<'de>, T: Int>(d: D) -> Result<Option<T>, D::Error> {
    positive(d).map(Some)
}

pub(crate) fn opt_non_negative<'de, D: Deserializer<'de>, T: Int>(
    d: D,
) -> Result<Option<T>, D::Error> {
    non_negative(d).map(Some)
}

pub(crate) fn attempts<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    int(d, 1, MAX_RETRY_ATTEMPTS)
}

pub(crate) fn max_hedges<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    int(d, 1, MAX_HEDGES)
}

/// A byte size: a positive integer, or a string like `32MiB` (see [`parse_size`]).
pub(crate) fn size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a size in bytes greater than 0, like 33554432 or \"32MiB\"")
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<usize, E> {
            match usize::try_from(n) {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(E::invalid_value(Unexpected::Unsigned(n), &self)),
            }
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<usize, E> {
            Err(E::invalid_value(Unexpected::Signed(n), &self))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<usize, E> {
            parse_size(s)
                .ok_or_else(|| E::invalid_value(Unexpected::Str(s), &self))
                .and_then(|n| self.visit_u64(n))
        }
    }
    d.deserialize_any(V)
}

pub(crate) fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    size(d).map(|n| Some(n as u64))
}

/// Parses a byte size: a plain integer, or an integer with a unit (`512KiB`, `32 MiB`, `1MB`;
/// units are case-insensitive, `KB`/`MB`/`GB` are powers of 1000, `KiB`/`MiB`/`GiB` of 1024).
/// Zero and overflow give `None`. Bare `K`/`M`/`G` are refused as ambiguous.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let multiplier: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(multiplier).filter(|&n| n > 0)
}

/// A fraction in `(0, 1]` (a breaker's error rate).
pub(crate) fn fraction<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = f64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number greater than 0 and at most 1")
        }
        fn visit_f64<E: de::Error>(self, r: f64) -> Result<f64, E> {
            // NaN fails both comparisons, so it is refused too.
            if r > 0.0 && r <= 1.0 {
                return Ok(r);
            }
            // 50 for 50% is the likely slip; say what it should be.
            let hint = match r {
                r if r > 1.0 && r <= 100.0 && r.fract() == 0.0 => {
                    format!(" (a fraction: {r}% is {})", r / 100.0)
                }
                _ => String::new(),
            };
            let expected = "expected a number greater than 0 and at most 1";
            Err(E::custom(format!("{expected}, got {{got}}{hint}")))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<f64, E> {
            self.visit_f64(n as f64)
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<f64, E> {
            self.visit_f64(n as f64)
        }
    }
    d.deserialize_f64(V)
}

/// A price in USD per million tokens: a finite number ≥ 0.
pub(crate) fn price<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = f64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a price in USD per million tokens (a number ≥ 0)")
        }
        fn visit_f64<E: de::Error>(self, p: f64) -> Result<f64, E> {
            if p.is_finite() && p >= 0.0 {
                Ok(p)
            } else {
                Err(E::invalid_value(Unexpected::Float(p), &self))
            }
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<f64, E> {
            self.visit_f64(n as f64)
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<f64, E> {
            self.visit_f64(n as f64)
        }
    }
    d.deserialize_f64(V)
}

pub(crate) fn opt_price<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    price(d).map(Some)
}

/// A string that `check` turns into a value: `Err(None)` is "expected {expecting}, got ...",
/// `Err(Some(message))` a message of its own.
fn text<'de, D, T, F>(d: D, expecting: &'static str, check: F) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    F: Fn(&str) -> Result<T, Option<&'static str>>,
{
    struct V<F>(&'static str, F);
    impl<T, F: Fn(&str) -> Result<T, Option<&'static str>>> Visitor<'_> for V<F> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<T>, E> {
            match (self.1)(s) {
                Ok(v) => Ok(Some(v)),
                Err(Some(msg)) => Err(E::custom(msg)),
                Err(None) => Err(E::invalid_value(Unexpected::Str(s), &self)),
            }
        }
    }
    d.deserialize_str(V(expecting, check))
}

pub(crate) fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value = text(d, "a string", |s| Ok(s.to_string()))?.unwrap_or_default();
    match value.is_empty() {
        true => Err(de::Error::custom("must not be empty")),
        false => Ok(value),
    }
}

pub(crate) fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let expecting = concat!("an IP address and port like ", default_listen!());
    text(d, expecting, |s| s.trim().parse().map_err(|_| None))
}

/// An absolute `http(s)://` URL without a query, kept without trailing slashes.
pub(crate) fn base_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    text(
        d,
        "an absolute http:// or https:// URL without a query",
        |s| {
            let trimmed = s.trim_end_matches('/');
            let uri = trimmed.parse::<http::Uri>().map_err(|_| None)?;
            let ok = matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some_and(|h| !h.is_empty())
                && uri.query().is_none();
            ok.then(|| trimmed.to_string()).ok_or(None)
        },
    )
}

/// Azure's `api-version` query value (`2024-10-21`, `2025-04-01-preview`); limited to the
/// characters that need no escaping in a query string.
pub(crate) fn api_version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let expecting = "an API version like \"2024-10-21\" (letters, digits, '-', '.', '_')";
    text(d, expecting, |s| {
        let ok = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        ok.then(|| s.to_string()).ok_or(None)
    })
}

/// Anthropic versions are dates (`2023-06-01`); anything else fails every request.
pub(crate) fn anthropic_version<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    text(d, "a version date like \"2023-06-01\"", |s| {
        let ok = s.len() == 10
            && s.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            });
        ok.then(|| s.to_string()).ok_or(None)
    })
}

/// An AWS region name (`us-east-1`): it goes into the host name and the SigV4 scope.
pub(crate) fn region<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let expecting = "an AWS region like \"us-east-1\" (lowercase letters, digits and dashes)";
    text(d, expecting, |s| {
        let ok = s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        ok.then(|| s.to_string()).ok_or(None)
    })
}

/// An Azure deployment name; it goes into the request path, so it must be one segment.
pub(crate) fn deployment<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let expecting =
        "a deployment name (it goes into the request path: no '/', '?', '#', '%', '\\' or spaces)";
    text(d, expecting, |s| {
        if s.is_empty() {
            return Err(Some(
                "must not be empty (omit it to use the model name as the deployment)",
            ));
        }
        let bad = |c: char| {
            matches!(c, '/' | '?' | '#' | '%' | '\\') || c.is_whitespace() || c.is_control()
        };
        (!s.contains(bad)).then(|| s.to_string()).ok_or(None)
    })
}
