//! Anthropic error bodies: `{"type":"error","error":{"type":…,"message":…},"request_id":…}`
//! (protocols.md §5.4), both directions.

use serde::{Deserialize, Serialize};

use crate::translate::ir::{ErrorInfo, ErrorKind};

/// The `error` member of an Anthropic error body (also the payload of a stream `error` event).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WireError {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireErrorBody {
    error: Option<WireError>,
}

/// Longest slice of a non-JSON error body kept as the message (a Cloudflare HTML page must not
/// end up whole in a client's error).
const MAX_RAW_MESSAGE: usize = 512;

/// Kind for an Anthropic `error.type`; `None` for types this gateway does not know.
fn kind_for_type(t: &str) -> Option<ErrorKind> {
    Some(match t {
        "invalid_request_error" => ErrorKind::InvalidRequest,
        "authentication_error" => ErrorKind::Authentication,
        "billing_error" => ErrorKind::Billing,
        "permission_error" => ErrorKind::Permission,
        "not_found_error" => ErrorKind::NotFound,
        "request_too_large" => ErrorKind::RequestTooLarge,
        "rate_limit_error" => ErrorKind::RateLimit,
        "api_error" => ErrorKind::Server,
        "timeout_error" => ErrorKind::Timeout,
        "overloaded_error" => ErrorKind::Overloaded,
        _ => return None,
    })
}

/// The Anthropic `error.type` for a kind (protocols.md §5.4).
pub fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Billing => "billing_error",
        ErrorKind::Permission => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::RequestTooLarge => "request_too_large",
        ErrorKind::RateLimit => "rate_limit_error",
        ErrorKind::Server => "api_error",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Overloaded => "overloaded_error",
    }
}

/// The HTTP status Anthropic answers an error kind with; used for errors that arrive inside a
/// 200 stream, where there is no status of their own.
fn anthropic_status(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::Overloaded => 529,
        other => other.status(),
    }
}

/// `ErrorInfo` from a parsed `error` member. `status` is the HTTP status when the error came
/// as a response; `None` inside a stream.
pub(super) fn error_info(err: Option<WireError>, status: Option<u16>) -> ErrorInfo {
    let err = err.unwrap_or_default();
    let kind = match (status, err.kind.as_deref().and_then(kind_for_type)) {
        // 529 is Anthropic's own "overloaded" status whatever the body says.
        (Some(529), _) => ErrorKind::Overloaded,
        (_, Some(kind)) => kind,
        (Some(status), None) => ErrorKind::from_status(status),
        (None, None) => ErrorKind::Server,
    };
    ErrorInfo {
        status: status.unwrap_or_else(|| anthropic_status(kind)),
        kind,
        message: err
            .message
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("Anthropic error ({})", error_type(kind))),
        code: err.kind,
        param: None,
    }
}

/// An Anthropic error response (any status, any body) → IR. Bodies that are not Anthropic
/// error JSON (proxies, load balancers) keep a bounded prefix of their text as the message.
pub fn decode_error(status: u16, body: &[u8]) -> ErrorInfo {
    if let Ok(WireErrorBody { error: Some(err) }) = serde_json::from_slice(body) {
        return error_info(Some(err), Some(status));
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut end = text.len().min(MAX_RAW_MESSAGE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let kind = if status == 529 {
        ErrorKind::Overloaded
    } else {
        ErrorKind::from_status(status)
    };
    ErrorInfo {
        status,
        kind,
        message: if text.is_empty() {
            format!("upstream answered HTTP {status}")
        } else {
            text[..end].to_owned()
        },
        code: None,
        param: None,
    }
}

#[derive(Serialize)]
pub(super) struct OutErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: OutError<'a>,
}

#[derive(Serialize)]
struct OutError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

impl<'a> OutErrorBody<'a> {
    pub(super) fn new(err: &'a ErrorInfo) -> Self {
        OutErrorBody {
            kind: "error",
            error: OutError {
                kind: error_type(err.kind),
                message: &err.message,
            },
        }
    }
}

/// IR → Anthropic error body `{"type":"error","error":{"type":…,"message":…}}`.
pub fn encode_error(err: &ErrorInfo) -> Vec<u8> {
    // Serialising two strings into a Vec cannot fail; the fallback keeps this infallible.
    serde_json::to_vec(&OutErrorBody::new(err)).unwrap_or_else(|_| {
        br#"{"type":"error","error":{"type":"api_error","message":""}}"#.to_vec()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::Value;

    use super::*;

    const ERR_400: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/anthropic-error-400-invalid-request.json"
    ));
    const ERR_404: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/anthropic-error-404-not-found.json"
    ));

    #[test]
    fn decodes_the_400_fixture() {
        let e = decode_error(400, ERR_400);
        assert_eq!(e.status, 400);
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(e
            .message
            .starts_with("This model does not support effort level 'xhigh'"));
        assert_eq!(e.code.as_deref(), Some("invalid_request_error"));
    }

    #[test]
    fn decodes_the_404_fixture() {
        let e = decode_error(404, ERR_404);
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.message, "model: claude-does-not-exist");
    }

    #[test]
    fn status_529_is_overloaded_with_or_without_a_body() {
        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let e = decode_error(529, body);
        assert_eq!((e.kind, e.status), (ErrorKind::Overloaded, 529));
        let e = decode_error(529, b"");
        assert_eq!(e.kind, ErrorKind::Overloaded);
        assert_eq!(e.message, "upstream answered HTTP 529");
    }

    #[test]
    fn non_json_bodies_are_tolerated_and_bounded() {
        let html = format!("<html>{}</html>", "é".repeat(600));
        let e = decode_error(413, html.as_bytes());
        assert_eq!(e.kind, ErrorKind::RequestTooLarge);
        assert!(e.message.starts_with("<html>"));
        assert!(e.message.len() <= MAX_RAW_MESSAGE);
        // Unknown error type: the status decides.
        let e = decode_error(
            429,
            br#"{"type":"error","error":{"type":"brand_new","message":"m"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::RateLimit);
        assert_eq!(e.code.as_deref(), Some("brand_new"));
    }

    #[test]
    fn encodes_every_kind_with_its_anthropic_type() {
        let cases = [
            (ErrorKind::InvalidRequest, "invalid_request_error"),
            (ErrorKind::Authentication, "authentication_error"),
            (ErrorKind::Billing, "billing_error"),
            (ErrorKind::Permission, "permission_error"),
            (ErrorKind::NotFound, "not_found_error"),
            (ErrorKind::RequestTooLarge, "request_too_large"),
            (ErrorKind::RateLimit, "rate_limit_error"),
            (ErrorKind::Server, "api_error"),
            (ErrorKind::Timeout, "timeout_error"),
            (ErrorKind::Overloaded, "overloaded_error"),
        ];
        for (kind, ty) in cases {
            let err = ErrorInfo {
                status: kind.status(),
                kind,
                message: "boom \"quoted\"".into(),
                code: None,
                param: None,
            };
            let v: Value = serde_json::from_slice(&encode_error(&err)).unwrap();
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], ty);
            assert_eq!(v["error"]["message"], "boom \"quoted\"");
            // Decoding our own body gives the kind back.
            assert_eq!(decode_error(kind.status(), &encode_error(&err)).kind, kind);
        }
    }
}
