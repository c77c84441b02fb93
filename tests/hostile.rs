//! Hostile and broken clients, through real clients on loopback: request
//! bytes that are no message of their type, and a process out of file
//! descriptors with connections waiting to be accepted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
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
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15: 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn out_of_file_descriptors_the_accept_loops_pause_and_stay_quiet() {
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
    let mut log = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = log.read_to_string(&mut text);
        text
    });
    support::binary::connect(port).await;
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
    drop((held, admin_conn));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let log = log.join().unwrap();
    let complaints = log.lines().filter(|l| l.contains("cannot accept")).count();
    println!(
        "out of descriptors: {:.1} % of a core over 3 s; {complaints} log lines",
        share * 100.0
    );
    assert!(share < 0.30, "{:.1} % of a core", share * 100.0);
    assert!(complaints >= 1, "the condition is logged: {log}");
    assert!(complaints <= 10, "at most once a second a listener: {log}");
    assert_eq!(status.code(), Some(0), "{log}");
}
