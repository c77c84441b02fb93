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
    CacheOutcome, CacheStats, IdentityService, Operation, RequestContext, Served, Upstream,
    Upstreamed,
};
use crate::telemetry::metrics::metrics;

/// The gateway's [`IdentityService`] over an [`Upstream`].
#[derive(Debug)]
pub struct Gateway<U> {
    upstream: Arc<U>,
    cache: Option<TokenCache>,
}

impl<U: Upstream> Gateway<U> {
    /// A gateway that forwards to `upstream` through a cache with `cache`
    /// settings (none when they say it is off), reading time from `clock`.
    pub fn new(upstream: U, cache: CacheSettings, clock: Clock) -> Self {
        Self {
            upstream: Arc::new(upstream),
            cache: cache.enabled.then(|| TokenCache::new(cache, clock)),
        }
    }

    /// The cache, if on.
    pub fn cache(&self) -> Option<&TokenCache> {
        self.cache.as_ref()
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
        _ctx: &RequestContext,
        input: O,
    ) -> impl Future<Output = Served<O::Output>> + Send {
        // Whatever decides on the caller belongs here, first: a caller that
        // is refused must never read a token another caller cached.
        let key = match &self.cache {
            Some(cache) if cache.settings().caches(input.caching()) => Some(cache.key(&input)),
            _ => None,
        };
        let input = Arc::new(input);
        let upstream = self.upstream.clone();
        match (&self.cache, key) {
            (Some(cache), Some(key)) => Either::Left(cache.get_or_fetch(key, move || {
                let (upstream, input) = (upstream.clone(), input.clone());
                async move { send(&*upstream, &*input).await }
            })),
            // Boxed like the cache's miss path: the SDK's future is large.
            _ => Either::Right(Box::pin(async move {
                Served::upstream(send(&*upstream, &*input).await, CacheOutcome::Bypass)
            })),
        }
    }
}
