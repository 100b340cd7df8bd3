//! Header hygiene shared by every outbound request (hop-by-hop and credential headers,
//! query-string keys) and for the response headers passed back.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Uri;

use crate::error::GatewayError;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");
pub(crate) static IDENTITY: HeaderValue = HeaderValue::from_static("identity");

pub(crate) use crate::http_headers::{is_client_credential, is_hop_by_hop, is_set_per_request};

/// Removes every header matching `unwanted`, plus any named in a `Connection` header.
///
/// One pass over the (few) present names instead of a hashed `remove` per candidate name: most
/// requests carry none of them, and then this costs a short loop of enum comparisons.
pub(crate) fn remove_headers(headers: &mut HeaderMap, unwanted: impl Fn(&HeaderName) -> bool) {
    // A few names on the stack first (the usual case: `host`, `content-length`, a credential),
    // so most requests allocate nothing here.
    let mut few: [Option<HeaderName>; 6] = Default::default();
    let mut n = 0;
    let mut more: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if unwanted(name) {
            if n < few.len() {
                few[n] = Some(name.clone());
                n += 1;
            } else {
                more.push(name.clone());
            }
        }
    }
    if n == 0 {
        return;
    }
    let mut doomed = more;
    for conn in headers.get_all(header::CONNECTION) {
        if let Ok(list) = conn.to_str() {
            for token in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if let Ok(n) = HeaderName::from_bytes(token.as_bytes()) {
                    doomed.push(n);
                }
            }
        }
    }
    for name in few.iter().flatten().chain(doomed.iter()) {
        headers.remove(name);
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including any named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    remove_headers(headers, is_hop_by_hop);
}

/// Drops `key=` (a query-string credential) from a client's query.
pub(crate) fn strip_key_param(query: &str) -> String {
    query
        .split('&')
        .filter(|kv| {
            let name = kv.split('=').next().unwrap_or("");
            !kv.is_empty()
                && !name.eq_ignore_ascii_case("key")
                && !name.eq_ignore_ascii_case("k%65y")
        })
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) fn with_query(base: &Uri, query: &str) -> Result<Uri, GatewayError> {
    let path = base.path();
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(
        format!("{path}?{query}")
            .parse()
            .map_err(|_| GatewayError::bad_request("invalid query string", None))?,
    );
    Uri::from_parts(parts).map_err(|e| GatewayError::Internal(e.to_string()))
}

/// Cleans upstream response headers for the client: hop-by-hop and framing headers go (hyper
/// sets framing itself), the gateway's request id replaces the provider's, which is kept under
/// `x-upstream-request-id`.
pub fn response_headers(headers: &mut HeaderMap, request_id: &HeaderValue, body_changed: bool) {
    // `x-ferrogate-*` is this gateway's namespace: an upstream's (a chained gateway's cost,
    // target or attempts) must not pass as this one's.
    remove_headers(headers, |n| {
        is_hop_by_hop(n)
            || (body_changed && n == header::CONTENT_LENGTH)
            || n.as_str().starts_with("x-ferrogate-")
    });
    if let Some(theirs) = headers.insert(X_REQUEST_ID.clone(), request_id.clone()) {
        if theirs != request_id {
            headers.insert(X_UPSTREAM_REQUEST_ID.clone(), theirs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_param_is_removed_from_queries() {
        assert_eq!(strip_key_param("key=abc&x=1"), "x=1");
        assert_eq!(strip_key_param("a=1&key=abc"), "a=1");
        assert_eq!(strip_key_param("key=abc"), "");
        assert_eq!(strip_key_param("keys=1"), "keys=1");
        assert_eq!(strip_key_param("k%65y=abc&KEY=x&b=2"), "b=2");
    }

    #[test]
    fn hop_by_hop_headers_and_connection_tokens_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn provider_request_id_moves_aside() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("req_up"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        response_headers(&mut h, &HeaderValue::from_static("ours"), true);
        assert_eq!(h["x-request-id"], "ours");
        assert_eq!(h["x-upstream-request-id"], "req_up");
        assert!(!h.contains_key(header::CONTENT_LENGTH));
    }
}
