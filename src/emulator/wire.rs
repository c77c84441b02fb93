//! awsJson1_1 as Cognito Identity speaks it: errors as
//! `{"__type": code, "message": ...}` with the model's HTTP status codes.

use serde_json::{Value, json};

/// An error as the wire carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsError {
    /// The error code, e.g. `ResourceNotFoundException`.
    pub code: &'static str,
    /// The message.
    pub message: String,
}

impl AwsError {
    /// An error with `code` and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// HTTP status, from the service model's `httpError` traits (and the
    /// AWS front end's own errors for authentication).
    pub fn status(&self) -> u16 {
        match self.code {
            "NotAuthorizedException"
            | "MissingAuthenticationTokenException"
            | "InvalidSignatureException"
            | "IncompleteSignatureException" => 403,
            "ResourceNotFoundException" | "UnknownOperationException" => 404,
            "ResourceConflictException" => 409,
            "TooManyRequestsException" => 429,
            "InternalErrorException" => 500,
            _ => 400,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({ "__type": self.code, "message": self.message })
    }
}

/// `InvalidParameterException`.
pub(crate) fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::new("InvalidParameterException", message)
}

/// `NotAuthorizedException`.
pub(crate) fn not_authorized(message: impl Into<String>) -> AwsError {
    AwsError::new("NotAuthorizedException", message)
}

/// `ResourceNotFoundException`.
pub(crate) fn not_found(message: impl Into<String>) -> AwsError {
    AwsError::new("ResourceNotFoundException", message)
}

/// Reads an optional string member.
pub(crate) fn string(body: &Value, member: &str) -> Result<Option<String>, AwsError> {
    match body.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("{member} must be a string"))),
    }
}

/// Reads an optional boolean member.
pub(crate) fn boolean(body: &Value, member: &str) -> Result<Option<bool>, AwsError> {
    match body.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(format!("{member} must be a boolean"))),
    }
}

/// Reads an optional integer member.
pub(crate) fn integer(body: &Value, member: &str) -> Result<Option<i64>, AwsError> {
    match body.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(format!("{member} must be a whole number"))),
        Some(_) => Err(invalid(format!("{member} must be a number"))),
    }
}

/// Reads an optional string-to-string map member; absent is empty.
pub(crate) fn map(body: &Value, member: &str) -> Result<Vec<(String, String)>, AwsError> {
    match body.get(member) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(entries)) => entries
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(invalid(format!("{member} values must be strings"))),
            })
            .collect(),
        Some(_) => Err(invalid(format!("{member} must be a map"))),
    }
}

/// A validation failure of the shared domain checks, as Cognito words one.
pub(crate) fn violations(v: &crate::domain::Violations) -> AwsError {
    let count = v.iter().count();
    let details: Vec<String> = v
        .iter()
        .map(|v| format!("{}: {}", v.field.aws_name(), v.description))
        .collect();
    invalid(format!(
        "{count} validation error{} detected: {}",
        if count == 1 { "" } else { "s" },
        details.join("; ")
    ))
}
