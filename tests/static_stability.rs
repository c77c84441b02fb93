//! Static stability: what callers get while Cognito fails, end to end. A
//! real gRPC client, the gateway with its guard, and on one loopback port
//! either the emulator (with its injected faults), nothing (killed), or a
//! black hole that accepts connections and never answers (a test double,
//! named as such: no real server hangs on demand).
//!
//! For each fault: the codes and ErrorInfo reasons callers get, how long
//! refused calls take once the breaker is open (printed), cached tokens
//! served (fresh and stale), `/readyz` 200 and `/upstreamz` 503, and
//! recovery without a restart of the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cognito_identity_gateway::cache::{CacheSettings, Clock};
use cognito_identity_gateway::emulator::{
    Emulator, EmulatorSettings, FaultSettings, OperationFaults,
};
use cognito_identity_gateway::guard::{BreakerSettings, GuardSettings, QuotaSettings};
use cognito_identity_gateway::proto::cognito_identity_service_client::CognitoIdentityServiceClient;
use cognito_identity_gateway::server::ServerSettings;
use cognito_identity_gateway::service::Gateway;
use cognito_identity_gateway::upstream::CognitoUpstream;
use support::loopback::http_get;
use support::{TestGateway, developer, emulator_upstream, set_faults};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

const DEVELOPER: &str = "GetOpenIdTokenForDeveloperIdentity";

/// What listens on the upstream's port.
enum Listening {
    Nothing,
    Emulator,
    BlackHole,
}

/// The upstream's one loopback port, and what listens on it: the emulator
/// (its state kept across restarts, as Cognito's is), nothing, or a black
/// hole. Stopping either closes its connections, as a killed process's.
struct SwitchedUpstream {
    port: u16,
    emulator: Arc<Emulator>,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl SwitchedUpstream {
    async fn start() -> Self {
        let emulator = Emulator::new(EmulatorSettings::default()).unwrap();
        emulator.add_default_pool();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut upstream = Self {
            port,
            emulator,
            running: None,
        };
        upstream.run(listener, Listening::Emulator);
        upstream
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn run(&mut self, listener: TcpListener, what: Listening) {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = match what {
            Listening::Nothing => return,
            Listening::Emulator => {
                let emulator = self.emulator.clone();
                tokio::spawn(cognito_identity_gateway::emulator::serve(
                    listener,
                    emulator,
                    async {
                        let _ = stopped.await;
                    },
                ))
            }
            Listening::BlackHole => tokio::spawn(black_hole(listener, stopped)),
        };
        self.running = Some((stop, task));
    }

    /// Puts `what` on the port, in place of whatever listened there.
    async fn switch(&mut self, what: Listening) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            task.await.unwrap();
        }
        if matches!(what, Listening::Nothing) {
            return;
        }
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.run(listener, what);
    }
}

/// Accepts connections and reads what they send, never answering, until
/// told to stop; then closes them all.
async fn black_hole(listener: TcpListener, stop: oneshot::Receiver<()>) {
    let mut held = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((mut socket, _)) = accepted else { continue };
                held.spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
        }
    }
}

/// The guard of these tests: a breaker that opens after 3 failures and
/// probes after a second; calls abandoned after 300 ms count as failures.
fn breaker() -> BreakerSettings {
    BreakerSettings {
        failures: 3,
        cooldown: Duration::from_secs(1),
        slow_call: Duration::from_millis(300),
    }
}

struct Rig {
    upstream: SwitchedUpstream,
    gateway: Arc<Gateway<CognitoUpstream>>,
    server: TestGateway,
    clock: Clock,
}

impl Rig {
    async fn start(guard: GuardSettings) -> Self {
        let upstream = SwitchedUpstream::start().await;
        let clock = Clock::default();
        let gateway = Gateway::new(
            emulator_upstream(&upstream.url()).await,
            CacheSettings::default(),
            clock.clone(),
        )
        .with_guard(guard);
        let gateway = Arc::new(gateway);
        let server =
            TestGateway::serve_with_admin(gateway.clone(), ServerSettings::default()).await;
        Self {
            upstream,
            gateway,
            server,
            clock,
        }
    }

    async fn client(&self) -> CognitoIdentityServiceClient<Channel> {
        self.server.client().await
    }

    fn circuit(&self) -> &'static str {
        self.gateway.guard().circuit().name()
    }

    async fn admin(&self, path: &str) -> u16 {
        http_get(self.server.admin.unwrap(), path).await.0
    }
}

/// The developer operation for `user`, with a deadline of `deadline`.
async fn token(
    client: &mut CognitoIdentityServiceClient<Channel>,
    user: &str,
    duration: i64,
    deadline: Duration,
) -> Result<String, Status> {
    let mut request = tonic::Request::new(developer(user, duration));
    request.set_timeout(deadline);
    client
        .get_open_id_token_for_developer_identity(request)
        .await
        .map(|r| r.into_inner().token)
}

/// The ErrorInfo reason of a failed call ("" without one).
fn reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

/// Whether a call ended because its deadline passed: DEADLINE_EXCEEDED
/// from the gateway, or CANCELLED by the client's own timer (tonic's client
/// enforces the deadline it sends, and its timer starts first).
fn deadline_passed(status: &Status) -> bool {
    match status.code() {
        Code::DeadlineExceeded => true,
        Code::Cancelled => status.message().contains("Timeout expired"),
        _ => false,
    }
}

/// The RetryInfo delay of a failed call.
fn retry_delay(status: &Status) -> Option<Duration> {
    status.get_details_retry_info().and_then(|r| r.retry_delay)
}

/// A fault the upstream shows.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Nothing listens: connections are refused.
    Gone,
    /// Connections are accepted and never answered.
    BlackHole,
    /// Every call answered InternalErrorException (HTTP 500).
    ServerErrors,
    /// Every call answered after 3 s, past the callers' deadline.
    Latency,
}

impl Fault {
    async fn begin(self, rig: &mut Rig) {
        let faults = |f: OperationFaults| {
            let mut settings = FaultSettings::default();
            settings.operations.insert("*".into(), f);
            rig.upstream.emulator.faults().set(settings).unwrap();
        };
        match self {
            Fault::Gone => rig.upstream.switch(Listening::Nothing).await,
            Fault::BlackHole => rig.upstream.switch(Listening::BlackHole).await,
            Fault::ServerErrors => faults(OperationFaults {
                error_rate: 1.0,
                ..OperationFaults::default()
            }),
            Fault::Latency => faults(OperationFaults {
                latency_ms: 3_000,
                ..OperationFaults::default()
            }),
        }
    }

    /// Ends the fault: the emulator back (restarted on the same port where
    /// it was gone), with no faults.
    async fn end(self, rig: &mut Rig) {
        rig.upstream
            .emulator
            .faults()
            .set(FaultSettings::default())
            .unwrap();
        if matches!(self, Fault::Gone | Fault::BlackHole) {
            rig.upstream.switch(Listening::Emulator).await;
        }
    }

    /// Whether `err` is what a caller gets from it before the breaker
    /// opens.
    fn first_answer(self, err: &Status) -> bool {
        match self {
            Fault::Gone => err.code() == Code::Unavailable && reason(err) == "UPSTREAM_UNREACHABLE",
            Fault::BlackHole | Fault::Latency => deadline_passed(err),
            Fault::ServerErrors => {
                err.code() == Code::Unavailable && reason(err) == "InternalErrorException"
            }
        }
    }
}

/// The callers' deadline in the fault tests: long enough for the SDK's
/// retry back-off on a refused connection.
const DEADLINE: Duration = Duration::from_millis(1_500);

/// A rig with the tests' breaker, and two tokens cached 200 s ago: "fresh"
/// (900 s, still served) and "aging" (300 s: less than half its life left,
/// not served while the upstream answers, but still valid).
async fn primed() -> (Rig, CognitoIdentityServiceClient<Channel>, String, String) {
    let rig = Rig::start(GuardSettings {
        breaker: breaker(),
        ..GuardSettings::off()
    })
    .await;
    let mut client = rig.client().await;
    let fresh = token(&mut client, "fresh", 900, DEADLINE).await.unwrap();
    let aging = token(&mut client, "aging", 300, DEADLINE).await.unwrap();
    rig.clock.advance(Duration::from_secs(200));
    (rig, client, fresh, aging)
}

/// One outage, start to end.
async fn outage(fault: Fault) {
    let (mut rig, mut client, fresh, aging) = primed().await;
    let second = DEADLINE;

    fault.begin(&mut rig).await;
    let mut failures = 0;
    for i in 0..10 {
        if rig.circuit() == "open" {
            break;
        }
        let err = token(&mut client, &format!("miss-{i}"), 900, second)
            .await
            .unwrap_err();
        // The client's timer fires just before the gateway drops the call
        // and counts the failure: the next call may find the breaker open.
        if reason(&err) == "UPSTREAM_CIRCUIT_OPEN" {
            break;
        }
        assert!(fault.first_answer(&err), "{fault:?}: {err:?}");
        failures += 1;
    }
    assert_eq!(rig.circuit(), "open", "{fault:?}");
    assert_eq!(
        failures, 3,
        "{fault:?}: opened after --upstream-circuit-failures"
    );

    // Open: refused at once, saying when to come back; nothing sent upstream.
    let sent_before = rig.upstream.emulator.calls(DEVELOPER);
    let mut took = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        let err = token(&mut client, &format!("refused-{i}"), 900, second)
            .await
            .unwrap_err();
        took.push(started.elapsed());
        assert_eq!(err.code(), Code::Unavailable, "{fault:?}: {err:?}");
        assert_eq!(reason(&err), "UPSTREAM_CIRCUIT_OPEN");
        let delay = retry_delay(&err).expect("RetryInfo");
        assert!(
            delay > Duration::ZERO && delay <= Duration::from_secs(1),
            "{delay:?}"
        );
    }
    assert_eq!(rig.upstream.emulator.calls(DEVELOPER), sent_before);
    let slowest = took.iter().max().unwrap();
    let mean = took.iter().sum::<Duration>() / 20;
    println!(
        "{fault:?}: with the breaker open, 20 refusals took {mean:?} on average, {slowest:?} at most"
    );
    assert!(*slowest < Duration::from_millis(500), "{fault:?}: {took:?}");

    // Cached tokens are served throughout, the stale one included.
    assert_eq!(
        token(&mut client, "fresh", 900, second).await.unwrap(),
        fresh
    );
    let started = Instant::now();
    assert_eq!(
        token(&mut client, "aging", 300, second).await.unwrap(),
        aging
    );
    assert_eq!(
        token(&mut client, "aging", 300, second).await.unwrap(),
        aging
    );
    println!(
        "{fault:?}: a stale token served twice in {:?}",
        started.elapsed()
    );
    assert!(rig.gateway.cache().unwrap().stats().stale_served >= 2);

    // Ready, so that the Service keeps the replica and its cache; the
    // upstream reported down.
    assert_eq!(rig.admin("/readyz").await, 200);
    assert_eq!(rig.admin("/upstreamz").await, 503);

    // Recovery, without a restart: once the fault ends, a probe after the
    // cooldown finds Cognito back.
    fault.end(&mut rig).await;
    let recovered = Instant::now();
    let mut answered = None;
    while recovered.elapsed() < Duration::from_secs(10) {
        match token(&mut client, "after", 900, second).await {
            Ok(t) => {
                answered = Some(t);
                break;
            }
            Err(err) => assert!(
                deadline_passed(&err)
                    || matches!(
                        reason(&err).as_str(),
                        "UPSTREAM_CIRCUIT_OPEN" | "UPSTREAM_UNREACHABLE"
                    ),
                "{err:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered.is_some(), "{fault:?}: never recovered");
    println!(
        "{fault:?}: recovered {:?} after the fault ended",
        recovered.elapsed()
    );
    assert_eq!(rig.circuit(), "closed");
    assert_eq!(rig.admin("/upstreamz").await, 200);
    // The stale token is renewed now.
    assert_ne!(
        token(&mut client, "aging", 300, second).await.unwrap(),
        aging
    );
}

#[tokio::test]
async fn upstream_gone_then_restarted_on_the_same_port() {
    outage(Fault::Gone).await;
}

#[tokio::test]
async fn upstream_a_black_hole() {
    outage(Fault::BlackHole).await;
}

#[tokio::test]
async fn upstream_answering_5xx() {
    outage(Fault::ServerErrors).await;
}

#[tokio::test]
async fn upstream_slower_than_the_callers_deadline() {
    outage(Fault::Latency).await;
}

#[tokio::test]
async fn a_429_storm_is_resource_exhausted_with_retry_info_and_leaves_the_breaker_closed() {
    let (rig, mut client, fresh, aging) = primed().await;
    let second = DEADLINE;
    // One call in a thousand seconds: every call is throttled.
    set_faults(
        &rig.upstream.emulator,
        "*",
        OperationFaults {
            rate_limit: Some(0.001),
            ..OperationFaults::default()
        },
    );
    let _spend_the_one_token = token(&mut client, "spent", 900, second).await;
    for i in 0..10 {
        let err = token(&mut client, &format!("throttled-{i}"), 900, second)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        assert_eq!(reason(&err), "TooManyRequestsException");
        assert!(retry_delay(&err).is_some(), "RetryInfo on throttling");
    }
    // Throttling says Cognito is up: no breaker, no 503 on /upstreamz.
    assert_eq!(rig.circuit(), "closed");
    assert_eq!(rig.admin("/upstreamz").await, 200);
    assert_eq!(rig.admin("/readyz").await, 200);
    assert_eq!(
        token(&mut client, "fresh", 900, second).await.unwrap(),
        fresh
    );
    assert_eq!(
        token(&mut client, "aging", 300, second).await.unwrap(),
        aging
    );
    rig.upstream
        .emulator
        .faults()
        .set(FaultSettings::default())
        .unwrap();
    assert!(token(&mut client, "after", 900, second).await.is_ok());
}

/// Latency percentiles of `n` sequential cache hits.
async fn hit_latencies(
    client: &mut CognitoIdentityServiceClient<Channel>,
    n: usize,
) -> Vec<Duration> {
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        token(client, "hot", 900, Duration::from_secs(5))
            .await
            .expect("a cache hit is answered");
        took.push(started.elapsed());
    }
    took.sort();
    took
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

#[tokio::test]
async fn hits_keep_their_latency_while_1000_misses_wait_on_a_black_hole() {
    // No breaker: the waiting limit alone must keep the hits' slots.
    let mut rig = Rig::start(GuardSettings {
        waiting_limit: Some(512),
        ..GuardSettings::off()
    })
    .await;
    let mut hits = rig.client().await;
    token(&mut hits, "hot", 900, Duration::from_secs(1))
        .await
        .unwrap();
    let before = hit_latencies(&mut hits, 200).await;
    rig.upstream.switch(Listening::BlackHole).await;

    let mut misses = JoinSet::new();
    for connection in 0..10 {
        let client = rig.client().await;
        for i in 0..100 {
            let mut client = client.clone();
            misses.spawn(async move {
                let started = Instant::now();
                let user = format!("miss-{connection}-{i}");
                let result = token(&mut client, &user, 900, Duration::from_secs(3)).await;
                (result, started.elapsed())
            });
        }
    }
    // The most callers waiting on the upstream at once, as the guard counts.
    let peak = {
        let gateway = rig.gateway.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            for _ in 0..300 {
                peak = peak.max(gateway.guard().waiting());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            peak
        })
    };
    // Let them all arrive and take their places.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = hit_latencies(&mut hits, 200).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(rig.server.channel().await);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(serving, 1, "health is SERVING");

    let (mut busy, mut timed_out) = (0, 0);
    let mut slowest_refusal = Duration::ZERO;
    while let Some(outcome) = misses.join_next().await {
        let (result, took) = outcome.unwrap();
        let err = result.expect_err("no miss is answered by a black hole");
        match reason(&err).as_str() {
            "UPSTREAM_CONCURRENCY_LIMIT" => {
                assert_eq!(err.code(), Code::ResourceExhausted);
                assert!(retry_delay(&err).is_some());
                busy += 1;
                slowest_refusal = slowest_refusal.max(took);
            }
            _ => {
                assert!(deadline_passed(&err), "{err:?}");
                timed_out += 1;
            }
        }
    }
    println!(
        "cache hits before: p50 {:?} p99 {:?}; while 1,000 misses wait on a black hole: p50 {:?} p99 {:?}",
        percentile(&before, 0.5),
        percentile(&before, 0.99),
        percentile(&during, 0.5),
        percentile(&during, 0.99)
    );
    println!(
        "misses: {timed_out} waited until their deadline, {busy} refused UPSTREAM_CONCURRENCY_LIMIT (slowest refusal {slowest_refusal:?})"
    );
    let peak = peak.await.unwrap();
    println!("the most callers waiting on the upstream at once: {peak}");
    assert_eq!(peak, 512, "the waiting limit, reached and never passed");
    assert_eq!(busy + timed_out, 1000);
    // The 512 that waited, and refusals that a loaded machine delivered
    // after the client's deadline.
    assert!(
        timed_out >= 512 && busy >= 400,
        "{timed_out} timed out, {busy} refused"
    );
    assert!(
        percentile(&during, 0.99) < Duration::from_millis(250),
        "hits kept their latency: {during:?}"
    );
    rig.upstream.switch(Listening::Nothing).await;
}

#[tokio::test]
async fn a_burst_of_500_distinct_misses_draws_no_throttling_under_cognitos_default_quotas() {
    let rig = Rig::start(GuardSettings {
        quotas: QuotaSettings::default(),
        waiting_limit: Some(512),
        ..GuardSettings::off()
    })
    .await;
    rig.upstream
        .emulator
        .faults()
        .set(FaultSettings::cognito_default_quotas())
        .unwrap();
    let started = Instant::now();
    let mut calls = JoinSet::new();
    for connection in 0..5 {
        let client = rig.client().await;
        for i in 0..100 {
            let mut client = client.clone();
            calls.spawn(async move {
                let user = format!("burst-{connection}-{i}");
                token(&mut client, &user, 900, Duration::from_secs(4)).await
            });
        }
    }
    let (mut ok, mut refused, mut late) = (0u64, 0u64, 0u64);
    while let Some(result) = calls.join_next().await {
        match result.unwrap() {
            Ok(_) => ok += 1,
            // A slot that came just before the deadline, and a call that
            // did not fit in what was left.
            Err(err) if deadline_passed(&err) => late += 1,
            Err(err) => {
                assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
                assert_eq!(reason(&err), "UPSTREAM_QUOTA", "{err:?}");
                let delay = retry_delay(&err).expect("RetryInfo");
                assert!(delay > Duration::ZERO, "{delay:?}");
                refused += 1;
            }
        }
    }
    let emulator = &rig.upstream.emulator;
    println!(
        "500 distinct misses in {:?}: {ok} answered, {refused} refused UPSTREAM_QUOTA, {late} past their deadline; the emulator counted {} calls and {} throttles",
        started.elapsed(),
        emulator.calls(DEVELOPER),
        emulator.throttled(DEVELOPER)
    );
    assert_eq!(
        emulator.throttled(DEVELOPER),
        0,
        "no TooManyRequestsException"
    );
    assert_eq!(ok + refused + late, 500);
    // A slot that came just before the deadline, on a loaded machine.
    assert!(late <= 50, "{late} calls given a slot too late");
    let sent = emulator.calls(DEVELOPER);
    assert!(
        (ok..=ok + late).contains(&sent),
        "{sent} sent, {ok} answered"
    );
    // Half a second's burst (25), then 50 a second for the rest of the
    // callers' 4 s, less the reserve left for the call itself.
    assert!(ok >= 150, "{ok} answered");
}

#[tokio::test]
async fn sigterm_under_load_loses_no_call() {
    let upstream = SwitchedUpstream::start().await;
    set_faults(
        &upstream.emulator,
        DEVELOPER,
        OperationFaults {
            latency_ms: 300,
            ..OperationFaults::default()
        },
    );
    let port = support::loopback::free_port();
    let (listen, url) = (format!("127.0.0.1:{port}"), upstream.url());
    let (mut child, log) = support::binary::gateway(
        &[
            "--listen",
            &listen,
            "--admin-listen",
            "off",
            "--endpoint-url",
            &url,
            "--region",
            support::REGION,
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    );
    let channel = support::binary::connect(port).await;
    let mut warm = CognitoIdentityServiceClient::new(channel);
    token(&mut warm, "hot", 900, Duration::from_secs(5))
        .await
        .unwrap();

    // Eight clients on their own connections, each a hit then a miss in
    // turn until the gateway stops answering.
    let mut load = JoinSet::new();
    for c in 0..8 {
        let channel = support::binary::connect(port).await;
        load.spawn(async move {
            let mut client = CognitoIdentityServiceClient::new(channel);
            let (mut misses, mut hits) = (0u64, 0u64);
            for i in 0.. {
                let hit = token(&mut client, "hot", 900, Duration::from_secs(10)).await;
                if let Err(err) = hit {
                    return (hits, misses, err);
                }
                hits += 1;
                let user = format!("load-{c}-{i}");
                match token(&mut client, &user, 900, Duration::from_secs(10)).await {
                    Ok(_) => misses += 1,
                    Err(err) => return (hits, misses, err),
                }
            }
            unreachable!()
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let signalled = Instant::now();
    support::binary::signal(&child, "TERM");
    let (mut hits, mut misses) = (0, 0);
    while let Some(ended) = load.join_next().await {
        let (h, m, err) = ended.unwrap();
        hits += h;
        misses += m;
        // Only calls the gateway never took are refused: UNAVAILABLE, safe
        // to retry elsewhere.
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    }
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let log = log.join().unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    println!(
        "SIGTERM under load: {hits} hits and {misses} misses answered; exited {:?} after the signal",
        signalled.elapsed()
    );
    // Every call that reached Cognito was answered: none lost mid-way.
    assert_eq!(upstream.emulator.calls(DEVELOPER), misses + 1);
    assert!(misses >= 8, "the load ran: {misses} misses");
    assert!(!log.contains("abandoning calls"), "{log}");
}
