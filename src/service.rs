//! The identity service: what every gRPC call reaches once validated. It is
//! the seam where the caller's policy, the token cache and the upstream meet:
//! each call is answered from the cache when it can be, and otherwise sent
//! upstream once however many callers ask. The caller's deadline is the
//! tower stack's ([`crate::middleware`]): when it passes, the whole call,
//! upstream request included, is dropped there.

use std::future::Future;
use std::sync::Arc;

use crate::cache::{CacheKey, CacheSettings, CacheStats, Cacheable, Clock, KeyMaker, TokenCache};
use crate::domain::{
    GetCredentialsForIdentityInput, GetCredentialsForIdentityOutput, GetIdInput, GetIdOutput,
    GetOpenIdTokenForDeveloperIdentityInput, GetOpenIdTokenInput, IdentityService, OpenIdToken,
    RequestContext, Upstream,
};
use crate::error::Error;
use futures_util::future::Either;

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

    /// Answers `input` from the cache when `cacheable` and the cache is on,
    /// otherwise straight from the upstream. Not an `async fn`: the key is
    /// made here and the cache's future returned as it is, so that a hit's
    /// future is not nested (and moved) once more.
    fn answer<I, T, Fut>(
        &self,
        cacheable: fn(&CacheSettings) -> bool,
        key: fn(&KeyMaker, &I) -> CacheKey,
        input: I,
        call: fn(Arc<U>, Arc<I>) -> Fut,
    ) -> impl Future<Output = Result<T, Error>> + Send + '_
    where
        I: Send + Sync + 'static,
        T: Cacheable,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
    {
        let input = Arc::new(input);
        match &self.cache {
            Some(cache) if cacheable(cache.settings()) => {
                let key = key(cache.keys(), &input);
                let upstream = self.upstream.clone();
                Either::Left(cache.get_or_fetch(key, move || call(upstream.clone(), input.clone())))
            }
            _ => {
                crate::cache::record_outcome("bypass");
                // Boxed like the cache's miss path: the SDK's future is large.
                Either::Right(Box::pin(call(self.upstream.clone(), input)))
            }
        }
    }
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

    fn get_id(
        &self,
        _ctx: &RequestContext,
        input: GetIdInput,
    ) -> impl Future<Output = Result<GetIdOutput, Error>> + Send {
        // Only authenticated identities are stable: an unauthenticated GetId
        // makes a new identity each time, and sharing one between callers
        // would change what Cognito means, so it is never cached.
        let cacheable = if input.logins.map().is_empty() {
            |_: &CacheSettings| false
        } else {
            |s: &CacheSettings| s.identity_ids
        };
        self.answer(cacheable, KeyMaker::get_id, input, |u, i| async move {
            u.get_id(&i).await
        })
    }

    fn get_open_id_token(
        &self,
        _ctx: &RequestContext,
        input: GetOpenIdTokenInput,
    ) -> impl Future<Output = Result<OpenIdToken, Error>> + Send {
        self.answer(
            |s| s.open_id_tokens,
            KeyMaker::get_open_id_token,
            input,
            |u, i| async move { u.get_open_id_token(&i).await },
        )
    }

    fn get_open_id_token_for_developer_identity(
        &self,
        _ctx: &RequestContext,
        input: GetOpenIdTokenForDeveloperIdentityInput,
    ) -> impl Future<Output = Result<OpenIdToken, Error>> + Send {
        self.answer(
            |_| true,
            KeyMaker::developer,
            input,
            |u, i| async move { u.get_open_id_token_for_developer_identity(&i).await },
        )
    }

    fn get_credentials_for_identity(
        &self,
        _ctx: &RequestContext,
        input: GetCredentialsForIdentityInput,
    ) -> impl Future<Output = Result<GetCredentialsForIdentityOutput, Error>> + Send {
        self.answer(
            |s| s.credentials,
            KeyMaker::credentials,
            input,
            |u, i| async move { u.get_credentials_for_identity(&i).await },
        )
    }
}
