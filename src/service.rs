//! The identity service: what every gRPC call reaches once validated. It is
//! the seam where the caller's policy, the token cache and the upstream meet;
//! today it bounds each upstream call by the caller's deadline.

use std::future::Future;
use std::time::Instant;

use crate::domain::{
    GetCredentialsForIdentityInput, GetCredentialsForIdentityOutput, GetIdInput, GetIdOutput,
    GetOpenIdTokenForDeveloperIdentityInput, GetOpenIdTokenInput, IdentityService, OpenIdToken,
    RequestContext, Upstream,
};
use crate::error::Error;

/// The gateway's [`IdentityService`] over an [`Upstream`].
#[derive(Debug)]
pub struct Gateway<U> {
    upstream: U,
}

impl<U: Upstream> Gateway<U> {
    /// A gateway that forwards to `upstream`.
    pub fn new(upstream: U) -> Self {
        Self { upstream }
    }
}

/// Runs `call` until the caller's deadline: the SDK's own timeouts may be
/// longer than what the caller has left, and an answer after the deadline
/// is of no use to anyone.
async fn within_deadline<T>(
    deadline: Option<Instant>,
    call: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), call)
            .await
            .unwrap_or(Err(Error::DeadlineExceeded)),
        None => call.await,
    }
}

impl<U: Upstream> IdentityService for Gateway<U> {
    async fn get_id(&self, ctx: &RequestContext, input: GetIdInput) -> Result<GetIdOutput, Error> {
        within_deadline(ctx.deadline, self.upstream.get_id(&input)).await
    }

    async fn get_open_id_token(
        &self,
        ctx: &RequestContext,
        input: GetOpenIdTokenInput,
    ) -> Result<OpenIdToken, Error> {
        within_deadline(ctx.deadline, self.upstream.get_open_id_token(&input)).await
    }

    async fn get_open_id_token_for_developer_identity(
        &self,
        ctx: &RequestContext,
        input: GetOpenIdTokenForDeveloperIdentityInput,
    ) -> Result<OpenIdToken, Error> {
        within_deadline(
            ctx.deadline,
            self.upstream
                .get_open_id_token_for_developer_identity(&input),
        )
        .await
    }

    async fn get_credentials_for_identity(
        &self,
        ctx: &RequestContext,
        input: GetCredentialsForIdentityInput,
    ) -> Result<GetCredentialsForIdentityOutput, Error> {
        within_deadline(
            ctx.deadline,
            self.upstream.get_credentials_for_identity(&input),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_call_past_the_deadline_is_dropped() {
        let deadline = Instant::now() + Duration::from_millis(300);
        let never = std::future::pending::<Result<(), Error>>();
        let outcome = within_deadline(Some(deadline), never).await;
        assert!(
            matches!(outcome, Err(Error::DeadlineExceeded)),
            "{outcome:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_within_the_deadline_keeps_its_result() {
        let deadline = Instant::now() + Duration::from_secs(1);
        let quick = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, Error>(7)
        };
        assert_eq!(within_deadline(Some(deadline), quick).await.unwrap(), 7);
    }
}
