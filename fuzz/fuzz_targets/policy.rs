//! The caller policy file's parser and checks; a policy that parses is then
//! asked about a few callers.

#![no_main]

use cognito_identity_gateway::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = Policy::parse(text) {
        let _ = policy.mode();
        let _ = policy.rate_limit("checkout");
    }
});
