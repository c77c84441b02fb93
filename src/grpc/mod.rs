//! The gRPC layer. It only translates: proto message -> validated domain
//! input -> [`IdentityService`] -> proto reply. No AWS SDK type appears here.

pub mod status;

use std::sync::Arc;
use std::time::SystemTime;

use tonic::{Request, Response, Status};

use crate::domain::{
    GetCredentialsForIdentityInput, GetIdInput, GetOpenIdTokenForDeveloperIdentityInput,
    GetOpenIdTokenInput, IdentityService, OpenIdToken, RequestContext,
};
use crate::error::Error;
use crate::proto as pb;

pub use pb::cognito_identity_service_server::CognitoIdentityServiceServer;

/// The gRPC service's full name (`rpc.service` on spans).
pub const SERVICE: &str = "cognito_identity_gateway.v1.CognitoIdentityService";

/// The prefix of its methods' paths; health checks and reflection have others.
pub const API_PREFIX: &str = "/cognito_identity_gateway.v1.CognitoIdentityService/";

/// The generated gRPC service's implementation over a domain service.
#[derive(Debug)]
pub struct GrpcApi<S> {
    service: Arc<S>,
}

impl<S: IdentityService> GrpcApi<S> {
    /// Serves `service` over gRPC.
    pub fn new(service: Arc<S>) -> Self {
        Self { service }
    }

    /// The tonic server for this API.
    pub fn into_server(self) -> CognitoIdentityServiceServer<Self> {
        CognitoIdentityServiceServer::new(self)
    }
}

/// Who is calling.
fn context<T>(_request: &Request<T>) -> RequestContext {
    RequestContext::anonymous()
}

/// proto3 cannot tell an empty string from an absent one; the model allows
/// no empty strings, so empty means absent.
fn present(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

fn timestamp(time: Option<SystemTime>) -> Option<prost_types::Timestamp> {
    time.map(prost_types::Timestamp::from)
}

fn token_parts(token: OpenIdToken) -> (String, String, Option<prost_types::Timestamp>) {
    (
        token.identity_id,
        token.token.into_exposed(),
        timestamp(token.expires_at),
    )
}

#[tonic::async_trait]
impl<S: IdentityService> pb::cognito_identity_service_server::CognitoIdentityService
    for GrpcApi<S>
{
    async fn get_id(
        &self,
        request: Request<pb::GetIdRequest>,
    ) -> Result<Response<pb::GetIdResponse>, Status> {
        let ctx = context(&request);
        let m = request.into_inner();
        let input = GetIdInput::parse(present(m.identity_pool_id), present(m.account_id), m.logins)
            .map_err(Error::InvalidRequest)?;
        let out = self.service.get_id(&ctx, input).await?;
        Ok(Response::new(pb::GetIdResponse {
            identity_id: out.identity_id,
        }))
    }

    async fn get_open_id_token(
        &self,
        request: Request<pb::GetOpenIdTokenRequest>,
    ) -> Result<Response<pb::GetOpenIdTokenResponse>, Status> {
        let ctx = context(&request);
        let m = request.into_inner();
        let input = GetOpenIdTokenInput::parse(present(m.identity_id), m.logins)
            .map_err(Error::InvalidRequest)?;
        let (identity_id, token, expires_at) =
            token_parts(self.service.get_open_id_token(&ctx, input).await?);
        Ok(Response::new(pb::GetOpenIdTokenResponse {
            identity_id,
            token,
            expires_at,
        }))
    }

    async fn get_open_id_token_for_developer_identity(
        &self,
        request: Request<pb::GetOpenIdTokenForDeveloperIdentityRequest>,
    ) -> Result<Response<pb::GetOpenIdTokenForDeveloperIdentityResponse>, Status> {
        let ctx = context(&request);
        let m = request.into_inner();
        let input = GetOpenIdTokenForDeveloperIdentityInput::parse(
            present(m.identity_pool_id),
            present(m.identity_id),
            m.logins,
            m.principal_tags,
            m.token_duration_seconds,
        )
        .map_err(Error::InvalidRequest)?;
        let (identity_id, token, expires_at) = token_parts(
            self.service
                .get_open_id_token_for_developer_identity(&ctx, input)
                .await?,
        );
        Ok(Response::new(
            pb::GetOpenIdTokenForDeveloperIdentityResponse {
                identity_id,
                token,
                expires_at,
            },
        ))
    }

    async fn get_credentials_for_identity(
        &self,
        request: Request<pb::GetCredentialsForIdentityRequest>,
    ) -> Result<Response<pb::GetCredentialsForIdentityResponse>, Status> {
        let ctx = context(&request);
        let m = request.into_inner();
        let input = GetCredentialsForIdentityInput::parse(
            present(m.identity_id),
            m.logins,
            present(m.custom_role_arn),
        )
        .map_err(Error::InvalidRequest)?;
        let out = self
            .service
            .get_credentials_for_identity(&ctx, input)
            .await?;
        let c = out.credentials;
        Ok(Response::new(pb::GetCredentialsForIdentityResponse {
            identity_id: out.identity_id,
            credentials: Some(pb::Credentials {
                access_key_id: c.access_key_id.into_exposed(),
                secret_key: c.secret_key.into_exposed(),
                session_token: c.session_token.into_exposed(),
                expiration: timestamp(c.expiration),
            }),
        }))
    }
}
