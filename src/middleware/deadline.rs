//! Each call's deadline: the caller's `grpc-timeout`, capped by the
//! server's request timeout, enforced around the whole call.
//!
//! The timeout costs nothing when the work finishes at once:
//! `tokio::time::timeout` builds a timer entry for every call, and a cache
//! hit finishes on its first poll: it never needed one. [`Timeout`] polls
//! the work first and arms a timer only when the work has to wait, so the
//! hit path pays one branch and the waiting path one small allocation.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::time::Sleep;
use tonic::Status;
use tonic::body::Body;
use tower::{BoxError, Layer, Service};

use crate::domain::{Deadline, Error};

pin_project_lite::pin_project! {
    /// `call`, or [`Elapsed`] once `deadline` has passed while it waited.
    pub(crate) struct Timeout<F> {
        #[pin]
        call: F,
        deadline: Instant,
        // Boxed so that the future stays small while no timer is needed.
        timer: Option<Pin<Box<Sleep>>>,
    }
}

/// The deadline passed before the work finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Elapsed;

/// Runs `call` until `deadline`; see [`Timeout`].
pub(crate) fn timeout_at<F: Future>(deadline: Instant, call: F) -> Timeout<F> {
    Timeout {
        call,
        deadline,
        timer: None,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.call.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        let deadline = *this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Applies each call's deadline; see [`super::stack`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeadlineLayer {
    request_timeout: Duration,
}

impl DeadlineLayer {
    /// Deadlines of at most `request_timeout`.
    pub(crate) fn new(request_timeout: Duration) -> Self {
        Self { request_timeout }
    }
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
pub(crate) struct DeadlineService<S> {
    inner: S,
    request_timeout: Duration,
}

pin_project_lite::pin_project! {
    /// The future of [`DeadlineService`]: the inner call, or
    /// DEADLINE_EXCEEDED when the deadline passes first. Not boxed: the
    /// inner future is large and moving it costs more than the timer. The
    /// timer is only armed if the call has to wait ([`Timeout`]).
    pub(crate) struct DeadlineFuture<F> {
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
            Poll::Ready(Err(Elapsed)) => {
                Poll::Ready(Ok(Status::from(Error::DeadlineExceeded).into_http()))
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

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let budget = request
            .headers()
            .get(&GRPC_TIMEOUT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map_or(self.request_timeout, |t| t.min(self.request_timeout));
        let deadline = Instant::now() + budget;
        // Below, what fits in the time left is decided by it.
        request.extensions_mut().insert(Deadline(deadline));
        DeadlineFuture {
            call: timeout_at(deadline, self.inner.call(request)),
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
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn work_that_is_ready_needs_no_timer() {
        let mut call = std::pin::pin!(timeout_at(
            Instant::now() + Duration::from_secs(1),
            std::future::ready(7)
        ));
        let waker = std::task::Waker::noop();
        let polled = call.as_mut().poll(&mut Context::from_waker(waker));
        assert_eq!(polled, Poll::Ready(Ok(7)));
        assert!(call.timer.is_none(), "no timer was armed");
    }

    #[tokio::test]
    async fn work_that_waits_past_the_deadline_is_cut_off() {
        let started = Instant::now();
        let outcome = timeout_at(
            started + Duration::from_millis(50),
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(outcome, Err(Elapsed));
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn work_that_waits_but_finishes_in_time_keeps_its_result() {
        let outcome = timeout_at(Instant::now() + Duration::from_secs(5), async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            "done"
        })
        .await;
        assert_eq!(outcome, Ok("done"));
    }

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
