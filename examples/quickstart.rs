//! A small client of the gateway: gets a developer token for a user,
//! exchanges it for AWS credentials, and prints the identity id and both
//! expiries (never the token or the credentials).
//!
//! ```sh
//! cargo run --release -- --emulator --listen 127.0.0.1:50051   # in one terminal
//! cargo run --example quickstart                               # in another
//! ```
//!
//! Flags: `--gateway URL` (default http://127.0.0.1:50051), `--pool ID`,
//! `--provider NAME`, `--user ID`; the defaults match `--emulator`'s ready pool.

use std::collections::HashMap;
use std::time::SystemTime;

use cognito_identity_gateway::proto::cognito_identity_service_client::CognitoIdentityServiceClient;
use cognito_identity_gateway::proto::{
    GetCredentialsForIdentityRequest, GetOpenIdTokenForDeveloperIdentityRequest,
};

fn flag(args: &[String], name: &str, default: &str) -> String {
    args.windows(2)
        .find(|w| w[0] == name)
        .map_or_else(|| default.to_owned(), |w| w[1].clone())
}

fn rfc3339(ts: Option<prost_types::Timestamp>) -> String {
    match ts.map(SystemTime::try_from) {
        Some(Ok(time)) => humantime::format_rfc3339_seconds(time).to_string(),
        _ => "unknown".to_owned(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let gateway = flag(&args, "--gateway", "http://127.0.0.1:50051");
    let pool = flag(
        &args,
        "--pool",
        "us-east-1:0a0a0a0a-0000-4000-8000-000000000001",
    );
    let provider = flag(&args, "--provider", "login.gateway.example");
    let user = flag(&args, "--user", "quickstart-user");

    let mut client = CognitoIdentityServiceClient::connect(gateway).await?;
    let token = client
        .get_open_id_token_for_developer_identity(GetOpenIdTokenForDeveloperIdentityRequest {
            identity_pool_id: pool,
            logins: HashMap::from([(provider, user)]),
            token_duration_seconds: Some(900),
            ..Default::default()
        })
        .await?
        .into_inner();
    println!("identity id:           {}", token.identity_id);
    println!("token expires at:      {}", rfc3339(token.expires_at));

    let credentials = client
        .get_credentials_for_identity(GetCredentialsForIdentityRequest {
            identity_id: token.identity_id,
            logins: HashMap::from([("cognito-identity.amazonaws.com".to_owned(), token.token)]),
            custom_role_arn: String::new(),
        })
        .await?
        .into_inner();
    let expiration = credentials.credentials.and_then(|c| c.expiration);
    println!("credentials expire at: {}", rfc3339(expiration));
    Ok(())
}
