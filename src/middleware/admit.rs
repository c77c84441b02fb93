//! Admission: at most so many calls at once in the whole process; past
//! that, a call is refused at once rather than queued, RESOURCE_EXHAUSTED
//! with the reason CONCURRENCY_LIMIT and a RetryInfo.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tonic::Status;

use crate::domain::Error;
use tonic::body::Body;
use tower::{BoxError, Layer, Service};

/// Admits at most `limit` calls at a time; see [`super::stack`]. Because nothing
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
            None => Poll::Ready(Ok(
                Status::from(Error::Overloaded { limit: *this.limit }).into_http()
            )),
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
