//! The gateway's benchmark: run with `scripts/bench` (not part of the tests).
//!
//! In one run, side by side on this machine:
//! 1. cache-hit throughput and latency of the gateway (`--emulator`, warm
//!    cache; tracing off, then on with every span exported to an OTLP
//!    collector) against a bare tonic server answering the same messages
//!    (the floor), with the same load generator (h2load), at 1 stream,
//!    4x32 and 16x64; server CPU per request from /proc;
//! 2. the miss path: the gateway with its cache off against the AWS SDK
//!    calling the emulator directly (with its defaults, and set up as the
//!    gateway sets it up), the same request, sequentially, from a one-thread
//!    client: through the gateway both with h2load and with a tonic client
//!    (which sends a call's HEADERS and DATA in two writes), and through the
//!    miss path's floor, a bare tonic server calling the SDK;
//! 3. coalescing: 1,000 concurrent identical requests on a cold key, and
//!    the upstream calls they made, as the emulator counts them;
//! 4. memory: resident bytes per cached entry at 100,000 and 1,000,000
//!    entries, against the bytes of the tokens themselves;
//! 5. the cache-hit path over mutual TLS with a policy of 1,000 callers and
//!    the audit log on, against bare tonic serving the same rustls TLS
//!    ([`mtls`]; h2load cannot show a client certificate, so a one-thread
//!    h2 client of its own drives both);
//! 6. a production-shaped run ([`production`]): Zipf users, several token
//!    lives, two hours of the cache's clock in two minutes; upstream calls
//!    against the least any cache could make, the busiest second per
//!    operation against its quota, and the calls that waited on Cognito.
//!
//! Every reply's gRPC status is checked: in the hit section through the
//! servers' own counts of OK replies (h2load only sees HTTP statuses), in
//! the others by the tonic client (and the gateway's count for h2load's
//! calls in the miss section); a non-OK reply counts as an error.
//!
//! Helper modes, for profiling by hand: `floor PORT TOKEN_LEN [one-write]
//! [--upstream URL]` (the floor server; with an upstream, the miss path's
//! floor), `floor-tls PORT TOKEN_LEN DIR` (the floor over tonic's TLS),
//! `collector` (an OTLP sink; prints its URL), `body PATH` (the request as
//! the gRPC frame h2load sends), `pki DIR` (section 5's certificates,
//! policy and audit key) and `mtls-load PORT DIR C M N` (section 5's load).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_cognitoidentity::operation::get_open_id_token_for_developer_identity::{
    GetOpenIdTokenForDeveloperIdentityError, GetOpenIdTokenForDeveloperIdentityOutput,
};
use cognito_identity_gateway::cache::{CacheSettings, Clock, TokenCache};
use cognito_identity_gateway::config::Cli;
use cognito_identity_gateway::domain::{GetIdInput, OpenIdToken, Secret, Upstreamed};
use cognito_identity_gateway::emulator::{DEFAULT_DEVELOPER_PROVIDER, DEFAULT_POOL_ID};
use cognito_identity_gateway::proto as pb;
use cognito_identity_gateway::proto::cognito_identity_service_client::CognitoIdentityServiceClient;
use cognito_identity_gateway::proto::cognito_identity_service_server::{
    CognitoIdentityService, CognitoIdentityServiceServer,
};
use cognito_identity_gateway::upstream::{self, UpstreamSettings};
use tonic::transport::{Channel, Endpoint};

#[path = "../tests/support/certs.rs"]
#[allow(dead_code)]
mod certs;
#[path = "../tests/support/loopback.rs"]
#[allow(dead_code)]
mod loopback;
#[path = "gateway/mtls.rs"]
mod mtls;
#[path = "gateway/production.rs"]
mod production;
#[path = "gateway/rng.rs"]
mod rng;

use loopback::{free_port, http_get, series};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BIN: &str = env!("CARGO_BIN_EXE_cognito-identity-gateway");

// ---------------------------------------------------------------- the floor

/// A bare tonic server answering the developer RPC with a fixed reply of the
/// gateway's shape: no middleware, no validation, no cache. With an
/// upstream, the floor of the miss path instead: each call goes to the SDK,
/// configured as the gateway configures it, and its token comes back.
struct Floor {
    reply: pb::GetOpenIdTokenForDeveloperIdentityResponse,
    upstream: Option<aws_sdk_cognitoidentity::Client>,
    /// Developer calls answered OK: h2load counts any HTTP 200 as a success,
    /// so the benchmark checks grpc-status through the servers' own counts.
    answered: AtomicU64,
}

impl Floor {
    /// The floor answering with a token of `token_len` bytes.
    fn fixed(token_len: usize) -> Self {
        Self {
            reply: pb::GetOpenIdTokenForDeveloperIdentityResponse {
                identity_id: "us-east-1:2ae28537-84a7-5535-afaa-2d5242aed59a".into(),
                token: "t".repeat(token_len),
                expires_at: Some(SystemTime::now().into()),
            },
            upstream: None,
            answered: AtomicU64::new(0),
        }
    }
}

#[tonic::async_trait]
impl CognitoIdentityService for Floor {
    /// Not a real GetId: how many developer calls it answered OK.
    async fn get_id(
        &self,
        _: tonic::Request<pb::GetIdRequest>,
    ) -> Result<tonic::Response<pb::GetIdResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::GetIdResponse {
            identity_id: self.answered.load(Ordering::Relaxed).to_string(),
        }))
    }
    async fn get_open_id_token(
        &self,
        _: tonic::Request<pb::GetOpenIdTokenRequest>,
    ) -> Result<tonic::Response<pb::GetOpenIdTokenResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("floor"))
    }
    async fn get_open_id_token_for_developer_identity(
        &self,
        request: tonic::Request<pb::GetOpenIdTokenForDeveloperIdentityRequest>,
    ) -> Result<tonic::Response<pb::GetOpenIdTokenForDeveloperIdentityResponse>, tonic::Status>
    {
        let Some(sdk) = &self.upstream else {
            self.answered.fetch_add(1, Ordering::Relaxed);
            return Ok(tonic::Response::new(self.reply.clone()));
        };
        let m = request.into_inner();
        let out = developer_call(sdk, m)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        self.answered.fetch_add(1, Ordering::Relaxed);
        Ok(tonic::Response::new(
            pb::GetOpenIdTokenForDeveloperIdentityResponse {
                identity_id: out.identity_id.unwrap_or_default(),
                token: out.token.unwrap_or_default(),
                expires_at: None,
            },
        ))
    }
    async fn get_credentials_for_identity(
        &self,
        _: tonic::Request<pb::GetCredentialsForIdentityRequest>,
    ) -> Result<tonic::Response<pb::GetCredentialsForIdentityResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("floor"))
    }
}

/// GetOpenIdTokenForDeveloperIdentity with `m`'s fields, through `sdk`.
fn developer_call(
    sdk: &aws_sdk_cognitoidentity::Client,
    m: pb::GetOpenIdTokenForDeveloperIdentityRequest,
) -> impl Future<
    Output = Result<
        GetOpenIdTokenForDeveloperIdentityOutput,
        aws_sdk_cognitoidentity::error::SdkError<GetOpenIdTokenForDeveloperIdentityError>,
    >,
> {
    sdk.get_open_id_token_for_developer_identity()
        .identity_pool_id(m.identity_pool_id)
        .set_logins(Some(m.logins))
        .set_principal_tags(Some(m.principal_tags))
        .set_token_duration(m.token_duration_seconds)
        .send()
}

/// The gateway's upstream settings (its own defaults, from its command
/// line) for the emulator at `endpoint`, with the emulator's access key.
fn gateway_upstream_settings(endpoint: &str) -> UpstreamSettings {
    use clap::Parser;
    let cli = Cli::try_parse_from([
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--endpoint-url",
        endpoint,
        "--region",
        "us-east-1",
    ])
    .unwrap();
    UpstreamSettings {
        static_credentials: Some(("test".into(), "test".into())),
        ..cli.into_settings().unwrap().upstream
    }
}

/// An SDK client configured as the gateway configures its own.
async fn gateway_sdk(endpoint: &str) -> aws_sdk_cognitoidentity::Client {
    aws_sdk_cognitoidentity::Client::new(
        &upstream::sdk_config(&gateway_upstream_settings(endpoint)).await,
    )
}

/// `gateway-bench floor PORT TOKEN_LEN [one-write] [--upstream URL]`: the
/// floor server, in its own process; with `one-write`, on the gateway's
/// connections that send a reply in one write
/// (`cognito_identity_gateway::server::one_write`); with `--upstream`, the floor of
/// the miss path, calling the emulator at URL.
async fn serve_floor(port: u16, token_len: usize, one_write: bool, upstream: Option<&str>) {
    let upstream = match upstream {
        Some(url) => Some(gateway_sdk(url).await),
        None => None,
    };
    let floor = Floor {
        upstream,
        ..Floor::fixed(token_len)
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let router =
        tonic::transport::Server::builder().add_service(CognitoIdentityServiceServer::new(floor));
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    if one_write {
        use futures_util::TryStreamExt;
        let incoming = incoming.map_ok(cognito_identity_gateway::server::one_write::OneWrite::new);
        router.serve_with_incoming(incoming).await.unwrap();
    } else {
        router.serve_with_incoming(incoming).await.unwrap();
    }
}

// ----------------------------------------------------------- load generator

fn request() -> pb::GetOpenIdTokenForDeveloperIdentityRequest {
    pb::GetOpenIdTokenForDeveloperIdentityRequest {
        identity_pool_id: DEFAULT_POOL_ID.into(),
        logins: HashMap::from([(DEFAULT_DEVELOPER_PROVIDER.into(), "bench-user".into())]),
        principal_tags: HashMap::from([("team".into(), "bench".into())]),
        token_duration_seconds: Some(3600),
        ..Default::default()
    }
}

/// The developer token's length as the emulator makes it, through a
/// plaintext gateway of its own.
async fn emulator_token_len() -> usize {
    let plain = gateway_server(&["--emulator"], &[]);
    CognitoIdentityServiceClient::new(connect(plain.port).await)
        .get_open_id_token_for_developer_identity(request())
        .await
        .unwrap()
        .into_inner()
        .token
        .len()
}

/// Waits until something accepts connections on `port`.
async fn wait_listening(port: u16) {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on {port}");
}

async fn connect(port: u16) -> Channel {
    let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .tcp_nodelay(true);
    for _ in 0..400 {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on {port}");
}

/// The load generator: h2load (Debian's nghttp2-client), the same for
/// every server, sending one gRPC request body over and over.
/// The benchmark's request as one gRPC frame: a zero byte (not
/// compressed), the length as 4 bytes big-endian, the prost encoding.
fn request_frame() -> Vec<u8> {
    use prost::Message;
    let message = request().encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    frame
}

struct H2Load {
    body: std::path::PathBuf,
    log: std::path::PathBuf,
}

/// What h2load saw in one run.
struct Run {
    /// Responses h2load counted as succeeded (HTTP 200, whatever grpc-status).
    responses: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

/// The `p` quantile of ascending `sorted` latencies (NaN when empty).
fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    f64::from(sorted[((sorted.len() - 1) as f64 * p).round() as usize])
}

impl Run {
    fn percentile(&self, p: f64) -> f64 {
        percentile(&self.latencies_us, p)
    }
    fn rps(&self) -> f64 {
        self.responses as f64 / self.elapsed.as_secs_f64()
    }
}

impl H2Load {
    /// Checks that h2load is installed and writes the request body: the
    /// benchmark's request, prost-encoded, in a gRPC frame.
    fn new() -> Self {
        let installed = Command::new("h2load")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "h2load is not installed: scripts/bench installs it (apt-get install nghttp2-client)"
        );
        let dir = std::env::temp_dir();
        let id = std::process::id();
        let body = dir.join(format!("gateway-bench-{id}.body"));
        std::fs::write(&body, request_frame()).unwrap();
        let log = dir.join(format!("gateway-bench-{id}.log"));
        Self { body, log }
    }

    /// `requests` calls over `connections` HTTP/2 connections with
    /// `streams` concurrent streams each, on one h2load thread.
    async fn run(&self, port: u16, connections: usize, streams: usize, requests: u64) -> Run {
        let url = format!(
            "http://127.0.0.1:{port}/cognito_identity_gateway.v1.CognitoIdentityService/GetOpenIdTokenForDeveloperIdentity"
        );
        let args: Vec<String> = vec![
            "-n".into(),
            requests.to_string(),
            "-c".into(),
            connections.to_string(),
            "-m".into(),
            streams.to_string(),
            "-t".into(),
            "1".into(),
            "-d".into(),
            self.body.display().to_string(),
            "-H".into(),
            "content-type: application/grpc".into(),
            "-H".into(),
            "te: trailers".into(),
            "--log-file".into(),
            self.log.display().to_string(),
            url,
        ];
        // h2load appends to its log: without this, every run's percentiles
        // would include all the runs before it.
        let _ = std::fs::remove_file(&self.log);
        let output = tokio::task::spawn_blocking(move || {
            Command::new("h2load").args(&args).output().unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        // "finished in 4.00s, ..." (or 159.61ms, or 243us).
        let elapsed = stdout
            .split("finished in ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|t| {
                [("us", 1e-6), ("ms", 1e-3), ("s", 1.0)]
                    .into_iter()
                    .find_map(|(unit, scale)| {
                        Some(t.strip_suffix(unit)?.parse::<f64>().ok()? * scale)
                    })
            })
            .unwrap_or_else(|| panic!("h2load said: {stdout}"));
        // "requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, ...".
        let responses = stdout
            .split(" succeeded")
            .next()
            .and_then(|head| head.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("h2load said: {stdout}"));
        let mut latencies_us: Vec<u32> = std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter_map(|l| l.split('\t').nth(2)?.trim().parse().ok())
            .collect();
        latencies_us.sort_unstable();
        Run {
            responses,
            elapsed: Duration::from_secs_f64(elapsed),
            latencies_us,
        }
    }
}

impl Drop for H2Load {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.body);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// User plus system CPU time of a process, from /proc/PID/stat.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of stat(5), counted after the command name: utime, stime.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

struct Server {
    child: Child,
    port: u16,
    /// The gateway's admin listener (`/metrics`); none for the others.
    admin: Option<u16>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(program: &str, args: &[String], env: &[(&str, String)]) -> Child {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
        .env("RUST_LOG", "warn")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        command.env(k, v);
    }
    command.spawn().unwrap()
}

/// The standalone emulator with the ready pool and `extra` flags.
fn emulator_server(extra: &[&str]) -> Server {
    let port = free_port();
    let mut args = vec![
        "emulator".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{port}"),
        "--default-pool".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Server {
        child: spawn(BIN, &args, &[]),
        port,
        admin: None,
    }
}

/// The gateway in front of `emulator`, signing with the emulator's key.
fn gateway_on(emulator: &Server, extra: &[&str]) -> Server {
    let endpoint = format!("http://127.0.0.1:{}", emulator.port);
    let mut args = vec!["--endpoint-url", &endpoint, "--region", "us-east-1"];
    args.extend_from_slice(extra);
    let creds = [
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
    ];
    gateway_server(&args, &creds)
}

fn floor_server(token_len: usize, one_write: bool, upstream: Option<&Server>) -> Server {
    let port = free_port();
    let me = std::env::current_exe().unwrap();
    let mut args = vec!["floor".to_owned(), port.to_string(), token_len.to_string()];
    if one_write {
        args.push("one-write".into());
    }
    if let Some(emulator) = upstream {
        args.push("--upstream".into());
        args.push(format!("http://127.0.0.1:{}", emulator.port));
    }
    let child = spawn(me.to_str().unwrap(), &args, &[]);
    Server {
        child,
        port,
        admin: None,
    }
}

fn gateway_server(extra: &[&str], env: &[(&str, String)]) -> Server {
    let (port, admin) = (free_port(), free_port());
    let mut args = vec![
        "--listen".to_owned(),
        format!("127.0.0.1:{port}"),
        "--admin-listen".into(),
        format!("127.0.0.1:{admin}"),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Server {
        child: spawn(BIN, &args, env),
        port,
        admin: Some(admin),
    }
}

/// The sum of a counter of the gateway's over all its labels.
async fn counter_sum(gateway: &Server, name: &str) -> u64 {
    let metrics = http_get(gateway.admin.unwrap(), "/metrics").await.1;
    series(&metrics, &format!("{name}_total"))
        .filter(|(labels, _)| labels.is_empty() || labels.starts_with('{'))
        .map(|(_, value)| value as u64)
        .sum()
}

/// Developer calls the server has answered with grpc-status OK so far: the
/// gateway's `grpc_server_handled` counter, or the floor's own count.
async fn answered_ok(server: &Server) -> u64 {
    match server.admin {
        Some(admin) => {
            let metrics = http_get(admin, "/metrics").await.1;
            series(&metrics, "grpc_server_handled_total{")
                .find(|(labels, _)| {
                    labels.contains("grpc_method=\"GetOpenIdTokenForDeveloperIdentity\"")
                        && labels.contains("grpc_code=\"OK\"")
                })
                .map_or(0, |(_, value)| value as u64)
        }
        None => {
            let mut floor = CognitoIdentityServiceClient::new(connect(server.port).await);
            let count = floor.get_id(pb::GetIdRequest::default()).await.unwrap();
            count.into_inner().identity_id.parse().unwrap()
        }
    }
}

/// One cell: h2load against `server`, after a warm-up that opens the
/// connections' paths and fills the cache.
struct Cell {
    run: Run,
    /// Replies that were not grpc-status OK (or not answered at all).
    errors: u64,
    cpu_us_per_request: f64,
}

async fn measure(
    load: &H2Load,
    server: &Server,
    connections: usize,
    streams: usize,
    time: Duration,
) -> Cell {
    // The warm-up also measures the rate, so that the measured run, a fixed
    // number of calls (every one answered before h2load stops), lasts `time`.
    let warm = load.run(server.port, connections, streams, 2_000).await;
    let requests = (warm.rps() * time.as_secs_f64()).max(1_000.0) as u64;
    let (ok_before, cpu_before) = (answered_ok(server).await, cpu_time(server.child.id()));
    let run = load.run(server.port, connections, streams, requests).await;
    let cpu = cpu_time(server.child.id()) - cpu_before;
    let ok = answered_ok(server).await - ok_before;
    Cell {
        errors: requests.saturating_sub(ok),
        cpu_us_per_request: cpu.as_secs_f64() * 1e6 / run.responses.max(1) as f64,
        run,
    }
}

fn row(name: &str, shape: &str, cell: &Cell) {
    println!(
        "| {name:<22} | {shape:>6} | {:>9.0} | {:>7.0} | {:>7.0} | {:>8.1} | {:>6} |",
        cell.run.rps(),
        cell.run.percentile(0.5),
        cell.run.percentile(0.99),
        cell.cpu_us_per_request,
        cell.errors
    );
}

// ---------------------------------------------------------------- sections

async fn hit_path(time: Duration, rounds: usize) {
    println!("\n## 1. Cache-hit path against the floor\n");
    println!(
        "Load: h2load (one thread) for every server, GetOpenIdTokenForDeveloperIdentity with the same request; {time:?} per cell, {rounds} rounds of floor / tracing off / tracing on / floor with one write per shape, one after the other, so that the machine's drift falls on all three alike. Errors: replies the server did not count as grpc-status OK.\n"
    );
    let load = H2Load::new();
    let collector = start_collector().await;
    let plain = gateway_server(&["--emulator"], &[]);
    let mut traced = gateway_server(
        &["--emulator"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.clone()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ],
    );
    // The floor answers with a token as long as the emulator's.
    let token_len = CognitoIdentityServiceClient::new(connect(plain.port).await)
        .get_open_id_token_for_developer_identity(request())
        .await
        .unwrap()
        .into_inner()
        .token
        .len();
    let floor = floor_server(token_len, false, None);
    // The same floor on the gateway's connections, which send a reply in
    // one write where tonic's own send two: what the gateway costs beyond
    // a bare server with the same I/O.
    let floor_one_write = floor_server(token_len, true, None);
    for server in [&floor, &floor_one_write, &traced] {
        let _ = connect(server.port).await;
    }
    println!("Token: {token_len} bytes.\n");
    println!("| server | shape | req/s | p50 µs | p99 µs | CPU µs/req | errors |");
    println!("|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for (connections, streams) in [(1, 1), (4, 32), (16, 64)] {
        let shape = format!("{connections}x{streams}");
        let mut cells = Vec::new();
        for _ in 0..rounds {
            let f = measure(&load, &floor, connections, streams, time).await;
            row("floor (bare tonic)", &shape, &f);
            let g = measure(&load, &plain, connections, streams, time).await;
            row("gateway, tracing off", &shape, &g);
            let t = measure(&load, &traced, connections, streams, time).await;
            row("gateway, tracing on", &shape, &t);
            let w = measure(&load, &floor_one_write, connections, streams, time).await;
            row("floor, one write", &shape, &w);
            cells.push((f, g, t, w));
        }
        ratios.push((shape, cells));
    }
    // Every span exported? Stop the traced gateway as Kubernetes would
    // (SIGTERM: it flushes its exporter), then compare the spans the
    // collector received with the spans owed: a server span per call, a
    // client span per upstream call (the first call's cache miss).
    let calls = counter_sum(&traced, "grpc_server_handled").await;
    let upstream = counter_sum(&traced, "cognito_upstream_calls").await;
    let dropped = counter_sum(&traced, "gateway_trace_spans_dropped").await;
    let stopped = Command::new("kill")
        .args(["-TERM", &traced.child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    let exited = stopped && traced.child.wait().is_ok_and(|s| s.success());
    let received = SPANS_RECEIVED.load(Ordering::Relaxed);
    println!(
        "\nTracing on: spans owed {} ({calls} calls, {upstream} upstream calls), received by the collector {received}, dropped by the gateway's full queue {dropped}; the gateway {} on SIGTERM.",
        calls + upstream,
        if exited {
            "flushed and exited 0"
        } else {
            "did NOT exit cleanly"
        }
    );
    println!(
        "\nPer shape, the median over the rounds of each round's ratio (gateway against the floor measured just before it), with the lowest and highest in brackets:\n"
    );
    println!(
        "| shape | gateway/floor req/s, tracing off | tracing on | CPU µs/req added, off | on | p50 added µs, off | tracing off against the floor with one write |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (shape, cells) in ratios {
        let of = |pick: &dyn Fn(&Cell, &Cell, &Cell, &Cell) -> f64| {
            let mut v: Vec<f64> = cells.iter().map(|(f, g, t, w)| pick(f, g, t, w)).collect();
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[0], v[v.len() - 1])
        };
        let off = of(&|f, g, _, _| g.run.rps() / f.run.rps() * 100.0);
        let on = of(&|f, _, t, _| t.run.rps() / f.run.rps() * 100.0);
        let cpu_off = of(&|f, g, _, _| g.cpu_us_per_request - f.cpu_us_per_request);
        let cpu_on = of(&|f, _, t, _| t.cpu_us_per_request - f.cpu_us_per_request);
        let p50 = of(&|f, g, _, _| g.run.percentile(0.5) - f.run.percentile(0.5));
        let same_io = of(&|_, g, _, w| g.run.rps() / w.run.rps() * 100.0);
        println!(
            "| {shape} | {:.1} % ({:.1}–{:.1}) | {:.1} % ({:.1}–{:.1}) | {:.1} | {:.1} | {:.0} | {:.1} % ({:.1}–{:.1}) |",
            off.0,
            off.1,
            off.2,
            on.0,
            on.1,
            on.2,
            cpu_off.0,
            cpu_on.0,
            p50.0,
            same_io.0,
            same_io.1,
            same_io.2,
        );
    }
}

async fn miss_path(rounds: usize) {
    println!("\n## 2. The miss path: gateway (cache off) against the SDK calling the emulator\n");
    let load = H2Load::new();
    let emulator = emulator_server(&[]);
    let emulator_port = emulator.port;
    let endpoint = format!("http://127.0.0.1:{emulator_port}");
    // No quota budget: this section measures the path, not Cognito's quotas.
    let gateway = gateway_on(&emulator, &["--cache", "false", "--upstream-quota", "off"]);
    // The miss path's floor: bare tonic in front of the SDK, configured as
    // the gateway configures it.
    let floor = floor_server(0, false, Some(&emulator));
    let _ = connect(emulator_port).await;

    // The SDK as a service would call it itself: its defaults.
    let sdk_config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(aws_sdk_cognitoidentity::config::Credentials::new(
            "test", "test", None, None, "bench",
        ))
        .load()
        .await;
    let sdk = aws_sdk_cognitoidentity::Client::new(&sdk_config);
    // The SDK as the gateway calls it (timeouts, retries, no stalled-stream
    // protection).
    let sdk_as_gateway = gateway_sdk(&endpoint).await;
    let mut client = CognitoIdentityServiceClient::new(connect(gateway.port).await);

    // The same request on every path: the one h2load sends.
    const PER_ROUND: usize = 100;
    for _ in 0..50 {
        developer_call(&sdk, request()).await.unwrap();
        developer_call(&sdk_as_gateway, request()).await.unwrap();
        client
            .get_open_id_token_for_developer_identity(request())
            .await
            .unwrap();
    }
    let _ = load.run(floor.port, 1, 1, 50).await;
    let ok_before = (answered_ok(&gateway).await, answered_ok(&floor).await);
    let mut paths: [Vec<u32>; 5] = Default::default();
    // Rounds alternate the paths, so that drift in the machine falls on all
    // of them alike.
    for _ in 0..rounds {
        for (i, sdk) in [&sdk, &sdk_as_gateway].into_iter().enumerate() {
            for _ in 0..PER_ROUND {
                let started = Instant::now();
                developer_call(sdk, request()).await.unwrap();
                paths[i].push(started.elapsed().as_micros() as u32);
            }
        }
        for (i, server) in [(2, &floor), (3, &gateway)] {
            paths[i].extend(
                load.run(server.port, 1, 1, PER_ROUND as u64)
                    .await
                    .latencies_us,
            );
        }
        for _ in 0..PER_ROUND {
            let started = Instant::now();
            client
                .get_open_id_token_for_developer_identity(request())
                .await
                .unwrap();
            paths[4].push(started.elapsed().as_micros() as u32);
        }
    }
    let calls = (rounds * PER_ROUND) as u64;
    let errors = (
        2 * calls - (answered_ok(&gateway).await - ok_before.0),
        calls - (answered_ok(&floor).await - ok_before.1),
    );
    for v in &mut paths {
        v.sort_unstable();
    }
    println!(
        "{} sequential calls per path, the same request, in {rounds} alternating rounds, after 50 of warm-up; calls not answered OK: {} through the gateway, {} through the floor.\n",
        rounds * PER_ROUND,
        errors.0,
        errors.1
    );
    println!(
        "| path | p50 µs | p99 µs | added p50 µs | added p99 µs | added p50 over the SDK as the gateway sets it up µs |"
    );
    println!("|---|---|---|---|---|---|");
    let names = [
        "SDK (its defaults) -> emulator",
        "SDK (as the gateway sets it up) -> emulator",
        "h2load -> bare tonic + SDK (as the gateway sets it up) -> emulator",
        "h2load -> gateway (cache off) -> SDK -> emulator",
        "tonic client -> gateway (cache off) -> SDK -> emulator",
    ];
    let p50 = |v: &[u32]| percentile(v, 0.5);
    for (name, v) in names.iter().zip(&paths) {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            p50(v),
            percentile(v, 0.99),
            p50(v) - p50(&paths[0]),
            percentile(v, 0.99) - percentile(&paths[0], 0.99),
            p50(v) - p50(&paths[1]),
        );
    }

    // Where the added time goes: the gateway's own histograms (means, as
    // Prometheus histograms give sums and counts).
    let metrics = http_get(gateway.admin.unwrap(), "/metrics").await.1;
    let mean = |name: &str| {
        let value = |suffix: &str| {
            series(&metrics, &format!("{name}_{suffix}{{"))
                .next()
                .map_or(f64::NAN, |(_, value)| value)
        };
        (value("sum") / value("count") * 1e6).round()
    };
    let direct = &paths[1];
    let direct_mean =
        direct.iter().map(|&v| f64::from(v)).sum::<f64>() / direct.len().max(1) as f64;
    let server = mean("grpc_server_handling_seconds");
    let upstream = mean("cognito_upstream_duration_seconds");
    println!(
        "\nInside the gateway (means over all its calls): {server} µs from a call's arrival to its status, of which {upstream} µs in the SDK's call to the emulator (the same call made directly with the gateway's SDK settings: {direct_mean:.0} µs, mean); the rest of the added time is the extra gRPC hop on the loopback."
    );
    drop((gateway, floor));
}

async fn coalescing() {
    println!("\n## 3. Coalescing\n");
    let emulator = emulator_server(&[
        "--faults",
        r#"{"operations":{"GetOpenIdTokenForDeveloperIdentity":{"latency_ms":100}}}"#,
    ]);
    let emulator_port = emulator.port;
    // All 1,000 may wait on the one upstream call.
    let gateway = gateway_on(&emulator, &["--upstream-concurrency-limit", "1000"]);
    let channel = connect(gateway.port).await;
    let _ = connect(emulator_port).await;
    let calls: Vec<_> = (0..1000)
        .map(|_| {
            let mut client = CognitoIdentityServiceClient::new(channel.clone());
            tokio::spawn(async move {
                client
                    .get_open_id_token_for_developer_identity(request())
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut ok = 0;
    for call in calls {
        ok += u32::from(call.await.unwrap());
    }
    let counts = http_get(emulator_port, "/_emulator/calls").await.1;
    println!(
        "1,000 concurrent identical requests on a cold key (100 ms of injected upstream latency): {ok} answered OK; upstream calls counted by the emulator: `{}`",
        counts.trim()
    );
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

async fn memory() {
    println!("\n## 4. Memory per cached entry\n");
    println!("| entries | token bytes/entry | RSS bytes/entry | target (2 x token + 300) |");
    println!("|---|---|---|---|");
    for n in [100_000u32, 1_000_000] {
        let cache = TokenCache::new(
            CacheSettings {
                max_bytes: 64 * 1024 * 1024 * 1024,
                ..CacheSettings::default()
            },
            Clock::default(),
        );
        let token_len = 900usize;
        let identity_len = "us-east-1:00000000-0000-4000-8000-000000000000".len();
        let before = rss_bytes();
        for i in 0..n {
            let key = cache.key(
                &GetIdInput::parse(
                    Some(DEFAULT_POOL_ID.into()),
                    None,
                    vec![("p".into(), format!("u{i}"))],
                )
                .unwrap(),
            );
            let value = OpenIdToken {
                identity_id: format!("us-east-1:{i:08x}-0000-4000-8000-000000000000"),
                token: Secret::new("t".repeat(token_len)),
                expires_at: Some(SystemTime::now() + Duration::from_secs(3600)),
            };
            let _: OpenIdToken = cache
                .get_or_fetch(
                    key,
                    None,
                    || Ok(()),
                    move |_| std::future::ready(Upstreamed::unrecorded(Ok(value.clone()))),
                )
                .await
                .result
                .unwrap();
        }
        cache.run_pending_tasks().await;
        let per_entry = (rss_bytes() - before) as f64 / f64::from(n);
        let stored = token_len + identity_len;
        println!("| {n} | {stored} | {per_entry:.0} | {} |", 2 * stored + 300);
        drop(cache);
    }
}

/// Spans the benchmark's collector has received.
static SPANS_RECEIVED: AtomicU64 = AtomicU64::new(0);

/// An OTLP gRPC collector (the trace service's Export) that counts spans
/// ([`SPANS_RECEIVED`]) and drops them; returns its URL. It decodes each
/// export only down to its spans (each kept as bytes, unparsed), so that
/// its own CPU, which shares the two cores with the servers measured, is
/// the framing's rather than a full decode's.
async fn start_collector() -> String {
    /// `ExportTraceServiceRequest`, down to the spans.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Export {
        #[prost(message, repeated, tag = "1")]
        resource_spans: Vec<ResourceSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct ResourceSpans {
        #[prost(message, repeated, tag = "2")]
        scope_spans: Vec<ScopeSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct ScopeSpans {
        #[prost(bytes = "bytes", repeated, tag = "2")]
        spans: Vec<bytes::Bytes>,
    }
    #[derive(Clone)]
    struct Sink;
    impl tonic::server::UnaryService<Export> for Sink {
        type Response = ();
        type Future = std::future::Ready<Result<tonic::Response<()>, tonic::Status>>;
        fn call(&mut self, request: tonic::Request<Export>) -> Self::Future {
            let spans = request
                .get_ref()
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len() as u64)
                .sum();
            SPANS_RECEIVED.fetch_add(spans, Ordering::Relaxed);
            std::future::ready(Ok(tonic::Response::new(())))
        }
    }
    impl tonic::server::NamedService for Sink {
        const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    }
    impl tower::Service<http::Request<tonic::body::Body>> for Sink {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
        >;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(Sink, request).await)
            })
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Sink)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    url
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; test runners (`cargo test --all-targets`,
    // nextest's --list) must find nothing to run here.
    let mode = raw.first().map(String::as_str);
    let listing = raw.iter().any(|a| a == "--list");
    let benching = raw.iter().any(|a| a == "--bench")
        || matches!(
            mode,
            Some("floor" | "floor-tls" | "collector" | "body" | "pki" | "mtls-load")
        );
    if listing || !benching {
        return;
    }
    let args: Vec<String> = raw.into_iter().filter(|a| a != "--bench").collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if args.first().map(String::as_str) == Some("floor") {
        let upstream = args
            .iter()
            .position(|a| a == "--upstream")
            .map(|i| args[i + 1].as_str());
        runtime.block_on(serve_floor(
            args[1].parse().unwrap(),
            args[2].parse().unwrap(),
            args.iter().any(|a| a == "one-write"),
            upstream,
        ));
        return;
    }
    if args.first().map(String::as_str) == Some("floor-tls") {
        runtime.block_on(mtls::serve_floor_tls(
            args[1].parse().unwrap(),
            args[2].parse().unwrap(),
            std::path::Path::new(&args[3]),
        ));
        return;
    }
    if args.first().map(String::as_str) == Some("pki") {
        mtls::Pki::create(std::path::Path::new(&args[1]));
        return;
    }
    if args.first().map(String::as_str) == Some("mtls-load") {
        let n = |i: usize| args[i].parse::<u64>().unwrap();
        mtls::load_by_hand(
            n(1) as u16,
            std::path::Path::new(&args[2]),
            n(3) as usize,
            n(4) as usize,
            n(5),
        );
        return;
    }
    if args.first().map(String::as_str) == Some("body") {
        // The request body h2load sends, for profiling by hand.
        std::fs::write(&args[1], request_frame()).unwrap();
        return;
    }
    if args.first().map(String::as_str) == Some("collector") {
        // An OTLP sink on its own, for profiling a traced gateway by hand.
        runtime.block_on(async {
            println!("{}", start_collector().await);
            std::future::pending::<()>().await
        });
        return;
    }
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    // Rounds of the hit section: this VM's speed drifts by several per cent
    // from one cell to the next, so one cell per server proves little.
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);
    let only = args.first().cloned().unwrap_or_default();
    println!("# cognito-identity-gateway benchmark");
    if only.is_empty() || only == "hit" {
        runtime.block_on(hit_path(Duration::from_secs(seconds), rounds));
    }
    if only.is_empty() || only == "miss" {
        // One thread, like h2load: the client's own hand-offs between
        // worker threads (tonic's buffer task, hyper's connection tasks)
        // would otherwise add wake-ups to both paths that are no one's
        // but the benchmark's.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(miss_path(10));
    }
    runtime.block_on(async {
        if only.is_empty() || only == "coalescing" {
            coalescing().await;
        }
        if only.is_empty() || only == "memory" {
            memory().await;
        }
        if only.is_empty() || only == "mtls" {
            mtls::section(Duration::from_secs(seconds), rounds).await;
        }
        if only.is_empty() || only == "production" {
            let minute: u64 = std::env::var("BENCH_PRODUCTION_SECONDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(120);
            production::section(Duration::from_secs(minute)).await;
        }
    });
}
