//! The guard's metrics: the breaker's state and its changes, the quota
//! guard's decisions and budgets, the callers refused for waiting room.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::domain::OperationName;

/// The kind of state the breaker is in, as a label value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(super) enum Circuit {
    Closed,
    Open,
    HalfOpen,
}

impl Circuit {
    const ALL: [Circuit; 3] = [Circuit::Closed, Circuit::Open, Circuit::HalfOpen];

    fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open => "open",
            Circuit::HalfOpen => "half_open",
        }
    }
}

/// What the quota guard did with an upstream call, as a label value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(super) enum QuotaOutcome {
    /// Within the budget.
    Sent,
    /// Sent after waiting for a slot.
    Waited,
    /// No slot before the caller's deadline.
    Refused,
    /// A background refresh left for later.
    RefreshDeferred,
}

impl QuotaOutcome {
    const ALL: [QuotaOutcome; 4] = [
        QuotaOutcome::Sent,
        QuotaOutcome::Waited,
        QuotaOutcome::Refused,
        QuotaOutcome::RefreshDeferred,
    ];

    fn as_str(self) -> &'static str {
        match self {
            QuotaOutcome::Sent => "sent",
            QuotaOutcome::Waited => "waited",
            QuotaOutcome::Refused => "refused",
            QuotaOutcome::RefreshDeferred => "refresh_deferred",
        }
    }
}

impl EncodeLabelValue for Circuit {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

impl EncodeLabelValue for QuotaOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: Circuit,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    operation: OperationName,
    outcome: QuotaOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: OperationName,
}

/// The guard's metrics, shared by its breaker and quota guard.
#[derive(Clone, Debug, Default)]
pub(crate) struct GuardMetrics {
    circuit_state: Family<StateLabel, Gauge>,
    circuit_changes: Family<StateLabel, Counter>,
    quota_decisions: Family<QuotaLabels, Counter>,
    quota_rates: Family<OperationLabel, Gauge<f64, AtomicU64>>,
    busy: Counter,
}

impl GuardMetrics {
    /// Registers the families in `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "gateway_upstream_circuit_state",
            "The upstream circuit breaker's state: 1 for the one it is in (closed: calls go \
             to Cognito; open: calls that need Cognito are refused at once; half_open: one \
             probe call at a time), 0 for the others",
            self.circuit_state.clone(),
        );
        registry.register(
            "gateway_upstream_circuit_changes",
            "Times the upstream circuit breaker entered a state, by state",
            self.circuit_changes.clone(),
        );
        registry.register(
            "gateway_upstream_quota_decisions",
            "Upstream calls judged by the quota guard, by operation and outcome (sent: \
             within the budget; waited: sent after waiting for a slot; refused: \
             UPSTREAM_QUOTA, no slot before the deadline; refresh_deferred: a background \
             refresh left for later)",
            self.quota_decisions.clone(),
        );
        registry.register(
            "gateway_upstream_quota_per_second",
            "This replica's budget of upstream calls a second, by operation (absent: none)",
            self.quota_rates.clone(),
        );
        registry.register(
            "gateway_upstream_concurrency_refusals",
            "Calls refused RESOURCE_EXHAUSTED (UPSTREAM_CONCURRENCY_LIMIT) because \
             --upstream-concurrency-limit calls were waiting on Cognito already",
            self.busy.clone(),
        );
        // Every state from the start, at 0: a rate or an alert over them
        // has a series to read before the first change.
        for state in Circuit::ALL {
            let _ = self.circuit_changes.get_or_create(&StateLabel { state });
        }
    }

    /// The breaker is in `state`.
    pub(super) fn circuit_state(&self, state: Circuit) {
        for other in Circuit::ALL {
            self.circuit_state
                .get_or_create(&StateLabel { state: other })
                .set(i64::from(other == state));
        }
    }

    /// The breaker entered `state`.
    pub(super) fn circuit_changed(&self, state: Circuit) {
        self.circuit_state(state);
        self.circuit_changes
            .get_or_create(&StateLabel { state })
            .inc();
    }

    /// The quota guard judged an upstream call to `operation`.
    pub(super) fn quota(&self, operation: OperationName, outcome: QuotaOutcome) {
        self.quota_decisions
            .get_or_create(&QuotaLabels { operation, outcome })
            .inc();
    }

    /// The budget of `operation`, calls a second, if it has one.
    pub(super) fn quota_rate(&self, operation: OperationName, rate: Option<f64>) {
        match rate {
            Some(rate) => {
                self.quota_rates
                    .get_or_create(&OperationLabel { operation })
                    .set(rate);
                for outcome in QuotaOutcome::ALL {
                    let _ = self
                        .quota_decisions
                        .get_or_create(&QuotaLabels { operation, outcome });
                }
            }
            None => {
                self.quota_rates.remove(&OperationLabel { operation });
            }
        }
    }

    /// A caller was refused because too many were waiting on Cognito.
    pub(super) fn busy(&self) {
        self.busy.inc();
    }
}
