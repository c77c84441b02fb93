//! Trace export over OTLP, configured by the standard environment variables,
//! and W3C trace context read from incoming gRPC metadata.
//!
//! - `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it is), else
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` (plus `/v1/traces` over HTTP): where to
//!   export; with neither set, nothing is exported. Plain `http://` only.
//! - `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`:
//!   `grpc` or `http/protobuf` (the specification's default).
//! - `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`:
//!   `key=value,...` sent with every export (kept out of logs).
//! - `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`:
//!   bound on one export, in milliseconds (default 10000).
//! - `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`: the resource.
//! - `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`: the sampler.
//! - `OTEL_SDK_DISABLED=true`: no tracing at all.
//! - `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`,
//!   `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_EXPORT_TIMEOUT`: the batching
//!   (the specification's defaults, 512, 5000 ms and 30000 ms, but a queue
//!   of 8192 spans rather than 2048: at the gateway's hit throughput, 2048
//!   spans overflowed while the collector was slow to answer). A batch
//!   leaves when it is full or when the delay has passed; the last ones on
//!   shutdown, within the export timeout.
//! - `OTEL_BSP_MAX_CONCURRENT_EXPORTS` (the OpenTelemetry Rust SDK's name):
//!   exports in flight at once, 4 unless set.
//!
//! The queue drops spans rather than slow calls down when the collector
//! cannot keep up; `gateway_trace_spans_ended_total`,
//! `gateway_trace_spans_dropped_total` and `gateway_trace_spans_exported_total`
//! show whether every span leaves.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use opentelemetry_sdk::Resource;
use tokio::sync::oneshot;

use super::export::{self, Batching, Queue, Sender};
use super::otlp;
use super::spans::{self, Sampler};

/// The service name when `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name none.
const DEFAULT_SERVICE_NAME: &str = "cognito-identity-gateway";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A variable that is set: its name and its value, so that a complaint
/// about the value names the variable it came from.
fn variable(name: &str) -> Option<(String, String)> {
    env(name).map(|value| (name.to_owned(), value))
}

/// The traces-specific variable, else the general one.
fn otlp_env(suffix: &str) -> Option<(String, String)> {
    variable(&format!("OTEL_EXPORTER_OTLP_TRACES_{suffix}"))
        .or_else(|| variable(&format!("OTEL_EXPORTER_OTLP_{suffix}")))
}

/// Milliseconds from the variable `var`, or `default` when it is unset.
fn millis(var: Option<(String, String)>, default: u64) -> Result<Duration, String> {
    match var {
        None => Ok(Duration::from_millis(default)),
        Some((name, v)) => v
            .trim()
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| format!("{name}={v:?} is not a number of milliseconds")),
    }
}

fn count(name: &str, default: usize) -> Result<usize, String> {
    match env(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{name}={v:?} is not a positive number")),
    }
}

/// The running exporter; [`Exporter::shutdown`] sends what is left.
#[derive(Debug)]
pub(crate) struct Exporter {
    stop: oneshot::Sender<()>,
    finished: oneshot::Receiver<()>,
    timeout: Duration,
    metrics: export::TraceMetrics,
}

impl Exporter {
    /// Its metrics.
    pub(crate) fn metrics(&self) -> &export::TraceMetrics {
        &self.metrics
    }

    /// Exports the spans still queued, within `OTEL_BSP_EXPORT_TIMEOUT`.
    pub(crate) async fn shutdown(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(self.timeout, self.finished)
            .await
            .is_err()
        {
            eprintln!("flushing traces timed out");
        }
    }
}

/// Trace export as the environment asks for it, checked.
#[derive(Clone, Debug)]
pub(crate) struct TraceSettings {
    uri: Uri,
    /// Marked sensitive: their `Debug` does not show their values.
    headers: HeaderMap,
    timeout: Duration,
    grpc: bool,
    sampler: Sampler,
    capacity: usize,
    batch: usize,
    batching: Batching,
    export_timeout: Duration,
}

impl TraceSettings {
    /// Reads the standard environment (see the module documentation):
    /// `None` when it asks for no export, every problem as a message naming
    /// its variable.
    pub(crate) fn from_env() -> Result<Option<Self>, String> {
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let traces_endpoint = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let endpoint = env("OTEL_EXPORTER_OTLP_ENDPOINT");
        if traces_endpoint.is_none() && endpoint.is_none() {
            return Ok(None);
        }
        // The default is valid, so the variable's name is only needed when set.
        let (protocol_var, protocol) =
            otlp_env("PROTOCOL").unwrap_or_else(|| (String::new(), "http/protobuf".to_owned()));
        let url = match (traces_endpoint, protocol.as_str()) {
            (Some(url), _) => url,
            (None, "http/protobuf") => {
                let base = endpoint.unwrap_or_default();
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
            (None, _) => endpoint.unwrap_or_default(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("OTLP endpoint {url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "OTLP endpoint {url:?}: only http:// is supported (reach a TLS collector \
                 through a local agent or sidecar)"
            ));
        }
        if let Some((name, c)) = otlp_env("COMPRESSION").filter(|(_, c)| c.trim() != "none") {
            return Err(format!("{name}={c:?} is not supported: use none"));
        }
        let headers = match otlp_env("HEADERS") {
            Some((name, spec)) => headers(&name, &spec)?,
            None => HeaderMap::new(),
        };
        let timeout = millis(otlp_env("TIMEOUT"), 10_000)?;
        let grpc = match protocol.as_str() {
            "grpc" => true,
            "http/protobuf" => false,
            other => {
                return Err(format!(
                    "{protocol_var}={other:?} is not supported: use grpc or http/protobuf"
                ));
            }
        };
        let sampler = Sampler::from_env(
            env("OTEL_TRACES_SAMPLER").as_deref(),
            env("OTEL_TRACES_SAMPLER_ARG").as_deref(),
        )?;
        // About 200 bytes a span: under 2 MiB, a fraction of a second of
        // spans at the gateway's hit throughput.
        let capacity = count("OTEL_BSP_MAX_QUEUE_SIZE", 8192)?;
        // The specification: a batch larger than the queue is the queue.
        let batch = count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?.min(capacity);
        let delay = millis(variable("OTEL_BSP_SCHEDULE_DELAY"), 5_000)?;
        // Not in the specification's list: the OpenTelemetry Rust SDK's name.
        // Its default there is 1; see `export::run` for why it is 4 here.
        let concurrent = count("OTEL_BSP_MAX_CONCURRENT_EXPORTS", 4)?;
        let export_timeout = millis(variable("OTEL_BSP_EXPORT_TIMEOUT"), 30_000)?;
        Ok(Some(Self {
            uri,
            headers,
            timeout,
            grpc,
            sampler,
            capacity,
            batch,
            batching: Batching { delay, concurrent },
            export_timeout,
        }))
    }
}

/// Starts exporting as `settings` say, on a thread of its own. `None` when
/// that thread cannot be started (said on standard error): the gateway then
/// serves untraced rather than not at all.
pub(crate) fn start(settings: TraceSettings) -> Option<Exporter> {
    let named = env("OTEL_SERVICE_NAME").is_some()
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
    let mut resource = Resource::builder();
    if !named {
        resource = resource.with_service_name(DEFAULT_SERVICE_NAME);
    }
    let header = otlp::Header::new(resource.build().iter());

    let metrics = export::TraceMetrics::default();
    let queue = Arc::new(Queue::new(
        settings.capacity,
        settings.batch,
        metrics.clone(),
    ));
    let (stop, stopped) = oneshot::channel();
    let (done, finished) = oneshot::channel();
    // A thread of its own rather than a task among the calls': under load
    // the workers' run queues hold every call in flight, and an exporter
    // waiting its turn behind them let the queue overflow and drop spans
    // at full load; the OS schedules a thread fairly.
    let exporter_queue = queue.clone();
    let spawned = std::thread::Builder::new()
        .name("otlp-export".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => return eprintln!("the trace exporter cannot start: {e}"),
            };
            runtime.block_on(async move {
                let (uri, headers, timeout) = (settings.uri, settings.headers, settings.timeout);
                let sender = if settings.grpc {
                    Sender::grpc(uri, headers, timeout)
                } else {
                    Sender::http(uri, headers, timeout)
                };
                export::run(exporter_queue, sender, header, settings.batching, stopped).await;
            });
            let _ = done.send(());
        });
    if let Err(e) = spawned {
        eprintln!("the trace exporter's thread cannot start, so no span is exported: {e}");
        return None;
    }
    spans::install(settings.sampler, queue);
    Some(Exporter {
        stop,
        finished,
        timeout: settings.export_timeout,
        metrics,
    })
}

/// `key=value,...` with percent-encoded values, as the specification writes
/// them, from the variable `var`; marked sensitive, since they often carry a
/// collector's credentials (and never quoted in an error).
fn headers(var: &str, spec: &str) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for pair in spec.split(',').filter(|p| !p.trim().is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{var}: each entry must be key=value"))?;
        let name = HeaderName::try_from(key.trim().to_ascii_lowercase())
            .map_err(|_| format!("{var}: {:?} is not a header name", key.trim()))?;
        let mut value = HeaderValue::from_bytes(&percent_decode(value.trim()))
            .map_err(|_| format!("{var}: the value of {name} is not valid"))?;
        value.set_sensitive(true);
        map.append(name, value);
    }
    Ok(map)
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn headers_as_the_specification_writes_them() {
        let var = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
        let map = headers(var, "api-key=s%3Dcret, X-Team = a b").unwrap();
        assert_eq!(map["api-key"], "s=cret");
        assert_eq!(map["x-team"], "a b");
        assert!(map["api-key"].is_sensitive());
        assert!(!format!("{map:?}").contains("cret"));
        let err = headers(var, "novalue").unwrap_err();
        assert!(err.starts_with(var), "{err}");
        assert!(headers(var, "").unwrap().is_empty());
    }

    #[test]
    fn a_bad_value_is_blamed_on_the_variable_it_came_from() {
        let var = || {
            Some((
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT".to_owned(),
                "soon".to_owned(),
            ))
        };
        let err = millis(var(), 10).unwrap_err();
        assert_eq!(
            err,
            r#"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT="soon" is not a number of milliseconds"#
        );
        assert_eq!(millis(None, 10), Ok(Duration::from_millis(10)));
    }
}
