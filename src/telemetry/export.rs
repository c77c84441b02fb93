//! The exporter: finished spans queue up ([`Queue`]), and a loop on the
//! exporter's own thread ([`run`]) takes them in batches, encodes each batch
//! ([`super::otlp`]) and sends it to the collector over OTLP/gRPC or
//! OTLP/HTTP ([`Sender`]). [`super::traces`] configures it from the
//! environment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::{HeaderMap, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Notify, Semaphore, oneshot};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::finished::FinishedSpan;
use super::otlp;
use crate::labels::{Outcome, OutcomeLabel};

/// The OTLP trace service's export method, for `grpc`.
const GRPC_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The exporter's metrics: spans ended, dropped, and exported by outcome.
#[derive(Clone, Debug, Default)]
pub(crate) struct TraceMetrics {
    ended: Counter,
    dropped: Counter,
    exported: Family<OutcomeLabel, Counter>,
}

impl TraceMetrics {
    /// Registers the families in `registry`, each outcome at 0.
    pub(crate) fn register(&self, registry: &mut Registry) {
        for outcome in [Outcome::Ok, Outcome::Error] {
            let _ = self.exported.get_or_create(&OutcomeLabel { outcome });
        }
        registry.register(
            "gateway_trace_spans_ended",
            "Spans finished and handed to the trace exporter's queue",
            self.ended.clone(),
        );
        registry.register(
            "gateway_trace_spans_dropped",
            "Spans finished while the trace exporter's queue was full, and dropped",
            self.dropped.clone(),
        );
        registry.register(
            "gateway_trace_spans_exported",
            "Spans the trace exporter sent to the collector, by outcome (ok, error); \
             ended spans that never arrive here were dropped or wait in the queue",
            self.exported.clone(),
        );
    }
}

/// Finished spans waiting for the exporter. A lock held for a push is
/// uncontended almost always (two pushes per call at most, nanoseconds each).
#[derive(Debug)]
pub(crate) struct Queue {
    spans: Mutex<Vec<FinishedSpan>>,
    /// Told when a full batch waits.
    ready: Notify,
    capacity: usize,
    batch: usize,
    metrics: TraceMetrics,
}

impl Queue {
    /// Room for `capacity` spans, sent `batch` at a time.
    pub(super) fn new(capacity: usize, batch: usize, metrics: TraceMetrics) -> Self {
        Self {
            spans: Mutex::new(Vec::with_capacity(batch)),
            ready: Notify::new(),
            capacity,
            batch,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<FinishedSpan>> {
        self.spans.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a finished span, or drops it when the queue is full.
    pub(crate) fn push(&self, span: FinishedSpan) {
        self.metrics.ended.inc();
        let mut spans = self.lock();
        if spans.len() >= self.capacity {
            drop(spans);
            self.metrics.dropped.inc();
            return;
        }
        spans.push(span);
        let full = spans.len() == self.batch;
        drop(spans);
        if full {
            self.ready.notify_one();
        }
    }
}

/// How the exporter batches and sends.
#[derive(Debug, Clone, Copy)]
pub(super) struct Batching {
    /// `OTEL_BSP_SCHEDULE_DELAY`.
    pub(super) delay: Duration,
    /// `OTEL_BSP_MAX_CONCURRENT_EXPORTS`.
    pub(super) concurrent: usize,
}

/// The exporter's loop: takes what is queued when a batch is full or the
/// delay has passed, and sends it with up to `concurrent` exports in flight
/// (one at a time could not keep up: each waits for the collector's answer,
/// and on busy cores that takes longer than a batch takes to fill). Once
/// told to stop, sends what is left and waits for every export.
pub(super) async fn run(
    queue: Arc<Queue>,
    sender: Sender,
    header: otlp::Header,
    batching: Batching,
    mut stop: oneshot::Receiver<()>,
) {
    let mut encoder = otlp::Encoder::default();
    let mut spare = Vec::with_capacity(queue.batch);
    let in_flight = Arc::new(Semaphore::new(batching.concurrent));
    let failing = Arc::new(AtomicBool::new(false));
    loop {
        let stopping = tokio::select! {
            () = queue.ready.notified() => false,
            () = tokio::time::sleep(batching.delay) => false,
            _ = &mut stop => true,
        };
        let mut spans = std::mem::replace(&mut *queue.lock(), spare);
        for batch in spans.chunks(queue.batch) {
            let mut body = Vec::new();
            encoder.encode(&header, batch, &mut body);
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let (mut sender, failing, count) = (sender.clone(), failing.clone(), batch.len());
            let exported = queue.metrics.exported.clone();
            tokio::spawn(async move {
                let result = sender.send(Bytes::from(body)).await;
                let outcome = match result {
                    Ok(()) => Outcome::Ok,
                    Err(_) => Outcome::Error,
                };
                exported
                    .get_or_create(&OutcomeLabel { outcome })
                    .inc_by(count as u64);
                // Said once when exports start failing, not once per batch.
                let failed_before = failing.swap(result.is_err(), Ordering::Relaxed);
                if let Err(e) = result
                    && !failed_before
                {
                    tracing::warn!("trace export failed: {e}");
                }
                drop(permit);
            });
        }
        spans.clear();
        spare = spans;
        if stopping {
            let _ = in_flight.acquire_many(batching.concurrent as u32).await;
            return;
        }
    }
}

/// Sends encoded exports to the collector.
#[derive(Clone)]
pub(super) struct Sender {
    destination: Destination,
    /// `OTEL_EXPORTER_OTLP_HEADERS`, sensitive.
    headers: HeaderMap,
    /// Bound on one export.
    timeout: Duration,
}

#[derive(Clone)]
enum Destination {
    Grpc(tonic::client::Grpc<tonic::transport::Channel>),
    Http(Box<Client<HttpConnector, Full<Bytes>>>, Uri),
}

impl Sender {
    pub(super) fn grpc(uri: Uri, headers: HeaderMap, timeout: Duration) -> Self {
        let channel = tonic::transport::Endpoint::from(uri).connect_lazy();
        Self {
            destination: Destination::Grpc(tonic::client::Grpc::new(channel)),
            headers,
            timeout,
        }
    }

    pub(super) fn http(uri: Uri, headers: HeaderMap, timeout: Duration) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            destination: Destination::Http(Box::new(client), uri),
            headers,
            timeout,
        }
    }

    /// One export; the error says why it failed (never its content).
    async fn send(&mut self, body: Bytes) -> Result<(), String> {
        let headers = self.headers.clone();
        let export = async {
            match &mut self.destination {
                Destination::Grpc(client) => {
                    client.ready().await.map_err(|e| e.to_string())?;
                    let mut request = tonic::Request::new(body);
                    *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
                    let path = http::uri::PathAndQuery::from_static(GRPC_EXPORT);
                    client
                        .unary(request, path, RawCodec)
                        .await
                        .map(drop)
                        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
                }
                Destination::Http(client, uri) => {
                    let mut request = http::Request::post(uri.clone())
                        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                        .body(Full::new(body))
                        .map_err(|e| e.to_string())?;
                    request.headers_mut().extend(headers);
                    let response = client.request(request).await.map_err(|e| e.to_string())?;
                    let status = response.status();
                    // Read to the end, so that the connection is reused.
                    let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                    if status.is_success() {
                        Ok(())
                    } else {
                        Err(format!("HTTP {status}"))
                    }
                }
            }
        };
        tokio::time::timeout(self.timeout, export)
            .await
            .map_err(|_| "timed out".to_owned())?
    }
}

/// A gRPC codec for a body already encoded; the reply's body is not read
/// (a partial-success message only says what the counters already show).
#[derive(Clone, Copy, Debug, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Self::Error> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}
