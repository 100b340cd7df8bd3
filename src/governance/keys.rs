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
        Self::of_bytes(key.as_bytes())
    }

    pub fn of_bytes(key: &[u8]) -> Self {
        KeyDigest(Sha256::digest(key).into())
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

/// The headers a virtual key may come in, in the order they are looked at.
pub static KEY_HEADERS: [http::HeaderName; 5] = [
    http::HeaderName::from_static("x-ferrogate-key"),
    http::header::AUTHORIZATION,
    http::HeaderName::from_static("x-api-key"),
    http::HeaderName::from_static("x-goog-api-key"),
    http::HeaderName::from_static("api-key"),
];

/// The position of `name` in [`KEY_HEADERS`]. A request has a handful of headers: one pass
/// over them comparing names (a tag compare for a standard name, a length compare for most
/// others) costs less than a hashed lookup of each of the five names.
fn key_header_index(name: &http::HeaderName) -> Option<usize> {
    KEY_HEADERS.iter().position(|h| h == name)
}

/// The virtual key in a header value (`Bearer` stripped for `authorization`): a value of
/// `fg-` and 20 to 128 bytes. Only the length is checked here: the lookup finds a known key
/// without looking at its characters, and anything else so shaped is no provider's key (an
/// unknown one is refused, as is one with characters no key has).
fn key_in<'v>(name: &http::HeaderName, value: &'v http::HeaderValue) -> Option<&'v [u8]> {
    let mut v = value.as_bytes().trim_ascii();
    if *name == http::header::AUTHORIZATION {
        // The scheme is case-insensitive (RFC 9110).
        let (scheme, token) = v.split_at_checked(7)?;
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return None;
        }
        v = token.trim_ascii();
    }
    v.strip_prefix(PREFIX.as_bytes())
        .is_some_and(|body| crate::config::governance::VIRTUAL_KEY_BODY_LEN.contains(&body.len()))
        .then_some(v)
}

/// Takes every virtual key out of `headers` (an SDK may repeat it, and with `auth:
/// passthrough` the client's headers go upstream) and gives the first, in `KEY_HEADERS`
/// order, to `find` (before it is taken out: no copy of the key is made). A header is removed
/// only when it holds a key; the other values of a repeated header stay, in order.
pub fn take_from_headers<T>(headers: &mut HeaderMap, find: impl FnOnce(&[u8]) -> T) -> Option<T> {
    let mut first: Option<(usize, &[u8])> = None;
    let mut values = [0u8; KEY_HEADERS.len()];
    let mut holds_key = [false; KEY_HEADERS.len()];
    for (name, value) in headers.iter() {
        let Some(i) = key_header_index(name) else {
            continue;
        };
        values[i] = values[i].saturating_add(1);
        if let Some(key) = key_in(name, value) {
            holds_key[i] = true;
            if first.is_none_or(|(j, _)| i < j) {
                first = Some((i, key));
            }
        }
    }
    let found = first.map(|(_, key)| find(key));
    for (i, name) in KEY_HEADERS.iter().enumerate() {
        if !holds_key[i] {
            continue;
        }
        if values[i] == 1 {
            headers.remove(name);
            continue;
        }
        // Several values: keep those that are not keys, in order.
        let all: Vec<http::HeaderValue> = headers.get_all(name).iter().cloned().collect();
        headers.remove(name);
        for v in all.into_iter().filter(|v| key_in(name, v).is_none()) {
            headers.append(name.clone(), v);
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

    fn owned(key: &[u8]) -> String {
        String::from_utf8(key.to_vec()).unwrap()
    }

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
            assert_eq!(
                take_from_headers(&mut h, owned),
                Some(key.clone()),
                "{name}"
            );
            assert!(h.is_empty(), "{name} was not taken out");
        }
        assert_eq!(query_key(&format!("key={key}")), Some(key.clone()));
        assert_eq!(
            without_key_param(&format!("alt=sse&key={key}")),
            "alt=sse".to_string()
        );
    }

    #[test]
    fn the_header_positions_follow_key_headers() {
        for (i, name) in KEY_HEADERS.iter().enumerate() {
            assert_eq!(key_header_index(name), Some(i), "{name}");
        }
        assert_eq!(key_header_index(&http::header::CONTENT_TYPE), None);
    }

    #[test]
    fn every_copy_of_a_key_goes_and_the_first_in_header_order_is_used() {
        let (a, _) = generate().unwrap();
        let (b, _) = generate().unwrap();
        let mut h = HeaderMap::new();
        // x-api-key comes first in the map, but x-ferrogate-key ranks first.
        h.append("x-api-key", HeaderValue::from_static("sk-ant-xyz"));
        h.append("x-api-key", HeaderValue::from_str(&b).unwrap());
        h.append("x-ferrogate-key", HeaderValue::from_str(&a).unwrap());
        h.append(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {b}")).unwrap(),
        );
        assert_eq!(take_from_headers(&mut h, owned), Some(a));
        let left: Vec<_> = h
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(left, [("x-api-key", "sk-ant-xyz")]);
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
        assert_eq!(take_from_headers(&mut h, owned), Some(key));
        assert_eq!(
            h.get("authorization"),
            Some(&HeaderValue::from_static("Bearer sk-proj-abc123"))
        );
        // Only a provider key: a credential, but no virtual key.
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("sk-ant-xyz"));
        assert!(any_credential(&h, None));
        assert_eq!(take_from_headers(&mut h, owned), None);
        assert!(h.contains_key("x-api-key"));
        assert!(!any_credential(&HeaderMap::new(), Some("alt=sse")));
        assert_eq!(query_key("key=AIzaSyProviderKey"), None);
    }
}
