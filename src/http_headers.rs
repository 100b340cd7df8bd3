//! Which request headers the gateway owns: one table, read by the config check (which refuses
//! such names in a provider's `headers:`) and by the outbound request builder (which strips
//! them from what a client sent).
//!
//! A foundation module: it imports nothing of the crate, so `config` and `providers` can both
//! use it without importing each other. The checks are comparisons against `HeaderName`
//! constants (no hashing, no allocation) because the outbound builder runs them per request.

use http::header::{self, HeaderName, HeaderValue};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
static X_GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");
static API_KEY: HeaderName = HeaderName::from_static("api-key");

/// A header value holding a decimal number. `HeaderValue::from(u64)` allocates twice (a
/// growable buffer, then its shared handle); this copies the digits once. Used for the
/// numbers the gateway adds to every response (overhead, rate limits, retry-after).
pub fn number_value(n: u64) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    // Digits are always a valid header value; the fallback is never taken.
    HeaderValue::from_str(digits.format(n)).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Headers that describe one hop's connection (RFC 9110 §7.6.1); forwarding them, or a fixed
/// value for them, would break HTTP.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// Headers that carry an API key in one of the supported APIs. Keys belong in a provider's
/// `keys`, where they are weighted, rotated and redacted.
pub fn is_client_credential(name: &HeaderName) -> bool {
    name == header::AUTHORIZATION || name == X_API_KEY || name == X_GOOG_API_KEY || name == API_KEY
}

/// Headers the gateway computes for each request it sends.
pub fn is_set_per_request(name: &HeaderName) -> bool {
    name == header::HOST || name == header::CONTENT_LENGTH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables() {
        let name = |s: &str| HeaderName::from_bytes(s.as_bytes()).unwrap_or(header::ACCEPT);
        assert!(is_hop_by_hop(&name("Keep-Alive")) && is_hop_by_hop(&name("te")));
        assert!(is_client_credential(&name("X-Goog-Api-Key")));
        assert!(is_set_per_request(&name("Host")));
        assert!(!is_hop_by_hop(&name("x-extra")) && !is_client_credential(&name("x-extra")));
    }

    #[test]
    fn numbers_are_written_as_decimal_digits() {
        for n in [0, 7, 42, 1_000_000, u64::MAX] {
            assert_eq!(number_value(n), HeaderValue::from(n), "{n}");
        }
    }
}
