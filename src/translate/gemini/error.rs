//! Gemini errors (`{"error": google.rpc.Status}`) ⇄ IR `ErrorInfo`.

use serde_json::Value;

use super::wire::{ErrorEnvelope, Status};
use crate::translate::ir::{ErrorInfo, ErrorKind};

/// An upstream Gemini error response → IR. Bodies that are not Gemini JSON are tolerated: the
/// HTTP status decides the kind and the text becomes the message.
pub fn decode_error(status: u16, body: &[u8]) -> ErrorInfo {
    // `streamGenerateContent` without `alt=sse` answers errors inside a JSON array.
    // (Checked first: serde would also read an array into the struct, field by position.)
    let envelope = if body.trim_ascii_start().starts_with(b"[") {
        serde_json::from_slice::<Vec<ErrorEnvelope>>(body)
            .ok()
            .and_then(|v| v.into_iter().next())
    } else {
        serde_json::from_slice::<ErrorEnvelope>(body).ok()
    };
    match envelope.and_then(|e| e.error) {
        Some(s) => status_to_info(status, s),
        None => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            ErrorInfo {
                status,
                kind: ErrorKind::from_status(status),
                message: if text.is_empty() {
                    format!("upstream answered HTTP {status}")
                } else {
                    // Bound what an unexpected (HTML, proxy) page puts into an error message.
                    text.chars().take(1000).collect()
                },
                code: None,
                param: None,
            }
        }
    }
}

/// A `google.rpc.Status` → IR, `http` being the status to answer with.
pub(super) fn status_to_info(http: u16, s: Status) -> ErrorInfo {
    let status_name = s.status.filter(|n| !n.is_empty());
    let mut kind = status_name
        .as_deref()
        .and_then(kind_of)
        .unwrap_or_else(|| ErrorKind::from_status(http));
    // A bad API key is INVALID_ARGUMENT (400) with reason API_KEY_INVALID in its ErrorInfo.
    if s.details
        .iter()
        .any(|d| reason(d) == Some("API_KEY_INVALID"))
    {
        kind = ErrorKind::Authentication;
    }
    ErrorInfo {
        status: http,
        kind,
        message: s
            .message
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("upstream answered HTTP {http}")),
        param: s.details.iter().find_map(field_violation),
        code: status_name,
    }
}

fn kind_of(status: &str) -> Option<ErrorKind> {
    Some(match status {
        "RESOURCE_EXHAUSTED" => ErrorKind::RateLimit,
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => ErrorKind::InvalidRequest,
        "PERMISSION_DENIED" => ErrorKind::Permission,
        "UNAUTHENTICATED" => ErrorKind::Authentication,
        "NOT_FOUND" => ErrorKind::NotFound,
        "UNAVAILABLE" => ErrorKind::Overloaded,
        "DEADLINE_EXCEEDED" => ErrorKind::Timeout,
        "INTERNAL" | "UNKNOWN" | "DATA_LOSS" => ErrorKind::Server,
        _ => return None,
    })
}

/// `reason` of a `google.rpc.ErrorInfo` detail.
fn reason(detail: &Value) -> Option<&str> {
    detail.get("reason").and_then(Value::as_str)
}

/// The first field of a `google.rpc.BadRequest` detail.
fn field_violation(detail: &Value) -> Option<String> {
    detail
        .get("fieldViolations")?
        .as_array()?
        .iter()
        .find_map(|v| v.get("field")?.as_str().map(str::to_owned))
}

/// The Gemini status name for an error kind.
pub(super) fn status_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::RequestTooLarge => "INVALID_ARGUMENT",
        ErrorKind::Authentication => "UNAUTHENTICATED",
        // Gemini reports billing trouble as a failed precondition.
        ErrorKind::Billing => "FAILED_PRECONDITION",
        ErrorKind::Permission => "PERMISSION_DENIED",
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::RateLimit => "RESOURCE_EXHAUSTED",
        ErrorKind::Overloaded => "UNAVAILABLE",
        ErrorKind::Timeout => "DEADLINE_EXCEEDED",
        ErrorKind::Server => "INTERNAL",
    }
}

/// IR error → a Gemini error body for a Gemini client.
pub fn encode_error(err: &ErrorInfo) -> Vec<u8> {
    let envelope = ErrorEnvelope {
        error: Some(Status {
            code: Some(i64::from(err.status)),
            message: Some(err.message.clone()),
            status: Some(status_name(err.kind).to_owned()),
            details: Vec::new(),
        }),
    };
    // Plain structs with string keys: serialisation cannot fail.
    serde_json::to_vec(&envelope).unwrap_or_default()
}
