//! The caller policy held against what an attacker tried, through the real
//! binary over its embedded emulator, callers named by Linkerd's header
//! from loopback (where a sidecar connects from):
//! - a policy value no limiter can use is refused with its file, line and
//!   field, at start (exit 2) and on a reload, and the next good policy
//!   (one that revokes a caller) still takes effect; files written beside
//!   the policy never set off a reload;
//! - a developer call naming an existing identity is linked to it only
//!   when a rule says `link_existing_identities: true`;
//! - a flood of anonymous calls is held to `anonymous.rate_limit` per peer
//!   address, and a named caller's calls are answered as before;
//! - values from a request that reach a log line (a pool read from an
//!   unverified token's `aud`, a caller's header) cannot forge a line or
//!   send escape sequences, in text and in JSON logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use cognito_identity_gateway::emulator::{DEFAULT_DEVELOPER_PROVIDER, DEFAULT_POOL_ID};
use cognito_identity_gateway::proto as pb;
use support::binary::Running;
use support::temp_dir;
use tonic::Code;
use tonic_types::StatusExt;

const DEVELOPER: &str = "GetOpenIdTokenForDeveloperIdentity";
const CHECKOUT: &str = "checkout.shop.svc";

/// The gateway binary over its emulator, with the policy at `policy`,
/// callers named by `l5d-client-id`, and `extra` flags.
fn start(policy: &Path, extra: &[&str]) -> Running {
    let mut args = vec!["--caller-identity-header", "l5d-client-id"];
    args.extend_from_slice(extra);
    Running::start(policy, &args)
}

fn as_caller<T>(message: T, identity: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("l5d-client-id", identity.parse().unwrap());
    request
}

fn developer(user: &str, identity_id: &str) -> pb::GetOpenIdTokenForDeveloperIdentityRequest {
    pb::GetOpenIdTokenForDeveloperIdentityRequest {
        identity_pool_id: DEFAULT_POOL_ID.into(),
        identity_id: identity_id.into(),
        logins: HashMap::from([(DEFAULT_DEVELOPER_PROVIDER.into(), user.into())]),
        ..Default::default()
    }
}

fn checkout_may_mint(extra: &str) -> String {
    format!(
        r#"mode: enforce
callers:
  - name: checkout
    dns_names: ["{CHECKOUT}"]
    allow:
      - operations: [{DEVELOPER}, GetId]
        identity_pools: ["{DEFAULT_POOL_ID}"]
{extra}
anonymous:
  allow:
    - operations: [GetId]
      identity_pools: ["*"]
"#
    )
}

/// Polls `check` every 50 ms for up to `within`.
async fn eventually<F: std::future::Future<Output = bool>>(
    within: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

const TOO_SLOW: &str =
    "  - name: tiny\n    dns_names: [\"tiny.svc\"]\n    rate_limit: {per_second: 1.0e-20}\n";

#[tokio::test]
async fn a_policy_that_cannot_be_used_is_refused_and_the_next_good_one_takes_effect() {
    let dir = temp_dir("callers-reload");
    let path = dir.join("policy.yaml");
    std::fs::write(&path, checkout_may_mint("")).unwrap();
    let gateway = start(&path, &[]);
    let mut client = gateway.client().await;
    client
        .get_open_id_token_for_developer_identity(as_caller(developer("u-1", ""), CHECKOUT))
        .await
        .expect("checkout may mint");

    // A log kept beside the policy, written to again and again: no reload.
    let log = dir.join("gateway.log");
    for i in 0..500 {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        writeln!(f, "a log line {i}").unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gateway.metric("gateway_policy_reloads_total").await, 0.0);

    // A rate no limiter can hold: refused, counted, the policy in force
    // stays.
    std::fs::write(
        &path,
        checkout_may_mint("").replace("callers:\n", &format!("callers:\n{TOO_SLOW}")),
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(15), || async {
            gateway
                .metric("gateway_policy_reloads_total{outcome=\"error\"}")
                .await
                == 1.0
        })
        .await,
        "the bad policy was never refused"
    );
    client
        .get_open_id_token_for_developer_identity(as_caller(developer("u-2", ""), CHECKOUT))
        .await
        .expect("the policy in force stays");

    // The next good file revokes checkout, and takes effect.
    std::fs::write(&path, checkout_may_mint("").replace(DEVELOPER, "GetId")).unwrap();
    let revoked = eventually(Duration::from_secs(15), || {
        let mut client = client.clone();
        async move {
            let call = client
                .get_open_id_token_for_developer_identity(as_caller(developer("u-3", ""), CHECKOUT))
                .await;
            matches!(call, Err(status) if status.code() == Code::PermissionDenied)
        }
    })
    .await;
    assert!(revoked, "the revoking policy never took effect");
    assert_eq!(
        gateway
            .metric("gateway_policy_reloads_total{outcome=\"ok\"}")
            .await,
        1.0
    );
    let log = gateway.stop();
    assert!(
        log.contains("line 5: callers[0].rate_limit.per_second"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_policy_that_cannot_be_used_stops_the_start_with_exit_2_and_one_message() {
    let dir = temp_dir("callers-start");
    let path = dir.join("policy.yaml");
    std::fs::write(
        &path,
        checkout_may_mint("").replace("callers:\n", &format!("callers:\n{TOO_SLOW}")),
    )
    .unwrap();
    let out = support::binary::command()
        .args([
            "--emulator",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
        ])
        .arg("--policy")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "policy {}: line 5: callers[0].rate_limit.per_second",
            path.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn linking_to_an_existing_identity_needs_a_rule_that_allows_it() {
    let dir = temp_dir("callers-link");
    let path = dir.join("policy.yaml");
    std::fs::write(&path, checkout_may_mint("")).unwrap();
    let gateway = start(&path, &[]);
    let mut client = gateway.client().await;
    // Someone else's identity, made without the developer provider.
    let foreign = client
        .get_id(tonic::Request::new(support::get_id(DEFAULT_POOL_ID)))
        .await
        .expect("an unauthenticated identity")
        .into_inner()
        .identity_id;

    let refused = client
        .get_open_id_token_for_developer_identity(as_caller(developer("u-9", &foreign), CHECKOUT))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("identity_id")
            && refused.message().contains("link_existing_identities"),
        "{}",
        refused.message()
    );
    assert_eq!(
        refused.get_error_details().error_info().unwrap().reason,
        "POLICY_DENIED"
    );
    assert_eq!(
        gateway
            .metric("cognito_upstream_calls_total{operation=\"GetOpenIdTokenForDeveloperIdentity\"")
            .await,
        0.0,
        "a refused link reaches no upstream"
    );

    // Allowed by the rule: the developer user is linked to that identity.
    std::fs::write(
        &path,
        checkout_may_mint("        link_existing_identities: true"),
    )
    .unwrap();
    let linked = eventually(Duration::from_secs(15), || {
        let (mut client, foreign) = (client.clone(), foreign.clone());
        async move {
            client
                .get_open_id_token_for_developer_identity(as_caller(
                    developer("u-9", &foreign),
                    CHECKOUT,
                ))
                .await
                .is_ok_and(|reply| reply.into_inner().identity_id == foreign)
        }
    })
    .await;
    assert!(
        linked,
        "link_existing_identities: true never allowed the link"
    );
    drop(gateway);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_anonymous_flood_is_held_per_peer_and_a_named_caller_is_served_as_before() {
    let dir = temp_dir("callers-flood");
    let path = dir.join("policy.yaml");
    std::fs::write(
        &path,
        checkout_may_mint("").replace(
            "anonymous:\n",
            "anonymous:\n  rate_limit: {per_second: 5, burst: 5}\n",
        ),
    )
    .unwrap();
    let gateway = start(&path, &[]);
    let flooder = gateway.client().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Eight anonymous callers asking for new (uncached) identities as fast
    // as they are answered.
    let floods: Vec<_> = (0..8)
        .map(|_| {
            let (mut client, stop) = (flooder.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut limited) = (0u32, 0u32);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match client
                        .get_id(tonic::Request::new(support::get_id(DEFAULT_POOL_ID)))
                        .await
                    {
                        Ok(_) => ok += 1,
                        Err(status) => {
                            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                            let reason = status
                                .get_error_details()
                                .error_info()
                                .unwrap()
                                .reason
                                .clone();
                            assert_eq!(reason, "CALLER_RATE_LIMITED");
                            limited += 1;
                        }
                    }
                }
                (ok, limited)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The named caller, on a connection of its own, meanwhile.
    let mut named = gateway.client().await;
    for _ in 0..30 {
        named
            .get_id(as_caller(support::get_id(DEFAULT_POOL_ID), CHECKOUT))
            .await
            .expect("the named caller is answered");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut limited) = (0, 0);
    for flood in floods {
        let (o, l) = flood.await.unwrap();
        ok += o;
        limited += l;
    }
    println!("anonymous flood: {ok} answered, {limited} refused CALLER_RATE_LIMITED");
    assert!(limited > 0, "the flood was never limited");
    assert_eq!(
        gateway
            .metric("gateway_caller_rate_limited_total{caller=\"anonymous\"}")
            .await,
        f64::from(limited)
    );
    assert_eq!(
        gateway
            .metric(
                "gateway_upstream_quota_decisions_total{operation=\"GetId\",outcome=\"refused\"}"
            )
            .await,
        0.0,
        "nobody's GetId was refused for want of quota"
    );
    drop(gateway);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A JWT (unsigned: the policy reads `aud` without verifying it) whose
/// audience is `aud`.
fn token_with_audience(aud: &str) -> String {
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.c2ln",
        b64(serde_json::json!({"alg": "RS512", "kid": "x"})),
        b64(serde_json::json!({"aud": aud, "sub": "x", "exp": 4_000_000_000u64}))
    )
}

#[tokio::test]
async fn values_from_requests_cannot_forge_log_lines() {
    const FORGED: &str = "FORGED-LINE";
    let dir = temp_dir("callers-logs");
    let path = dir.join("policy.yaml");
    std::fs::write(
        &path,
        format!(
            r#"mode: dry-run
anonymous:
  allow:
    - operations: [GetOpenIdToken]
      identity_pools: ["{DEFAULT_POOL_ID}"]
"#
        ),
    )
    .unwrap();
    let evil = format!(
        "us-east-1:evil\n2026-12-04T00:00:00.000000Z  INFO {FORGED} caller=admin\r\n\u{1b}[31mred\u{1b}[0m\u{2028}"
    );
    for format in ["text", "json"] {
        let gateway = start(&path, &["--log-format", format]);
        let mut client = gateway.client().await;
        let request = pb::GetOpenIdTokenRequest {
            identity_id: "us-east-1:0a0a0a0a-0000-4000-8000-0000000000ff".into(),
            logins: HashMap::from([(
                "cognito-identity.amazonaws.com".into(),
                token_with_audience(&evil),
            )]),
        };
        // The dry run lets it through (and the emulator refuses the token);
        // what matters is the line that says the policy would refuse it.
        let _ = client.get_open_id_token(tonic::Request::new(request)).await;
        // A caller name from a header, with a tab (the one control
        // character a header value may hold).
        let _ = client
            .get_id(as_caller(support::get_id(DEFAULT_POOL_ID), "a\tb.svc"))
            .await;
        let log = gateway.stop();
        assert!(log.contains("dry run"), "{format}: {log}");
        assert!(
            !log.contains('\u{1b}'),
            "{format}: an escape sequence in {log}"
        );
        if format == "text" {
            // JSON may carry it raw (valid JSON, and no line break to a
            // reader of lines); text shows it escaped.
            assert!(!log.contains('\u{2028}'), "{format}: {log}");
        }
        for line in log.lines().filter(|l| !l.is_empty()) {
            match format {
                "text" => assert!(
                    line.starts_with("20") && !line.contains("\tb.svc"),
                    "a line not made by the gateway: {line:?}"
                ),
                _ => {
                    let _: serde_json::Value = serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line:?}"));
                }
            }
        }
        let forged: Vec<&str> = log.lines().filter(|l| l.contains(FORGED)).collect();
        assert_eq!(forged.len(), 1, "{format}: {log}");
        assert!(
            forged[0].contains("dry run: the policy would refuse this call"),
            "{format}: the forged text made a line of its own: {log}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
