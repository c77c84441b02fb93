//! The emulator's routes and Cognito Identity's operations.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde_json::{Value, json};

use super::store::{COGNITO_PROVIDER, Caller, Pool, Resolved};
use super::tokens::{Claims, ISSUER, unix_now};
use super::wire::{self, AwsError, invalid, not_authorized};
use super::{Emulator, FaultSettings, json_response, sigv4};
use crate::domain::{
    GetCredentialsForIdentityInput, GetIdInput, GetOpenIdTokenForDeveloperIdentityInput,
    GetOpenIdTokenInput,
};

/// The `X-Amz-Target` prefix of Cognito Identity (the model's `targetPrefix`).
const TARGET_PREFIX: &str = "AWSCognitoIdentityService.";
/// GetOpenIdToken's tokens last 10 minutes (the operation's documentation
/// since 2019; older documents say 15).
const OPEN_ID_TOKEN_SECONDS: u64 = 600;
/// TokenDuration when the developer operation names none: 15 minutes.
const DEFAULT_TOKEN_DURATION_SECONDS: u64 = 900;
/// Credentials from GetCredentialsForIdentity last one hour.
const CREDENTIALS_SECONDS: u64 = 3600;

type HttpResponse = Response<Full<Bytes>>;

pub(super) async fn route(
    emulator: &Emulator,
    parts: &http::request::Parts,
    body: &Bytes,
) -> HttpResponse {
    let path = parts.uri.path();
    match (parts.method.as_str(), path) {
        ("POST", "/") => api_call(emulator, parts, body).await,
        ("GET", "/.well-known/jwks_uri") => json_response(200, &emulator.signer.jwks()),
        ("GET", "/_emulator/faults") => fault_settings(emulator),
        ("PUT", "/_emulator/faults") => match serde_json::from_slice::<FaultSettings>(body) {
            Ok(settings) => match emulator.faults.set(settings) {
                Ok(()) => fault_settings(emulator),
                Err(e) => json_response(400, &json!({ "message": e })),
            },
            Err(e) => json_response(400, &json!({ "message": e.to_string() })),
        },
        ("PUT", "/_emulator/faults/presets/cognito-default") => {
            match emulator.faults.set(FaultSettings::cognito_default_quotas()) {
                Ok(()) => fault_settings(emulator),
                Err(e) => json_response(500, &json!({ "message": e })),
            }
        }
        ("GET", "/_emulator/calls") => {
            let calls = emulator.calls.lock().map(|c| c.clone()).unwrap_or_default();
            json_response(200, &json!(calls))
        }
        _ => json_response(
            404,
            &json!({ "message": format!("no route {} {path}", parts.method) }),
        ),
    }
}

fn fault_settings(emulator: &Emulator) -> HttpResponse {
    json_response(200, &json!(emulator.faults.settings()))
}

async fn api_call(emulator: &Emulator, parts: &http::request::Parts, body: &Bytes) -> HttpResponse {
    let operation = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or("")
        .to_owned();
    if let Ok(mut calls) = emulator.calls.lock() {
        *calls.entry(operation.clone()).or_default() += 1;
    }
    let outcome = match emulator.faults.decide(&operation, Instant::now(), roll()) {
        super::faults::Verdict::Throttle => {
            Err(AwsError::new("TooManyRequestsException", "Rate exceeded"))
        }
        super::faults::Verdict::Fail => Err(AwsError::new(
            "InternalErrorException",
            "An internal error occurred (injected).",
        )),
        super::faults::Verdict::Serve { delay } => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            operate(emulator, &operation, parts, body)
        }
    };
    let mut response = match outcome {
        Ok(value) => json_response(200, &value),
        Err(err) => json_response(err.status(), &err.body()),
    };
    if let Ok(id) = http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
    response
}

/// A uniform number in [0, 1).
fn roll() -> f64 {
    let mut bytes = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

fn operate(
    emulator: &Emulator,
    operation: &str,
    parts: &http::request::Parts,
    body: &Bytes,
) -> Result<Value, AwsError> {
    if operation == "GetOpenIdTokenForDeveloperIdentity" {
        let request = sigv4::SignedRequest {
            method: parts.method.as_str(),
            uri: &parts.uri,
            headers: &parts.headers,
            body,
        };
        sigv4::verify(&request, &emulator.access_keys, SystemTime::now())?;
    }
    let input: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|_| {
            AwsError::new("SerializationException", "Request body is not valid JSON.")
        })?
    };
    let mut store = emulator
        .store
        .lock()
        .map_err(|_| AwsError::new("InternalErrorException", "state poisoned"))?;
    match operation {
        "GetId" => {
            let req = GetIdInput::parse(
                wire::string(&input, "IdentityPoolId")?,
                wire::string(&input, "AccountId")?,
                wire::map(&input, "Logins")?,
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
        "GetOpenIdToken" => {
            let req = GetOpenIdTokenInput::parse(
                wire::string(&input, "IdentityId")?,
                wire::map(&input, "Logins")?,
            )
            .map_err(|v| wire::violations(&v))?;
            let resolved = store.authorize(req.identity_id.as_str(), &req.logins)?;
            token_reply(emulator, &resolved, OPEN_ID_TOKEN_SECONDS)
        }
        "GetOpenIdTokenForDeveloperIdentity" => {
            let req = GetOpenIdTokenForDeveloperIdentityInput::parse(
                wire::string(&input, "IdentityPoolId")?,
                wire::string(&input, "IdentityId")?,
                wire::map(&input, "Logins")?,
                wire::map(&input, "PrincipalTags")?,
                wire::integer(&input, "TokenDuration")?,
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
            token_reply(emulator, &resolved, seconds)
        }
        "GetCredentialsForIdentity" => {
            let req = GetCredentialsForIdentityInput::parse(
                wire::string(&input, "IdentityId")?,
                wire::map(&input, "Logins")?,
                wire::string(&input, "CustomRoleArn")?,
            )
            .map_err(|v| wire::violations(&v))?;
            let identity_id = req.identity_id.as_str();
            match req.logins.map().get(COGNITO_PROVIDER) {
                Some(token) => {
                    let pool_id = store.identity_pool(identity_id)?.id.clone();
                    let claims = emulator
                        .signer
                        .verify(token.expose(), unix_now())
                        .map_err(|why| not_authorized(format!("Invalid login token. {why}.")))?;
                    if claims.sub != identity_id || claims.aud != pool_id {
                        return Err(not_authorized(
                            "Invalid login token. The token is not for this identity.",
                        ));
                    }
                }
                None => {
                    store.authorize(identity_id, &req.logins)?;
                }
            }
            Ok(json!({ "IdentityId": identity_id, "Credentials": credentials() }))
        }
        "CreateIdentityPool" => {
            let pool = store.create_pool(pool_from(&input)?);
            Ok(pool_json(&pool))
        }
        "DescribeIdentityPool" => {
            let id = wire::string(&input, "IdentityPoolId")?
                .ok_or_else(|| invalid("IdentityPoolId is required"))?;
            Ok(pool_json(store.pool(&id)?))
        }
        "ListIdentityPools" => {
            let max = wire::integer(&input, "MaxResults")?
                .ok_or_else(|| invalid("MaxResults is required"))?;
            if !(1..=60).contains(&max) {
                return Err(invalid("MaxResults must be 1 to 60"));
            }
            let next = wire::string(&input, "NextToken")?;
            let (pools, next) = store.list_pools(next.as_deref(), max as usize);
            let pools: Vec<Value> = pools
                .iter()
                .map(|p| json!({ "IdentityPoolId": p.id, "IdentityPoolName": p.name }))
                .collect();
            let mut reply = json!({ "IdentityPools": pools });
            if let Some(next) = next {
                reply["NextToken"] = json!(next);
            }
            Ok(reply)
        }
        "DeleteIdentityPool" => {
            let id = wire::string(&input, "IdentityPoolId")?
                .ok_or_else(|| invalid("IdentityPoolId is required"))?;
            store.delete_pool(&id)?;
            Ok(json!({}))
        }
        "" => Err(AwsError::new(
            "UnknownOperationException",
            "X-Amz-Target is missing.",
        )),
        other => Err(AwsError::new(
            "UnknownOperationException",
            format!("The emulator does not implement {other}."),
        )),
    }
}

fn token_reply(emulator: &Emulator, resolved: &Resolved, seconds: u64) -> Result<Value, AwsError> {
    let iat = unix_now();
    let amr = if resolved.providers.is_empty() {
        vec!["unauthenticated".to_owned()]
    } else {
        std::iter::once("authenticated".to_owned())
            .chain(resolved.providers.iter().cloned())
            .collect()
    };
    let token = emulator
        .signer
        .mint(&Claims {
            iss: ISSUER.to_owned(),
            sub: resolved.identity_id.clone(),
            aud: resolved.pool_id.clone(),
            amr,
            iat,
            exp: iat + seconds,
        })
        .map_err(|e| AwsError::new("InternalErrorException", e))?;
    Ok(json!({ "IdentityId": resolved.identity_id, "Token": token }))
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

fn pool_from(input: &Value) -> Result<Pool, AwsError> {
    let name = wire::string(input, "IdentityPoolName")?
        .ok_or_else(|| invalid("IdentityPoolName is required"))?;
    let name_ok = (1..=128).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c.is_whitespace() || "+=,.@-".contains(c));
    if !name_ok {
        return Err(invalid(
            "IdentityPoolName must be 1 to 128 of letters, digits, spaces and +=,.@-_",
        ));
    }
    let allow_unauthenticated = wire::boolean(input, "AllowUnauthenticatedIdentities")?
        .ok_or_else(|| invalid("AllowUnauthenticatedIdentities is required"))?;
    let developer_provider = wire::string(input, "DeveloperProviderName")?;
    if let Some(p) = &developer_provider {
        let ok = (1..=128).contains(&p.chars().count())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok {
            return Err(invalid(
                "DeveloperProviderName must be 1 to 128 of letters, digits and ._-",
            ));
        }
    }
    let supported_login_providers: BTreeMap<String, String> =
        wire::map(input, "SupportedLoginProviders")?
            .into_iter()
            .collect();
    if supported_login_providers.len() > 10 {
        return Err(invalid(
            "SupportedLoginProviders must have at most 10 entries",
        ));
    }
    Ok(Pool {
        id: String::new(),
        name,
        allow_unauthenticated,
        developer_provider,
        supported_login_providers,
        tags: wire::map(input, "IdentityPoolTags")?.into_iter().collect(),
    })
}

fn pool_json(pool: &Pool) -> Value {
    let mut value = json!({
        "IdentityPoolId": pool.id,
        "IdentityPoolName": pool.name,
        "AllowUnauthenticatedIdentities": pool.allow_unauthenticated,
        "SupportedLoginProviders": pool.supported_login_providers,
        "IdentityPoolTags": pool.tags,
    });
    if let Some(p) = &pool.developer_provider {
        value["DeveloperProviderName"] = json!(p);
    }
    value
}
