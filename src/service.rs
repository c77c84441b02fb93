//! The identity service: what every gRPC call reaches once validated, the
//! one generic path the four operations share. Each call is answered from
//! the cache when its operation's answer may be cached, and otherwise sent
//! upstream; the cache makes one upstream call per key however many callers
//! ask. The caller's deadline is the tower stack's ([`crate::middleware`]):
//! when it passes, the whole call, upstream request included, is dropped
//! there.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::Either;

use futures_util::FutureExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::audit::{self, Auditor};
use crate::cache::{CacheSettings, TokenCache};
use crate::clock::Clock;
use crate::domain::{
    CacheOutcome, CacheStats, Error, FetchFor, IdentityService, Operation, OperationName,
    RequestContext, Served, Upstream, Upstreamed,
};
use crate::guard::{Guard, GuardSettings, breaker};
use crate::policy::{Decision, LivePolicy, Verdict};

/// The upstream and its guard, shared with every fetch the cache makes.
#[derive(Debug)]
struct Backend<U> {
    upstream: U,
    guard: Guard,
    calls: UpstreamMetrics,
}

/// Labels of an upstream call, the same on its count and its latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    operation: OperationName,
    /// `OK`, the Cognito error code, or the gateway's reason for a
    /// transport failure.
    code: String,
}

/// The upstream calls made, by operation and outcome, and their latency.
#[derive(Clone, Debug)]
struct UpstreamMetrics {
    calls: Family<UpstreamLabels, Counter>,
    latency: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
}

impl Default for UpstreamMetrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            // 100 µs to about 3.3 s, doubling: Cognito's answers land in
            // the middle.
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
            }),
        }
    }
}

impl UpstreamMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "cognito_upstream_calls",
            "Calls to Cognito Identity, by operation and outcome (OK or the error code)",
            self.calls.clone(),
        );
        registry.register(
            "cognito_upstream_duration_seconds",
            "Time a call to Cognito Identity took, retries included, by operation and outcome",
            self.latency.clone(),
        );
    }

    fn finished(&self, call: &crate::domain::UpstreamCall) {
        let labels = UpstreamLabels {
            operation: call.operation,
            code: call.error_type.as_deref().unwrap_or("OK").to_owned(),
        };
        self.latency
            .get_or_create(&labels)
            .observe(call.elapsed.as_secs_f64());
        self.calls.get_or_create(&labels).inc();
    }
}

/// The gateway's [`IdentityService`] over an [`Upstream`].
#[derive(Debug)]
pub struct Gateway<U> {
    backend: Arc<Backend<U>>,
    cache: Option<TokenCache>,
    /// `None`: every caller may call everything.
    policy: Option<Arc<LivePolicy>>,
    /// The audit log, if on.
    audit: Option<Auditor>,
    /// The time tokens' lives and upstream budgets are read from.
    clock: Clock,
}

impl<U: Upstream> Gateway<U> {
    /// A gateway that forwards to `upstream` through a cache with `cache`
    /// settings (none when they say it is off), reading time from `clock`.
    /// Its upstream is unguarded until [`Self::with_guard`].
    pub fn new(upstream: U, cache: CacheSettings, clock: Clock) -> Self {
        Self {
            backend: Arc::new(Backend {
                upstream,
                guard: Guard::new(GuardSettings::off(), clock.clone()),
                calls: UpstreamMetrics::default(),
            }),
            cache: cache.enabled.then(|| TokenCache::new(cache, clock.clone())),
            policy: None,
            audit: None,
            clock,
        }
    }

    /// Guards the upstream with `settings`: a limit on the callers waiting
    /// on it, the circuit breaker, the quota budgets.
    pub fn with_guard(mut self, settings: GuardSettings) -> Self {
        // Only the gateway holds its backend until it serves, and this is
        // called while it is being built.
        if let Some(backend) = Arc::get_mut(&mut self.backend) {
            backend.guard = Guard::new(settings, self.clock.clone());
        }
        self
    }

    /// Registers its metrics, and those of its guard, policy and audit
    /// log, in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        self.backend.calls.register(registry);
        self.backend.guard.register(registry);
        if let Some(policy) = &self.policy {
            policy.register(registry);
        }
        if let Some(audit) = &self.audit {
            audit.register(registry);
        }
    }

    /// The upstream's guard.
    pub fn guard(&self) -> &Guard {
        &self.backend.guard
    }

    /// The cache, if on.
    pub fn cache(&self) -> Option<&TokenCache> {
        self.cache.as_ref()
    }

    /// Judges every call by `policy`, if any, before anything else.
    pub fn with_policy(mut self, policy: Option<Arc<LivePolicy>>) -> Self {
        self.policy = policy;
        self
    }

    /// Writes the audit log, if `audit` is some.
    pub(crate) fn with_audit(mut self, audit: Option<Auditor>) -> Self {
        self.audit = audit;
        self
    }

    /// The caller check. Every decision is counted; in a dry run a refusal
    /// is logged, and the call let through.
    fn check<O: Operation>(&self, ctx: &RequestContext, input: &O) -> Checked {
        let Some(live) = &self.policy else {
            return Checked {
                caller: None,
                verdict: Verdict::NoPolicy,
                refusal: None,
            };
        };
        let operation = O::NAME;
        let decision = live.current().decide(&ctx.caller, ctx.peer, &input.scope());
        let verdict = decision.verdict();
        let (caller, refusal) = match decision {
            // Counted by the policy, on the caller's own series.
            Decision::Allow { caller } => {
                return Checked {
                    caller: Some(caller),
                    verdict,
                    refusal: None,
                };
            }
            // Counted as rate limited, not as a decision.
            Decision::RateLimited {
                caller,
                retry_after,
                ..
            } => {
                live.metrics().rate_limited(&caller);
                let refusal = Error::CallerRateLimited {
                    caller: caller.clone(),
                    operation,
                    retry_after,
                };
                (caller, refusal)
            }
            Decision::Deny { caller, why, .. } => {
                live.metrics().decision(&caller, operation, verdict);
                let refusal = Error::PolicyDenied {
                    caller: caller.clone(),
                    operation,
                    why,
                };
                (caller, refusal)
            }
            Decision::Unauthenticated { why, .. } => {
                let caller = crate::policy::ANONYMOUS;
                live.metrics().decision(caller, operation, verdict);
                let refusal = Error::CallerUnauthenticated { operation, why };
                (caller.to_owned(), refusal)
            }
        };
        let dry_run = verdict.dry_run_refusal();
        if dry_run {
            tracing::info!("dry run: the policy would refuse this call: {refusal}");
        }
        Checked {
            caller: Some(caller.into()),
            verdict,
            refusal: (!dry_run).then_some(refusal),
        }
    }
}

/// What the caller check found.
struct Checked {
    /// The policy's name for the caller; `None` without a policy.
    caller: Option<std::sync::Arc<str>>,
    verdict: Verdict,
    /// Why the call is refused, if it is.
    refusal: Option<Error>,
}

impl Checked {
    /// The caller's name for its audit line, taken out: the policy's name,
    /// or else the identity it showed. Taken once, as a call writes one
    /// line.
    fn take_caller_name(&mut self, ctx: &RequestContext) -> std::sync::Arc<str> {
        self.caller
            .take()
            .unwrap_or_else(|| audit::caller_name(&ctx.caller))
    }
}

/// Sends `input` upstream through the guard and counts the call: the one
/// place every upstream call is made, for a caller or for a background
/// refresh.
async fn send<O: Operation, U: Upstream>(
    backend: &Backend<U>,
    input: &O,
    purpose: FetchFor,
) -> Upstreamed<O::Output> {
    let ticket = match backend.guard.admit(O::NAME, purpose).await {
        Ok(ticket) => ticket,
        Err(refused) => return Upstreamed::unrecorded(Err(refused)),
    };
    let mut sent = input.send(&backend.upstream).await;
    ticket.finished(sent.result.as_ref().err());
    if sent.result.is_ok() {
        sent.valid_until = logins_expiry(input);
    }
    if let Some(call) = &sent.call {
        backend.calls.finished(call);
    }
    sent
}

/// When the first of the request's login tokens expires (a Cognito token,
/// any JWT login: read, not verified); an answer obtained with it is not
/// served past then, as Cognito would refuse the request by then.
fn logins_expiry<O: Operation>(input: &O) -> Option<std::time::SystemTime> {
    input
        .scope()
        .logins
        .iter()
        .filter_map(|(_, value)| crate::jwt::expiry(value.expose()))
        .min()
}

impl<U: Upstream> IdentityService for Gateway<U> {
    /// Reachable: the breaker closed (it knows of a hung or failing
    /// Cognito that still accepts connections) and a connection opens.
    fn upstream_reachable(&self) -> impl Future<Output = bool> + Send {
        let closed = matches!(self.backend.guard.circuit(), breaker::State::Closed { .. });
        let reachable = self.backend.upstream.reachable();
        async move { closed && reachable.await }
    }

    async fn cache_stats(&self) -> Option<CacheStats> {
        let cache = self.cache.as_ref()?;
        // moka counts entries lazily; settle them so the scrape is current.
        cache.run_pending_tasks().await;
        Some(cache.stats())
    }

    /// Not an `async fn`: the key is made here and the cache's future
    /// returned as it is, so that a hit's future is not nested (and moved)
    /// once more.
    fn call<O: Operation>(
        &self,
        ctx: &RequestContext,
        input: O,
    ) -> impl Future<Output = Served<O::Output>> + Send {
        // The caller check comes first: a caller that is refused must never
        // read a token another caller cached.
        let mut checked = self.check(ctx, &input);
        let input = Arc::new(input);
        if let Some(refusal) = checked.refusal.take() {
            if let Some(audit) = &self.audit {
                let caller = checked.take_caller_name(ctx);
                audit.refused(ctx, caller, checked.verdict, input, &refusal);
            }
            return Either::Right(std::future::ready(Served::refused(refusal)));
        }
        // A call that mints for any user is served only once its audit
        // line has a place.
        let audited = O::MINTS_FOR_ANY_USER || checked.verdict.dry_run_refusal();
        let reserved = match &self.audit {
            Some(audit) if audited => {
                let caller = checked.take_caller_name(ctx);
                match audit.reserve(ctx, caller, checked.verdict, &input, O::MINTS_FOR_ANY_USER) {
                    Ok(reserved) => reserved,
                    Err(refusal) => {
                        return Either::Right(std::future::ready(Served::refused(refusal)));
                    }
                }
            }
            _ => None,
        };
        let key = match &self.cache {
            Some(cache) if cache.settings().caches(input.caching()) => Some(cache.key(&*input)),
            _ => None,
        };
        let backend = self.backend.clone();
        let deadline = ctx.deadline;
        let guard = &self.backend.guard;
        let answered = match (&self.cache, key) {
            (Some(cache), Some(key)) => Either::Left(cache.get_or_fetch(
                key,
                deadline,
                || guard.take_waiting_place(),
                move |purpose| {
                    let (backend, input) = (backend.clone(), input.clone());
                    async move { send(&*backend, &*input, purpose).await }
                },
            )),
            // Boxed like the cache's miss path: the SDK's future is large.
            _ => Either::Right(Box::pin(async move {
                let _waiting = match backend.guard.take_waiting_place() {
                    Ok(place) => place,
                    Err(refused) => return Served::refused(refused),
                };
                let sent = send(&*backend, &*input, FetchFor::Caller(deadline)).await;
                Served::upstream(sent, CacheOutcome::Bypass)
            })),
        };
        Either::Left(answered.map(move |served| {
            if let Some(reserved) = reserved {
                reserved.answered(&served);
            }
            served
        }))
    }
}
