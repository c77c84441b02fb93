//! The metrics as scrapers read them, from the gateway's binary serving
//! mutual TLS with a policy and an audit log, after calls that answer,
//! fail, are denied and are rate-limited:
//! - `/metrics` answers each scraper in the format its `Accept` header asks
//!   for, OpenMetrics or the 0.0.4 text, and Prometheus's own parsers
//!   (`prometheus_client`'s two) read every family with its type, counters
//!   as counters in both;
//! - the server's calls are counted under go-grpc-prometheus's names;
//! - every metric and label that an alert in `deploy/monitoring/alerts.yaml`
//!   or a query of `deploy/monitoring/dashboard.json` names is one the
//!   gateway emits.
//!
//! Needs `python3` with `prometheus_client` on `PATH` (the test command's
//! virtualenv).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

use cognito_identity_gateway::emulator::{DEFAULT_DEVELOPER_PROVIDER, DEFAULT_POOL_ID};
use cognito_identity_gateway::proto as pb;
use cognito_identity_gateway::proto::cognito_identity_service_client::CognitoIdentityServiceClient;
use support::binary::Running;
use support::certs::{Ca, Pem};
use support::loopback::http_get_with;
use support::temp_dir;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const OPEN_METRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn client(
    port: u16,
    ca: &str,
    identity: Option<&Pem>,
) -> CognitoIdentityServiceClient<Channel> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(pem) = identity {
        tls = tls.identity(Identity::from_pem(&pem.cert, &pem.key));
    }
    let endpoint = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap();
    for _ in 0..200 {
        if let Ok(channel) = endpoint.connect().await {
            return CognitoIdentityServiceClient::new(channel);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the gateway never listened on port {port}");
}

fn developer(user: &str) -> pb::GetOpenIdTokenForDeveloperIdentityRequest {
    pb::GetOpenIdTokenForDeveloperIdentityRequest {
        identity_pool_id: DEFAULT_POOL_ID.into(),
        logins: HashMap::from([(DEFAULT_DEVELOPER_PROVIDER.into(), user.into())]),
        ..Default::default()
    }
}

/// Runs a Python script of the test suite; its standard output, or a
/// failure with its standard error.
fn python(args: &[&str]) -> Result<String, String> {
    let out = Command::new("python3")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs (the test command's virtualenv puts it on PATH)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "python3 {args:?}: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The families Prometheus's parser for `format` reads in `body`: name to
/// type.
fn families(dir: &Path, format: &str, body: &str) -> BTreeMap<String, String> {
    let file = dir.join(format!("metrics.{format}"));
    std::fs::write(&file, body).unwrap();
    let listed = python(&["tests/metrics/families.py", format, file.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("{e}"));
    listed
        .lines()
        .map(|line| {
            let mut fields = line.split(' ');
            let name = fields.next().unwrap().to_owned();
            (name, fields.next().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn scrapers_read_every_family_and_the_monitoring_queries_name_only_what_is_emitted() {
    let dir = temp_dir("exposition");
    let ca = Ca::new("exposition CA");
    let server = ca.server();
    let write = |name: &str, contents: &str| {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    };
    let cert = write("tls.crt", &server.cert);
    let key = write("tls.key", &server.key);
    let client_ca = write("ca.crt", &ca.pem());
    let audit_key = write("audit.key", "an audit key of some length\n");
    let audit_log = dir.join("audit.log").display().to_string();
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            r#"mode: enforce
callers:
  - name: checkout
    dns_names: ["checkout.shop.svc"]
    allow:
      - operations: [GetOpenIdTokenForDeveloperIdentity, GetId, GetCredentialsForIdentity]
        identity_pools: ["{DEFAULT_POOL_ID}"]
  - name: limited
    dns_names: ["limited.shop.svc"]
    rate_limit: {{per_second: 0.01, burst: 1}}
    allow:
      - operations: [GetOpenIdTokenForDeveloperIdentity]
        identity_pools: ["{DEFAULT_POOL_ID}"]
"#
        ),
    )
    .unwrap();
    // Traces exported to a collector, for the exporter's metrics.
    let collector = support::otlp::Collector::default();
    let otlp = format!("http://{}", collector.start().await);
    let gateway = Running::start_with_env(
        &policy,
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &client_ca,
            "--audit-log",
            &audit_log,
            "--audit-hmac-key-file",
            &audit_key,
        ],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp)],
    );
    let checkout_pem = ca.dns_client(&["checkout.shop.svc"]);
    let limited_pem = ca.dns_client(&["limited.shop.svc"]);
    let ca_pem = ca.pem();
    let mut checkout = client(gateway.grpc, &ca_pem, Some(&checkout_pem)).await;
    let mut limited = client(gateway.grpc, &ca_pem, Some(&limited_pem)).await;
    let mut anonymous = client(gateway.grpc, &ca_pem, None).await;

    // Answered: a developer token twice (a miss, then a hit), credentials.
    let token = checkout
        .get_open_id_token_for_developer_identity(developer("user-1"))
        .await
        .unwrap()
        .into_inner();
    checkout
        .get_open_id_token_for_developer_identity(developer("user-1"))
        .await
        .unwrap();
    checkout
        .get_credentials_for_identity(pb::GetCredentialsForIdentityRequest {
            identity_id: token.identity_id.clone(),
            logins: HashMap::from([("cognito-identity.amazonaws.com".into(), token.token)]),
            custom_role_arn: String::new(),
        })
        .await
        .unwrap();
    // A bad request, an upstream error, a denial, a rate limit.
    let bad = checkout
        .get_id(pb::GetIdRequest {
            identity_pool_id: "bad".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let foreign_pool = checkout
        .get_id(pb::GetIdRequest {
            identity_pool_id: "us-east-1:00000000-0000-0000-0000-000000000000".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        foreign_pool.code(),
        Code::PermissionDenied,
        "{foreign_pool:?}"
    );
    let denied = anonymous
        .get_open_id_token_for_developer_identity(developer("user-2"))
        .await
        .unwrap_err();
    // No certificate: no caller the policy knows.
    assert_eq!(denied.code(), Code::Unauthenticated);
    limited
        .get_open_id_token_for_developer_identity(developer("user-3"))
        .await
        .unwrap();
    let limited_again = limited
        .get_open_id_token_for_developer_identity(developer("user-4"))
        .await
        .unwrap_err();
    assert_eq!(limited_again.code(), Code::ResourceExhausted);

    // OpenMetrics for the scraper that asks for it first, as Prometheus does.
    let open_metrics = http_get_with(
        gateway.admin,
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        )],
    )
    .await;
    assert_eq!(open_metrics.status, 200);
    assert_eq!(open_metrics.header("content-type"), Some(OPEN_METRICS));
    assert!(open_metrics.body.ends_with("# EOF\n"));
    // The 0.0.4 text for one that asks for it, or for nothing.
    let text = http_get_with(
        gateway.admin,
        "/metrics",
        &[("Accept", "text/plain;version=0.0.4")],
    )
    .await;
    assert_eq!(text.header("content-type"), Some(TEXT));
    assert!(!text.body.contains("# EOF"), "{}", text.body);
    let plain = http_get_with(gateway.admin, "/metrics", &[]).await;
    assert_eq!(plain.header("content-type"), Some(TEXT));

    let in_open_metrics = families(&dir, "openmetrics", &open_metrics.body);
    let in_text = families(&dir, "text", &text.body);
    // Each parser reads every family with the type the gateway gave it.
    assert_eq!(in_open_metrics, in_text);
    for (name, kind) in &in_text {
        assert_ne!(kind, "unknown", "{name} is untyped:\n{}", text.body);
    }
    for (name, kind) in [
        ("grpc_server_started", "counter"),
        ("grpc_server_handled", "counter"),
        ("grpc_server_handling_seconds", "histogram"),
        ("cognito_upstream_calls", "counter"),
        ("cognito_upstream_duration_seconds", "histogram"),
        ("gateway_cache_hits", "counter"),
        ("gateway_policy_decisions", "counter"),
        ("gateway_caller_rate_limited", "counter"),
        ("gateway_audit_lines_written", "counter"),
        ("gateway_tls_certificate_expiry_timestamp_seconds", "gauge"),
        ("gateway_build_info", "gauge"),
    ] {
        assert_eq!(
            in_text.get(name).map(String::as_str),
            Some(kind),
            "{name}:\n{}",
            text.body
        );
    }

    // The calls under go-grpc-prometheus's names and labels.
    let labels = |method: &str| {
        format!(
            "grpc_type=\"unary\",grpc_service=\"cognito_identity_gateway.v1.CognitoIdentityService\",grpc_method=\"{method}\""
        )
    };
    let developer_labels = labels("GetOpenIdTokenForDeveloperIdentity");
    for series in [
        format!("grpc_server_started_total{{{developer_labels}}} 5"),
        format!("grpc_server_handled_total{{{developer_labels},grpc_code=\"OK\"}} 3"),
        format!("grpc_server_handled_total{{{developer_labels},grpc_code=\"UNAUTHENTICATED\"}} 1"),
        format!(
            "grpc_server_handled_total{{{developer_labels},grpc_code=\"RESOURCE_EXHAUSTED\"}} 1"
        ),
        format!(
            "grpc_server_handling_seconds_count{{{},grpc_code=\"INVALID_ARGUMENT\"}} 1",
            labels("GetId")
        ),
    ] {
        assert!(text.body.contains(&series), "{series} in:\n{}", text.body);
    }
    let expires = support::loopback::series(
        &text.body,
        "gateway_tls_certificate_expiry_timestamp_seconds",
    )
    .map(|(_, v)| v)
    .next()
    .expect("the certificate's expiry");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(expires > now, "{expires} is not after {now}");

    // Every metric and label the alerts and the dashboard name is emitted.
    let scrape = dir.join("metrics.text");
    let checked = python(&[
        "tests/monitoring/check_queries.py",
        "--scrape",
        scrape.to_str().unwrap(),
        "deploy/monitoring/alerts.yaml",
        "deploy/monitoring/dashboard.json",
    ]);
    if let Err(problems) = checked {
        panic!("the monitoring queries name what the gateway does not emit:\n{problems}");
    }
    gateway.stop();
}
