//! The gateway's spans: a server span per API call and a client span per
//! upstream Cognito call, with the attributes of the OpenTelemetry RPC
//! conventions. They are plain values, recorded as the call goes and handed
//! to the exporter's queue ([`super::traces`]) when it ends; the exporter
//! encodes them straight into OTLP ([`super::otlp`]).
//!
//! Why not `tracing` spans bridged to the OpenTelemetry SDK: measured under
//! load, the bridge (span registry, attribute visitors, the SDK's span and
//! `SpanData`) and the SDK's export path (`SpanData` to proto structs to
//! bytes) cost several times what a cache hit costs, and capped the spans
//! exported per second below the gateway's own throughput; these spans
//! are a small fraction of a hit, export included (BENCHMARKS.md). The
//! standard OTEL_* environment, the W3C trace context and the span names
//! and attributes are unchanged.
//!
//! What happened below the server span is handed to it when it ends
//! ([`ServerSpan::end`]): why the call failed, how the cache answered, and
//! the upstream call made for it, which becomes its child client span.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{TraceContextExt, TraceId};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

use super::export::Queue;
use super::finished::{FinishedSpan, Side};
use super::propagation;
use crate::domain::{CacheOutcome, UpstreamCall};

/// Which calls are traced: `OTEL_TRACES_SAMPLER` and its argument.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Sampler {
    /// Every call.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// A share of trace ids: those whose last 63 bits fall below the bound.
    TraceIdRatio(u64),
    /// The caller's decision when it sent a trace context, else the root's.
    ParentBased(Root),
}

/// The sampler of a call without a caller's trace context.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Root {
    /// Every call.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// See [`Sampler::TraceIdRatio`].
    TraceIdRatio(u64),
}

impl Sampler {
    /// The sampler `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` name; the
    /// specification's default is `parentbased_always_on`.
    pub(crate) fn from_env(name: Option<&str>, arg: Option<&str>) -> Result<Self, String> {
        let ratio = || -> Result<u64, String> {
            let ratio = match arg {
                None => 1.0,
                Some(arg) => arg
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        format!("OTEL_TRACES_SAMPLER_ARG={arg:?} is not a ratio from 0 to 1")
                    })?,
            };
            // The same bound as the OpenTelemetry SDKs: ratio x 2^63.
            Ok((ratio * (1u64 << 63) as f64) as u64)
        };
        Ok(
            match name.map(str::trim).unwrap_or("parentbased_always_on") {
                "always_on" => Self::AlwaysOn,
                "always_off" => Self::AlwaysOff,
                "traceidratio" => Self::TraceIdRatio(ratio()?),
                "parentbased_always_on" => Self::ParentBased(Root::AlwaysOn),
                "parentbased_always_off" => Self::ParentBased(Root::AlwaysOff),
                "parentbased_traceidratio" => Self::ParentBased(Root::TraceIdRatio(ratio()?)),
                other => {
                    return Err(format!(
                        "OTEL_TRACES_SAMPLER={other:?} is not supported: use always_on, always_off, \
                     traceidratio or their parentbased_ forms"
                    ));
                }
            },
        )
    }

    fn samples(self, parent: Option<&Parent>, trace_id: &[u8; 16]) -> bool {
        let by_ratio = |bound: u64| {
            let mut low = [0; 8];
            low.copy_from_slice(&trace_id[8..]);
            (u64::from_be_bytes(low) >> 1) < bound
        };
        match (self, parent) {
            (Self::AlwaysOn, _) => true,
            (Self::AlwaysOff, _) => false,
            (Self::TraceIdRatio(bound), _) => by_ratio(bound),
            (Self::ParentBased(_), Some(parent)) => parent.sampled,
            (Self::ParentBased(Root::AlwaysOn), None) => true,
            (Self::ParentBased(Root::AlwaysOff), None) => false,
            (Self::ParentBased(Root::TraceIdRatio(bound)), None) => by_ratio(bound),
        }
    }
}

/// The caller's span, from its `traceparent`/`tracestate`.
struct Parent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    sampled: bool,
    trace_state: Option<Box<str>>,
}

impl Parent {
    fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        // Only a caller that sent a trace context has one to continue.
        if !headers.contains_key(&propagation::TRACEPARENT) {
            return None;
        }
        let cx = propagation::extract(headers);
        let span = cx.span();
        let context = span.span_context();
        context.is_valid().then(|| {
            let state = context.trace_state().header();
            Self {
                trace_id: context.trace_id().to_bytes(),
                span_id: context.span_id().to_bytes(),
                sampled: context.is_sampled(),
                trace_state: (!state.is_empty()).then(|| state.into()),
            }
        })
    }
}

/// Where sampled spans go: set once, when the environment asks for export.
#[derive(Debug)]
pub(crate) struct Tracer {
    sampler: Sampler,
    ids: RandomIdGenerator,
    queue: Arc<Queue>,
}

static TRACER: OnceLock<Tracer> = OnceLock::new();

/// Starts tracing into `queue`; a second call changes nothing.
pub(crate) fn install(sampler: Sampler, queue: Arc<Queue>) {
    let _already = TRACER.set(Tracer {
        sampler,
        ids: RandomIdGenerator::default(),
        queue,
    });
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The server span of an API call in flight.
#[derive(Debug)]
pub(crate) struct ServerSpan {
    name: &'static str,
    method: &'static str,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
    trace_state: Option<Box<str>>,
    start_unix_nanos: u64,
    server: Option<SocketAddr>,
    client: Option<SocketAddr>,
}

/// What the call's span is told when it ends.
#[derive(Debug, Default)]
pub(crate) struct Ending {
    /// The gRPC status code.
    pub status: i32,
    /// Why it failed: an error's reason.
    pub(crate) error_type: Option<Box<str>>,
    /// How the cache answered.
    pub cache: Option<CacheOutcome>,
    /// The upstream call made for it, if any.
    pub upstream: Option<Box<UpstreamCall>>,
}

impl ServerSpan {
    /// A span for a call of `method`, continued from the caller's trace
    /// context in `headers`; `None` when tracing is off or not sampled.
    /// `peers` (the server's and the client's addresses) is only asked when
    /// the call is traced.
    pub(crate) fn start(
        name: &'static str,
        method: &'static str,
        headers: &http::HeaderMap,
        peers: impl FnOnce() -> (Option<SocketAddr>, Option<SocketAddr>),
    ) -> Option<Self> {
        let tracer = TRACER.get()?;
        let parent = Parent::from_headers(headers);
        let trace_id = match &parent {
            Some(parent) => parent.trace_id,
            None => tracer.ids.new_trace_id().to_bytes(),
        };
        if !tracer.sampler.samples(parent.as_ref(), &trace_id) {
            return None;
        }
        let (parent_span_id, trace_state) = match parent {
            Some(p) => (Some(p.span_id), p.trace_state),
            None => (None, None),
        };
        let (server, client) = peers();
        Some(Self {
            name,
            method,
            trace_id,
            span_id: tracer.ids.new_span_id().to_bytes(),
            parent_span_id,
            trace_state,
            start_unix_nanos: unix_nanos(SystemTime::now()),
            server,
            client,
        })
    }

    /// The trace id, for the audit log.
    pub(crate) fn trace_id_bytes(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The trace id, for log lines.
    pub(crate) fn trace_id(&self) -> impl fmt::Display + use<> {
        TraceId::from_bytes(self.trace_id)
    }

    /// Ends the span: its call finished after `elapsed`, as `ending` says.
    /// The upstream call made for it becomes its child.
    pub(crate) fn end(self, elapsed: Duration, ending: Ending) {
        let Some(tracer) = TRACER.get() else { return };
        if let Some(call) = ending.upstream {
            let start_unix_nanos = unix_nanos(call.started);
            tracer.queue.push(FinishedSpan {
                trace_id: self.trace_id,
                span_id: tracer.ids.new_span_id().to_bytes(),
                parent_span_id: Some(self.span_id),
                trace_state: self.trace_state.clone(),
                start_unix_nanos,
                end_unix_nanos: start_unix_nanos + call.elapsed.as_nanos() as u64,
                error_type: call.error_type,
                side: Side::Client {
                    operation: call.operation.as_str(),
                    region: call.region,
                    request_id: call.request_id,
                    http_status: call.http_status,
                },
            });
        }
        tracer.queue.push(FinishedSpan {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            trace_state: self.trace_state,
            start_unix_nanos: self.start_unix_nanos,
            end_unix_nanos: self.start_unix_nanos + elapsed.as_nanos() as u64,
            error_type: ending.error_type,
            side: Side::Server {
                name: self.name,
                method: self.method,
                status: ending.status,
                server: self.server,
                client: self.client,
                cache_outcome: ending.cache.map(CacheOutcome::as_str),
            },
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn samplers_from_the_environment() {
        assert_eq!(
            Sampler::from_env(None, None),
            Ok(Sampler::ParentBased(Root::AlwaysOn))
        );
        assert_eq!(
            Sampler::from_env(Some("always_off"), None),
            Ok(Sampler::AlwaysOff)
        );
        assert_eq!(
            Sampler::from_env(Some("parentbased_traceidratio"), Some("0.5")),
            Ok(Sampler::ParentBased(Root::TraceIdRatio(1 << 62)))
        );
        let err = Sampler::from_env(Some("traceidratio"), Some("2")).unwrap_err();
        assert!(err.contains("OTEL_TRACES_SAMPLER_ARG"), "{err}");
        let err = Sampler::from_env(Some("jaeger_remote"), None).unwrap_err();
        assert!(err.contains("OTEL_TRACES_SAMPLER"), "{err}");
    }

    #[test]
    fn ratio_by_the_trace_ids_last_bits_and_parents_decide() {
        let half = Sampler::from_env(Some("traceidratio"), Some("0.5")).unwrap();
        let mut low = [0u8; 16];
        low[8] = 0x7f;
        let mut high = [0u8; 16];
        high[8] = 0x80;
        assert!(half.samples(None, &low));
        assert!(!half.samples(None, &high));
        let none = Sampler::from_env(Some("traceidratio"), Some("0")).unwrap();
        assert!(!none.samples(None, &low));
        let all = Sampler::from_env(Some("traceidratio"), Some("1")).unwrap();
        assert!(all.samples(None, &[0xff; 16]));

        let parent = |sampled| Parent {
            trace_id: [1; 16],
            span_id: [1; 8],
            sampled,
            trace_state: None,
        };
        let based = Sampler::ParentBased(Root::AlwaysOff);
        assert!(based.samples(Some(&parent(true)), &low));
        assert!(!Sampler::ParentBased(Root::AlwaysOn).samples(Some(&parent(false)), &low));
        assert!(!based.samples(None, &low));
    }

    #[test]
    fn a_callers_trace_context_is_continued() {
        let mut headers = http::HeaderMap::new();
        assert!(Parent::from_headers(&headers).is_none());
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        headers.insert("tracestate", "vendor=a".parse().unwrap());
        propagation::install_propagators();
        let parent = Parent::from_headers(&headers).unwrap();
        assert_eq!(
            TraceId::from_bytes(parent.trace_id).to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            parent.span_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(parent.sampled);
        assert_eq!(parent.trace_state.as_deref(), Some("vendor=a"));
    }
}
