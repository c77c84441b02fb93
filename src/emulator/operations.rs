//! The four identity operations the gateway fronts, over the store.

use serde_json::{Value, json};

use super::ACCOUNT_ID;
use super::claims::{Claims, SessionTags};
use super::store::{COGNITO_PROVIDER, Caller, Resolved, Store};
use super::tokens::{Signer, unix_now};
use super::wire::{self, AwsError, not_authorized};
use crate::domain::{
    GetCredentialsForIdentityInput, GetIdInput, GetOpenIdTokenForDeveloperIdentityInput,
    GetOpenIdTokenInput,
};

/// GetOpenIdToken's tokens last 10 minutes (the operation's documentation
/// since 2019; older documents say 15).
const OPEN_ID_TOKEN_SECONDS: u64 = 600;
/// TokenDuration when the developer operation names none: 15 minutes.
const DEFAULT_TOKEN_DURATION_SECONDS: u64 = 900;
/// Credentials from GetCredentialsForIdentity last one hour.
const CREDENTIALS_SECONDS: u64 = 3600;

/// GetId.
pub(super) fn get_id(store: &mut Store, input: &Value) -> Result<Value, AwsError> {
    let req = GetIdInput::parse(
        wire::string(input, "IdentityPoolId")?,
        wire::string(input, "AccountId")?,
        wire::map(input, "Logins")?,
    )
    .map_err(|v| wire::violations(&v))?;
    let resolved = store.resolve(
        req.identity_pool_id.as_str(),
        None,
        &req.logins,
        Caller::Public,
    )?;
    Ok(json!({ "IdentityId": resolved.identity_id }))
}

/// GetOpenIdToken.
pub(super) fn get_open_id_token(
    signer: &Signer,
    store: &mut Store,
    input: &Value,
) -> Result<Value, AwsError> {
    let req = GetOpenIdTokenInput::parse(
        wire::string(input, "IdentityId")?,
        wire::map(input, "Logins")?,
    )
    .map_err(|v| wire::violations(&v))?;
    let resolved = store.authorize(req.identity_id.as_str(), &req.logins)?;
    token_reply(signer, &resolved, OPEN_ID_TOKEN_SECONDS, None)
}

/// GetOpenIdTokenForDeveloperIdentity (its signature is checked before).
pub(super) fn get_open_id_token_for_developer_identity(
    signer: &Signer,
    store: &mut Store,
    input: &Value,
) -> Result<Value, AwsError> {
    let req = GetOpenIdTokenForDeveloperIdentityInput::parse(
        wire::string(input, "IdentityPoolId")?,
        wire::string(input, "IdentityId")?,
        wire::map(input, "Logins")?,
        wire::map(input, "PrincipalTags")?,
        wire::integer(input, "TokenDuration")?,
    )
    .map_err(|v| wire::violations(&v))?;
    let resolved = store.resolve(
        req.identity_pool_id.as_str(),
        req.identity_id.as_ref().map(|i| i.as_str()),
        &req.logins,
        Caller::Developer,
    )?;
    let seconds = req
        .token_duration
        .map_or(DEFAULT_TOKEN_DURATION_SECONDS, |d| u64::from(d.seconds()));
    let tags = SessionTags::from_principal_tags(&req.principal_tags);
    token_reply(signer, &resolved, seconds, tags)
}

/// GetCredentialsForIdentity.
pub(super) fn get_credentials_for_identity(
    signer: &Signer,
    store: &mut Store,
    input: &Value,
) -> Result<Value, AwsError> {
    let req = GetCredentialsForIdentityInput::parse(
        wire::string(input, "IdentityId")?,
        wire::map(input, "Logins")?,
        wire::string(input, "CustomRoleArn")?,
    )
    .map_err(|v| wire::violations(&v))?;
    let identity_id = req.identity_id.as_str();
    match req.logins.map().get(COGNITO_PROVIDER) {
        Some(token) => {
            let pool_id = store.identity_pool(identity_id)?.id.clone();
            signer
                .verify(token.expose(), identity_id, &pool_id)
                .map_err(|why| not_authorized(format!("Invalid login token. {why}.")))?;
        }
        None => {
            store.authorize(identity_id, &req.logins)?;
        }
    }
    Ok(json!({ "IdentityId": identity_id, "Credentials": credentials() }))
}

fn token_reply(
    signer: &Signer,
    identity: &Resolved,
    seconds: u64,
    tags: Option<SessionTags>,
) -> Result<Value, AwsError> {
    let claims = Claims::for_identity(identity, ACCOUNT_ID, unix_now(), seconds, tags);
    let token = signer
        .mint(&claims)
        .map_err(|e| AwsError::new("InternalErrorException", e))?;
    Ok(json!({ "IdentityId": identity.identity_id, "Token": token }))
}

/// Fresh random credentials that expire in an hour; the same shapes as
/// STS's (ASIA access key id, 40-character secret).
fn credentials() -> Value {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let random = |n: usize, alphabet: &[u8]| -> String {
        let mut bytes = vec![0u8; n];
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        bytes
            .iter()
            .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
            .collect()
    };
    let b64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    json!({
        "AccessKeyId": format!("ASIA{}", random(16, ALNUM)),
        "SecretKey": random(40, b64),
        "SessionToken": random(356, b64),
        "Expiration": unix_now() + CREDENTIALS_SECONDS,
    })
}
