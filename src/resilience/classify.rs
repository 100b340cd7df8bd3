//! What an upstream failure means for the next attempt.
//!
//! The status decides first (it is what every provider documents), then the decoded error's
//! code and message refine it: a 429 can be a rate limit (retry) or an empty account (don't), a
//! 400 can be a context-window overflow (a bigger model may take it) or a content-policy refusal
//! (another provider's policy may differ). Message matching is ASCII case-insensitive and only
//! uses phrases the providers are known to send, to keep false positives out.

use super::breaker::Outcome;
use crate::translate::ir::{ErrorInfo, ErrorKind};

/// The next step after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Transient (rate limit, overload, server error, timeout): another attempt, on this target
    /// after a backoff or on another one, may succeed.
    Retry,
    /// This credential is refused (401/403) or its account is out of quota/billing: another key
    /// (or another provider's target) may succeed; retrying with this key will not.
    NextKey,
    /// The prompt does not fit the model's context window: only a model with a larger one
    /// (`context_window_fallbacks`) can help.
    ContextWindow,
    /// The provider's content policy refused the request: only a different model or provider
    /// (`content_policy_fallbacks`) can help.
    ContentPolicy,
    /// The request itself is wrong (bad parameter, unknown model, ...): no retry helps.
    Fatal,
}

impl Verdict {
    /// Whether the failure says something about the target's health (for the circuit breaker):
    /// only transient failures do; key, prompt and request problems are not the target's fault.
    pub fn is_target_failure(self) -> bool {
        self == Verdict::Retry
    }

    /// How the attempt counts for the target's breaker: transient failures are failures; any
    /// other verdict means the target answered (a 400 or 401 proves it is up), so it counts as a
    /// success. Recording those matters for a half-open probe: left unrecorded, the breaker waits
    /// out the probe's lease before probing again.
    pub fn breaker_outcome(self) -> Outcome {
        if self.is_target_failure() {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }
}

/// A failure below HTTP: no usable response came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportFailure {
    /// TCP/TLS connection could not be established (refused, DNS, handshake).
    Connect,
    /// Connecting took longer than `connect_ms`.
    ConnectTimeout,
    /// No response head within `first_byte_ms`.
    FirstByteTimeout,
    /// No content token within `first_token_ms`.
    FirstTokenTimeout,
    /// A stream went quiet for longer than `stall_ms`.
    Stall,
    /// The connection was reset or closed early.
    Reset,
    /// The upstream spoke malformed HTTP (or HTTP/2 sent a protocol error).
    Protocol,
}

/// Every transport failure is a [`Verdict::Retry`]: none of them says anything about the request
/// (it never reached a model, or the model did not answer in time), and all of them are typical
/// of one overloaded or broken upstream or network path that another attempt — often on another
/// target — avoids. Chat requests have no side effects beyond cost, so re-sending one whose
/// answer was lost is safe. Whether a retry is still *possible* (nothing has been sent to the
/// client yet, time is left before the deadline) is the caller's decision, not this function's.
pub fn classify_transport(kind: TransportFailure) -> Verdict {
    match kind {
        TransportFailure::Connect
        | TransportFailure::ConnectTimeout
        | TransportFailure::FirstByteTimeout
        | TransportFailure::FirstTokenTimeout
        | TransportFailure::Stall
        | TransportFailure::Reset
        | TransportFailure::Protocol => Verdict::Retry,
    }
}

/// The verdict for an upstream error answer: `status` is the HTTP status (for an error that
/// arrived inside a 200 stream, pass `info.status`), `info` the decoded error body
/// (`translate::decode_error`).
pub fn classify(status: u16, info: &ErrorInfo) -> Verdict {
    // An in-stream error has no error status of its own; its kind says which it would have had.
    let status = if (400..=599).contains(&status) {
        status
    } else {
        info.kind.status()
    };
    if status >= 500 {
        // Any 5xx, Anthropic's 529 "overloaded" included: the provider's side failed.
        return Verdict::Retry;
    }
    if is_billing(info) {
        return Verdict::NextKey;
    }
    // Gemini answers a bad API key with 400 INVALID_ARGUMENT (the decoder marks it
    // Authentication), hence the kind as well as the status.
    if matches!(status, 401 | 403)
        || matches!(info.kind, ErrorKind::Authentication | ErrorKind::Permission)
    {
        return Verdict::NextKey;
    }
    // The OpenAI and Anthropic SDKs retry 408, 409 and 429 too; 425 is "too early".
    if matches!(status, 408 | 409 | 425 | 429) {
        return Verdict::Retry;
    }
    if is_context_window(info) {
        return Verdict::ContextWindow;
    }
    if is_content_policy(info) {
        return Verdict::ContentPolicy;
    }
    Verdict::Fatal
}

/// The account behind the key is out of credit: retrying cannot help, another key may.
fn is_billing(info: &ErrorInfo) -> bool {
    if info.kind == ErrorKind::Billing {
        return true;
    }
    let code = info.code.as_deref().unwrap_or("");
    if [
        "insufficient_quota",
        "billing_error",
        "billing_hard_limit_reached",
    ]
    .iter()
    .any(|c| code.eq_ignore_ascii_case(c))
    {
        return true;
    }
    if contains_ci(&info.message, "insufficient_quota") {
        return true;
    }
    // Gemini's per-minute RESOURCE_EXHAUSTED says "check your plan and billing details" although
    // it is an ordinary, retryable rate limit (it carries a RetryInfo delay); an explicit
    // rate-limit code wins over the wording.
    let rate_limit_code = [
        "RESOURCE_EXHAUSTED",
        "rate_limit_exceeded",
        "rate_limit_error",
    ]
    .iter()
    .any(|c| code.eq_ignore_ascii_case(c));
    !rate_limit_code && contains_ci(&info.message, "billing")
}

/// The prompt (plus the requested output) exceeds the model's context window.
fn is_context_window(info: &ErrorInfo) -> bool {
    let code = info.code.as_deref().unwrap_or("");
    if code.eq_ignore_ascii_case("context_length_exceeded")
        || code.eq_ignore_ascii_case("model_context_window_exceeded")
    {
        return true;
    }
    const PHRASES: [&str; 6] = [
        // Anthropic: "prompt is too long: 208310 tokens > 200000 maximum".
        "prompt is too long",
        // Anthropic: "input length and `max_tokens` exceed context limit: ...".
        "exceed context limit",
        // Anthropic and OpenAI-compatible servers.
        "context window",
        // OpenAI: "This model's maximum context length is 128000 tokens. ...".
        "maximum context length",
        // Gemini INVALID_ARGUMENT: "The input token count (...) exceeds the maximum number of
        // tokens allowed (...)".
        "exceeds the maximum number of tokens",
        // Bedrock (and others): "too many input tokens".
        "too many input tokens",
    ];
    if PHRASES.iter().any(|p| contains_ci(&info.message, p)) {
        return true;
    }
    // Bedrock ValidationException: "Input is too long for requested model." The bare phrase is
    // only trusted with that exception name.
    code.eq_ignore_ascii_case("ValidationException") && contains_ci(&info.message, "too long")
}

/// The provider's content policy refused the prompt or the answer.
fn is_content_policy(info: &ErrorInfo) -> bool {
    const CODES: [&str; 9] = [
        // OpenAI / Azure.
        "content_filter",
        "content_policy_violation",
        "ResponsibleAIPolicyViolation",
        // Gemini block reasons, when an error carries one.
        "SAFETY",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "RECITATION",
    ];
    let code = info.code.as_deref().unwrap_or("");
    if CODES.iter().any(|c| code.eq_ignore_ascii_case(c)) {
        return true;
    }
    const PHRASES: [&str; 7] = [
        // Azure: "...triggering Azure OpenAI's content management policy...".
        "content management policy",
        "responsibleaipolicyviolation",
        "content_policy_violation",
        // OpenAI: "Your request was rejected as a result of our safety system".
        "our safety system",
        // Anthropic: "Output blocked by content filtering policy".
        "content filtering policy",
        // Gemini: "... blocked due to SAFETY", "prompt was blocked".
        "blocked due to",
        "prompt was blocked",
    ];
    PHRASES.iter().any(|p| contains_ci(&info.message, p))
}

/// ASCII case-insensitive substring test, without allocating a lowercase copy.
fn contains_ci(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::translate::decode_error;
    use crate::translate::ir::Dialect;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/",
                $name
            ))
        };
    }

    fn info(status: u16, kind: ErrorKind, code: Option<&str>, message: &str) -> ErrorInfo {
        ErrorInfo {
            status,
            kind,
            message: message.to_owned(),
            code: code.map(str::to_owned),
            param: None,
        }
    }

    /// A 400 as every provider sends a request it will not take: the code and wording decide.
    fn bad_request(code: Option<&str>, message: &str) -> ErrorInfo {
        info(400, ErrorKind::InvalidRequest, code, message)
    }

    #[test]
    fn recorded_openai_rate_limit_is_retried() {
        let body = fixture!("openai-error-429-rate-limit.json");
        let e = decode_error(Dialect::OpenAi, 429, None, body);
        assert_eq!(e.code.as_deref(), Some("rate_limit_exceeded"));
        assert_eq!(classify(429, &e), Verdict::Retry);
        assert!(classify(429, &e).is_target_failure());
    }

    #[test]
    fn recorded_gemini_quota_429_is_retried_not_billing() {
        // Pitfall: the message says "quota ... check your plan" (the live one adds "and billing
        // details"), yet it is a per-minute limit with a RetryInfo delay.
        let body = fixture!("gemini-error-429.json");
        let e = decode_error(Dialect::Gemini, 429, None, body);
        assert_eq!(e.code.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(classify(429, &e), Verdict::Retry);
        let live = ErrorInfo {
            message: "You exceeded your current quota, please check your plan and billing \
                      details."
                .into(),
            ..e
        };
        assert_eq!(classify(429, &live), Verdict::Retry);
    }

    #[test]
    fn recorded_bad_requests_are_fatal() {
        let anthropic = decode_error(
            Dialect::Anthropic,
            400,
            None,
            fixture!("anthropic-error-400-invalid-request.json"),
        );
        assert_eq!(classify(400, &anthropic), Verdict::Fatal);
        for body in [
            &fixture!("openai-error-400-invalid-param.json")[..],
            &fixture!("openai-error-400-unsupported-parameter.json")[..],
        ] {
            let e = decode_error(Dialect::OpenAi, 400, None, body);
            assert_eq!(classify(400, &e), Verdict::Fatal, "{e:?}");
            assert!(!classify(400, &e).is_target_failure());
        }
        let not_found = decode_error(
            Dialect::Anthropic,
            404,
            None,
            fixture!("anthropic-error-404-not-found.json"),
        );
        assert_eq!(classify(404, &not_found), Verdict::Fatal);
    }

    #[test]
    fn recorded_anthropic_stream_overload_is_retried() {
        // An `event: error` inside a 200 stream: the status passed is the decoded one.
        let mut events = Vec::new();
        let mut splitter = crate::sse::SseSplitter::new();
        splitter.push(
            bytes::Bytes::from_static(fixture!("anthropic-stream-error-overloaded.sse")),
            |ev| events.push(ev),
        );
        events.extend(splitter.finish());
        let event = events
            .iter()
            .find(|ev| crate::sse::event_name(ev) == Some("error"))
            .unwrap();
        // The event's data is itself an Anthropic error body.
        let data = crate::sse::data_payload(event).unwrap();
        let e = decode_error(Dialect::Anthropic, 200, None, &data);
        assert_eq!(e.kind, ErrorKind::Overloaded);
        assert_eq!(classify(200, &e), Verdict::Retry);
    }

    #[test]
    fn status_table() {
        let cases: &[(u16, Verdict)] = &[
            (408, Verdict::Retry),
            (409, Verdict::Retry),
            (425, Verdict::Retry),
            (429, Verdict::Retry),
            (500, Verdict::Retry),
            (502, Verdict::Retry),
            (503, Verdict::Retry),
            (504, Verdict::Retry),
            (529, Verdict::Retry),
            (599, Verdict::Retry),
            (401, Verdict::NextKey),
            (403, Verdict::NextKey),
            (400, Verdict::Fatal),
            (404, Verdict::Fatal),
            (413, Verdict::Fatal),
            (422, Verdict::Fatal),
        ];
        for &(status, want) in cases {
            let e = info(status, ErrorKind::from_status(status), None, "boom");
            assert_eq!(classify(status, &e), want, "HTTP {status}");
        }
    }

    #[test]
    fn billing_is_not_retried() {
        let cases = [
            // OpenAI insufficient_quota arrives as 429 (decoded kind Billing).
            info(
                429,
                ErrorKind::Billing,
                Some("insufficient_quota"),
                "You exceeded your current quota, please check your plan and billing details.",
            ),
            // An OpenAI-compatible server that keeps the code but not the kind.
            info(
                429,
                ErrorKind::RateLimit,
                Some("insufficient_quota"),
                "quota",
            ),
            // Only the message says so.
            info(
                429,
                ErrorKind::RateLimit,
                None,
                "error code: insufficient_quota",
            ),
            info(
                429,
                ErrorKind::RateLimit,
                None,
                "Billing hard limit reached",
            ),
            // Anthropic 402 billing_error, DeepSeek-style 402.
            info(
                402,
                ErrorKind::Billing,
                Some("billing_error"),
                "credit balance is too low",
            ),
            info(402, ErrorKind::Billing, None, "Insufficient Balance"),
        ];
        for e in &cases {
            assert_eq!(classify(e.status, e), Verdict::NextKey, "{e:?}");
        }
    }

    #[test]
    fn billing_wording_with_a_rate_limit_code_is_a_rate_limit() {
        // The explicit code wins over the wording.
        let e = info(
            429,
            ErrorKind::RateLimit,
            Some("rate_limit_exceeded"),
            "Rate limit reached; see your billing tier",
        );
        assert_eq!(classify(429, &e), Verdict::Retry);
    }

    #[test]
    fn credentials_go_to_the_next_key() {
        let gemini_bad_key = info(
            400,
            ErrorKind::Authentication,
            Some("INVALID_ARGUMENT"),
            "API key not valid. Please pass a valid API key.",
        );
        assert_eq!(classify(400, &gemini_bad_key), Verdict::NextKey);
        let referer = info(
            403,
            ErrorKind::Permission,
            Some("PERMISSION_DENIED"),
            "Requests from referer <empty> are blocked.",
        );
        // "blocked" here is about the key, not content.
        assert_eq!(classify(403, &referer), Verdict::NextKey);
        assert!(!Verdict::NextKey.is_target_failure());
    }

    #[test]
    fn context_window_table() {
        let cases = [
            bad_request(
                Some("context_length_exceeded"),
                "This model's maximum context length is 128000 tokens. However, your messages \
                 resulted in 130000 tokens.",
            ),
            // OpenAI-compatible (vLLM) without a code.
            bad_request(None, "This model's maximum context length is 8192 tokens."),
            bad_request(
                Some("invalid_request_error"),
                "prompt is too long: 208310 tokens > 200000 maximum",
            ),
            bad_request(
                Some("invalid_request_error"),
                "input length and `max_tokens` exceed context limit: 197202 + 21333 > 200000",
            ),
            bad_request(
                Some("invalid_request_error"),
                "The request exceeds the model's Context Window.",
            ),
            bad_request(
                Some("INVALID_ARGUMENT"),
                "The input token count (1200000) exceeds the maximum number of tokens allowed \
                 (1048576).",
            ),
            bad_request(
                Some("ValidationException"),
                "Input is too long for requested model.",
            ),
            bad_request(
                Some("ValidationException"),
                "The model returned the following errors: too many input tokens",
            ),
        ];
        for e in &cases {
            assert_eq!(classify(400, e), Verdict::ContextWindow, "{e:?}");
        }
        // "too long" alone is only trusted from Bedrock's ValidationException.
        let other = bad_request(
            Some("invalid_value"),
            "'tools[0].function.name' is too long",
        );
        assert_eq!(classify(400, &other), Verdict::Fatal);
    }

    #[test]
    fn content_policy_table() {
        let cases = [
            bad_request(
                Some("content_filter"),
                "The response was filtered due to the prompt triggering Azure OpenAI's content \
                 management policy.",
            ),
            bad_request(Some("ResponsibleAIPolicyViolation"), "filtered"),
            bad_request(
                Some("content_policy_violation"),
                "Your request was rejected as a result of our safety system.",
            ),
            bad_request(
                None,
                "Your request was rejected as a result of our safety system.",
            ),
            bad_request(
                Some("invalid_request_error"),
                "Output blocked by content filtering policy",
            ),
            bad_request(Some("SAFETY"), "Response was blocked"),
            bad_request(
                Some("INVALID_ARGUMENT"),
                "The prompt was blocked due to SAFETY",
            ),
        ];
        for e in &cases {
            assert_eq!(classify(400, e), Verdict::ContentPolicy, "{e:?}");
            assert!(!classify(400, e).is_target_failure());
        }
    }

    #[test]
    fn server_errors_retry_whatever_the_body_says() {
        // A 5xx is the provider's failure even if its message looks like a client problem.
        let e = info(500, ErrorKind::Server, None, "prompt is too long");
        assert_eq!(classify(500, &e), Verdict::Retry);
        let e = info(
            529,
            ErrorKind::Overloaded,
            Some("overloaded_error"),
            "Overloaded",
        );
        assert_eq!(classify(529, &e), Verdict::Retry);
    }

    #[test]
    fn in_stream_errors_use_the_kind() {
        // No error status (200 stream): the kind's status decides.
        let overloaded = info(200, ErrorKind::Overloaded, None, "Overloaded");
        assert_eq!(classify(200, &overloaded), Verdict::Retry);
        let invalid = info(200, ErrorKind::InvalidRequest, None, "bad");
        assert_eq!(classify(0, &invalid), Verdict::Fatal);
        let throttled = info(
            200,
            ErrorKind::RateLimit,
            Some("throttlingException"),
            "slow",
        );
        assert_eq!(classify(200, &throttled), Verdict::Retry);
    }

    #[test]
    fn transport_failures_all_retry() {
        for kind in [
            TransportFailure::Connect,
            TransportFailure::ConnectTimeout,
            TransportFailure::FirstByteTimeout,
            TransportFailure::FirstTokenTimeout,
            TransportFailure::Stall,
            TransportFailure::Reset,
            TransportFailure::Protocol,
        ] {
            assert_eq!(classify_transport(kind), Verdict::Retry, "{kind:?}");
        }
    }

    #[test]
    fn only_transient_failures_count_against_the_target() {
        assert_eq!(Verdict::Retry.breaker_outcome(), Outcome::Failure);
        for v in [
            Verdict::NextKey,
            Verdict::ContextWindow,
            Verdict::ContentPolicy,
            Verdict::Fatal,
        ] {
            assert!(!v.is_target_failure(), "{v:?}");
            assert_eq!(v.breaker_outcome(), Outcome::Success, "{v:?}");
        }
    }

    #[test]
    fn case_insensitive_search() {
        assert!(contains_ci("Prompt Is Too Long: x", "prompt is too long"));
        assert!(!contains_ci("short", "prompt is too long"));
        assert!(contains_ci("", ""));
    }
}
