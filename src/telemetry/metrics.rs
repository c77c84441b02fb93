//! Prometheus metrics: requests per RPC and status code, latency, calls in
//! flight; upstream calls per operation and Cognito error code, with
//! latency; the token cache's counters; spans ended and exported; build
//! information. One registry per process, as Prometheus clients keep.

use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::domain::CacheStats;
use crate::proto::API_METHODS;

/// Labels of a gRPC call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// The method, e.g. `GetId`.
    pub rpc: &'static str,
    /// The gRPC status code name, e.g. `OK`.
    pub code: &'static str,
}

/// Labels of a latency series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    /// The method or operation.
    pub method: &'static str,
}

/// Labels of an upstream call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// The Cognito operation.
    pub operation: &'static str,
    /// `OK`, the Cognito error code, or the gateway's reason for a transport failure.
    pub code: String,
}

/// Labels of a caller policy's decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    /// The policy's name for the caller (`anonymous`, `unknown`, or a name
    /// the policy gives: a bounded set).
    pub caller: String,
    /// The operation.
    pub operation: &'static str,
    /// `allow`, `deny` or `dry_run_deny`.
    pub decision: &'static str,
}

/// The label of a caller's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallerLabel {
    /// The policy's name for the caller.
    pub caller: String,
}

/// The label of why something was done: an identity header set aside
/// (`untrusted_peer`, `malformed`, `repeated`, `ambiguous`,
/// `not_an_identity`), a connection closed (`max_age`,
/// `certificate_expired`, `client_ca_changed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The label of an outcome: a batch of spans sent to the trace collector,
/// a file reloaded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExportLabels {
    /// `ok` or `error`.
    outcome: &'static str,
}

/// Labels of the quota guard's decisions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    operation: &'static str,
    /// `sent`, `waited`, `refused` or `refresh_deferred`.
    outcome: &'static str,
}

/// The label of the circuit breaker's state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// The label of an operation's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

type Latency = Family<MethodLabel, Histogram, fn() -> Histogram>;

/// Latency buckets: 100 µs to about 3.3 s, doubling; a cache hit lands in
/// the first few, a Cognito call in the middle.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

/// The cache's counters as read for the scrape being encoded.
#[derive(Default)]
struct CacheCollector {
    stats: Mutex<Option<CacheStats>>,
}

impl std::fmt::Debug for CacheCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheCollector")
    }
}

impl prometheus_client::collector::Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = self.stats.lock().ok().and_then(|s| *s) else {
            return Ok(());
        };
        let counters = [
            (
                "gateway_cache_hits",
                "Answers served from the cache",
                stats.hits,
            ),
            (
                "gateway_cache_misses",
                "Answers fetched upstream for a caller",
                stats.misses,
            ),
            (
                "gateway_cache_coalesced_waits",
                "Callers that waited for another caller's upstream call",
                stats.coalesced,
            ),
            (
                "gateway_cache_background_refreshes",
                "Entries renewed in the background",
                stats.refreshes,
            ),
            (
                "gateway_cache_stale_serves",
                "Still-valid tokens served because the upstream failed",
                stats.stale_served,
            ),
            (
                "gateway_cache_evictions",
                "Entries removed by expiry or the memory budget",
                stats.evictions,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "gateway_cache_entries",
                "Entries in the cache",
                stats.entries,
            ),
            (
                "gateway_cache_bytes",
                "Bytes the cache holds, as weighed",
                stats.bytes,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// Number of gRPC status codes (OK = 0 to UNAUTHENTICATED = 16).
const CODES: usize = 17;

/// One API method's series, resolved from their families on first use so
/// that a call's books cost atomic adds, not a family lookup (a lock and a
/// hash of the labels) per series per call.
#[derive(Default)]
struct MethodSeries {
    requests: [OnceLock<Counter>; CODES],
    latency: OnceLock<Histogram>,
}

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RpcLabels, Counter>,
    request_latency: Latency,
    api: [MethodSeries; 4],
    in_flight: Gauge,
    upstream_calls: Family<UpstreamLabels, Counter>,
    upstream_latency: Latency,
    policy_decisions: Family<PolicyLabels, Counter>,
    rate_limited: Family<CallerLabel, Counter>,
    peer_limits_held: Family<CallerLabel, Gauge>,
    peer_limits_evicted: Family<CallerLabel, Counter>,
    identity_header_rejected: Family<ReasonLabel, Counter>,
    policy_reloads: Family<ExportLabels, Counter>,
    upstream_up: Gauge,
    circuit_state: Family<StateLabel, Gauge>,
    circuit_changes: Family<StateLabel, Counter>,
    quota_decisions: Family<QuotaLabels, Counter>,
    quota_rates: Family<OperationLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    upstream_busy: Counter,
    tls_reloads: Family<ExportLabels, Counter>,
    tls_handshakes: Family<ExportLabels, Counter>,
    connections_closed: Family<ReasonLabel, Counter>,
    audit_written: Counter,
    audit_dropped: Counter,
    audit_fallback: Counter,
    audit_refusals: Counter,
    spans_ended: Counter,
    spans_dropped: Counter,
    spans_exported: Family<ExportLabels, Counter>,
    cache: Arc<CacheCollector>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "grpc_server_requests",
            "gRPC calls finished, by method and status code",
            requests.clone(),
        );
        let request_latency: Latency = Family::new_with_constructor(latency_histogram);
        registry.register(
            "grpc_server_request_duration_seconds",
            "Time from a call's arrival to its status, by method",
            request_latency.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "grpc_server_in_flight_requests",
            "gRPC calls being served",
            in_flight.clone(),
        );
        let upstream_calls = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "cognito_upstream_calls",
            "Calls to Cognito Identity, by operation and outcome (OK or the error code)",
            upstream_calls.clone(),
        );
        let upstream_latency: Latency = Family::new_with_constructor(latency_histogram);
        registry.register(
            "cognito_upstream_duration_seconds",
            "Time a call to Cognito Identity took, retries included, by operation",
            upstream_latency.clone(),
        );
        let policy_decisions = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "gateway_policy_decisions",
            "Calls judged by the caller policy, by caller, operation and decision \
             (allow, deny, dry_run_deny)",
            policy_decisions.clone(),
        );
        let rate_limited = Family::<CallerLabel, Counter>::default();
        registry.register(
            "gateway_caller_rate_limited",
            "Calls refused because their caller was past its rate limit, by caller",
            rate_limited.clone(),
        );
        let peer_limits_held = Family::<CallerLabel, Gauge>::default();
        registry.register(
            "gateway_caller_rate_limit_peers",
            "Peer addresses whose rate limit is kept, by the policy's name for their callers \
             (anonymous, unknown); bounded, the least recently seen forgotten first",
            peer_limits_held.clone(),
        );
        let peer_limits_evicted = Family::<CallerLabel, Counter>::default();
        registry.register(
            "gateway_caller_rate_limit_peer_evictions",
            "Peer addresses whose rate limit was forgotten to keep the number of peers \
             bounded, by the policy's name for their callers",
            peer_limits_evicted.clone(),
        );
        let identity_header_rejected = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "gateway_caller_identity_header_rejected",
            "Calls whose --caller-identity-header was set aside, leaving the caller anonymous, \
             by reason (untrusted_peer: not from --caller-identity-header-trusted-peers; \
             malformed: does not parse; repeated: more than one header field; ambiguous: more \
             than one identity; not_an_identity: no well-formed SPIFFE id or DNS name)",
            identity_header_rejected.clone(),
        );
        let policy_reloads = Family::<ExportLabels, Counter>::default();
        registry.register(
            "gateway_policy_reloads",
            "Changes of the policy file, by outcome (ok: in force; error: refused, \
             the policy in force stays)",
            policy_reloads.clone(),
        );
        let upstream_up = Gauge::default();
        registry.register(
            "gateway_upstream_up",
            "1 when a connection to the upstream could be opened at the last check \
             (every 10 s, and on /upstreamz), 0 otherwise",
            upstream_up.clone(),
        );
        let circuit_state = Family::<StateLabel, Gauge>::default();
        registry.register(
            "gateway_upstream_circuit_state",
            "The upstream circuit breaker's state: 1 for the one it is in (closed: calls go \
             to Cognito; open: calls that need Cognito are refused at once; half_open: one \
             probe call at a time), 0 for the others",
            circuit_state.clone(),
        );
        let circuit_changes = Family::<StateLabel, Counter>::default();
        registry.register(
            "gateway_upstream_circuit_changes",
            "Times the upstream circuit breaker entered a state, by state",
            circuit_changes.clone(),
        );
        let quota_decisions = Family::<QuotaLabels, Counter>::default();
        registry.register(
            "gateway_upstream_quota_decisions",
            "Upstream calls judged by the quota guard, by operation and outcome (sent: \
             within the budget; waited: sent after waiting for a slot; refused: \
             UPSTREAM_QUOTA, no slot before the deadline; refresh_deferred: a background \
             refresh left for later)",
            quota_decisions.clone(),
        );
        let quota_rates =
            Family::<OperationLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "gateway_upstream_quota_per_second",
            "This replica's budget of upstream calls a second, by operation (absent: none)",
            quota_rates.clone(),
        );
        let upstream_busy = Counter::default();
        registry.register(
            "gateway_upstream_concurrency_refusals",
            "Calls refused RESOURCE_EXHAUSTED (UPSTREAM_CONCURRENCY_LIMIT) because \
             --upstream-concurrency-limit calls were waiting on Cognito already",
            upstream_busy.clone(),
        );
        let tls_reloads = Family::<ExportLabels, Counter>::default();
        registry.register(
            "gateway_tls_reloads",
            "Changes of the TLS certificate, key or client CA files, by outcome (ok: in \
             force for new handshakes; error: refused, the ones in force stay)",
            tls_reloads.clone(),
        );
        let tls_handshakes = Family::<ExportLabels, Counter>::default();
        registry.register(
            "gateway_tls_handshakes",
            "TLS handshakes on the API listener, by outcome (ok, refused, timeout)",
            tls_handshakes.clone(),
        );
        let connections_closed = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "gateway_connections_closed",
            "API connections the gateway told to close (GOAWAY) while in use, by reason \
             (max_age, certificate_expired: its client certificate expired, \
             client_ca_changed: the client CA in force no longer vouches for it)",
            connections_closed.clone(),
        );
        let audit_written = Counter::default();
        registry.register(
            "gateway_audit_lines_written",
            "Audit log lines written to the sink",
            audit_written.clone(),
        );
        let audit_dropped = Counter::default();
        registry.register(
            "gateway_audit_lines_dropped",
            "Audit log lines lost: refusals' lines or lines not required that the queue had \
             no room for, or lines neither the sink nor standard error would take",
            audit_dropped.clone(),
        );
        let audit_fallback = Counter::default();
        registry.register(
            "gateway_audit_lines_fallback",
            "Audit log lines written to standard error after \"audit-fallback: \", as the sink \
             had failed for --audit-fallback-after or still failed at shutdown",
            audit_fallback.clone(),
        );
        let audit_refusals = Counter::default();
        registry.register(
            "gateway_audit_refusals",
            "Calls refused UNAVAILABLE (AUDIT_UNAVAILABLE) because they could not be audited",
            audit_refusals.clone(),
        );
        let spans_ended = Counter::default();
        registry.register(
            "gateway_trace_spans_ended",
            "Spans finished and handed to the trace exporter's queue",
            spans_ended.clone(),
        );
        let spans_dropped = Counter::default();
        registry.register(
            "gateway_trace_spans_dropped",
            "Spans finished while the trace exporter's queue was full, and dropped",
            spans_dropped.clone(),
        );
        let spans_exported = Family::<ExportLabels, Counter>::default();
        registry.register(
            "gateway_trace_spans_exported",
            "Spans the trace exporter sent to the collector, by outcome (ok, error); \
             ended spans that never arrive here were dropped or wait in the queue",
            spans_exported.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register("gateway_build_info", "Build information; always 1", build);
        let cache = Arc::new(CacheCollector::default());
        registry.register_collector(Box::new(cache.clone()));
        Self {
            registry,
            requests,
            request_latency,
            api: Default::default(),
            in_flight,
            upstream_calls,
            upstream_latency,
            policy_decisions,
            rate_limited,
            peer_limits_held,
            peer_limits_evicted,
            identity_header_rejected,
            policy_reloads,
            upstream_up,
            circuit_state,
            circuit_changes,
            quota_decisions,
            quota_rates,
            upstream_busy,
            tls_reloads,
            tls_handshakes,
            connections_closed,
            audit_written,
            audit_dropped,
            audit_fallback,
            audit_refusals,
            spans_ended,
            spans_dropped,
            spans_exported,
            cache,
        }
    }

    /// A call started.
    pub fn call_started(&self) {
        self.in_flight.inc();
    }

    /// A call finished with `code` after `elapsed`.
    pub fn call_finished(&self, rpc: &'static str, code: tonic::Code, elapsed: Duration) {
        self.in_flight.dec();
        let labels = || RpcLabels {
            rpc,
            code: code_name(code),
        };
        let method = MethodLabel { method: rpc };
        match API_METHODS.iter().position(|m| std::ptr::eq(*m, rpc)) {
            Some(i) => {
                let series = &self.api[i];
                series.requests[code as usize % CODES]
                    .get_or_init(|| self.requests.get_or_create(&labels()).clone())
                    .inc();
                series
                    .latency
                    .get_or_init(|| self.request_latency.get_or_create(&method).clone())
                    .observe(elapsed.as_secs_f64());
            }
            None => {
                self.requests.get_or_create(&labels()).inc();
                self.request_latency
                    .get_or_create(&method)
                    .observe(elapsed.as_secs_f64());
            }
        }
    }

    /// An upstream call finished.
    pub fn upstream_finished(&self, operation: &'static str, outcome: &str, elapsed: Duration) {
        self.upstream_calls
            .get_or_create(&UpstreamLabels {
                operation,
                code: outcome.to_owned(),
            })
            .inc();
        self.upstream_latency
            .get_or_create(&MethodLabel { method: operation })
            .observe(elapsed.as_secs_f64());
    }

    /// The caller policy judged a call.
    pub fn policy_decision(&self, caller: &str, operation: &'static str, decision: &'static str) {
        self.policy_decisions
            .get_or_create(&PolicyLabels {
                caller: caller.to_owned(),
                operation,
                decision,
            })
            .inc();
    }

    /// The series of a caller's `decision`s on `operation`, to be kept by
    /// whoever counts them (an atomic add a call, no lookup).
    pub fn policy_decision_series(
        &self,
        caller: &str,
        operation: &'static str,
        decision: &'static str,
    ) -> Counter {
        self.policy_decisions
            .get_or_create(&PolicyLabels {
                caller: caller.to_owned(),
                operation,
                decision,
            })
            .clone()
    }

    /// A caller was past its rate limit.
    pub fn caller_rate_limited(&self, caller: &str) {
        self.rate_limited
            .get_or_create(&CallerLabel {
                caller: caller.to_owned(),
            })
            .inc();
    }

    /// `peers` peer addresses have a rate limit kept for `caller`.
    pub fn peer_limits_held(&self, caller: &str, peers: u64) {
        self.peer_limits_held
            .get_or_create(&CallerLabel {
                caller: caller.to_owned(),
            })
            .set(i64::try_from(peers).unwrap_or(i64::MAX));
    }

    /// A peer's rate limit for `caller` was forgotten to bound their number.
    pub fn peer_limit_evicted(&self, caller: &str) {
        self.peer_limits_evicted
            .get_or_create(&CallerLabel {
                caller: caller.to_owned(),
            })
            .inc();
    }

    /// A call's identity header was set aside for `reason`.
    pub fn caller_identity_header_rejected(&self, reason: &'static str) {
        self.identity_header_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// The policy file changed and was put in force (`ok`) or refused.
    pub fn policy_reloaded(&self, ok: bool) {
        self.policy_reloads
            .get_or_create(&ExportLabels {
                outcome: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Whether the upstream could be reached at the last check.
    pub fn upstream_up(&self, up: bool) {
        self.upstream_up.set(i64::from(up));
    }

    /// The upstream circuit breaker is in `state` (`closed`, `open`,
    /// `half_open`).
    pub fn circuit_state(&self, state: &'static str) {
        for other in ["closed", "open", "half_open"] {
            self.circuit_state
                .get_or_create(&StateLabel { state: other })
                .set(i64::from(other == state));
        }
    }

    /// The upstream circuit breaker entered `state`.
    pub fn circuit_changed(&self, state: &'static str) {
        self.circuit_state(state);
        self.circuit_changes
            .get_or_create(&StateLabel { state })
            .inc();
    }

    /// The quota guard judged an upstream call to `operation`.
    pub fn upstream_quota(&self, operation: &'static str, outcome: &'static str) {
        self.quota_decisions
            .get_or_create(&QuotaLabels { operation, outcome })
            .inc();
    }

    /// The budget of `operation`, calls a second, if it has one.
    pub fn upstream_quota_rate(&self, operation: &'static str, rate: Option<f64>) {
        match rate {
            Some(rate) => {
                self.quota_rates
                    .get_or_create(&OperationLabel { operation })
                    .set(rate);
            }
            None => {
                self.quota_rates.remove(&OperationLabel { operation });
            }
        }
    }

    /// A caller was refused because too many were waiting on Cognito.
    pub fn upstream_busy(&self) {
        self.upstream_busy.inc();
    }

    /// The TLS files changed and were put in force (`ok`) or refused.
    pub fn tls_reloaded(&self, ok: bool) {
        self.tls_reloads
            .get_or_create(&ExportLabels {
                outcome: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// A TLS handshake ended: `ok`, `refused` or `timeout`.
    pub fn tls_handshake(&self, outcome: &'static str) {
        self.tls_handshakes
            .get_or_create(&ExportLabels { outcome })
            .inc();
    }

    /// An API connection was told to close, for `reason`.
    pub fn connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Audit lines were written.
    pub fn audit_written(&self, lines: u64) {
        self.audit_written.inc_by(lines);
    }

    /// Audit lines were lost. A line of a call answered is never lost this
    /// way while the process lives (it waits for the sink, or goes to the
    /// fallback); what is counted here is the lines of calls refused anyway
    /// that a flood left no room for in the queue, a dry run's would-be
    /// refusals when the queue is full, and lines that neither the sink nor
    /// standard error would take.
    pub fn audit_dropped(&self, lines: u64) {
        self.audit_dropped.inc_by(lines);
    }

    /// Audit lines went to standard error, marked, as the sink failed.
    pub fn audit_fallback(&self, lines: u64) {
        self.audit_fallback.inc_by(lines);
    }

    /// A call was refused because it could not be audited.
    pub fn audit_refused(&self) {
        self.audit_refusals.inc();
    }

    /// A span ended and went to the trace exporter's queue.
    pub fn span_ended(&self) {
        self.spans_ended.inc();
    }

    /// A span ended while the trace exporter's queue was full.
    pub fn span_dropped(&self) {
        self.spans_dropped.inc();
    }

    /// The trace exporter sent `spans` spans, successfully or not.
    pub fn spans_exported(&self, spans: u64, ok: bool) {
        self.spans_exported
            .get_or_create(&ExportLabels {
                outcome: if ok { "ok" } else { "error" },
            })
            .inc_by(spans);
    }

    /// The Prometheus text exposition, with the cache's counters `cache`.
    pub fn encode(&self, cache: Option<CacheStats>) -> String {
        if let Ok(mut slot) = self.cache.stats.lock() {
            *slot = cache;
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The canonical name of a gRPC code, as the gRPC specification spells it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
