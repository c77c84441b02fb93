//! What the cache holds: entries, an answer each with its lifetime, and
//! the expiry policy moka applies to them.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::{CacheKey, CacheSettings, Clock};
use crate::domain::{Answer, Lifetime};

/// Bytes an entry costs beyond its strings: the key, the entry, the `Arc`,
/// and moka's own bookkeeping (deques, timer wheel, hash table slot). An
/// estimate, checked by the memory benchmark.
const ENTRY_OVERHEAD_BYTES: usize = 320;

/// The least time before a token stops being served that its renewal is
/// started by: an upstream call, a wait for a quota slot, and a retry fit.
pub(super) const REFRESH_LEAD: Duration = Duration::from_secs(5);

/// A key's next request is expected within this many of its last gaps.
const NEXT_REQUEST_WITHIN: u32 = 2;

/// Gaps between requests seen before an entry is judged busy or not.
const MIN_GAPS: u32 = 3;

/// An entry is busy when it is asked for at least this many times in the
/// time it is served.
const BUSY_SHARE: f64 = 50.0;

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
    /// Renewed in the background when asked for from then on, at the
    /// earliest ...
    pub(super) refresh_at: Instant,
    /// ... and by then at the latest: [`REFRESH_LEAD`] or a two-hundredth
    /// of its life before it stops being served, whichever is longer.
    pub(super) refresh_by: Instant,
    /// Requests at most this far apart make it busy (worth renewing).
    pub(super) busy_gap: Duration,
    /// When it was first asked for past `refresh_at`: nanoseconds after it,
    /// plus one; 0 for never.
    pub(super) first_seen: AtomicU64,
    /// Requests past `refresh_at` since that first one.
    pub(super) seen_since: AtomicU32,
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
                let serve_until = expires.checked_sub(keep).unwrap_or(born);
                let refresh_at = born + life.mul_f64(self.settings.refresh_after_share);
                let lead = REFRESH_LEAD.max(life / 200);
                let refresh_by = serve_until
                    .checked_sub(lead)
                    .unwrap_or(refresh_at)
                    .max(refresh_at);
                Ok(Entry {
                    value: Box::new(value),
                    expires,
                    serve_until,
                    refresh_at,
                    refresh_by,
                    busy_gap: serve_until
                        .saturating_duration_since(born)
                        .div_f64(BUSY_SHARE),
                    first_seen: AtomicU64::new(0),
                    seen_since: AtomicU32::new(0),
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
        self.retired.load(Ordering::Acquire)
    }

    /// Still valid: before the true expiry minus the safety margin.
    pub(super) fn valid(&self, now: Instant, margin: Duration) -> bool {
        now + margin < self.expires
    }

    /// Valid, with enough life left to be useful to the caller.
    pub(super) fn servable(&self, now: Instant) -> bool {
        now < self.serve_until
    }

    /// Whether it should be renewed now, asked for at `now`: only a busy
    /// entry (asked for at least [`BUSY_SHARE`] times in the time it is
    /// served, by the mean gap of its requests since `refresh_at`), not
    /// before `refresh_at`, and as late as is safe: once the next request
    /// could come after `refresh_by`. A renewal costs an upstream
    /// call and starts the new token's life early; for a busy key that is
    /// the price of never making a caller wait, for a quiet one it buys
    /// little: its next caller may well come after the token is due anyway.
    pub(super) fn due_for_refresh(&self, now: Instant) -> bool {
        if now < self.refresh_at {
            return false;
        }
        let since = now.duration_since(self.refresh_at);
        let mark = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        let first =
            match self
                .first_seen
                .compare_exchange(0, mark, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return false,
                Err(first) => first,
            };
        let seen = self.seen_since.fetch_add(1, Ordering::Relaxed) + 1;
        // The mean gap of its requests here: one gap alone says little of
        // a key asked for at random.
        if seen < MIN_GAPS || mark < first {
            return false;
        }
        let gap = Duration::from_nanos((mark - first) / u64::from(seen));
        gap <= self.busy_gap && now + gap * NEXT_REQUEST_WITHIN >= self.refresh_by
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OpenIdToken;

    fn entry(life: Duration) -> (Entry, Instant) {
        let lifetimes = Lifetimes {
            clock: Clock::default(),
            settings: CacheSettings::default(),
        };
        let born = lifetimes.clock.now();
        let token = OpenIdToken {
            identity_id: "us-east-1:x".into(),
            token: crate::domain::Secret::new("t".to_owned()),
            expires_at: Some(lifetimes.clock.wall() + life),
        };
        (lifetimes.entry(token, None).ok().unwrap(), born)
    }

    #[test]
    fn a_busy_key_is_renewed_late_and_a_quiet_one_not_at_all() {
        // 900 s: served until 450 s, renewable from 360 s, by 445 s; busy
        // when asked for at least every 9 s.
        let (busy, born) = entry(Duration::from_secs(900));
        let at = |ms: u64| born + Duration::from_millis(ms);
        assert!(!busy.due_for_refresh(at(300_000)));
        for ms in (361_000..=441_000).step_by(1000) {
            assert!(
                !busy.due_for_refresh(at(ms)),
                "a request a second, at {ms} ms"
            );
        }
        assert!(
            busy.due_for_refresh(at(444_000)),
            "a mean gap of about 1 s: due from 443 s"
        );
        // Asked for every 20 s: not busy, left to its next caller.
        let (quiet, born) = entry(Duration::from_secs(900));
        let at = |s: u64| born + Duration::from_secs(s);
        for s in (361..450).step_by(20) {
            assert!(!quiet.due_for_refresh(at(s)), "{s} s");
        }
        // Asked for every 8 s: busy, renewed at the request after which
        // the next could come too late.
        let (warm, born) = entry(Duration::from_secs(900));
        let at = |s: u64| born + Duration::from_secs(s);
        let due: Vec<u64> = (362..450)
            .step_by(8)
            .filter(|&s| warm.due_for_refresh(at(s)))
            .collect();
        assert_eq!(due.first(), Some(&434), "434 + 2 x 8 >= 445");
    }
}
