//! Error objects: an upstream's OpenAI-style error → IR, and IR → OpenAI error body.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::to_json_vec;
use crate::translate::ir::{ErrorInfo, ErrorKind};

/// Longest message taken from a body that isn't an error object (HTML error pages, proxies).
const MAX_RAW_MESSAGE: usize = 512;

#[derive(Debug, Deserialize)]
struct WireErrorBody {
    /// `{"error":{...}}` (OpenAI, Azure), or `{"error":"text"}` from some compatible servers.
    error: Option<Value>,
    /// vLLM and others answer with the object at top level.
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<Value>,
    param: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireError {
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    /// A string (`context_length_exceeded`), a number (`429` from Azure and vLLM) or null.
    code: Option<Value>,
    param: Option<Value>,
    /// Azure content-filter details.
    innererror: Option<WireInnerError>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireInnerError {
    code: Option<Value>,
}

/// Decodes an upstream error answer (OpenAI, Azure or compatible) into the IR. Never fails: a
/// body that isn't an error object gives a kind from the status and the body's text.
pub fn decode_error(status: u16, body: &[u8]) -> ErrorInfo {
    let parsed = serde_json::from_slice::<WireErrorBody>(body).ok();
    let wire = match parsed {
        Some(WireErrorBody {
            error: Some(Value::Object(obj)),
            ..
        }) => WireError::deserialize(Value::Object(obj)).ok(),
        Some(WireErrorBody {
            error: Some(Value::String(message)),
            ..
        }) => Some(WireError {
            message: Some(message),
            ..WireError::default()
        }),
        Some(WireErrorBody {
            message: Some(message),
            kind,
            code,
            param,
            ..
        }) => Some(WireError {
            message: Some(message),
            kind,
            code,
            param,
            innererror: None,
        }),
        _ => None,
    };
    let Some(wire) = wire else {
        return ErrorInfo {
            status,
            kind: ErrorKind::from_status(status),
            message: raw_message(status, body),
            code: None,
            param: None,
        };
    };
    let code = wire.code.as_ref().and_then(value_text).or_else(|| {
        wire.innererror
            .as_ref()
            .and_then(|i| i.code.as_ref())
            .and_then(value_text)
    });
    let kind = kind_for(status, wire.kind.as_deref(), code.as_deref());
    ErrorInfo {
        status,
        kind,
        message: wire
            .message
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| raw_message(status, body)),
        code,
        param: wire.param.as_ref().and_then(value_text),
    }
}

/// The kind from the status, refined by what the body says: a 429 can be a billing problem
/// (`insufficient_quota`, not worth retrying), and mid-stream errors (status 200) only say it in
/// the body.
fn kind_for(status: u16, kind: Option<&str>, code: Option<&str>) -> ErrorKind {
    match code {
        Some("insufficient_quota") => return ErrorKind::Billing,
        Some("context_length_exceeded") | Some("content_filter") => {
            return ErrorKind::InvalidRequest
        }
        Some("rate_limit_exceeded") => return ErrorKind::RateLimit,
        _ => {}
    }
    if (400..600).contains(&status) {
        return ErrorKind::from_status(status);
    }
    match kind {
        Some("invalid_request_error") => ErrorKind::InvalidRequest,
        Some("authentication_error") => ErrorKind::Authentication,
        Some("permission_error") => ErrorKind::Permission,
        Some("not_found_error") => ErrorKind::NotFound,
        Some("insufficient_quota") => ErrorKind::Billing,
        Some("rate_limit_error") | Some("requests") | Some("tokens") => ErrorKind::RateLimit,
        Some("overloaded_error") => ErrorKind::Overloaded,
        _ => ErrorKind::Server,
    }
}

/// Codes and params as text; numbers (Azure's `"code": 429`) are kept as their digits.
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A short, single-line excerpt of a body that isn't an error object.
fn raw_message(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return format!("upstream answered HTTP {status} with an empty body");
    }
    match text.char_indices().nth(MAX_RAW_MESSAGE) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[derive(Debug, Serialize)]
struct OutErrorBody<'a> {
    error: OutError<'a>,
}

#[derive(Debug, Serialize)]
pub(super) struct OutError<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl<'a> OutError<'a> {
    pub(super) fn new(err: &'a ErrorInfo) -> Self {
        // OpenAI's own codes for the kinds clients branch on, when the provider gave none.
        let default_code = match err.kind {
            ErrorKind::RateLimit => Some("rate_limit_exceeded"),
            ErrorKind::Billing => Some("insufficient_quota"),
            ErrorKind::RequestTooLarge => Some("request_too_large"),
            _ => None,
        };
        OutError {
            message: &err.message,
            kind: error_type(err.kind),
            param: err.param.as_deref(),
            code: err.code.as_deref().or(default_code),
        }
    }
}

/// OpenAI's `error.type` for a kind (protocols.md §1.4; SDKs branch on the status, the type is
/// for people reading it).
fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::RequestTooLarge => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Permission => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::RateLimit => "rate_limit_error",
        ErrorKind::Billing => "insufficient_quota",
        ErrorKind::Overloaded | ErrorKind::Timeout | ErrorKind::Server => "server_error",
    }
}

/// Encodes an IR error as OpenAI's `{"error":{"message","type","param","code"}}` (the HTTP
/// status is `err.status`).
pub fn encode_error(err: &ErrorInfo) -> Vec<u8> {
    to_json_vec(&OutErrorBody {
        error: OutError::new(err),
    })
}

/// An error object that arrived inside a stream (`data: {"error":...}`, Groq's `event: error`),
/// where the HTTP status was already 200: the kind comes from the body and the status from the
/// kind. Text that isn't an error object becomes the message of a server error.
pub(super) fn decode_stream_error(data: &[u8]) -> ErrorInfo {
    let mut info = decode_error(0, data);
    info.status = info.kind.status();
    info
}

/// The Responses API's terminal `error` stream event (pass-through Responses streams that
/// fail part-way: the gateway's own deadline or a broken upstream).
pub fn responses_error_event(err: &ErrorInfo, out: &mut Vec<u8>) {
    #[derive(Serialize)]
    struct Event<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        code: Option<&'a str>,
        message: &'a str,
        param: Option<&'a str>,
    }
    let event = Event {
        kind: "error",
        code: err.code.as_deref(),
        message: &err.message,
        param: err.param.as_deref(),
    };
    out.extend_from_slice(b"event: error\ndata: ");
    // A struct of strings: serialisation cannot fail.
    if serde_json::to_writer(&mut *out, &event).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::translate::openai::tests::fixture;

    #[test]
    fn decodes_invalid_param_fixture() {
        let info = decode_error(400, fixture!("openai-error-400-invalid-param.json"));
        assert_eq!(
            info,
            ErrorInfo {
                status: 400,
                kind: ErrorKind::InvalidRequest,
                message: "Web search options not supported with this model.".to_owned(),
                code: None,
                param: Some("web_search_options".to_owned()),
            }
        );
    }

    #[test]
    fn decodes_unsupported_parameter_fixture() {
        let info = decode_error(400, fixture!("openai-error-400-unsupported-parameter.json"));
        assert_eq!(info.kind, ErrorKind::InvalidRequest);
        assert_eq!(info.code.as_deref(), Some("unsupported_parameter"));
        assert_eq!(info.param.as_deref(), Some("max_tokens"));
        assert!(info
            .message
            .starts_with("Unsupported parameter: 'max_tokens'"));
    }

    #[test]
    fn decodes_rate_limit_fixture() {
        let info = decode_error(429, fixture!("openai-error-429-rate-limit.json"));
        assert_eq!((info.status, info.kind), (429, ErrorKind::RateLimit));
        assert_eq!(info.code.as_deref(), Some("rate_limit_exceeded"));
        assert!(info.message.contains("Please try again in 120ms"));
        assert_eq!(info.param, None);
    }

    #[test]
    fn insufficient_quota_is_billing_not_rate_limit() {
        let body = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        let info = decode_error(429, body);
        assert_eq!((info.status, info.kind), (429, ErrorKind::Billing));
        assert_eq!(info.code.as_deref(), Some("insufficient_quota"));
    }

    #[test]
    fn context_length_and_azure_content_filter_keep_their_codes() {
        let body = br#"{"error":{"message":"too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        let info = decode_error(400, body);
        assert_eq!(info.code.as_deref(), Some("context_length_exceeded"));
        assert_eq!(info.param.as_deref(), Some("messages"));

        let azure = br#"{"error":{"message":"The response was filtered","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"}}}}}"#;
        let info = decode_error(400, azure);
        assert_eq!(info.kind, ErrorKind::InvalidRequest);
        assert_eq!(info.code.as_deref(), Some("content_filter"));
        assert_eq!(info.param.as_deref(), Some("prompt"));

        // Without a code of its own, the inner code is kept; numeric codes become text.
        let inner =
            br#"{"error":{"message":"m","innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#;
        assert_eq!(
            decode_error(400, inner).code.as_deref(),
            Some("ResponsibleAIPolicyViolation")
        );
        let numeric = br#"{"error":{"message":"Rate limit","code":429}}"#;
        let info = decode_error(429, numeric);
        assert_eq!(info.code.as_deref(), Some("429"));
        assert_eq!(info.kind, ErrorKind::RateLimit);
    }

    #[test]
    fn tolerates_other_shapes_and_non_json_bodies() {
        let flat =
            br#"{"object":"error","message":"model not found","type":"NotFoundError","code":404}"#;
        let info = decode_error(404, flat);
        assert_eq!(
            (info.kind, info.message.as_str()),
            (ErrorKind::NotFound, "model not found")
        );

        let string = br#"{"error":"upstream exploded"}"#;
        let info = decode_error(500, string);
        assert_eq!(
            (info.kind, info.message.as_str()),
            (ErrorKind::Server, "upstream exploded")
        );

        let html = b"<html>\n<body>502   Bad Gateway</body>\n</html>";
        let info = decode_error(502, html);
        assert_eq!(info.kind, ErrorKind::Server);
        assert_eq!(info.message, "<html> <body>502 Bad Gateway</body> </html>");

        let long = "x".repeat(5000);
        let info = decode_error(503, long.as_bytes());
        assert_eq!(info.kind, ErrorKind::Overloaded);
        assert!(info.message.len() < 600);

        let info = decode_error(401, b"");
        assert_eq!(info.kind, ErrorKind::Authentication);
        assert!(info.message.contains("401"));
    }

    #[test]
    fn encodes_openai_error_objects() {
        let err = ErrorInfo {
            status: 400,
            kind: ErrorKind::InvalidRequest,
            message: "bad".to_owned(),
            code: Some("invalid_value".to_owned()),
            param: Some("temperature".to_owned()),
        };
        let v: serde_json::Value = serde_json::from_slice(&encode_error(&err)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error":{"message":"bad","type":"invalid_request_error","param":"temperature","code":"invalid_value"}})
        );
        for (kind, ty, code) in [
            (ErrorKind::Authentication, "authentication_error", None),
            (ErrorKind::Permission, "permission_error", None),
            (ErrorKind::NotFound, "not_found_error", None),
            (
                ErrorKind::RequestTooLarge,
                "invalid_request_error",
                Some("request_too_large"),
            ),
            (
                ErrorKind::RateLimit,
                "rate_limit_error",
                Some("rate_limit_exceeded"),
            ),
            (
                ErrorKind::Billing,
                "insufficient_quota",
                Some("insufficient_quota"),
            ),
            (ErrorKind::Overloaded, "server_error", None),
            (ErrorKind::Timeout, "server_error", None),
            (ErrorKind::Server, "server_error", None),
        ] {
            let err = ErrorInfo {
                status: kind.status(),
                kind,
                message: "m".to_owned(),
                code: None,
                param: None,
            };
            let v: serde_json::Value = serde_json::from_slice(&encode_error(&err)).unwrap();
            assert_eq!(v["error"]["type"], ty, "{kind:?}");
            assert_eq!(v["error"]["code"].as_str(), code, "{kind:?}");
            assert!(v["error"]["param"].is_null());
        }
    }

    #[test]
    fn encode_then_decode_keeps_the_error() {
        let err = ErrorInfo {
            status: 429,
            kind: ErrorKind::Billing,
            message: "quota".to_owned(),
            code: Some("insufficient_quota".to_owned()),
            param: None,
        };
        assert_eq!(decode_error(429, &encode_error(&err)), err);
    }
}
