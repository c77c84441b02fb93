//! The server side of every API call: its span ([`super::spans`]), continued
//! from the caller's W3C trace context, and the request metrics. A tower
//! layer, so that time spent in the middleware below it (deadlines, load
//! shedding) is inside the span.
//!
//! The span is handed what happened below it, never reaches for it: a
//! traced call's request carries [`CallNotes`], which the gRPC layer fills
//! from the service's answer (how the cache answered, the upstream call
//! made), and an error reply carries its status, whose source is the
//! domain error (`error.type`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame};
use tonic::{Code, Status};
use tower::{BoxError, Layer, Service};

use super::metrics::code_name;
use super::rpc_metrics::RpcMetrics;
use super::spans::{Ending, ServerSpan};
use crate::domain::{CacheOutcome, Error, Peer, UpstreamCall};
use crate::proto::{API_METHODS, API_PATHS};

/// What the layers below tell a traced call's span: handed down in the
/// request's extensions, filled by the gRPC layer from the service's answer.
/// Untraced calls carry none, and pay nothing for it.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallNotes {
    notes: Arc<Mutex<Notes>>,
    trace_id: [u8; 16],
}

#[derive(Debug, Default)]
struct Notes {
    cache: Option<CacheOutcome>,
    upstream: Option<Box<UpstreamCall>>,
}

impl CallNotes {
    /// The notes of a call traced in `trace_id`.
    pub(crate) fn new(trace_id: [u8; 16]) -> Self {
        Self {
            notes: Arc::default(),
            trace_id,
        }
    }

    /// The trace the call belongs to.
    pub(crate) fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// How the cache answered, and the upstream call made for the call.
    pub(crate) fn note(&self, cache: Option<CacheOutcome>, upstream: Option<Box<UpstreamCall>>) {
        if let Ok(mut notes) = self.notes.lock() {
            *notes = Notes { cache, upstream };
        }
    }

    fn take(&self) -> Notes {
        self.notes
            .lock()
            .map(|mut notes| std::mem::take(&mut *notes))
            .unwrap_or_default()
    }
}

/// Observes API calls; see the module documentation.
#[derive(Clone, Debug, Default)]
pub(crate) struct ObserveLayer {
    metrics: RpcMetrics,
}

impl ObserveLayer {
    /// Counts calls in `metrics`.
    pub(crate) fn new(metrics: RpcMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`ObserveLayer`].
#[derive(Clone, Debug)]
pub(crate) struct Observe<S> {
    inner: S,
    metrics: RpcMetrics,
}

/// Closes a call's books once its status is known: records it on the span,
/// counts it, and logs it at debug. Runs once, also when the client goes
/// away mid-call (then the call counts as CANCELLED).
struct Finish {
    /// `None` when the call is not traced. Boxed: the response body carries
    /// this through hyper, which moves it several times, and an untraced
    /// call should not pay to move a span's worth of empty bytes.
    span: Option<Box<(ServerSpan, CallNotes)>>,
    method: &'static str,
    started: Instant,
    done: bool,
    metrics: RpcMetrics,
}

impl Finish {
    fn finish(&mut self, code: Code, error_type: Option<Box<str>>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        self.metrics.call_finished(self.method, code, elapsed);
        tracing::debug!(
            rpc = self.method,
            code = code_name(code),
            elapsed_us = elapsed.as_micros() as u64,
            trace_id = self
                .span
                .as_ref()
                .map(|s| tracing::field::display(s.0.trace_id())),
            "call finished"
        );
        if let Some(traced) = self.span.take() {
            let (span, notes) = *traced;
            let Notes { cache, upstream } = notes.take();
            let ending = Ending {
                status: code as i32,
                error_type,
                cache,
                upstream,
            };
            span.end(elapsed, ending);
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.finish(Code::Cancelled, None);
    }
}

/// Why an error reply failed, as the domain error that its status carries
/// says; `None` for statuses of no domain error (load shedding).
fn error_type<B>(response: &http::Response<B>) -> Option<Box<str>> {
    let status = response.extensions().get::<Status>()?;
    let error = std::error::Error::source(status)?.downcast_ref::<Error>()?;
    Some(error.reason().into())
}

/// Looked up on every call: a `HeaderName` is hashed, a `&str` parsed first.
static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers
        .get(&GRPC_STATUS)?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(Code::from_i32(value))
}

/// The API method a path calls, as `'static` names from the generated
/// code: the method for labels ([`API_METHODS`]) and the server span's name
/// (`{package.service}/{method}`, the path without its leading slash).
fn method_name(path: &str) -> Option<(&'static str, &'static str)> {
    let i = API_PATHS.iter().position(|p| *p == path)?;
    Some((API_METHODS[i], &API_PATHS[i][1..]))
}

pin_project_lite::pin_project! {
    /// A response body that reads the status from the trailers.
    pub(crate) struct ObservedBody<B> {
        #[pin]
        inner: B,
        finish: Option<Finish>,
    }
}

impl<B> Body for ObservedBody<B>
where
    B: Body,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(finish)) = (&polled, this.finish.as_mut())
            && let Some(trailers) = frame.trailers_ref()
        {
            finish.finish(grpc_status(trailers).unwrap_or(Code::Unknown), None);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Observe`]: the call, polled with its span current,
    /// then its books closed. Not boxed: the inner future is large and
    /// moving it costs more than this.
    pub(crate) struct ObserveFuture<F> {
        #[pin]
        call: F,
        finish: Option<Finish>,
    }
}

impl<F, E, ResBody> Future for ObserveFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    E: Into<BoxError>,
    ResBody: Default,
{
    type Output = Result<http::Response<ObservedBody<ResBody>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Poll::Ready(result) = this.call.poll(cx) else {
            return Poll::Pending;
        };
        let mut finish = this.finish.take();
        Poll::Ready(Ok(match result {
            Ok(response) => {
                // A trailers-only response (an error) carries the status in
                // its headers; otherwise it comes in the trailers.
                if let (Some(code), Some(f)) = (grpc_status(response.headers()), finish.as_mut()) {
                    // Only a traced call's span records why.
                    let why = f.span.as_ref().and_then(|_| error_type(&response));
                    f.finish(code, why);
                    finish = None;
                }
                response.map(|inner| ObservedBody { inner, finish })
            }
            Err(err) => {
                // A middleware error (load shed): answered here, as tonic
                // would, so that it is counted like any status.
                let status = tonic::Status::from_error(err.into());
                if let Some(f) = finish.as_mut() {
                    f.finish(status.code(), None);
                }
                status.into_http().map(|inner| ObservedBody {
                    inner,
                    finish: None,
                })
            }
        }))
    }
}

impl<S, B, ResBody> Service<http::Request<B>> for Observe<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Default,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = BoxError;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let Some((method, span_name)) = method_name(request.uri().path()) else {
            return ObserveFuture {
                call: self.inner.call(request),
                finish: None,
            };
        };
        let span = ServerSpan::start(span_name, method, request.headers(), || {
            let peer = request.extensions().get::<Peer>();
            (peer.and_then(|p| p.local), peer.and_then(|p| p.remote))
        });
        let span = span.map(|span| {
            let notes = CallNotes::new(span.trace_id_bytes());
            request.extensions_mut().insert(notes.clone());
            Box::new((span, notes))
        });
        self.metrics.call_started(method);
        let finish = Finish {
            span,
            method,
            started: Instant::now(),
            done: false,
            metrics: self.metrics.clone(),
        };
        ObserveFuture {
            call: self.inner.call(request),
            finish: Some(finish),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::cognito_identity_service_server::SERVICE_NAME;

    #[test]
    fn only_the_api_is_observed() {
        assert_eq!(
            method_name("/cognito_identity_gateway.v1.CognitoIdentityService/GetId"),
            Some((
                "GetId",
                "cognito_identity_gateway.v1.CognitoIdentityService/GetId"
            ))
        );
        assert_eq!(method_name("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            method_name("/cognito_identity_gateway.v1.CognitoIdentityService/Nope"),
            None
        );
    }

    #[test]
    fn every_span_name_is_the_service_and_its_method() {
        for (method, path) in API_METHODS.iter().zip(API_PATHS) {
            let (_, name) = method_name(path).unwrap();
            assert_eq!(name, format!("{SERVICE_NAME}/{method}"));
        }
    }

    #[test]
    fn an_error_reply_names_its_domain_error() {
        let status = Status::from(Error::UpstreamTimeout);
        let reply: http::Response<()> = status.into_http();
        assert_eq!(error_type(&reply).as_deref(), Some("UPSTREAM_TIMEOUT"));
        let shed: http::Response<()> = Status::resource_exhausted("busy").into_http();
        assert_eq!(error_type(&shed), None);
    }

    #[test]
    fn notes_are_taken_once() {
        let notes = CallNotes::default();
        notes.note(Some(CacheOutcome::Hit), None);
        assert_eq!(notes.take().cache, Some(CacheOutcome::Hit));
        assert_eq!(notes.take().cache, None);
    }
}
