//! A token bucket: at most `rate` events a second on average, with bursts of
//! up to a second's worth (and at least one). Used by the cache to bound its
//! background refreshes and by the emulator to throttle like Cognito.

use std::time::Instant;

/// A token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` tokens a second.
    pub fn new(rate: f64) -> Self {
        let capacity = rate.max(1.0);
        Self {
            rate,
            capacity,
            tokens: capacity,
            at: None,
        }
    }

    /// Takes a token at `now` if one is there.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        }
        self.at = Some(now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
