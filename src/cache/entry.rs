//! What the cache holds: entries, an answer each with its lifetime, and
//! the expiry policy moka applies to them.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use super::{CacheKey, CacheSettings, Clock};
use crate::domain::{Answer, Lifetime};

/// Bytes an entry costs beyond its strings: the key, the entry, the `Arc`,
/// and moka's own bookkeeping (deques, timer wheel, hash table slot). An
/// estimate, checked by the memory benchmark.
const ENTRY_OVERHEAD_BYTES: usize = 320;

/// A cache entry. Its instants are worked out once, when it is made, so
/// that a hit only compares.
#[derive(Debug)]
pub(super) struct Entry {
    /// The answer, of the type its operation answers with ([`Answer`]).
    value: Box<dyn Any + Send + Sync>,
    /// The true expiry, on the monotonic clock.
    pub(super) expires: Instant,
    /// Served until then: the expiry less the safety margin or the life the
    /// caller must be left with, whichever is more.
    pub(super) serve_until: Instant,
    /// Renewed in the background when asked for from then on.
    pub(super) refresh_at: Instant,
    pub(super) refresh_claimed: AtomicBool,
    /// Set when moka drops or replaces the entry: a thread's front
    /// ([`super::front`]) then stops serving it.
    pub(super) retired: AtomicBool,
    pub(super) weight: u32,
}

/// What the cache needs to turn an answer into an entry.
#[derive(Clone, Debug)]
pub(super) struct Lifetimes {
    pub(super) clock: Clock,
    pub(super) settings: CacheSettings,
}

impl Lifetimes {
    /// An entry for `value`, or the value back when it cannot be cached (no
    /// expiry, or less life left than the safety margin). `valid_until`,
    /// when what the answer was obtained with expires, ends its life too.
    pub(super) fn entry<T: Answer>(
        &self,
        value: T,
        valid_until: Option<SystemTime>,
    ) -> Result<Entry, T> {
        let left = |until: SystemTime| until.duration_since(self.clock.wall()).ok();
        let (life, min_remaining) = match value.lifetime() {
            Lifetime::Stable => {
                let ttl = self.settings.identity_id_ttl;
                let life = match valid_until {
                    Some(until) => left(until).map(|l| l.min(ttl)),
                    None => Some(ttl),
                };
                (life, Duration::ZERO)
            }
            Lifetime::Until(expiry) => {
                let expiry = match (expiry, valid_until) {
                    (Some(e), Some(v)) => Some(e.min(v)),
                    (e, v) => e.or(v),
                };
                let life = expiry.and_then(left);
                let share = life.map(|l| l.mul_f64(self.settings.min_remaining_share));
                (life, share.unwrap_or_default())
            }
        };
        match life {
            Some(life) if life > self.settings.safety_margin => {
                let born = self.clock.now();
                let expires = born + life;
                let keep = min_remaining.max(self.settings.safety_margin);
                let bytes = value.bytes() + ENTRY_OVERHEAD_BYTES;
                Ok(Entry {
                    value: Box::new(value),
                    expires,
                    serve_until: expires.checked_sub(keep).unwrap_or(born),
                    refresh_at: born + life.mul_f64(self.settings.refresh_after_share),
                    refresh_claimed: AtomicBool::new(false),
                    retired: AtomicBool::new(false),
                    weight: u32::try_from(bytes).unwrap_or(u32::MAX),
                })
            }
            _ => Err(value),
        }
    }
}

impl Entry {
    /// The answer, if it is a `T`.
    pub(super) fn value<T: Answer>(&self) -> Option<&T> {
        self.value.downcast_ref()
    }

    /// Moka no longer holds it.
    pub(super) fn is_retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Still valid: before the true expiry minus the safety margin.
    pub(super) fn valid(&self, now: Instant, margin: Duration) -> bool {
        now + margin < self.expires
    }

    /// Valid, with enough life left to be useful to the caller.
    pub(super) fn servable(&self, now: Instant) -> bool {
        now < self.serve_until
    }

    /// Past the point where it should be renewed.
    pub(super) fn due_for_refresh(&self, now: Instant) -> bool {
        now >= self.refresh_at
    }
}

/// Makes moka expire each entry at its true expiry minus the margin.
pub(super) struct ExpireAtTokenExpiry {
    pub(super) clock: Clock,
    pub(super) margin: Duration,
}

impl ExpireAtTokenExpiry {
    fn left(&self, entry: &Entry) -> Option<Duration> {
        Some(
            entry
                .expires
                .saturating_duration_since(self.clock.now())
                .saturating_sub(self.margin),
        )
    }
}

impl moka::Expiry<CacheKey, Arc<Entry>> for ExpireAtTokenExpiry {
    fn expire_after_create(
        &self,
        _: &CacheKey,
        entry: &Arc<Entry>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        self.left(entry)
    }

    fn expire_after_update(
        &self,
        _: &CacheKey,
        entry: &Arc<Entry>,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.left(entry)
    }
}
