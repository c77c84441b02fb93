//! Admission: at most so many API calls at once in the whole process; past
//! that, a call is refused at once rather than queued, RESOURCE_EXHAUSTED
//! with the reason CONCURRENCY_LIMIT and a RetryInfo.
//!
//! A call is admitted once its request message has arrived, not before: a
//! client that opens streams and sends their bodies slowly, or never, holds
//! no slot, and cannot deny service to everyone else. The body is read here
//! within a timeout ([`AdmitLayer::new`]'s `body_timeout`, REQUEST_BODY_TIMEOUT
//! past it), and refused unread past the largest message the API decodes
//! (its gRPC length prefix says how long it will be). Every other call
//! (health checks, and paths no service serves) is read the same way but
//! never counted nor refused a slot; reflection (a bidirectional stream)
//! passes straight through.
//!
//! The bytes of messages that are still arriving are held against one
//! budget for the whole process (`buffer_limit`): a message that needs
//! more than is left is refused at once, RESOURCE_EXHAUSTED with the reason
//! REQUEST_BUFFER_FULL, so that stalled bodies on any number of connections
//! hold at most that much memory. A message that comes whole (the usual
//! case: one DATA frame) is never held, so it is never refused this way,
//! and a call goes on as soon as its message is complete, without waiting
//! for the end of the stream.

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

use crate::domain::{Error, InFlight, Peer};
use crate::proto::API_PREFIX;

/// The path prefix of gRPC reflection, a bidirectional stream whose
/// messages cannot be read ahead.
const REFLECTION_PREFIX: &str = "/grpc.reflection.";

/// The gRPC message prefix: a compression flag and a four-byte length.
const PREFIX: usize = 5;

/// Admits at most `limit` calls at a time; see [`super::stack`]. Because nothing
/// ever waits for a slot, a counter does what a semaphore would, without
/// the semaphore's lock on every release.
#[derive(Clone, Debug)]
pub(crate) struct AdmitLayer {
    in_flight: Arc<AtomicUsize>,
    limit: usize,
    body_timeout: Duration,
    max_message: usize,
    buffered: Arc<AtomicUsize>,
    buffer_limit: usize,
}

impl AdmitLayer {
    /// At most `limit` calls at once, each admitted once its message (at
    /// most `max_message` bytes) has come, which it must within
    /// `body_timeout`; messages still arriving hold at most `buffer_limit`
    /// bytes together.
    pub(crate) fn new(
        limit: usize,
        body_timeout: Duration,
        max_message: usize,
        buffer_limit: usize,
    ) -> Self {
        Self {
            in_flight: Arc::new(AtomicUsize::new(0)),
            limit,
            body_timeout,
            max_message,
            buffered: Arc::new(AtomicUsize::new(0)),
            buffer_limit,
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
pub(crate) struct Admit<S> {
    inner: S,
    slots: AdmitLayer,
}

/// A call's slot, given back when its response future ends or is dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// What a message still arriving holds of the process's budget, given
/// back when it is dropped. Nothing, and no reference to the budget, until
/// a message is held incomplete.
#[derive(Debug, Default)]
pub(crate) struct Held {
    budget: Option<Arc<AtomicUsize>>,
    bytes: usize,
}

impl Held {
    /// Holds `bytes` in all, taking what more that needs from `budget`;
    /// `false`, holding no more than before, when it would pass `limit`.
    fn hold(&mut self, bytes: usize, budget: &Arc<AtomicUsize>, limit: usize) -> bool {
        let Some(more) = bytes.checked_sub(self.bytes).filter(|&more| more > 0) else {
            return true;
        };
        let taken = budget.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(more).filter(|&after| after <= limit)
        });
        if taken.is_err() {
            return false;
        }
        self.budget.get_or_insert_with(|| budget.clone());
        self.bytes = bytes;
        true
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

/// The length a gRPC message's prefix at the start of `head` declares.
fn declared_in(head: &[u8]) -> Option<usize> {
    let bytes: [u8; 4] = head.get(1..PREFIX)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes) as usize)
}

/// The request body as it comes: usually one frame, kept as it is.
#[derive(Debug, Default)]
pub(crate) struct Received {
    first: Option<Bytes>,
    more: Option<BytesMut>,
    len: usize,
}

impl Received {
    /// Adds `data`, refusing the message once its declared or received
    /// length is past `max`.
    fn add(&mut self, data: Bytes, max: usize) -> Result<(), Error> {
        self.push(data, max);
        let too_long = self.declared().is_some_and(|len| len > max) || self.len > max + PREFIX;
        if too_long {
            return Err(Error::RequestTooLarge { limit: max });
        }
        Ok(())
    }

    /// Adds what has come of a message that may be at most `max` bytes.
    /// The buffer grows by doubling, never past the whole message its
    /// prefix declares: what it holds, which the budget counts, is at most
    /// twice what has come, so filling the budget takes sending half of it.
    fn push(&mut self, data: Bytes, max: usize) {
        self.len += data.len();
        if self.more.is_none() {
            match self.first.take() {
                None => {
                    self.first = Some(data);
                    return;
                }
                Some(first) => self.more = Some(BytesMut::from(&first[..])),
            }
        }
        let Some(more) = &mut self.more else {
            return;
        };
        let need = more.len() + data.len();
        if more.capacity() < need {
            let whole = declared_in(more).map_or(need, |len| len.min(max).saturating_add(PREFIX));
            let room = more.capacity().saturating_mul(2).min(whole).max(need);
            let mut grown = BytesMut::with_capacity(room);
            grown.extend_from_slice(more);
            *more = grown;
        }
        more.extend_from_slice(&data);
    }

    /// Holds what has come in memory of its own: a lone frame is a slice of
    /// the connection's read buffer, which it would keep alive whole while
    /// the budget counted only the slice.
    fn own(&mut self) {
        if let Some(first) = self.first.take() {
            self.more = Some(BytesMut::from(&first[..]));
        }
    }

    /// The memory the message holds so far.
    fn held(&self) -> usize {
        self.more.as_ref().map_or(self.len, BytesMut::capacity)
    }

    /// The message's length as its prefix declares it, once it has come.
    fn declared(&self) -> Option<usize> {
        match (&self.more, &self.first) {
            (Some(more), _) => declared_in(more),
            (None, Some(first)) => declared_in(first),
            (None, None) => None,
        }
    }

    /// Whether the whole first message has come.
    fn complete(&self) -> bool {
        self.declared()
            .is_some_and(|len| self.len >= len.saturating_add(PREFIX))
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
    pub(crate) enum AdmitFuture<S, F> {
        /// The message is being read; no slot is held.
        Reading {
            parts: Option<http::request::Parts>,
            body: Option<Body>,
            received: Received,
            held: Held,
            timer: Option<Pin<Box<Sleep>>>,
            inner: Option<S>,
            slots: AdmitLayer,
            // Whether the call takes a slot (API calls, not health checks).
            counted: bool,
            in_flight: Option<InFlight>,
        },
        /// The call, holding its slot (none for health and reflection) and
        /// its place in its connection's count of calls in flight, which a
        /// call with no slot (health and reflection, whose replies may
        /// stream) carries on to the end of its reply.
        Calling {
            #[pin]
            call: F,
            slot: Option<Slot>,
            in_flight: Option<InFlight>,
        },
        /// Refused, with why.
        Refused {
            error: Option<Error>,
        },
    }
}

pin_project_lite::pin_project! {
    /// A streamed reply, which keeps its call counted in flight on its
    /// connection until it ends.
    struct Counted {
        #[pin]
        body: Body,
        _in_flight: InFlight,
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// What reading a request's message came to.
enum Read<S> {
    /// All of it: the request to call, the service to call, its slot
    /// (none for a health check), its place among its connection's calls.
    Admitted(http::Request<Body>, S, Option<Slot>, Option<InFlight>),
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
            held,
            timer,
            inner,
            slots,
            counted,
            in_flight,
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
                    if let Ok(data) = frame.into_data()
                        && let Err(refused) = received.add(data, slots.max_message)
                    {
                        return Poll::Ready(Read::Refused(refused));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Read::Reset(e.into())),
                Poll::Ready(None) => break,
                // The message is whole: the rest of the stream is not
                // waited for.
                Poll::Pending if received.complete() => break,
                Poll::Pending => {
                    return stalled(received, held, timer, slots, cx).map(Read::Refused);
                }
            }
        }
        let slot = if *counted {
            let Some(slot) = slots.take() else {
                return Poll::Ready(Read::Refused(Error::Overloaded { limit: slots.limit }));
            };
            Some(slot)
        } else {
            None
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
            in_flight.take(),
        ))
    }
}

/// The body has no more for now and the message is not whole: what has
/// come is copied out of the connection's buffers and held against the
/// global budget, and the call waits for the rest until the body timeout.
/// `Ready` with the refusal when either runs out.
fn stalled(
    received: &mut Received,
    held: &mut Held,
    timer: &mut Option<Pin<Box<Sleep>>>,
    slots: &AdmitLayer,
    cx: &mut Context<'_>,
) -> Poll<Error> {
    received.own();
    if !held.hold(received.held(), &slots.buffered, slots.buffer_limit) {
        return Poll::Ready(Error::RequestBufferFull {
            limit: slots.buffer_limit,
        });
    }
    let deadline = slots.body_timeout;
    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(deadline)));
    timer
        .as_mut()
        .poll(cx)
        .map(|()| Error::RequestBodyTimeout { after: deadline })
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
                Proj::Calling {
                    call,
                    slot,
                    in_flight,
                } => {
                    let response = std::task::ready!(call.poll(cx)).map_err(Into::into)?;
                    return Poll::Ready(Ok(match in_flight.take() {
                        Some(in_flight) if slot.is_none() => response.map(|body| {
                            Body::new(Counted {
                                body,
                                _in_flight: in_flight,
                            })
                        }),
                        // An API call's reply is whole: the call ends with it.
                        _ => response,
                    }));
                }
                Proj::Refused { error } => {
                    let error = error
                        .take()
                        .unwrap_or_else(|| Error::Internal("refusal polled twice".into()));
                    return Poll::Ready(Ok(Status::from(error).into_http()));
                }
                Proj::Reading { .. } => {}
            }
            match std::task::ready!(self.as_mut().read(cx)) {
                Read::Admitted(request, mut inner, slot, in_flight) => {
                    let call = inner.call(request);
                    self.set(AdmitFuture::Calling {
                        call,
                        slot,
                        in_flight,
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
        // The connection counts the call in flight until it ends.
        let in_flight = request
            .extensions()
            .get::<Peer>()
            .and_then(|peer| peer.activity.call());
        // Reflection streams straight through; health checks are read
        // ahead but never counted nor refused a slot.
        let path = request.uri().path();
        if path.starts_with(REFLECTION_PREFIX) {
            return AdmitFuture::Calling {
                call: self.inner.call(request),
                slot: None,
                in_flight,
            };
        }
        let counted = path.starts_with(API_PREFIX);
        // The service made ready goes with the call; a clone stays.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (parts, body) = request.into_parts();
        AdmitFuture::Reading {
            parts: Some(parts),
            body: Some(body),
            received: Received::default(),
            held: Held::default(),
            timer: None,
            inner: Some(inner),
            slots: self.slots.clone(),
            counted,
            in_flight,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(len: u32) -> Bytes {
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.into()
    }

    #[test]
    fn a_message_that_comes_in_pieces_holds_at_most_twice_what_came_never_past_its_size() {
        let frame = |n: usize| Bytes::from(vec![b'x'; n]);
        let mut received = Received::default();
        received.push(prefix(100_000), 200_000);
        // One frame, kept as it came until it must wait: then owned.
        assert_eq!((received.held(), received.complete()), (5, false));
        received.own();
        assert_eq!(received.held(), 5);
        let mut came = 5;
        while came < 100_005 {
            let piece = 16_384.min(100_005 - came);
            received.push(frame(piece), 200_000);
            came += piece;
            let held = received.held();
            assert!(held >= came && held <= 2 * came, "{held} for {came}");
            assert!(held <= 100_005, "{held}: past the declared message");
        }
        assert!(received.complete());
        assert_eq!(received.held(), 100_005);
        assert_eq!(received.into_bytes().len(), 100_005);
        // A first frame shorter than the prefix: the size is learnt later.
        let mut received = Received::default();
        received.push(Bytes::from_static(&[0, 0]), 200_000);
        received.push(Bytes::from_static(&[0, 0, 50]), 200_000);
        received.push(frame(20), 200_000);
        assert_eq!(received.declared(), Some(50));
        assert!(received.held() <= 55, "{}", received.held());
        // A prefix declaring more than the largest message: no doubling
        // past the largest, only room for what has come (it is refused on
        // its prefix anyway).
        let mut received = Received::default();
        received.push(prefix(u32::MAX), 2000);
        for _ in 0..10 {
            received.push(frame(1000), 2000);
        }
        assert_eq!(received.held(), 10_005);
    }

    #[test]
    fn held_bytes_count_against_one_budget_and_come_back_when_dropped() {
        let budget = Arc::new(AtomicUsize::new(0));
        let mut first = Held::default();
        let mut second = Held::default();
        assert!(first.hold(600, &budget, 1000));
        assert!(first.hold(400, &budget, 1000), "holding less takes nothing");
        assert!(!second.hold(500, &budget, 1000), "past the limit");
        assert_eq!(
            budget.load(Ordering::Relaxed),
            600,
            "a refusal takes nothing"
        );
        assert!(second.hold(400, &budget, 1000));
        assert!(first.hold(600, &budget, 1000));
        assert!(!first.hold(601, &budget, 1000));
        drop(first);
        assert_eq!(budget.load(Ordering::Relaxed), 400);
        drop(second);
        assert_eq!(budget.load(Ordering::Relaxed), 0);
        // Nothing held, nothing to give back: no reference to the budget.
        let idle = Held::default();
        assert!(idle.budget.is_none());
    }
}
