//! A mesh's identity header, as a caller on a trusted peer could send it:
//! Envoy's `x-forwarded-client-cert` (the quoting parser) and a plain
//! header. Whatever the bytes, the caller named is anonymous or a
//! well-formed identity with none of the parser's delimiters in it.

#![no_main]

use cognito_identity_gateway::domain::Caller;
use cognito_identity_gateway::grpc::{IdentityHeader, Rejections};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let peer = Some(([127, 0, 0, 1], 40000).into());
    for name in ["x-forwarded-client-cert", "l5d-client-id"] {
        let header = IdentityHeader::new(http::HeaderName::from_static(name));
        let mut headers = http::HeaderMap::new();
        headers.insert(header.name.clone(), value.clone());
        match header.caller(&headers, peer, &Rejections::default()) {
            Caller::Anonymous => {}
            Caller::Spiffe(id) => assert!(
                id.starts_with("spiffe://") && !id.contains([',', ';', '"', '=', '%', ' ']),
                "{id:?}"
            ),
            Caller::Dns(name) => assert!(
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')),
                "{name:?}"
            ),
        }
    }
});
