//! Building the upstream request for any provider kind: URI (computed by the snapshot), the
//! provider's credentials in its own header (or a SigV4 signature for Bedrock), and header
//! hygiene.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::Full;

use crate::config::{AuthMode, ProviderKind};
use crate::error::GatewayError;
use crate::providers::openai::{
    is_client_credential, is_hop_by_hop, is_set_per_request, remove_headers, strip_key_param,
    with_query, IDENTITY, X_REQUEST_ID,
};
use crate::routing::snapshot::ProviderRt;

static ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
static X_GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");
static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// What to do with the client's request headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientHeaders {
    /// Same dialect: take the client's headers over (cleaned); vendor headers such as
    /// `anthropic-beta` reach the provider.
    Keep,
    /// Translated: the client's headers belong to another API; start from a fresh set.
    Fresh,
}

/// Builds the upstream request. `client_query` is forwarded (minus `key=` unless the provider
/// forwards client credentials).
// Each argument is a separate input of the request (a struct would only rename them).
#[allow(clippy::too_many_arguments)]
pub fn build_request(
    provider: &ProviderRt,
    uri: Uri,
    client_query: Option<&str>,
    client_headers: HeaderMap,
    body: Bytes,
    request_id: &HeaderValue,
    mode: ClientHeaders,
    key: Option<usize>,
) -> Result<Request<Full<Bytes>>, GatewayError> {
    let passthrough = provider.auth == AuthMode::Passthrough;
    let query = client_query
        .map(|q| {
            if passthrough {
                q.to_owned()
            } else {
                strip_key_param(q)
            }
        })
        .filter(|q| !q.is_empty());
    let uri = match query {
        Some(q) => match uri.query() {
            Some(ours) => with_query(&uri, &format!("{ours}&{q}"))?,
            None => with_query(&uri, &q)?,
        },
        None => uri,
    };

    let mut headers = match mode {
        ClientHeaders::Keep => {
            let mut h = client_headers;
            remove_headers(&mut h, |n| {
                is_hop_by_hop(n)
                    || is_set_per_request(n)
                    || (!passthrough && is_client_credential(n))
            });
            h
        }
        ClientHeaders::Fresh => {
            let mut h = HeaderMap::with_capacity(8);
            h.insert(header::CONTENT_TYPE, APPLICATION_JSON.clone());
            if passthrough {
                // Bring-your-own-key across dialects: the client's key, moved into the header
                // this provider reads.
                if let Some(key) = client_key(&client_headers) {
                    insert_key(provider, &mut h, &key)?;
                }
            }
            h
        }
    };
    if !passthrough {
        let key = match key {
            Some(i) => provider.keys.get(i),
            None => provider.pick_key(),
        };
        if let Some(key) = key {
            headers.insert(provider.auth_header.clone(), key.header.clone());
        }
    }
    if provider.kind == ProviderKind::Anthropic && !headers.contains_key(&ANTHROPIC_VERSION) {
        headers.insert(
            ANTHROPIC_VERSION.clone(),
            provider.anthropic_version.clone(),
        );
    }
    // Plain bytes upstream, so the usage tap can read them.
    headers.insert(header::ACCEPT_ENCODING, IDENTITY.clone());
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    for (name, value) in &provider.headers {
        headers.insert(name.clone(), value.clone());
    }
    if let Some((creds, region)) = &provider.aws {
        // Signed last, over exactly the headers and bytes that are sent.
        let signed = crate::providers::bedrock_sign::sign(
            "POST",
            &uri,
            &headers,
            &body,
            creds,
            region,
            std::time::SystemTime::now(),
        )
        .map_err(|e| GatewayError::Internal(format!("signing the Bedrock request: {e}")))?;
        for (name, value) in signed {
            headers.insert(name, value);
        }
    }

    let mut req = Request::new(Full::new(body));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Ok(req)
}

/// The client's own key, from whichever header its SDK uses.
fn client_key(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let s = v.to_str().ok()?;
        return s.strip_prefix("Bearer ").map(|k| k.trim().to_owned());
    }
    ["x-api-key", "x-goog-api-key", "api-key"]
        .iter()
        .find_map(|n| headers.get(*n))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn insert_key(provider: &ProviderRt, h: &mut HeaderMap, key: &str) -> Result<(), GatewayError> {
    let bearer = provider.auth_header == header::AUTHORIZATION;
    let text = if bearer {
        format!("Bearer {key}")
    } else {
        key.to_owned()
    };
    let mut v = HeaderValue::from_str(&text)
        .map_err(|_| GatewayError::bad_request("the API key is not a valid header value", None))?;
    v.set_sensitive(true);
    h.insert(provider.auth_header.clone(), v);
    Ok(())
}

/// A Gemini client's `?key=` becomes the header Gemini providers read, so it never travels in
/// a URL (and never into logs of URLs).
pub fn gemini_query_key(query: Option<&str>, headers: &mut HeaderMap) {
    let Some(q) = query else { return };
    for kv in q.split('&') {
        if let Some(("key", value)) = kv.split_once('=') {
            if headers.contains_key(&X_GOOG_API_KEY) {
                return;
            }
            let decoded = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
            if let Ok(mut v) = HeaderValue::from_str(&decoded) {
                v.set_sensitive(true);
                headers.insert(X_GOOG_API_KEY.clone(), v);
            }
            return;
        }
    }
}
