//! AWS SigV4 signing for Bedrock requests, with the AWS SDK's own signer (`aws-sigv4`), and the
//! Converse URL path.
//!
//! Bedrock also accepts API keys (`Authorization: Bearer <key>`); that mode needs no signing and
//! is handled where the request is built.

use std::borrow::Cow;
use std::fmt;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{self, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Uri;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The SigV4 signing name of both the control plane and `bedrock-runtime`.
pub const SERVICE: &str = "bedrock";

/// Long-lived or temporary AWS credentials. `Debug` shows only the access key id.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

impl AwsCredentials {
    /// From `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and the optional `AWS_SESSION_TOKEN`
    /// (the variables every AWS SDK reads). Empty values count as unset.
    pub fn from_env() -> Result<Self, SignError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SignError> {
        let var = |name: &'static str| get(name).filter(|v| !v.trim().is_empty());
        Ok(AwsCredentials {
            access_key_id: var("AWS_ACCESS_KEY_ID")
                .ok_or(SignError::MissingCredentials("AWS_ACCESS_KEY_ID"))?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")
                .ok_or(SignError::MissingCredentials("AWS_SECRET_ACCESS_KEY"))?,
            session_token: var("AWS_SESSION_TOKEN"),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("AWS credentials are not configured: {0} is not set")]
    MissingCredentials(&'static str),
    #[error("cannot sign a request whose URI has no host")]
    MissingHost,
    #[error("header `{0}` has a value that is not visible ASCII and cannot be signed")]
    HeaderValue(String),
    #[error("SigV4 signing failed: {0}")]
    Signing(String),
}

/// Headers never signed: hop-by-hop headers and ones proxies rewrite (the same list botocore
/// uses), plus the signer's defaults (`authorization`, `user-agent`, `x-amzn-trace-id`).
const UNSIGNED: [&str; 11] = [
    "authorization",
    "connection",
    "expect",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
];

/// Signs one request for `bedrock` in `region` at `time` and returns the headers to add:
/// `authorization`, `x-amz-date` and, for temporary credentials, `x-amz-security-token` (the
/// credential-bearing ones marked sensitive).
///
/// `uri` must be the exact URI that is sent, path already percent-encoded (see `model_path`);
/// `headers` are the headers that will be sent and should be signed (`content-type`, `host`
/// when set explicitly; `host` is otherwise taken from the URI); `body` the exact bytes sent.
/// The canonical path is percent-encoded once more, as every AWS SDK does for services other
/// than S3 (AWS decodes nothing before comparing), so `…nova-micro-v1%3A0/converse` is signed
/// as `…nova-micro-v1%253A0/converse`.
pub fn sign(
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    creds: &AwsCredentials,
    region: &str,
    time: SystemTime,
) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
    if uri.host().is_none() && !headers.contains_key(http::header::HOST) {
        // The signer would panic on this (it reads the host from the URI).
        return Err(SignError::MissingHost);
    }
    let mut signed_headers = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        if UNSIGNED.contains(&name.as_str()) {
            continue;
        }
        let v = value
            .to_str()
            .map_err(|_| SignError::HeaderValue(name.as_str().to_owned()))?;
        signed_headers.push((name.as_str(), v));
    }

    let identity: Identity = Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        creds.session_token.clone(),
        None,
        "ferrogate",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.excluded_headers = Some(UNSIGNED.iter().map(|h| Cow::Borrowed(*h)).collect());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| SignError::Signing(e.to_string()))?
        .into();
    let request = SignableRequest::new(
        method,
        uri.to_string(),
        signed_headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| SignError::Signing(e.to_string()))?;
    let (instructions, _signature) = http_request::sign(request, &params)
        .map_err(|e| SignError::Signing(e.to_string()))?
        .into_parts();
    let (added, _params) = instructions.into_parts();
    let mut out = Vec::with_capacity(added.len());
    for h in added {
        let name = HeaderName::from_bytes(h.name().as_bytes())
            .map_err(|_| SignError::Signing(format!("signer produced header `{}`", h.name())))?;
        let mut value = HeaderValue::from_str(h.value())
            .map_err(|_| SignError::HeaderValue(h.name().to_owned()))?;
        // Keys never reach logs: the signature and the session token are credentials.
        value.set_sensitive(
            h.sensitive() || name == http::header::AUTHORIZATION || name == "x-amz-security-token",
        );
        out.push((name, value));
    }
    Ok(out)
}

/// Bytes kept as-is in a path segment: RFC 3986 unreserved. Everything else, `:` and `/` of
/// model ids and inference-profile ARNs included, is escaped so the id stays one segment
/// (also used for Gemini model names and Azure deployments in upstream paths).
pub const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `/model/{modelId}/converse` or `/converse-stream`, the model id percent-encoded as one path
/// segment (`us.amazon.nova-micro-v1:0` → `us.amazon.nova-micro-v1%3A0`).
pub fn model_path(model_id: &str, stream: bool) -> String {
    format!(
        "/model/{}/{}",
        utf8_percent_encode(model_id, SEGMENT),
        if stream {
            "converse-stream"
        } else {
            "converse"
        }
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn creds(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_owned),
        }
    }

    fn at() -> SystemTime {
        // 2026-01-02T03:04:05Z
        UNIX_EPOCH + Duration::from_secs(1_767_323_045)
    }

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h
    }

    fn get<'a>(out: &'a [(HeaderName, HeaderValue)], name: &str) -> Option<&'a HeaderValue> {
        out.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Signs a POST to `uri` at the fixed test time, with the example key (and `token`, if any).
    fn sign_post(
        uri: &str,
        headers: &HeaderMap,
        body: &[u8],
        token: Option<&str>,
        region: &str,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let uri: Uri = uri.parse().unwrap();
        sign("POST", &uri, headers, body, &creds(token), region, at())
    }

    #[test]
    fn signs_with_date_scope_and_signed_headers() {
        let out = sign_post(
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.amazon.nova-micro-v1%3A0/converse",
            &json_headers(),
            b"{}",
            None,
            "us-east-1",
        )
        .unwrap();
        assert_eq!(get(&out, "x-amz-date").unwrap(), "20260102T030405Z");
        let auth = get(&out, "authorization").unwrap();
        assert!(auth.is_sensitive());
        let auth = auth.to_str().unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260102/us-east-1/bedrock/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, Signature="
            ),
            "{auth}"
        );
        assert!(get(&out, "x-amz-security-token").is_none());
    }

    #[test]
    fn session_token_is_signed_and_sensitive() {
        let out = sign_post(
            "https://bedrock-runtime.eu-west-1.amazonaws.com/model/m/converse",
            &json_headers(),
            b"{}",
            Some("TOKEN"),
            "eu-west-1",
        )
        .unwrap();
        let token = get(&out, "x-amz-security-token").unwrap();
        assert_eq!(token, "TOKEN");
        assert!(token.is_sensitive());
        let auth = get(&out, "authorization").unwrap().to_str().unwrap();
        assert!(auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"));
        assert!(auth.contains("/eu-west-1/bedrock/aws4_request"));
    }

    #[test]
    fn signature_depends_on_body_and_skips_hop_by_hop_headers() {
        let uri = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse";
        let a = sign_post(uri, &json_headers(), b"{\"a\":1}", None, "us-east-1").unwrap();
        let b = sign_post(uri, &json_headers(), b"{\"a\":2}", None, "us-east-1").unwrap();
        assert_ne!(get(&a, "authorization"), get(&b, "authorization"));
        let mut with_hop = json_headers();
        with_hop.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("keep-alive"),
        );
        with_hop.insert(http::header::USER_AGENT, HeaderValue::from_static("x"));
        let c = sign_post(uri, &with_hop, b"{\"a\":1}", None, "us-east-1").unwrap();
        assert_eq!(get(&a, "authorization"), get(&c, "authorization"));
    }

    #[test]
    fn uri_without_host_is_an_error_not_a_panic() {
        assert_eq!(
            sign_post(
                "/model/m/converse",
                &HeaderMap::new(),
                b"",
                None,
                "us-east-1"
            ),
            Err(SignError::MissingHost)
        );
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let s = format!("{:?}", creds(Some("SESSIONSECRET")));
        assert!(s.contains("AKIDEXAMPLE"));
        assert!(!s.contains("wJalrXUtnFEMI"));
        assert!(!s.contains("SESSIONSECRET"));
    }

    #[test]
    fn credentials_from_env_lookup() {
        let c = AwsCredentials::from_lookup(|n| match n {
            "AWS_ACCESS_KEY_ID" => Some("AK".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("SK".into()),
            "AWS_SESSION_TOKEN" => Some(String::new()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            c,
            AwsCredentials {
                access_key_id: "AK".into(),
                secret_access_key: "SK".into(),
                session_token: None
            }
        );
        assert_eq!(
            AwsCredentials::from_lookup(|n| (n == "AWS_ACCESS_KEY_ID").then(|| "AK".into())),
            Err(SignError::MissingCredentials("AWS_SECRET_ACCESS_KEY"))
        );
    }

    #[test]
    fn model_path_encodes_the_id_as_one_segment() {
        assert_eq!(
            model_path("us.amazon.nova-micro-v1:0", false),
            "/model/us.amazon.nova-micro-v1%3A0/converse"
        );
        assert_eq!(
            model_path(
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0",
                true
            ),
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
        );
    }
}
