//! The tower stack every request goes through before the gRPC layer, built
//! in one function and read top to bottom.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::TryFutureExt;
use futures_util::future::{Either, ErrInto};
use tonic::Status;
use tonic::body::Body;
use tower::layer::util::{Identity, Stack};
use tower::{BoxError, Layer, Service, ServiceBuilder};

use crate::deadline::{Timeout, timeout_at};
use crate::error::Error;
use crate::grpc::API_PREFIX;
use crate::telemetry::rpc::ObserveLayer;

/// The stack's type, for `tonic::transport::Server::layer`.
pub type GatewayStack<A> =
    Stack<DispatchLayer<A>, Stack<AdmitLayer, Stack<DeadlineLayer, Stack<ObserveLayer, Identity>>>>;

/// The middleware, outermost first, ending in `api`, the API's gRPC service.
pub fn stack<A>(
    request_timeout: Duration,
    concurrency_limit: usize,
    api: A,
) -> ServiceBuilder<GatewayStack<A>> {
    ServiceBuilder::new()
        // A span and metrics for every API call, around everything below,
        // continued from the caller's trace context.
        .layer(ObserveLayer)
        // Every call gets a deadline: the caller's grpc-timeout, capped by the
        // server's request timeout. Time spent waiting below counts, and
        // when it passes the whole call is dropped, its upstream request
        // with it. The only timer of the gateway's own on a call.
        .layer(DeadlineLayer { request_timeout })
        // At most this many calls in the whole process, across connections;
        // past that, refuse at once (RESOURCE_EXHAUSTED) rather than queue:
        // a queue only adds latency that the caller's deadline then wastes.
        .layer(AdmitLayer::new(concurrency_limit))
        // API calls straight to the API; health and reflection through
        // tonic's router.
        .layer(DispatchLayer { api })
}

/// Hands the API's calls (paths under [`API_PREFIX`]) to the API's service
/// and everything else to the service below, tonic's router. The router is
/// an axum router that wraps the request body in one more box and matches
/// the path against every service; on the path of every call that measured
/// at about a tenth of the gateway's own cost on a cache hit.
#[derive(Clone, Debug)]
pub struct DispatchLayer<A> {
    api: A,
}

impl<A: Clone, S> Layer<S> for DispatchLayer<A> {
    type Service = Dispatch<A, S>;

    fn layer(&self, routes: S) -> Self::Service {
        Dispatch {
            api: self.api.clone(),
            routes,
        }
    }
}

/// The service of [`DispatchLayer`].
#[derive(Clone, Debug)]
pub struct Dispatch<A, S> {
    api: A,
    routes: S,
}

impl<A, S, B> Service<http::Request<B>> for Dispatch<A, S>
where
    A: Service<http::Request<B>, Response = http::Response<Body>>,
    A::Error: Into<BoxError>,
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Either<ErrInto<A::Future, BoxError>, ErrInto<S::Future, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        std::task::ready!(self.api.poll_ready(cx)).map_err(Into::into)?;
        self.routes.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path().starts_with(API_PREFIX) {
            Either::Left(self.api.call(request).err_into())
        } else {
            Either::Right(self.routes.call(request).err_into())
        }
    }
}

/// Admits at most `limit` calls at a time; see [`stack`]. Because nothing
/// ever waits for a slot, a counter does what a semaphore would, without
/// the semaphore's lock on every release.
#[derive(Clone, Debug)]
pub struct AdmitLayer {
    in_flight: Arc<AtomicUsize>,
    limit: usize,
}

impl AdmitLayer {
    /// At most `limit` calls at once.
    pub fn new(limit: usize) -> Self {
        Self {
            in_flight: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }
}

impl<S> Layer<S> for AdmitLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admit {
            inner,
            slots: self.clone(),
        }
    }
}

/// The service of [`AdmitLayer`].
#[derive(Clone, Debug)]
pub struct Admit<S> {
    inner: S,
    slots: AdmitLayer,
}

/// A call's slot, given back when its response future ends or is dropped.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Admit`]: the call holding its slot, or the refusal.
    pub struct AdmitFuture<F> {
        #[pin]
        call: Option<F>,
        slot: Option<Slot>,
        limit: usize,
    }
}

impl<F, E> Future for AdmitFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.call.as_pin_mut() {
            Some(call) => call.poll(cx).map_err(Into::into),
            None => Poll::Ready(Ok(Status::resource_exhausted(format!(
                "the gateway is serving its limit of {} calls; retry with backoff",
                this.limit
            ))
            .into_http())),
        }
    }
}

impl<S, B> Service<http::Request<B>> for Admit<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = AdmitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let limit = self.slots.limit;
        let taken = self.slots.in_flight.fetch_add(1, Ordering::Acquire);
        let slot = Slot(self.slots.in_flight.clone());
        if taken >= limit {
            drop(slot);
            return AdmitFuture {
                call: None,
                slot: None,
                limit,
            };
        }
        AdmitFuture {
            call: Some(self.inner.call(request)),
            slot: Some(slot),
            limit,
        }
    }
}

/// Applies each call's deadline; see [`stack`].
#[derive(Clone, Copy, Debug)]
pub struct DeadlineLayer {
    request_timeout: Duration,
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService {
            inner,
            request_timeout: self.request_timeout,
        }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Clone, Debug)]
pub struct DeadlineService<S> {
    inner: S,
    request_timeout: Duration,
}

pin_project_lite::pin_project! {
    /// The future of [`DeadlineService`]: the inner call, or
    /// DEADLINE_EXCEEDED when the deadline passes first. Not boxed: the
    /// inner future is large and moving it costs more than the timer. The
    /// timer is only armed if the call has to wait ([`crate::deadline`]).
    pub struct DeadlineFuture<F> {
        #[pin]
        call: Timeout<F>,
    }
}

impl<F, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().call.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(result)) => Poll::Ready(result.map_err(Into::into)),
            Poll::Ready(Err(elapsed)) => {
                Poll::Ready(Ok(Status::from(Error::from(elapsed)).into_http()))
            }
        }
    }
}

impl<S, B> Service<http::Request<B>> for DeadlineService<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let budget = request
            .headers()
            .get(&GRPC_TIMEOUT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map_or(self.request_timeout, |t| t.min(self.request_timeout));
        DeadlineFuture {
            call: timeout_at(Instant::now() + budget, self.inner.call(request)),
        }
    }
}

/// The caller's deadline, as a header name that need not be parsed per call.
static GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// Parses a `grpc-timeout` header: at most 8 digits and a unit, one of
/// H, M, S, m, u, n (the gRPC over HTTP/2 specification).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
    }

    #[test]
    fn grpc_timeout_rejects_malformed() {
        for bad in ["", "S", "5", "5s", "123456789S", "-5S", "5 S", "é"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
