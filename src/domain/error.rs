//! The domain's one error type. The upstream adapter sorts SDK errors into
//! these cases; `grpc::status` turns them into gRPC statuses, in one place.

use super::cognito_codes::CognitoCode;
use super::operation_name::OperationName;
use super::validate::Violations;

/// Everything that can go wrong with a call.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// The request broke constraints of the service model; nothing was sent
    /// upstream.
    #[error("invalid request: {0}")]
    InvalidRequest(Violations),

    /// The request's bytes are not a valid message of its type (bad
    /// protobuf, a string that is not UTF-8); nothing was sent upstream.
    #[error("malformed request: {detail}")]
    MalformedRequest {
        /// The request's field where decoding failed, when known.
        field: Option<String>,
        /// Where and why decoding failed; never the bytes themselves.
        detail: String,
    },

    /// The request's message is longer than any valid one can be; it was
    /// refused on its length prefix, unread.
    #[error("the request message is longer than {limit} bytes, more than any valid request")]
    RequestTooLarge {
        /// The largest message the API reads.
        limit: usize,
    },

    /// The request's message did not arrive in time.
    #[error("the request message did not arrive within {} ms", after.as_millis())]
    RequestBodyTimeout {
        /// How long it was waited for.
        after: std::time::Duration,
    },

    /// Cognito answered with an error.
    #[error("Cognito Identity returned {code}: {message}")]
    Cognito {
        /// The Cognito error code, e.g. `NotAuthorizedException`.
        code: String,
        /// Cognito's message.
        message: String,
        /// The AWS request id, when the response carried one.
        request_id: Option<String>,
    },

    /// Cognito could not be reached (connection refused or reset, DNS, TLS).
    #[error("Cognito Identity could not be reached: {0}")]
    Unreachable(String),

    /// Cognito did not answer within the upstream timeouts.
    #[error("Cognito Identity did not answer in time")]
    UpstreamTimeout,

    /// The caller's deadline passed before the answer came.
    #[error("the call's deadline passed before Cognito Identity answered")]
    DeadlineExceeded,

    /// Cognito's answer could not be read (not awsJson, a proxy's error page).
    #[error("Cognito Identity sent an unreadable response (HTTP {status}): {detail}")]
    BadResponse {
        /// The HTTP status of the response.
        status: u16,
        /// What could not be read; never the body itself.
        detail: String,
    },

    /// The caller policy does not allow this caller this call; nothing was
    /// read from the cache or sent upstream.
    #[error("caller {caller} may not call {operation}: {why}")]
    PolicyDenied {
        /// The policy's name for the caller.
        caller: String,
        /// The operation.
        operation: OperationName,
        /// Which part of the call no rule allowed; never a secret.
        why: String,
    },

    /// The caller is past its rate limit.
    #[error("caller {caller} is past its rate limit; retry in {} ms", retry_after.as_millis())]
    CallerRateLimited {
        /// The policy's name for the caller.
        caller: String,
        /// The operation.
        operation: OperationName,
        /// When a call would be admitted again.
        retry_after: std::time::Duration,
    },

    /// A caller with no identity, which the policy does not allow this call.
    #[error("callers with no identity may not call {operation}: {why}")]
    CallerUnauthenticated {
        /// The operation.
        operation: OperationName,
        /// Which part of the call no rule allowed; never a secret.
        why: String,
    },

    /// The audit log cannot take the call's record (its queue is full or
    /// its sink fails), so the call is refused rather than served unaudited.
    #[error("{operation} cannot be audited now (the audit log is full or failing); retry later")]
    AuditUnavailable {
        /// What was asked for.
        operation: OperationName,
    },

    /// The circuit breaker in front of Cognito is open: Cognito failed
    /// too often in a row, and calls that need it are refused at once
    /// until a probe call succeeds.
    #[error(
        "Cognito Identity is failing: calls that need it are refused for now; retry in {} ms",
        retry_after.as_millis()
    )]
    CircuitOpen {
        /// When the breaker lets a probe through.
        retry_after: std::time::Duration,
    },

    /// This replica's budget of upstream calls a second for the operation
    /// is spent, and the next slot comes after the caller's deadline.
    #[error(
        "the gateway's budget of {operation} calls to Cognito Identity is spent; \
         retry in {} ms",
        retry_after.as_millis()
    )]
    UpstreamQuota {
        /// The operation.
        operation: OperationName,
        /// When a slot is free.
        retry_after: std::time::Duration,
    },

    /// As many calls as `--upstream-concurrency-limit` allows wait on
    /// Cognito already.
    #[error("{limit} calls are waiting on Cognito Identity already; retry with backoff")]
    UpstreamBusy {
        /// The limit.
        limit: usize,
    },

    /// The gateway serves as many calls as `--concurrency-limit` allows.
    #[error("the gateway is serving its limit of {limit} calls; retry with backoff")]
    Overloaded {
        /// The limit.
        limit: usize,
    },

    /// Request messages still arriving hold as many bytes as
    /// `--max-buffered-request-bytes` allows, all connections together;
    /// this one was not complete when it came.
    #[error(
        "request messages still arriving hold the gateway's limit of {limit} bytes; retry with backoff"
    )]
    RequestBufferFull {
        /// The limit.
        limit: usize,
    },

    /// A fault of the gateway itself.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A short, stable name of the failure: the Cognito error code, or the
    /// gateway's own reason. Safe for labels, spans and logs.
    pub fn reason(&self) -> &str {
        match self {
            Error::InvalidRequest(_) => "INVALID_REQUEST",
            Error::MalformedRequest { .. } => "MALFORMED_REQUEST",
            Error::RequestTooLarge { .. } => "REQUEST_TOO_LARGE",
            Error::RequestBodyTimeout { .. } => "REQUEST_BODY_TIMEOUT",
            Error::Cognito { code, .. } => code,
            Error::Unreachable(_) => "UPSTREAM_UNREACHABLE",
            Error::UpstreamTimeout => "UPSTREAM_TIMEOUT",
            Error::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Error::BadResponse { .. } => "UPSTREAM_BAD_RESPONSE",
            Error::PolicyDenied { .. } => "POLICY_DENIED",
            Error::CallerUnauthenticated { .. } => "CALLER_UNAUTHENTICATED",
            Error::CallerRateLimited { .. } => "CALLER_RATE_LIMITED",
            Error::AuditUnavailable { .. } => "AUDIT_UNAVAILABLE",
            Error::CircuitOpen { .. } => "UPSTREAM_CIRCUIT_OPEN",
            Error::UpstreamQuota { .. } => "UPSTREAM_QUOTA",
            Error::UpstreamBusy { .. } => "UPSTREAM_CONCURRENCY_LIMIT",
            Error::Overloaded { .. } => "CONCURRENCY_LIMIT",
            Error::RequestBufferFull { .. } => "REQUEST_BUFFER_FULL",
            Error::Internal(_) => "INTERNAL",
        }
    }

    /// Whether trying the same call again later may succeed.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Error::Cognito { code, .. } => CognitoCode::of(code).retryable,
            Error::Unreachable(_)
            | Error::UpstreamTimeout
            | Error::DeadlineExceeded
            | Error::CallerRateLimited { .. }
            | Error::AuditUnavailable { .. }
            | Error::CircuitOpen { .. }
            | Error::UpstreamQuota { .. }
            | Error::UpstreamBusy { .. }
            | Error::Overloaded { .. }
            | Error::RequestBufferFull { .. } => true,
            // A server fault behind an unreadable body (a proxy's 502 page).
            Error::BadResponse { status, .. } => *status >= 500,
            Error::InvalidRequest(_)
            | Error::MalformedRequest { .. }
            | Error::RequestTooLarge { .. }
            | Error::RequestBodyTimeout { .. }
            | Error::PolicyDenied { .. }
            | Error::CallerUnauthenticated { .. }
            | Error::Internal(_) => false,
        }
    }

    /// Whether the error says Cognito is unreachable or broken (refused,
    /// reset, timed out, a server error), as the circuit breaker counts
    /// failures. Cognito's own refusals (throttling, a bad login, a
    /// dependent identity provider down) say it is up.
    pub(crate) fn says_upstream_down(&self) -> bool {
        match self {
            Error::Unreachable(_) | Error::UpstreamTimeout => true,
            Error::BadResponse { status, .. } => *status >= 500,
            Error::Cognito { code, .. } => CognitoCode::of(code).upstream_down,
            _ => false,
        }
    }
}
