//! The gRPC calls' metrics, under the names go-grpc-prometheus gave them
//! and existing gRPC dashboards and alerts use: calls started by method,
//! calls handled by method and status code, their latency by method and
//! code, calls in flight. The API's four methods have their series
//! resolved once, so that a call's books cost atomic adds, not a family
//! lookup (a lock and a hash of the labels) per series per call.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::metrics::code_name;
use crate::proto::{API_METHODS, API_PATHS};

/// The kind of every API call: one message each way.
const UNARY: &str = "unary";

/// Labels of a call started.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_type: &'static str,
    /// The service's full name, e.g.
    /// `cognito_identity_gateway.v1.CognitoIdentityService`.
    grpc_service: &'static str,
    grpc_method: &'static str,
}

/// Labels of a call handled, and of its latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_type: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
    /// The gRPC status code's name, e.g. `OK`.
    grpc_code: &'static str,
}

impl MethodLabels {
    fn of(method: &'static str) -> Self {
        Self {
            grpc_type: UNARY,
            grpc_service: service(),
            grpc_method: method,
        }
    }

    fn with(self, code: tonic::Code) -> HandledLabels {
        HandledLabels {
            grpc_type: self.grpc_type,
            grpc_service: self.grpc_service,
            grpc_method: self.grpc_method,
            grpc_code: code_name(code),
        }
    }
}

/// The API service's full name, from its methods' paths
/// (`/package.Service/Method`).
fn service() -> &'static str {
    let path: &'static str = API_PATHS[0];
    path.trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
}

type Latency = Family<HandledLabels, Histogram, fn() -> Histogram>;

/// Latency buckets: 100 µs to about 3.3 s, doubling; a cache hit lands in
/// the first few, a Cognito call in the middle.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

/// Number of gRPC status codes (OK = 0 to UNAUTHENTICATED = 16).
const CODES: usize = 17;

/// One API method's series, resolved on first use.
#[derive(Default)]
struct MethodSeries {
    started: OnceLock<Counter>,
    handled: [OnceLock<Counter>; CODES],
    latency: [OnceLock<Histogram>; CODES],
}

struct Families {
    started: Family<MethodLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    latency: Latency,
    in_flight: Gauge,
    api: [MethodSeries; 4],
}

/// The gRPC calls' metrics, shared by every call.
#[derive(Clone)]
pub(crate) struct RpcMetrics(Arc<Families>);

impl std::fmt::Debug for RpcMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RpcMetrics")
    }
}

impl Default for RpcMetrics {
    fn default() -> Self {
        Self(Arc::new(Families {
            started: Family::default(),
            handled: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
            api: Default::default(),
        }))
    }
}

/// The API method's index in [`API_METHODS`], if `rpc` is one of them.
fn api_index(rpc: &'static str) -> Option<usize> {
    API_METHODS.iter().position(|api| std::ptr::eq(*api, rpc))
}

impl RpcMetrics {
    /// Registers the families in `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "grpc_server_started",
            "RPCs started on the server, by method",
            self.0.started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "RPCs completed on the server, by method and status code",
            self.0.handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Time from an RPC's arrival to its status, by method and status code",
            self.0.latency.clone(),
        );
        registry.register(
            "grpc_server_in_flight_requests",
            "RPCs being served",
            self.0.in_flight.clone(),
        );
    }

    /// A call of `rpc` started.
    pub(crate) fn call_started(&self, rpc: &'static str) {
        let m = &*self.0;
        m.in_flight.inc();
        match api_index(rpc) {
            Some(i) => m.api[i]
                .started
                .get_or_init(|| m.started.get_or_create(&MethodLabels::of(rpc)).clone())
                .inc(),
            None => m.started.get_or_create(&MethodLabels::of(rpc)).inc(),
        };
    }

    /// A call of `rpc` finished with `code` after `elapsed`.
    pub(crate) fn call_finished(&self, rpc: &'static str, code: tonic::Code, elapsed: Duration) {
        let m = &*self.0;
        m.in_flight.dec();
        let labels = || MethodLabels::of(rpc).with(code);
        let seconds = elapsed.as_secs_f64();
        match api_index(rpc) {
            Some(i) => {
                let series = &m.api[i];
                let c = code as usize % CODES;
                series.handled[c]
                    .get_or_init(|| m.handled.get_or_create(&labels()).clone())
                    .inc();
                series.latency[c]
                    .get_or_init(|| m.latency.get_or_create(&labels()).clone())
                    .observe(seconds);
            }
            None => {
                m.handled.get_or_create(&labels()).inc();
                m.latency.get_or_create(&labels()).observe(seconds);
            }
        }
    }
}
