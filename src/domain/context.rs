//! Who is calling, and on which connection.

use std::net::SocketAddr;
use std::sync::Arc;

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
/// connection is accepted, handed to each of its calls (the server's
/// `Connected` information).
#[derive(Clone, Debug, Default)]
pub struct Peer {
    /// The gateway's address.
    pub local: Option<SocketAddr>,
    /// The caller's address.
    pub remote: Option<SocketAddr>,
    /// `Some` on a TLS connection: the caller its client certificate names,
    /// [`Caller::Anonymous`] when it showed none. `None` on plaintext.
    pub certified: Option<Caller>,
}

/// What travels with every request into the domain.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// Who is calling.
    pub caller: Caller,
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
pub struct Deadline(pub std::time::Instant);
