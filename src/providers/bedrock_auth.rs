//! SigV4 for Bedrock requests (signing itself is `bedrock_sign`, on the AWS SDK's signer).

use bytes::Bytes;
use http::{HeaderMap, Uri};

use crate::config::AwsCredentialsConfig;
use crate::error::GatewayError;

/// Adds the SigV4 headers for this exact request (the body is never changed after this).
pub fn sign(
    _headers: &mut HeaderMap,
    _uri: &Uri,
    _body: &Bytes,
    _creds: &AwsCredentialsConfig,
    _region: &str,
) -> Result<(), GatewayError> {
    Err(GatewayError::Internal(
        "SigV4 signing is being wired".into(),
    ))
}
