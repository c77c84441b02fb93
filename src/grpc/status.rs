//! The one place where a domain [`Error`] becomes a gRPC [`Status`].
//!
//! Cognito's errors keep their code: the status carries a
//! `google.rpc.ErrorInfo` whose `reason` is the Cognito error code, in the
//! domain `cognito-identity.amazonaws.com`, with the AWS request id and
//! whether a retry may help in its metadata; the gRPC code and the retry
//! advice are those of the domain's table ([`CognitoCode`]). Failures that are the gateway's
//! own (validation, transport, deadlines) use the domain
//! `cognito-identity-gateway`; validation failures also carry a
//! `google.rpc.BadRequest` naming every bad field.
//!
//! The conversion has no side effect: the status keeps the error as its
//! source, where the call's span reads why it failed (`error.type`).

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::domain::{CognitoCode, Error, OperationName};

/// ErrorInfo domain of errors that Cognito returned.
pub const COGNITO_DOMAIN: &str = "cognito-identity.amazonaws.com";
/// ErrorInfo domain of errors that are the gateway's own.
pub const GATEWAY_DOMAIN: &str = "cognito-identity-gateway";
/// ErrorInfo metadata key of the AWS request id.
pub(crate) const REQUEST_ID_KEY: &str = "aws_request_id";
/// ErrorInfo metadata key saying whether a retry may help ("true"/"false").
pub(crate) const RETRYABLE_KEY: &str = "retryable";
/// ErrorInfo metadata key of the policy's name for the caller.
pub const CALLER_KEY: &str = "caller";
/// ErrorInfo metadata key of the operation a caller was refused.
pub const OPERATION_KEY: &str = "operation";

fn error_info(
    reason: &str,
    domain: &str,
    request_id: Option<String>,
    retryable: bool,
) -> ErrorDetails {
    let mut metadata = HashMap::from([(RETRYABLE_KEY.to_owned(), retryable.to_string())]);
    if let Some(id) = request_id {
        metadata.insert(REQUEST_ID_KEY.to_owned(), id);
    }
    ErrorDetails::with_error_info(reason, domain, metadata)
}

/// The ErrorInfo of a caller refused by the policy: who, and what it asked.
fn refusal_info(
    reason: &str,
    caller: &str,
    operation: OperationName,
    retryable: bool,
) -> ErrorDetails {
    let metadata = HashMap::from([
        (RETRYABLE_KEY.to_owned(), retryable.to_string()),
        (CALLER_KEY.to_owned(), caller.to_owned()),
        (OPERATION_KEY.to_owned(), operation.as_str().to_owned()),
    ]);
    ErrorDetails::with_error_info(reason, GATEWAY_DOMAIN, metadata)
}

/// How long a caller refused for want of an audit record is asked to wait.
const AUDIT_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The wait a `google.rpc.RetryInfo` gives when the gateway knows no
/// better: Cognito's throttling and outages say nothing of when they end,
/// and the SDK has already retried within the call's own budget.
pub(crate) const DEFAULT_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The gRPC code `err` is answered with.
pub(crate) fn code_of(err: &Error) -> Code {
    match err {
        Error::InvalidRequest(_)
        | Error::MalformedRequest { .. }
        | Error::RequestTooLarge { .. } => Code::InvalidArgument,
        Error::RequestBodyTimeout { .. } => Code::DeadlineExceeded,
        Error::Cognito { code, .. } => CognitoCode::of(code).grpc,
        Error::PolicyDenied { .. } => Code::PermissionDenied,
        Error::CallerRateLimited { .. } => Code::ResourceExhausted,
        Error::CallerUnauthenticated { .. } => Code::Unauthenticated,
        Error::Unreachable(_) | Error::AuditUnavailable { .. } | Error::CircuitOpen { .. } => {
            Code::Unavailable
        }
        Error::UpstreamQuota { .. }
        | Error::UpstreamBusy { .. }
        | Error::Overloaded { .. }
        | Error::RequestBufferFull { .. } => Code::ResourceExhausted,
        Error::UpstreamTimeout | Error::DeadlineExceeded => Code::DeadlineExceeded,
        // An unreadable 5xx is a server fault like InternalErrorException.
        Error::BadResponse { status, .. } if *status >= 500 => Code::Unavailable,
        Error::BadResponse { .. } => Code::Unknown,
        Error::Internal(_) => Code::Internal,
    }
}

/// The name of the gRPC code `err` is answered with (`PERMISSION_DENIED`).
pub(crate) fn code_name(err: &Error) -> &'static str {
    crate::telemetry::metrics::code_name(code_of(err))
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        let message = err.to_string();
        let retryable = err.is_retryable();
        let reason = err.reason().to_owned();
        let source = Arc::new(err.clone());
        let code = code_of(&err);
        let details = match err {
            Error::InvalidRequest(violations) => {
                let fields: Vec<FieldViolation> = violations
                    .iter()
                    .map(|v| FieldViolation::new(v.field.proto_name(), v.description.clone()))
                    .collect();
                let mut details = ErrorDetails::with_bad_request(fields);
                details.set_error_info(reason, GATEWAY_DOMAIN, HashMap::new());
                details
            }
            Error::MalformedRequest { field, detail } => {
                let mut details = match field {
                    Some(field) => {
                        ErrorDetails::with_bad_request(vec![FieldViolation::new(field, detail)])
                    }
                    None => ErrorDetails::new(),
                };
                details.set_error_info(reason, GATEWAY_DOMAIN, HashMap::new());
                details
            }
            Error::Cognito { request_id, .. } => {
                let mut details = error_info(&reason, COGNITO_DOMAIN, request_id, retryable);
                if retryable {
                    details.set_retry_info(Some(DEFAULT_RETRY_AFTER));
                }
                details
            }
            Error::PolicyDenied {
                caller, operation, ..
            } => refusal_info(&reason, &caller, operation, false),
            Error::CallerRateLimited {
                caller,
                operation,
                retry_after,
            } => {
                let mut details = refusal_info(&reason, &caller, operation, true);
                details.set_retry_info(Some(retry_after));
                details
            }
            Error::CallerUnauthenticated { operation, .. } => {
                refusal_info(&reason, crate::policy::ANONYMOUS, operation, false)
            }
            Error::AuditUnavailable { .. } => {
                let mut details = error_info(&reason, GATEWAY_DOMAIN, None, retryable);
                details.set_retry_info(Some(AUDIT_RETRY_AFTER));
                details
            }
            // The gateway knows when these end.
            Error::CircuitOpen { retry_after } | Error::UpstreamQuota { retry_after, .. } => {
                let mut details = error_info(&reason, GATEWAY_DOMAIN, None, retryable);
                details.set_retry_info(Some(retry_after));
                details
            }
            _ => {
                let mut details = error_info(&reason, GATEWAY_DOMAIN, None, retryable);
                if retryable {
                    details.set_retry_info(Some(DEFAULT_RETRY_AFTER));
                }
                details
            }
        };
        let mut status = Status::with_error_details(code, message, details);
        status.set_source(source);
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::GetIdInput;

    fn cognito(code: &str) -> Status {
        Status::from(Error::Cognito {
            code: code.to_owned(),
            message: "m".to_owned(),
            request_id: Some("req-123".to_owned()),
        })
    }

    #[test]
    fn every_cognito_error_maps_to_its_code_with_error_info() {
        let table = [
            ("InvalidParameterException", Code::InvalidArgument, false),
            ("NotAuthorizedException", Code::PermissionDenied, false),
            ("ResourceNotFoundException", Code::NotFound, false),
            ("ResourceConflictException", Code::AlreadyExists, false),
            (
                "DeveloperUserAlreadyRegisteredException",
                Code::AlreadyExists,
                false,
            ),
            ("TooManyRequestsException", Code::ResourceExhausted, true),
            ("LimitExceededException", Code::ResourceExhausted, true),
            (
                "InvalidIdentityPoolConfigurationException",
                Code::FailedPrecondition,
                false,
            ),
            ("ExternalServiceException", Code::Unavailable, true),
            ("InternalErrorException", Code::Unavailable, true),
            // Not in Cognito's model: the HTTP 503 any AWS endpoint may answer.
            ("ServiceUnavailable", Code::Unavailable, true),
            ("SomethingNewException", Code::Unknown, false),
        ];
        for (cognito_code, grpc_code, retryable) in table {
            let status = cognito(cognito_code);
            assert_eq!(status.code(), grpc_code, "{cognito_code}");
            let info = status.get_details_error_info().expect("ErrorInfo");
            assert_eq!(info.reason, cognito_code);
            assert_eq!(info.domain, COGNITO_DOMAIN);
            assert_eq!(info.metadata[REQUEST_ID_KEY], "req-123");
            assert_eq!(
                info.metadata[RETRYABLE_KEY],
                retryable.to_string(),
                "{cognito_code}"
            );
            // Every refusal a retry can cure says when to retry.
            let retry = status.get_details_retry_info().and_then(|r| r.retry_delay);
            assert_eq!(
                retry,
                retryable.then_some(DEFAULT_RETRY_AFTER),
                "{cognito_code}"
            );
        }
    }

    #[test]
    fn transport_failures_and_timeouts() {
        let cases = [
            (
                Error::Unreachable("connection refused".into()),
                Code::Unavailable,
                "UPSTREAM_UNREACHABLE",
            ),
            (
                Error::UpstreamTimeout,
                Code::DeadlineExceeded,
                "UPSTREAM_TIMEOUT",
            ),
            (
                Error::DeadlineExceeded,
                Code::DeadlineExceeded,
                "DEADLINE_EXCEEDED",
            ),
            (
                Error::BadResponse {
                    status: 200,
                    detail: "x".into(),
                },
                Code::Unknown,
                "UPSTREAM_BAD_RESPONSE",
            ),
            (
                Error::BadResponse {
                    status: 502,
                    detail: "x".into(),
                },
                Code::Unavailable,
                "UPSTREAM_BAD_RESPONSE",
            ),
            (
                Error::UpstreamBusy { limit: 512 },
                Code::ResourceExhausted,
                "UPSTREAM_CONCURRENCY_LIMIT",
            ),
            (
                Error::Overloaded { limit: 1024 },
                Code::ResourceExhausted,
                "CONCURRENCY_LIMIT",
            ),
            (
                Error::RequestBufferFull { limit: 1 << 26 },
                Code::ResourceExhausted,
                "REQUEST_BUFFER_FULL",
            ),
            (Error::Internal("x".into()), Code::Internal, "INTERNAL"),
        ];
        for (err, code, reason) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            let info = status.get_details_error_info().unwrap();
            assert_eq!(
                (info.reason.as_str(), info.domain.as_str()),
                (reason, GATEWAY_DOMAIN)
            );
            let source = std::error::Error::source(&status)
                .and_then(|s| s.downcast_ref::<Error>())
                .expect("the error is the status's source");
            assert_eq!(source.reason(), reason);
            // A retry can cure all but the 200 with a bad body and the
            // gateway's own fault: those say nothing of retrying.
            let retry = status.get_details_retry_info().and_then(|r| r.retry_delay);
            let curable = source.is_retryable();
            assert_eq!(retry, curable.then_some(DEFAULT_RETRY_AFTER), "{reason}");
        }
    }

    #[test]
    fn the_guards_refusals_say_when_to_retry() {
        let wait = std::time::Duration::from_millis(2_340);
        let cases = [
            (
                Error::CircuitOpen { retry_after: wait },
                Code::Unavailable,
                "UPSTREAM_CIRCUIT_OPEN",
            ),
            (
                Error::UpstreamQuota {
                    operation: OperationName::GetId,
                    retry_after: wait,
                },
                Code::ResourceExhausted,
                "UPSTREAM_QUOTA",
            ),
        ];
        for (err, code, reason) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            let info = status.get_details_error_info().unwrap();
            assert_eq!(info.reason, reason);
            assert_eq!(info.metadata[RETRYABLE_KEY], "true");
            let retry = status.get_details_retry_info().and_then(|r| r.retry_delay);
            assert_eq!(retry, Some(wait), "{reason}");
            assert!(status.message().contains("2340 ms"), "{}", status.message());
        }
    }

    #[test]
    fn invalid_requests_name_every_field() {
        let violations = GetIdInput::parse(None, Some("x".into()), vec![]).unwrap_err();
        let status = Status::from(Error::InvalidRequest(violations));
        assert_eq!(status.code(), Code::InvalidArgument);
        let fields: Vec<String> = status
            .get_details_bad_request()
            .unwrap()
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["identity_pool_id", "account_id"]);
        assert!(status.message().contains("identity_pool_id: is required"));
    }
}
