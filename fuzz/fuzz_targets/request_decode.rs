//! Each API request's decode and validation, as the server does them: the
//! first byte picks the method, the rest is the request message's bytes.
//! Whatever they are, the answer is a message or INVALID_ARGUMENT, never a
//! panic nor another code.

#![no_main]

use cognito_identity_gateway::domain::Error;
use cognito_identity_gateway::grpc::parse;
use cognito_identity_gateway::proto::{self as pb, codec};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::{Code, Status};

/// The decoder's answer, then validation's, as the status a caller gets.
fn check<M: Message + Default, I>(
    bytes: &[u8],
    parse: impl FnOnce(M) -> Result<I, cognito_identity_gateway::domain::Violations>,
) {
    let status = match M::decode(bytes) {
        Err(e) => Status::from(codec::malformed(&e)),
        Ok(message) => match parse(message) {
            Ok(_) => return,
            Err(violations) => Status::from(Error::InvalidRequest(violations)),
        },
    };
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(!status.message().is_empty());
}

fuzz_target!(|data: &[u8]| {
    let Some((&method, bytes)) = data.split_first() else {
        return;
    };
    match method % 4 {
        0 => check(bytes, parse::get_id),
        1 => check(bytes, parse::get_open_id_token),
        2 => check(bytes, parse::get_open_id_token_for_developer_identity),
        _ => check::<pb::GetCredentialsForIdentityRequest, _>(
            bytes,
            parse::get_credentials_for_identity,
        ),
    }
});
