//! Bedrock SigV4 signatures checked against an independent implementation: botocore (the AWS
//! SDK for Python), signing the same requests at the same instant with the same credentials.
//!
//! The Converse URL carries the model id percent-encoded (`us.amazon.nova-micro-v1%3A0`).
//! For every service but S3, AWS builds the canonical URI by percent-encoding the path *as
//! sent* once more (`%3A` → `%253A`) and compares signatures over that; botocore
//! (`SigV4Auth._normalize_url_path` quotes the already-encoded path) and aws-sigv4
//! (`PercentEncodingMode::Double`, its default) both do the same, which is what the real
//! service accepts. Equal signatures here therefore mean the gateway signs what Bedrock checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrogate::providers::bedrock_sign::{model_path, sign, AwsCredentials};
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use serde_json::{json, Value};

/// botocore with its clock fixed; reads cases as JSON on stdin, prints the signed headers.
const SIGNER: &str = r#"
import sys, json, datetime
import botocore.auth as auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

FIXED = datetime.datetime(2026, 1, 2, 3, 4, 5)
auth.get_current_datetime = lambda *a, **k: FIXED

out = []
for c in json.load(sys.stdin):
    creds = Credentials(c["access_key"], c["secret_key"], c.get("token"))
    req = AWSRequest(method="POST", url=c["url"], data=c["body"].encode("utf-8"),
                     headers={"Content-Type": "application/json"})
    auth.SigV4Auth(creds, "bedrock", c["region"]).add_auth(req)
    out.append({"authorization": req.headers["Authorization"],
                "date": req.headers["X-Amz-Date"],
                "token": req.headers.get("X-Amz-Security-Token")})
print(json.dumps(out))
"#;

/// 2026-01-02T03:04:05Z, the instant the Python side is pinned to.
fn fixed_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_323_045)
}

struct Case {
    region: &'static str,
    url: String,
    body: String,
    token: Option<&'static str>,
}

#[test]
fn signatures_match_botocore() {
    let base = "https://bedrock-runtime.us-east-1.amazonaws.com";
    let converse = format!("{base}{}", model_path("us.amazon.nova-micro-v1:0", false));
    assert_eq!(
        converse,
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.amazon.nova-micro-v1%3A0/converse"
    );
    let body = r#"{"messages":[{"role":"user","content":[{"text":"Hello!"}]}],"system":[{"text":"You are a chatbot."}],"inferenceConfig":{"maxTokens":4096}}"#;
    let cases = [
        Case {
            region: "us-east-1",
            url: converse.clone(),
            body: body.into(),
            token: None,
        },
        Case {
            region: "us-east-1",
            url: converse.clone(),
            body: body.into(),
            token: Some("IQoJb3JpZ2luX2VjEXAMPLE//session+token="),
        },
        Case {
            region: "us-east-1",
            url: converse.clone(),
            body: r#"{"messages":[{"role":"user","content":[{"text":"héllo — 你好 🌍 \"q\""}]}]}"#
                .into(),
            token: None,
        },
        Case {
            region: "us-east-1",
            url: format!("{base}{}", model_path("us.amazon.nova-micro-v1:0", true)),
            body: body.into(),
            token: Some("IQoJb3JpZ2luX2VjEXAMPLE//session+token="),
        },
        Case {
            region: "eu-central-1",
            url: format!(
                "https://bedrock-runtime.eu-central-1.amazonaws.com{}",
                model_path(
                    "arn:aws:bedrock:eu-central-1:123456789012:inference-profile/eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
                    true
                )
            ),
            body: body.into(),
            token: None,
        },
    ];

    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let input: Vec<Value> = cases
        .iter()
        .map(|c| {
            json!({"access_key": "AKIDEXAMPLE", "secret_key": secret, "token": c.token,
                   "region": c.region, "url": c.url, "body": c.body})
        })
        .collect();
    let py = common::python::python_with(&["botocore"]);
    let stdout = common::python::run_script(
        &py,
        SIGNER,
        serde_json::to_string(&input).unwrap().as_bytes(),
        Duration::from_secs(60),
    );
    let expected: Vec<Value> = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("botocore output is not JSON ({e}): {stdout}"));
    assert_eq!(expected.len(), cases.len());

    for (case, want) in cases.iter().zip(&expected) {
        let creds = AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: secret.into(),
            session_token: case.token.map(str::to_owned),
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let uri = case.url.parse().unwrap();
        let got = sign(
            "POST",
            &uri,
            &headers,
            case.body.as_bytes(),
            &creds,
            case.region,
            fixed_time(),
        )
        .unwrap();
        let header = |name: &str| {
            got.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_str().unwrap().to_owned())
        };
        assert_eq!(
            want["date"], "20260102T030405Z",
            "botocore's clock was not pinned (is the botocore version too old?)"
        );
        assert_eq!(header("x-amz-date").as_deref(), want["date"].as_str());
        assert_eq!(
            header("authorization").as_deref(),
            want["authorization"].as_str(),
            "signature differs from botocore for {} (token: {})",
            case.url,
            case.token.is_some()
        );
        assert_eq!(
            header("x-amz-security-token").as_deref(),
            want["token"].as_str()
        );
    }
}
