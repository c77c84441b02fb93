//! The caller policy on the request's way, through real tonic clients: the
//! gateway in-process over the emulator, callers named by a mesh's identity
//! header (`l5d-client-id`, as Linkerd sets it). Each refused call is
//! checked for its code and ErrorInfo, and for reaching neither the cache
//! nor the upstream (calls counted at the emulator).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use cognito_identity_gateway::cache::{CacheSettings, Clock};
use cognito_identity_gateway::emulator::{DEFAULT_DEVELOPER_PROVIDER, DEFAULT_POOL_ID, Emulator};
use cognito_identity_gateway::grpc::IdentityHeader;
use cognito_identity_gateway::grpc::status::{CALLER_KEY, GATEWAY_DOMAIN, OPERATION_KEY};
use cognito_identity_gateway::policy::{LivePolicy, Policy};
use cognito_identity_gateway::proto as pb;
use cognito_identity_gateway::server::ServerSettings;
use cognito_identity_gateway::service::Gateway;
use std::time::Duration;
use support::loopback::series;
use support::{TestGateway, emulator_upstream, kubernetes_update, start_emulator, temp_dir};

use tonic::Code;
use tonic_types::StatusExt;

const DEVELOPER: &str = "GetOpenIdTokenForDeveloperIdentity";
const OTHER_POOL: &str = "us-east-1:0a0a0a0a-0000-4000-8000-000000000002";
const SECRET_USER: &str = "secret-user-6d1f";

fn policy() -> String {
    format!(
        r#"
mode: enforce
callers:
  - name: checkout
    dns_names: ["checkout.shop.svc"]
    allow:
      - operations: [{DEVELOPER}]
        identity_pools: ["{DEFAULT_POOL_ID}"]
        login_providers: ["{DEFAULT_DEVELOPER_PROVIDER}"]
        principal_tag_keys: ["team"]
        max_token_duration: 1h
  - name: limited
    dns_names: ["limited.svc"]
    rate_limit: {{per_second: 0.1, burst: 2}}
    allow:
      - operations: [{DEVELOPER}]
        identity_pools: ["*"]
        principal_tag_keys: ["team"]
  - name: reader
    spiffe_ids: ["spiffe://example.org/ns/shop/*"]
    allow:
      - operations: [GetId]
        identity_pools: ["*"]
anonymous:
  allow:
    - operations: [GetId]
      identity_pools: ["*"]
"#
    )
}

fn developer(
    pool: &str,
    provider: &str,
    tag: &str,
    seconds: i64,
) -> pb::GetOpenIdTokenForDeveloperIdentityRequest {
    pb::GetOpenIdTokenForDeveloperIdentityRequest {
        identity_pool_id: pool.into(),
        logins: HashMap::from([(provider.into(), SECRET_USER.into())]),
        principal_tags: HashMap::from([(tag.into(), "secret-tag-value".into())]),
        token_duration_seconds: Some(seconds),
        ..Default::default()
    }
}

/// The gateway over the emulator, judging callers by `policy`, who are
/// named by Linkerd's header.
async fn serve(policy: LivePolicy) -> (TestGateway, Arc<Emulator>) {
    let (url, emulator) = start_emulator().await;
    let gateway = Gateway::new(
        emulator_upstream(&url).await,
        CacheSettings::default(),
        Clock::default(),
    )
    .with_policy(Some(Arc::new(policy)));
    let settings = ServerSettings {
        caller_identity_header: Some(IdentityHeader::new(http::HeaderName::from_static(
            "l5d-client-id",
        ))),
        ..ServerSettings::default()
    };
    (
        TestGateway::serve_gateway(Arc::new(gateway), settings).await,
        emulator,
    )
}

fn as_caller<T>(message: T, identity: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(identity) = identity {
        request
            .metadata_mut()
            .insert("l5d-client-id", identity.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn callers_get_what_the_policy_allows_and_refusals_touch_nothing() {
    let (server, emulator) = serve(LivePolicy::fixed(Policy::parse(&policy()).unwrap())).await;
    let mut client = server.client().await;
    let checkout = Some("checkout.shop.svc");

    // Allowed: it reaches the emulator once, then the cache.
    let ok = developer(DEFAULT_POOL_ID, DEFAULT_DEVELOPER_PROVIDER, "team", 3600);
    for _ in 0..2 {
        let reply = client
            .get_open_id_token_for_developer_identity(as_caller(ok.clone(), checkout))
            .await
            .unwrap();
        assert!(!reply.into_inner().token.is_empty());
    }
    assert_eq!(emulator.calls(DEVELOPER), 1);

    // Each part of the call that no rule allows, and the caller's own.
    let refused = [
        (
            developer(OTHER_POOL, DEFAULT_DEVELOPER_PROVIDER, "team", 3600),
            checkout,
            Code::PermissionDenied,
            "checkout",
            "identity pool",
        ),
        (
            developer(DEFAULT_POOL_ID, "graph.facebook.com", "team", 3600),
            checkout,
            Code::PermissionDenied,
            "checkout",
            "login provider",
        ),
        (
            developer(DEFAULT_POOL_ID, DEFAULT_DEVELOPER_PROVIDER, "cost", 3600),
            checkout,
            Code::PermissionDenied,
            "checkout",
            "principal tag",
        ),
        (
            developer(DEFAULT_POOL_ID, DEFAULT_DEVELOPER_PROVIDER, "team", 7200),
            checkout,
            Code::PermissionDenied,
            "checkout",
            "7200 s",
        ),
        // Another caller, asking for the very token checkout has cached.
        (
            ok.clone(),
            Some("spiffe://example.org/ns/shop/sa/reader"),
            Code::PermissionDenied,
            "reader",
            "operation",
        ),
        (
            ok.clone(),
            Some("stranger.svc"),
            Code::PermissionDenied,
            "unknown",
            "not in the policy",
        ),
        (
            ok.clone(),
            None,
            Code::Unauthenticated,
            "anonymous",
            "operation",
        ),
    ];
    for (request, identity, code, caller, part) in refused {
        let status = client
            .get_open_id_token_for_developer_identity(as_caller(request, identity))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{caller}: {}", status.message());
        assert!(
            status.message().contains(part),
            "{part}: {}",
            status.message()
        );
        assert!(
            !status.message().contains(SECRET_USER),
            "{}",
            status.message()
        );
        assert!(
            !status.message().contains("secret-tag-value"),
            "{}",
            status.message()
        );
        let info = status.get_details_error_info().expect("ErrorInfo");
        let reason = if code == Code::Unauthenticated {
            "CALLER_UNAUTHENTICATED"
        } else {
            "POLICY_DENIED"
        };
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            (reason, GATEWAY_DOMAIN)
        );
        assert_eq!(info.metadata[CALLER_KEY], caller);
        assert_eq!(info.metadata[OPERATION_KEY], DEVELOPER);
    }
    assert_eq!(
        emulator.calls(DEVELOPER),
        1,
        "no refused call reached the upstream or was answered from the cache"
    );

    // Anonymous and the reader may call what their rules name.
    for identity in [None, Some("spiffe://example.org/ns/shop/sa/reader")] {
        let id = client
            .get_id(as_caller(support::get_id(DEFAULT_POOL_ID), identity))
            .await
            .unwrap();
        assert!(id.into_inner().identity_id.starts_with("us-east-1:"));
    }

    let text = server.metrics.encode(None);
    let decisions = |labels: &str| {
        series(&text, "gateway_policy_decisions_total")
            .find_map(|(l, v)| (l == labels).then_some(v))
            .unwrap_or(0.0)
    };
    assert_eq!(
        decisions(&format!(
            r#"{{caller="checkout",operation="{DEVELOPER}",decision="allow"}}"#
        )),
        2.0
    );
    assert_eq!(
        decisions(&format!(
            r#"{{caller="checkout",operation="{DEVELOPER}",decision="deny"}}"#
        )),
        4.0
    );
    assert_eq!(
        decisions(r#"{caller="anonymous",operation="GetId",decision="allow"}"#),
        1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn a_dry_run_lets_denied_calls_through_and_counts_them() {
    let dry = policy().replace("mode: enforce", "mode: dry-run");
    let (server, emulator) = serve(LivePolicy::fixed(Policy::parse(&dry).unwrap())).await;
    let mut client = server.client().await;
    let denied = developer(OTHER_POOL, DEFAULT_DEVELOPER_PROVIDER, "team", 3600);
    // The emulator has no such pool: the call went through to it.
    let status = client
        .get_open_id_token_for_developer_identity(as_caller(denied, Some("checkout.shop.svc")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(emulator.calls(DEVELOPER), 1);
    let text = server.metrics.encode(None);
    assert!(
        series(&text, "gateway_policy_decisions_total").any(|(l, v)| l
            == format!(r#"{{caller="checkout",operation="{DEVELOPER}",decision="dry_run_deny"}}"#)
            && v == 1.0),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_caller_past_its_rate_limit_is_told_when_to_retry() {
    let (server, emulator) = serve(LivePolicy::fixed(Policy::parse(&policy()).unwrap())).await;
    let mut client = server.client().await;
    let request = developer(DEFAULT_POOL_ID, DEFAULT_DEVELOPER_PROVIDER, "team", 900);
    let limited = Some("limited.svc");
    // A burst of two: a miss, then a hit; the hit counts too.
    for _ in 0..2 {
        client
            .get_open_id_token_for_developer_identity(as_caller(request.clone(), limited))
            .await
            .unwrap();
    }
    let status = client
        .get_open_id_token_for_developer_identity(as_caller(request.clone(), limited))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "CALLER_RATE_LIMITED");
    assert_eq!(info.metadata[CALLER_KEY], "limited");
    let retry = status.get_details_retry_info().expect("RetryInfo");
    let delay = retry.retry_delay.expect("a delay");
    // One call every 10 s: the next is admitted within 10 s, not at once.
    assert!(
        delay > Duration::from_secs(5) && delay <= Duration::from_secs(10),
        "{delay:?}"
    );
    assert_eq!(emulator.calls(DEVELOPER), 1);
    let text = server.metrics.encode(None);
    assert!(
        series(&text, "gateway_caller_rate_limited_total")
            .any(|(l, v)| l == r#"{caller="limited"}"# && v == 1.0),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_changed_policy_file_takes_effect_without_a_restart() {
    let dir = temp_dir("policy-reload");
    kubernetes_update(&dir, &[("policy.yaml", &policy())]);
    let path = dir.join("policy.yaml");

    let (url, _emulator) = start_emulator().await;
    let live = Arc::new(LivePolicy::load(&path).unwrap());
    // Only the directory watch can see changes in time: the periodic check
    // is a minute away.
    let watch = live.clone().watch(Duration::from_secs(60)).unwrap();
    let gateway = Gateway::new(
        emulator_upstream(&url).await,
        CacheSettings::default(),
        Clock::default(),
    )
    .with_policy(Some(live));
    let server = TestGateway::serve_gateway(Arc::new(gateway), ServerSettings::default()).await;
    let mut client = server.client().await;
    let anonymous_get_id = || as_caller(support::get_id(DEFAULT_POOL_ID), None);
    client.get_id(anonymous_get_id()).await.unwrap();

    // The same file without an anonymous section: anonymous GetId is refused.
    let strict = policy().split("anonymous:").next().unwrap().to_owned();
    let reloads = |outcome: &str| {
        let text = server.metrics.encode(None);
        series(&text, "gateway_policy_reloads_total")
            .find_map(|(l, v)| (l == format!(r#"{{outcome="{outcome}"}}"#)).then_some(v))
            .unwrap_or(0.0)
    };
    let ok_before = reloads("ok");
    kubernetes_update(&dir, &[("policy.yaml", &strict)]);
    let started = std::time::Instant::now();
    let refused = loop {
        match client.get_id(anonymous_get_id()).await {
            Err(status) => break status,
            Ok(_) if started.elapsed() < Duration::from_secs(2) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(_) => panic!("the new policy was not in force within 2 s"),
        }
    };
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(reloads("ok") > ok_before);

    // A file that does not load leaves the policy in force, and is counted.
    let errors_before = reloads("error");
    kubernetes_update(
        &dir,
        &[("policy.yaml", "mode: enforce\ncallers: [{name: x}]\n")],
    );
    let started = std::time::Instant::now();
    while reloads("error") == errors_before && started.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        reloads("error") > errors_before,
        "the bad file was not seen"
    );
    let still = client.get_id(anonymous_get_id()).await.unwrap_err();
    assert_eq!(still.code(), Code::Unauthenticated);

    drop(watch);
    server.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
