//! The two forms a caller's identity takes in a mesh's header, each checked
//! against its grammar before it names anyone: a SPIFFE id, or a DNS name.
//! The policy compares identities as strings, so a value with anything the
//! grammar leaves out (a quote, a comma, a `%` escape, a `*`, an empty path
//! segment) is a sign of a header put together by someone other than the
//! mesh, and names no one.

use crate::domain::Caller;

/// The longest SPIFFE id the SPIFFE specification allows, in bytes.
const MAX_SPIFFE_ID: usize = 2048;

/// The longest trust domain name the SPIFFE specification allows.
const MAX_TRUST_DOMAIN: usize = 255;

/// The longest DNS name, dots included, and the longest label in one.
const MAX_DNS_NAME: usize = 253;
const MAX_DNS_LABEL: usize = 63;

/// The caller a plain identity header's value names: a well-formed SPIFFE
/// id, else a well-formed DNS name; `None` for anything else.
pub(super) fn identity(value: &str) -> Option<Caller> {
    if is_spiffe_id(value) {
        Some(Caller::Spiffe(value.into()))
    } else if is_dns_name(value) {
        Some(Caller::Dns(value.into()))
    } else {
        None
    }
}

/// `spiffe://trust-domain/path`, as the SPIFFE specification has it: the
/// scheme in lowercase; a trust domain of lowercase letters, digits, `.`,
/// `-` and `_`; a path of at least one segment, each of letters, digits,
/// `.`, `-` and `_`, none empty, `.` or `..`. A workload's id always has a
/// path: a bare trust domain names no workload.
pub(super) fn is_spiffe_id(value: &str) -> bool {
    let Some(rest) = value.strip_prefix("spiffe://") else {
        return false;
    };
    let Some((domain, path)) = rest.split_once('/') else {
        return false;
    };
    let domain_ok = !domain.is_empty()
        && domain.len() <= MAX_TRUST_DOMAIN
        && domain.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        });
    value.len() <= MAX_SPIFFE_ID
        && domain_ok
        && path.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        })
}

/// A host name: labels of letters, digits and `-` (not at either end),
/// joined by single dots, with no trailing dot and no wildcard.
pub(super) fn is_dns_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_DNS_NAME
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_DNS_LABEL
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_follow_their_grammar() {
        for good in [
            "spiffe://td/ns/admin/sa/root",
            "spiffe://cluster.local/ns/shop/sa/checkout",
            "spiffe://example-org_1.io/a.b/C-d_e/9",
        ] {
            assert!(is_spiffe_id(good), "{good}");
        }
        for bad in [
            "",
            "spiffe://",
            "spiffe://td",
            "spiffe://td/",
            "spiffe:///ns/a",
            "spiffe://td/ns//a",
            "spiffe://td/ns/a/",
            "spiffe://td/ns/./a",
            "spiffe://td/ns/../admin",
            "spiffe://TD/ns/a",
            "SPIFFE://td/ns/a",
            "spiffe://td:443/ns/a",
            "spiffe://user@td/ns/a",
            "spiffe://td/ns/a%2Fb",
            "spiffe://td/ns/a?x=1",
            "spiffe://td/ns/a#b",
            "spiffe://td/ns/a,URI=spiffe://td/ns/admin",
            "spiffe://td/ns/a\"",
            "spiffe://td/ns/a;b",
            "spiffe://td/ns/a b",
            "spiffe://td/ns/*",
            "https://td/ns/a",
            "checkout.shop.svc",
        ] {
            assert!(!is_spiffe_id(bad), "{bad:?}");
        }
        let long = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID));
        assert!(!is_spiffe_id(&long));
        let long_domain = format!("spiffe://{}/a", "d".repeat(MAX_TRUST_DOMAIN + 1));
        assert!(!is_spiffe_id(&long_domain));
    }

    #[test]
    fn dns_names_follow_their_grammar() {
        for good in [
            "checkout.shop.svc",
            "web.shop.serviceaccount.identity.linkerd.cluster.local",
            "localhost",
            "a-1.B2",
        ] {
            assert!(is_dns_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a.",
            "-a.b",
            "a-.b",
            "*.shop.svc",
            "a_b.svc",
            "a b",
            "a,b",
            "a;b",
            "admin.ops.svc\"",
            "spiffe://td/ns/a",
            "\u{e9}.svc",
        ] {
            assert!(!is_dns_name(bad), "{bad:?}");
        }
        assert!(!is_dns_name(&"a".repeat(MAX_DNS_LABEL + 1)));
        let long = vec!["a".repeat(50); 6].join(".");
        assert!(long.len() > MAX_DNS_NAME && !is_dns_name(&long));
    }

    #[test]
    fn a_value_is_a_spiffe_id_else_a_dns_name_else_no_one() {
        assert_eq!(
            identity("spiffe://td/ns/a/sa/b"),
            Some(Caller::Spiffe("spiffe://td/ns/a/sa/b".into()))
        );
        assert_eq!(
            identity("web.shop.svc"),
            Some(Caller::Dns("web.shop.svc".into()))
        );
        for nobody in ["", " web.shop.svc", "spiffe://td/", "admin.ops.svc,web.svc"] {
            assert_eq!(identity(nobody), None, "{nobody:?}");
        }
    }
}
