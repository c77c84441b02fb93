//! Cognito's error codes, and what the gateway makes of each, in one
//! table: the gRPC code its caller is answered with, whether a retry may
//! help, and whether it says Cognito itself is down. The gRPC status, the
//! retry advice (ErrorInfo's `retryable`, RetryInfo, a stale token served
//! in its place) and the circuit breaker all read it here.
//!
//! The codes and their HTTP statuses are those of the service model
//! (cognito-identity 2014-06-30), plus the bare 503 any AWS endpoint may
//! answer when it is overloaded or being deployed.

use tonic::Code;

/// What the gateway makes of one Cognito error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CognitoCode {
    /// The gRPC code the call is answered with.
    pub grpc: Code,
    /// Whether the same call, tried again later, may succeed.
    pub retryable: bool,
    /// Whether it says Cognito is broken (a server fault), which the
    /// circuit breaker counts as a failure. Cognito's own refusals
    /// (throttling, a bad login, a dependent identity provider down) say
    /// it is up.
    pub(crate) upstream_down: bool,
}

impl CognitoCode {
    /// What `code` (as Cognito's `__type` names it, without a namespace)
    /// means; a code not in the table, one newer than the gateway or none
    /// the SDK could read, is answered UNKNOWN, never retried, and not
    /// held against Cognito.
    pub(crate) fn of(code: &str) -> Self {
        CODES
            .iter()
            .find(|(name, _)| *name == code)
            .map_or(UNKNOWN, |(_, facts)| *facts)
    }
}

/// A code the table does not name.
const UNKNOWN: CognitoCode = refused(Code::Unknown);

/// A refusal a retry cannot change: the request itself is wrong.
const fn refused(grpc: Code) -> CognitoCode {
    CognitoCode {
        grpc,
        retryable: false,
        upstream_down: false,
    }
}

/// A refusal that passes: throttling, or a dependent service down, while
/// Cognito itself answers.
const fn for_now(grpc: Code) -> CognitoCode {
    CognitoCode {
        grpc,
        retryable: true,
        upstream_down: false,
    }
}

/// Cognito failing (HTTP 5xx): retried, and counted by the breaker.
const SERVER_FAULT: CognitoCode = CognitoCode {
    grpc: Code::Unavailable,
    retryable: true,
    upstream_down: true,
};

/// Every code the gateway tells apart. The SDK's standard retry mode
/// treats the two throttling codes as such; the model marks
/// InternalErrorException as the server's fault (500).
const CODES: [(&str, CognitoCode); 11] = [
    ("InvalidParameterException", refused(Code::InvalidArgument)),
    ("NotAuthorizedException", refused(Code::PermissionDenied)),
    ("ResourceNotFoundException", refused(Code::NotFound)),
    ("ResourceConflictException", refused(Code::AlreadyExists)),
    (
        "DeveloperUserAlreadyRegisteredException",
        refused(Code::AlreadyExists),
    ),
    (
        "InvalidIdentityPoolConfigurationException",
        refused(Code::FailedPrecondition),
    ),
    ("TooManyRequestsException", for_now(Code::ResourceExhausted)),
    ("LimitExceededException", for_now(Code::ResourceExhausted)),
    // A login's identity provider is down (HTTP 400): Cognito is up.
    ("ExternalServiceException", for_now(Code::Unavailable)),
    ("InternalErrorException", SERVER_FAULT),
    // The 503 of an AWS endpoint, outside the service model.
    ("ServiceUnavailable", SERVER_FAULT),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_unavailable_is_cognito_down_and_worth_a_retry() {
        assert_eq!(
            CognitoCode::of("ServiceUnavailable"),
            CognitoCode {
                grpc: Code::Unavailable,
                retryable: true,
                upstream_down: true,
            }
        );
    }

    #[test]
    fn what_says_cognito_is_down_is_answered_unavailable_and_retryable() {
        for (name, facts) in CODES {
            if facts.upstream_down {
                assert_eq!(facts.grpc, Code::Unavailable, "{name}");
                assert!(facts.retryable, "{name}");
            }
        }
    }

    #[test]
    fn each_code_is_named_once_and_others_are_unknown() {
        for (i, (name, facts)) in CODES.iter().enumerate() {
            assert!(CODES[..i].iter().all(|(n, _)| n != name), "{name} twice");
            assert_eq!(CognitoCode::of(name), *facts);
        }
        assert_eq!(CognitoCode::of("SomethingNewException"), UNKNOWN);
        assert_eq!(CognitoCode::of("Unknown").grpc, Code::Unknown);
    }
}
