//! The JWT reader: the claims the gateway reads from tokens it does not
//! verify (`exp` for the cache, `aud` for the policy).

#![no_main]

use cognito_identity_gateway::jwt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let _ = jwt::audience(&token);
    let _ = jwt::expiry(&token);
});
