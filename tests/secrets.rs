//! No secret at any log level: the real binary with `RUST_LOG=trace` and
//! the cache off (every call reaches the SDK and the embedded emulator),
//! through every operation with every secret it carries: Logins values, a
//! principal tag value, the developer token and the token made from it, and
//! the credentials. None of them may appear in a single log line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;

use cognito_identity_gateway::emulator::{DEFAULT_DEVELOPER_PROVIDER, DEFAULT_POOL_ID};
use cognito_identity_gateway::proto as pb;
use cognito_identity_gateway::proto::cognito_identity_service_client::CognitoIdentityServiceClient;
use support::binary::{self, Process};
use support::loopback::free_port;
use tonic::transport::Channel;

const SECRET_USER: &str = "secret-developer-user-41b7";
const SECRET_TAG: &str = "secret-tag-value-0c9e";
const SECRET_LOGIN: &str = "secret-login-token-e27a";

#[tokio::test]
async fn no_secret_reaches_a_log_line_at_trace() {
    let grpc_port = free_port();
    let gateway = Process::spawn(
        binary::command()
            .args(["--emulator", "--cache", "false", "--admin-listen", "off"])
            .args(["--shutdown-grace", "2s"])
            .args(["--listen", &format!("127.0.0.1:{grpc_port}")])
            // Whatever an operator asks for, the SDK's own targets included.
            .env(
                "RUST_LOG",
                "trace,aws_smithy_runtime=trace,aws_sdk_cognitoidentity=trace",
            ),
    );

    let mut client: CognitoIdentityServiceClient<Channel> =
        CognitoIdentityServiceClient::new(binary::connect(grpc_port).await);

    // GetId with a login of a provider the pool does not have: refused by
    // Cognito, but the login's value went upstream.
    let refused = client
        .get_id(pb::GetIdRequest {
            identity_pool_id: DEFAULT_POOL_ID.into(),
            logins: HashMap::from([("graph.facebook.com".into(), SECRET_LOGIN.into())]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let developer = client
        .get_open_id_token_for_developer_identity(pb::GetOpenIdTokenForDeveloperIdentityRequest {
            identity_pool_id: DEFAULT_POOL_ID.into(),
            logins: HashMap::from([(DEFAULT_DEVELOPER_PROVIDER.into(), SECRET_USER.into())]),
            principal_tags: HashMap::from([("team".into(), SECRET_TAG.into())]),
            token_duration_seconds: Some(900),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let cognito_login = || {
        HashMap::from([(
            "cognito-identity.amazonaws.com".to_owned(),
            developer.token.clone(),
        )])
    };
    let open_id = client
        .get_open_id_token(pb::GetOpenIdTokenRequest {
            identity_id: developer.identity_id.clone(),
            logins: cognito_login(),
        })
        .await
        .unwrap()
        .into_inner();
    let credentials = client
        .get_credentials_for_identity(pb::GetCredentialsForIdentityRequest {
            identity_id: developer.identity_id.clone(),
            logins: cognito_login(),
            custom_role_arn: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .credentials
        .unwrap();

    // An idle connection would hold shutdown for its grace period.
    drop(client);
    let (status, logs) = gateway.terminate();
    assert!(status.success());

    assert!(
        logs.lines().any(|l| l.contains("TRACE")),
        "the gateway logged nothing at trace, so this test shows nothing"
    );
    for (what, secret) in [
        ("a developer user", SECRET_USER),
        ("a principal tag value", SECRET_TAG),
        ("a Logins value", SECRET_LOGIN),
        ("the developer token", developer.token.as_str()),
        ("the OpenID token", open_id.token.as_str()),
        ("an access key id", credentials.access_key_id.as_str()),
        ("a secret key", credentials.secret_key.as_str()),
        ("a session token", credentials.session_token.as_str()),
    ] {
        // Tokens are long; a leak shows a piece of one as well.
        let piece = &secret[secret.len().saturating_sub(24)..];
        if let Some(line) = logs.lines().find(|l| l.contains(piece)) {
            // Say where, never what: the line up to the secret, at most 80 bytes.
            let at = line.find(piece).unwrap_or(0).min(80);
            let start = line.get(..at).unwrap_or_default();
            panic!("{what} leaked into a log line: {start}<secret>…");
        }
    }
}
