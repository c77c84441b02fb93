//! One line of the audit log, as written.

use serde::Serialize;

/// One line, as written.
#[derive(Serialize)]
pub(super) struct Line<'a> {
    pub(super) time: String,
    pub(super) caller: &'a str,
    /// The identity the caller showed (a SPIFFE id, a DNS name), when it
    /// showed one: `caller` is the policy's name for it, `unknown` when
    /// the policy has none.
    pub(super) caller_identity: Option<&'a str>,
    pub(super) operation: &'static str,
    pub(super) identity_pool_id: Option<&'a str>,
    pub(super) login_providers: Vec<&'a str>,
    pub(super) user: Option<String>,
    pub(super) identity_id: Option<&'a str>,
    pub(super) token_duration_seconds: Option<u32>,
    pub(super) principal_tag_keys: Vec<&'a str>,
    pub(super) outcome: &'a str,
    pub(super) reason: Option<&'a str>,
    pub(super) cache: Option<&'static str>,
    pub(super) decision: &'a str,
    pub(super) trace_id: Option<String>,
}

/// `bytes` in lowercase hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    text
}
