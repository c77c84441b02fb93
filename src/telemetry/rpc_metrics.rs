//! The gRPC calls' metrics: calls finished by method and status code,
//! their latency, calls in flight. The API's four methods have their
//! series resolved once, so that a call's books cost atomic adds, not a
//! family lookup (a lock and a hash of the labels) per series per call.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::metrics::code_name;
use crate::proto::API_METHODS;

/// Labels of a gRPC call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    rpc: &'static str,
    /// The gRPC status code's name, e.g. `OK`.
    code: &'static str,
}

/// Labels of a latency series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

type Latency = Family<MethodLabel, Histogram, fn() -> Histogram>;

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
    requests: [OnceLock<Counter>; CODES],
    latency: OnceLock<Histogram>,
}

struct Families {
    requests: Family<RpcLabels, Counter>,
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
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
            api: Default::default(),
        }))
    }
}

impl RpcMetrics {
    /// Registers the families in `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "grpc_server_requests",
            "gRPC calls finished, by method and status code",
            self.0.requests.clone(),
        );
        registry.register(
            "grpc_server_request_duration_seconds",
            "Time from a call's arrival to its status, by method",
            self.0.latency.clone(),
        );
        registry.register(
            "grpc_server_in_flight_requests",
            "gRPC calls being served",
            self.0.in_flight.clone(),
        );
    }

    /// A call started.
    pub(crate) fn call_started(&self) {
        self.0.in_flight.inc();
    }

    /// A call finished with `code` after `elapsed`.
    pub(crate) fn call_finished(&self, rpc: &'static str, code: tonic::Code, elapsed: Duration) {
        let m = &*self.0;
        m.in_flight.dec();
        let labels = || RpcLabels {
            rpc,
            code: code_name(code),
        };
        let method = MethodLabel { method: rpc };
        match API_METHODS.iter().position(|api| std::ptr::eq(*api, rpc)) {
            Some(i) => {
                let series = &m.api[i];
                series.requests[code as usize % CODES]
                    .get_or_init(|| m.requests.get_or_create(&labels()).clone())
                    .inc();
                series
                    .latency
                    .get_or_init(|| m.latency.get_or_create(&method).clone())
                    .observe(elapsed.as_secs_f64());
            }
            None => {
                m.requests.get_or_create(&labels()).inc();
                m.latency
                    .get_or_create(&method)
                    .observe(elapsed.as_secs_f64());
            }
        }
    }
}
