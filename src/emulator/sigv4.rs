//! Checking an AWS Signature Version 4 for the developer operation, the only
//! one of the four that must be signed. The Authorization header is taken
//! apart, the request is signed again by `aws-sigv4` (the signer the AWS SDK
//! for Rust uses) with the secret of the named access key, the request's own
//! X-Amz-Date and only the headers the client signed, and the two signatures
//! are compared in constant time.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_lc_rs::{constant_time, digest};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

use super::wire::AwsError;

/// Signing name of Cognito Identity (the service model's `signingName`).
const SERVICE: &str = "cognito-identity";
/// How far a request's time may be from ours: AWS refuses a signature more
/// than 15 minutes off ("Signature expired").
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// The headers the signer takes from elsewhere than the request's header
/// list: the time from the signing parameters, the session token from the
/// credentials.
const X_AMZ_DATE: &str = "x-amz-date";
const X_AMZ_SECURITY_TOKEN: &str = "x-amz-security-token";

/// What the check needs of a request.
pub struct SignedRequest<'a> {
    /// The HTTP method, which is signed.
    pub method: &'a str,
    /// The request target, as sent: path and query (and, over HTTP/2, the
    /// authority, which stands in for a Host header).
    pub uri: &'a http::Uri,
    /// The headers as received: Authorization, X-Amz-Date and those the
    /// client signed.
    pub headers: &'a http::HeaderMap,
    /// The body, whose hash is signed unless a client-sent hash says it.
    pub body: &'a [u8],
}

fn incomplete(message: &str) -> AwsError {
    AwsError::new("IncompleteSignatureException", message)
}

fn mismatch() -> AwsError {
    AwsError::new(
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method.",
    )
}

/// The parts of an `AWS4-HMAC-SHA256` Authorization header.
struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

impl<'a> Authorization<'a> {
    fn parse(value: &'a str) -> Result<Self, AwsError> {
        let rest = value
            .strip_prefix("AWS4-HMAC-SHA256 ")
            .ok_or_else(|| incomplete("Only AWS4-HMAC-SHA256 signatures are supported"))?;
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
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
        Ok(Self {
            access_key,
            date,
            region,
            service,
            signed_headers,
            signature,
        })
    }
}

/// The instant of an X-Amz-Date, ISO 8601's basic format
/// (`20150830T123600Z`). aws-smithy-types reads the extended format
/// (RFC 3339), so the separators are put in once the shape is checked.
fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let shape_ok = value.len() == 16
        && value.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let field = |r: std::ops::Range<usize>| value.get(r).unwrap_or_default();
    let extended = format!(
        "{}-{}-{}T{}:{}:{}Z",
        field(0..4),
        field(4..6),
        field(6..8),
        field(9..11),
        field(11..13),
        field(13..15)
    );
    let time = DateTime::from_str(&extended, Format::DateTime).ok()?;
    SystemTime::try_from(time).ok()
}

/// Checks the request's SigV4 signature against the known access keys
/// (access key id to secret key) at `now`: the Authorization header names
/// a known key scoped to this service, the request's time is near `now`,
/// and the signature the emulator computes over what the client signed is
/// the one sent.
pub fn verify(
    req: &SignedRequest<'_>,
    keys: &HashMap<String, String>,
    now: SystemTime,
) -> Result<(), AwsError> {
    let Some(auth) = req.headers.get(http::header::AUTHORIZATION) else {
        return Err(AwsError::new(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let auth = auth
        .to_str()
        .map_err(|_| incomplete("Authorization header is not text"))?;
    let auth = Authorization::parse(auth)?;
    let secret = keys.get(auth.access_key).ok_or_else(|| {
        AwsError::new(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    })?;
    if auth.service != SERVICE {
        return Err(incomplete(
            "Credential should be scoped to the cognito-identity service",
        ));
    }
    let time = request_time(req, &auth, now)?;
    let SignedHeaders {
        headers,
        session_token,
    } = signed_headers(req, &auth)?;
    let signable = SignableRequest::new(
        req.method,
        req.uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str),
        headers.into_iter(),
        SignableBody::Precomputed(payload_hash(req)),
    )
    .map_err(|_| mismatch())?;
    let identity: Identity =
        Credentials::new(auth.access_key, secret, session_token, None, "emulator").into();
    let mut settings = SigningSettings::default();
    // The default leaves out headers the SDK does not sign (User-Agent, ...);
    // here the client's list decides, and it is all that is passed.
    settings.excluded_headers = None;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|_| mismatch())?
        .into();
    let expected = sign(signable, &params).map_err(|_| mismatch())?;
    constant_time::verify_slices_are_equal(
        expected.signature().as_bytes(),
        auth.signature.as_bytes(),
    )
    .map_err(|_| mismatch())
}

/// The request's X-Amz-Date, which must fall on the credential's date and
/// within [`MAX_SKEW`] of `now`.
fn request_time(
    req: &SignedRequest<'_>,
    auth: &Authorization<'_>,
    now: SystemTime,
) -> Result<SystemTime, AwsError> {
    let amz_date = req
        .headers
        .get(X_AMZ_DATE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| incomplete("X-Amz-Date header is missing"))?;
    let time = parse_amz_date(amz_date).ok_or_else(|| incomplete("X-Amz-Date is malformed"))?;
    if !amz_date.starts_with(auth.date) {
        return Err(incomplete("Credential date does not match X-Amz-Date"));
    }
    let skew = time
        .duration_since(now)
        .or_else(|_| now.duration_since(time))
        .unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(AwsError::new(
            "InvalidSignatureException",
            "Signature expired: the request time is more than 15 minutes from the server's.",
        ));
    }
    Ok(time)
}

/// The headers the client says it signed, as the signer takes them (the
/// time and the session token apart).
struct SignedHeaders<'r> {
    headers: Vec<(&'r str, &'r str)>,
    session_token: Option<String>,
}

/// The headers the client says it signed, read from the request.
fn signed_headers<'r>(
    req: &'r SignedRequest<'_>,
    auth: &Authorization<'r>,
) -> Result<SignedHeaders<'r>, AwsError> {
    let mut headers: Vec<(&str, &str)> = Vec::new();
    let mut session_token = None;
    for name in auth.signed_headers.split(';') {
        let values = req.headers.get_all(name);
        if name == "host" && values.iter().next().is_none() {
            // HTTP/2 carries the host as the :authority, which hyper puts
            // in the URI rather than among the headers.
            if let Some(authority) = req.uri.authority() {
                headers.push(("host", authority.as_str()));
            }
            continue;
        }
        for value in values {
            let value = value.to_str().map_err(|_| mismatch())?;
            match name {
                // The signer writes these itself, from the time and the
                // credentials; a session token given as credentials stays
                // out of the signer's trace-level log of the request.
                X_AMZ_DATE => {}
                X_AMZ_SECURITY_TOKEN => session_token = Some(value.to_owned()),
                _ => headers.push((name, value)),
            }
        }
    }
    // SigV4 requires the host to be signed; without one among the headers
    // the signer would read it from the URI, which here has none.
    if !headers.iter().any(|(name, _)| *name == "host") {
        return Err(mismatch());
    }
    Ok(SignedHeaders {
        headers,
        session_token,
    })
}

/// The body's hash, not the body: the signer's debug output of a body
/// hides it only unless an environment variable says otherwise, and the
/// body holds Logins values. A client-sent hash is used as sent.
fn payload_hash(req: &SignedRequest<'_>) -> String {
    req.headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || hex::encode(digest::digest(&digest::SHA256, req.body)),
            str::to_owned,
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::hmac;

    fn hex_sha256(data: &[u8]) -> String {
        hex::encode(digest::digest(&digest::SHA256, data))
    }

    fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
            .as_ref()
            .to_vec()
    }

    fn at(amz_date: &str) -> SystemTime {
        parse_amz_date(amz_date).unwrap()
    }

    #[test]
    fn amz_dates() {
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs(at("19700101T000000Z")), 0);
        assert_eq!(secs(at("20150830T123600Z")), 1_440_938_160);
        assert_eq!(secs(at("20240229T000000Z")), 1_709_164_800);
        for bad in [
            "2015-08-30T12:36:00Z",
            "20151330T123600Z",
            "20150230T123600Z",
            "20150830T250000Z",
            "20150830T123600",
            "2015083OT123600Z",
            "+0150830T123600Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    const KEY_ID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const AMZ_DATE: &str = "20150830T123600Z";
    const BODY: &[u8] = br#"{"IdentityPoolId":"us-east-1:abc"}"#;

    /// Headers of a request signed by hand, following the documented steps
    /// with the canonical request written out literally, so that the check
    /// is held to the specification rather than to a second copy of a
    /// signer. The SDKs' own signatures are checked end to end by the
    /// integration tests (Rust SDK) and the boto3 conformance tests.
    fn signed_headers() -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "host",
            "cognito-identity.us-east-1.amazonaws.com".parse().unwrap(),
        );
        headers.insert("x-amz-date", AMZ_DATE.parse().unwrap());
        headers.insert(
            "content-type",
            "application/x-amz-json-1.1".parse().unwrap(),
        );
        // Not signed: whatever it says must not matter.
        headers.insert("user-agent", "test  agent".parse().unwrap());
        let canonical = format!(
            "POST\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:cognito-identity.us-east-1.amazonaws.com\nx-amz-date:{AMZ_DATE}\n\ncontent-type;host;x-amz-date\n{}",
            hex_sha256(BODY)
        );
        let sts = format!(
            "AWS4-HMAC-SHA256\n{AMZ_DATE}\n20150830/us-east-1/cognito-identity/aws4_request\n{}",
            hex_sha256(canonical.as_bytes())
        );
        let mut key = hmac_sha256(format!("AWS4{SECRET}").as_bytes(), "20150830");
        for part in ["us-east-1", "cognito-identity", "aws4_request"] {
            key = hmac_sha256(&key, part);
        }
        let sig = hex::encode(hmac_sha256(&key, &sts));
        headers.insert(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential={KEY_ID}/20150830/us-east-1/cognito-identity/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={sig}")
                .parse()
                .unwrap(),
        );
        headers
    }

    fn check_at(
        uri: &'static str,
        headers: &http::HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), AwsError> {
        let keys = HashMap::from([(KEY_ID.to_owned(), SECRET.to_owned())]);
        let uri = http::Uri::from_static(uri);
        let req = SignedRequest {
            method: "POST",
            uri: &uri,
            headers,
            body,
        };
        verify(&req, &keys, now)
    }

    /// The code a request over HTTP/1 (target `/`) is refused with, or "ok".
    fn outcome(headers: &http::HeaderMap, body: &[u8], now: SystemTime) -> &'static str {
        check_at("/", headers, body, now).map_or_else(|e| e.code, |()| "ok")
    }

    #[test]
    fn verifies_a_signature_computed_independently_and_refuses_changes() {
        let headers = signed_headers();
        let now = at(AMZ_DATE);
        assert_eq!(outcome(&headers, BODY, now), "ok");
        let minutes = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(outcome(&headers, BODY, now + minutes(14)), "ok");
        // HTTP/2: the host comes as the URI's authority, not as a header.
        let mut h2 = headers.clone();
        h2.remove("host");
        let h2_uri = "http://cognito-identity.us-east-1.amazonaws.com/";
        assert_eq!(check_at(h2_uri, &h2, BODY, now), Ok(()));

        let bad = "InvalidSignatureException";
        let tampered = br#"{"IdentityPoolId":"us-east-1:abd"}"#;
        assert_eq!(outcome(&headers, tampered, now), bad);
        assert_eq!(outcome(&headers, BODY, now + minutes(16)), bad);
        assert_eq!(outcome(&headers, BODY, now - minutes(16)), bad);
        let mut changed = headers.clone();
        changed.insert("content-type", "application/json".parse().unwrap());
        assert_eq!(outcome(&changed, BODY, now), bad);
        let mut unknown_key = headers.clone();
        let auth = headers["authorization"].to_str().unwrap();
        unknown_key.insert(
            "authorization",
            auth.replace(KEY_ID, "AKIDOTHER").parse().unwrap(),
        );
        assert_eq!(
            outcome(&unknown_key, BODY, now),
            "UnrecognizedClientException"
        );
        let unsigned = outcome(&http::HeaderMap::new(), BODY, now);
        assert_eq!(unsigned, "MissingAuthenticationTokenException");
    }

    #[test]
    fn malformed_authorization_and_dates_are_incomplete_signatures() {
        let scope = |s: &str| {
            format!(
                "AWS4-HMAC-SHA256 Credential={KEY_ID}/{s}, SignedHeaders=host;x-amz-date, Signature=00"
            )
        };
        let good = scope("20150830/us-east-1/cognito-identity/aws4_request");
        for (auth, date) in [
            ("Basic dXNlcjpwYXNz".to_owned(), AMZ_DATE),
            (good.replace(", Signature=00", ""), AMZ_DATE),
            (scope("20150830/us-east-1/s3/aws4_request"), AMZ_DATE),
            (scope("20150830/us-east-1"), AMZ_DATE),
            (good.clone(), "2015-08-30T12:36:00Z"),
            (good.clone(), "20150831T123600Z"),
        ] {
            let mut headers = signed_headers();
            headers.insert("authorization", auth.parse().unwrap());
            headers.insert("x-amz-date", date.parse().unwrap());
            let got = outcome(&headers, BODY, at(AMZ_DATE));
            assert_eq!(got, "IncompleteSignatureException", "{auth} {date}");
        }
    }

    #[test]
    fn a_request_without_a_signed_host_is_refused_not_a_panic() {
        let mut headers = signed_headers();
        let auth = headers["authorization"].to_str().unwrap();
        let auth = auth.replace("content-type;host;x-amz-date", "content-type;x-amz-date");
        headers.insert("authorization", auth.parse().unwrap());
        headers.remove("host");
        let got = outcome(&headers, BODY, at(AMZ_DATE));
        assert_eq!(got, "InvalidSignatureException");
    }
}
