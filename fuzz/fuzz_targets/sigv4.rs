//! The emulator's SigV4 check on arbitrary requests (written as
//! `METHOD PATH`, header lines, a blank line and the body), against one
//! known access key, at the time the request's own X-Amz-Date says (or a
//! fixed one), so that a correctly signed seed verifies.

#![no_main]

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use cognito_identity_gateway::emulator::sigv4::{SignedRequest, verify};
use libfuzzer_sys::fuzz_target;

#[path = "request.rs"]
mod request;

fuzz_target!(|data: &[u8]| {
    let Some((parts, body)) = request::parse(data) else {
        return;
    };
    let keys = HashMap::from([(
        "AKIDEXAMPLE".to_owned(),
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
    )]);
    // 2015-08-30T12:36:00Z, the seed's X-Amz-Date.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    let request = SignedRequest {
        method: parts.method.as_str(),
        uri: &parts.uri,
        headers: &parts.headers,
        body: &body,
    };
    let _ = verify(&request, &keys, now);
});
