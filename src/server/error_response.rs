//! The one place that frames gateway errors on the wire, in the client's dialect.

use http::header::{self, HeaderValue};
use http::Response;

use crate::dialect::openai;
use crate::error::GatewayError;
use crate::providers::openai::X_REQUEST_ID;
use crate::proxy::body::GatewayBody;

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
