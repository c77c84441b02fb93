//! Who is calling, and on which connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Who is calling, as the connection or the mesh in front of it says.
/// Cheap to clone: a connection's caller travels with each of its calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No authenticated identity.
    Anonymous,
    /// A SPIFFE id (a certificate's URI SAN, or a mesh's `URI=`).
    Spiffe(Arc<str>),
    /// A DNS name (a certificate's first DNS SAN, or a mesh's client id).
    Dns(Arc<str>),
}

/// What the connection a call came on says about it: set once when the
/// connection is accepted, put in each of its calls' extensions by the
/// server's serve loop.
#[derive(Clone, Debug, Default)]
pub(crate) struct Peer {
    /// The gateway's address.
    pub local: Option<SocketAddr>,
    /// The caller's address.
    pub(crate) remote: Option<SocketAddr>,
    /// `Some` on a TLS connection: the caller its client certificate names,
    /// [`Caller::Anonymous`] when it showed none. `None` on plaintext.
    pub(crate) certified: Option<Caller>,
    /// The connection's calls in flight, which the server counts to close
    /// connections that stay idle.
    pub(crate) activity: Activity,
}

/// A connection's calls in flight and since when it has had none: each
/// call holds an [`InFlight`] from when its stream is first served until
/// its reply is made (a streamed reply: until it ends), and the connection
/// reads [`Activity::idle_for`]. Cheap to clone (one shared count); the
/// default counts nothing, for a call that came on no counted connection.
/// Times are the system's monotonic clock, not tokio's (a paused test
/// clock does not move them).
#[derive(Clone, Debug, Default)]
pub(crate) struct Activity(Option<Arc<Counts>>);

#[derive(Debug)]
struct Counts {
    /// The connection's start, which `idle_since` counts from.
    start: std::time::Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `start` to when the last call in flight ended.
    idle_since: AtomicU64,
}

/// A call in flight on its connection, ended when dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Counts>);

impl Activity {
    /// A count for a connection opened now.
    pub(crate) fn new() -> Self {
        Self(Some(Arc::new(Counts {
            start: std::time::Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
        })))
    }

    /// Counts a call until the returned guard is dropped; `None` when
    /// nothing is counted.
    pub(crate) fn call(&self) -> Option<InFlight> {
        let counts = self.0.as_ref()?;
        counts.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(InFlight(counts.clone()))
    }

    /// How long the connection has had no call in flight at `now`; `None`
    /// while one is (or when nothing is counted).
    pub(crate) fn idle_for(&self, now: std::time::Instant) -> Option<std::time::Duration> {
        let counts = self.0.as_ref()?;
        if counts.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = counts.start
            + std::time::Duration::from_millis(counts.idle_since.load(Ordering::Acquire));
        Some(now.saturating_duration_since(since))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let counts = &self.0;
        let millis = u64::try_from(counts.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        // The time first, then the count: a reader that sees no call in
        // flight sees when the last one ended.
        counts.idle_since.fetch_max(millis, Ordering::AcqRel);
        counts.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What travels with every request into the domain.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// Who is calling.
    pub caller: Caller,
    /// The address the call's connection came from, when known: callers
    /// the policy cannot tell apart by name are rate-limited per peer.
    pub peer: Option<std::net::IpAddr>,
    /// The trace the call's span belongs to, when it is traced.
    pub trace_id: Option<[u8; 16]>,
    /// When the caller stops waiting. The tower stack enforces it around the
    /// whole call ([`crate::middleware`]), and dropping the call there drops
    /// its upstream request too; below, it is read to decide what fits in
    /// the time left (a wait for an upstream quota slot, how long a stale
    /// token's renewal may be waited for). `None`: no bound is known.
    pub deadline: Option<std::time::Instant>,
}

/// A call's deadline, as the tower stack worked it out: put in the
/// request's extensions there, read into [`RequestContext::deadline`] by
/// the gRPC layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deadline(pub std::time::Instant);

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::Activity;

    #[test]
    fn a_connection_is_idle_from_when_its_last_call_ended() {
        let activity = Activity::new();
        let start = Instant::now();
        assert!(activity.idle_for(start).is_some(), "idle from the start");
        let first = activity.call().unwrap();
        let second = activity.clone().call().unwrap();
        assert_eq!(activity.idle_for(Instant::now()), None);
        drop(first);
        assert_eq!(activity.idle_for(Instant::now()), None, "one still runs");
        std::thread::sleep(Duration::from_millis(20));
        drop(second);
        let ended = Instant::now();
        let idle = activity.idle_for(ended + Duration::from_secs(1)).unwrap();
        assert!(
            idle >= Duration::from_secs(1) && idle <= Duration::from_millis(1010),
            "{idle:?}"
        );
        // Nothing counted on no connection.
        assert!(Activity::default().call().is_none());
        assert_eq!(Activity::default().idle_for(ended), None);
    }
}
