//! The token cache, over `moka::future::Cache`: one upstream call per key
//! however many callers wait, tokens served only while they still have a
//! useful share of their life, popular entries refreshed in the background
//! before that share runs out, and still-valid tokens served when Cognito
//! fails. Keys are keyed hashes ([`key`]); values hold secrets only inside
//! [`crate::domain::Secret`]s.
//!
//! Time comes from a [`Clock`] that tests can move forward.

mod entry;
mod front;
mod key;

use std::any::Any;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::ops::compute::Op;

pub use crate::clock::Clock;
pub(crate) use key::{CacheKey, KeyMaker};

use entry::{Entry, ExpireAtTokenExpiry, Lifetimes};

use crate::domain::{
    Answer, CacheOutcome, CacheStats, Caching, Error, FetchFor, Operation, Served, UpstreamCall,
    Upstreamed,
};
use crate::rate::TokenBucket;

/// How the cache behaves.
#[derive(Clone, Debug)]
pub struct CacheSettings {
    /// Off: every call goes upstream (for measuring the miss path).
    pub enabled: bool,
    /// Cache GetOpenIdToken (GetOpenIdTokenForDeveloperIdentity always is).
    pub open_id_tokens: bool,
    /// Cache GetCredentialsForIdentity, until the credentials' Expiration.
    pub credentials: bool,
    /// Cache GetId (identity ids are stable), for `identity_id_ttl`.
    pub identity_ids: bool,
    /// How long a GetId answer is kept.
    pub identity_id_ttl: Duration,
    /// Entries expire this long before the token does (clock skew, and the
    /// time the caller needs to use it).
    pub safety_margin: Duration,
    /// A token is served only while at least this share of the life it was
    /// issued with remains.
    pub min_remaining_share: f64,
    /// An entry requested after this share of its life has passed may be
    /// renewed in the background (see `entry::Entry::due_for_refresh`).
    pub refresh_after_share: f64,
    /// At most this many background refreshes a second, so that they cannot
    /// themselves exceed Cognito's quota.
    pub refresh_rate: f64,
    /// Memory budget in bytes.
    pub max_bytes: u64,
}

impl CacheSettings {
    /// Whether answers of this kind are cached.
    pub fn caches(&self, caching: Caching) -> bool {
        self.enabled
            && match caching {
                Caching::Never => false,
                Caching::IdentityIds => self.identity_ids,
                Caching::OpenIdTokens => self.open_id_tokens,
                Caching::DeveloperTokens => true,
                Caching::Credentials => self.credentials,
            }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            open_id_tokens: true,
            credentials: true,
            identity_ids: true,
            identity_id_ttl: Duration::from_secs(3600),
            safety_margin: Duration::from_secs(30),
            min_remaining_share: 0.5,
            refresh_after_share: 0.4,
            // The upstream guard keeps refreshes within what callers leave
            // of each operation's budget; this only bounds their bursts.
            refresh_rate: 100.0,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// How long before a caller's deadline a still-valid token seen with too
/// little life left is served rather than waiting on for its renewal.
pub(crate) const STALE_RESERVE: Duration = Duration::from_millis(50);

/// Counters, kept here and read out as [`CacheStats`].
#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    refreshes: AtomicU64,
    stale_served: AtomicU64,
    evictions: AtomicU64,
}

/// Why moka's init future produced no entry: the upstream failed, or the
/// answer cannot be cached (it is handed to every waiter as it is).
enum Miss {
    Upstream(Error),
    Uncacheable(Box<dyn Any + Send + Sync>),
}

/// Whether a caller's own fetch ran: moka runs one waiter's init future
/// and hands its outcome to the rest, which coalesce on it.
#[derive(Debug, Default)]
enum OwnFetch {
    /// Another waiter's fetch answered this caller.
    #[default]
    NotRun,
    /// This caller's fetch ran, with the upstream call it made when one
    /// was recorded (none when the guard refused it).
    Ran(Option<Box<UpstreamCall>>),
}

/// The token cache.
pub struct TokenCache {
    cache: Cache<CacheKey, Arc<Entry>>,
    /// The settings, with the clock: what entries' lifetimes come from.
    lifetimes: Lifetimes,
    counters: Arc<Counters>,
    refresh_budget: Mutex<TokenBucket>,
    keys: KeyMaker,
    /// This cache's id in the threads' fronts ([`front`]).
    id: u64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache with `settings`, reading time from `clock`.
    pub fn new(settings: CacheSettings, clock: Clock) -> Self {
        let counters = Arc::new(Counters::default());
        let evictions = counters.clone();
        let cache = Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|_: &CacheKey, e: &Arc<Entry>| e.weight)
            .expire_after(ExpireAtTokenExpiry {
                clock: clock.clone(),
                margin: settings.safety_margin,
            })
            .eviction_listener(move |_, entry: Arc<Entry>, cause| {
                entry.retired.store(true, Ordering::Release);
                if cause.was_evicted() {
                    evictions.evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        Self {
            cache,
            refresh_budget: Mutex::new(TokenBucket::new(settings.refresh_rate)),
            lifetimes: Lifetimes { clock, settings },
            counters,
            keys: KeyMaker::new(),
            id: front::new_cache_id(),
        }
    }

    /// What it was built with.
    pub fn settings(&self) -> &CacheSettings {
        &self.lifetimes.settings
    }

    /// The key of `input`.
    pub fn key<O: Operation>(&self, input: &O) -> CacheKey {
        self.keys.key(input)
    }

    /// The counters now.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            coalesced: c.coalesced.load(Ordering::Relaxed),
            refreshes: c.refreshes.load(Ordering::Relaxed),
            stale_served: c.stale_served.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            entries: self.cache.entry_count(),
            bytes: self.cache.weighted_size(),
        }
    }

    /// Applies pending evictions and expiries now (moka does it lazily).
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }

    /// The answer for `key`: from the cache while servable, otherwise from
    /// `fetch`, called once however many callers ask at the same time; with
    /// how the cache answered and the upstream call made for this caller.
    ///
    /// A caller that has to wait on the upstream first takes its place with
    /// `take_place` (the guard's waiting limit), held until the answer comes. A
    /// still-valid token seen with too little life left is served instead
    /// of a retryable failure, and instead of waiting past `deadline`: the
    /// renewal is waited for until [`STALE_RESERVE`] before it.
    pub async fn get_or_fetch<T, F, Fut, A, P>(
        &self,
        key: CacheKey,
        deadline: Option<Instant>,
        take_place: A,
        fetch: F,
    ) -> Served<T>
    where
        T: Answer,
        A: FnOnce() -> Result<P, Error>,
        F: Fn(FetchFor) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Upstreamed<T>> + Send + 'static,
    {
        let mut stale = None;
        let entry = match front::get(self.id, &key) {
            Some(entry) => Some(entry),
            None => {
                let entry = self.cache.get(&key).await;
                if let Some(entry) = &entry {
                    front::put(self.id, key, entry);
                }
                entry
            }
        };
        if let Some(entry) = entry {
            let now = self.lifetimes.clock.now();
            if entry.servable(now) {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                self.refresh_if_due(key, &entry, now, &fetch);
                return served(entry.value(), CacheOutcome::Hit, None);
            }
            stale = Some(entry);
        }
        // The miss path holds moka's insertion and the upstream call, whose
        // futures are large: boxed, so that the hit path's future stays
        // small and cheap to move (a measured memmove hot spot).
        Box::pin(self.fetch_into(key, stale, deadline, take_place, fetch)).await
    }

    /// The miss path of [`Self::get_or_fetch`]: `stale` is the entry seen
    /// with too little life left, if any.
    async fn fetch_into<T, F, Fut, A, P>(
        &self,
        key: CacheKey,
        stale: Option<Arc<Entry>>,
        deadline: Option<Instant>,
        take_place: A,
        fetch: F,
    ) -> Served<T>
    where
        T: Answer,
        A: FnOnce() -> Result<P, Error>,
        F: Fn(FetchFor) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Upstreamed<T>> + Send + 'static,
    {
        let _waiting = match take_place() {
            Ok(place) => place,
            Err(refused) => {
                return self
                    .fall_back(key, stale, refused, CacheOutcome::Miss, None)
                    .await;
            }
        };
        if let Some(seen) = &stale {
            self.forget(key, seen).await;
        }
        let own = Arc::new(Mutex::new(OwnFetch::NotRun));
        let call = fetch(FetchFor::Caller(deadline));
        let init = Self::init(call, self.lifetimes.clone(), own.clone());
        let fetched = self.cache.try_get_with(key, init);
        let stale_for = self.stale_for(stale.as_ref(), deadline);
        let outcome = match stale_for {
            Some(wait) => match tokio::time::timeout(wait, fetched).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    let late = Error::UpstreamTimeout;
                    return self
                        .fall_back(key, stale, late, CacheOutcome::Miss, None)
                        .await;
                }
            },
            None => fetched.await,
        };
        let own = own
            .lock()
            .map(|mut own| std::mem::take(&mut *own))
            .unwrap_or_default();
        let (counter, label, upstream) = match own {
            OwnFetch::Ran(call) => (&self.counters.misses, CacheOutcome::Miss, call),
            OwnFetch::NotRun => (&self.counters.coalesced, CacheOutcome::Coalesced, None),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(entry) => served(entry.value(), label, upstream),
            Err(miss) => match &*miss {
                Miss::Uncacheable(value) => served(value.downcast_ref(), label, upstream),
                Miss::Upstream(err) => {
                    self.fall_back(key, stale, err.clone(), label, upstream)
                        .await
                }
            },
        }
    }

    /// Removes `seen` from the cache so that a fetch for `key` calls the
    /// upstream, unless another caller has replaced it already; the fetch
    /// puts it back if it fails.
    async fn forget(&self, key: CacheKey, seen: &Arc<Entry>) {
        self.cache
            .entry(key)
            .and_compute_with(|current| {
                std::future::ready(match current {
                    Some(c) if Arc::ptr_eq(c.value(), seen) => Op::Remove,
                    _ => Op::Nop,
                })
            })
            .await;
    }

    /// moka's init future for a caller's own fetch: the entry of what
    /// `call` answers, and in `own` that this fetch ran.
    async fn init<T, Fut>(
        call: Fut,
        lifetimes: Lifetimes,
        own: Arc<Mutex<OwnFetch>>,
    ) -> Result<Arc<Entry>, Miss>
    where
        T: Answer,
        Fut: Future<Output = Upstreamed<T>>,
    {
        let Upstreamed {
            result,
            call,
            valid_until,
        } = call.await;
        if let Ok(mut own) = own.lock() {
            *own = OwnFetch::Ran(call);
        }
        match result {
            Ok(value) => lifetimes
                .entry(value, valid_until)
                .map(Arc::new)
                .map_err(|value| Miss::Uncacheable(Box::new(value))),
            Err(e) => Err(Miss::Upstream(e)),
        }
    }

    /// How long a caller holding the still-valid `stale` token waits for
    /// its renewal: not past its deadline (real time; the reserve is the
    /// clock's). `None`: as long as the renewal takes.
    fn stale_for(&self, stale: Option<&Arc<Entry>>, deadline: Option<Instant>) -> Option<Duration> {
        let clock = &self.lifetimes.clock;
        match (stale, deadline) {
            (Some(entry), Some(deadline))
                if entry.valid(clock.now(), self.lifetimes.settings.safety_margin) =>
            {
                let left = clock.on_clock(deadline.saturating_duration_since(Instant::now()));
                Some(clock.real(left.saturating_sub(STALE_RESERVE)))
            }
            _ => None,
        }
    }

    /// A call the upstream could not answer (`err`): the still-valid
    /// `stale` token, if there is one and a retry could cure `err`, kept in
    /// the cache for the next caller; the error otherwise.
    async fn fall_back<T: Answer>(
        &self,
        key: CacheKey,
        stale: Option<Arc<Entry>>,
        err: Error,
        label: CacheOutcome,
        upstream: Option<Box<UpstreamCall>>,
    ) -> Served<T> {
        let now = self.lifetimes.clock.now();
        match stale {
            Some(entry)
                if err.is_retryable()
                    && entry.valid(now, self.lifetimes.settings.safety_margin) =>
            {
                self.counters.stale_served.fetch_add(1, Ordering::Relaxed);
                if matches!(err, Error::CircuitOpen { .. }) {
                    // Said once, when the breaker opened.
                    tracing::debug!("{err}; serving a still-valid cached token");
                } else {
                    tracing::warn!("upstream failed ({err}); serving a still-valid cached token");
                }
                let kept = entry.clone();
                self.cache
                    .entry(key)
                    .and_compute_with(|current| {
                        std::future::ready(match current {
                            None => Op::Put(kept),
                            Some(_) => Op::Nop,
                        })
                    })
                    .await;
                served(entry.value(), CacheOutcome::Stale, upstream)
            }
            _ => Served {
                result: Err(err),
                cache: Some(label),
                upstream,
            },
        }
    }

    /// Renews `entry` in the background if it is past its refresh point,
    /// nobody has started renewing it, and the refresh budget allows.
    fn refresh_if_due<T, F, Fut>(&self, key: CacheKey, entry: &Arc<Entry>, now: Instant, fetch: &F)
    where
        T: Answer,
        F: Fn(FetchFor) -> Fut,
        Fut: Future<Output = Upstreamed<T>> + Send + 'static,
    {
        if !entry.due_for_refresh(now) || entry.refresh_claimed.swap(true, Ordering::AcqRel) {
            return;
        }
        let allowed = self
            .refresh_budget
            .lock()
            .is_ok_and(|mut budget| budget.try_take(now));
        if !allowed {
            entry.refresh_claimed.store(false, Ordering::Release);
            return;
        }
        let call = fetch(FetchFor::Refresh);
        let cache = self.cache.clone();
        let lifetimes = self.lifetimes.clone();
        let counters = self.counters.clone();
        let entry = entry.clone();
        tokio::spawn(async move {
            let renewed = call.await;
            let renewed = match renewed.result {
                Ok(value) => lifetimes.entry(value, renewed.valid_until).ok(),
                // The guard's own refusals are counted and logged there.
                Err(err @ (Error::CircuitOpen { .. } | Error::UpstreamQuota { .. })) => {
                    tracing::debug!("background refresh deferred: {err}");
                    None
                }
                Err(err) => {
                    tracing::warn!("background refresh failed: {err}");
                    None
                }
            };
            match renewed {
                Some(new) => {
                    cache.insert(key, Arc::new(new)).await;
                    counters.refreshes.fetch_add(1, Ordering::Relaxed);
                }
                // A later request may try again, within the budget.
                None => entry.refresh_claimed.store(false, Ordering::Release),
            }
        });
    }
}

/// An answer the cache holds, reached with `cache`. It is of the type
/// asked for: keys carry the operation, and each operation has one answer
/// type.
fn served<T: Answer>(
    value: Option<&T>,
    cache: CacheOutcome,
    upstream: Option<Box<UpstreamCall>>,
) -> Served<T> {
    Served {
        result: value
            .cloned()
            .ok_or_else(|| Error::Internal("cache entry of the wrong kind".to_owned())),
        cache: Some(cache),
        upstream,
    }
}
