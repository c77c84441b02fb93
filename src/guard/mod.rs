//! What stands between a cache miss and Cognito, so that a failing or slow
//! Cognito costs only what it must:
//!
//! - a limit on the callers waiting on Cognito at once
//!   (`--upstream-concurrency-limit`), below the whole process's
//!   (`--concurrency-limit`), so that calls stuck on a slow or dead
//!   upstream never take the slots cache hits need;
//! - the [`breaker`], which refuses at once calls that need Cognito while it
//!   is known to be down;
//! - the [`quota`] guard, which keeps this replica's calls to each
//!   operation within a budget a second.
//!
//! The breaker is asked first, so that a refused call takes nothing from a
//! budget. Every upstream call, a caller's or a background refresh's, goes
//! through [`Guard::admit`]; only callers take a waiting place
//! ([`Guard::take_waiting_place`]).

pub(crate) mod breaker;
mod metrics;
pub(crate) mod quota;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

pub use breaker::BreakerSettings;
pub(crate) use breaker::Ticket;
pub(crate) use metrics::GuardMetrics;
pub use quota::QuotaSettings;

use crate::clock::Clock;
use crate::domain::{Error, FetchFor, OperationName};

/// How the guard behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GuardSettings {
    /// Callers that may wait on Cognito at once; `None`: no limit.
    pub waiting_limit: Option<usize>,
    /// The circuit breaker.
    pub breaker: BreakerSettings,
    /// The budgets of upstream calls a second.
    pub quotas: QuotaSettings,
}

impl GuardSettings {
    /// Nothing guarded: no waiting limit, no breaker, no budget (for
    /// measuring the upstream itself, and tests of other things).
    pub fn off() -> Self {
        Self {
            waiting_limit: None,
            breaker: BreakerSettings {
                failures: 0,
                ..BreakerSettings::default()
            },
            quotas: QuotaSettings::off(),
        }
    }
}

/// The guard in front of the upstream.
#[derive(Debug)]
pub struct Guard {
    waiting: Arc<AtomicUsize>,
    waiting_limit: Option<usize>,
    breaker: breaker::Breaker,
    quotas: quota::Quotas,
    metrics: GuardMetrics,
}

impl Guard {
    /// A guard with `settings`: breaker closed, budgets full, spent on
    /// `clock`'s time (the breaker keeps real time: it judges a real
    /// upstream's failures).
    pub fn new(settings: GuardSettings, clock: Clock) -> Self {
        let metrics = GuardMetrics::default();
        Self {
            waiting: Arc::default(),
            waiting_limit: settings.waiting_limit,
            breaker: breaker::Breaker::new(settings.breaker, metrics.clone()),
            quotas: quota::Quotas::new(settings.quotas, clock, metrics.clone()),
            metrics,
        }
    }

    /// Registers its metrics in `registry`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    /// The breaker's state now.
    pub fn circuit(&self) -> breaker::State {
        self.breaker.state()
    }

    /// Callers waiting on Cognito now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// A caller's place among those waiting on Cognito, held until its
    /// answer comes; refused at once with [`Error::UpstreamBusy`] when they
    /// are all taken (it never waits for one).
    pub(crate) fn take_waiting_place(&self) -> Result<Waiting, Error> {
        let before = self.waiting.fetch_add(1, Ordering::AcqRel);
        let place = Waiting(self.waiting.clone());
        match self.waiting_limit {
            Some(limit) if before >= limit => {
                drop(place);
                self.metrics.busy();
                Err(Error::UpstreamBusy { limit })
            }
            _ => Ok(place),
        }
    }

    /// Admits one upstream call to `operation` made for `purpose`: refused
    /// at once while the breaker is open, then within the operation's
    /// budget (a caller may wait for a slot). The ticket says what became
    /// of the call.
    pub(crate) async fn admit(
        &self,
        operation: OperationName,
        purpose: FetchFor,
    ) -> Result<Ticket<'_>, Error> {
        let ticket = self.breaker.admit(Instant::now())?;
        self.quotas.acquire(operation, purpose).await?;
        Ok(ticket)
    }
}

/// A caller's place among those waiting on Cognito; given back on drop.
#[derive(Debug)]
pub(crate) struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_places_are_limited_and_given_back() {
        let guard = Guard::new(
            GuardSettings {
                waiting_limit: Some(2),
                ..GuardSettings::off()
            },
            Clock::default(),
        );
        let a = guard.take_waiting_place().unwrap();
        let _b = guard.take_waiting_place().unwrap();
        assert!(matches!(
            guard.take_waiting_place(),
            Err(Error::UpstreamBusy { limit: 2 })
        ));
        drop(a);
        assert!(guard.take_waiting_place().is_ok());
    }

    #[tokio::test]
    async fn an_open_breaker_refuses_at_once() {
        let guard = Guard::new(
            GuardSettings {
                breaker: BreakerSettings {
                    failures: 1,
                    ..BreakerSettings::default()
                },
                quotas: QuotaSettings::parse("GetId=2").unwrap(),
                waiting_limit: None,
            },
            Clock::default(),
        );
        let caller = FetchFor::Caller(None);
        guard
            .admit(OperationName::GetId, caller)
            .await
            .unwrap()
            .finished(Some(&Error::UpstreamTimeout));
        for _ in 0..10 {
            let refused = guard.admit(OperationName::GetId, caller).await;
            assert!(matches!(refused, Err(Error::CircuitOpen { .. })));
        }
        assert_eq!(guard.circuit().name(), "open");
    }
}
