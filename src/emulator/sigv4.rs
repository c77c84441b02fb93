//! Checking an AWS Signature Version 4 the way AWS does, for the developer
//! operation: the only one of the four that must be signed.

use std::collections::HashMap;

use aws_lc_rs::{constant_time, digest, hmac};

use super::wire::AwsError;

/// Signing name of Cognito Identity (the service model's `signingName`).
const SERVICE: &str = "cognito-identity";
/// How far a request's time may be from ours: AWS refuses a signature more
/// than 15 minutes off ("Signature expired").
const MAX_SKEW_SECONDS: i64 = 15 * 60;

/// What the check needs of a request.
pub struct SignedRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path, as sent.
    pub path: &'a str,
    /// Query string, as sent (empty for awsJson).
    pub query: &'a str,
    /// Headers.
    pub headers: &'a http::HeaderMap,
    /// Body.
    pub body: &'a [u8],
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        .as_ref()
        .to_vec()
}

fn incomplete(message: &str) -> AwsError {
    AwsError::new("IncompleteSignatureException", message)
}

/// Unix seconds of an ISO 8601 basic timestamp, `20150830T123600Z`.
fn parse_amz_date(value: &str) -> Option<i64> {
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| value.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Checks the request's SigV4 signature against the known access keys
/// (access key id to secret key) at Unix time `now`.
pub fn verify(
    req: &SignedRequest<'_>,
    keys: &HashMap<String, String>,
    now: i64,
) -> Result<(), AwsError> {
    let Some(auth) = req.headers.get("authorization") else {
        return Err(AwsError::new(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let auth = auth
        .to_str()
        .map_err(|_| incomplete("Authorization header is not text"))?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| incomplete("Only AWS4-HMAC-SHA256 signatures are supported"))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(incomplete(
            "Authorization header requires Credential, SignedHeaders and Signature",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope[..] else {
        return Err(incomplete("Credential has the wrong scope"));
    };
    let secret = keys.get(access_key).ok_or_else(|| {
        AwsError::new(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    })?;
    if service != SERVICE {
        return Err(incomplete(
            "Credential should be scoped to the cognito-identity service",
        ));
    }
    let amz_date = req
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| incomplete("X-Amz-Date header is missing"))?;
    let time = parse_amz_date(amz_date).ok_or_else(|| incomplete("X-Amz-Date is malformed"))?;
    if !amz_date.starts_with(date) {
        return Err(incomplete("Credential date does not match X-Amz-Date"));
    }
    if (time - now).abs() > MAX_SKEW_SECONDS {
        return Err(AwsError::new(
            "InvalidSignatureException",
            "Signature expired: the request time is more than 15 minutes from the server's.",
        ));
    }

    let mut canonical = format!(
        "{}\n{}\n{}\n",
        req.method,
        req.path,
        canonical_query(req.query)
    );
    for name in signed_headers.split(';') {
        let values: Vec<String> = req
            .headers
            .get_all(name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        canonical.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = req
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| hex_sha256(req.body), str::to_owned);
    canonical.push_str(&format!("\n{signed_headers}\n{payload_hash}"));

    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex_sha256(canonical.as_bytes())
    );
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date);
    let k_region = hmac_sha256(&k_date, region);
    let k_service = hmac_sha256(&k_region, service);
    let k_signing = hmac_sha256(&k_service, "aws4_request");
    let expected = hex::encode(hmac_sha256(&k_signing, &string_to_sign));
    constant_time::verify_slices_are_equal(expected.as_bytes(), signature.as_bytes()).map_err(
        |_| {
            AwsError::new(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method.",
            )
        },
    )
}

/// The query string with its parameters sorted, as SigV4 canonicalises it
/// (values are already encoded on the wire).
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("20240229T000000Z"), Some(1_709_164_800));
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
        assert_eq!(parse_amz_date("20151330T123600Z"), None);
    }

    /// A request signed by hand in the test, following the documented steps
    /// with the canonical request written out literally, so that a slip in
    /// `verify`'s canonicalisation breaks it; then each way a request can go
    /// wrong. The SDKs' own signatures are checked end to end by the
    /// integration tests (Rust SDK) and the boto3 conformance tests.
    #[test]
    fn verifies_a_signature_computed_independently_and_refuses_changes() {
        let keys = HashMap::from([(
            "AKIDEXAMPLE".to_owned(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
        )]);
        let body = br#"{"IdentityPoolId":"us-east-1:abc"}"#;
        let amz_date = "20150830T123600Z";
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "host",
            "cognito-identity.us-east-1.amazonaws.com".parse().unwrap(),
        );
        headers.insert("x-amz-date", amz_date.parse().unwrap());
        headers.insert(
            "content-type",
            "application/x-amz-json-1.1".parse().unwrap(),
        );
        let canonical = format!(
            "POST\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:cognito-identity.us-east-1.amazonaws.com\nx-amz-date:{amz_date}\n\ncontent-type;host;x-amz-date\n{}",
            hex_sha256(body)
        );
        let sts = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n20150830/us-east-1/cognito-identity/aws4_request\n{}",
            hex_sha256(canonical.as_bytes())
        );
        let mut key = hmac_sha256(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830");
        for part in ["us-east-1", "cognito-identity", "aws4_request"] {
            key = hmac_sha256(&key, part);
        }
        let sig = hex::encode(hmac_sha256(&key, &sts));
        headers.insert(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/cognito-identity/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={sig}")
                .parse()
                .unwrap(),
        );
        let now = parse_amz_date(amz_date).unwrap();
        let req = |body: &'static [u8], headers: &'static http::HeaderMap| SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers,
            body,
        };
        let headers: &'static http::HeaderMap = Box::leak(Box::new(headers));
        assert_eq!(verify(&req(body, headers), &keys, now), Ok(()));
        let tampered = verify(
            &req(br#"{"IdentityPoolId":"us-east-1:abd"}"#, headers),
            &keys,
            now,
        );
        assert_eq!(tampered.unwrap_err().code, "InvalidSignatureException");
        let late = verify(&req(body, headers), &keys, now + 16 * 60);
        assert_eq!(late.unwrap_err().code, "InvalidSignatureException");
        let unknown = verify(&req(body, headers), &HashMap::new(), now);
        assert_eq!(unknown.unwrap_err().code, "UnrecognizedClientException");
        let unsigned = verify(
            &req(body, Box::leak(Box::new(http::HeaderMap::new()))),
            &keys,
            now,
        );
        assert_eq!(
            unsigned.unwrap_err().code,
            "MissingAuthenticationTokenException"
        );
    }
}
