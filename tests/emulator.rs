//! The gateway against the embedded emulator, where Cognito's semantics
//! matter: token expiry, the developer-token-to-credentials exchange, and
//! Cognito errors arriving as gRPC codes with their ErrorInfo.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use cognito_identity_gateway::emulator::{DEFAULT_DEVELOPER_PROVIDER, DEFAULT_POOL_ID};
use cognito_identity_gateway::grpc::status::COGNITO_DOMAIN;
use cognito_identity_gateway::proto as pb;
use support::{TestGateway, emulator_upstream_signing_with, get_id, start_emulator};
use tonic::Code;
use tonic_types::StatusExt;

async fn gateway_on_emulator(access_secret: &str) -> TestGateway {
    let (url, _emulator) = start_emulator().await;
    TestGateway::start(emulator_upstream_signing_with(&url, access_secret).await).await
}

fn developer_request(
    user: &str,
    duration: Option<i64>,
) -> pb::GetOpenIdTokenForDeveloperIdentityRequest {
    pb::GetOpenIdTokenForDeveloperIdentityRequest {
        identity_pool_id: DEFAULT_POOL_ID.into(),
        logins: HashMap::from([(DEFAULT_DEVELOPER_PROVIDER.into(), user.into())]),
        token_duration_seconds: duration,
        ..Default::default()
    }
}

#[tokio::test]
async fn expires_at_is_the_tokens_exp_and_the_token_buys_credentials() {
    let gateway = gateway_on_emulator("test").await;
    let mut client = gateway.client().await;
    let before = SystemTime::now();
    let token = client
        .get_open_id_token_for_developer_identity(developer_request("alice", Some(300)))
        .await
        .unwrap()
        .into_inner();
    let expires_at = SystemTime::try_from(token.expires_at.expect("expires_at")).unwrap();
    let life = expires_at.duration_since(before).unwrap();
    assert!(
        life > Duration::from_secs(298) && life <= Duration::from_secs(301),
        "{life:?}"
    );

    let credentials = client
        .get_credentials_for_identity(pb::GetCredentialsForIdentityRequest {
            identity_id: token.identity_id.clone(),
            logins: HashMap::from([("cognito-identity.amazonaws.com".into(), token.token)]),
            custom_role_arn: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(credentials.identity_id, token.identity_id);
    assert!(
        credentials
            .credentials
            .unwrap()
            .access_key_id
            .starts_with("ASIA")
    );
    gateway.stop().await;
}

#[tokio::test]
async fn cognito_errors_arrive_with_their_code_and_request_id() {
    let gateway = gateway_on_emulator("test").await;
    let mut client = gateway.client().await;
    let unknown_pool = client
        .get_id(get_id("us-east-1:00000000-0000-0000-0000-000000000000"))
        .await
        .unwrap_err();
    let conflict = {
        let anon = client
            .get_id(get_id(DEFAULT_POOL_ID))
            .await
            .unwrap()
            .into_inner()
            .identity_id;
        client
            .get_open_id_token_for_developer_identity(developer_request("bob", None))
            .await
            .unwrap();
        let mut request = developer_request("bob", None);
        request.identity_id = anon;
        client
            .get_open_id_token_for_developer_identity(request)
            .await
            .unwrap_err()
    };
    let authenticated_without_logins = {
        let id = client
            .get_open_id_token_for_developer_identity(developer_request("carol", None))
            .await
            .unwrap()
            .into_inner()
            .identity_id;
        client
            .get_open_id_token(pb::GetOpenIdTokenRequest {
                identity_id: id,
                logins: HashMap::new(),
            })
            .await
            .unwrap_err()
    };
    for (status, code, reason) in [
        (unknown_pool, Code::NotFound, "ResourceNotFoundException"),
        (
            conflict,
            Code::AlreadyExists,
            "DeveloperUserAlreadyRegisteredException",
        ),
        (
            authenticated_without_logins,
            Code::PermissionDenied,
            "NotAuthorizedException",
        ),
    ] {
        assert_eq!(status.code(), code, "{status:?}");
        let info = status.get_details_error_info().unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            (reason, COGNITO_DOMAIN)
        );
        assert!(!info.metadata["aws_request_id"].is_empty());
    }
    gateway.stop().await;
}

#[tokio::test]
async fn a_wrong_developer_secret_is_refused_upstream() {
    let gateway = gateway_on_emulator("not-the-secret").await;
    let mut client = gateway.client().await;
    let err = client
        .get_open_id_token_for_developer_identity(developer_request("dave", None))
        .await
        .unwrap_err();
    assert_eq!(
        err.get_details_error_info().unwrap().reason,
        "InvalidSignatureException"
    );
    // The public operations are not signed, so they still work.
    client.get_id(get_id(DEFAULT_POOL_ID)).await.unwrap();
    gateway.stop().await;
}
