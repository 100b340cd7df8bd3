//! The gateway's request-level error: what went wrong, who is to blame, and which HTTP status it maps to.
//!
//! Only `proxy::error_response` turns these into wire bytes (in the client's dialect); everything else
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
    /// The provider answered with an error status (its answer is passed on or translated).
    #[error("provider {provider} answered {status}")]
    UpstreamStatus { provider: String, status: u16 },
    /// Every target of the model (and its fallbacks) is ejected, saturated or was tried.
    #[error("{message}")]
    NoTargetAvailable {
        message: String,
        retry_after: Duration,
        /// Concurrency limits (429) rather than ejected targets (503).
        saturated: bool,
    },
    /// The request can't be expressed in the routed provider's dialect (or that dialect has
    /// no such operation).
    #[error("{message}")]
    Untranslatable {
        message: String,
        param: Option<String>,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// Governance: no virtual key, or one that is unknown, revoked or expired. The message
    /// never names another key's data.
    #[error("{message}")]
    Unauthenticated { message: String },
    /// Governance: the key (or its team or customer) may not use this model or provider; the
    /// message says which.
    #[error("{message}")]
    Forbidden { message: String, code: &'static str },
    /// Governance: a requests, tokens or concurrency limit refuses the request for now.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Duration,
    },
    /// Governance: the budget has no room for the request. 402, not 429: SDKs retry 429 and
    /// would hammer an exhausted budget.
    #[error("{message}")]
    BudgetExceeded {
        message: String,
        /// When the budget's window resets (`None` for a budget that never does).
        retry_after: Option<Duration>,
    },
    /// Governance's shared counters (Redis) cannot be reached: refused rather than let through
    /// unmetered (limits and budgets are guarantees).
    #[error("{0}")]
    GovernanceUnavailable(String),
}

impl From<crate::translate::ir::TranslateError> for GatewayError {
    /// A translation failure of the *client's request* (responses map to `UpstreamProtocol`
    /// at their call site).
    fn from(e: crate::translate::ir::TranslateError) -> Self {
        use crate::translate::ir::TranslateError as T;
        match e {
            T::Unsupported { message, param } => GatewayError::Untranslatable { message, param },
            T::Json(m) => GatewayError::BodyRead(format!("invalid JSON body: {m}")),
            T::Protocol(m) => GatewayError::Untranslatable {
                message: m,
                param: None,
            },
        }
    }
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
            GatewayError::BadRequest { .. }
            | GatewayError::BodyRead(_)
            | GatewayError::Untranslatable { .. } => S::BAD_REQUEST,
            GatewayError::ModelNotFound { .. } | GatewayError::NoEndpoint { .. } => S::NOT_FOUND,
            GatewayError::PayloadTooLarge { .. } => S::PAYLOAD_TOO_LARGE,
            GatewayError::BodyReadTimeout(_) => S::REQUEST_TIMEOUT,
            GatewayError::UpstreamConnect { .. } | GatewayError::UpstreamProtocol { .. } => {
                S::BAD_GATEWAY
            }
            GatewayError::UpstreamTimeout { .. } => S::GATEWAY_TIMEOUT,
            GatewayError::UpstreamStatus { status, .. } => {
                S::from_u16(*status).unwrap_or(S::BAD_GATEWAY)
            }
            GatewayError::NoTargetAvailable {
                saturated: true, ..
            } => S::TOO_MANY_REQUESTS,
            GatewayError::NoTargetAvailable { .. } => S::SERVICE_UNAVAILABLE,
            GatewayError::Internal(_) => S::INTERNAL_SERVER_ERROR,
            GatewayError::Unauthenticated { .. } => S::UNAUTHORIZED,
            GatewayError::Forbidden { .. } => S::FORBIDDEN,
            GatewayError::RateLimited { .. } => S::TOO_MANY_REQUESTS,
            GatewayError::BudgetExceeded { .. } => S::PAYMENT_REQUIRED,
            GatewayError::GovernanceUnavailable(_) => S::SERVICE_UNAVAILABLE,
        }
    }

    pub fn blame(&self) -> Blame {
        match self {
            GatewayError::BadRequest { .. }
            | GatewayError::BodyRead(_)
            | GatewayError::Untranslatable { .. }
            | GatewayError::ModelNotFound { .. }
            | GatewayError::NoEndpoint { .. }
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::BodyReadTimeout(_)
            | GatewayError::Unauthenticated { .. }
            | GatewayError::Forbidden { .. }
            | GatewayError::RateLimited { .. }
            | GatewayError::BudgetExceeded { .. } => Blame::Downstream,
            GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamProtocol { .. }
            | GatewayError::UpstreamStatus { .. }
            | GatewayError::NoTargetAvailable { .. } => Blame::Upstream,
            GatewayError::Internal(_) | GatewayError::GovernanceUnavailable(_) => Blame::Internal,
        }
    }

    /// OpenAI-style `(type, code)` for the error object.
    pub fn kind_and_code(&self) -> (&'static str, &'static str) {
        match self {
            GatewayError::BadRequest { .. } => ("invalid_request_error", "invalid_request"),
            GatewayError::BodyRead(_) => ("invalid_request_error", "invalid_body"),
            GatewayError::Untranslatable { .. } => {
                ("invalid_request_error", "unsupported_for_target")
            }
            GatewayError::ModelNotFound { .. } => ("invalid_request_error", "model_not_found"),
            GatewayError::NoEndpoint { .. } => ("invalid_request_error", "unknown_url"),
            GatewayError::PayloadTooLarge { .. } => ("invalid_request_error", "request_too_large"),
            GatewayError::BodyReadTimeout(_) => ("invalid_request_error", "request_timeout"),
            GatewayError::UpstreamConnect { .. } => ("upstream_error", "upstream_connect_failed"),
            GatewayError::UpstreamTimeout { .. } => ("upstream_error", "upstream_timeout"),
            GatewayError::UpstreamProtocol { .. } => ("upstream_error", "upstream_bad_response"),
            GatewayError::UpstreamStatus { .. } => ("upstream_error", "upstream_error_status"),
            GatewayError::NoTargetAvailable { .. } => ("server_error", "no_target_available"),
            GatewayError::Internal(_) => ("server_error", "internal_error"),
            GatewayError::Unauthenticated { .. } => ("authentication_error", "invalid_api_key"),
            GatewayError::Forbidden { code, .. } => ("permission_error", code),
            GatewayError::RateLimited { .. } => ("rate_limit_error", "rate_limit_exceeded"),
            GatewayError::BudgetExceeded { .. } => ("budget_exceeded", "budget_exceeded"),
            GatewayError::GovernanceUnavailable(_) => ("server_error", "governance_unavailable"),
        }
    }

    pub fn param(&self) -> Option<&str> {
        match self {
            GatewayError::BadRequest { param, .. } => *param,
            GatewayError::Untranslatable { param, .. } => param.as_deref(),
            GatewayError::ModelNotFound { .. } => Some("model"),
            _ => None,
        }
    }

    /// Seconds a client should wait before retrying, when the gateway knows.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::NoTargetAvailable { retry_after, .. }
            | GatewayError::RateLimited { retry_after, .. } => Some(*retry_after),
            GatewayError::BudgetExceeded { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The error in the dialect-neutral form the translators frame.
    pub fn info(&self) -> crate::translate::ir::ErrorInfo {
        use crate::translate::ir::ErrorKind as K;
        let kind = match self {
            GatewayError::BadRequest { .. }
            | GatewayError::BodyRead(_)
            | GatewayError::Untranslatable { .. }
            | GatewayError::BodyReadTimeout(_) => K::InvalidRequest,
            GatewayError::ModelNotFound { .. } | GatewayError::NoEndpoint { .. } => K::NotFound,
            GatewayError::PayloadTooLarge { .. } => K::RequestTooLarge,
            GatewayError::UpstreamTimeout { .. } => K::Timeout,
            GatewayError::NoTargetAvailable {
                saturated: true, ..
            } => K::RateLimit,
            GatewayError::NoTargetAvailable { .. } => K::Overloaded,
            GatewayError::UpstreamStatus { status, .. } => K::from_status(*status),
            GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamProtocol { .. }
            | GatewayError::Internal(_) => K::Server,
            GatewayError::GovernanceUnavailable(_) => K::Overloaded,
            GatewayError::Unauthenticated { .. } => K::Authentication,
            GatewayError::Forbidden { .. } => K::Permission,
            GatewayError::RateLimited { .. } => K::RateLimit,
            GatewayError::BudgetExceeded { .. } => K::Billing,
        };
        crate::translate::ir::ErrorInfo {
            status: self.status().as_u16(),
            kind,
            message: self.to_string(),
            code: Some(self.kind_and_code().1.to_string()),
            param: self.param().map(str::to_owned),
        }
    }
}
