//! Rate limits kept per peer address, for callers the policy cannot tell
//! apart by name: those with no identity (`anonymous`) and identified ones
//! no entry names (`unknown`). One shared limit would let one noisy peer
//! refuse every other; one limit per peer, in a bounded map that forgets
//! the least recently seen peers first, costs a bounded amount of memory
//! however many addresses an attacker uses.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use governor::DefaultDirectRateLimiter;
use moka::notification::RemovalCause;

use super::{PolicyMetrics, RateLimit};

/// Peers whose limits are kept at once, per limit. A peer's state is a few
/// dozen bytes; ten thousand is more distinct addresses than the sidecars
/// and nodes of a large cluster, and a megabyte or so at most.
const MAX_PEERS: u64 = 10_000;

/// How long a quiet peer's state is kept: longer than any burst takes to
/// refill at the slowest rate a policy allows would be an hour; a quiet
/// peer that comes back after ten minutes starts with a full burst, which
/// is what it would mostly have by then.
const IDLE: Duration = Duration::from_secs(600);

/// One limit, kept per peer address.
pub(super) struct PeerLimits {
    /// The policy's name for the callers it holds (`anonymous`, `unknown`).
    name: &'static str,
    limit: RateLimit,
    metrics: PolicyMetrics,
    peers: moka::sync::Cache<Option<IpAddr>, Arc<DefaultDirectRateLimiter>>,
}

impl std::fmt::Debug for PeerLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLimits")
            .field("name", &self.name)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl PeerLimits {
    /// `limit` for each peer of the callers called `name`.
    pub(super) fn new(name: &'static str, limit: RateLimit, metrics: PolicyMetrics) -> Self {
        let evictions = metrics.clone();
        let peers = moka::sync::Cache::builder()
            .max_capacity(MAX_PEERS)
            .time_to_idle(IDLE)
            .eviction_listener(move |_peer, _limiter, cause| {
                if cause == RemovalCause::Size {
                    evictions.peer_evicted(name);
                }
            })
            .build();
        Self {
            name,
            limit,
            metrics,
            peers,
        }
    }

    /// Counts a call from `peer` (`None`: an address not known, which all
    /// such calls share): how long until one would be admitted, when this
    /// one is over the limit.
    pub(super) fn over(&self, peer: Option<IpAddr>) -> Option<Duration> {
        let limiter = self.peers.get_with(peer, || {
            self.metrics
                .peers_held(self.name, self.peers.entry_count() + 1);
            Arc::new(super::limiter(self.limit))
        });
        super::over(&limiter)
    }

    /// Peers held now (settled first: the count is otherwise behind).
    #[cfg(test)]
    pub(super) fn held(&self) -> u64 {
        self.peers.run_pending_tasks();
        self.peers.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_peer_has_its_own_limit_and_the_map_is_bounded() {
        let limits = PeerLimits::new(
            "anonymous",
            RateLimit {
                per_second: 1.0,
                burst: 2,
            },
            PolicyMetrics::default(),
        );
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        assert_eq!(limits.over(a), None);
        assert_eq!(limits.over(a), None);
        assert!(limits.over(a).is_some(), "the third call of a burst of two");
        // Another peer is not held by the first one's calls.
        assert_eq!(limits.over(b), None);
        // A flood of addresses: the map keeps at most MAX_PEERS of them.
        for i in 0..(MAX_PEERS as u32 + 2_000) {
            let _ = limits.over(Some(IpAddr::from(i.to_be_bytes())));
        }
        assert!(limits.held() <= MAX_PEERS, "{}", limits.held());
    }
}
