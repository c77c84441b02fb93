//! The domain: validated requests, replies, the caller, the one error type
//! and the one table of Cognito's error codes ([`CognitoCode`]), the
//! [`Operation`] each request is, and the two seams the gateway is built
//! around, [`IdentityService`] (what the gRPC layer calls) and [`Upstream`]
//! (what talks to Cognito). No proto type and no AWS SDK type appears here,
//! and nothing here imports another module of the crate.

mod cognito_codes;
mod context;
mod error;
mod operation;
mod operation_name;
mod operations;
mod outcome;
mod secret;
mod types;
pub mod validate;

use std::future::Future;

pub(crate) use cognito_codes::CognitoCode;
pub(crate) use context::{Activity, Deadline, InFlight, Peer};
pub use context::{Caller, RequestContext};
pub use error::Error;
pub use operation::Operation;
pub(crate) use operation::{Answer, Caching, KeyFields, Lifetime, Scope};
pub use operation_name::OperationName;
pub use operations::{
    Credentials, GetCredentialsForIdentityInput, GetCredentialsForIdentityOutput, GetIdInput,
    GetIdOutput, GetOpenIdTokenForDeveloperIdentityInput, GetOpenIdTokenInput, OpenIdToken, RawMap,
};
pub use outcome::{CacheOutcome, Served, Upstreamed};
pub(crate) use outcome::{CacheStats, FetchFor, UpstreamCall};
pub use secret::Secret;
pub use types::{
    AccountId, CustomRoleArn, IdentityId, IdentityPoolId, Logins, PrincipalTags, SecretMap,
    TokenDuration,
};
pub use validate::Violations;

/// The operations as the gateway offers them: what the gRPC layer calls,
/// with who is calling.
pub trait IdentityService: Send + Sync + 'static {
    /// Whether its upstream can be reached now (`/upstreamz` and
    /// `gateway_upstream_up`; never readiness, which stays local).
    fn upstream_reachable(&self) -> impl Future<Output = bool> + Send {
        std::future::ready(true)
    }

    /// The cache's counters, if it has a cache, brought up to date.
    fn cache_stats(&self) -> impl Future<Output = Option<CacheStats>> + Send {
        std::future::ready(None)
    }

    /// Answers one call of any of the operations, saying how.
    fn call<O: Operation>(
        &self,
        ctx: &RequestContext,
        input: O,
    ) -> impl Future<Output = Served<O::Output>> + Send;
}

/// Cognito Identity itself (or anything that answers as it does). Errors are
/// already sorted into domain cases; each answer comes with the record of
/// the call that produced it.
pub trait Upstream: Send + Sync + 'static {
    /// Whether the upstream can be reached now (a connection can be opened).
    fn reachable(&self) -> impl Future<Output = bool> + Send {
        std::future::ready(true)
    }

    /// The identity id of the logins in a pool, made on first use.
    fn get_id(&self, input: &GetIdInput) -> impl Future<Output = Upstreamed<GetIdOutput>> + Send;

    /// An OpenID token for an identity, vouched for by its logins.
    fn get_open_id_token(
        &self,
        input: &GetOpenIdTokenInput,
    ) -> impl Future<Output = Upstreamed<OpenIdToken>> + Send;

    /// GetOpenIdTokenForDeveloperIdentity, signed with the developer credentials.
    fn get_open_id_token_for_developer_identity(
        &self,
        input: &GetOpenIdTokenForDeveloperIdentityInput,
    ) -> impl Future<Output = Upstreamed<OpenIdToken>> + Send;

    /// Temporary AWS credentials for an identity, through its pool's
    /// role (or the custom role asked for).
    fn get_credentials_for_identity(
        &self,
        input: &GetCredentialsForIdentityInput,
    ) -> impl Future<Output = Upstreamed<GetCredentialsForIdentityOutput>> + Send;
}
