//! Who is calling.

/// Who is calling, as the connection or the mesh in front of it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No authenticated identity.
    Anonymous,
    /// A SPIFFE id (a certificate's URI SAN, or a mesh's `URI=`).
    Spiffe(String),
    /// A DNS name (a certificate's first DNS SAN, or a mesh's client id).
    Dns(String),
}

/// What travels with every request into the domain. The caller's deadline
/// does not: the tower stack enforces it around the whole call
/// ([`crate::middleware`]), and dropping the call there drops its upstream
/// request too.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// Who is calling.
    pub caller: Caller,
}
