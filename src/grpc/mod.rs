//! The gRPC layer. It only translates: proto message -> validated domain
//! input -> [`IdentityService`] -> proto reply. No AWS SDK type appears here.

mod caller;
pub mod status;

use std::sync::Arc;
use std::time::SystemTime;

use tonic::{Request, Response, Status};

use crate::domain::{
    Deadline, Error, IdentityService, OpenIdToken, Operation, Peer, RequestContext, Violations,
};
use crate::proto as pb;
use crate::telemetry::rpc::CallNotes;

pub(crate) use caller::{DEFAULT_TRUSTED_PEERS, TrustedPeers};
pub use caller::{IdentityHeader, Rejections};
pub use pb::cognito_identity_service_server::CognitoIdentityServiceServer;

/// The generated gRPC service's implementation over a domain service.
#[derive(Debug)]
pub struct GrpcApi<S> {
    service: Arc<S>,
    /// The header a trusted mesh names the caller in, if any.
    identity_header: Option<IdentityHeader>,
    /// The identity headers set aside.
    rejections: Arc<Rejections>,
}

impl<S: IdentityService> GrpcApi<S> {
    /// Serves `service` over gRPC.
    pub fn new(service: Arc<S>) -> Self {
        Self {
            service,
            identity_header: None,
            rejections: Arc::default(),
        }
    }

    /// Registers its metrics in `registry`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        self.rejections.register(registry);
    }

    /// Takes the caller's identity from `header`, which a service mesh in
    /// front of the gateway sets (`--caller-identity-header`), on calls
    /// from its trusted peers.
    pub(crate) fn trusting_header(mut self, header: Option<IdentityHeader>) -> Self {
        self.identity_header = header;
        self
    }

    /// The tonic server for this API.
    pub fn into_server(self) -> CognitoIdentityServiceServer<Self> {
        CognitoIdentityServiceServer::new(self)
    }

    /// The one way every call takes: the message parsed into its validated
    /// operation, answered by the service, and the answer turned into the
    /// reply. A traced call's span is told how the answer was reached.
    async fn answer<M, O, R>(
        &self,
        request: Request<M>,
        parse: impl FnOnce(M) -> Result<O, Violations>,
        reply: impl FnOnce(O::Output) -> R,
    ) -> Result<Response<R>, Status>
    where
        O: Operation,
    {
        let notes = request.extensions().get::<CallNotes>().cloned();
        let ctx = RequestContext {
            caller: caller::caller(&request, self.identity_header.as_ref(), &self.rejections),
            peer: request
                .extensions()
                .get::<Peer>()
                .and_then(|peer| peer.remote)
                .map(|addr| addr.ip().to_canonical()),
            trace_id: notes.as_ref().map(CallNotes::trace_id),
            deadline: request.extensions().get::<Deadline>().map(|d| d.0),
        };
        let input = parse(request.into_inner()).map_err(Error::InvalidRequest)?;
        let served = self.service.call(&ctx, input).await;
        if let Some(notes) = notes {
            notes.note(served.cache, served.upstream);
        }
        Ok(Response::new(reply(served.result?)))
    }
}

/// Each request message turned into its validated domain input: every
/// check on a request's fields, in one place (public for the fuzz targets,
/// which feed them what the decoder makes of arbitrary bytes).
pub mod parse {
    use super::pb;
    use crate::domain::{
        GetCredentialsForIdentityInput, GetIdInput, GetOpenIdTokenForDeveloperIdentityInput,
        GetOpenIdTokenInput, Violations,
    };

    /// proto3 cannot tell an empty string from an absent one; the model
    /// allows no empty strings, so empty means absent.
    fn present(value: String) -> Option<String> {
        (!value.is_empty()).then_some(value)
    }

    /// A GetId request, its fields checked.
    pub fn get_id(m: pb::GetIdRequest) -> Result<GetIdInput, Violations> {
        GetIdInput::parse(present(m.identity_pool_id), present(m.account_id), m.logins)
    }

    /// A GetOpenIdToken request, its fields checked.
    pub fn get_open_id_token(
        m: pb::GetOpenIdTokenRequest,
    ) -> Result<GetOpenIdTokenInput, Violations> {
        GetOpenIdTokenInput::parse(present(m.identity_id), m.logins)
    }

    /// A GetOpenIdTokenForDeveloperIdentity request, its fields checked.
    pub fn get_open_id_token_for_developer_identity(
        m: pb::GetOpenIdTokenForDeveloperIdentityRequest,
    ) -> Result<GetOpenIdTokenForDeveloperIdentityInput, Violations> {
        GetOpenIdTokenForDeveloperIdentityInput::parse(
            present(m.identity_pool_id),
            present(m.identity_id),
            m.logins,
            m.principal_tags,
            m.token_duration_seconds,
        )
    }

    /// A GetCredentialsForIdentity request, its fields checked.
    pub fn get_credentials_for_identity(
        m: pb::GetCredentialsForIdentityRequest,
    ) -> Result<GetCredentialsForIdentityInput, Violations> {
        GetCredentialsForIdentityInput::parse(
            present(m.identity_id),
            m.logins,
            present(m.custom_role_arn),
        )
    }
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
        self.answer(request, parse::get_id, |out| pb::GetIdResponse {
            identity_id: out.identity_id,
        })
        .await
    }

    async fn get_open_id_token(
        &self,
        request: Request<pb::GetOpenIdTokenRequest>,
    ) -> Result<Response<pb::GetOpenIdTokenResponse>, Status> {
        self.answer(request, parse::get_open_id_token, |token| {
            let (identity_id, token, expires_at) = token_parts(token);
            pb::GetOpenIdTokenResponse {
                identity_id,
                token,
                expires_at,
            }
        })
        .await
    }

    async fn get_open_id_token_for_developer_identity(
        &self,
        request: Request<pb::GetOpenIdTokenForDeveloperIdentityRequest>,
    ) -> Result<Response<pb::GetOpenIdTokenForDeveloperIdentityResponse>, Status> {
        self.answer(
            request,
            parse::get_open_id_token_for_developer_identity,
            |token| {
                let (identity_id, token, expires_at) = token_parts(token);
                pb::GetOpenIdTokenForDeveloperIdentityResponse {
                    identity_id,
                    token,
                    expires_at,
                }
            },
        )
        .await
    }

    async fn get_credentials_for_identity(
        &self,
        request: Request<pb::GetCredentialsForIdentityRequest>,
    ) -> Result<Response<pb::GetCredentialsForIdentityResponse>, Status> {
        self.answer(request, parse::get_credentials_for_identity, |out| {
            let c = out.credentials;
            pb::GetCredentialsForIdentityResponse {
                identity_id: out.identity_id,
                credentials: Some(pb::Credentials {
                    access_key_id: c.access_key_id.into_exposed(),
                    secret_key: c.secret_key.into_exposed(),
                    session_token: c.session_token.into_exposed(),
                    expiration: timestamp(c.expiration),
                }),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::OperationName;
    use crate::proto::API_METHODS;

    #[test]
    fn every_operation_is_the_method_of_its_name() {
        let operations: Vec<&str> = OperationName::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(operations, API_METHODS);
    }
}
