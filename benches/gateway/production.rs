//! Section 6: a production-shaped run of the cache and the upstream guard.
//!
//! Users are drawn from a Zipf distribution over a large population; each
//! asks for a developer token of its own duration (15, 30 or 60 min) or
//! for credentials; calls arrive as a Poisson stream. The gateway's clock
//! runs [`SPEED`] times faster than real time, so that two minutes pass two
//! hours of token lives; the upstream is a stand-in on the same clock (the
//! emulator's tokens follow real time), answering after 50 ms of that
//! clock and logging every call. Calls go to the service as the gRPC layer
//! hands them over, with a 5 s deadline of the clock's time.
//!
//! Printed: the upstream calls made against the least any cache could make
//! (per key, one per usable token life: a token is served while at least
//! half its life remains, so a key asked for at t needs a new token if its
//! last one was fetched before t minus half its life), the busiest
//! one-second window of upstream calls per operation against its quota, the
//! share of calls that waited on Cognito, and the calls that waited while
//! their key held a token the cache could serve (target: none).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cognito_identity_gateway::cache::CacheSettings;
use cognito_identity_gateway::clock::Clock;
use cognito_identity_gateway::domain::{
    CacheOutcome, Caller, Credentials, Error, GetCredentialsForIdentityInput,
    GetCredentialsForIdentityOutput, GetIdInput, GetIdOutput,
    GetOpenIdTokenForDeveloperIdentityInput, GetOpenIdTokenInput, IdentityService, OpenIdToken,
    Operation, OperationName, RequestContext, Secret, Upstream, Upstreamed,
};
use cognito_identity_gateway::emulator::{DEFAULT_DEVELOPER_PROVIDER, DEFAULT_POOL_ID};
use cognito_identity_gateway::guard::{BreakerSettings, GuardSettings, QuotaSettings};
use cognito_identity_gateway::service::Gateway;

use crate::rng::Rng;

/// How much faster than real time the gateway's clock runs. Faster, and
/// the scheduling jitter of a loaded two-core machine, multiplied, becomes
/// a sizeable share of a second.
const SPEED: f64 = 60.0;
/// Users.
const POPULATION: usize = 50_000;
/// Zipf exponent.
const ZIPF_S: f64 = 1.0;
/// Calls a second of the gateway's clock.
const RATE: f64 = 400.0;
/// Share of the calls that ask for credentials rather than a token.
const CREDENTIALS_SHARE: f64 = 0.25;
/// Token durations, by user number modulo 3.
const DURATIONS: [u64; 3] = [900, 1800, 3600];
/// Credentials' life, as Cognito gives them.
const CREDENTIALS_LIFE: u64 = 3600;
/// The stand-in upstream's latency, on the gateway's clock.
const UPSTREAM_LATENCY: Duration = Duration::from_millis(50);
/// The share of the run before measuring: a new replica's cache is cold,
/// and its first minutes are spent within the quotas filling it.
const WARM_UP: f64 = 1.0 / 3.0;
/// Callers' deadline, on the gateway's clock.
const DEADLINE: Duration = Duration::from_secs(5);

/// One upstream call, as the stand-in logged it.
struct Sent {
    operation: OperationName,
    user: u32,
    /// When it arrived, seconds on the clock since the start.
    at: f64,
}

/// Cognito on the benchmark's clock: answers every call, logs it.
struct Stand {
    clock: Clock,
    start: Instant,
    log: Mutex<Vec<Sent>>,
    serial: AtomicU64,
}

impl Stand {
    /// Logs a call as it arrives, and answers it after the latency.
    async fn answer(&self, operation: OperationName, user: u32) {
        let at = (self.clock.now() - self.start).as_secs_f64();
        self.log.lock().unwrap().push(Sent {
            operation,
            user,
            at,
        });
        tokio::time::sleep(self.clock.real(UPSTREAM_LATENCY)).await;
    }

    fn token(&self, life: u64) -> (Secret, Option<SystemTime>) {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        (
            Secret::new(format!("token-{n}")),
            Some(self.clock.wall() + Duration::from_secs(life)),
        )
    }
}

fn user_of(text: &str) -> u32 {
    text.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn identity_of(user: u32) -> String {
    format!("us-east-1:00000000-0000-4000-8000-{user:012}")
}

impl Upstream for Stand {
    async fn get_id(&self, _: &GetIdInput) -> Upstreamed<GetIdOutput> {
        Upstreamed::unrecorded(Err(Error::Internal("not in this workload".into())))
    }

    async fn get_open_id_token(&self, _: &GetOpenIdTokenInput) -> Upstreamed<OpenIdToken> {
        Upstreamed::unrecorded(Err(Error::Internal("not in this workload".into())))
    }

    async fn get_open_id_token_for_developer_identity(
        &self,
        input: &GetOpenIdTokenForDeveloperIdentityInput,
    ) -> Upstreamed<OpenIdToken> {
        let user = input
            .logins
            .map()
            .exposed()
            .next()
            .map_or(0, |(_, login)| user_of(&login));
        self.answer(OperationName::GetOpenIdTokenForDeveloperIdentity, user)
            .await;
        let life = input.token_duration.map_or(900, |d| u64::from(d.seconds()));
        let (token, expires_at) = self.token(life);
        Upstreamed::unrecorded(Ok(OpenIdToken {
            identity_id: identity_of(user),
            token,
            expires_at,
        }))
    }

    async fn get_credentials_for_identity(
        &self,
        input: &GetCredentialsForIdentityInput,
    ) -> Upstreamed<GetCredentialsForIdentityOutput> {
        let user = user_of(input.identity_id.as_str());
        self.answer(OperationName::GetCredentialsForIdentity, user)
            .await;
        let (secret, expiration) = self.token(CREDENTIALS_LIFE);
        Upstreamed::unrecorded(Ok(GetCredentialsForIdentityOutput {
            identity_id: identity_of(user),
            credentials: Credentials {
                access_key_id: Secret::new("ASIAEXAMPLE"),
                secret_key: secret.clone(),
                session_token: secret,
                expiration,
            },
        }))
    }
}

/// One call's record: which key, when it started, whether it waited on
/// the upstream, whether it was answered.
struct Call {
    operation: OperationName,
    user: u32,
    at: f64,
    outcome: Option<CacheOutcome>,
    waited: bool,
    refused: Option<&'static str>,
}

/// A token's usable life: served while at least half its life (and at
/// least the 30 s safety margin) remains.
fn usable(life: u64) -> f64 {
    let life = life as f64;
    life - (life * 0.5).max(30.0)
}

fn life_of(operation: OperationName, user: u32) -> u64 {
    match operation {
        OperationName::GetCredentialsForIdentity => CREDENTIALS_LIFE,
        _ => DURATIONS[user as usize % 3],
    }
}

pub async fn section(real: Duration) {
    println!("\n## 6. Production-shaped: Zipf users, several token lives, many lives in one run\n");
    let clock = Clock::scaled(SPEED);
    let start = clock.now();
    let stand = Arc::new(Stand {
        clock: clock.clone(),
        start,
        log: Mutex::new(Vec::new()),
        serial: AtomicU64::new(0),
    });
    let quotas = QuotaSettings::default();
    let gateway = Gateway::new(
        StandRef(stand.clone()),
        CacheSettings::default(),
        clock.clone(),
    )
    .with_guard(GuardSettings {
        waiting_limit: Some(512),
        breaker: BreakerSettings::default(),
        quotas,
    });
    let gateway = Arc::new(gateway);
    // The Zipf distribution's cumulative weights.
    let mut cdf = Vec::with_capacity(POPULATION);
    let mut total = 0.0;
    for rank in 1..=POPULATION {
        total += 1.0 / (rank as f64).powf(ZIPF_S);
        cdf.push(total);
    }
    let cdf: Vec<f64> = cdf.into_iter().map(|w| w / total).collect();

    let calls = Arc::new(Mutex::new(Vec::<Call>::new()));
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut next = 0.0f64;
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    while began.elapsed() < real {
        let now = (clock.now() - start).as_secs_f64();
        while next <= now {
            next += -rng.uniform().max(1e-12).ln() / RATE;
            let user = cdf.partition_point(|&c| c < rng.uniform()) as u32;
            let credentials = rng.uniform() < CREDENTIALS_SHARE;
            let (gateway, calls, clock) = (gateway.clone(), calls.clone(), clock.clone());
            tasks.spawn(async move {
                let ctx = RequestContext {
                    caller: Caller::Anonymous,
                    peer: None,
                    trace_id: None,
                    deadline: Some(Instant::now() + clock.real(DEADLINE)),
                };
                let at = (clock.now() - start).as_secs_f64();
                let login = vec![(
                    DEFAULT_DEVELOPER_PROVIDER.to_owned(),
                    format!("user-{user}"),
                )];
                let (operation, outcome, refused) = if credentials {
                    let input = GetCredentialsForIdentityInput::parse(
                        Some(identity_of(user)),
                        vec![("accounts.example.com".to_owned(), format!("login-{user}"))],
                        None,
                    );
                    answer(&*gateway, &ctx, input.unwrap()).await
                } else {
                    let input = GetOpenIdTokenForDeveloperIdentityInput::parse(
                        Some(DEFAULT_POOL_ID.to_owned()),
                        None,
                        login,
                        Vec::new(),
                        Some(DURATIONS[user as usize % 3] as i64),
                    );
                    answer(&*gateway, &ctx, input.unwrap()).await
                };
                let waited = !matches!(outcome, Some(CacheOutcome::Hit)) && refused.is_none();
                calls.lock().unwrap().push(Call {
                    operation,
                    user,
                    at,
                    outcome,
                    waited,
                    refused,
                });
            });
        }
        while tasks.try_join_next().is_some() {}
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while tasks.join_next().await.is_some() {}
    let span = (clock.now() - start).as_secs_f64();
    if let Some(cache) = gateway.cache() {
        let c = cache.stats();
        println!(
            "Cache counters over the whole run: {} hits, {} misses, {} coalesced, {} background \
             refreshes, {} entries at the end.\n",
            c.hits, c.misses, c.coalesced, c.refreshes, c.entries
        );
    }
    report(
        &calls.lock().unwrap(),
        &stand.log.lock().unwrap(),
        span,
        quotas,
        real,
    );
}

/// One call through the service: its operation, how the cache answered,
/// and the guard's reason if it was refused.
async fn answer<O: Operation>(
    gateway: &impl IdentityService,
    ctx: &RequestContext,
    input: O,
) -> (OperationName, Option<CacheOutcome>, Option<&'static str>) {
    let served = gateway.call(ctx, input).await;
    (
        O::NAME,
        served.cache,
        served.result.err().map(|e| reason(&e)),
    )
}

fn reason(err: &Error) -> &'static str {
    match err {
        Error::UpstreamQuota { .. } => "UPSTREAM_QUOTA",
        Error::UpstreamBusy { .. } => "UPSTREAM_CONCURRENCY_LIMIT",
        Error::CircuitOpen { .. } => "UPSTREAM_CIRCUIT_OPEN",
        _ => "other",
    }
}

fn report(calls: &[Call], sent: &[Sent], span: f64, quotas: QuotaSettings, real: Duration) {
    let warm = span * WARM_UP;
    // Each fetch counts for the share of its token's usable life that lies
    // in the measured window, the run's end included: keys that the cold
    // start put in step would otherwise count one renewal more or less at
    // either edge, whole.
    let weight = |fetched: f64, usable: f64| {
        let (from, to) = (fetched.max(warm), (fetched + usable).min(span));
        ((to - from) / usable).max(0.0)
    };
    println!(
        "{} calls over {:.0} min of the gateway's clock ({real:?} real, {SPEED}x), {POPULATION} \
         users (Zipf s = {ZIPF_S}), {RATE}/s, {:.0} % for credentials; token lives \
         {DURATIONS:?} s, credentials {CREDENTIALS_LIFE} s.\n",
        calls.len(),
        span / 60.0,
        CREDENTIALS_SHARE * 100.0
    );
    println!(
        "Measured from minute {:.0} on (a cold replica's cache filling within the quotas \
         before); each upstream call counts for the share of its token's usable life inside \
         that window, for the gateway and for the least any cache could make alike.\n",
        warm / 60.0
    );
    println!(
        "| operation | upstream calls made | weighted | least any cache could make, weighted \
         | ratio | busiest second (whole run) | quota |"
    );
    println!("|---|---|---|---|---|---|---|");
    // Per key, its calls' times and its answers' times.
    let mut asked: HashMap<(OperationName, u32), Vec<f64>> = HashMap::new();
    for call in calls {
        asked
            .entry((call.operation, call.user))
            .or_default()
            .push(call.at);
    }
    let mut answered: HashMap<(OperationName, u32), Vec<f64>> = HashMap::new();
    for s in sent {
        answered
            .entry((s.operation, s.user))
            .or_default()
            .push(s.at);
    }
    for operation in [
        OperationName::GetOpenIdTokenForDeveloperIdentity,
        OperationName::GetCredentialsForIdentity,
    ] {
        let mut least = 0.0f64;
        for ((op, user), times) in &asked {
            if *op != operation {
                continue;
            }
            let mut times = times.clone();
            times.sort_by(f64::total_cmp);
            let usable = usable(life_of(*op, *user));
            let mut covered_until = f64::NEG_INFINITY;
            for t in times {
                if t >= covered_until {
                    least += weight(t, usable);
                    covered_until = t + usable;
                }
            }
        }
        let mut all: Vec<f64> = sent
            .iter()
            .filter(|s| s.operation == operation)
            .map(|s| s.at)
            .collect();
        all.sort_by(f64::total_cmp);
        // The busiest second over the whole run, warm-up included.
        let (mut busiest, mut first) = (0usize, 0usize);
        let all = &all;
        for (i, &t) in all.iter().enumerate() {
            while all[first] <= t - 1.0 {
                first += 1;
            }
            busiest = busiest.max(i + 1 - first);
        }
        let ours: f64 = sent
            .iter()
            .filter(|s| s.operation == operation)
            .map(|s| weight(s.at, usable(life_of(s.operation, s.user))))
            .sum();
        let quota = quotas
            .rate(operation)
            .map_or("none".to_owned(), |q| format!("{q:.0}/s"));
        let made = all.iter().filter(|&&t| t >= warm).count();
        println!(
            "| {} | {made} | {ours:.0} | {least:.0} | {:.3} | {busiest} | {quota} |",
            operation.as_str(),
            ours / least.max(1.0),
        );
    }
    let measured: Vec<&Call> = calls.iter().filter(|c| c.at >= warm).collect();
    let waited = measured.iter().filter(|c| c.waited).count();
    let refused: HashMap<&str, usize> =
        measured
            .iter()
            .filter_map(|c| c.refused)
            .fold(HashMap::new(), |mut m, r| {
                *m.entry(r).or_default() += 1;
                m
            });
    // A call that waited while its key held a token the cache could serve:
    // one answered for the key at most `usable` before the call.
    let (mut needless, mut past_usable) = (0, 0);
    for call in measured.iter().filter(|c| c.waited) {
        let life = life_of(call.operation, call.user) as f64;
        let usable = usable(life as u64);
        // One whose key held a token past its usable life but not expired:
        // the cache serves it only when Cognito fails.
        if let Some(times) = answered.get(&(call.operation, call.user))
            && times
                .iter()
                .any(|&a| a + usable <= call.at && call.at < a + life - 30.0)
        {
            past_usable += 1;
        }
        if let Some(times) = answered.get(&(call.operation, call.user))
            && times
                .iter()
                .any(|&a| a + 1.0 < call.at && call.at < a + usable - 1.0)
        {
            needless += 1;
        }
    }
    let mut outcomes: HashMap<&str, usize> = HashMap::new();
    for call in &measured {
        *outcomes
            .entry(call.outcome.map_or("refused", CacheOutcome::as_str))
            .or_default() += 1;
    }
    println!("\nHow the cache answered: {outcomes:?}.");
    println!(
        "\n{waited} calls of {} measured ({:.2} %) waited on Cognito; refused: {refused:?}; calls \
         that waited while their key held a token the cache could serve: {needless}; calls \
         that waited while their key held an unexpired token with less than half its life \
         left (served only when Cognito fails): {past_usable}.",
        measured.len(),
        100.0 * waited as f64 / measured.len().max(1) as f64
    );
}

/// The stand-in behind an `Arc`, so that the section keeps its log.
struct StandRef(Arc<Stand>);

impl Upstream for StandRef {
    async fn get_id(&self, input: &GetIdInput) -> Upstreamed<GetIdOutput> {
        self.0.get_id(input).await
    }

    async fn get_open_id_token(&self, input: &GetOpenIdTokenInput) -> Upstreamed<OpenIdToken> {
        self.0.get_open_id_token(input).await
    }

    async fn get_open_id_token_for_developer_identity(
        &self,
        input: &GetOpenIdTokenForDeveloperIdentityInput,
    ) -> Upstreamed<OpenIdToken> {
        self.0.get_open_id_token_for_developer_identity(input).await
    }

    async fn get_credentials_for_identity(
        &self,
        input: &GetCredentialsForIdentityInput,
    ) -> Upstreamed<GetCredentialsForIdentityOutput> {
        self.0.get_credentials_for_identity(input).await
    }
}
