//! The gateway's spans: a server span per API call and a client span per
//! upstream Cognito call, with the attributes of the OpenTelemetry RPC
//! conventions. They are plain values, recorded as the call goes and handed
//! to the exporter's queue ([`super::traces`]) when it ends; the exporter
//! encodes them straight into OTLP ([`super::otlp`]).
//!
//! Why not `tracing` spans bridged to the OpenTelemetry SDK: measured under
//! load, the bridge (span registry, attribute visitors, the SDK's span and
//! `SpanData`) and the SDK's export path (`SpanData` to proto structs to
//! bytes) cost about 8 µs of CPU per call, a third of the whole call, and
//! could not export more than ~40k spans/s on two cores; these spans cost
//! about a microsecond, export included. The standard OTEL_* environment,
//! the W3C trace context and the span names and attributes are unchanged.
//!
//! Code below the server span says what happened on it through
//! [`record_cache_outcome`] and [`record_error_type`]: while the call's
//! future is polled, its span's annotations are this thread's current ones.

use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{TraceContextExt, TraceId};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

use super::export::Queue;
use super::traces;

/// A span that has ended, as the exporter encodes it.
#[derive(Debug)]
pub struct FinishedSpan {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) parent_span_id: Option<[u8; 8]>,
    pub(crate) trace_state: Option<Box<str>>,
    pub(crate) start_unix_nanos: u64,
    pub(crate) end_unix_nanos: u64,
    /// `error.type`: an error's reason (a Cognito error code, or the
    /// gateway's own reason such as `INVALID_REQUEST`).
    pub(crate) error_type: Option<Box<str>>,
    pub(crate) side: Side,
}

/// What differs between the two kinds of span.
#[derive(Debug)]
pub enum Side {
    /// An API call, served.
    Server {
        /// `{package.service}/{method}`.
        name: &'static str,
        /// `rpc.method`.
        method: &'static str,
        /// `rpc.grpc.status_code`.
        status: i32,
        /// `server.address`/`server.port`.
        server: Option<SocketAddr>,
        /// `client.address`/`client.port`.
        client: Option<SocketAddr>,
        /// `cache.outcome`: hit, miss, coalesced, stale.
        cache_outcome: Option<&'static str>,
    },
    /// A call to Cognito.
    Client {
        /// `rpc.method`: the Cognito operation.
        operation: &'static str,
        /// `cloud.region`.
        region: Arc<str>,
        /// `aws.request_id`.
        request_id: Option<Box<str>>,
        /// `http.response.status_code`.
        http_status: Option<u16>,
    },
}

/// Which calls are traced: `OTEL_TRACES_SAMPLER` and its argument.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
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
pub enum Root {
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
    pub fn from_env(name: Option<&str>, arg: Option<&str>) -> Result<Self, String> {
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
        if !headers.contains_key(&traces::TRACEPARENT) {
            return None;
        }
        let cx = traces::extract(headers);
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
pub struct Tracer {
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

/// What code under a server span may say of it while its call is polled.
#[derive(Debug)]
struct Annotations {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    trace_state: Option<Box<str>>,
    cache_outcome: Option<&'static str>,
    error_type: Option<Box<str>>,
}

thread_local! {
    /// The annotations of the server span whose call this thread is polling.
    static CURRENT: RefCell<Option<Annotations>> = const { RefCell::new(None) };
}

/// Says on the current call's span how the cache answered.
pub fn record_cache_outcome(outcome: &'static str) {
    CURRENT.with_borrow_mut(|current| {
        if let Some(current) = current {
            current.cache_outcome = Some(outcome);
        }
    });
}

/// Says on the current call's span why it failed.
pub fn record_error_type(reason: &str) {
    CURRENT.with_borrow_mut(|current| {
        if let Some(current) = current {
            current.error_type = Some(reason.into());
        }
    });
}

/// The server span of an API call in flight.
#[derive(Debug)]
pub struct ServerSpan {
    name: &'static str,
    method: &'static str,
    parent_span_id: Option<[u8; 8]>,
    start_unix_nanos: u64,
    server: Option<SocketAddr>,
    client: Option<SocketAddr>,
    /// `None` only while the call is being polled (the thread holds them).
    annotations: Option<Annotations>,
}

impl ServerSpan {
    /// A span for a call of `method`, continued from the caller's trace
    /// context in `headers`; `None` when tracing is off or not sampled.
    /// `peers` (the server's and the client's addresses) is only asked when
    /// the call is traced.
    pub fn start(
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
            parent_span_id,
            start_unix_nanos: unix_nanos(SystemTime::now()),
            server,
            client,
            annotations: Some(Annotations {
                trace_id,
                span_id: tracer.ids.new_span_id().to_bytes(),
                trace_state,
                cache_outcome: None,
                error_type: None,
            }),
        })
    }

    /// Runs `f` (a poll of the call) with this span as the thread's current
    /// one, so that the code it runs can annotate it and parent client spans.
    pub fn in_scope<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let entered = Entered::new(&mut self.annotations);
        let result = f();
        drop(entered);
        result
    }

    /// The trace id, for log lines.
    pub fn trace_id(&self) -> impl fmt::Display + use<> {
        let id = self.annotations.as_ref().map_or([0; 16], |a| a.trace_id);
        TraceId::from_bytes(id)
    }

    /// Ends the span: its call finished with `status` after `elapsed`.
    pub fn end(self, status: i32, elapsed: Duration) {
        let Some(tracer) = TRACER.get() else { return };
        let Some(a) = self.annotations else { return };
        tracer.queue.push(FinishedSpan {
            trace_id: a.trace_id,
            span_id: a.span_id,
            parent_span_id: self.parent_span_id,
            trace_state: a.trace_state,
            start_unix_nanos: self.start_unix_nanos,
            end_unix_nanos: self.start_unix_nanos + elapsed.as_nanos() as u64,
            error_type: a.error_type,
            side: Side::Server {
                name: self.name,
                method: self.method,
                status,
                server: self.server,
                client: self.client,
                cache_outcome: a.cache_outcome,
            },
        });
    }
}

/// Hands a span's annotations to the thread, and takes them back on drop,
/// also when the poll panics.
struct Entered<'a> {
    slot: &'a mut Option<Annotations>,
    previous: Option<Annotations>,
}

impl<'a> Entered<'a> {
    fn new(slot: &'a mut Option<Annotations>) -> Self {
        let previous = CURRENT.with_borrow_mut(|current| std::mem::replace(current, slot.take()));
        Self { slot, previous }
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let previous = self.previous.take();
        *self.slot = CURRENT.with_borrow_mut(|current| std::mem::replace(current, previous));
    }
}

/// The client span of one upstream call, a child of the current call's span.
#[derive(Debug)]
pub struct ClientSpan {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: [u8; 8],
    trace_state: Option<Box<str>>,
    operation: &'static str,
    region: Arc<str>,
    start_unix_nanos: u64,
}

impl ClientSpan {
    /// A span for a call of `operation`; `None` outside a traced call.
    pub fn start(operation: &'static str, region: &Arc<str>) -> Option<Self> {
        let tracer = TRACER.get()?;
        let (trace_id, parent_span_id, trace_state) = CURRENT.with_borrow(|current| {
            current
                .as_ref()
                .map(|a| (a.trace_id, a.span_id, a.trace_state.clone()))
        })?;
        Some(Self {
            trace_id,
            span_id: tracer.ids.new_span_id().to_bytes(),
            parent_span_id,
            trace_state,
            operation,
            region: region.clone(),
            start_unix_nanos: unix_nanos(SystemTime::now()),
        })
    }

    /// Ends the span: the call took `elapsed` and answered this.
    pub fn end(
        self,
        elapsed: Duration,
        http_status: Option<u16>,
        request_id: Option<&str>,
        error_type: Option<&str>,
    ) {
        let Some(tracer) = TRACER.get() else { return };
        tracer.queue.push(FinishedSpan {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: Some(self.parent_span_id),
            trace_state: self.trace_state,
            start_unix_nanos: self.start_unix_nanos,
            end_unix_nanos: self.start_unix_nanos + elapsed.as_nanos() as u64,
            error_type: error_type.map(Into::into),
            side: Side::Client {
                operation: self.operation,
                region: self.region,
                request_id: request_id.map(Into::into),
                http_status,
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
        traces::install_propagators();
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

    #[test]
    fn annotations_reach_the_span_being_polled_only() {
        let mut annotations = Some(Annotations {
            trace_id: [1; 16],
            span_id: [2; 8],
            trace_state: None,
            cache_outcome: None,
            error_type: None,
        });
        record_cache_outcome("hit"); // no call is being polled: ignored
        {
            let _entered = Entered::new(&mut annotations);
            record_cache_outcome("miss");
            record_error_type("INVALID_REQUEST");
        }
        record_error_type("ignored");
        let a = annotations.unwrap();
        assert_eq!(a.cache_outcome, Some("miss"));
        assert_eq!(a.error_type.as_deref(), Some("INVALID_REQUEST"));
        assert!(CURRENT.with_borrow(Option::is_none));
    }
}
