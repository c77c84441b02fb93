#![allow(clippy::unwrap_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;
use crate::domain::{
    GetCredentialsForIdentityInput, GetIdInput, GetOpenIdTokenForDeveloperIdentityInput, Operation,
};
use crate::reload::outcome::Reloaded;

const POOL: &str = "us-east-1:0a0a0a0a-0000-4000-8000-000000000001";
const OTHER_POOL: &str = "us-east-1:0a0a0a0a-0000-4000-8000-000000000002";
const IDENTITY: &str = "us-east-1:aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";

const POLICY: &str = r#"
mode: enforce
callers:
  - name: checkout
    spiffe_ids: ["spiffe://example.org/ns/shop/sa/checkout"]
    dns_names: ["checkout.shop.svc"]
    rate_limit: {per_second: 50, burst: 100}
    allow:
      - operations: [GetOpenIdTokenForDeveloperIdentity, GetCredentialsForIdentity]
        identity_pools: ["us-east-1:0a0a0a0a-0000-4000-8000-000000000001"]
        login_providers: ["login.shop.example", "cognito-identity.amazonaws.com"]
        principal_tag_keys: ["team"]
        max_token_duration: 1h
  - name: batch
    spiffe_ids: ["spiffe://example.org/ns/batch/*"]
    allow:
      - operations: [GetId]
        identity_pools: ["*"]
anonymous:
  allow:
    - operations: [GetId, GetOpenIdToken, GetCredentialsForIdentity]
      identity_pools: ["*"]
"#;

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn developer(
    pool: &str,
    logins: &[(&str, &str)],
    tags: &[(&str, &str)],
    duration: Option<i64>,
) -> GetOpenIdTokenForDeveloperIdentityInput {
    GetOpenIdTokenForDeveloperIdentityInput::parse(
        Some(pool.into()),
        None,
        pairs(logins),
        pairs(tags),
        duration,
    )
    .unwrap()
}

fn cognito_token(aud: &str) -> String {
    let part = |json: &str| URL_SAFE_NO_PAD.encode(json);
    format!(
        "{}.{}.c2ln",
        part(r#"{"alg":"RS512"}"#),
        part(&format!(r#"{{"aud":"{aud}","sub":"{IDENTITY}"}}"#))
    )
}

fn checkout() -> Caller {
    Caller::Spiffe("spiffe://example.org/ns/shop/sa/checkout".into())
}

fn decide(caller: &Caller, op: &impl Operation) -> Decision {
    Policy::parse(POLICY)
        .unwrap()
        .decide(caller, None, &op.scope())
}

fn allowed(caller: &str) -> Decision {
    Decision::Allow {
        caller: caller.into(),
    }
}

fn denied_because(decision: Decision) -> String {
    match decision {
        Decision::Deny { why, dry_run, .. } => {
            assert!(!dry_run);
            why
        }
        other => panic!("not denied: {other:?}"),
    }
}

#[test]
fn a_caller_within_its_rule_is_allowed_by_spiffe_id_or_dns_name() {
    let ok = developer(
        POOL,
        &[("login.shop.example", "u1")],
        &[("team", "t")],
        Some(3600),
    );
    assert_eq!(decide(&checkout(), &ok), allowed("checkout"));
    assert_eq!(
        decide(&Caller::Dns("CHECKOUT.shop.svc".into()), &ok),
        allowed("checkout")
    );
    // Without a duration, judged as Cognito's default of 900 s.
    let default = developer(POOL, &[("login.shop.example", "u1")], &[], None);
    assert_eq!(decide(&checkout(), &default), allowed("checkout"));
}

#[test]
fn every_part_of_the_call_is_checked_and_the_reason_names_it() {
    let cases = [
        (
            developer(OTHER_POOL, &[("login.shop.example", "u")], &[], None),
            "identity pool",
        ),
        (
            developer(POOL, &[("graph.facebook.com", "u")], &[], None),
            "login provider",
        ),
        (
            developer(POOL, &[("login.shop.example", "u")], &[("cost", "x")], None),
            "principal tag",
        ),
        (
            developer(POOL, &[("login.shop.example", "u")], &[], Some(3601)),
            "3601 s",
        ),
    ];
    for (input, part) in cases {
        let why = denied_because(decide(&checkout(), &input));
        assert!(why.contains(part), "{part}: {why}");
        // Never a value: the user, the tag value.
        assert!(!why.contains("\"u\"") && !why.contains("\"x\""), "{why}");
    }
    let get_id = GetIdInput::parse(Some(POOL.into()), None, vec![]).unwrap();
    assert!(denied_because(decide(&checkout(), &get_id)).contains("operation GetId"));
}

#[test]
fn identity_operations_take_their_pool_from_the_cognito_tokens_audience() {
    let credentials = |aud: &str| {
        GetCredentialsForIdentityInput::parse(
            Some(IDENTITY.into()),
            pairs(&[("cognito-identity.amazonaws.com", &cognito_token(aud))]),
            None,
        )
        .unwrap()
    };
    assert_eq!(decide(&checkout(), &credentials(POOL)), allowed("checkout"));
    assert!(denied_because(decide(&checkout(), &credentials(OTHER_POOL))).contains("pool"));
    // No Cognito token: only rules for any pool match.
    let bare = GetCredentialsForIdentityInput::parse(Some(IDENTITY.into()), vec![], None).unwrap();
    assert!(denied_because(decide(&checkout(), &bare)).contains("names no identity pool"));
    assert_eq!(decide(&Caller::Anonymous, &bare), allowed(ANONYMOUS));
}

#[test]
fn prefixes_unknown_callers_and_anonymous_callers() {
    let get_id = GetIdInput::parse(Some(POOL.into()), None, vec![]).unwrap();
    let batch = Caller::Spiffe("spiffe://example.org/ns/batch/sa/nightly".into());
    assert_eq!(decide(&batch, &get_id), allowed("batch"));
    let stranger = Caller::Spiffe("spiffe://example.org/ns/batchx/sa/a".into());
    assert_eq!(
        decide(&stranger, &get_id),
        Decision::Deny {
            caller: UNKNOWN.into(),
            why: "the caller's identity is not in the policy".into(),
            dry_run: false
        }
    );
    let ok = developer(POOL, &[("login.shop.example", "u1")], &[], None);
    assert!(matches!(
        decide(&Caller::Anonymous, &ok),
        Decision::Unauthenticated { dry_run: false, .. }
    ));
}

#[test]
fn dry_run_decides_the_same_and_says_so() {
    let policy = Policy::parse(&POLICY.replace("mode: enforce", "mode: dry-run")).unwrap();
    assert_eq!(policy.mode(), Mode::DryRun);
    let other = developer(OTHER_POOL, &[("login.shop.example", "u")], &[], None);
    assert!(matches!(
        policy.decide(&checkout(), None, &other.scope()),
        Decision::Deny { dry_run: true, .. }
    ));
}

#[test]
fn rate_limits_are_read() {
    let policy = Policy::parse(POLICY).unwrap();
    assert_eq!(
        policy.rate_limit("checkout"),
        Some(RateLimit {
            per_second: 50.0,
            burst: 100
        })
    );
    assert_eq!(policy.rate_limit("batch"), None);
}

#[test]
fn bad_policies_are_refused_with_every_problem() {
    let bad = r#"
mode: enforce
callers:
  - name: a
    spiffe_ids: ["example.org/a", "spiffe://x/a*"]
    allow:
      - operations: [GetToken]
        identity_pools: []
        max_token_duration: soon
  - name: a
    allow: []
"#;
    let err = Policy::parse(bad).unwrap_err();
    for expected in [
        "is not a spiffe:// id",
        "a wildcard must be a whole last segment",
        "\"GetToken\" is not one of",
        "identity_pools: must name at least one",
        "max_token_duration",
        "named twice",
        "names no spiffe_ids and no dns_names",
    ] {
        assert!(err.contains(expected), "{expected}: {err}");
    }
    // A misspelt field is refused, not ignored.
    let typo = POLICY.replace("principal_tag_keys", "principal_tags_keys");
    assert!(Policy::parse(&typo).is_err());
    assert!(Policy::parse("mode: maybe").is_err());
    assert!(Policy::parse("callers: [").is_err());
}

#[test]
fn a_caller_past_its_burst_is_rate_limited_and_told_when_to_retry() {
    let policy = Policy::parse(
        r#"
mode: enforce
callers:
  - name: slow
    dns_names: ["slow.svc"]
    rate_limit: {per_second: 0.5, burst: 2}
    allow:
      - operations: [GetId]
        identity_pools: ["*"]
  - name: other
    dns_names: ["other.svc"]
    rate_limit: {per_second: 0.5, burst: 2}
    allow:
      - operations: [GetId]
        identity_pools: ["*"]
"#,
    )
    .unwrap();
    let slow = Caller::Dns("slow.svc".into());
    let get_id = GetIdInput::parse(Some(POOL.into()), None, vec![]).unwrap();
    for _ in 0..2 {
        assert_eq!(policy.decide(&slow, None, &get_id.scope()), allowed("slow"));
    }
    match policy.decide(&slow, None, &get_id.scope()) {
        Decision::RateLimited {
            caller,
            retry_after,
            dry_run: false,
        } => {
            assert_eq!(caller, "slow");
            assert!(retry_after > Duration::from_secs(1), "{retry_after:?}");
            assert!(retry_after <= Duration::from_secs(2), "{retry_after:?}");
        }
        other => panic!("not rate limited: {other:?}"),
    }
    // Each caller has a budget of its own.
    let other = Caller::Dns("other.svc".into());
    assert_eq!(
        policy.decide(&other, None, &get_id.scope()),
        allowed("other")
    );
}

#[test]
fn a_live_policy_reloads_only_what_changed_and_keeps_what_loads() {
    let dir = std::env::temp_dir().join(format!("live-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.yaml");
    std::fs::write(&path, POLICY).unwrap();
    let live = LivePolicy::load(&path).unwrap();
    assert_eq!(live.reload(), Reloaded::Unchanged);
    std::fs::write(&path, POLICY.replace("mode: enforce", "mode: dry-run")).unwrap();
    assert_eq!(live.reload(), Reloaded::Replaced);
    assert_eq!(live.current().mode(), Mode::DryRun);
    std::fs::write(&path, "mode: enforce\ncallers: [{name: x}]\n").unwrap();
    match live.reload() {
        Reloaded::Refused(why) => assert!(why.contains("policy.yaml"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        live.current().mode(),
        Mode::DryRun,
        "the policy in force stays"
    );
    assert_eq!(
        live.reload(),
        Reloaded::Unchanged,
        "a refused file is not read again"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_index_finds_the_first_entry_as_reading_them_in_order_would() {
    let policy = Policy::parse(
        r#"
mode: enforce
callers:
  - name: a
    spiffe_ids: ["spiffe://td/ns/a/sa/one", "spiffe://td/ns/b/*"]
    allow: []
  - name: b
    spiffe_ids: ["spiffe://td/ns/b/sa/two", "spiffe://td/ns/a/sa/one"]
    dns_names: ["Two.B.svc"]
    allow: []
  - name: c
    spiffe_ids: ["spiffe://td/ns/*"]
    dns_names: ["two.b.svc", "c.svc"]
    allow: []
"#,
    )
    .unwrap();
    let callers = [
        Caller::Spiffe("spiffe://td/ns/a/sa/one".into()),
        Caller::Spiffe("spiffe://td/ns/b/sa/two".into()),
        Caller::Spiffe("spiffe://td/ns/z/sa/x".into()),
        Caller::Spiffe("spiffe://td/ns/".into()),
        Caller::Spiffe("spiffe://other/ns/a/sa/one".into()),
        Caller::Dns("two.b.svc".into()),
        Caller::Dns("TWO.b.SVC".into()),
        Caller::Dns("c.svc".into()),
        Caller::Dns("d.svc".into()),
        Caller::Anonymous,
    ];
    let found: Vec<Option<usize>> = callers.iter().map(|c| policy.index.find(c)).collect();
    let read: Vec<Option<usize>> = callers
        .iter()
        .map(|c| policy.callers.iter().position(|entry| entry.names(c)))
        .collect();
    assert_eq!(found, read);
    assert_eq!(
        found,
        [
            Some(0),
            Some(0),
            Some(2),
            None,
            None,
            Some(1),
            Some(1),
            Some(2),
            None,
            None
        ]
    );
}

#[test]
fn values_no_limiter_or_rule_could_use_are_refused_with_their_line() {
    let bad = r#"mode: enforce
callers:
  - name: tiny
    dns_names: ["tiny.svc"]
    rate_limit: {per_second: 1.0e-20}
  - name: huge
    dns_names: ["huge.svc"]
    rate_limit: {per_second: .inf, burst: 0}
  - name: ""
    dns_names: ["bad name.svc"]
    allow:
      - operations: [GetId]
        identity_pools: ["not-a-pool"]
        max_token_duration: 48h
        principal_tag_keys: [""]
  - name: anonymous
    dns_names: ["x.svc"]
anonymous:
  rate_limit: {per_second: -1}
unknown:
  rate_limit: {per_second: 0}
"#;
    let err = Policy::parse(bad).unwrap_err();
    for expected in [
        "line 5: callers[0].rate_limit.per_second: 0.00000000000000000001 is below one call an hour",
        "line 8: callers[1].rate_limit.per_second: inf is below one call an hour",
        "line 8: callers[1].rate_limit.burst: 0 is not between 1",
        "line 9: callers[2].name: must not be empty",
        "line 10: callers[2].dns_names: \"bad name.svc\" is not a DNS name",
        "line 13: callers[2].allow[0].identity_pools:",
        "line 14: callers[2].allow[0].max_token_duration: \"48h\" is longer than Cognito's 24 hours",
        "line 15: callers[2].allow[0].principal_tag_keys: must not be empty",
        "line 16: callers[3].name: \"anonymous\" is the name of callers no entry names",
        "line 19: anonymous.rate_limit.per_second: -1 is below",
        "line 21: unknown.rate_limit.per_second: 0 is below",
    ] {
        assert!(err.contains(expected), "{expected}\n in: {err}");
    }
    // Just inside the bounds, everything loads.
    let edge = r#"mode: enforce
callers:
  - name: hourly
    dns_names: ["hourly.svc"]
    rate_limit: {per_second: 0.000278, burst: 1000000}
    allow:
      - operations: [GetOpenIdTokenForDeveloperIdentity]
        identity_pools: ["*"]
        max_token_duration: 24h
"#;
    Policy::parse(edge).unwrap();
}

#[test]
fn a_developer_call_naming_an_identity_needs_link_existing_identities() {
    let policy = |link: bool| {
        Policy::parse(&format!(
            r#"mode: enforce
callers:
  - name: checkout
    spiffe_ids: ["spiffe://example.org/ns/shop/sa/checkout"]
    allow:
      - operations: [GetOpenIdTokenForDeveloperIdentity]
        identity_pools: ["{POOL}"]
        link_existing_identities: {link}
"#
        ))
        .unwrap()
    };
    let fresh = developer(POOL, &[("login.shop.example", "u")], &[], None);
    let linking = GetOpenIdTokenForDeveloperIdentityInput::parse(
        Some(POOL.into()),
        Some(IDENTITY.into()),
        pairs(&[("login.shop.example", "u")]),
        [],
        None,
    )
    .unwrap();
    let denied = policy(false);
    assert_eq!(
        denied.decide(&checkout(), None, &fresh.scope()),
        allowed("checkout")
    );
    let why = denied_because(denied.decide(&checkout(), None, &linking.scope()));
    assert!(
        why.contains("identity_id") && why.contains("link_existing_identities"),
        "{why}"
    );
    assert_eq!(
        policy(true).decide(&checkout(), None, &linking.scope()),
        allowed("checkout")
    );
}

#[test]
fn anonymous_and_unknown_callers_are_limited_per_peer_address() {
    let policy = Policy::parse(
        r#"mode: enforce
anonymous:
  rate_limit: {per_second: 0.001, burst: 2}
  allow:
    - operations: [GetId]
      identity_pools: ["*"]
unknown:
  rate_limit: {per_second: 0.001, burst: 1}
"#,
    )
    .unwrap();
    let get_id = GetIdInput::parse(Some(POOL.to_owned()), None, []).unwrap();
    let (a, b) = (
        Some(std::net::IpAddr::from([10, 0, 0, 1])),
        Some(std::net::IpAddr::from([10, 0, 0, 2])),
    );
    let anonymous = Caller::Anonymous;
    for _ in 0..2 {
        assert_eq!(
            policy.decide(&anonymous, a, &get_id.scope()),
            allowed(ANONYMOUS)
        );
    }
    match policy.decide(&anonymous, a, &get_id.scope()) {
        Decision::RateLimited { caller, .. } => assert_eq!(caller, ANONYMOUS),
        other => panic!("{other:?}"),
    }
    // Another peer has a limit of its own.
    assert_eq!(
        policy.decide(&anonymous, b, &get_id.scope()),
        allowed(ANONYMOUS)
    );
    let stranger = Caller::Dns("stranger.svc".into());
    assert!(matches!(
        policy.decide(&stranger, a, &get_id.scope()),
        Decision::Deny { .. }
    ));
    match policy.decide(&stranger, a, &get_id.scope()) {
        Decision::RateLimited { caller, .. } => assert_eq!(caller, UNKNOWN),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        policy.anonymous_limit.as_ref().map(PeerLimits::held),
        Some(2)
    );
}
