//! The one place that frames gateway errors on the wire, in the client's dialect.

use http::header::{self, HeaderValue};
use http::Response;

use crate::dialect::openai;
use crate::error::GatewayError;
use crate::providers::openai::X_REQUEST_ID;
use crate::proxy::body::GatewayBody;
use crate::translate::{self, ir::Dialect, ir::ErrorInfo};

/// A gateway error in the client's dialect.
pub fn for_dialect(
    dialect: Dialect,
    err: &GatewayError,
    request_id: Option<&HeaderValue>,
) -> Response<GatewayBody> {
    let mut resp = match dialect {
        Dialect::OpenAi | Dialect::Bedrock => openai(err, request_id),
        _ => info(dialect, &err.info(), request_id),
    };
    if let Some(after) = err.retry_after() {
        // Whole seconds (RFC 9110 delay-seconds; nearest, at least 1), and the precise value
        // in retry-after-ms.
        let secs = ((after.as_millis() + 500) / 1000).max(1) as u64;
        resp.headers_mut()
            .insert(header::RETRY_AFTER, crate::http_headers::number_value(secs));
        resp.headers_mut().insert(
            header::HeaderName::from_static("retry-after-ms"),
            crate::http_headers::number_value(after.as_millis() as u64),
        );
    }
    resp
}

/// The status a client sees for an upstream error: the upstream's, except Anthropic's 529 for
/// clients whose APIs don't define it (503), and anything that is not an error status (502).
pub fn client_status(status: u16, client: Dialect) -> u16 {
    if status == 529 && client != Dialect::Anthropic {
        503
    } else if http::StatusCode::from_u16(status).is_err() || status < 400 {
        502
    } else {
        status
    }
}

/// An error (the gateway's or a translated upstream one) in the client's dialect, with the
/// error's status.
pub fn info(
    dialect: Dialect,
    err: &ErrorInfo,
    request_id: Option<&HeaderValue>,
) -> Response<GatewayBody> {
    let body = translate::encode_error(dialect, err);
    let mut resp = Response::new(GatewayBody::full(body));
    *resp.status_mut() =
        http::StatusCode::from_u16(err.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(id) = request_id {
        h.insert(&X_REQUEST_ID, id.clone());
    }
    resp
}

/// An OpenAI error object response with the error's status.
pub fn openai(err: &GatewayError, request_id: Option<&HeaderValue>) -> Response<GatewayBody> {
    let (kind, code) = err.kind_and_code();
    let body = openai::error_body(&err.to_string(), kind, err.param(), Some(code));
    let mut resp = Response::new(GatewayBody::full(body));
    *resp.status_mut() = err.status();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(id) = request_id {
        h.insert(&X_REQUEST_ID, id.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn body_json(resp: &Response<GatewayBody>) -> serde_json::Value {
        match resp.body() {
            GatewayBody::Full(Some(b)) => serde_json::from_slice(b).unwrap(),
            _ => panic!("not a whole body"),
        }
    }

    /// The governance refusals in every client dialect: the status each SDK turns into its own
    /// exception (401 AuthenticationError, 403 PermissionDeniedError, 429 RateLimitError, 402
    /// APIStatusError), the dialect's error type, the message intact, and `retry-after` when
    /// waiting helps.
    #[test]
    fn governance_refusals_speak_every_dialect() {
        let cases = [
            (
                GatewayError::Unauthenticated {
                    message: "missing virtual key".into(),
                },
                401,
                [
                    "authentication_error",
                    "authentication_error",
                    "UNAUTHENTICATED",
                ],
                None,
            ),
            (
                GatewayError::Forbidden {
                    message: "model `gpt-4o` is not allowed for this key".into(),
                    code: "model_not_allowed",
                },
                403,
                ["permission_error", "permission_error", "PERMISSION_DENIED"],
                None,
            ),
            (
                GatewayError::RateLimited {
                    message: "600 requests per minute".into(),
                    retry_after: Duration::from_secs(12),
                },
                429,
                ["rate_limit_error", "rate_limit_error", "RESOURCE_EXHAUSTED"],
                Some("12"),
            ),
            (
                GatewayError::BudgetExceeded {
                    message: "budget of $10.00 per day used up".into(),
                    retry_after: Some(Duration::from_secs(3600)),
                },
                402,
                ["budget_exceeded", "billing_error", "FAILED_PRECONDITION"],
                Some("3600"),
            ),
        ];
        for (err, status, types, retry_after) in cases {
            for (dialect, expected_type) in [Dialect::OpenAi, Dialect::Anthropic, Dialect::Gemini]
                .into_iter()
                .zip(types)
            {
                let resp = for_dialect(dialect, &err, None);
                assert_eq!(resp.status().as_u16(), status, "{err:?} {dialect:?}");
                let v = body_json(&resp);
                let (kind, message) = match dialect {
                    Dialect::Gemini => (&v["error"]["status"], &v["error"]["message"]),
                    _ => (&v["error"]["type"], &v["error"]["message"]),
                };
                assert_eq!(kind, expected_type, "{dialect:?}: {v}");
                assert_eq!(message.as_str(), Some(err.to_string().as_str()), "{v}");
                assert_eq!(
                    resp.headers()
                        .get(header::RETRY_AFTER)
                        .map(|h| h.to_str().unwrap()),
                    retry_after,
                    "{err:?} {dialect:?}"
                );
            }
        }
        // A total budget never resets: no retry-after.
        let resp = for_dialect(
            Dialect::OpenAi,
            &GatewayError::BudgetExceeded {
                message: "total budget used up".into(),
                retry_after: None,
            },
            None,
        );
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
    }
}
