//! The domain: validated requests, replies, the caller, and the two seams
//! the gateway is built around, [`IdentityService`] (what the gRPC layer
//! calls) and [`Upstream`] (what talks to Cognito). No proto type and no
//! AWS SDK type appears here.

mod context;
mod operations;
mod secret;
mod types;
pub mod validate;

use std::future::Future;

pub use context::{Caller, RequestContext};
pub use operations::{
    Credentials, GetCredentialsForIdentityInput, GetCredentialsForIdentityOutput, GetIdInput,
    GetIdOutput, GetOpenIdTokenForDeveloperIdentityInput, GetOpenIdTokenInput, OpenIdToken, RawMap,
};
pub use secret::Secret;
pub use types::{
    AccountId, CustomRoleArn, IdentityId, IdentityPoolId, Logins, PrincipalTags, SecretMap,
    TokenDuration,
};
pub use validate::{Field, Violation, Violations};

use crate::error::Error;

/// The four operations as the gateway offers them: what the gRPC layer
/// calls, with who is calling and by when they need the answer.
pub trait IdentityService: Send + Sync + 'static {
    /// Whether the service can answer now (for `/readyz`): its upstream can
    /// be reached.
    fn ready(&self) -> impl Future<Output = bool> + Send {
        std::future::ready(true)
    }

    /// The cache's counters, if it has a cache, brought up to date.
    fn cache_stats(&self) -> impl Future<Output = Option<crate::cache::CacheStats>> + Send {
        std::future::ready(None)
    }

    /// GetId.
    fn get_id(
        &self,
        ctx: &RequestContext,
        input: GetIdInput,
    ) -> impl Future<Output = Result<GetIdOutput, Error>> + Send;

    /// GetOpenIdToken.
    fn get_open_id_token(
        &self,
        ctx: &RequestContext,
        input: GetOpenIdTokenInput,
    ) -> impl Future<Output = Result<OpenIdToken, Error>> + Send;

    /// GetOpenIdTokenForDeveloperIdentity.
    fn get_open_id_token_for_developer_identity(
        &self,
        ctx: &RequestContext,
        input: GetOpenIdTokenForDeveloperIdentityInput,
    ) -> impl Future<Output = Result<OpenIdToken, Error>> + Send;

    /// GetCredentialsForIdentity.
    fn get_credentials_for_identity(
        &self,
        ctx: &RequestContext,
        input: GetCredentialsForIdentityInput,
    ) -> impl Future<Output = Result<GetCredentialsForIdentityOutput, Error>> + Send;
}

/// Cognito Identity itself (or anything that answers as it does). Errors are
/// already sorted into domain cases.
pub trait Upstream: Send + Sync + 'static {
    /// Whether the upstream can be reached now (a connection can be opened).
    fn reachable(&self) -> impl Future<Output = bool> + Send {
        std::future::ready(true)
    }

    /// GetId.
    fn get_id(&self, input: &GetIdInput)
    -> impl Future<Output = Result<GetIdOutput, Error>> + Send;

    /// GetOpenIdToken.
    fn get_open_id_token(
        &self,
        input: &GetOpenIdTokenInput,
    ) -> impl Future<Output = Result<OpenIdToken, Error>> + Send;

    /// GetOpenIdTokenForDeveloperIdentity, signed with the developer credentials.
    fn get_open_id_token_for_developer_identity(
        &self,
        input: &GetOpenIdTokenForDeveloperIdentityInput,
    ) -> impl Future<Output = Result<OpenIdToken, Error>> + Send;

    /// GetCredentialsForIdentity.
    fn get_credentials_for_identity(
        &self,
        input: &GetCredentialsForIdentityInput,
    ) -> impl Future<Output = Result<GetCredentialsForIdentityOutput, Error>> + Send;
}
