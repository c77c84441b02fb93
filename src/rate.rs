//! A token bucket: at most `rate` events a second on average, with bursts of
//! up to a second's worth (and at least one) or as many as asked. Used by
//! the cache to bound its background refreshes, by the emulator to throttle
//! like Cognito, and by the upstream quota guard, whose callers may also
//! reserve a slot to come and wait for it.

use std::time::{Duration, Instant};

/// A token bucket.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` tokens a second.
    pub(crate) fn new(rate: f64) -> Self {
        Self::with_burst(rate, rate.max(1.0))
    }

    /// A full bucket of `burst` tokens refilling at `rate` a second.
    pub(crate) fn with_burst(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            capacity: burst,
            tokens: burst,
            at: None,
        }
    }

    /// Tokens a second.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// The most it holds.
    pub(crate) fn capacity(&self) -> f64 {
        self.capacity
    }

    /// The tokens there at `now` (below zero: promised to reservations).
    pub(crate) fn level(&mut self, now: Instant) -> f64 {
        if let Some(at) = self.at {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        }
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
        self.tokens
    }

    /// Takes a token at `now` if one is there.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        if self.level(now) < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// Reserves the next token for a taker that may wait up to `max_wait`:
    /// how long to wait for it, or, refused (nothing taken), when it would
    /// have come.
    pub(crate) fn reserve(
        &mut self,
        now: Instant,
        max_wait: Duration,
    ) -> Result<Duration, Duration> {
        let left = self.level(now) - 1.0;
        let wait = if left >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-left / self.rate)
        };
        if wait > max_wait {
            return Err(wait);
        }
        self.tokens = left;
        Ok(wait)
    }

    /// Hands back a token taken or reserved and not used.
    pub(crate) fn give_back(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_a_seconds_worth_then_refills() {
        let mut bucket = TokenBucket::new(25.0);
        let t0 = Instant::now();
        assert_eq!((0..100).filter(|_| bucket.try_take(t0)).count(), 25);
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!((0..10).filter(|_| bucket.try_take(t1)).count(), 2);
    }

    #[test]
    fn slow_rates_still_allow_one() {
        let mut bucket = TokenBucket::new(0.01);
        let t0 = Instant::now();
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0 + Duration::from_secs(50)));
        assert!(bucket.try_take(t0 + Duration::from_secs(101)));
    }
}
