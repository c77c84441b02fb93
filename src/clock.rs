//! The gateway's clock for tokens' lives and upstream budgets: real time,
//! which tests may move forward and a benchmark may run faster.
//!
//! Tests cannot pause tokio's clock here: the upstream calls go over real
//! sockets, and a paused runtime that waits on a socket jumps to its next
//! timer, firing the SDK's timeouts. So the cache and the upstream guard
//! read time from this clock, and a test advances it by hand; the
//! production-shaped benchmark runs it many times faster than real time
//! ([`Clock::scaled`]) to pass many token lives in a minute, and whatever
//! waits on it sleeps for [`Clock::real`] of the wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Real time (sped up by `speed`) plus an offset that only tests set.
#[derive(Clone, Debug)]
pub struct Clock {
    offset_nanos: Arc<AtomicU64>,
    /// 1 in production.
    speed: f64,
    /// When a scaled clock started, on both clocks.
    origin: Instant,
    wall_origin: SystemTime,
}

impl Default for Clock {
    fn default() -> Self {
        Self::scaled(1.0)
    }
}

impl Clock {
    /// A clock that runs `speed` times as fast as real time (for
    /// benchmarks; 1 is real time).
    pub fn scaled(speed: f64) -> Self {
        Self {
            offset_nanos: Arc::default(),
            speed,
            origin: Instant::now(),
            wall_origin: SystemTime::now(),
        }
    }

    fn offset(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::Relaxed))
    }

    /// Real time since the origin, sped up.
    fn scaled_elapsed(&self) -> Duration {
        self.origin.elapsed().mul_f64(self.speed)
    }

    /// Monotonic now.
    pub fn now(&self) -> Instant {
        if self.speed == 1.0 {
            return Instant::now() + self.offset();
        }
        self.origin + self.scaled_elapsed() + self.offset()
    }

    /// Wall-clock now, for comparing with a token's `exp`.
    pub fn wall(&self) -> SystemTime {
        if self.speed == 1.0 {
            return SystemTime::now() + self.offset();
        }
        self.wall_origin + self.scaled_elapsed() + self.offset()
    }

    /// How long `wait` on this clock takes in real time.
    pub fn real(&self, wait: Duration) -> Duration {
        wait.div_f64(self.speed)
    }

    /// How long `real` time is on this clock.
    pub(crate) fn on_clock(&self, real: Duration) -> Duration {
        real.mul_f64(self.speed)
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaled_clock_runs_faster_and_still_moves_by_hand() {
        let clock = Clock::scaled(1000.0);
        let (t0, w0) = (clock.now(), clock.wall());
        std::thread::sleep(Duration::from_millis(20));
        let passed = clock.now() - t0;
        assert!(passed >= Duration::from_secs(20), "{passed:?}");
        assert!(clock.wall().duration_since(w0).unwrap() >= Duration::from_secs(20));
        assert_eq!(clock.real(Duration::from_secs(5)), Duration::from_millis(5));
        clock.advance(Duration::from_secs(3600));
        assert!(clock.now() - t0 >= Duration::from_secs(3620));
    }
}
