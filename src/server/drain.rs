//! The server's one drain signal: shutdown has begun.
//!
//! [`super::run`] makes one [`Drain`] and starts it when its shutdown
//! future resolves, once gRPC health checking says NOT_SERVING. Everything
//! the server runs follows a [`Watch`] of it:
//!
//! - the admin listener answers `/readyz` with 503 from then on
//!   ([`Watch::is_draining`]), so that the Service sends no new
//!   connections here;
//! - the API listener stops accepting, and its socket closes;
//! - a connection that has not sent its HTTP/2 preface yet is closed; any
//!   other is told to finish (GOAWAY): its calls in flight have as long as
//!   a call may take, then it is closed under them;
//! - the grace period (`--shutdown-grace`) starts: `run` returns once
//!   every connection has closed, or when it is over, abandoning what is
//!   still in flight.
//!
//! Connections, and TLS handshakes under way, hold the drain until they
//! end ([`Drain::hold`]): that is what `run` waits for
//! ([`Drain::drained`]). The admin listener and background tasks only
//! read it ([`Drain::watch`]), and stop when `run` returns and drops the
//! drain ([`Watch::stopped`]).

use tokio::sync::watch;

/// The drain itself, kept by `run`.
#[derive(Debug)]
pub struct Drain {
    /// `true` once draining; dropped when `run` returns.
    signal: watch::Sender<bool>,
    /// One receiver for each holder: the drain is over when none is left.
    holders: watch::Sender<()>,
}

/// A view of the drain. Clones of a watch from [`Drain::hold`] hold the
/// drain too.
#[derive(Clone, Debug)]
pub struct Watch {
    signal: watch::Receiver<bool>,
    _holding: Option<watch::Receiver<()>>,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            signal: watch::Sender::new(false),
            holders: watch::Sender::new(()),
        }
    }
}

impl Drain {
    /// A drain not yet started.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts draining: every watch sees it at once.
    pub fn start(&self) {
        self.signal.send_replace(true);
    }

    /// A watch that does not keep the drain from ending: for what only
    /// reads it, and stops when `run` returns.
    pub fn watch(&self) -> Watch {
        Watch {
            signal: self.signal.subscribe(),
            _holding: None,
        }
    }

    /// A watch that the drain waits for: for what must end before `run`
    /// does (each connection, each handshake), held until it has ended.
    pub fn hold(&self) -> Watch {
        Watch {
            signal: self.signal.subscribe(),
            _holding: Some(self.holders.subscribe()),
        }
    }

    /// Resolves once no watch from [`Drain::hold`] is left.
    pub(crate) async fn drained(&self) {
        self.holders.closed().await;
    }
}

impl Watch {
    /// Whether the drain has started.
    pub(crate) fn is_draining(&self) -> bool {
        *self.signal.borrow()
    }

    /// Resolves once the drain has started, or when the drain is gone
    /// (`run` returned): either way nothing is served any more.
    pub(crate) async fn draining(&self) {
        let mut signal = self.signal.clone();
        let _ = signal.wait_for(|draining| *draining).await;
    }

    /// Resolves when the drain is gone: `run` has returned.
    pub async fn stopped(&self) {
        let mut signal = self.signal.clone();
        while signal.changed().await.is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn holders_keep_the_drain_and_readers_see_it_start_and_stop() {
        let drain = Drain::new();
        let (reader, holder) = (drain.watch(), drain.hold());
        let held_too = holder.clone();
        assert!(!reader.is_draining());
        let drained = tokio::time::timeout(Duration::from_millis(20), drain.drained());
        assert!(drained.await.is_err(), "a holder keeps the drain");
        drain.start();
        assert!(reader.is_draining() && holder.is_draining());
        holder.draining().await;
        drop((holder, held_too));
        drain.drained().await;
        // A reader never held it, and stops only once the drain is gone.
        let stopped = tokio::spawn(async move { reader.stopped().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!stopped.is_finished());
        drop(drain);
        stopped.await.unwrap();
    }
}
