//! The four identity operations the gateway fronts, over the store, and
//! the one check of a Cognito token presented as a login that two of them
//! share.

use serde_json::{Value, json};

use super::ACCOUNT_ID;
use super::claims::{Claims, SessionTags};
use super::store::{COGNITO_PROVIDER, Caller, Resolved, Store};
use super::tokens::{Signer, unix_now};
use super::wire::{self, AwsError, not_authorized};
use crate::domain::{
    GetCredentialsForIdentityInput, GetIdInput, GetOpenIdTokenForDeveloperIdentityInput,
    GetOpenIdTokenInput, Logins,
};

/// GetOpenIdToken's tokens last 10 minutes (the operation's documentation
/// since 2019; older documents say 15).
const OPEN_ID_TOKEN_SECONDS: u64 = 600;
/// TokenDuration when the developer operation names none: 15 minutes.
const DEFAULT_TOKEN_DURATION_SECONDS: u64 = 900;
/// Credentials from GetCredentialsForIdentity last one hour.
const CREDENTIALS_SECONDS: u64 = 3600;

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

/// GetOpenIdToken: logins as GetCredentialsForIdentity takes them, a
/// developer token included (the basic authflow of developer identities).
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
    let authorized = authorize(signer, store, req.identity_id.as_str(), &req.logins)?;
    token_reply(
        signer,
        &authorized.identity,
        OPEN_ID_TOKEN_SECONDS,
        authorized.tags,
    )
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
    authorize(signer, store, identity_id, &req.logins)?;
    Ok(json!({ "IdentityId": identity_id, "Credentials": credentials() }))
}

/// An identity whose logins were accepted.
struct Authorized {
    identity: Resolved,
    /// The session tags of the Cognito token presented, if any: a token
    /// made from it speaks for the same session, so it keeps them.
    tags: Option<SessionTags>,
}

/// The check of GetOpenIdToken's and GetCredentialsForIdentity's logins.
/// A Cognito token (`cognito-identity.amazonaws.com`) stands for the
/// identity on its own: it must be this emulator's, unexpired, and issued
/// for this identity (`sub`) of its pool (`aud`); other logins then are not
/// looked at. Without one, the logins must be the identity's own.
fn authorize(
    signer: &Signer,
    store: &mut Store,
    identity_id: &str,
    logins: &Logins,
) -> Result<Authorized, AwsError> {
    let Some(token) = logins.map().get(COGNITO_PROVIDER) else {
        return Ok(Authorized {
            identity: store.authorize(identity_id, logins)?,
            tags: None,
        });
    };
    let pool_id = store.identity_pool(identity_id)?.id.clone();
    let claims = signer
        .verify(token.expose(), identity_id, &pool_id)
        .map_err(|why| not_authorized(format!("Invalid login token. {why}.")))?;
    Ok(Authorized {
        identity: store.identity(identity_id)?,
        tags: claims.tags,
    })
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
