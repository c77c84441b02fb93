//! Telemetry as an operator sees it: the real binary, configured by the
//! standard OTEL_* environment, exporting to an in-process OTLP gRPC
//! collector (the trace service of opentelemetry-proto on 127.0.0.1:0),
//! and scraped on its admin listener. Also the check that no secret from
//! any request or response reaches the exported spans or the logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::binary::{self, Process};
use support::loopback::{free_port, http_get, series};
use support::otlp::Collector;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cognito_identity_gateway::emulator::{DEFAULT_DEVELOPER_PROVIDER, DEFAULT_POOL_ID};
use cognito_identity_gateway::proto as pb;
use cognito_identity_gateway::proto::cognito_identity_service_client::CognitoIdentityServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tonic::transport::Channel;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";
const SECRET_USER: &str = "secret-developer-user-7f3a";
const SECRET_TAG: &str = "secret-tag-value-91c2";
const SECRET_LOGIN: &str = "secret-login-token-5d8e";

/// The value of exactly the series `name` (labels included), 0 when absent.
fn metric(text: &str, name: &str) -> f64 {
    series(text, name)
        .find_map(|(rest, value)| rest.is_empty().then_some(value))
        .unwrap_or(0.0)
}

fn with_trace<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")
            .parse()
            .unwrap(),
    );
    request
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn str_attr<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attr(span, key)? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn int_attr(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key)? {
        Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

#[tokio::test]
async fn spans_metrics_and_logs() {
    let collector = Collector::default();
    let otlp_addr = collector.start().await;

    let (grpc_port, admin_port) = (free_port(), free_port());
    let gateway = Process::spawn(
        binary::command()
            .args(["--emulator", "--log-format", "json"])
            .args(["--listen", &format!("127.0.0.1:{grpc_port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .env("RUST_LOG", "debug")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp_addr}"))
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            .env("OTEL_SERVICE_NAME", "gateway-under-test")
            .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
            // Batches leave every 100 ms rather than every 5 s.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100"),
    );

    let mut client: CognitoIdentityServiceClient<Channel> =
        CognitoIdentityServiceClient::new(binary::connect(grpc_port).await);

    assert_eq!(http_get(admin_port, "/healthz").await.0, 200);
    assert_eq!(http_get(admin_port, "/readyz").await.0, 200);
    assert_eq!(
        http_get(admin_port, "/upstreamz").await,
        (200, "upstream reachable\n".to_owned())
    );
    let up = http_get(admin_port, "/metrics").await.1;
    assert_eq!(metric(&up, "gateway_upstream_up"), 1.0);
    let before = http_get(admin_port, "/metrics").await.1;

    let developer = || pb::GetOpenIdTokenForDeveloperIdentityRequest {
        identity_pool_id: DEFAULT_POOL_ID.into(),
        logins: HashMap::from([(DEFAULT_DEVELOPER_PROVIDER.into(), SECRET_USER.into())]),
        principal_tags: HashMap::from([("team".into(), SECRET_TAG.into())]),
        token_duration_seconds: Some(900),
        ..Default::default()
    };
    let first = client
        .get_open_id_token_for_developer_identity(with_trace(developer()))
        .await
        .unwrap()
        .into_inner();
    let second = client
        .get_open_id_token_for_developer_identity(with_trace(developer()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.token, second.token);
    let credentials = client
        .get_credentials_for_identity(with_trace(pb::GetCredentialsForIdentityRequest {
            identity_id: first.identity_id.clone(),
            logins: HashMap::from([("cognito-identity.amazonaws.com".into(), first.token.clone())]),
            custom_role_arn: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .credentials
        .unwrap();
    let invalid = client
        .get_id(with_trace(pb::GetIdRequest {
            identity_pool_id: "bad".into(),
            logins: HashMap::from([("graph.facebook.com".into(), SECRET_LOGIN.into())]),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    let not_found = client
        .get_id(with_trace(pb::GetIdRequest {
            identity_pool_id: "us-east-1:00000000-0000-0000-0000-000000000000".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(not_found.code(), tonic::Code::NotFound);

    // Metrics moved as the calls were made.
    let after = http_get(admin_port, "/metrics").await.1;
    let developer_ok = r#"grpc_server_handled_total{grpc_type="unary",grpc_service="cognito_identity_gateway.v1.CognitoIdentityService",grpc_method="GetOpenIdTokenForDeveloperIdentity",grpc_code="OK"}"#;
    assert_eq!(
        metric(&after, developer_ok) - metric(&before, developer_ok),
        2.0,
        "{after}"
    );
    assert_eq!(
        metric(
            &after,
            r#"grpc_server_handled_total{grpc_type="unary",grpc_service="cognito_identity_gateway.v1.CognitoIdentityService",grpc_method="GetId",grpc_code="INVALID_ARGUMENT"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            r#"grpc_server_handled_total{grpc_type="unary",grpc_service="cognito_identity_gateway.v1.CognitoIdentityService",grpc_method="GetId",grpc_code="NOT_FOUND"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            r#"cognito_upstream_calls_total{operation="GetOpenIdTokenForDeveloperIdentity",code="OK"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            r#"cognito_upstream_calls_total{operation="GetId",code="ResourceNotFoundException"}"#
        ),
        1.0
    );
    assert!(metric(&after, "gateway_cache_hits_total") >= 1.0, "{after}");
    assert!(
        metric(&after, "gateway_cache_misses_total") >= 2.0,
        "{after}"
    );
    assert!(metric(&after, "gateway_cache_entries") >= 1.0, "{after}");
    assert_eq!(
        metric(
            &after,
            r#"grpc_server_started_total{grpc_type="unary",grpc_service="cognito_identity_gateway.v1.CognitoIdentityService",grpc_method="GetId"}"#
        ),
        2.0
    );
    assert!(
        after.contains(
            r#"grpc_server_handling_seconds_count{grpc_type="unary",grpc_service="cognito_identity_gateway.v1.CognitoIdentityService",grpc_method="GetId",grpc_code="NOT_FOUND"} 1"#
        ),
        "{after}"
    );
    assert!(
        after.contains(
            r#"cognito_upstream_duration_seconds_count{operation="GetId",code="ResourceNotFoundException"} 1"#
        ),
        "{after}"
    );
    assert!(after.contains("gateway_build_info{version="));
    assert_eq!(metric(&after, "grpc_server_in_flight_requests"), 0.0);

    // The span counters: every ended span is exported within a few batches.
    let ended = metric(&after, "gateway_trace_spans_ended_total");
    assert!(ended >= 8.0, "a server span per call: {after}");
    let mut exported_ok = 0.0;
    for _ in 0..100 {
        let now = http_get(admin_port, "/metrics").await.1;
        exported_ok = metric(&now, r#"gateway_trace_spans_exported_total{outcome="ok"}"#);
        if exported_ok >= ended {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(exported_ok, ended, "spans ended but not exported");
    assert!(
        after
            .lines()
            .any(|l| l == "gateway_trace_spans_dropped_total 0"),
        "no span dropped: {after}"
    );

    // SIGTERM flushes the exporter before exit.
    let (status, logs) = gateway.terminated().await;
    assert_eq!(status.code(), Some(0), "{logs}");

    let exported = collector.requests.lock().unwrap().clone();
    let received: usize = exported
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    assert_eq!(
        received as f64, ended,
        "the collector got every span counted"
    );
    let resource_attrs = format!(
        "{:?}",
        exported.first().expect("spans exported").resource_spans[0].resource
    );
    assert!(
        resource_attrs.contains("gateway-under-test")
            && resource_attrs.contains("deployment.environment")
    );
    let spans: Vec<Span> = exported
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect();
    let named = |name: &str| -> Vec<&Span> { spans.iter().filter(|s| s.name == name).collect() };

    let servers = named(
        "cognito_identity_gateway.v1.CognitoIdentityService/GetOpenIdTokenForDeveloperIdentity",
    );
    assert_eq!(
        servers.len(),
        2,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for server in &servers {
        assert_eq!(hex::encode(&server.trace_id), TRACE_ID);
        assert_eq!(hex::encode(&server.parent_span_id), PARENT_SPAN_ID);
        assert_eq!(server.kind, SpanKind::Server as i32);
        assert_eq!(str_attr(server, "rpc.system"), Some("grpc"));
        assert_eq!(
            str_attr(server, "rpc.service"),
            Some("cognito_identity_gateway.v1.CognitoIdentityService")
        );
        assert_eq!(
            str_attr(server, "rpc.method"),
            Some("GetOpenIdTokenForDeveloperIdentity")
        );
        assert_eq!(int_attr(server, "rpc.grpc.status_code"), Some(0));
        assert_eq!(str_attr(server, "server.address"), Some("127.0.0.1"));
        assert_eq!(str_attr(server, "client.address"), Some("127.0.0.1"));
        assert_eq!(int_attr(server, "server.port"), Some(i64::from(grpc_port)));
    }
    let outcomes: Vec<_> = servers
        .iter()
        .map(|s| str_attr(s, "cache.outcome"))
        .collect();
    assert!(
        outcomes.contains(&Some("miss")) && outcomes.contains(&Some("hit")),
        "{outcomes:?}"
    );

    let clients = named("CognitoIdentity/GetOpenIdTokenForDeveloperIdentity");
    assert_eq!(clients.len(), 1, "one upstream call for two requests");
    let client_span = clients[0];
    let miss = servers
        .iter()
        .find(|s| str_attr(s, "cache.outcome") == Some("miss"))
        .unwrap();
    assert_eq!(client_span.parent_span_id, miss.span_id);
    assert_eq!(client_span.trace_id, miss.trace_id);
    assert_eq!(client_span.kind, SpanKind::Client as i32);
    assert_eq!(str_attr(client_span, "rpc.system"), Some("aws-api"));
    assert_eq!(
        str_attr(client_span, "rpc.service"),
        Some("CognitoIdentity")
    );
    assert_eq!(
        str_attr(client_span, "rpc.method"),
        Some("GetOpenIdTokenForDeveloperIdentity")
    );
    assert_eq!(str_attr(client_span, "cloud.region"), Some("us-east-1"));
    assert!(str_attr(client_span, "aws.request_id").is_some_and(|id| !id.is_empty()));
    assert_eq!(
        int_attr(client_span, "http.response.status_code"),
        Some(200)
    );

    let failed_server = named("cognito_identity_gateway.v1.CognitoIdentityService/GetId");
    let error_types: Vec<_> = failed_server
        .iter()
        .map(|s| str_attr(s, "error.type"))
        .collect();
    assert!(
        error_types.contains(&Some("INVALID_REQUEST")),
        "{error_types:?}"
    );
    assert!(
        error_types.contains(&Some("ResourceNotFoundException")),
        "{error_types:?}"
    );
    let failed_client = named("CognitoIdentity/GetId");
    assert_eq!(
        failed_client.len(),
        1,
        "the invalid request never went upstream"
    );
    assert_eq!(
        str_attr(failed_client[0], "error.type"),
        Some("ResourceNotFoundException")
    );
    assert_eq!(
        int_attr(failed_client[0], "http.response.status_code"),
        Some(404),
        "{:?}",
        failed_client[0].attributes
    );

    // No secret anywhere: not in spans, not in logs (at debug).
    let everything = format!("{exported:?}\n{logs}");
    for secret in [
        SECRET_USER,
        SECRET_TAG,
        SECRET_LOGIN,
        first.token.as_str(),
        credentials.access_key_id.as_str(),
        credentials.secret_key.as_str(),
        credentials.session_token.as_str(),
    ] {
        assert!(
            !everything.contains(secret),
            "a secret leaked: {secret:.12}…"
        );
    }
    // Logs are JSON lines, with the per-request debug line and the warning.
    assert!(
        logs.lines()
            .any(|l| l.contains("\"call finished\"") && l.contains("\"level\":\"DEBUG\""))
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("Cognito Identity call failed")
                && l.contains("ResourceNotFoundException"))
    );
}

/// Starts the binary with `env`, makes one traced developer-token call
/// through `--emulator`, stops it with SIGTERM, and returns its exit code.
async fn one_traced_call(env: &[(&str, String)]) -> Option<i32> {
    let grpc_port = free_port();
    let gateway = Process::spawn(
        binary::command()
            .args(["--emulator", "--admin-listen", "off"])
            .args(["--listen", &format!("127.0.0.1:{grpc_port}")])
            .envs(env.iter().map(|(k, v)| (k, v))),
    );
    CognitoIdentityServiceClient::new(binary::connect(grpc_port).await)
        .get_open_id_token_for_developer_identity(with_trace(
            pb::GetOpenIdTokenForDeveloperIdentityRequest {
                identity_pool_id: DEFAULT_POOL_ID.into(),
                logins: HashMap::from([(DEFAULT_DEVELOPER_PROVIDER.into(), "u".into())]),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    gateway.terminated().await.0.code()
}

/// An OTLP/HTTP collector: `POST /v1/traces` with a protobuf body. Returns
/// its base URL and the span names it received.
async fn http_collector() -> (String, Arc<Mutex<Vec<String>>>) {
    use prost::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let names = Arc::new(Mutex::new(Vec::new()));
    let received = names.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let received = received.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let received = received.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let path = req.uri().path().to_owned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            if path == "/v1/traces" {
                                let export = ExportTraceServiceRequest::decode(body).unwrap();
                                let mut names = received.lock().unwrap();
                                for span in export
                                    .resource_spans
                                    .iter()
                                    .flat_map(|r| &r.scope_spans)
                                    .flat_map(|s| &s.spans)
                                {
                                    names.push(span.name.clone());
                                }
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::new()),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, names)
}

#[tokio::test]
async fn otlp_over_http_protobuf_and_the_sampler_and_sdk_switches() {
    let (url, names) = http_collector().await;
    let base = |extra: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", url.clone()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env
    };
    assert_eq!(one_traced_call(&base(&[])).await, Some(0));
    let exported = names.lock().unwrap().clone();
    assert!(
        exported
            .iter()
            .any(|n| n == "CognitoIdentity/GetOpenIdTokenForDeveloperIdentity"),
        "{exported:?}"
    );

    names.lock().unwrap().clear();
    assert_eq!(
        one_traced_call(&base(&[("OTEL_TRACES_SAMPLER", "always_off")])).await,
        Some(0)
    );
    assert_eq!(
        one_traced_call(&base(&[("OTEL_SDK_DISABLED", "true")])).await,
        Some(0)
    );
    assert!(
        names.lock().unwrap().is_empty(),
        "{:?}",
        names.lock().unwrap()
    );
}

#[tokio::test]
async fn readiness_stays_local_while_the_upstream_cannot_be_reached() {
    let closed = free_port();
    let (grpc_port, admin_port) = (free_port(), free_port());
    let _gateway = Process::spawn(
        binary::command()
            .args(["--listen", &format!("127.0.0.1:{grpc_port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .args([
                "--endpoint-url",
                &format!("http://127.0.0.1:{closed}"),
                "--region",
                "us-east-1",
            ]),
    );
    let mut healthz = 0;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", admin_port))
            .await
            .is_ok()
        {
            healthz = http_get(admin_port, "/healthz").await.0;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(healthz, 200);
    // Ready: every replica shares the upstream, and an outage must not take
    // them all out of their Service (their caches could serve nothing).
    let (status, body) = http_get(admin_port, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (status, body) = http_get(admin_port, "/upstreamz").await;
    assert_eq!((status, body.as_str()), (503, "upstream unreachable\n"));
    let text = http_get(admin_port, "/metrics").await.1;
    assert_eq!(metric(&text, "gateway_upstream_up"), 0.0, "{text}");
}
