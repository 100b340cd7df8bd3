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
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        resp.headers_mut().insert(
            header::HeaderName::from_static("retry-after-ms"),
            HeaderValue::from(after.as_millis() as u64),
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
