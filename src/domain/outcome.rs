//! What happened on the way to an answer, returned with it: how the cache
//! answered and the upstream call made for the caller. Telemetry is handed
//! these (the call's span, the upstream call's span and metrics); nothing
//! below reaches into telemetry to say them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::error::Error;
use super::operation_name::OperationName;

/// How the cache answered a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// From the cache.
    Hit,
    /// Fetched upstream for this caller.
    Miss,
    /// Another caller's upstream call answered this one too.
    Coalesced,
    /// A still-valid token served because the upstream failed.
    Stale,
    /// Not cacheable, or the cache is off: straight upstream.
    Bypass,
}

impl CacheOutcome {
    /// The name on spans (`cache.outcome`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Coalesced => "coalesced",
            Self::Stale => "stale",
            Self::Bypass => "bypass",
        }
    }
}

/// Whom an upstream call is made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchFor {
    /// A caller waiting for the answer, until its deadline, if known.
    Caller(Option<std::time::Instant>),
    /// The cache, renewing a popular entry before it stops being served:
    /// nobody waits for it.
    Refresh,
}

/// One call to Cognito, as its span and metrics record it.
#[derive(Clone, Debug)]
pub struct UpstreamCall {
    /// The operation.
    pub operation: OperationName,
    /// The region called.
    pub region: Arc<str>,
    /// When it started (wall clock).
    pub started: SystemTime,
    /// How long it took, retries included.
    pub elapsed: Duration,
    /// The HTTP status of the last response, if one came.
    pub(crate) http_status: Option<u16>,
    /// The AWS request id, if the response carried one.
    pub request_id: Option<Box<str>>,
    /// Why it failed ([`Error::reason`]); `None` when it succeeded.
    pub(crate) error_type: Option<Box<str>>,
}

/// An upstream call's result, with the call's record when one was made.
#[derive(Debug)]
pub struct Upstreamed<T> {
    /// The answer or the error.
    pub result: Result<T, Error>,
    /// The call; boxed, as it travels with every answer.
    pub call: Option<Box<UpstreamCall>>,
    /// When what the answer was obtained with expires (a login token in
    /// the request): the answer must not be served past it.
    pub(crate) valid_until: Option<std::time::SystemTime>,
}

impl<T> Upstreamed<T> {
    /// A result that no recorded call produced (a stand-in upstream).
    pub fn unrecorded(result: Result<T, Error>) -> Self {
        Self {
            result,
            call: None,
            valid_until: None,
        }
    }
}

/// A call's answer, with how it was reached.
#[derive(Debug)]
pub struct Served<T> {
    /// The answer or the error.
    pub result: Result<T, Error>,
    /// How the cache answered; `None` when the call never reached it.
    pub cache: Option<CacheOutcome>,
    /// The upstream call made for this caller, if any.
    pub upstream: Option<Box<UpstreamCall>>,
}

impl<T> Served<T> {
    /// A call refused before the cache and the upstream.
    pub fn refused(error: Error) -> Self {
        Self {
            result: Err(error),
            cache: None,
            upstream: None,
        }
    }

    /// An upstream call's result, reached with `cache`.
    pub fn upstream(upstreamed: Upstreamed<T>, cache: CacheOutcome) -> Self {
        Self {
            result: upstreamed.result,
            cache: Some(cache),
            upstream: upstreamed.call,
        }
    }
}

/// A reading of the cache's counters, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Answers served from the cache.
    pub hits: u64,
    /// Answers fetched upstream for a caller.
    pub misses: u64,
    /// Callers that waited for another caller's upstream call.
    pub coalesced: u64,
    /// Background refreshes that renewed an entry.
    pub refreshes: u64,
    /// Still-valid tokens served because the upstream failed.
    pub stale_served: u64,
    /// Entries removed by expiry or the memory budget.
    pub evictions: u64,
    /// Entries now.
    pub entries: u64,
    /// Bytes now, as weighed.
    pub bytes: u64,
}
