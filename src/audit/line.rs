//! One line of the audit log, as written: a JSON object written by hand
//! into the writer's buffer (serde_json cost as much as the rest of the
//! line on the production hot path). The JSON is the same as serde_json
//! wrote for the same fields: the same order, `null` for a field absent,
//! `[]` for an empty list, strings escaped as serde_json escapes them.

use std::time::SystemTime;

/// Lowercase hex digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// One line, as written. `P` and `T` are the names of the Logins
/// providers and of the principal tags, read as they are written.
pub(super) struct Line<'a, P, T> {
    pub(super) time: SystemTime,
    pub(super) caller: &'a str,
    /// The identity the caller showed (a SPIFFE id, a DNS name), when it
    /// showed one: `caller` is the policy's name for it, `unknown` when
    /// the policy has none.
    pub(super) caller_identity: Option<&'a str>,
    /// The gateway's own names, which hold nothing to escape, from here
    /// to `decision`, and the user's hash, in hex.
    pub(super) operation: &'static str,
    pub(super) identity_pool_id: Option<&'a str>,
    pub(super) login_providers: P,
    /// The user's hash, never the user.
    pub(super) user: Option<&'a str>,
    pub(super) identity_id: Option<&'a str>,
    pub(super) token_duration_seconds: Option<u32>,
    pub(super) principal_tag_keys: T,
    pub(super) outcome: &'static str,
    pub(super) reason: Option<&'a str>,
    pub(super) cache: Option<&'static str>,
    pub(super) decision: &'static str,
    /// Written in lowercase hex.
    pub(super) trace_id: Option<[u8; 16]>,
}

impl<'a, P, T> Line<'a, P, T>
where
    P: IntoIterator<Item = &'a str>,
    T: IntoIterator<Item = &'a str>,
{
    /// Appends the line to `out`, without its newline.
    pub(super) fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        // An RFC 3339 time holds nothing to escape.
        rfc3339_micros(out, self.time);
        out.extend_from_slice(b"\",\"caller\":");
        string(out, self.caller);
        out.extend_from_slice(b",\"caller_identity\":");
        optional(out, self.caller_identity);
        out.extend_from_slice(b",\"operation\":");
        known(out, self.operation);
        out.extend_from_slice(b",\"identity_pool_id\":");
        optional(out, self.identity_pool_id);
        out.extend_from_slice(b",\"login_providers\":");
        list(out, self.login_providers);
        out.extend_from_slice(b",\"user\":");
        match self.user {
            Some(hash) => known(out, hash),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"identity_id\":");
        optional(out, self.identity_id);
        out.extend_from_slice(b",\"token_duration_seconds\":");
        match self.token_duration_seconds {
            Some(seconds) => number(out, seconds),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"principal_tag_keys\":");
        list(out, self.principal_tag_keys);
        out.extend_from_slice(b",\"outcome\":");
        known(out, self.outcome);
        out.extend_from_slice(b",\"reason\":");
        optional(out, self.reason);
        out.extend_from_slice(b",\"cache\":");
        match self.cache {
            Some(cache) => known(out, cache),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"decision\":");
        known(out, self.decision);
        out.extend_from_slice(b",\"trace_id\":");
        match self.trace_id {
            Some(id) => {
                out.push(b'"');
                hex_into(out, &id);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }
}

/// `value`, which holds nothing to escape (a name of the gateway's own, a
/// hash in hex), as a JSON string.
fn known(out: &mut Vec<u8>, value: &str) {
    debug_assert!(
        !value.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'),
        "{value:?} needs escaping"
    );
    out.push(b'"');
    out.extend_from_slice(value.as_bytes());
    out.push(b'"');
}

/// `value` as a JSON string: `"` and `\` escaped, control characters as
/// their short escape or `\u00XX`, everything else (non-ASCII included)
/// as it is.
fn string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let bytes = value.as_bytes();
    // Most values hold nothing to escape: found in one pass the compiler
    // vectorises (no early exit), and copied whole.
    let clean = !bytes.iter().fold(false, |dirty, &b| {
        dirty | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if clean {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    // The start of the bytes not yet copied: runs with nothing to escape
    // are copied at once, and found eight bytes at a time.
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes([
                word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
            ]);
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let end = (i + 8).min(bytes.len());
        for (j, &b) in bytes[i..end].iter().enumerate() {
            let short: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0x00..=0x1f => b"",
                _ => continue,
            };
            let at = i + j;
            out.extend_from_slice(&bytes[start..at]);
            if short.is_empty() {
                out.extend_from_slice(b"\\u00");
                hex_into(out, &[b]);
            } else {
                out.extend_from_slice(short);
            }
            start = at + 1;
        }
        i = end;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether one of the eight bytes of `word` needs escaping in a JSON
/// string: a control character, `"` or `\`. (The classic "has a byte less
/// than n" and "has a zero byte" tests: exact as yes-or-no answers.)
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let quote = has_zero(word ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
    control | quote | backslash != 0
}

/// `time` as RFC 3339 in UTC with microseconds
/// (`2026-11-30T22:34:26.510347Z`), as humantime writes it, without the
/// formatting machinery: days to a civil date by Howard Hinnant's
/// algorithm. Times before 1970 are written as 1970's first instant.
fn rfc3339_micros(out: &mut Vec<u8>, time: SystemTime) {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since.as_secs();
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let digits = |out: &mut Vec<u8>, value: u64, width: u32| {
        for k in (0..width).rev() {
            out.push(b'0' + (value / 10u64.pow(k) % 10) as u8);
        }
    };
    digits(out, year.max(0) as u64, 4);
    out.push(b'-');
    digits(out, month as u64, 2);
    out.push(b'-');
    digits(out, day as u64, 2);
    out.push(b'T');
    digits(out, of_day / 3600, 2);
    out.push(b':');
    digits(out, of_day / 60 % 60, 2);
    out.push(b':');
    digits(out, of_day % 60, 2);
    out.push(b'.');
    digits(out, u64::from(since.subsec_micros()), 6);
    out.push(b'Z');
}

fn optional(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(value) => string(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

fn list<'a>(out: &mut Vec<u8>, values: impl IntoIterator<Item = &'a str>) {
    out.push(b'[');
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, value);
    }
    out.push(b']');
}

/// `n` in decimal.
fn number(out: &mut Vec<u8>, mut n: u32) {
    // u32::MAX has ten digits.
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn hex_into(out: &mut Vec<u8>, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

/// `bytes` in lowercase hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    let mut text = Vec::with_capacity(bytes.len() * 2);
    hex_into(&mut text, bytes);
    text.into_iter().map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use serde_json::{Value, json};
    use std::time::Duration;

    #[test]
    fn times_are_written_as_humantime_writes_them() {
        let mut seconds = 0u64;
        // From 1970 to past 2100, leap days and centuries included, at
        // uneven steps.
        while seconds < 4_200_000_000 {
            let time = SystemTime::UNIX_EPOCH + Duration::new(seconds, 123_456_789);
            let mut ours = Vec::new();
            rfc3339_micros(&mut ours, time);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                humantime::format_rfc3339_micros(time).to_string()
            );
            seconds += 86_399 * 7 + 3_607;
        }
    }

    #[test]
    fn every_word_that_needs_escaping_is_found() {
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut word = *b"abcdefgh";
                word[at] = b;
                let expected = b < 0x20 || b == b'"' || b == b'\\';
                assert_eq!(
                    needs_escape(u64::from_le_bytes(word)),
                    expected,
                    "{b:#x} at {at}"
                );
            }
        }
    }

    /// The line as serde_json wrote it before, for comparison.
    #[derive(Serialize)]
    struct Serialized<'a> {
        time: String,
        caller: &'a str,
        caller_identity: Option<&'a str>,
        operation: &'static str,
        identity_pool_id: Option<&'a str>,
        login_providers: Vec<&'a str>,
        user: Option<String>,
        identity_id: Option<&'a str>,
        token_duration_seconds: Option<u32>,
        principal_tag_keys: Vec<&'a str>,
        outcome: &'a str,
        reason: Option<&'a str>,
        cache: Option<&'static str>,
        decision: &'a str,
        trace_id: Option<String>,
    }

    fn time() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_078_066_510_347)
    }

    fn written<'a>(line: Line<'a, Vec<&'a str>, Vec<&'a str>>) -> String {
        let mut out = Vec::new();
        line.write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_representative_line_is_what_serde_json_wrote() {
        let trace = [
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36,
        ];
        let user = "18574f0862ffa71a3cecece7c683cb34c9acd3f2b027368947df79da0e23f3d4";
        let ours = written(Line {
            time: time(),
            caller: "checkout",
            caller_identity: Some("spiffe://example.org/ns/shop/sa/checkout"),
            operation: "GetOpenIdTokenForDeveloperIdentity",
            identity_pool_id: Some("us-east-1:0a0a0a0a-0000-4000-8000-000000000001"),
            login_providers: vec!["login.shop.example"],
            user: Some(user),
            identity_id: Some("us-east-1:14ac5b3c-f368-5deb-8e78-12f3fe73da64"),
            token_duration_seconds: Some(3600),
            principal_tag_keys: vec!["team"],
            outcome: "OK",
            reason: None,
            cache: Some("miss"),
            decision: "allow",
            trace_id: Some(trace),
        });
        let theirs = serde_json::to_string(&Serialized {
            time: humantime::format_rfc3339_micros(time()).to_string(),
            caller: "checkout",
            caller_identity: Some("spiffe://example.org/ns/shop/sa/checkout"),
            operation: "GetOpenIdTokenForDeveloperIdentity",
            identity_pool_id: Some("us-east-1:0a0a0a0a-0000-4000-8000-000000000001"),
            login_providers: vec!["login.shop.example"],
            user: Some(user.to_owned()),
            identity_id: Some("us-east-1:14ac5b3c-f368-5deb-8e78-12f3fe73da64"),
            token_duration_seconds: Some(3600),
            principal_tag_keys: vec!["team"],
            outcome: "OK",
            reason: None,
            cache: Some("miss"),
            decision: "allow",
            trace_id: Some(hex(&trace)),
        })
        .unwrap();
        assert_eq!(ours, theirs);
        assert!(ours.starts_with("{\"time\":\"2026-11-30T22:34:26.510347Z\","));
    }

    #[test]
    fn a_refusal_with_every_field_absent_is_what_serde_json_wrote() {
        let ours = written(Line {
            time: time(),
            caller: "anonymous",
            caller_identity: None,
            operation: "GetId",
            identity_pool_id: None,
            login_providers: vec![],
            user: None,
            identity_id: None,
            token_duration_seconds: None,
            principal_tag_keys: vec![],
            outcome: "UNAUTHENTICATED",
            reason: Some("CALLER_UNAUTHENTICATED"),
            cache: None,
            decision: "deny",
            trace_id: None,
        });
        let theirs = serde_json::to_string(&Serialized {
            time: humantime::format_rfc3339_micros(time()).to_string(),
            caller: "anonymous",
            caller_identity: None,
            operation: "GetId",
            identity_pool_id: None,
            login_providers: vec![],
            user: None,
            identity_id: None,
            token_duration_seconds: None,
            principal_tag_keys: vec![],
            outcome: "UNAUTHENTICATED",
            reason: Some("CALLER_UNAUTHENTICATED"),
            cache: None,
            decision: "deny",
            trace_id: None,
        })
        .unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn awkward_values_parse_back_as_given() {
        let caller = "a \"quoted\" name, a back\\slash\\";
        let identity = "line\nbreak\r\ttab\u{8}\u{c}";
        let providers = vec![
            "esc \u{1b}[31m",
            "non-ASCII: é 日本 🦀",
            "\u{0}\u{1f}\u{7f}/",
            "",
        ];
        let reason = "\\u0041 is not A";
        let line = written(Line {
            time: time(),
            caller,
            caller_identity: Some(identity),
            operation: "GetOpenIdTokenForDeveloperIdentity",
            identity_pool_id: None,
            login_providers: providers.clone(),
            user: None,
            identity_id: Some("}\"{"),
            token_duration_seconds: Some(u32::MAX),
            principal_tag_keys: vec![""],
            outcome: "INTERNAL",
            reason: Some(reason),
            cache: None,
            decision: "\u{2028}",
            trace_id: Some([0; 16]),
        });
        // One line: the writer's newline ends it.
        assert!(!line.contains('\n'), "{line}");
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            parsed,
            json!({
                "time": "2026-11-30T22:34:26.510347Z",
                "caller": caller,
                "caller_identity": identity,
                "operation": "GetOpenIdTokenForDeveloperIdentity",
                "identity_pool_id": null,
                "login_providers": providers,
                "user": null,
                "identity_id": "}\"{",
                "token_duration_seconds": 4_294_967_295u32,
                "principal_tag_keys": [""],
                "outcome": "INTERNAL",
                "reason": reason,
                "cache": null,
                "decision": "\u{2028}",
                "trace_id": "0".repeat(32),
            })
        );
    }

    #[test]
    fn every_character_is_escaped_as_serde_json_escapes_it() {
        let mut out = Vec::new();
        let ascii = (0u8..=0x7f).map(char::from);
        let others = ['é', 'ÿ', '\u{80}', '\u{2028}', '日', '🦀', '\u{10ffff}'];
        for c in ascii.chain(others) {
            let text = format!("a{c}b");
            out.clear();
            string(&mut out, &text);
            let theirs = serde_json::to_string(&text).unwrap();
            assert_eq!(String::from_utf8(out.clone()).unwrap(), theirs, "{c:?}");
        }
        for n in [0, 7, 10, 3600, 86_400, u32::MAX] {
            out.clear();
            number(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
