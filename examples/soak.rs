//! The soak's driver (`scripts/soak [MINUTES]` builds and runs it): the
//! release gateway over the emulator, each a process of its own on
//! loopback, under a steady mixed load for MINUTES, with the gateway's
//! resident memory, open file descriptors and sockets sampled every 10 s
//! into a CSV, and each one's slope printed at the end.
//!
//! The load, about 300 calls a second over four connections: cache hits on
//! a hot set of developer users whose two-minute tokens the cache renews
//! ahead of expiry (refreshes), misses over a population whose tokens
//! expire between visits, credentials for hot identities, GetId calls,
//! and calls the caller policy denies. Every two minutes the emulator
//! injects an upstream fault for 30 s, in turn: errors with added latency,
//! throttling, and dropped connections (an outage, which opens the
//! circuit breaker).
//!
//! `soak GATEWAY_BINARY MINUTES OUT_DIR`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cognito_identity_gateway::emulator::{DEFAULT_DEVELOPER_PROVIDER, DEFAULT_POOL_ID};
use cognito_identity_gateway::proto as pb;
use pb::cognito_identity_service_client::CognitoIdentityServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

/// Calls a second, all workers together.
const RATE: f64 = 300.0;
/// Workers, and the connections they share.
const WORKERS: usize = 8;
const CONNECTIONS: usize = 4;
/// Hot developer users, and the life of their tokens.
const HOT_USERS: u64 = 50;
const HOT_TOKEN_SECONDS: i64 = 120;
/// The population misses are drawn from, and their tokens' life.
const COLD_USERS: u64 = 20_000;
const COLD_TOKEN_SECONDS: i64 = 60;
/// How often a sample is taken.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// A fault phase starts every this long, and lasts this long.
const FAULT_EVERY: Duration = Duration::from_secs(120);
const FAULT_FOR: Duration = Duration::from_secs(30);
/// The faults, in turn.
const FAULTS: [(&str, &str); 3] = [
    (
        "errors",
        r#"{"operations":{"*":{"error_rate":0.3,"latency_ms":100}}}"#,
    ),
    ("throttling", r#"{"operations":{"*":{"rate_limit":5}}}"#),
    ("outage", r#"{"drop_connections":true}"#),
];
const NO_FAULTS: &str = r#"{"operations":{}}"#;

// The tests' loopback helpers: a free port, a GET, a metric's series.
#[path = "../tests/support/loopback.rs"]
#[allow(dead_code)]
mod loopback;
use loopback::{free_port, http_get, series};

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `PUT /_emulator/faults` with `json`, over plain HTTP/1.1.
async fn set_faults(emulator: u16, json: &str) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", emulator))
        .await
        .unwrap();
    let request = format!(
        "PUT /_emulator/faults HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// The sum of a metric's samples, all labels together.
fn metric_sum(text: &str, name: &str) -> f64 {
    series(text, name)
        .filter(|(labels, _)| labels.is_empty() || labels.starts_with('{'))
        .fold(0.0, |sum, (_, v)| sum + v)
}

/// Resident bytes, open descriptors, and sockets among them, of `pid`.
fn sample(pid: u32) -> (u64, usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024;
    let (mut fds, mut sockets) = (0, 0);
    if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in entries.flatten() {
            fds += 1;
            if std::fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
            {
                sockets += 1;
            }
        }
    }
    (rss, fds, sockets)
}

// The benchmark's generator, one per worker.
#[path = "../benches/gateway/rng.rs"]
mod rng;
use rng::Rng;

fn developer(user: u64, seconds: i64) -> pb::GetOpenIdTokenForDeveloperIdentityRequest {
    pb::GetOpenIdTokenForDeveloperIdentityRequest {
        identity_pool_id: DEFAULT_POOL_ID.into(),
        logins: HashMap::from([(DEFAULT_DEVELOPER_PROVIDER.into(), format!("user-{user}"))]),
        token_duration_seconds: Some(seconds),
        ..Default::default()
    }
}

/// A developer token for `user`, asked for as `caller`.
async fn developer_call(
    client: &mut CognitoIdentityServiceClient<Channel>,
    user: u64,
    seconds: i64,
    caller: &'static str,
) -> Result<tonic::Response<pb::GetOpenIdTokenForDeveloperIdentityResponse>, tonic::Status> {
    client
        .get_open_id_token_for_developer_identity(as_caller(developer(user, seconds), caller))
        .await
}

fn as_caller<T>(message: T, caller: &'static str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "x-caller",
        tonic::metadata::MetadataValue::from_static(caller),
    );
    request.set_timeout(Duration::from_secs(5));
    request
}

/// Outcomes by kind of call and gRPC code: how many, and the first
/// error's message.
type Tally = Arc<Mutex<BTreeMap<(&'static str, String), (u64, String)>>>;

async fn worker(
    mut client: CognitoIdentityServiceClient<Channel>,
    seed: u64,
    tally: Tally,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng(seed | 1);
    let gap = Duration::from_secs_f64(WORKERS as f64 / RATE);
    let mut next = tokio::time::Instant::now();
    // Each hot user's identity and latest token, for its credentials.
    let mut identities: HashMap<u64, (String, String)> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        next += gap;
        tokio::time::sleep_until(next).await;
        let roll = rng.uniform();
        let (kind, result) = if roll < 0.65 {
            let user = rng.below(HOT_USERS);
            let answer = developer_call(&mut client, user, HOT_TOKEN_SECONDS, "soak.svc").await;
            if let Ok(reply) = &answer {
                let reply = reply.get_ref();
                identities.insert(user, (reply.identity_id.clone(), reply.token.clone()));
            }
            ("hot", answer.map(|_| ()))
        } else if roll < 0.80 {
            let user = HOT_USERS + rng.below(COLD_USERS);
            let answer = developer_call(&mut client, user, COLD_TOKEN_SECONDS, "soak.svc").await;
            ("cold", answer.map(|_| ()))
        } else if roll < 0.88 {
            let user = rng.below(HOT_USERS);
            let Some((identity_id, token)) = identities.get(&user).cloned() else {
                continue;
            };
            let answer = client
                .get_credentials_for_identity(as_caller(
                    pb::GetCredentialsForIdentityRequest {
                        identity_id,
                        logins: HashMap::from([(
                            "cognito-identity.amazonaws.com".to_owned(),
                            token,
                        )]),
                        ..Default::default()
                    },
                    "soak.svc",
                ))
                .await;
            ("credentials", answer.map(|_| ()))
        } else if roll < 0.94 {
            let answer = client
                .get_id(as_caller(
                    pb::GetIdRequest {
                        identity_pool_id: DEFAULT_POOL_ID.into(),
                        ..Default::default()
                    },
                    "soak.svc",
                ))
                .await;
            ("get_id", answer.map(|_| ()))
        } else {
            let user = rng.below(HOT_USERS);
            let answer = developer_call(&mut client, user, HOT_TOKEN_SECONDS, "intruder.svc").await;
            ("denied", answer.map(|_| ()))
        };
        let (code, message) = match result {
            Ok(()) => ("OK".to_owned(), String::new()),
            Err(status) => (format!("{:?}", status.code()), status.message().to_owned()),
        };
        let mut tally = tally.lock().unwrap();
        let entry = tally.entry((kind, code)).or_insert((0, message));
        entry.0 += 1;
    }
}

/// Least-squares slope of `ys` over `xs`.
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, binary, minutes, out] = &args[..] else {
        eprintln!("usage: soak GATEWAY_BINARY MINUTES OUT_DIR");
        std::process::exit(2);
    };
    let minutes: f64 = minutes.parse().expect("MINUTES is a number");
    let out = std::path::PathBuf::from(out);
    std::fs::create_dir_all(&out).unwrap();

    let emulator_port = free_port();
    let _emulator = Process(
        Command::new(binary)
            .args(["emulator", "--default-pool", "--listen"])
            .arg(format!("127.0.0.1:{emulator_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(out.join("emulator.log")).unwrap())
            .spawn()
            .expect("the emulator starts"),
    );
    let policy = out.join("policy.yaml");
    std::fs::write(
        &policy,
        "mode: enforce\ncallers:\n  - name: soak\n    dns_names: [\"soak.svc\"]\n    allow:\n      - operations: \
         [GetId, GetOpenIdToken, GetCredentialsForIdentity, GetOpenIdTokenForDeveloperIdentity]\n        \
         identity_pools: [\"*\"]\n",
    )
    .unwrap();
    let (port, admin) = (free_port(), free_port());
    let gateway = Process(
        Command::new(binary)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args([
                "--endpoint-url",
                &format!("http://127.0.0.1:{emulator_port}"),
            ])
            .args(["--policy".as_ref(), policy.as_os_str()])
            .args(["--caller-identity-header", "x-caller"])
            .envs([
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(out.join("gateway.log")).unwrap())
            .spawn()
            .expect("the gateway starts"),
    );
    let pid = gateway.0.id();
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .timeout(Duration::from_secs(10));
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut tries = 0;
        let channel = loop {
            match endpoint.connect().await {
                Ok(channel) => break channel,
                Err(e) if tries < 200 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("the gateway never listened: {e}"),
            }
        };
        channels.push(channel);
    }

    let tally: Tally = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            tokio::spawn(worker(
                CognitoIdentityServiceClient::new(channels[i % CONNECTIONS].clone()),
                0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1),
                tally.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let csv_path = out.join("soak.csv");
    let mut csv = std::fs::File::create(&csv_path).unwrap();
    writeln!(csv, "seconds,rss_bytes,open_fds,sockets,calls,fault").unwrap();
    let started = Instant::now();
    let total = Duration::from_secs_f64(minutes * 60.0);
    let mut samples: Vec<(f64, u64, usize, usize)> = Vec::new();
    let mut fault: Option<&str> = None;
    let mut phase = 0;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut next_sample = Duration::ZERO;
    while started.elapsed() < total {
        ticker.tick().await;
        let elapsed = started.elapsed();
        // A fault from 90 s into each two-minute period, for 30 s.
        let into = Duration::from_secs(elapsed.as_secs() % FAULT_EVERY.as_secs());
        let wanted = (into >= FAULT_EVERY - FAULT_FOR).then(|| {
            let (name, _) = FAULTS[phase % FAULTS.len()];
            name
        });
        if wanted != fault {
            match wanted {
                Some(name) => {
                    let (_, json) = FAULTS[phase % FAULTS.len()];
                    set_faults(emulator_port, json).await;
                    println!("{:>6.0}s: fault {name} on", elapsed.as_secs_f64());
                }
                None => {
                    set_faults(emulator_port, NO_FAULTS).await;
                    phase += 1;
                    println!("{:>6.0}s: faults off", elapsed.as_secs_f64());
                }
            }
            fault = wanted;
        }
        if elapsed >= next_sample {
            next_sample += SAMPLE_EVERY;
            let (rss, fds, sockets) = sample(pid);
            let calls: u64 = tally.lock().unwrap().values().map(|v| v.0).sum();
            writeln!(
                csv,
                "{:.0},{rss},{fds},{sockets},{calls},{}",
                elapsed.as_secs_f64(),
                fault.unwrap_or("")
            )
            .unwrap();
            samples.push((elapsed.as_secs_f64(), rss, fds, sockets));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    set_faults(emulator_port, NO_FAULTS).await;

    println!("\ncalls by kind and gRPC code:");
    for ((kind, code), (n, message)) in tally.lock().unwrap().iter() {
        println!("  {kind:<12} {code:<18} {n:>8}  {message}");
    }
    // Slopes over all but the first tenth (the cache filling).
    let skip = samples.len() / 10;
    let kept = &samples[skip..];
    let hours: Vec<f64> = kept.iter().map(|s| s.0 / 3600.0).collect();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let series: [(&str, Vec<f64>, &str); 3] = [
        ("RSS", kept.iter().map(|s| mib(s.1)).collect(), "MiB"),
        ("open fds", kept.iter().map(|s| s.2 as f64).collect(), "fds"),
        (
            "sockets",
            kept.iter().map(|s| s.3 as f64).collect(),
            "sockets",
        ),
    ];
    println!(
        "\n{} samples over {:.1} min; slopes from {:.0} s on (least squares):",
        samples.len(),
        started.elapsed().as_secs_f64() / 60.0,
        kept.first().map_or(0.0, |s| s.0)
    );
    for (name, ys, unit) in &series {
        let (first, last) = (ys.first().unwrap_or(&0.0), ys.last().unwrap_or(&0.0));
        let min = ys.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "  {name:<9} {:+.2} {unit}/hour  (first {first:.1}, last {last:.1}, min {min:.1}, max {max:.1})",
            slope(&hours, ys)
        );
    }
    let (_, text) = http_get(admin, "/metrics").await;
    println!("\nthe gateway's own count (/metrics):");
    for name in [
        "gateway_cache_hits_total",
        "gateway_cache_misses_total",
        "gateway_cache_background_refreshes_total",
        "gateway_cache_stale_serves_total",
        "gateway_cache_coalesced_waits_total",
        "gateway_cache_evictions_total",
        "gateway_cache_entries",
        "gateway_upstream_circuit_changes_total",
        "gateway_policy_decisions_total",
    ] {
        println!("  {name:<42} {}", metric_sum(&text, name));
    }
    println!("\nCSV: {}", csv_path.display());
    drop(gateway);
}
