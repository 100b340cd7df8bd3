//! Bedrock errors (HTTP error bodies and in-stream exceptions) → IR.

use serde::Deserialize;

use crate::translate::ir::{ErrorInfo, ErrorKind};

/// Bedrock error bodies are `{"message": "..."}`; some AWS front ends (auth failures) spell it
/// `Message` and add `__type`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ErrorBody {
    message: Option<String>,
    #[serde(rename = "Message")]
    message_upper: Option<String>,
    #[serde(rename = "__type")]
    kind: Option<String>,
}

/// `ThrottlingException:http://internal.amazon.com/...` or `com.amazon...#ThrottlingException`
/// → `ThrottlingException`.
fn bare_type(t: &str) -> &str {
    let t = t.split(':').next().unwrap_or(t);
    t.rsplit('#').next().unwrap_or(t).trim()
}

/// The kind of a Bedrock exception by its name, in either spelling (`ThrottlingException` from
/// the `x-amzn-errortype` header, `throttlingException` from a stream's `:exception-type`).
pub fn error_kind(exception_type: &str) -> Option<ErrorKind> {
    let name = bare_type(exception_type).to_ascii_lowercase();
    let name = name.strip_suffix("exception").unwrap_or(&name);
    Some(match name {
        "validation" | "conflict" => ErrorKind::InvalidRequest,
        "accessdenied" => ErrorKind::Permission,
        "unrecognizedclient"
        | "invalidsignature"
        | "incompletesignature"
        | "expiredtoken"
        | "missingauthenticationtoken"
        | "invalidclienttokenid" => ErrorKind::Authentication,
        "resourcenotfound" => ErrorKind::NotFound,
        "throttling" | "servicequotaexceeded" | "toomanyrequests" => ErrorKind::RateLimit,
        "serviceunavailable" | "modelnotready" => ErrorKind::Overloaded,
        "modeltimeout" => ErrorKind::Timeout,
        "internalserver" | "modelerror" | "modelstreamerror" | "internalfailure" => {
            ErrorKind::Server
        }
        _ => return None,
    })
}

/// An HTTP error from Bedrock → IR. `error_type` is the `x-amzn-errortype` response header when
/// the caller has it; it names the exception more precisely than the status (Bedrock answers
/// both `ThrottlingException` and `ModelNotReadyException` with 429). `status` is kept as the
/// upstream sent it.
pub fn decode_error(status: u16, error_type: Option<&str>, body: &[u8]) -> ErrorInfo {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let type_name = error_type
        .map(bare_type)
        .filter(|t| !t.is_empty())
        .or(parsed
            .kind
            .as_deref()
            .map(bare_type)
            .filter(|t| !t.is_empty()));
    let kind = type_name
        .and_then(error_kind)
        .unwrap_or_else(|| ErrorKind::from_status(status));
    let message = parsed
        .message
        .or(parsed.message_upper)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| {
            // Not JSON (a proxy's HTML page, an empty body): say what we know, without echoing
            // an arbitrary body to the client.
            format!("Bedrock returned HTTP {status}")
        });
    ErrorInfo {
        status,
        kind,
        message,
        code: type_name.map(str::to_owned),
        param: None,
    }
}

/// An in-stream exception frame (`:exception-type` + JSON `{"message": ...}`) → IR. There is no
/// HTTP status (the stream started with 200), so the status is the kind's.
pub(super) fn stream_exception(exception_type: &str, payload: &[u8]) -> ErrorInfo {
    let parsed: ErrorBody = serde_json::from_slice(payload).unwrap_or_default();
    let kind = error_kind(exception_type).unwrap_or(ErrorKind::Server);
    ErrorInfo {
        status: kind.status(),
        kind,
        message: parsed
            .message
            .or(parsed.message_upper)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("Bedrock stream failed: {exception_type}")),
        code: Some(exception_type.to_owned()),
        param: None,
    }
}
