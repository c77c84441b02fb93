//! The W3C trace context and baggage a caller sends in its gRPC metadata.

use http::HeaderName;
use opentelemetry::propagation::{Extractor, TextMapCompositePropagator};
use opentelemetry::{Context, global};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

/// The W3C header that carries a caller's span.
pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Reads W3C trace context and baggage from now on.
pub(crate) fn install_propagators() {
    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The caller's trace context and baggage from gRPC metadata (HTTP/2 headers).
pub(crate) fn extract(headers: &http::HeaderMap) -> Context {
    global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}
