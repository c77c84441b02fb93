//! The operations' names, below everything else in the domain: the error
//! and the records of upstream calls name an operation, and the operations
//! themselves are answered through both.

use std::fmt;

/// The operations, named as in the Cognito Identity API (and as the gRPC
/// methods that offer them). The discriminant tags each operation's cache
/// keys, so that the same fields in two operations never share an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OperationName {
    /// An identity id for logins in a pool.
    GetId = 1,
    /// An OpenID token for an identity, on its logins.
    GetOpenIdToken = 2,
    /// An OpenID token for any user id of the backend's developer
    /// provider, on the gateway's developer credentials.
    GetOpenIdTokenForDeveloperIdentity = 3,
    /// Temporary AWS credentials for an identity.
    GetCredentialsForIdentity = 4,
}

impl OperationName {
    /// Every operation.
    pub(crate) const ALL: [OperationName; 4] = [
        Self::GetId,
        Self::GetOpenIdToken,
        Self::GetOpenIdTokenForDeveloperIdentity,
        Self::GetCredentialsForIdentity,
    ];

    /// The operation of this name, as the API spells it.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == name)
    }

    /// Whether the backend's developer credentials mint, through this
    /// operation, a token for whichever user id the caller names in its
    /// Logins. Such an operation is the one that policy must restrict,
    /// that is audited on every call, and whose user the audit log
    /// hashes; the others act only on what their caller already holds.
    pub(crate) const fn mints_for_any_user(self) -> bool {
        matches!(self, Self::GetOpenIdTokenForDeveloperIdentity)
    }

    /// The name, as the API spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::GetId => "GetId",
            Self::GetOpenIdToken => "GetOpenIdToken",
            Self::GetOpenIdTokenForDeveloperIdentity => "GetOpenIdTokenForDeveloperIdentity",
            Self::GetCredentialsForIdentity => "GetCredentialsForIdentity",
        }
    }
}

impl fmt::Display for OperationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
