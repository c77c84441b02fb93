//! Who is calling.

/// The authenticated caller. Until callers are authenticated (mutual TLS, a
/// later issue) every call is anonymous; the domain already receives it so
/// that a policy can decide per caller without reshaping the code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No authenticated identity.
    Anonymous,
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

impl RequestContext {
    /// An anonymous caller.
    pub fn anonymous() -> Self {
        Self {
            caller: Caller::Anonymous,
        }
    }
}
