//! The cache's clock: real time, which tests may move forward.
//!
//! Tests cannot pause tokio's clock here: the cache's upstream calls go over
//! real sockets, and a paused runtime that waits on a socket jumps to its
//! next timer, firing the SDK's timeouts. So the cache reads time from this
//! clock, and a test advances it by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Real time plus an offset that only tests set.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_nanos: Arc<AtomicU64>,
}

impl Clock {
    fn offset(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::Relaxed))
    }

    /// Monotonic now.
    pub fn now(&self) -> Instant {
        Instant::now() + self.offset()
    }

    /// Wall-clock now, for comparing with a token's `exp`.
    pub fn wall(&self) -> SystemTime {
        SystemTime::now() + self.offset()
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}
