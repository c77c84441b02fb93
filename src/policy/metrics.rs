//! The policy's metrics: its decisions by caller, operation and decision,
//! the calls refused for a caller's rate limit, and the peers whose limits
//! are kept. (The policy file's reloads are counted where the file is
//! reloaded.)

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Verdict;
use crate::domain::OperationName;

/// Labels of a decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    /// The policy's name for the caller (`anonymous`, `unknown`, or a name
    /// the policy gives: a bounded set).
    caller: String,
    operation: OperationName,
    /// `allow`, `deny`, `dry_run_deny`.
    decision: Verdict,
}

/// The label of a caller's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallerLabel {
    caller: String,
}

/// The policy's metrics, shared by the policies a live policy puts in
/// force one after the other.
#[derive(Clone, Debug, Default)]
pub struct PolicyMetrics {
    decisions: Family<DecisionLabels, Counter>,
    rate_limited: Family<CallerLabel, Counter>,
    peers_held: Family<CallerLabel, Gauge>,
    peers_evicted: Family<CallerLabel, Counter>,
}

impl PolicyMetrics {
    /// Registers the families in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "gateway_policy_decisions",
            "Calls judged by the caller policy, by caller, operation and decision \
             (allow, deny, dry_run_deny)",
            self.decisions.clone(),
        );
        registry.register(
            "gateway_caller_rate_limited",
            "Calls refused because their caller was past its rate limit, by caller",
            self.rate_limited.clone(),
        );
        registry.register(
            "gateway_caller_rate_limit_peers",
            "Peer addresses whose rate limit is kept, by the policy's name for their callers \
             (anonymous, unknown); bounded, the least recently seen forgotten first",
            self.peers_held.clone(),
        );
        registry.register(
            "gateway_caller_rate_limit_peer_evictions",
            "Peer addresses whose rate limit was forgotten to keep the number of peers \
             bounded, by the policy's name for their callers",
            self.peers_evicted.clone(),
        );
    }

    /// The policy judged a call of `caller`'s.
    pub fn decision(&self, caller: &str, operation: OperationName, verdict: Verdict) {
        self.decision_series(caller, operation, verdict).inc();
    }

    /// The series of `caller`'s `verdict`s on `operation`, to be kept by
    /// whoever counts them (an atomic add a call, no lookup).
    pub(super) fn decision_series(
        &self,
        caller: &str,
        operation: OperationName,
        verdict: Verdict,
    ) -> Counter {
        self.decisions
            .get_or_create(&DecisionLabels {
                caller: caller.to_owned(),
                operation,
                decision: verdict,
            })
            .clone()
    }

    /// A call of `caller`'s was refused for its rate limit.
    pub fn rate_limited(&self, caller: &str) {
        self.rate_limited
            .get_or_create(&CallerLabel {
                caller: caller.to_owned(),
            })
            .inc();
    }

    /// `peers` peer addresses have a rate limit kept for `caller`.
    pub(super) fn peers_held(&self, caller: &str, peers: u64) {
        self.peers_held
            .get_or_create(&CallerLabel {
                caller: caller.to_owned(),
            })
            .set(i64::try_from(peers).unwrap_or(i64::MAX));
    }

    /// A peer's rate limit for `caller` was forgotten to bound their number.
    pub(super) fn peer_evicted(&self, caller: &str) {
        self.peers_evicted
            .get_or_create(&CallerLabel {
                caller: caller.to_owned(),
            })
            .inc();
    }
}
