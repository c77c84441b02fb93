//! The audit log, through the real binary: over mutual TLS with a policy,
//! every developer call and every refusal makes one JSON line, checked
//! field by field, with no secret in it and the user as a keyed hash; a
//! sink that fails or blocks refuses developer calls UNAVAILABLE
//! (`AUDIT_UNAVAILABLE`) at once, and never holds a call; the lines of
//! calls answered reach the sink once it recovers, or standard error
//! (`audit-fallback: `) when it does not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cognito_identity_gateway::emulator::{DEFAULT_DEVELOPER_PROVIDER, DEFAULT_POOL_ID};
use cognito_identity_gateway::proto as pb;
use cognito_identity_gateway::proto::cognito_identity_service_client::CognitoIdentityServiceClient;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use serde_json::Value;
use support::binary::{self, Process};
use support::certs::{Ca, Pem};
use support::loopback::{free_port, http_get, series};
use support::otlp::Collector;
use support::temp_dir;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_types::StatusExt;

const DEVELOPER: &str = "GetOpenIdTokenForDeveloperIdentity";
const CHECKOUT: &str = "spiffe://example.org/ns/shop/sa/checkout";
const OTHER_POOL: &str = "us-east-1:0a0a0a0a-0000-4000-8000-000000000002";
const KEY: &str = "audit-key-for-tests-0123456789abcdef";
const USER_A: &str = "secret-user-a-51c2";
const USER_B: &str = "secret-user-b-9e04";
const TAG_VALUE: &str = "secret-tag-value-77aa";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn policy() -> String {
    format!(
        r#"
mode: enforce
callers:
  - name: checkout
    spiffe_ids: ["{CHECKOUT}"]
    allow:
      - operations: [{DEVELOPER}, GetCredentialsForIdentity]
        identity_pools: ["{DEFAULT_POOL_ID}"]
        principal_tag_keys: ["team"]
        max_token_duration: 1h
  - name: limited
    dns_names: ["limited.jobs.svc"]
    rate_limit: {{per_second: 0.01, burst: 1}}
    allow:
      - operations: [{DEVELOPER}]
        identity_pools: ["*"]
        principal_tag_keys: ["team"]
"#
    )
}

/// The gateway binary with the embedded emulator, `args` and `env`.
fn gateway(grpc: u16, admin: u16, args: &[&str]) -> Process {
    gateway_with_env(grpc, admin, args, &[])
}

fn gateway_with_env(grpc: u16, admin: u16, args: &[&str], env: &[(&str, String)]) -> Process {
    Process::spawn(
        binary::command()
            .args(["--emulator", "--shutdown-grace", "2s"])
            .args(["--listen", &format!("127.0.0.1:{grpc}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v))),
    )
}

async fn tls_client(
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway never listened on port {port}");
}

fn developer(
    pool: &str,
    user: &str,
    seconds: i64,
) -> pb::GetOpenIdTokenForDeveloperIdentityRequest {
    pb::GetOpenIdTokenForDeveloperIdentityRequest {
        identity_pool_id: pool.into(),
        logins: HashMap::from([(DEFAULT_DEVELOPER_PROVIDER.into(), user.into())]),
        principal_tags: HashMap::from([("team".into(), TAG_VALUE.into())]),
        token_duration_seconds: Some(seconds),
        ..Default::default()
    }
}

/// The audit file's lines once it has `count` (5 s at most).
async fn lines(path: &Path, count: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        if lines.len() >= count || start.elapsed() > Duration::from_secs(5) {
            assert_eq!(lines.len(), count, "{text}");
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn hmac_hex(user: &str) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, KEY.as_bytes());
    hex::encode(hmac::sign(&key, user.as_bytes()).as_ref())
}

async fn metric(admin: u16, name: &str) -> f64 {
    let (_, text) = http_get(admin, "/metrics").await;
    series(&text, name).map(|(_, v)| v).sum()
}

#[tokio::test]
async fn developer_calls_and_refusals_are_audited_field_by_field() {
    let dir = temp_dir("fields");
    let ca = Ca::new("shop CA");
    let server = ca.server();
    for (name, contents) in [
        ("tls.crt", server.cert.as_str()),
        ("tls.key", server.key.as_str()),
        ("ca.crt", &ca.pem()),
        ("policy.yaml", &policy()),
        // A trailing newline, as `echo` or an editor leaves, is not key.
        ("audit.key", &format!("{KEY}\n")),
    ] {
        std::fs::write(dir.join(name), contents).unwrap();
    }
    let audit = dir.join("audit.jsonl");
    let (grpc, admin) = (free_port(), free_port());
    let path = |name: &str| dir.join(name).display().to_string();
    let collector = Collector::default();
    let otlp = collector.start().await;
    let child = gateway_with_env(
        grpc,
        admin,
        &[
            "--tls-cert",
            &path("tls.crt"),
            "--tls-key",
            &path("tls.key"),
            "--tls-client-ca",
            &path("ca.crt"),
            "--policy",
            &path("policy.yaml"),
            "--audit-log",
            &audit.display().to_string(),
            "--audit-hmac-key-file",
            &path("audit.key"),
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ],
    );
    let mut checkout = tls_client(grpc, &ca.pem(), Some(&ca.spiffe_client(CHECKOUT))).await;
    let mut limited =
        tls_client(grpc, &ca.pem(), Some(&ca.dns_client(&["limited.jobs.svc"]))).await;
    let mut anonymous = tls_client(grpc, &ca.pem(), None).await;

    // 1, 2: a miss and a hit; 3: another user. The first in a trace.
    let mut minted = Vec::new();
    for (i, user) in [USER_A, USER_A, USER_B].into_iter().enumerate() {
        let mut request = tonic::Request::new(developer(DEFAULT_POOL_ID, user, 3600));
        if i == 0 {
            request.metadata_mut().insert(
                "traceparent",
                format!("00-{TRACE_ID}-00f067aa0ba902b7-01")
                    .parse()
                    .unwrap(),
            );
        }
        let reply = checkout
            .get_open_id_token_for_developer_identity(request)
            .await
            .unwrap()
            .into_inner();
        minted.push(reply);
    }
    // Not audited: an allowed call of another operation.
    checkout
        .get_credentials_for_identity(pb::GetCredentialsForIdentityRequest {
            identity_id: minted[0].identity_id.clone(),
            logins: HashMap::from([(
                "cognito-identity.amazonaws.com".into(),
                minted[0].token.clone(),
            )]),
            ..Default::default()
        })
        .await
        .unwrap();
    // 4: denied by the policy; 5: no identity; 6: allowed, 7: rate limited;
    // 8: a refusal of another operation.
    let codes = [
        checkout
            .get_open_id_token_for_developer_identity(developer(OTHER_POOL, USER_A, 3600))
            .await
            .map(drop),
        anonymous
            .get_open_id_token_for_developer_identity(developer(DEFAULT_POOL_ID, USER_A, 900))
            .await
            .map(drop),
        limited
            .get_open_id_token_for_developer_identity(developer(DEFAULT_POOL_ID, USER_B, 900))
            .await
            .map(drop),
        limited
            .get_open_id_token_for_developer_identity(developer(DEFAULT_POOL_ID, USER_B, 900))
            .await
            .map(drop),
        checkout
            .get_id(support::get_id(DEFAULT_POOL_ID))
            .await
            .map(drop),
    ]
    .map(|r| r.map_or_else(|s| s.code(), |()| Code::Ok));
    assert_eq!(
        codes,
        [
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::Ok,
            Code::ResourceExhausted,
            Code::PermissionDenied
        ]
    );

    let lines = lines(&audit, 8).await;
    let text = std::fs::read_to_string(&audit).unwrap();
    for secret in [
        USER_A,
        USER_B,
        TAG_VALUE,
        KEY,
        &minted[0].token,
        &minted[2].token,
    ] {
        assert!(!text.contains(secret), "a secret in the audit log: {text}");
    }
    let field = |line: &Value, name: &str| line[name].clone();
    let s = |v: &str| Value::String(v.to_owned());
    // Every line has every field.
    for line in &lines {
        for name in [
            "time",
            "caller",
            "operation",
            "identity_pool_id",
            "login_providers",
            "user",
            "identity_id",
            "token_duration_seconds",
            "principal_tag_keys",
            "outcome",
            "reason",
            "cache",
            "decision",
            "trace_id",
        ] {
            assert!(line.get(name).is_some(), "{name} missing: {line}");
        }
        let time = line["time"].as_str().unwrap();
        humantime::parse_rfc3339(time).expect("RFC 3339");
    }
    let a = &lines[0];
    assert_eq!(field(a, "caller"), s("checkout"));
    assert_eq!(field(a, "caller_identity"), s(CHECKOUT));
    assert_eq!(field(a, "operation"), s(DEVELOPER));
    assert_eq!(field(a, "identity_pool_id"), s(DEFAULT_POOL_ID));
    assert_eq!(
        field(a, "login_providers"),
        serde_json::json!([DEFAULT_DEVELOPER_PROVIDER])
    );
    assert_eq!(field(a, "user"), s(&hmac_hex(USER_A)));
    assert_eq!(field(a, "identity_id"), s(&minted[0].identity_id));
    assert_eq!(field(a, "token_duration_seconds"), serde_json::json!(3600));
    assert_eq!(field(a, "principal_tag_keys"), serde_json::json!(["team"]));
    assert_eq!(field(a, "outcome"), s("OK"));
    assert_eq!(field(a, "reason"), Value::Null);
    assert_eq!(field(a, "cache"), s("miss"));
    assert_eq!(field(a, "decision"), s("allow"));
    assert_eq!(field(a, "trace_id"), s(TRACE_ID));
    // Over TLS the call's span still has the caller's address.
    let start = Instant::now();
    let span = loop {
        let traced = collector.spans().into_iter().find(|s| {
            hex::encode(&s.trace_id) == TRACE_ID
                && s.name.starts_with("cognito_identity_gateway.v1")
        });
        if let Some(span) = traced {
            break span;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no span exported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let client_address = span.attributes.iter().find(|kv| kv.key == "client.address");
    assert_eq!(
        client_address.and_then(|kv| kv.value.clone()?.value),
        Some(AnyValue::StringValue("127.0.0.1".into())),
        "{span:?}"
    );
    // The hit: the same user, the same hash.
    assert_eq!(field(&lines[1], "cache"), s("hit"));
    assert_eq!(field(&lines[1], "user"), field(a, "user"));
    assert_ne!(field(&lines[2], "user"), field(a, "user"));
    assert_eq!(field(&lines[2], "user"), s(&hmac_hex(USER_B)));

    let denied = &lines[3];
    assert_eq!(field(denied, "outcome"), s("PERMISSION_DENIED"));
    assert_eq!(field(denied, "reason"), s("POLICY_DENIED"));
    assert_eq!(field(denied, "decision"), s("deny"));
    assert_eq!(field(denied, "identity_pool_id"), s(OTHER_POOL));
    assert_eq!(field(denied, "cache"), Value::Null);
    assert_eq!(field(denied, "identity_id"), Value::Null);
    let unauthenticated = &lines[4];
    assert_eq!(field(unauthenticated, "caller"), s("anonymous"));
    assert_eq!(field(unauthenticated, "caller_identity"), Value::Null);
    assert_eq!(field(unauthenticated, "outcome"), s("UNAUTHENTICATED"));
    assert_eq!(
        field(unauthenticated, "reason"),
        s("CALLER_UNAUTHENTICATED")
    );
    assert_eq!(field(&lines[5], "caller"), s("limited"));
    assert_eq!(field(&lines[5], "caller_identity"), s("limited.jobs.svc"));
    assert_eq!(field(&lines[5], "outcome"), s("OK"));
    let limited_line = &lines[6];
    assert_eq!(field(limited_line, "outcome"), s("RESOURCE_EXHAUSTED"));
    assert_eq!(field(limited_line, "reason"), s("CALLER_RATE_LIMITED"));
    assert_eq!(field(limited_line, "decision"), s("rate_limited"));
    let get_id = &lines[7];
    assert_eq!(field(get_id, "operation"), s("GetId"));
    assert_eq!(field(get_id, "user"), Value::Null);
    assert_eq!(field(get_id, "outcome"), s("PERMISSION_DENIED"));

    assert!(metric(admin, "gateway_audit_lines_written_total").await >= 8.0);
    assert_eq!(
        metric(admin, "gateway_audit_lines_dropped_total").await,
        0.0
    );
    child.stop();
}

async fn developer_code(client: &mut CognitoIdentityServiceClient<Channel>) -> tonic::Status {
    developer_code_for(client, USER_A).await
}

/// The status of a developer call for `user`, which never waits on the
/// audit sink.
async fn developer_code_for(
    client: &mut CognitoIdentityServiceClient<Channel>,
    user: &str,
) -> tonic::Status {
    match tokio::time::timeout(
        Duration::from_secs(2),
        client.get_open_id_token_for_developer_identity(developer(DEFAULT_POOL_ID, user, 900)),
    )
    .await
    .expect("a call never waits on the audit sink")
    {
        Ok(_) => tonic::Status::ok(""),
        Err(status) => status,
    }
}

fn assert_audit_unavailable(status: &tonic::Status) {
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "AUDIT_UNAVAILABLE");
    assert!(status.get_details_retry_info().is_some());
}

/// The audit lines of `text` (JSON lines), split into the users (hashes)
/// of the calls served and the number of calls refused AUDIT_UNAVAILABLE.
fn served_and_refused<'a>(lines: impl Iterator<Item = &'a str>) -> (Vec<String>, usize) {
    let (mut served, mut refused) = (Vec::new(), 0);
    for line in lines {
        let line: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(line["operation"], DEVELOPER, "{line}");
        match (line["outcome"].as_str(), line["reason"].as_str()) {
            (Some("OK"), None) => served.push(line["user"].as_str().unwrap().to_owned()),
            (Some("UNAVAILABLE"), Some("AUDIT_UNAVAILABLE")) => refused += 1,
            _ => panic!("an unexpected line: {line}"),
        }
    }
    served.sort();
    (served, refused)
}

/// The users' hashes, sorted.
fn hashes(users: &[String]) -> Vec<String> {
    let mut hashes: Vec<String> = users.iter().map(|user| hmac_hex(user)).collect();
    hashes.sort();
    hashes
}

#[tokio::test]
async fn a_sink_that_never_recovers_sends_answered_lines_to_the_fallback() {
    let dir = temp_dir("failing");
    std::fs::write(dir.join("audit.key"), KEY).unwrap();
    let (grpc, admin) = (free_port(), free_port());
    // Every write to /dev/full fails (ENOSPC): a full disk, never emptied.
    let child = gateway_with_env(
        grpc,
        admin,
        &[
            "--audit-log",
            "/dev/full",
            "--audit-hmac-key-file",
            &dir.join("audit.key").display().to_string(),
        ],
        &[("COGNITO_GATEWAY_AUDIT_FALLBACK_AFTER", "300ms".to_owned())],
    );
    let mut client = CognitoIdentityServiceClient::new(support::binary::connect(grpc).await);
    // Calls are served until the writer has tried the sink and failed;
    // from then on developer calls are refused.
    let mut served = Vec::new();
    let refused = loop {
        let user = format!("secret-user-{}-d1f0", served.len());
        let status = developer_code_for(&mut client, &user).await;
        if status.code() != Code::Ok {
            break status;
        }
        served.push(user);
        assert!(served.len() < 1_000, "never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_audit_unavailable(&refused);
    for _ in 0..2 {
        assert_audit_unavailable(&developer_code(&mut client).await);
    }
    // Other operations are not audited unless refused: served.
    client
        .get_id(support::get_id(DEFAULT_POOL_ID))
        .await
        .unwrap();
    assert!(metric(admin, "gateway_audit_refusals_total").await >= 3.0);
    // Past --audit-fallback-after, every line held goes to standard error:
    // the served calls' and the three refusals'.
    let expected = served.len() + 3;
    let start = Instant::now();
    let mut fallback = 0.0;
    while start.elapsed() < Duration::from_secs(10) {
        fallback = metric(admin, "gateway_audit_lines_fallback_total").await;
        if fallback >= expected as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fallback, expected as f64);
    assert_eq!(
        metric(admin, "gateway_audit_lines_dropped_total").await,
        0.0
    );
    assert_eq!(
        metric(admin, "gateway_audit_lines_written_total").await,
        0.0
    );
    let log = child.stop();
    let marked = log
        .lines()
        .filter_map(|line| line.strip_prefix("audit-fallback: "));
    let (fallen_back, refusals) = served_and_refused(marked);
    assert_eq!(fallen_back, hashes(&served), "{log}");
    assert_eq!(refusals, 3, "{log}");
    for secret in served
        .iter()
        .map(String::as_str)
        .chain([USER_A, TAG_VALUE, KEY])
    {
        assert!(!log.contains(secret), "a secret on standard error: {log}");
    }
}

#[tokio::test]
async fn at_shutdown_the_lines_a_failing_sink_did_not_take_go_to_the_fallback() {
    let dir = temp_dir("failing-at-shutdown");
    std::fs::write(dir.join("audit.key"), KEY).unwrap();
    let (grpc, admin) = (free_port(), free_port());
    // The sink fails, and the fallback is an hour away: only the shutdown
    // sends the lines there.
    let child = gateway_with_env(
        grpc,
        admin,
        &[
            "--audit-log",
            "/dev/full",
            "--audit-hmac-key-file",
            &dir.join("audit.key").display().to_string(),
        ],
        &[("COGNITO_GATEWAY_AUDIT_FALLBACK_AFTER", "1h".to_owned())],
    );
    let mut client = CognitoIdentityServiceClient::new(support::binary::connect(grpc).await);
    let mut served = Vec::new();
    loop {
        let user = format!("secret-user-{}-0b9a", served.len());
        let status = developer_code_for(&mut client, &user).await;
        if status.code() != Code::Ok {
            assert_audit_unavailable(&status);
            break;
        }
        served.push(user);
        assert!(served.len() < 1_000, "never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        metric(admin, "gateway_audit_lines_fallback_total").await,
        0.0
    );
    let log = child.stop();
    let marked = log
        .lines()
        .filter_map(|line| line.strip_prefix("audit-fallback: "));
    let (fallen_back, refusals) = served_and_refused(marked);
    assert_eq!(fallen_back, hashes(&served), "{log}");
    assert_eq!(refusals, 1, "{log}");
}

/// Reads `fifo` until `lines` lines have come, then closes it; returns what
/// it read.
fn read_lines_then_close(fifo: PathBuf, lines: usize) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut file = std::fs::File::open(fifo).unwrap();
        let (mut bytes, mut chunk) = (Vec::new(), [0; 4096]);
        while bytes.iter().filter(|&&b| b == b'\n').count() < lines {
            let n = file.read(&mut chunk).unwrap();
            assert_ne!(n, 0, "the writer closed the pipe");
            bytes.extend_from_slice(&chunk[..n]);
        }
        bytes
    })
}

#[tokio::test]
async fn a_sink_that_fails_then_recovers_gets_every_answered_line_once() {
    let dir = temp_dir("recovering");
    std::fs::write(dir.join("audit.key"), KEY).unwrap();
    let fifo = dir.join("audit.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // The first reader takes three lines and goes: from then on every
    // write to the pipe fails (EPIPE), until a reader opens it again.
    let first = read_lines_then_close(fifo.clone(), 3);
    let (grpc, admin) = (free_port(), free_port());
    // Far past the test's length: the lines wait for the sink, never for
    // the fallback.
    let child = gateway_with_env(
        grpc,
        admin,
        &[
            "--audit-log",
            &fifo.display().to_string(),
            "--audit-hmac-key-file",
            &dir.join("audit.key").display().to_string(),
        ],
        &[("COGNITO_GATEWAY_AUDIT_FALLBACK_AFTER", "1h".to_owned())],
    );
    let mut client = CognitoIdentityServiceClient::new(support::binary::connect(grpc).await);
    let mut served = Vec::new();
    let mut refusals = 0;
    for _ in 0..3 {
        let user = format!("secret-user-{}-7c3e", served.len());
        assert_eq!(
            developer_code_for(&mut client, &user).await.code(),
            Code::Ok
        );
        served.push(user);
    }
    let mut read = first.join().unwrap();
    // The reader is gone: calls are served until the writer has tried the
    // pipe and failed, then refused; the lines of those served wait.
    loop {
        let user = format!("secret-user-{}-7c3e", served.len());
        let status = developer_code_for(&mut client, &user).await;
        if status.code() != Code::Ok {
            assert_audit_unavailable(&status);
            refusals += 1;
            break;
        }
        served.push(user);
        assert!(served.len() < 1_000, "never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served.len() > 3, "a call served while the sink failed");
    for _ in 0..2 {
        assert_audit_unavailable(&developer_code(&mut client).await);
        refusals += 1;
    }
    assert_eq!(
        metric(admin, "gateway_audit_lines_dropped_total").await,
        0.0
    );
    // A reader again: the writer's retries reach it, and calls are served.
    let second = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        std::fs::File::open(fifo)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .unwrap();
        bytes
    });
    let start = Instant::now();
    loop {
        let user = format!("secret-user-{}-7c3e", served.len());
        let status = developer_code_for(&mut client, &user).await;
        if status.code() == Code::Ok {
            served.push(user);
            break;
        }
        assert_audit_unavailable(&status);
        refusals += 1;
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never served again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        metric(admin, "gateway_audit_lines_dropped_total").await,
        0.0
    );
    assert_eq!(
        metric(admin, "gateway_audit_lines_fallback_total").await,
        0.0
    );
    // The writer closes the pipe when the process exits: the second
    // reader has read all there was.
    let log = child.stop();
    read.extend(second.join().unwrap());
    let text = String::from_utf8(read).unwrap();
    // Every served call's line once, every refusal's once, none torn.
    let (lines, refused) = served_and_refused(text.lines());
    assert_eq!(lines, hashes(&served), "{text}");
    assert_eq!(refused, refusals, "{text}");
    assert!(!log.contains("audit-fallback"), "{log}");
}

#[tokio::test]
async fn a_sink_that_blocks_never_holds_a_call() {
    let dir = temp_dir("blocking");
    std::fs::write(dir.join("audit.key"), KEY).unwrap();
    let fifo = dir.join("audit.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // The reader opens the pipe and never reads: once the pipe's buffer is
    // full, every write blocks, as a stuck socket sink would.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::File::open(fifo).unwrap())
    };
    let (grpc, admin) = (free_port(), free_port());
    let child = gateway(
        grpc,
        admin,
        &[
            "--audit-log",
            &fifo.display().to_string(),
            "--audit-hmac-key-file",
            &dir.join("audit.key").display().to_string(),
            "--audit-queue-capacity",
            "8",
        ],
    );
    let _held_open = reader.join().unwrap();
    let mut client = CognitoIdentityServiceClient::new(support::binary::connect(grpc).await);
    let mut served = 0;
    // Calls until one is refused; then, once the writer has had time to
    // put what the pipe still takes into it, until one is refused again
    // right after the pause: by then the pipe is full and the writer
    // stuck, not merely behind.
    let refused = loop {
        let status = developer_code(&mut client).await;
        if status.code() == Code::Ok {
            served += 1;
            assert!(served < 5_000, "the queue never filled");
            continue;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let again = developer_code(&mut client).await;
        if again.code() != Code::Ok {
            break again;
        }
        served += 1;
    };
    assert_audit_unavailable(&refused);
    // Still refused, still at once, while the sink stays blocked.
    for _ in 0..20 {
        assert_audit_unavailable(&developer_code(&mut client).await);
    }
    client
        .get_id(support::get_id(DEFAULT_POOL_ID))
        .await
        .unwrap();
    assert!(metric(admin, "gateway_audit_refusals_total").await >= 21.0);
    child.stop();
}
