//! Virtual keys: how they are made, stored and recognised.
//!
//! A key is `fg-` and 43 characters of base62 drawn from the OS's random source (256 bits). It
//! is shown once, when created; only its SHA-256 digest is kept (a slow hash adds nothing for a
//! key with 256 bits of entropy). A presented key is found by its digest and the digest is then
//! compared in constant time.

use http::HeaderMap;
use sha2::{Digest, Sha256};

/// What every virtual key starts with.
pub const PREFIX: &str = "fg-";
/// Base62 characters after the prefix: 43 × log2(62) ≈ 256 bits.
const BODY_LEN: usize = 43;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The header a client can always put its virtual key in, whatever its SDK uses for the
/// provider key (needed with `auth: passthrough`, where `Authorization` carries the client's
/// own provider key).
pub static X_FERROGATE_KEY: http::HeaderName = http::HeaderName::from_static("x-ferrogate-key");

/// The SHA-256 digest of a virtual key: what is stored, indexed and compared.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest(pub [u8; 32]);

impl std::fmt::Debug for KeyDigest {
    /// A short prefix only: enough to tell digests apart in a log, useless to an attacker.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyDigest(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

impl KeyDigest {
    pub fn of(key: &str) -> Self {
        KeyDigest(Sha256::digest(key.as_bytes()).into())
    }

    /// Constant-time equality: the time taken does not depend on where the digests differ.
    /// (Written out because it is three lines; the loop has no early exit and `black_box`
    /// keeps the compiler from adding one.)
    pub fn ct_eq(&self, other: &KeyDigest) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct RandomError(String);

/// A new virtual key (to show once) and its digest (to store).
pub fn generate() -> Result<(String, KeyDigest), RandomError> {
    let mut key = String::with_capacity(PREFIX.len() + BODY_LEN);
    key.push_str(PREFIX);
    let mut buf = [0u8; 64];
    while key.len() < PREFIX.len() + BODY_LEN {
        getrandom::fill(&mut buf).map_err(|e| RandomError(e.to_string()))?;
        // Rejection sampling keeps every character uniform: 248 = 4 × 62.
        for &b in buf.iter().filter(|&&b| b < 248) {
            if key.len() == PREFIX.len() + BODY_LEN {
                break;
            }
            key.push(char::from(ALPHABET[usize::from(b % 62)]));
        }
    }
    let digest = KeyDigest::of(&key);
    Ok((key, digest))
}

/// Whether `s` has the shape of a virtual key (prefix, length, alphabet).
/// Generated keys have this shape; keys declared in the config file may be any
/// `fg-` value of 20 to 128 `[A-Za-z0-9_-]` (the config check enforces it).
pub fn looks_like_key(s: &str) -> bool {
    crate::config::governance::is_virtual_key_shape(s)
}

/// `query` without the `key=` pairs that carry a virtual key.
pub fn without_key_param(query: &str) -> String {
    query
        .split('&')
        .filter(|kv| !kv.is_empty() && query_key(kv).is_none())
        .collect::<Vec<_>>()
        .join("&")
}

/// The virtual key in one `key=` query pair (percent-decoded), if it holds one.
pub fn query_key(pair: &str) -> Option<String> {
    let raw = pair.strip_prefix("key=")?;
    let value = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?;
    looks_like_key(&value).then(|| value.into_owned())
}

/// The headers a virtual key may come in, in the order they are looked at (pre-parsed names:
/// a lookup by `&str` would parse and hash the name again on every request).
pub static KEY_HEADERS: [http::HeaderName; 5] = [
    http::HeaderName::from_static("x-ferrogate-key"),
    http::header::AUTHORIZATION,
    http::HeaderName::from_static("x-api-key"),
    http::HeaderName::from_static("x-goog-api-key"),
    http::HeaderName::from_static("api-key"),
];

/// The virtual key in a header value (`Bearer` stripped for `authorization`), if shaped like one.
fn key_in<'v>(name: &http::HeaderName, value: &'v http::HeaderValue) -> Option<&'v str> {
    let v = value.to_str().ok()?.trim();
    let v = if *name == http::header::AUTHORIZATION {
        // The scheme is case-insensitive (RFC 9110).
        v.get(..7)
            .filter(|s| s.eq_ignore_ascii_case("bearer "))
            .map(|_| v[7..].trim())?
    } else {
        v
    };
    looks_like_key(v).then_some(v)
}

/// Takes every virtual key out of `headers` (an SDK may repeat it, and with `auth:
/// passthrough` the client's headers go upstream) and returns the first, in `KEY_HEADERS`
/// order. One lookup per name; a header is removed only when it holds a key.
pub fn take_from_headers(headers: &mut HeaderMap) -> Option<String> {
    let mut found = None;
    for name in &KEY_HEADERS {
        let mut values = headers.get_all(name).iter();
        let Some(first) = values.next() else {
            continue;
        };
        let first_key = key_in(name, first);
        // The usual case: one value, a key or not.
        if values.next().is_none() {
            if let Some(key) = first_key {
                found.get_or_insert_with(|| key.to_owned());
                headers.remove(name);
            }
            continue;
        }
        // Several values: keep those that are not keys, in order.
        let all: Vec<http::HeaderValue> = headers.get_all(name).iter().cloned().collect();
        if !all.iter().any(|v| key_in(name, v).is_some()) {
            continue;
        }
        headers.remove(name);
        for v in all {
            match key_in(name, &v) {
                Some(key) => {
                    found.get_or_insert_with(|| key.to_owned());
                }
                None => {
                    headers.append(name.clone(), v);
                }
            }
        }
    }
    found
}

/// Whether the request carries something in a key position at all (a missing key and a wrong
/// one get different messages).
pub fn any_credential(headers: &HeaderMap, query: Option<&str>) -> bool {
    [
        "x-ferrogate-key",
        "authorization",
        "x-api-key",
        "x-goog-api-key",
        "api-key",
    ]
    .iter()
    .any(|h| headers.contains_key(*h))
        || query.is_some_and(|q| q.split('&').any(|p| p.starts_with("key=")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn keys_are_prefixed_base62_of_full_length_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let (key, digest) = generate().unwrap();
            assert!(looks_like_key(&key), "{key}");
            assert_eq!(key.len(), 46);
            assert_eq!(KeyDigest::of(&key), digest);
            assert!(seen.insert(key));
        }
        // Every character of the alphabet turns up: the draw is not stuck on a subset.
        let chars: std::collections::HashSet<char> = seen
            .iter()
            .flat_map(|k| k[3..].chars().collect::<Vec<_>>())
            .collect();
        assert_eq!(chars.len(), 62);
    }

    #[test]
    fn digests_compare_equal_only_when_equal_and_never_print_the_key() {
        let a = KeyDigest::of("fg-a");
        let b = KeyDigest::of("fg-b");
        assert!(a.ct_eq(&a));
        assert!(!a.ct_eq(&b));
        let mut c = a;
        c.0[31] ^= 1;
        assert!(!a.ct_eq(&c));
        let shown = format!("{a:?}");
        assert!(shown.len() < 24 && !shown.contains("fg-"), "{shown}");
    }

    #[test]
    fn the_key_is_found_wherever_each_sdk_puts_it() {
        let (key, _) = generate().unwrap();
        for (name, value) in [
            ("x-ferrogate-key", key.clone()),
            ("authorization", format!("Bearer {key}")),
            ("authorization", format!("BEARER {key}")),
            ("x-api-key", key.clone()),
            ("x-goog-api-key", key.clone()),
            ("api-key", key.clone()),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_str(&value).unwrap());
            assert!(any_credential(&h, None));
            assert_eq!(take_from_headers(&mut h), Some(key.clone()), "{name}");
            assert!(h.is_empty(), "{name} was not taken out");
        }
        assert_eq!(query_key(&format!("key={key}")), Some(key.clone()));
        assert_eq!(
            without_key_param(&format!("alt=sse&key={key}")),
            "alt=sse".to_string()
        );
    }

    #[test]
    fn a_provider_key_beside_the_virtual_key_is_not_taken_for_it() {
        // auth: passthrough: the client's own OpenAI key in Authorization, the virtual key in
        // x-ferrogate-key.
        let (key, _) = generate().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer sk-proj-abc123"),
        );
        h.insert("x-ferrogate-key", HeaderValue::from_str(&key).unwrap());
        assert_eq!(take_from_headers(&mut h), Some(key));
        assert_eq!(
            h.get("authorization"),
            Some(&HeaderValue::from_static("Bearer sk-proj-abc123"))
        );
        // Only a provider key: a credential, but no virtual key.
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("sk-ant-xyz"));
        assert!(any_credential(&h, None));
        assert_eq!(take_from_headers(&mut h), None);
        assert!(h.contains_key("x-api-key"));
        assert!(!any_credential(&HeaderMap::new(), Some("alt=sse")));
        assert_eq!(query_key("key=AIzaSyProviderKey"), None);
    }
}
