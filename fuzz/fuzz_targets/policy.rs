//! The caller policy file's parser and checks: whatever the bytes, a
//! policy or a list of problems, never a panic.

#![no_main]

use cognito_identity_gateway::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Policy::parse(text);
});
