//! Hostile and broken clients, through real clients on loopback: request
//! bytes that are no message of their type, and a process out of file
//! descriptors with connections waiting to be accepted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use cognito_identity_gateway::emulator::DEFAULT_POOL_ID;
use cognito_identity_gateway::proto as pb;
use support::{TestGateway, emulator_upstream, start_emulator};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic_types::StatusExt;

/// A codec that sends the bytes it is given as the request message, and
/// reads a GetIdResponse back: a client with broken stubs.
#[derive(Default)]
struct RawCodec;

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

struct ReplyDecoder;

impl Decoder for ReplyDecoder {
    type Item = pb::GetIdResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        prost::Message::decode(bytes)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = pb::GetIdResponse;
    type Encoder = RawEncoder;
    type Decoder = ReplyDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ReplyDecoder {
        ReplyDecoder
    }
}

const GET_ID: &str = "/cognito_identity_gateway.v1.CognitoIdentityService/GetId";

#[tokio::test]
async fn malformed_request_bytes_are_invalid_argument_naming_the_field() {
    let _shared = MACHINE.read().await;
    let (url, emulator) = start_emulator().await;
    let gateway = TestGateway::start(emulator_upstream(&url).await).await;
    let channel = gateway.channel().await;
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    let mut call = async |bytes: &'static [u8]| {
        grpc.ready().await.unwrap();
        grpc.unary(
            tonic::Request::new(Bytes::from_static(bytes)),
            http::uri::PathAndQuery::from_static(GET_ID),
            RawCodec,
        )
        .await
    };
    // identity_pool_id (field 1) holding two bytes that are not UTF-8.
    let err = call(&[0x0a, 0x02, 0xc3, 0x28]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        err.get_details_error_info().unwrap().reason,
        "MALFORMED_REQUEST"
    );
    let fields: Vec<String> = err
        .get_details_bad_request()
        .expect("a BadRequest")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["identity_pool_id"]);
    // Bytes that are no message at all: a plain message, no field.
    let err = call(&[0xff, 0xff, 0xff]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().starts_with("malformed request"), "{err:?}");
    // Nothing went upstream, and the connection still serves.
    assert_eq!(emulator.calls("GetId"), 0);
    let mut client =
        pb::cognito_identity_service_client::CognitoIdentityServiceClient::new(channel);
    client
        .get_id(support::get_id(DEFAULT_POOL_ID))
        .await
        .unwrap();
    gateway.stop().await;
}

/// User and system CPU ticks of process `pid` so far.
/// Sends the gateway SIGTERM and waits for it to exit: its exit status and
/// its log.
fn terminate(
    mut child: std::process::Child,
    log: std::thread::JoinHandle<String>,
) -> (std::process::ExitStatus, String) {
    support::binary::signal(&child, "TERM");
    let status = child.wait().unwrap();
    (status, log.join().unwrap())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15: 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn out_of_file_descriptors_the_accept_loops_pause_and_stay_quiet() {
    let _alone = MACHINE.write().await;
    let (port, admin) = (
        support::loopback::free_port(),
        support::loopback::free_port(),
    );
    // 64 descriptors: the runtime, the embedded emulator and a few
    // connections take them all.
    let script = format!(
        "ulimit -n 64 && exec {} --emulator --listen 127.0.0.1:{port} --admin-listen 127.0.0.1:{admin}",
        env!("CARGO_BIN_EXE_cognito-identity-gateway")
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = support::binary::collect_stderr(&mut child);
    let channel = support::binary::connect(port).await;
    let hot = support::developer("hot", 900);
    pb::cognito_identity_service_client::CognitoIdentityServiceClient::new(channel)
        .get_open_id_token_for_developer_identity(hot.clone())
        .await
        .unwrap();
    // A client connected before the descriptors run out.
    let probe = Probe::start(port, hot);
    // More connections than the process has descriptors left for.
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    // And one for the admin listener, which cannot take it either.
    let mut admin_conn = tokio::net::TcpStream::connect(("127.0.0.1", admin))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut admin_conn,
        b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (before, started) = (cpu_ticks(child.id()), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = (cpu_ticks(child.id()) - before) as f64 / 100.0;
    let share = used / started.elapsed().as_secs_f64();
    let (hit, checked, probes) = probe.stop();
    drop((held, admin_conn));
    let (status, log) = terminate(child, log);
    let complaints = log.lines().filter(|l| l.contains("cannot accept")).count();
    println!(
        "out of descriptors: {:.1} % of a core over 3 s; {complaints} log lines; \
         the slowest of {probes} cache hits {hit:?}, of health checks {checked:?}",
        share * 100.0
    );
    assert!(hit < Duration::from_millis(50), "{hit:?}");
    assert!(checked < Duration::from_millis(50), "{checked:?}");
    assert!(share < 0.30, "{:.1} % of a core", share * 100.0);
    assert!(complaints >= 1, "the condition is logged: {log}");
    assert!(complaints <= 10, "at most once a second a listener: {log}");
    assert_eq!(status.code(), Some(0), "{log}");
}

#[tokio::test]
async fn a_connection_that_never_sends_its_preface_is_closed_after_the_handshake_timeout() {
    let _shared = MACHINE.read().await;
    let (url, _emulator) = start_emulator().await;
    let settings = cognito_identity_gateway::server::ServerSettings {
        handshake_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let gateway = TestGateway::start_with(emulator_upstream(&url).await, settings).await;
    let mut silent = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    // The server may send its SETTINGS first; it then closes the connection.
    let took = until_closed(&mut silent).await;
    println!("a silent connection was closed after {took:?}");
    assert!(took >= Duration::from_millis(450), "{took:?}");
    // A client that speaks is served as before.
    let mut client = gateway.client().await;
    client
        .get_id(support::get_id(DEFAULT_POOL_ID))
        .await
        .unwrap();
    gateway.stop().await;
}

#[tokio::test]
async fn requests_past_the_largest_valid_one_are_refused_unread() {
    let _shared = MACHINE.read().await;
    use cognito_identity_gateway::domain::validate::LARGEST_REQUEST_BYTES;
    use cognito_identity_gateway::server::MAX_REQUEST_BYTES;
    use prost::Message;
    // The largest valid request, in ASCII, fits the computed bound.
    let largest = pb::GetOpenIdTokenForDeveloperIdentityRequest {
        identity_pool_id: "x".repeat(55),
        identity_id: "x".repeat(55),
        logins: (0..10)
            .map(|i| (format!("{i:0>128}"), "t".repeat(50_000)))
            .collect(),
        principal_tags: (0..50)
            .map(|i| (format!("{i:0>128}"), "v".repeat(256)))
            .collect(),
        token_duration_seconds: Some(86_400),
    };
    let len = largest.encoded_len();
    assert!(
        len <= LARGEST_REQUEST_BYTES,
        "{len} > {LARGEST_REQUEST_BYTES}"
    );
    assert!(
        len * 100 >= LARGEST_REQUEST_BYTES * 99,
        "{len}: the bound is tight"
    );
    let (url, emulator) = start_emulator().await;
    let gateway = TestGateway::start(emulator_upstream(&url).await).await;
    let mut grpc = tonic::client::Grpc::new(gateway.channel().await);
    grpc.ready().await.unwrap();
    let too_long = Bytes::from(vec![0u8; MAX_REQUEST_BYTES + 1]);
    let err = grpc
        .unary(
            tonic::Request::new(too_long),
            http::uri::PathAndQuery::from_static(GET_ID),
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        err.get_details_error_info().unwrap().reason,
        "REQUEST_TOO_LARGE"
    );
    assert!(
        err.message().contains(&MAX_REQUEST_BYTES.to_string()),
        "{err:?}"
    );
    assert_eq!(emulator.calls("GetId"), 0);
    gateway.stop().await;
}

#[tokio::test]
async fn sigterm_with_idle_connections_open_exits_at_once() {
    let _shared = MACHINE.read().await;
    let port = support::loopback::free_port();
    let listen = format!("127.0.0.1:{port}");
    let (mut child, log) = support::binary::gateway(
        &["--emulator", "--listen", &listen, "--admin-listen", "off"],
        &[],
    );
    let channel = support::binary::connect(port).await;
    // One connection that made a call and is now idle, one that never
    // said anything.
    let mut client =
        pb::cognito_identity_service_client::CognitoIdentityServiceClient::new(channel);
    client
        .get_id(support::get_id(DEFAULT_POOL_ID))
        .await
        .unwrap();
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    support::binary::signal(&child, "TERM");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let took = signalled.elapsed();
    let log = log.join().unwrap();
    println!("SIGTERM with an idle and a silent connection open: exited after {took:?}");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(took < Duration::from_secs(2), "{took:?}: {log}");
    assert!(!log.contains("abandoning"), "{log}");
}

#[tokio::test]
async fn the_stream_limit_is_advertised_in_settings() {
    let _shared = MACHINE.read().await;
    let (url, _emulator) = start_emulator().await;
    let settings = cognito_identity_gateway::server::ServerSettings {
        max_concurrent_streams: 16,
        ..Default::default()
    };
    let gateway = TestGateway::start_with(emulator_upstream(&url).await, settings).await;
    // A raw HTTP/2 client (the h2 crate) reads the server's SETTINGS.
    let tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let (_h2, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let started = Instant::now();
    while connection.max_concurrent_send_streams() != 16
        && started.elapsed() < Duration::from_secs(5)
    {
        // Drive the connection until the server's SETTINGS are read.
        let _ = tokio::time::timeout(Duration::from_millis(20), &mut connection).await;
    }
    assert_eq!(connection.max_concurrent_send_streams(), 16);
    drop(connection);
    gateway.stop().await;
}

#[tokio::test]
async fn streams_that_never_finish_their_message_hold_no_slot() {
    let _alone = MACHINE.write().await;
    let (url, _emulator) = start_emulator().await;
    let settings = cognito_identity_gateway::server::ServerSettings {
        concurrency_limit: 64,
        request_body_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let gateway = TestGateway::start_with(emulator_upstream(&url).await, settings).await;
    let mut client = gateway.client().await;
    let hot = support::developer("hot", 900);
    client
        .get_open_id_token_for_developer_identity(hot.clone())
        .await
        .unwrap();
    // Two connections of 100 streams each, each stream sending the 5-byte
    // prefix of a message and nothing more: three times the limit.
    let mut stalled = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
        let (mut h2, connection) = h2::client::handshake(tcp).await.unwrap();
        connections.push(tokio::spawn(connection));
        for _ in 0..100 {
            h2 = h2.ready().await.unwrap();
            let request = http::Request::post(format!("http://x{GET_ID}"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .unwrap();
            let (response, mut stream) = h2.send_request(request, false).unwrap();
            stream
                .send_data(Bytes::from_static(&[0, 0, 0, 0, 100]), false)
                .unwrap();
            stalled.push((response, stream));
        }
    }
    // Meanwhile a cache hit and a health check on another connection.
    let probe = Probe::start(gateway.addr.port(), hot);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (hit, checked, probes) = probe.stop();
    println!(
        "with 200 stalled streams: the slowest of {probes} cache hits {hit:?}, of health checks {checked:?}"
    );
    assert!(hit < Duration::from_millis(50), "{hit:?}");
    assert!(checked < Duration::from_millis(50), "{checked:?}");
    // The stalled streams end with REQUEST_BODY_TIMEOUT.
    let (response, _stream) = stalled.pop().unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("answered within the body timeout")
        .unwrap();
    let grpc_status = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        grpc_status.as_deref(),
        Some("4"),
        "DEADLINE_EXCEEDED: {response:?}"
    );
    drop(stalled);
    for connection in connections {
        connection.abort();
    }
    gateway.stop().await;
}

#[tokio::test]
async fn admin_connections_half_sent_or_idle_are_closed_after_the_header_timeout() {
    let _shared = MACHINE.read().await;
    use tokio::io::AsyncWriteExt;
    let (url, _emulator) = start_emulator().await;
    let settings = cognito_identity_gateway::server::ServerSettings {
        admin_header_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let gateway = cognito_identity_gateway::service::Gateway::new(
        emulator_upstream(&url).await,
        cognito_identity_gateway::cache::CacheSettings::default(),
        cognito_identity_gateway::clock::Clock::default(),
    );
    let gateway = TestGateway::serve_with_admin(std::sync::Arc::new(gateway), settings).await;
    let admin = ("127.0.0.1", gateway.admin.unwrap());
    // Half a request's head.
    let mut half = tokio::net::TcpStream::connect(admin).await.unwrap();
    half.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let took = until_closed(&mut half).await;
    println!("a half-sent admin request was closed after {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // A whole request, answered, then nothing.
    let mut idle = tokio::net::TcpStream::connect(admin).await.unwrap();
    idle.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let took = until_closed(&mut idle).await;
    println!("an idle kept-alive admin connection was closed after {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    gateway.stop().await;
}

/// Reads until the server closes the connection (5 s at most); how long
/// it took.
async fn until_closed(stream: &mut tokio::net::TcpStream) -> Duration {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    assert!(closed.is_ok(), "still open after 5 s");
    started.elapsed()
}

/// The machine: tests that time the gateway's answers hold it alone (write),
/// the others share it (read), so that no other test of this file loads
/// the two cores while one is timing.
static MACHINE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A client on a thread and a connection of its own that, until stopped,
/// asks the gateway on 127.0.0.1:`port` for `hot` (a cache hit) and for
/// its health every 100 ms, and keeps the slowest answers.
struct Probe {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<(Duration, Duration, usize)>,
}

impl Probe {
    fn start(port: u16, hot: pb::GetOpenIdTokenForDeveloperIdentityRequest) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let channel = support::binary::connect(port).await;
                let mut client =
                    pb::cognito_identity_service_client::CognitoIdentityServiceClient::new(
                        channel.clone(),
                    );
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                ready_tx.send(()).unwrap();
                let (mut hit, mut check, mut probes) = (Duration::ZERO, Duration::ZERO, 0);
                while stopped.try_recv().is_err() {
                    let asked = Instant::now();
                    client
                        .get_open_id_token_for_developer_identity(hot.clone())
                        .await
                        .expect("a cache hit is served");
                    hit = hit.max(asked.elapsed());
                    let asked = Instant::now();
                    let status = health
                        .check(tonic_health::pb::HealthCheckRequest::default())
                        .await
                        .expect("health is answered")
                        .into_inner()
                        .status;
                    check = check.max(asked.elapsed());
                    assert_eq!(status, 1, "SERVING");
                    probes += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                (hit, check, probes)
            })
        });
        ready.recv().expect("the probe connects");
        Self { stop, thread }
    }

    /// The slowest cache hit, the slowest health check, and how many of
    /// each were asked for.
    fn stop(self) -> (Duration, Duration, usize) {
        let _ = self.stop.send(());
        self.thread.join().expect("the probe ran")
    }
}

/// A gRPC call's stream on a raw HTTP/2 connection (the h2 crate): a
/// client that does as it likes with its streams.
fn grpc_stream(
    h2: &mut h2::client::SendRequest<Bytes>,
    path: &str,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let request = http::Request::post(format!("http://x{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    h2.send_request(request, false).unwrap()
}

/// `message` behind its gRPC prefix.
fn framed(message: &[u8]) -> Bytes {
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(message);
    framed.into()
}

/// The grpc-status a call's response ends with, trailers-only or after
/// its messages; `None` when its stream was reset instead.
async fn grpc_status(response: h2::client::ResponseFuture) -> Option<String> {
    let response = response.await.ok()?;
    if let Some(status) = response.headers().get("grpc-status") {
        return Some(status.to_str().unwrap().to_owned());
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.ok()?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.ok()??;
    Some(trailers.get("grpc-status")?.to_str().unwrap().to_owned())
}

/// A raw HTTP/2 connection to `addr`, driven on a task of its own.
async fn raw_connection(
    addr: std::net::SocketAddr,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    (h2, tokio::spawn(connection))
}

const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

#[tokio::test]
async fn a_connection_with_no_call_in_flight_is_closed_after_the_idle_timeout() {
    let _shared = MACHINE.read().await;
    let (url, _emulator) = start_emulator().await;
    let settings = cognito_identity_gateway::server::ServerSettings {
        idle_timeout: Duration::from_millis(500),
        request_body_timeout: Duration::from_millis(1500),
        ..Default::default()
    };
    let gateway = TestGateway::start_with(emulator_upstream(&url).await, settings).await;

    // A call, then nothing: closed the idle timeout after the call ended.
    let (mut h2, connection) = raw_connection(gateway.addr).await;
    let (response, mut stream) = grpc_stream(&mut h2, HEALTH_CHECK);
    stream.send_data(framed(&[]), true).unwrap();
    assert_eq!(grpc_status(response).await.as_deref(), Some("0"));
    let answered = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("closed within 5 s")
        .unwrap()
        .expect("a clean close");
    let idle = answered.elapsed();
    println!("an idle connection was closed {idle:?} after its last call");
    assert!(idle >= Duration::from_millis(450), "{idle:?}");

    // A call in flight keeps its connection open past the idle timeout:
    // a stream whose message never comes is answered at the body timeout
    // (1.5 s), and only then does the idle timeout start.
    let (mut h2, connection) = raw_connection(gateway.addr).await;
    let (response, mut stream) = grpc_stream(&mut h2, GET_ID);
    stream
        .send_data(Bytes::from_static(&[0, 0, 0, 0, 9]), false)
        .unwrap();
    let opened = Instant::now();
    assert_eq!(grpc_status(response).await.as_deref(), Some("4"));
    let answered = opened.elapsed();
    assert!(answered >= Duration::from_millis(1400), "{answered:?}");
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("closed within 5 s")
        .unwrap()
        .expect("a clean close");
    let open = opened.elapsed();
    println!("a connection with a call in flight for {answered:?} was closed after {open:?}");
    assert!(open >= answered + Duration::from_millis(450), "{open:?}");

    // A health Watch is a call in flight for as long as it streams.
    let mut health = tonic_health::pb::health_client::HealthClient::new(gateway.channel().await);
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status, 1);
    let quiet = tokio::time::timeout(Duration::from_millis(1500), watch.message()).await;
    assert!(quiet.is_err(), "the watch ended early: {quiet:?}");
    gateway.stop().await;
}

#[tokio::test]
async fn a_stream_that_breaks_leaves_the_other_calls_on_its_connection_alone() {
    let _shared = MACHINE.read().await;
    use cognito_identity_gateway::server::MAX_REQUEST_BYTES;
    let (url, _emulator) = start_emulator().await;
    let gateway = TestGateway::start(emulator_upstream(&url).await).await;
    let (mut h2, connection) = raw_connection(gateway.addr).await;
    // Opened first, answered last: a health check whose message is sent
    // once the others have broken.
    let (survivor, mut survivor_stream) = grpc_stream(&mut h2, HEALTH_CHECK);
    // Bytes that are no GetIdRequest.
    let (malformed, mut stream) = grpc_stream(&mut h2, GET_ID);
    stream.send_data(framed(&[0xff, 0xff, 0xff]), true).unwrap();
    // A message longer than any valid request.
    let (too_long, mut stream) = grpc_stream(&mut h2, GET_ID);
    let prefix = u32::try_from(MAX_REQUEST_BYTES + 1).unwrap().to_be_bytes();
    stream
        .send_data(
            Bytes::from(vec![0, prefix[0], prefix[1], prefix[2], prefix[3]]),
            false,
        )
        .unwrap();
    // Half a message, then the client resets the stream.
    let (reset, mut stream) = grpc_stream(&mut h2, GET_ID);
    stream
        .send_data(Bytes::from_static(&[0, 0, 0, 0, 50, 10]), false)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.send_reset(h2::Reason::CANCEL);
    assert_eq!(grpc_status(malformed).await.as_deref(), Some("3"));
    assert_eq!(grpc_status(too_long).await.as_deref(), Some("3"));
    assert_eq!(grpc_status(reset).await, None);
    // The connection and its first call are untouched.
    survivor_stream.send_data(framed(&[]), true).unwrap();
    assert_eq!(grpc_status(survivor).await.as_deref(), Some("0"));
    let (response, mut stream) = grpc_stream(&mut h2, HEALTH_CHECK);
    stream.send_data(framed(&[]), true).unwrap();
    assert_eq!(grpc_status(response).await.as_deref(), Some("0"));
    assert!(!connection.is_finished());
    connection.abort();
    gateway.stop().await;
}

/// The resident set of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// The RSS the gateway stays under while every attack of this file runs
/// against it, with its default limits (README, "Broken and hostile
/// clients").
const RSS_BOUND: u64 = 256 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_largest_messages_on_every_stream_stay_within_the_memory_bound() {
    let _alone = MACHINE.write().await;
    use cognito_identity_gateway::server::MAX_REQUEST_BYTES;
    let port = support::loopback::free_port();
    let listen = format!("127.0.0.1:{port}");
    let (child, log) = support::binary::gateway(
        &[
            "--emulator",
            "--listen",
            &listen,
            "--admin-listen",
            "off",
            "--request-body-timeout",
            "3s",
        ],
        &[],
    );
    let pid = child.id();
    let channel = support::binary::connect(port).await;
    let mut client =
        pb::cognito_identity_service_client::CognitoIdentityServiceClient::new(channel);
    let hot = support::developer("hot", 900);
    client
        .get_open_id_token_for_developer_identity(hot.clone())
        .await
        .unwrap();
    let before = rss(pid);

    // 8 connections of 128 streams, each declaring a message of the
    // largest size decoded and sending all of it but its last byte:
    // 1.1 GiB, were it all held.
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let mut prefixed = vec![0u8];
    prefixed.extend_from_slice(&u32::try_from(MAX_REQUEST_BYTES).unwrap().to_be_bytes());
    prefixed.resize(5 + MAX_REQUEST_BYTES - 1, b'x');
    let almost = Bytes::from(prefixed);
    let mut attackers = Vec::new();
    for _ in 0..8 {
        let almost = almost.clone();
        attackers.push(tokio::spawn(async move {
            let (mut h2, connection) = raw_connection(addr).await;
            let mut answers = Vec::new();
            let mut streams = Vec::new();
            for _ in 0..128 {
                h2 = h2.ready().await.unwrap();
                let (response, mut stream) = grpc_stream(&mut h2, GET_ID);
                let _ = stream.send_data(almost.clone(), false);
                answers.push(tokio::spawn(grpc_status(response)));
                streams.push(stream);
            }
            let mut statuses = Vec::new();
            for answer in answers {
                statuses.push(answer.await.unwrap());
            }
            drop(streams);
            connection.abort();
            statuses
        }));
    }
    // Meanwhile: the peak RSS, and a cache hit and a health check on
    // another connection every 100 ms.
    let probe = Probe::start(port, hot);
    let mut peak = before;
    let started = Instant::now();
    while attackers.iter().any(|a| !a.is_finished()) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the attack never ended"
        );
        peak = peak.max(rss(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (slowest_hit, slowest_check, probes) = probe.stop();
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for attacker in attackers {
        for status in attacker.await.unwrap() {
            *statuses
                .entry(status.unwrap_or_else(|| "reset".into()))
                .or_default() += 1;
        }
    }
    let after = rss(pid);
    let (status, log) = terminate(child, log);
    println!(
        "1024 streams of near-largest messages: RSS {:.0} MiB before, {:.0} MiB at the peak, {:.0} MiB after; \
         the slowest of {probes} cache hits {slowest_hit:?}, of health checks {slowest_check:?}; answers by grpc-status {statuses:?}",
        mib(before),
        mib(peak),
        mib(after)
    );
    assert!(peak < RSS_BOUND, "{:.0} MiB", mib(peak));
    assert!(slowest_hit < Duration::from_millis(50), "{slowest_hit:?}");
    assert!(
        slowest_check < Duration::from_millis(50),
        "{slowest_check:?}"
    );
    // Past the budget, streams are refused at once (RESOURCE_EXHAUSTED);
    // those within it wait out the body timeout (DEADLINE_EXCEEDED).
    assert!(statuses.get("8").copied().unwrap_or(0) > 0, "{statuses:?}");
    assert_eq!(statuses.values().sum::<usize>(), 1024);
    assert_eq!(status.code(), Some(0), "{log}");
}

/// An HTTP/2 frame: its 9-byte header, then `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Writes `frames` to a new connection to `addr` until the server closes
/// it or 30 s pass; how many bytes it took, and whether it was closed.
async fn flood(
    addr: std::net::SocketAddr,
    mut frames: impl FnMut(usize) -> Vec<u8>,
) -> (usize, bool) {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut sent = 0;
    let started = Instant::now();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(4, 0, 0, &[]));
    if tcp.write_all(&hello).await.is_err() {
        return (0, true);
    }
    for i in 0.. {
        if started.elapsed() > Duration::from_secs(30) {
            return (sent, false);
        }
        let bytes = frames(i);
        match tokio::time::timeout(Duration::from_secs(5), tcp.write_all(&bytes)).await {
            Ok(Ok(())) => sent += bytes.len(),
            // Reset or closed by the server.
            Ok(Err(_)) => return (sent, true),
            // The server stopped reading: it is done with this connection.
            Err(_) => return (sent, true),
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_level_floods_leave_the_gateway_serving_others_within_its_memory_bound() {
    let _alone = MACHINE.write().await;
    let port = support::loopback::free_port();
    let listen = format!("127.0.0.1:{port}");
    let (child, log) = support::binary::gateway(
        &["--emulator", "--listen", &listen, "--admin-listen", "off"],
        &[],
    );
    let pid = child.id();
    let channel = support::binary::connect(port).await;
    let hot = support::developer("hot", 900);
    pb::cognito_identity_service_client::CognitoIdentityServiceClient::new(channel)
        .get_open_id_token_for_developer_identity(hot.clone())
        .await
        .unwrap();
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let probe = Probe::start(port, hot);
    let before = rss(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // CONTINUATION flood: one request's header block that never ends, in
    // 16 KiB frames; and a header block of one huge header, the same way.
    let continuations = tokio::spawn(flood(addr, |i| {
        if i == 0 {
            // :method POST, :scheme http, :path /, no END_HEADERS.
            frame(1, 0, 1, &[0x83, 0x86, 0x84])
        } else {
            frame(9, 0, 1, &[b'a'; 16_384])
        }
    }));
    let huge_header = tokio::spawn(flood(addr, |i| {
        if i == 0 {
            // A literal header "x" whose value claims a megabyte.
            let mut block = vec![0x83, 0x86, 0x84, 0x00, 0x01, b'x', 0x7f];
            let mut rest = (1 << 20) - 127;
            while rest >= 128 {
                block.push(u8::try_from(rest % 128).unwrap() | 0x80);
                rest /= 128;
            }
            block.push(u8::try_from(rest).unwrap());
            frame(1, 0, 1, &block)
        } else {
            frame(9, 0, 1, &[b'v'; 16_384])
        }
    }));
    // Rapid reset: streams opened and reset at once, as fast as the client
    // can, on two connections.
    let mut resets = Vec::new();
    for _ in 0..2 {
        resets.push(tokio::spawn(async move {
            let (mut h2, connection) = raw_connection(addr).await;
            let mut opened = 0;
            let started = Instant::now();
            while opened < 10_000 && started.elapsed() < Duration::from_secs(20) {
                let Ok(ready) = h2.clone().ready().await else {
                    break;
                };
                h2 = ready;
                let request = http::Request::post(format!("http://x{GET_ID}"))
                    .header("content-type", "application/grpc")
                    .body(())
                    .unwrap();
                let Ok((_response, mut stream)) = h2.send_request(request, false) else {
                    break;
                };
                stream.send_reset(h2::Reason::CANCEL);
                opened += 1;
            }
            let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
            (opened, ended.is_ok())
        }));
    }
    // And 500 connections that never send a byte.
    let mut silent = Vec::new();
    for _ in 0..500 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }

    let (continued, continuation_closed) = continuations.await.unwrap();
    let (header_bytes, header_closed) = huge_header.await.unwrap();
    let mut reset_streams = Vec::new();
    for reset in resets {
        reset_streams.push(reset.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (hit, checked, probes) = probe.stop();
    sampler.abort();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    drop(silent);
    let (status, log) = terminate(child, log);
    println!(
        "frame floods: CONTINUATION closed {continuation_closed} after {continued} bytes, huge header closed \
         {header_closed} after {header_bytes} bytes; rapid reset (streams, connection ended) {reset_streams:?}; \
         RSS {:.0} MiB before, {:.0} MiB at the peak; the slowest of {probes} cache hits {hit:?}, of health checks {checked:?}",
        mib(before),
        mib(peak)
    );
    assert!(continuation_closed && continued < 4 << 20, "{continued}");
    assert!(header_closed && header_bytes < 4 << 20, "{header_bytes}");
    assert!(peak < RSS_BOUND, "{:.0} MiB", mib(peak));
    assert!(hit < Duration::from_millis(50), "{hit:?}");
    assert!(checked < Duration::from_millis(50), "{checked:?}");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
