//! The gateway's request-level error: what went wrong, who is to blame, and which HTTP status it maps to.
//!
//! Only `server::error_response` turns these into wire bytes (in the client's dialect); everything else
//! returns them. Messages never contain credentials.

use std::time::Duration;

/// Who caused a failure; decides status codes now and retry/fallback policy later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The client sent something we can't serve.
    Downstream,
    /// The provider failed or was unreachable.
    Upstream,
    /// A bug or resource problem in the gateway itself.
    Internal,
}

/// Which upstream deadline fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    Connect,
    FirstByte,
    Total,
}

impl Deadline {
    pub fn as_str(self) -> &'static str {
        match self {
            Deadline::Connect => "connect",
            Deadline::FirstByte => "first byte",
            Deadline::Total => "total",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<&'static str>,
    },
    #[error("{message}")]
    ModelNotFound { message: String },
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the client did not send the request body within {0:?}")]
    BodyReadTimeout(Duration),
    #[error("failed to read the request body: {0}")]
    BodyRead(String),
    #[error("no route for {method} {path}")]
    NoEndpoint { method: String, path: String },
    #[error("provider {provider} is unreachable: {detail}")]
    UpstreamConnect { provider: String, detail: String },
    #[error("provider {provider} did not answer within the {} deadline ({:?})", .deadline.as_str(), .after)]
    UpstreamTimeout {
        provider: String,
        deadline: Deadline,
        after: Duration,
    },
    #[error("provider {provider} sent an invalid response: {detail}")]
    UpstreamProtocol { provider: String, detail: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        GatewayError::BadRequest {
            message: message.into(),
            param,
        }
    }

    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            GatewayError::BadRequest { .. } | GatewayError::BodyRead(_) => S::BAD_REQUEST,
            GatewayError::ModelNotFound { .. } | GatewayError::NoEndpoint { .. } => S::NOT_FOUND,
            GatewayError::PayloadTooLarge { .. } => S::PAYLOAD_TOO_LARGE,
            GatewayError::BodyReadTimeout(_) => S::REQUEST_TIMEOUT,
            GatewayError::UpstreamConnect { .. } | GatewayError::UpstreamProtocol { .. } => {
                S::BAD_GATEWAY
            }
            GatewayError::UpstreamTimeout { .. } => S::GATEWAY_TIMEOUT,
            GatewayError::Internal(_) => S::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn blame(&self) -> Blame {
        match self {
            GatewayError::BadRequest { .. }
            | GatewayError::BodyRead(_)
            | GatewayError::ModelNotFound { .. }
            | GatewayError::NoEndpoint { .. }
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::BodyReadTimeout(_) => Blame::Downstream,
            GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamProtocol { .. } => Blame::Upstream,
            GatewayError::Internal(_) => Blame::Internal,
        }
    }

    /// OpenAI-style `(type, code)` for the error object.
    pub fn kind_and_code(&self) -> (&'static str, &'static str) {
        match self {
            GatewayError::BadRequest { .. } => ("invalid_request_error", "invalid_request"),
            GatewayError::BodyRead(_) => ("invalid_request_error", "invalid_body"),
            GatewayError::ModelNotFound { .. } => ("invalid_request_error", "model_not_found"),
            GatewayError::NoEndpoint { .. } => ("invalid_request_error", "unknown_url"),
            GatewayError::PayloadTooLarge { .. } => ("invalid_request_error", "request_too_large"),
            GatewayError::BodyReadTimeout(_) => ("invalid_request_error", "request_timeout"),
            GatewayError::UpstreamConnect { .. } => ("upstream_error", "upstream_connect_failed"),
            GatewayError::UpstreamTimeout { .. } => ("upstream_error", "upstream_timeout"),
            GatewayError::UpstreamProtocol { .. } => ("upstream_error", "upstream_bad_response"),
            GatewayError::Internal(_) => ("server_error", "internal_error"),
        }
    }

    pub fn param(&self) -> Option<&'static str> {
        match self {
            GatewayError::BadRequest { param, .. } => *param,
            GatewayError::ModelNotFound { .. } => Some("model"),
            _ => None,
        }
    }
}
