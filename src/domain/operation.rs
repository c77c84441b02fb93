//! One type per operation: each of the four inputs says, through
//! [`Operation`], the operation's name, whether and how its answer is
//! cached, the fields its cache key is made of, and its upstream call, so
//! that the identity service answers all four through one generic path.

use std::fmt;
use std::future::Future;
use std::time::SystemTime;

use super::Upstream;
use super::operation_name::OperationName;
use super::operations::{
    GetCredentialsForIdentityInput, GetCredentialsForIdentityOutput, GetIdInput, GetIdOutput,
    GetOpenIdTokenForDeveloperIdentityInput, GetOpenIdTokenInput, OpenIdToken,
};
use super::outcome::Upstreamed;
use super::types::SecretMap;

/// Whether an answer may be cached, and under which of the cache's
/// switches; the cache's settings decide the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caching {
    /// Never: every call must reach Cognito.
    Never,
    /// A stable identity id (authenticated GetId).
    IdentityIds,
    /// A token from GetOpenIdToken.
    OpenIdTokens,
    /// A developer token: cached whenever the cache is on.
    DeveloperTokens,
    /// Credentials from GetCredentialsForIdentity.
    Credentials,
}

/// How long an answer stays true.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// It does not expire (an identity id): the cache keeps it for a fixed
    /// time of its own.
    Stable,
    /// Until this instant (a token's `exp`, credentials' Expiration);
    /// `None` when the answer does not say, and then it is not cached.
    Until(Option<SystemTime>),
}

/// An operation's answer, as the cache keeps it.
pub trait Answer: Clone + Send + Sync + 'static {
    /// How long it stays true.
    fn lifetime(&self) -> Lifetime;
    /// The bytes of its strings, for the cache's memory budget.
    fn bytes(&self) -> usize;
    /// The identity it is about.
    fn identity_id(&self) -> &str;
}

impl Answer for GetIdOutput {
    fn lifetime(&self) -> Lifetime {
        Lifetime::Stable
    }
    fn bytes(&self) -> usize {
        self.identity_id.len()
    }
    fn identity_id(&self) -> &str {
        &self.identity_id
    }
}

impl Answer for OpenIdToken {
    fn lifetime(&self) -> Lifetime {
        Lifetime::Until(self.expires_at)
    }
    fn bytes(&self) -> usize {
        self.identity_id.len() + self.token.len()
    }
    fn identity_id(&self) -> &str {
        &self.identity_id
    }
}

impl Answer for GetCredentialsForIdentityOutput {
    fn lifetime(&self) -> Lifetime {
        Lifetime::Until(self.credentials.expiration)
    }
    fn bytes(&self) -> usize {
        let c = &self.credentials;
        self.identity_id.len() + c.access_key_id.len() + c.secret_key.len() + c.session_token.len()
    }
    fn identity_id(&self) -> &str {
        &self.identity_id
    }
}

/// Where an operation writes the fields that change its answer: the
/// cache's canonical encoding, which hashes them into a key. Each field
/// has a tag, unique within the operation.
pub trait KeyFields {
    /// A required text field.
    fn text(&mut self, tag: u8, value: &str);
    /// An optional field, absent or present.
    fn optional(&mut self, tag: u8, value: Option<&[u8]>);
    /// A map, whole: names and values.
    fn map(&mut self, tag: u8, map: &SecretMap);
}

/// What a call asks for, as a caller policy judges it: its operation, the
/// pool it names, the names (never the values) of its Logins and principal
/// tags, and the token lifetime it asks for.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// The operation.
    pub operation: OperationName,
    /// The pool the request names; `None` for the operations that name an
    /// identity instead.
    pub(crate) identity_pool: Option<&'a str>,
    /// Its Logins (the policy reads the names, and the pool of a Cognito
    /// token among them).
    pub logins: &'a SecretMap,
    /// Its principal tags, for the developer operation.
    pub principal_tags: Option<&'a SecretMap>,
    /// The token lifetime asked for, for the developer operation.
    pub token_duration_seconds: Option<u32>,
    /// The identity the request names, if any.
    pub identity_id: Option<&'a str>,
}

impl<'a> Scope<'a> {
    /// A call of `operation` with `logins` and, if it names one, a pool.
    pub fn new(
        operation: OperationName,
        identity_pool: Option<&'a str>,
        logins: &'a SecretMap,
    ) -> Self {
        Self {
            operation,
            identity_pool,
            logins,
            principal_tags: None,
            token_duration_seconds: None,
            identity_id: None,
        }
    }
}

/// One of the four operations, implemented by its validated input.
pub trait Operation: fmt::Debug + Send + Sync + 'static {
    /// Its answer.
    type Output: Answer;
    /// Its name.
    const NAME: OperationName;
    /// Whether it mints a token for any user the caller names
    /// ([`OperationName::mints_for_any_user`]).
    const MINTS_FOR_ANY_USER: bool = Self::NAME.mints_for_any_user();
    /// Whether its answer may be cached.
    fn caching(&self) -> Caching;
    /// Writes every field that changes its answer, for the cache key.
    fn key_fields(&self, key: &mut impl KeyFields);
    /// Sends it to Cognito.
    fn send<U: Upstream>(
        &self,
        upstream: &U,
    ) -> impl Future<Output = Upstreamed<Self::Output>> + Send;
    /// What it asks for, for a caller policy.
    fn scope(&self) -> Scope<'_>;
}

impl Operation for GetIdInput {
    type Output = GetIdOutput;
    const NAME: OperationName = OperationName::GetId;

    fn caching(&self) -> Caching {
        // Only authenticated identities are stable: an unauthenticated GetId
        // makes a new identity each time, and sharing one between callers
        // would change what Cognito means.
        if self.logins.map().is_empty() {
            Caching::Never
        } else {
            Caching::IdentityIds
        }
    }

    fn key_fields(&self, key: &mut impl KeyFields) {
        key.text(1, self.identity_pool_id.as_str());
        key.optional(2, self.account_id.as_ref().map(|a| a.as_str().as_bytes()));
        key.map(3, self.logins.map());
    }

    fn send<U: Upstream>(&self, upstream: &U) -> impl Future<Output = Upstreamed<GetIdOutput>> {
        upstream.get_id(self)
    }

    fn scope(&self) -> Scope<'_> {
        Scope::new(
            Self::NAME,
            Some(self.identity_pool_id.as_str()),
            self.logins.map(),
        )
    }
}

impl Operation for GetOpenIdTokenInput {
    type Output = OpenIdToken;
    const NAME: OperationName = OperationName::GetOpenIdToken;

    fn caching(&self) -> Caching {
        Caching::OpenIdTokens
    }

    fn key_fields(&self, key: &mut impl KeyFields) {
        key.text(1, self.identity_id.as_str());
        key.map(2, self.logins.map());
    }

    fn send<U: Upstream>(&self, upstream: &U) -> impl Future<Output = Upstreamed<OpenIdToken>> {
        upstream.get_open_id_token(self)
    }

    fn scope(&self) -> Scope<'_> {
        Scope {
            identity_id: Some(self.identity_id.as_str()),
            ..Scope::new(Self::NAME, None, self.logins.map())
        }
    }
}

impl Operation for GetOpenIdTokenForDeveloperIdentityInput {
    type Output = OpenIdToken;
    const NAME: OperationName = OperationName::GetOpenIdTokenForDeveloperIdentity;

    fn caching(&self) -> Caching {
        Caching::DeveloperTokens
    }

    fn key_fields(&self, key: &mut impl KeyFields) {
        key.text(1, self.identity_pool_id.as_str());
        key.optional(2, self.identity_id.as_ref().map(|v| v.as_str().as_bytes()));
        key.map(3, self.logins.map());
        key.map(4, self.principal_tags.map());
        let duration = self.token_duration.map(|d| d.seconds().to_be_bytes());
        key.optional(5, duration.as_ref().map(|d| &d[..]));
    }

    fn send<U: Upstream>(&self, upstream: &U) -> impl Future<Output = Upstreamed<OpenIdToken>> {
        upstream.get_open_id_token_for_developer_identity(self)
    }

    fn scope(&self) -> Scope<'_> {
        Scope {
            principal_tags: Some(self.principal_tags.map()),
            token_duration_seconds: self.token_duration.map(|d| d.seconds()),
            identity_id: self.identity_id.as_ref().map(|id| id.as_str()),
            ..Scope::new(
                Self::NAME,
                Some(self.identity_pool_id.as_str()),
                self.logins.map(),
            )
        }
    }
}

impl Operation for GetCredentialsForIdentityInput {
    type Output = GetCredentialsForIdentityOutput;
    const NAME: OperationName = OperationName::GetCredentialsForIdentity;

    fn caching(&self) -> Caching {
        Caching::Credentials
    }

    fn key_fields(&self, key: &mut impl KeyFields) {
        key.text(1, self.identity_id.as_str());
        key.map(2, self.logins.map());
        key.optional(
            3,
            self.custom_role_arn.as_ref().map(|r| r.as_str().as_bytes()),
        );
    }

    fn send<U: Upstream>(
        &self,
        upstream: &U,
    ) -> impl Future<Output = Upstreamed<GetCredentialsForIdentityOutput>> {
        upstream.get_credentials_for_identity(self)
    }

    fn scope(&self) -> Scope<'_> {
        Scope {
            identity_id: Some(self.identity_id.as_str()),
            ..Scope::new(Self::NAME, None, self.logins.map())
        }
    }
}
