//! The gateway's benchmark: run with `scripts/bench` (not part of the tests).
//!
//! In one run, side by side on this machine:
//! 1. cache-hit throughput and latency of the gateway (`--emulator`, warm
//!    cache; tracing off, then on with every span exported to an OTLP
//!    collector) against a bare tonic server answering the same messages
//!    (the floor), with the same Rust load generator, at 1 stream, 4x32 and
//!    16x64; server CPU per request from /proc;
//! 2. the miss path: the gateway with its cache off against the AWS SDK
//!    calling the emulator directly, same requests, sequentially;
//! 3. coalescing: 1,000 concurrent identical requests on a cold key, and
//!    the upstream calls they made, as the emulator counts them;
//! 4. memory: resident bytes per cached entry at 100,000 and 1,000,000
//!    entries, against the bytes of the tokens themselves.
//!
//! Every reply's gRPC status is checked: a non-OK reply counts as an error.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use cognito_identity_gateway::cache::{CacheSettings, Clock, TokenCache};
use cognito_identity_gateway::domain::{GetIdInput, OpenIdToken, Secret};
use cognito_identity_gateway::emulator::{DEFAULT_DEVELOPER_PROVIDER, DEFAULT_POOL_ID};
use cognito_identity_gateway::proto as pb;
use cognito_identity_gateway::proto::cognito_identity_service_client::CognitoIdentityServiceClient;
use cognito_identity_gateway::proto::cognito_identity_service_server::{
    CognitoIdentityService, CognitoIdentityServiceServer,
};
use tonic::transport::{Channel, Endpoint};

#[path = "../tests/support/loopback.rs"]
mod loopback;

use loopback::{free_port, http_get};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BIN: &str = env!("CARGO_BIN_EXE_cognito-identity-gateway");

// ---------------------------------------------------------------- the floor

/// A bare tonic server answering the developer RPC with a fixed reply of the
/// gateway's shape: no middleware, no validation, no cache.
struct Floor {
    reply: pb::GetOpenIdTokenForDeveloperIdentityResponse,
}

#[tonic::async_trait]
impl CognitoIdentityService for Floor {
    async fn get_id(
        &self,
        _: tonic::Request<pb::GetIdRequest>,
    ) -> Result<tonic::Response<pb::GetIdResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("floor"))
    }
    async fn get_open_id_token(
        &self,
        _: tonic::Request<pb::GetOpenIdTokenRequest>,
    ) -> Result<tonic::Response<pb::GetOpenIdTokenResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("floor"))
    }
    async fn get_open_id_token_for_developer_identity(
        &self,
        _: tonic::Request<pb::GetOpenIdTokenForDeveloperIdentityRequest>,
    ) -> Result<tonic::Response<pb::GetOpenIdTokenForDeveloperIdentityResponse>, tonic::Status>
    {
        Ok(tonic::Response::new(self.reply.clone()))
    }
    async fn get_credentials_for_identity(
        &self,
        _: tonic::Request<pb::GetCredentialsForIdentityRequest>,
    ) -> Result<tonic::Response<pb::GetCredentialsForIdentityResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("floor"))
    }
}

/// `gateway-bench floor PORT TOKEN_LEN`: the floor server, in its own process.
async fn serve_floor(port: u16, token_len: usize) {
    let reply = pb::GetOpenIdTokenForDeveloperIdentityResponse {
        identity_id: "us-east-1:2ae28537-84a7-5535-afaa-2d5242aed59a".into(),
        token: "t".repeat(token_len),
        expires_at: Some(SystemTime::now().into()),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tonic::transport::Server::builder()
        .add_service(CognitoIdentityServiceServer::new(Floor { reply }))
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await
        .unwrap();
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

struct Load {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl Load {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies_us[i])
    }
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
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

/// `connections` HTTP/2 connections with `streams` callers each, for `time`.
async fn drive(port: u16, connections: usize, streams: usize, time: Duration) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let channel = connect(port).await;
        for _ in 0..streams {
            let mut client = CognitoIdentityServiceClient::new(channel.clone());
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut errors, mut latencies) = (0u64, 0u64, Vec::with_capacity(1 << 16));
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    match client
                        .get_open_id_token_for_developer_identity(request())
                        .await
                    {
                        Ok(_) => {
                            ok += 1;
                            latencies
                                .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        }
                        Err(_) => errors += 1,
                    }
                }
                (ok, errors, latencies)
            }));
        }
    }
    let started = Instant::now();
    tokio::time::sleep(time).await;
    stop.store(true, Ordering::Relaxed);
    let mut load = Load {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for task in tasks {
        let (ok, errors, latencies) = task.await.unwrap();
        load.requests += ok;
        load.errors += errors;
        load.latencies_us.extend(latencies);
    }
    load.elapsed = started.elapsed();
    load.latencies_us.sort_unstable();
    load
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

fn floor_server(token_len: usize) -> Server {
    let port = free_port();
    let me = std::env::current_exe().unwrap();
    let child = spawn(
        me.to_str().unwrap(),
        &["floor".into(), port.to_string(), token_len.to_string()],
        &[],
    );
    Server { child, port }
}

fn gateway_server(extra: &[&str], env: &[(&str, String)]) -> Server {
    let port = free_port();
    let mut args = vec![
        "--listen".to_owned(),
        format!("127.0.0.1:{port}"),
        "--admin-listen".into(),
        "off".into(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Server {
        child: spawn(BIN, &args, env),
        port,
    }
}

async fn measure(
    server: &Server,
    connections: usize,
    streams: usize,
    time: Duration,
) -> (Load, f64) {
    // Warm up: connections made, the cache filled.
    let _ = drive(server.port, 1, 4, Duration::from_millis(300)).await;
    let before = cpu_time(server.child.id());
    let load = drive(server.port, connections, streams, time).await;
    let cpu = cpu_time(server.child.id()) - before;
    let cpu_us_per_request = cpu.as_secs_f64() * 1e6 / load.requests.max(1) as f64;
    (load, cpu_us_per_request)
}

fn row(name: &str, shape: &str, load: &Load, cpu_us: f64) {
    println!(
        "| {name:<22} | {shape:>6} | {:>9.0} | {:>7.0} | {:>7.0} | {:>8.1} | {:>6} |",
        load.rps(),
        load.percentile(0.5),
        load.percentile(0.99),
        cpu_us,
        load.errors
    );
}

// ---------------------------------------------------------------- sections

async fn hit_path(time: Duration) {
    println!("\n## 1. Cache-hit path against the floor\n");
    println!(
        "Load: the same Rust tonic client for every server, GetOpenIdTokenForDeveloperIdentity with the same request; {time:?} per cell.\n"
    );
    println!("| server | shape | req/s | p50 µs | p99 µs | CPU µs/req | errors |");
    println!("|---|---|---|---|---|---|---|");
    let collector = start_collector().await;
    let floor = floor_server(900);
    let plain = gateway_server(&["--emulator"], &[]);
    let traced = gateway_server(
        &["--emulator"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.clone()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ],
    );
    let mut ratios = Vec::new();
    for (connections, streams) in [(1, 1), (4, 32), (16, 64)] {
        let shape = format!("{connections}x{streams}");
        let (f, fc) = measure(&floor, connections, streams, time).await;
        row("floor (bare tonic)", &shape, &f, fc);
        let (g, gc) = measure(&plain, connections, streams, time).await;
        row("gateway, tracing off", &shape, &g, gc);
        let (t, tc) = measure(&traced, connections, streams, time).await;
        row("gateway, tracing on", &shape, &t, tc);
        ratios.push((
            shape,
            g.rps() / f.rps(),
            t.rps() / f.rps(),
            g.percentile(0.5) - f.percentile(0.5),
        ));
    }
    println!("\n| shape | gateway/floor, tracing off | gateway/floor, tracing on | p50 added µs |");
    println!("|---|---|---|---|");
    for (shape, off, on, added) in ratios {
        println!(
            "| {shape} | {:.1} % | {:.1} % | {added:.0} |",
            off * 100.0,
            on * 100.0
        );
    }
}

async fn miss_path(samples: usize) {
    println!("\n## 2. The miss path: gateway (cache off) against the SDK calling the emulator\n");
    let emulator = emulator_server(&[]);
    let emulator_port = emulator.port;
    let endpoint = format!("http://127.0.0.1:{emulator_port}");
    let gateway = gateway_on(&emulator, &["--cache", "false"]);
    let _ = connect(emulator_port).await;

    let sdk_config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(aws_sdk_cognitoidentity::config::Credentials::new(
            "test", "test", None, None, "bench",
        ))
        .load()
        .await;
    let sdk = aws_sdk_cognitoidentity::Client::new(&sdk_config);
    let mut client = CognitoIdentityServiceClient::new(connect(gateway.port).await);

    let mut direct = Vec::with_capacity(samples);
    let mut through = Vec::with_capacity(samples);
    for i in 0..samples + 50 {
        let user = format!("miss-{i}");
        let started = Instant::now();
        sdk.get_open_id_token_for_developer_identity()
            .identity_pool_id(DEFAULT_POOL_ID)
            .logins(DEFAULT_DEVELOPER_PROVIDER, &user)
            .token_duration(3600)
            .send()
            .await
            .unwrap();
        let d = started.elapsed();
        let mut req = request();
        req.logins.insert(DEFAULT_DEVELOPER_PROVIDER.into(), user);
        req.principal_tags.clear();
        let started = Instant::now();
        client
            .get_open_id_token_for_developer_identity(req)
            .await
            .unwrap();
        let t = started.elapsed();
        if i >= 50 {
            direct.push(d.as_micros() as u32);
            through.push(t.as_micros() as u32);
        }
    }
    direct.sort_unstable();
    through.sort_unstable();
    let pct = |v: &[u32], p: f64| f64::from(v[((v.len() - 1) as f64 * p).round() as usize]);
    println!("{samples} sequential calls each, alternating, after 50 of warm-up.\n");
    println!("| path | p50 µs | p99 µs |");
    println!("|---|---|---|");
    println!(
        "| SDK -> emulator | {:.0} | {:.0} |",
        pct(&direct, 0.5),
        pct(&direct, 0.99)
    );
    println!(
        "| gRPC -> gateway (cache off) -> SDK -> emulator | {:.0} | {:.0} |",
        pct(&through, 0.5),
        pct(&through, 0.99)
    );
    println!(
        "| added by the gateway | {:.0} | {:.0} |",
        pct(&through, 0.5) - pct(&direct, 0.5),
        pct(&through, 0.99) - pct(&direct, 0.99)
    );
    drop(gateway);
}

async fn coalescing() {
    println!("\n## 3. Coalescing\n");
    let emulator = emulator_server(&[
        "--faults",
        r#"{"operations":{"GetOpenIdTokenForDeveloperIdentity":{"latency_ms":100}}}"#,
    ]);
    let emulator_port = emulator.port;
    let gateway = gateway_on(&emulator, &[]);
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
            let key = cache.keys().get_id(
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
                .get_or_fetch(key, move || std::future::ready(Ok(value.clone())))
                .await
                .unwrap();
        }
        cache.run_pending_tasks().await;
        let per_entry = (rss_bytes() - before) as f64 / f64::from(n);
        let stored = token_len + identity_len;
        println!("| {n} | {stored} | {per_entry:.0} | {} |", 2 * stored + 300);
        drop(cache);
    }
}

/// An OTLP gRPC collector that accepts and drops spans; returns its URL.
async fn start_collector() -> String {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    struct Sink;
    #[tonic::async_trait]
    impl TraceService for Sink {
        async fn export(
            &self,
            _: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Sink))
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
    let benching = raw.iter().any(|a| a == "--bench") || matches!(mode, Some("floor" | "load"));
    if listing || !benching {
        return;
    }
    let args: Vec<String> = raw.into_iter().filter(|a| a != "--bench").collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if args.first().map(String::as_str) == Some("floor") {
        runtime.block_on(serve_floor(
            args[1].parse().unwrap(),
            args[2].parse().unwrap(),
        ));
        return;
    }
    if args.first().map(String::as_str) == Some("load") {
        // Drives an already running server, for profiling it.
        let (port, seconds) = (args[1].parse().unwrap(), args[2].parse().unwrap());
        let load = runtime.block_on(drive(port, 4, 32, Duration::from_secs(seconds)));
        println!(
            "{:.0} req/s, p50 {} µs, {} errors",
            load.rps(),
            load.percentile(0.5),
            load.errors
        );
        return;
    }
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let only = args.first().cloned().unwrap_or_default();
    runtime.block_on(async {
        println!("# cognito-identity-gateway benchmark");
        if only.is_empty() || only == "hit" {
            hit_path(Duration::from_secs(seconds)).await;
        }
        if only.is_empty() || only == "miss" {
            miss_path(1000).await;
        }
        if only.is_empty() || only == "coalescing" {
            coalescing().await;
        }
        if only.is_empty() || only == "memory" {
            memory().await;
        }
    });
}
