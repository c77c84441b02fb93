//! Who is calling, and by when they need an answer.

use std::time::Instant;

/// The authenticated caller. Until callers are authenticated (mutual TLS, a
/// later issue) every call is anonymous; the domain already receives it so
/// that a policy can decide per caller without reshaping the code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No authenticated identity.
    Anonymous,
}

/// What travels with every request into the domain.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// Who is calling.
    pub caller: Caller,
    /// When the caller stops waiting: the gRPC deadline, capped by the
    /// server's request timeout. `None` only outside a server (unit tests).
    pub deadline: Option<Instant>,
}

impl RequestContext {
    /// An anonymous caller with the given deadline.
    pub fn anonymous(deadline: Option<Instant>) -> Self {
        Self {
            caller: Caller::Anonymous,
            deadline,
        }
    }
}
