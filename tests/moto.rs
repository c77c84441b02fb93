//! The gateway end to end through a real gRPC client, against moto: the
//! check of wire compatibility with a third-party implementation of Cognito
//! Identity. moto's semantics are thin (tokens are not JWTs, nothing is
//! stable), so these tests check the wire path, not Cognito's rules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::SystemTime;

use cognito_identity_gateway::proto as pb;
use support::{TestGateway, create_pool, moto_endpoint, sdk_upstream};

const DEVELOPER_PROVIDER: &str = "login.example.com";

fn is_identity_id(id: &str) -> bool {
    cognito_identity_gateway::domain::IdentityId::parse(id).is_ok()
}

#[tokio::test]
async fn all_four_operations_through_the_sdk() {
    let endpoint = moto_endpoint();
    let pool = create_pool(&endpoint, DEVELOPER_PROVIDER).await;
    let gateway = TestGateway::start(sdk_upstream(&endpoint).await).await;
    let mut client = gateway.client().await;

    let identity_id = client
        .get_id(pb::GetIdRequest {
            identity_pool_id: pool.clone(),
            account_id: "123456789012".into(),
            logins: HashMap::new(),
        })
        .await
        .expect("GetId")
        .into_inner()
        .identity_id;
    assert!(is_identity_id(&identity_id), "{identity_id}");

    let token = client
        .get_open_id_token(pb::GetOpenIdTokenRequest {
            identity_id: identity_id.clone(),
            logins: HashMap::new(),
        })
        .await
        .expect("GetOpenIdToken")
        .into_inner();
    assert_eq!(token.identity_id, identity_id);
    assert!(!token.token.is_empty());
    // moto's tokens are not JWTs: no exp claim, so no expiry is claimed.
    assert_eq!(token.expires_at, None);

    let developer = client
        .get_open_id_token_for_developer_identity(pb::GetOpenIdTokenForDeveloperIdentityRequest {
            identity_pool_id: pool.clone(),
            identity_id: String::new(),
            logins: HashMap::from([(DEVELOPER_PROVIDER.into(), "user-1".into())]),
            principal_tags: HashMap::from([("team".into(), "payments".into())]),
            token_duration_seconds: Some(120),
        })
        .await
        .expect("GetOpenIdTokenForDeveloperIdentity")
        .into_inner();
    assert!(is_identity_id(&developer.identity_id));
    assert!(!developer.token.is_empty());

    let credentials = client
        .get_credentials_for_identity(pb::GetCredentialsForIdentityRequest {
            identity_id: identity_id.clone(),
            logins: HashMap::new(),
            custom_role_arn: String::new(),
        })
        .await
        .expect("GetCredentialsForIdentity")
        .into_inner();
    assert_eq!(credentials.identity_id, identity_id);
    let c = credentials.credentials.expect("credentials");
    assert!(!c.access_key_id.is_empty() && !c.secret_key.is_empty() && !c.session_token.is_empty());
    let expiration = SystemTime::try_from(c.expiration.expect("expiration")).unwrap();
    assert!(
        expiration > SystemTime::now(),
        "credentials already expired"
    );

    gateway.stop().await;
}

#[tokio::test]
async fn developer_identity_with_an_existing_identity_id() {
    let endpoint = moto_endpoint();
    let pool = create_pool(&endpoint, DEVELOPER_PROVIDER).await;
    let gateway = TestGateway::start(sdk_upstream(&endpoint).await).await;
    let mut client = gateway.client().await;
    let identity_id = client
        .get_id(pb::GetIdRequest {
            identity_pool_id: pool.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .identity_id;
    let reply = client
        .get_open_id_token_for_developer_identity(pb::GetOpenIdTokenForDeveloperIdentityRequest {
            identity_pool_id: pool,
            identity_id: identity_id.clone(),
            logins: HashMap::from([(DEVELOPER_PROVIDER.into(), "user-2".into())]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(is_identity_id(&reply.identity_id));
    gateway.stop().await;
}
