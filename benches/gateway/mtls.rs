//! Section 5: the cache-hit path over mutual TLS, with a policy of 1,000
//! callers and the audit log on, against a bare tonic server serving the
//! same rustls TLS (tonic's own `ServerTlsConfig`, client certificates
//! required).
//!
//! h2load cannot show a client certificate, so the load comes from a
//! minimal HTTP/2 client of this file's own: the `h2` crate (hyper's) over
//! tokio-rustls, on one thread as h2load is, sending the same gRPC frame on
//! `connections` x `streams` and reading every reply to its trailers, where
//! it checks `grpc-status` itself. The same client drives both servers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::ServerName;

use super::certs::{Ca, Pem, client_config};
use super::{
    CognitoIdentityServiceServer, Floor, Server, cpu_time, free_port, gateway_server, percentile,
    request_frame, spawn,
};

const CALLERS: usize = 1_000;

fn caller_id(i: usize) -> String {
    format!("spiffe://example.org/ns/bench/sa/caller-{i:04}")
}

/// The files: a CA, the server's certificate, a client's (the last of the
/// policy's callers, the one a first-match policy finds last), the policy,
/// the audit key.
pub struct Pki {
    pub dir: PathBuf,
    client: Arc<rustls::ClientConfig>,
}

impl Pki {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("gateway-bench-pki-{}", std::process::id()));
        Self::create(&dir);
        Self {
            client: Self::client_config(&dir),
            dir,
        }
    }

    /// Writes the files to `dir`: `ca.crt`, `tls.crt`, `tls.key`,
    /// `client.crt`, `client.key`, `policy.yaml`, `audit.key`.
    pub fn create(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        let ca = Ca::new("benchmark CA");
        let server = ca.server();
        // The last of the policy's callers, the one a first-match policy
        // would find last.
        let client = ca.spiffe_client(&caller_id(CALLERS - 1));
        let mut policy = String::from("mode: enforce\ncallers:\n");
        for i in 0..CALLERS {
            policy.push_str(&format!(
                "  - name: caller-{i:04}\n    spiffe_ids: [\"{}\"]\n    allow:\n      - operations: [GetOpenIdTokenForDeveloperIdentity]\n        identity_pools: [\"{}\"]\n        login_providers: [\"{}\"]\n        principal_tag_keys: [\"team\"]\n        max_token_duration: 1h\n",
                caller_id(i),
                cognito_identity_gateway::emulator::DEFAULT_POOL_ID,
                cognito_identity_gateway::emulator::DEFAULT_DEVELOPER_PROVIDER,
            ));
        }
        for (name, contents) in [
            ("ca.crt", ca.pem()),
            ("tls.crt", server.cert),
            ("tls.key", server.key),
            ("policy.yaml", policy),
            ("audit.key", "benchmark-audit-key-0123456789".to_owned()),
            ("client.crt", client.cert),
            ("client.key", client.key),
        ] {
            std::fs::write(dir.join(name), contents).unwrap();
        }
    }

    /// The client's TLS: trusting the CA in `dir`, showing its certificate.
    pub fn client_config(dir: &Path) -> Arc<rustls::ClientConfig> {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
        let identity = Pem {
            cert: read("client.crt"),
            key: read("client.key"),
        };
        let mut client = client_config(&read("ca.crt"), &identity);
        client.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(client)
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `gateway-bench floor-tls PORT TOKEN_LEN DIR`: the floor over tonic's
/// own TLS with the certificates in DIR, client certificates required.
pub async fn serve_floor_tls(port: u16, token_len: usize, dir: &Path) {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(read("tls.crt"), read("tls.key")))
        .client_ca_root(Certificate::from_pem(read("ca.crt")));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(CognitoIdentityServiceServer::new(Floor::fixed(token_len)))
        .serve_with_incoming(incoming)
        .await
        .unwrap();
}

/// What one load run saw.
struct Load {
    ok: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

/// `requests` developer calls over `connections` mutual-TLS HTTP/2
/// connections with `streams` concurrent streams each, on one thread.
async fn drive(
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    connections: usize,
    streams: usize,
    requests: u64,
) -> Load {
    let body = Bytes::from(request_frame());
    let remaining = Arc::new(AtomicI64::new(requests as i64));
    let (ok, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut senders = Vec::new();
    for _ in 0..connections {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        tcp.set_nodelay(true).unwrap();
        let tls = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (sender, connection) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(connection);
        senders.push(sender);
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for sender in &senders {
        for _ in 0..streams {
            let (mut sender, body) = (sender.clone(), body.clone());
            let (remaining, ok, errors) = (remaining.clone(), ok.clone(), errors.clone());
            tasks.spawn_local(async move {
                let mut latencies = Vec::new();
                while remaining.fetch_sub(1, Ordering::Relaxed) > 0 {
                    let began = Instant::now();
                    let good = call(&mut sender, body.clone()).await;
                    latencies.push(began.elapsed().as_micros() as u32);
                    if good { &ok } else { &errors }.fetch_add(1, Ordering::Relaxed);
                }
                latencies
            });
        }
    }
    let mut latencies_us = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies_us.extend(done.unwrap());
    }
    let elapsed = start.elapsed();
    latencies_us.sort_unstable();
    Load {
        ok: ok.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latencies_us,
    }
}

/// One call; whether it ended with `grpc-status: 0`.
async fn call(sender: &mut h2::client::SendRequest<Bytes>, body: Bytes) -> bool {
    let request = http::Request::post(
        "https://localhost/cognito_identity_gateway.v1.CognitoIdentityService/GetOpenIdTokenForDeveloperIdentity",
    )
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .unwrap();
    let Ok(ready) = sender.clone().ready().await else {
        return false;
    };
    *sender = ready;
    let Ok((response, mut stream)) = sender.send_request(request, false) else {
        return false;
    };
    if stream.send_data(body, true).is_err() {
        return false;
    }
    let Ok(response) = response.await else {
        return false;
    };
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return false };
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    matches!(body.trailers().await, Ok(Some(t)) if t.get("grpc-status").is_some_and(|s| s == "0"))
}

/// `gateway-bench mtls-load PORT DIR C M N`: N calls over C x M, with the
/// client certificate in DIR (made by `gateway-bench pki DIR`), for
/// profiling by hand; prints what it saw.
pub fn load_by_hand(port: u16, dir: &Path, c: usize, m: usize, n: u64) {
    let tls = Pki::client_config(dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let load = tokio::task::LocalSet::new().block_on(&runtime, drive(port, tls, c, m, n));
    println!(
        "{} ok, {} errors in {:?}: {:.0} req/s, p50 {} µs",
        load.ok,
        load.errors,
        load.elapsed,
        load.ok as f64 / load.elapsed.as_secs_f64(),
        percentile(&load.latencies_us, 0.5)
    );
}

struct Cell {
    load: Load,
    cpu_us_per_request: f64,
}

impl Cell {
    fn rps(&self) -> f64 {
        self.load.ok as f64 / self.load.elapsed.as_secs_f64()
    }
}

/// A warm-up that fills the cache and times the rate, then a run lasting
/// about `time`, on a thread of its own with a one-thread runtime.
fn measure(
    server: &Server,
    tls: &Arc<rustls::ClientConfig>,
    c: usize,
    m: usize,
    time: Duration,
) -> Cell {
    let run = |requests: u64| {
        let (port, tls) = (server.port, tls.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, drive(port, tls, c, m, requests))
        })
        .join()
        .unwrap()
    };
    let warm = run(2_000);
    let rate = warm.ok as f64 / warm.elapsed.as_secs_f64();
    let requests = (rate * time.as_secs_f64()).max(1_000.0) as u64;
    let before = cpu_time(server.child.id());
    let load = run(requests);
    let cpu = cpu_time(server.child.id()) - before;
    Cell {
        cpu_us_per_request: cpu.as_secs_f64() * 1e6 / load.ok.max(1) as f64,
        load,
    }
}

fn row(name: &str, shape: &str, cell: &Cell) {
    println!(
        "| {name:<36} | {shape:>6} | {:>9.0} | {:>7.0} | {:>7.0} | {:>8.1} | {:>6} |",
        cell.rps(),
        percentile(&cell.load.latencies_us, 0.5),
        percentile(&cell.load.latencies_us, 0.99),
        cell.cpu_us_per_request,
        cell.load.errors
    );
}

pub async fn section(time: Duration, rounds: usize) {
    println!(
        "\n## 5. Cache-hit path over mutual TLS: 1,000-caller policy and audit log against bare tonic TLS\n"
    );
    let pki = Pki::new();
    let gateway = gateway_server(
        &[
            "--emulator",
            "--tls-cert",
            &pki.path("tls.crt"),
            "--tls-key",
            &pki.path("tls.key"),
            "--tls-client-ca",
            &pki.path("ca.crt"),
            "--policy",
            &pki.path("policy.yaml"),
            // Every line serialized, hashed and written; to /dev/null, so
            // that the figure is the gateway's and not this disk's.
            "--audit-log",
            "/dev/null",
            "--audit-hmac-key-file",
            &pki.path("audit.key"),
        ],
        &[],
    );
    // The floor's token is as long as the emulator's.
    let token_len = super::emulator_token_len().await;
    let floor = {
        let port = free_port();
        let me = std::env::current_exe().unwrap();
        let args = vec![
            "floor-tls".to_owned(),
            port.to_string(),
            token_len.to_string(),
            pki.dir.display().to_string(),
        ];
        Server {
            child: spawn(me.to_str().unwrap(), &args, &[]),
            port,
            admin: None,
        }
    };
    for server in [&gateway, &floor] {
        super::wait_listening(server.port).await;
    }
    println!(
        "Load: a one-thread HTTP/2 client (h2 over tokio-rustls, TLS 1.3, client certificate of the policy's last caller), {time:?} per cell, {rounds} rounds; errors are replies without grpc-status 0.\n"
    );
    println!("| server | shape | req/s | p50 µs | p99 µs | CPU µs/req | errors |");
    println!("|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for (c, m) in [(4, 32), (16, 64)] {
        let shape = format!("{c}x{m}");
        let mut rs = Vec::new();
        for _ in 0..rounds {
            let f = measure(&floor, &pki.client, c, m, time);
            row("floor (bare tonic, rustls mTLS)", &shape, &f);
            let g = measure(&gateway, &pki.client, c, m, time);
            row("gateway (mTLS, 1,000 callers, audit)", &shape, &g);
            rs.push(g.rps() / f.rps() * 100.0);
        }
        rs.sort_by(f64::total_cmp);
        ratios.push((shape, rs));
    }
    println!("\n| shape | gateway/floor req/s, median (lowest–highest) |\n|---|---|");
    for (shape, rs) in ratios {
        println!(
            "| {shape} | {:.1} % ({:.1}–{:.1}) |",
            rs[rs.len() / 2],
            rs[0],
            rs[rs.len() - 1]
        );
    }
}
