//! A mesh's identity header, attacked end to end through real tonic
//! clients: the gateway in-process over the emulator, with a policy under
//! which only `admin` may mint developer tokens. Each forgery of the header
//! (a Subject or a URI quoting a second URI, a URI that is no SPIFFE id, a
//! client's own `l5d-client-id` ahead of the mesh's, a header from a peer
//! that is not the mesh) must leave the caller short of `admin`, and must
//! reach no upstream call; a header the mesh set still names its caller.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use cognito_identity_gateway::cache::{CacheSettings, Clock};
use cognito_identity_gateway::emulator::Emulator;
use cognito_identity_gateway::grpc::IdentityHeader;
use cognito_identity_gateway::grpc::status::{CALLER_KEY, GATEWAY_DOMAIN};
use cognito_identity_gateway::policy::{LivePolicy, Policy};
use cognito_identity_gateway::server::ServerSettings;
use cognito_identity_gateway::service::Gateway;
use support::loopback::series;
use support::{TestGateway, emulator_upstream, start_emulator};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic_types::StatusExt;

const DEVELOPER: &str = "GetOpenIdTokenForDeveloperIdentity";
const XFCC: &str = "x-forwarded-client-cert";
const L5D: &str = "l5d-client-id";
const ADMIN: &str = "spiffe://td/ns/admin/sa/root";
const ADMIN_DNS: &str = "admin.ops.svc";
const CHECKOUT: &str = "spiffe://td/ns/shop/sa/checkout";
/// The sidecar in front of the gateway, as Envoy names itself in `By=`.
const SIDECAR: &str = "spiffe://td/ns/identity/sa/gateway";

/// Only `admin` (by its SPIFFE id or its DNS name) may mint developer
/// tokens; `checkout` may only call GetId; anonymous callers nothing.
fn policy() -> Policy {
    Policy::parse(&format!(
        r#"
mode: enforce
callers:
  - name: admin
    spiffe_ids: ["{ADMIN}"]
    dns_names: ["{ADMIN_DNS}"]
    allow:
      - operations: [{DEVELOPER}]
        identity_pools: ["*"]
  - name: checkout
    spiffe_ids: ["{CHECKOUT}"]
    dns_names: ["checkout.shop.svc"]
    allow:
      - operations: [GetId]
        identity_pools: ["*"]
"#
    ))
    .unwrap()
}

/// The gateway over the emulator, taking callers from `header` when it
/// comes from a peer in `trusted_peers`.
async fn serve(header: &'static str, trusted_peers: &str) -> (TestGateway, Arc<Emulator>) {
    let (url, emulator) = start_emulator().await;
    let gateway = Gateway::new(
        emulator_upstream(&url).await,
        CacheSettings::default(),
        Clock::default(),
    )
    .with_policy(Some(Arc::new(LivePolicy::fixed(policy()))));
    let header = IdentityHeader::new(http::HeaderName::from_static(header))
        .trusted_from(trusted_peers.parse().unwrap());
    let settings = ServerSettings {
        caller_identity_header: Some(header),
        ..ServerSettings::default()
    };
    (
        TestGateway::serve_gateway(Arc::new(gateway), settings).await,
        emulator,
    )
}

/// A developer call carrying `values` of `header`, each as a header field
/// of its own.
fn developer_call(
    header: &'static str,
    values: &[&str],
) -> tonic::Request<cognito_identity_gateway::proto::GetOpenIdTokenForDeveloperIdentityRequest> {
    let mut request = tonic::Request::new(support::developer("mesh-user", 900));
    for value in values {
        request
            .metadata_mut()
            .append(header, MetadataValue::try_from(*value).unwrap());
    }
    request
}

/// Sends `values` of `header` to a gateway trusting `header` from
/// `trusted_peers`; returns how the developer call was refused, the
/// policy's name for the caller, the emulator's count of upstream calls,
/// and the gateway's count of headers set aside, by reason.
async fn forge(
    header: &'static str,
    trusted_peers: &str,
    values: &[&str],
) -> (Code, String, u64, Vec<(String, f64)>) {
    let (server, emulator) = serve(header, trusted_peers).await;
    let mut client = server.client().await;
    // Not `expect_err`: its message would show the token.
    let Err(status) = client
        .get_open_id_token_for_developer_identity(developer_call(header, values))
        .await
    else {
        panic!("a forged header minted a token");
    };
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.domain, GATEWAY_DOMAIN);
    let caller = info.metadata[CALLER_KEY].clone();
    let calls = emulator.calls(DEVELOPER);
    let rejected = rejected(&server.metrics.encode(None));
    server.stop().await;
    (status.code(), caller, calls, rejected)
}

/// `gateway_caller_identity_header_rejected_total`'s series in `text`.
/// The reasons counted so far (every reason is exported from the start,
/// at 0).
fn rejected(text: &str) -> Vec<(String, f64)> {
    series(text, "gateway_caller_identity_header_rejected_total")
        .filter(|(_, v)| *v != 0.0)
        .map(|(labels, v)| (labels.to_owned(), v))
        .collect()
}

/// The one series a single forged call leaves: `reason`, counted once.
fn once(reason: &str) -> Vec<(String, f64)> {
    vec![(format!(r#"{{reason="{reason}"}}"#), 1.0)]
}

#[tokio::test]
async fn a_subject_quoting_a_uri_does_not_name_the_caller() {
    // Envoy quotes the Subject; the comma and the URI inside it are the
    // certificate's own text, not a second element.
    let xfcc = format!(r#"By={SIDECAR};Hash=4f1c;Subject="CN=x,URI={ADMIN}";URI={CHECKOUT}"#);
    let (code, caller, calls, rejected) = forge(XFCC, "127.0.0.0/8", &[&xfcc]).await;
    assert_eq!(
        (code, caller.as_str()),
        (Code::PermissionDenied, "checkout")
    );
    assert_eq!(calls, 0);
    assert_eq!(rejected, []);
}

#[tokio::test]
async fn a_quoted_uri_hiding_a_second_uri_names_no_one() {
    let xfcc = format!(r#"By={SIDECAR};Hash=4f1c;URI="{CHECKOUT},URI={ADMIN}""#);
    let (code, caller, calls, rejected) = forge(XFCC, "127.0.0.0/8", &[&xfcc]).await;
    assert_eq!(
        (code, caller.as_str()),
        (Code::Unauthenticated, "anonymous")
    );
    assert_eq!(calls, 0);
    assert_eq!(rejected, once("not_an_identity"));
}

#[tokio::test]
async fn a_uri_that_is_no_spiffe_id_is_not_a_dns_name() {
    let xfcc = format!("By={SIDECAR};Hash=4f1c;URI={ADMIN_DNS}");
    let (code, caller, calls, rejected) = forge(XFCC, "127.0.0.0/8", &[&xfcc]).await;
    assert_eq!(
        (code, caller.as_str()),
        (Code::Unauthenticated, "anonymous")
    );
    assert_eq!(calls, 0);
    assert_eq!(rejected, once("not_an_identity"));
}

#[tokio::test]
async fn a_clients_own_l5d_client_id_ahead_of_the_meshs_names_no_one() {
    // The client's field first, then the one the inbound proxy appends.
    let (code, caller, calls, rejected) =
        forge(L5D, "127.0.0.0/8", &[ADMIN_DNS, "web.shop.svc"]).await;
    assert_eq!(
        (code, caller.as_str()),
        (Code::Unauthenticated, "anonymous")
    );
    assert_eq!(calls, 0);
    assert_eq!(rejected, once("repeated"));
}

#[tokio::test]
async fn two_xfcc_fields_name_no_one() {
    let forged = format!("By={SIDECAR};URI={ADMIN}");
    let mesh = format!("By={SIDECAR};URI={CHECKOUT}");
    let (code, caller, calls, rejected) = forge(XFCC, "127.0.0.0/8", &[&forged, &mesh]).await;
    assert_eq!(
        (code, caller.as_str()),
        (Code::Unauthenticated, "anonymous")
    );
    assert_eq!(calls, 0);
    assert_eq!(rejected, once("repeated"));
}

#[tokio::test]
async fn a_header_from_a_peer_that_is_not_the_mesh_is_ignored_and_counted() {
    // The test client connects from 127.0.0.1, which is not in 10.0.0.0/8.
    let xfcc = format!("By={SIDECAR};URI={ADMIN}");
    let (code, caller, calls, rejected) = forge(XFCC, "10.0.0.0/8", &[&xfcc]).await;
    assert_eq!(
        (code, caller.as_str()),
        (Code::Unauthenticated, "anonymous")
    );
    assert_eq!(calls, 0);
    assert_eq!(rejected, once("untrusted_peer"));
    let (code, caller, calls, rejected) = forge(L5D, "10.0.0.0/8,192.168.0.1", &[ADMIN_DNS]).await;
    assert_eq!(
        (code, caller.as_str()),
        (Code::Unauthenticated, "anonymous")
    );
    assert_eq!(calls, 0);
    assert_eq!(rejected, once("untrusted_peer"));
}

#[tokio::test]
async fn a_header_the_mesh_set_names_its_caller() {
    // Envoy with APPEND_FORWARD: an earlier proxy's element, then the one
    // the sidecar added for the connection it accepted, with a quoted
    // Subject holding an escaped quote and a comma.
    let xfcc = format!(
        r#"By=spiffe://td/ns/edge/sa/edge;URI={CHECKOUT},By={SIDECAR};Hash=4f1c;Subject="CN=\"root\",O=ops";URI={ADMIN}"#
    );
    for (header, value, trusted) in [
        (XFCC, xfcc.as_str(), "127.0.0.0/8,::1/128"),
        (L5D, ADMIN, "127.0.0.1"),
        (L5D, ADMIN_DNS, "::1/128,127.0.0.0/8"),
    ] {
        let (server, emulator) = serve(header, trusted).await;
        let mut client = server.client().await;
        let reply = client
            .get_open_id_token_for_developer_identity(developer_call(header, &[value]))
            .await
            .unwrap_or_else(|status| panic!("{header}: {value}: {status:?}"));
        assert!(!reply.into_inner().token.is_empty());
        assert_eq!(emulator.calls(DEVELOPER), 1);
        server.stop().await;
    }
}

#[tokio::test]
async fn the_binary_counts_every_header_set_aside_and_logs_a_peer_once_escaped() {
    let dir = support::temp_dir("mesh-binary");
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "mode: enforce\ncallers:\n  - name: admin\n    dns_names: [\"{ADMIN_DNS}\"]\n    \
             allow:\n      - operations: [{DEVELOPER}]\n        identity_pools: [\"*\"]\n"
        ),
    )
    .unwrap();
    let gateway = support::binary::Running::start(
        &policy,
        &[
            "--caller-identity-header",
            L5D,
            "--caller-identity-header-trusted-peers",
            "10.0.0.0/8",
        ],
    );
    // A value that would forge a field of the log line were it written
    // as it came.
    let forged = format!(r#"{ADMIN_DNS}" reason="none""#);
    // Two connections from the same address: one peer.
    for _ in 0..2 {
        let mut client = gateway.client().await;
        for _ in 0..3 {
            let status = client
                .get_open_id_token_for_developer_identity(developer_call(L5D, &[&forged]))
                .await
                .map(|_| ())
                .unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated);
        }
    }
    let (_, text) = support::loopback::http_get(gateway.admin, "/metrics").await;
    let counted = rejected(&text);
    assert_eq!(
        counted,
        [(r#"{reason="untrusted_peer"}"#.to_owned(), 6.0)],
        "{text}"
    );

    let log = gateway.stop();
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("caller identity header set aside"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    let line = lines[0];
    assert!(
        line.contains("WARN") && line.contains("127.0.0.1:"),
        "{line}"
    );
    assert!(line.contains("untrusted_peer"), "{line}");
    assert!(line.contains(r#"reason=\"none\""#), "escaped: {line}");
    assert!(!line.contains(r#"" reason="none""#), "unescaped: {line}");
    std::fs::remove_dir_all(&dir).unwrap();
}
