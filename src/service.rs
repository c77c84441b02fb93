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

use crate::cache::{CacheSettings, Clock, TokenCache};
use crate::domain::{
    CacheOutcome, CacheStats, Error, IdentityService, Operation, RequestContext, Served, Upstream,
    Upstreamed,
};
use crate::policy::{Decision, LivePolicy};
use crate::telemetry::metrics::metrics;

/// The gateway's [`IdentityService`] over an [`Upstream`].
#[derive(Debug)]
pub struct Gateway<U> {
    upstream: Arc<U>,
    cache: Option<TokenCache>,
    /// `None`: every caller may call everything.
    policy: Option<Arc<LivePolicy>>,
}

impl<U: Upstream> Gateway<U> {
    /// A gateway that forwards to `upstream` through a cache with `cache`
    /// settings (none when they say it is off), reading time from `clock`.
    pub fn new(upstream: U, cache: CacheSettings, clock: Clock) -> Self {
        Self {
            upstream: Arc::new(upstream),
            cache: cache.enabled.then(|| TokenCache::new(cache, clock)),
            policy: None,
        }
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

    /// The caller check: `Some` error when the policy refuses the call.
    /// Every decision is counted; in a dry run a refusal is logged and the
    /// call let through.
    fn check<O: Operation>(&self, ctx: &RequestContext, input: &O) -> Option<Error> {
        let policy = self.policy.as_ref()?.current();
        let operation = O::NAME;
        let decided = |caller: &str, dry_run: bool| {
            let label = if dry_run { "dry_run_deny" } else { "deny" };
            metrics().policy_decision(caller, operation.as_str(), label);
        };
        let (refusal, dry_run) = match policy.decide(&ctx.caller, &input.scope()) {
            Decision::Allow { caller } => {
                metrics().policy_decision(&caller, operation.as_str(), "allow");
                return None;
            }
            Decision::RateLimited {
                caller,
                retry_after,
                dry_run,
            } => {
                metrics().caller_rate_limited(&caller);
                let refusal = Error::CallerRateLimited {
                    caller,
                    operation,
                    retry_after,
                };
                (refusal, dry_run)
            }
            Decision::Deny {
                caller,
                why,
                dry_run,
            } => {
                decided(&caller, dry_run);
                let refusal = Error::PolicyDenied {
                    caller,
                    operation,
                    why,
                };
                (refusal, dry_run)
            }
            Decision::Unauthenticated { why, dry_run } => {
                decided(crate::policy::ANONYMOUS, dry_run);
                (Error::CallerUnauthenticated { operation, why }, dry_run)
            }
        };
        if dry_run {
            tracing::info!("dry run: the policy would refuse this call: {refusal}");
            return None;
        }
        Some(refusal)
    }
}

/// Sends `input` upstream and counts the call: the one place every upstream
/// call is made, for a caller or for a background refresh.
async fn send<O: Operation, U: Upstream>(upstream: &U, input: &O) -> Upstreamed<O::Output> {
    let sent = input.send(upstream).await;
    if let Some(call) = &sent.call {
        let code = call.error_type.as_deref().unwrap_or("OK");
        metrics().upstream_finished(call.operation.as_str(), code, call.elapsed);
    }
    sent
}

impl<U: Upstream> IdentityService for Gateway<U> {
    fn ready(&self) -> impl Future<Output = bool> + Send {
        self.upstream.reachable()
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
        if let Some(refusal) = self.check(ctx, &input) {
            return Either::Right(std::future::ready(Served::refused(refusal)));
        }
        let key = match &self.cache {
            Some(cache) if cache.settings().caches(input.caching()) => Some(cache.key(&input)),
            _ => None,
        };
        let input = Arc::new(input);
        let upstream = self.upstream.clone();
        Either::Left(match (&self.cache, key) {
            (Some(cache), Some(key)) => Either::Left(cache.get_or_fetch(key, move || {
                let (upstream, input) = (upstream.clone(), input.clone());
                async move { send(&*upstream, &*input).await }
            })),
            // Boxed like the cache's miss path: the SDK's future is large.
            _ => Either::Right(Box::pin(async move {
                Served::upstream(send(&*upstream, &*input).await, CacheOutcome::Bypass)
            })),
        })
    }
}
