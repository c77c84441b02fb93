//! The metrics' exposition: one [`Metrics`] per gateway, a registry into
//! which each part registers the metrics it owns (the gRPC calls'
//! [`super::rpc_metrics`], the connections', the policy's, the guard's, the
//! audit log's, the trace exporter's), plus the build information and the
//! cache's counters, read at each scrape. Nothing here is global: two
//! gateways in one process (as in the tests) count apart.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::domain::{CacheStats, OperationName};

/// An operation's label value: its name.
impl prometheus_client::encoding::EncodeLabelValue for OperationName {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// A gateway's metrics: the registry its parts registered into.
pub struct Metrics {
    registry: Mutex<Registry>,
    cache: Arc<CacheCollector>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry holding the build information and the cache's counters.
    pub fn new() -> Self {
        let mut registry = Registry::default();
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
            registry: Mutex::new(registry),
            cache,
        }
    }

    /// Lets a part register its metrics (while the gateway is being built).
    pub fn register(&self, part: impl FnOnce(&mut Registry)) {
        part(&mut self.registry.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// The OpenMetrics exposition, with the cache's counters `cache`.
    pub fn encode(&self, cache: Option<CacheStats>) -> String {
        *self
            .cache
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = cache;
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
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

/// The canonical name of a gRPC code, as the gRPC specification spells it.
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
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
