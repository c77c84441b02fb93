//! The server around the API: health checking, reflection, bad requests,
//! upstream failures, deadlines, load shedding and graceful shutdown. The
//! upstream is the emulator (with injected faults), a refused port, or a
//! hung connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cognito_identity_gateway::cache::{CacheSettings, Clock};
use cognito_identity_gateway::emulator::{
    DEFAULT_DEVELOPER_PROVIDER, DEFAULT_POOL_ID, OperationFaults,
};
use cognito_identity_gateway::grpc::GrpcApi;
use cognito_identity_gateway::grpc::status::GATEWAY_DOMAIN;
use cognito_identity_gateway::proto as pb;
use cognito_identity_gateway::server::ServerSettings;
use cognito_identity_gateway::server::one_write::OneWrite;
use cognito_identity_gateway::service::Gateway;
use cognito_identity_gateway::upstream::UpstreamSettings;
use support::faults::{SilentEndpoint, silent_endpoint};
use support::{
    TestGateway, emulator_upstream, get_id, moto_endpoint, refused_endpoint, sdk_upstream,
    sdk_upstream_with, set_faults, start_emulator, upstream_settings,
};

/// Latency injected where a test must act while a call is in flight.
const SLOW: Duration = Duration::from_millis(600);
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

const SERVICE: &str = "cognito_identity_gateway.v1.CognitoIdentityService";
const POOL: &str = "us-east-1:11111111-2222-3333-4444-555555555555";

async fn health_of(gateway: &TestGateway, service: &str) -> ServingStatus {
    let mut health = HealthClient::new(gateway.channel().await);
    let status = health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    ServingStatus::try_from(status).unwrap()
}

#[tokio::test]
async fn health_overall_and_per_service() {
    let gateway = TestGateway::start(sdk_upstream(&refused_endpoint().await).await).await;
    assert_eq!(health_of(&gateway, "").await, ServingStatus::Serving);
    assert_eq!(health_of(&gateway, SERVICE).await, ServingStatus::Serving);
    let mut health = HealthClient::new(gateway.channel().await);
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    gateway.stop().await;
}

/// A health watch is a stream that pauses after each message: the reply's
/// one-write connection must send that message at once, not hold it for
/// trailers that do not come.
#[tokio::test]
async fn a_health_watch_gets_its_first_message_at_once() {
    let gateway = TestGateway::start(sdk_upstream(&refused_endpoint().await).await).await;
    let mut health = HealthClient::new(gateway.channel().await);
    let mut watch = tokio::time::timeout(
        Duration::from_secs(2),
        health.watch(HealthCheckRequest {
            service: SERVICE.into(),
        }),
    )
    .await
    .expect("the watch is answered")
    .unwrap()
    .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(2), watch.message())
        .await
        .expect("the first message arrives without waiting for more")
        .unwrap()
        .unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    // A watch never ends by itself: end it, or shutdown waits its grace.
    drop((watch, health));
    gateway.stop().await;
}

/// Calls `path` with an empty message, as a client with stale stubs would.
async fn call_path(gateway: &TestGateway, path: &'static str) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(gateway.channel().await);
    grpc.ready().await.unwrap();
    grpc.unary::<_, pb::GetIdResponse, _>(
        tonic::Request::new(pb::GetIdRequest::default()),
        http::uri::PathAndQuery::from_static(path),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn unknown_methods_and_services_are_unimplemented() {
    // The API's paths go straight to the API, the others through tonic's
    // router: both answer an unknown path the same way.
    let gateway = TestGateway::start(sdk_upstream(&refused_endpoint().await).await).await;
    for path in [
        "/cognito_identity_gateway.v1.CognitoIdentityService/NoSuchMethod",
        "/cognito_identity_gateway.v1.CognitoIdentityService/",
        "/no.such.Service/GetId",
        "/grpc.health.v1.Health/NoSuchMethod",
    ] {
        let status = call_path(&gateway, path).await;
        assert_eq!(status.code(), Code::Unimplemented, "{path}: {status:?}");
    }
    gateway.stop().await;
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_service() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::{v1, v1alpha};

    let gateway = TestGateway::start(sdk_upstream(&refused_endpoint().await).await).await;

    let mut v1_client =
        v1::server_reflection_client::ServerReflectionClient::new(gateway.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut replies = v1_client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.next().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        reply.message_response
    else {
        panic!("not a service list: {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&SERVICE.to_owned()), "{names:?}");
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );

    let mut alpha_client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(gateway.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                SERVICE.into(),
            ),
        ),
    };
    let mut replies = alpha_client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.next().await.unwrap().unwrap();
    assert!(
        matches!(
            reply.message_response,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref f))
                if !f.file_descriptor_proto.is_empty()
        ),
        "{reply:?}"
    );
    gateway.stop().await;
}

/// The fields a status's BadRequest names.
fn bad_fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("BadRequest detail")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// Bad requests are refused at the edge: the upstream here refuses
/// connections, so any call that reached it would be UNAVAILABLE instead.
#[tokio::test]
async fn bad_requests_are_refused_before_any_upstream_call() {
    let gateway = TestGateway::start(sdk_upstream(&refused_endpoint().await).await).await;
    let mut client = gateway.client().await;
    let secret = "very-secret-login-token";

    let err = client
        .get_id(pb::GetIdRequest {
            identity_pool_id: "not-a-pool".into(),
            account_id: "12ab".into(),
            logins: HashMap::from([("x".repeat(129), secret.into())]),
        })
        .await
        .unwrap_err();
    assert_eq!(
        bad_fields(&err),
        ["identity_pool_id", "account_id", "logins"]
    );
    assert!(!err.message().contains(secret));

    let err = client
        .get_open_id_token(pb::GetOpenIdTokenRequest::default())
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["identity_id"]);
    assert!(
        err.message().contains("identity_id: is required"),
        "{}",
        err.message()
    );

    let err = client
        .get_open_id_token_for_developer_identity(pb::GetOpenIdTokenForDeveloperIdentityRequest {
            identity_pool_id: POOL.into(),
            identity_id: "us-east-1:NOT-HEX".into(),
            logins: HashMap::new(),
            principal_tags: (0..51).map(|i| (format!("k{i}"), "v".into())).collect(),
            token_duration_seconds: Some(86_401),
        })
        .await
        .unwrap_err();
    assert_eq!(
        bad_fields(&err),
        [
            "identity_id",
            "logins",
            "principal_tags",
            "token_duration_seconds"
        ]
    );

    let err = client
        .get_credentials_for_identity(pb::GetCredentialsForIdentityRequest {
            identity_id: POOL.into(),
            logins: (0..11).map(|i| (format!("p{i}"), secret.into())).collect(),
            custom_role_arn: "arn:too-short".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["logins", "custom_role_arn"]);
    assert!(!format!("{err:?}").contains(secret));

    // A valid request does reach the (refusing) upstream.
    let err = client.get_id(get_id(POOL)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let info = err.get_details_error_info().unwrap();
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("UPSTREAM_UNREACHABLE", GATEWAY_DOMAIN)
    );
    gateway.stop().await;
}

/// moto answers GetId for an unknown pool with an HTML 500 page: a real
/// upstream fault of the kind a proxy also produces.
#[tokio::test]
async fn an_unreadable_5xx_is_unavailable_and_shows_no_body() {
    let endpoint = moto_endpoint();
    let gateway = TestGateway::start(sdk_upstream(&endpoint).await).await;
    let mut client = gateway.client().await;
    let err = client
        .get_id(get_id("us-east-1:00000000-0000-0000-0000-000000000000"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let info = err.get_details_error_info().expect("ErrorInfo");
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("UPSTREAM_BAD_RESPONSE", GATEWAY_DOMAIN)
    );
    assert_eq!(info.metadata["retryable"], "true");
    assert!(err.message().contains("HTTP 500"), "{}", err.message());
    // The raw response (which, for a success, would hold a token) stays out.
    assert!(!err.message().contains("doctype"), "{}", err.message());
    gateway.stop().await;
}

#[tokio::test]
async fn the_callers_deadline_bounds_the_upstream_call() {
    // The upstream never answers, and the SDK would wait 5 s for it; the
    // caller gives 300 ms. The gateway must drop the upstream call then,
    // which the hung upstream sees as its connection closing.
    let hung = SilentEndpoint::start().await;
    let settings = UpstreamSettings {
        operation_timeout: Duration::from_secs(5),
        attempt_timeout: Duration::from_secs(5),
        max_attempts: 1,
        ..upstream_settings(&hung.url)
    };
    let gateway = TestGateway::start(sdk_upstream_with(&settings).await).await;
    let mut client = gateway.client().await;
    let mut request = tonic::Request::new(get_id(POOL));
    request.set_timeout(Duration::from_millis(300));
    let err = client.get_id(request).await.unwrap_err();
    // The tonic client enforces the deadline too, and may give up first.
    assert!(
        matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{err:?}"
    );
    tokio::time::timeout(Duration::from_secs(3), hung.connection_closed())
        .await
        .expect("the upstream call outlived the caller's deadline");
    gateway.stop().await;
}

#[tokio::test]
async fn the_request_timeout_caps_calls_without_a_deadline() {
    let settings = ServerSettings {
        request_timeout: Duration::from_millis(300),
        ..ServerSettings::default()
    };
    let gateway =
        TestGateway::start_with(sdk_upstream(&silent_endpoint().await).await, settings).await;
    let mut client = gateway.client().await;
    let err = client.get_id(get_id(POOL)).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    // Mapped like every other error: the gateway's own reason, retryable.
    let info = err.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "DEADLINE_EXCEEDED");
    assert_eq!(info.domain, GATEWAY_DOMAIN);
    assert_eq!(
        info.metadata.get("retryable").map(String::as_str),
        Some("true")
    );
    gateway.stop().await;
}

#[tokio::test]
async fn calls_past_the_concurrency_limit_are_shed() {
    let settings = ServerSettings {
        concurrency_limit: 1,
        ..ServerSettings::default()
    };
    let (url, emulator) = start_emulator().await;
    set_faults(
        &emulator,
        "GetId",
        OperationFaults {
            latency_ms: SLOW.as_millis() as u64,
            ..Default::default()
        },
    );
    let gateway = TestGateway::start_with(emulator_upstream(&url).await, settings).await;
    let mut first = gateway.client().await;
    let mut second = gateway.client().await;
    let in_flight = tokio::spawn(async move { first.get_id(get_id(DEFAULT_POOL_ID)).await });
    // Let the first call take the only slot (it waits SLOW at the emulator).
    while emulator.calls("GetId") == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let shed = second.get_id(get_id(DEFAULT_POOL_ID)).await.unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    // A retry can cure it: the reason and when to retry.
    let info = shed.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "CONCURRENCY_LIMIT");
    assert_eq!(info.metadata["retryable"], "true");
    let retry = shed.get_details_retry_info().and_then(|r| r.retry_delay);
    assert_eq!(retry, Some(Duration::from_secs(1)));
    assert!(in_flight.await.unwrap().is_ok());
    assert_eq!(
        emulator.calls("GetId"),
        1,
        "the shed call never went upstream"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn shutdown_reports_not_serving_and_lets_in_flight_calls_finish() {
    let (url, emulator) = start_emulator().await;
    set_faults(
        &emulator,
        "GetId",
        OperationFaults {
            latency_ms: SLOW.as_millis() as u64,
            ..Default::default()
        },
    );
    let mut gateway = TestGateway::start(emulator_upstream(&url).await).await;
    let mut client = gateway.client().await;
    let mut health = HealthClient::new(gateway.channel().await);
    let in_flight = tokio::spawn(async move { client.get_id(get_id(DEFAULT_POOL_ID)).await });
    while emulator.calls("GetId") == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gateway.begin_shutdown();
    // Health on an open connection turns NOT_SERVING while the call drains.
    let mut status = ServingStatus::Serving;
    for _ in 0..50 {
        let reply = health
            .check(HealthCheckRequest {
                service: SERVICE.into(),
            })
            .await;
        match reply {
            Ok(r) => status = ServingStatus::try_from(r.into_inner().status).unwrap(),
            Err(_) => break,
        }
        if status == ServingStatus::NotServing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(status, ServingStatus::NotServing);
    let reply = in_flight.await.unwrap().expect("in-flight call completes");
    assert!(!reply.into_inner().identity_id.is_empty());
    let addr = gateway.addr;
    gateway.stop().await;
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn throttling_is_resource_exhausted_with_the_cognito_code() {
    let (url, emulator) = start_emulator().await;
    // One call passes, then one every 100 s.
    set_faults(
        &emulator,
        "GetId",
        OperationFaults {
            rate_limit: Some(0.01),
            ..Default::default()
        },
    );
    let gateway = TestGateway::start(emulator_upstream(&url).await).await;
    let mut client = gateway.client().await;
    client.get_id(get_id(DEFAULT_POOL_ID)).await.unwrap();
    let err = client.get_id(get_id(DEFAULT_POOL_ID)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let info = err.get_details_error_info().unwrap();
    assert_eq!(info.reason, "TooManyRequestsException");
    assert_eq!(info.metadata["retryable"], "true");
    gateway.stop().await;
}

#[tokio::test]
async fn internal_errors_are_retried_then_unavailable() {
    let (url, emulator) = start_emulator().await;
    set_faults(
        &emulator,
        "GetId",
        OperationFaults {
            error_rate: 1.0,
            ..Default::default()
        },
    );
    let gateway = TestGateway::start(emulator_upstream(&url).await).await;
    let mut client = gateway.client().await;
    let err = client.get_id(get_id(DEFAULT_POOL_ID)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(
        err.get_details_error_info().unwrap().reason,
        "InternalErrorException"
    );
    // upstream_settings allows 2 attempts: the SDK retried once.
    assert_eq!(emulator.calls("GetId"), 2);
    gateway.stop().await;
}

#[tokio::test]
async fn dropped_connections_are_unavailable() {
    let (url, emulator) = start_emulator().await;
    let faults = cognito_identity_gateway::emulator::FaultSettings {
        drop_connections: true,
        ..Default::default()
    };
    emulator.faults().set(faults).unwrap();
    let gateway = TestGateway::start(emulator_upstream(&url).await).await;
    let mut client = gateway.client().await;
    let err = client.get_id(get_id(DEFAULT_POOL_ID)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    gateway.stop().await;
}

#[tokio::test]
async fn the_grace_period_bounds_shutdown() {
    let settings = ServerSettings {
        shutdown_grace: Duration::from_millis(100),
        ..ServerSettings::default()
    };
    let gateway =
        TestGateway::start_with(sdk_upstream(&silent_endpoint().await).await, settings).await;
    let mut client = gateway.client().await;
    let stuck = tokio::spawn(async move { client.get_id(get_id(POOL)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // `run` returns although the call to the hung upstream never finishes.
    gateway.stop().await;
    assert!(stuck.await.unwrap().is_err());
}

/// A server connection in memory that counts the writes made to it, and
/// takes vectored writes as a TCP socket does.
struct CountingIo {
    inner: tokio::io::DuplexStream,
    writes: Arc<AtomicUsize>,
}

impl tokio::io::AsyncRead for CountingIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CountingIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        polled
    }
    /// Like a TCP socket: a gather write is one write.
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        self.as_mut().poll_write(cx, &joined)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for CountingIo {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

#[tokio::test]
async fn a_reply_with_a_token_leaves_in_one_write() {
    // hyper's h2 server writes a reply of more than 256 bytes in two writes
    // on a plain socket; on the gateway's connections, in one. Checked with
    // tonic's own server and h2 over an in-memory connection, so that an
    // upgrade that changes how h2 buffers shows here.
    let (url, _emulator) = start_emulator().await;
    let gateway = Arc::new(Gateway::new(
        emulator_upstream(&url).await,
        CacheSettings::default(),
        Clock::default(),
    ));
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let writes = Arc::new(AtomicUsize::new(0));
    let server_io = OneWrite::new(CountingIo {
        inner: server_io,
        writes: writes.clone(),
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(GrpcApi::new(gateway).into_server())
            .serve_with_incoming(tokio_stream::once(Ok::<_, std::io::Error>(server_io))),
    );
    let mut client_io = Some(client_io);
    let channel = tonic::transport::Endpoint::from_static("http://in-memory")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let io = client_io.take();
            async move {
                io.map(hyper_util::rt::TokioIo::new)
                    .ok_or_else(|| std::io::Error::other("one connection only"))
            }
        }))
        .await
        .unwrap();
    let mut client =
        pb::cognito_identity_service_client::CognitoIdentityServiceClient::new(channel);
    let request = || pb::GetOpenIdTokenForDeveloperIdentityRequest {
        identity_pool_id: DEFAULT_POOL_ID.into(),
        logins: HashMap::from([(DEFAULT_DEVELOPER_PROVIDER.into(), "one-write".into())]),
        ..Default::default()
    };
    // The first call fills the cache and settles the connection's setup.
    client
        .get_open_id_token_for_developer_identity(request())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = writes.load(Ordering::SeqCst);
    const CALLS: usize = 20;
    for _ in 0..CALLS {
        let reply = client
            .get_open_id_token_for_developer_identity(request())
            .await
            .unwrap()
            .into_inner();
        assert!(reply.token.len() > 256, "a reply h2 would chain");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let made = writes.load(Ordering::SeqCst) - before;
    // One per reply; a flow-control update may add one now and then.
    assert!(
        (CALLS..=CALLS + 2).contains(&made),
        "{made} writes for {CALLS} replies"
    );
}
