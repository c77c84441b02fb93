//! A timeout that costs nothing when the work finishes at once.
//!
//! `tokio::time::timeout` builds a timer entry for every call, and a cache
//! hit finishes on its first poll: it never needed one. [`Timeout`] polls
//! the work first and arms a timer only when the work has to wait, so the
//! hit path pays one branch and the waiting path one small allocation.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::time::Sleep;

pin_project_lite::pin_project! {
    /// `call`, or [`Elapsed`] once `deadline` has passed while it waited.
    pub struct Timeout<F> {
        #[pin]
        call: F,
        deadline: Instant,
        // Boxed so that the future stays small while no timer is needed.
        timer: Option<Pin<Box<Sleep>>>,
    }
}

/// The deadline passed before the work finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

/// Runs `call` until `deadline`; see [`Timeout`].
pub fn timeout_at<F: Future>(deadline: Instant, call: F) -> Timeout<F> {
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
}
