//! Admission: at most so many API calls at once in the whole process; past
//! that, a call is refused at once rather than queued, RESOURCE_EXHAUSTED
//! with the reason CONCURRENCY_LIMIT and a RetryInfo.
//!
//! A call is admitted once its request message has arrived, not before: a
//! client that opens streams and sends their bodies slowly, or never, holds
//! no slot, and cannot deny service to everyone else. The body is read here
//! within a timeout ([`AdmitLayer::new`]'s `body_timeout`, REQUEST_BODY_TIMEOUT
//! past it), and refused unread past the largest message the API decodes
//! (its gRPC length prefix says how long it will be). Health checks and
//! reflection are never counted nor refused.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use tokio::time::Sleep;
use tonic::Status;
use tonic::body::Body;
use tower::{BoxError, Layer, Service};

use crate::domain::Error;
use crate::proto::API_PREFIX;

/// The gRPC message prefix: a compression flag and a four-byte length.
const PREFIX: usize = 5;

/// Admits at most `limit` calls at a time; see [`super::stack`]. Because nothing
/// ever waits for a slot, a counter does what a semaphore would, without
/// the semaphore's lock on every release.
#[derive(Clone, Debug)]
pub struct AdmitLayer {
    in_flight: Arc<AtomicUsize>,
    limit: usize,
    body_timeout: Duration,
    max_message: usize,
}

impl AdmitLayer {
    /// At most `limit` calls at once, each admitted once its message (at
    /// most `max_message` bytes) has come, which it must within
    /// `body_timeout`.
    pub fn new(limit: usize, body_timeout: Duration, max_message: usize) -> Self {
        Self {
            in_flight: Arc::new(AtomicUsize::new(0)),
            limit,
            body_timeout,
            max_message,
        }
    }

    /// A slot, if one is free.
    fn take(&self) -> Option<Slot> {
        let taken = self.in_flight.fetch_add(1, Ordering::Acquire);
        let slot = Slot(self.in_flight.clone());
        (taken < self.limit).then_some(slot)
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
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// The request body as it comes: usually one frame, kept as it is.
#[derive(Debug, Default)]
pub struct Received {
    first: Option<Bytes>,
    more: Option<BytesMut>,
    len: usize,
}

impl Received {
    fn push(&mut self, data: Bytes) {
        self.len += data.len();
        match (&mut self.first, &mut self.more) {
            (None, _) => self.first = Some(data),
            (Some(_), Some(more)) => more.extend_from_slice(&data),
            (Some(first), None) => {
                let mut more = BytesMut::with_capacity(first.len() + data.len());
                more.extend_from_slice(first);
                more.extend_from_slice(&data);
                self.more = Some(more);
            }
        }
    }

    /// The message's length as its prefix declares it, once it has come.
    fn declared(&self) -> Option<usize> {
        let head = match (&self.more, &self.first) {
            (Some(more), _) => &more[..],
            (None, Some(first)) => &first[..],
            (None, None) => return None,
        };
        let bytes: [u8; 4] = head.get(1..PREFIX)?.try_into().ok()?;
        Some(u32::from_be_bytes(bytes) as usize)
    }

    fn into_bytes(self) -> Bytes {
        match (self.more, self.first) {
            (Some(more), _) => more.freeze(),
            (None, Some(first)) => first,
            (None, None) => Bytes::new(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Admit`]: reading the request's message, then the
    /// call holding its slot, or a refusal. (Its variants' fields are
    /// private in all but name: only this module builds and reads them.)
    #[allow(missing_docs)]
    #[project = Proj]
    pub enum AdmitFuture<S, F> {
        /// The message is being read; no slot is held.
        Reading {
            parts: Option<http::request::Parts>,
            body: Option<Body>,
            received: Received,
            timer: Option<Pin<Box<Sleep>>>,
            inner: Option<S>,
            slots: AdmitLayer,
        },
        /// The call, holding its slot (none for health and reflection).
        Calling {
            #[pin]
            call: F,
            slot: Option<Slot>,
        },
        /// Refused, with why.
        Refused {
            error: Option<Error>,
        },
    }
}

/// What reading a request's message came to.
enum Read<S> {
    /// All of it: the request to call, the service to call, its slot.
    Admitted(http::Request<Body>, S, Slot),
    /// A refusal, answered with a status.
    Refused(Error),
    /// The client reset the stream.
    Reset(BoxError),
}

impl<S> AdmitFuture<S, S::Future>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
{
    /// Reads what has come of the body; `Ready` with the request to call,
    /// or the refusal.
    fn read(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Read<S>> {
        let Proj::Reading {
            parts,
            body,
            received,
            timer,
            inner,
            slots,
        } = self.project()
        else {
            return Poll::Ready(Read::Refused(Error::Internal(
                "admission read twice".into(),
            )));
        };
        let Some(stream) = body.as_mut() else {
            return Poll::Ready(Read::Refused(Error::Internal(
                "admission read twice".into(),
            )));
        };
        loop {
            match Pin::new(&mut *stream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        received.push(data);
                        let too_long = received
                            .declared()
                            .is_some_and(|len| len > slots.max_message)
                            || received.len > slots.max_message + PREFIX;
                        if too_long {
                            return Poll::Ready(Read::Refused(Error::RequestTooLarge {
                                limit: slots.max_message,
                            }));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Read::Reset(e.into())),
                Poll::Ready(None) => break,
                Poll::Pending => {
                    let deadline = slots.body_timeout;
                    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(deadline)));
                    return match timer.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Read::Refused(Error::RequestBodyTimeout {
                            after: deadline,
                        })),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
        let Some(slot) = slots.take() else {
            return Poll::Ready(Read::Refused(Error::Overloaded { limit: slots.limit }));
        };
        let (Some(parts), Some(inner)) = (parts.take(), inner.take()) else {
            return Poll::Ready(Read::Refused(Error::Internal(
                "admission read twice".into(),
            )));
        };
        let body = Body::new(http_body_util::Full::new(
            std::mem::take(received).into_bytes(),
        ));
        Poll::Ready(Read::Admitted(
            http::Request::from_parts(parts, body),
            inner,
            slot,
        ))
    }
}

impl<S, E> Future for AdmitFuture<S, S::Future>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = E>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<Body>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                Proj::Calling { call, .. } => return call.poll(cx).map_err(Into::into),
                Proj::Refused { error } => {
                    let error = error
                        .take()
                        .unwrap_or_else(|| Error::Internal("refusal polled twice".into()));
                    return Poll::Ready(Ok(Status::from(error).into_http()));
                }
                Proj::Reading { .. } => {}
            }
            match std::task::ready!(self.as_mut().read(cx)) {
                Read::Admitted(request, mut inner, slot) => {
                    let call = inner.call(request);
                    self.set(AdmitFuture::Calling {
                        call,
                        slot: Some(slot),
                    });
                }
                Read::Refused(error) => self.set(AdmitFuture::Refused { error: Some(error) }),
                Read::Reset(reset) => return Poll::Ready(Err(reset)),
            }
        }
    }
}

impl<S> Service<http::Request<Body>> for Admit<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = AdmitFuture<S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // Health checks and reflection: never counted, never refused.
        if !request.uri().path().starts_with(API_PREFIX) {
            return AdmitFuture::Calling {
                call: self.inner.call(request),
                slot: None,
            };
        }
        // The service made ready goes with the call; a clone stays.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (parts, body) = request.into_parts();
        AdmitFuture::Reading {
            parts: Some(parts),
            body: Some(body),
            received: Received::default(),
            timer: None,
            inner: Some(inner),
            slots: self.slots.clone(),
        }
    }
}
