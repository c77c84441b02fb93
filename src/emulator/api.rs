//! The emulator's routes, and the dispatch of API calls (faults first,
//! then the signature check of the developer operation, then the operation).

use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde_json::{Value, json};

use super::wire::AwsError;
use super::{Emulator, FaultSettings, json_response, operations, pools, sigv4};

/// The `X-Amz-Target` prefix of Cognito Identity (the model's `targetPrefix`).
const TARGET_PREFIX: &str = "AWSCognitoIdentityService.";

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
        ("GET", "/_emulator/throttled") => {
            let throttled = emulator
                .throttled
                .lock()
                .map(|c| c.clone())
                .unwrap_or_default();
            json_response(200, &json!(throttled))
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
            if let Ok(mut throttled) = emulator.throttled.lock() {
                *throttled.entry(operation.clone()).or_default() += 1;
            }
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
    let signer = &emulator.signer;
    match operation {
        "GetId" => operations::get_id(&mut store, &input),
        "GetOpenIdToken" => operations::get_open_id_token(signer, &mut store, &input),
        "GetOpenIdTokenForDeveloperIdentity" => {
            operations::get_open_id_token_for_developer_identity(signer, &mut store, &input)
        }
        "GetCredentialsForIdentity" => {
            operations::get_credentials_for_identity(signer, &mut store, &input)
        }
        "CreateIdentityPool" => pools::create(&mut store, &input),
        "DescribeIdentityPool" => pools::describe(&store, &input),
        "ListIdentityPools" => pools::list(&store, &input),
        "DeleteIdentityPool" => pools::delete(&mut store, &input),
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
