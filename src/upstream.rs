//! The upstream: Cognito Identity through the official AWS SDK. Builds the
//! client from `aws-config`'s default chain (environment, profile, IRSA web
//! identity, EKS Pod Identity), sends validated domain inputs, and sorts the
//! SDK's errors into domain cases. No proto type appears here.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cognitoidentity::Client;
use aws_sdk_cognitoidentity::config::http::HttpResponse;
use aws_sdk_cognitoidentity::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cognitoidentity::operation::RequestId;

use crate::domain::{
    Credentials, Error, GetCredentialsForIdentityInput, GetCredentialsForIdentityOutput,
    GetIdInput, GetIdOutput, GetOpenIdTokenForDeveloperIdentityInput, GetOpenIdTokenInput,
    OpenIdToken, OperationName, Secret, SecretMap, Upstream, UpstreamCall, Upstreamed,
};
use crate::jwt;

/// How to reach Cognito.
#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    /// Endpoint to use instead of the region's (an emulator, a VPC endpoint).
    /// `None` leaves it to the SDK, which also reads
    /// `AWS_ENDPOINT_URL_COGNITO_IDENTITY` and `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// Region; `None` leaves it to the default chain (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Bound on one operation, all attempts and back-off included.
    pub operation_timeout: Duration,
    /// Bound on one attempt.
    pub attempt_timeout: Duration,
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// Attempts per operation, the first included (standard retry mode).
    pub max_attempts: u32,
    /// Fixed credentials instead of the default chain: only for the
    /// embedded emulator, which knows no real AWS account.
    pub static_credentials: Option<(String, String)>,
}

/// Cognito Identity through `aws-sdk-cognitoidentity`.
#[derive(Clone, Debug)]
pub struct CognitoUpstream {
    client: Client,
    region: Arc<str>,
    /// host:port that `/readyz` checks a connection to.
    authority: String,
}

/// Bound on `/readyz`'s connection check: a probe must answer quickly.
const REACHABILITY_TIMEOUT: Duration = Duration::from_secs(1);

/// The AWS configuration the gateway's SDK client uses: the default chain
/// (environment, profile, IRSA web identity, EKS Pod Identity), with the
/// settings' overrides. Public so that the benchmark can call the SDK
/// directly exactly as the gateway does.
///
/// Stalled-stream protection is off: it exists for long bodies with no
/// bound on the whole transfer, and every call here is a small JSON document
/// inside an attempt timeout and an operation timeout, which already end a
/// stalled exchange. Left on, it would wrap each body and arm one more timer
/// per call, and each timer a call arms wakes tokio's I/O driver with a
/// system call.
pub async fn sdk_config(settings: &UpstreamSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.connect_timeout)
                .operation_timeout(settings.operation_timeout)
                .operation_attempt_timeout(settings.attempt_timeout)
                .build(),
        )
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some((id, secret)) = &settings.static_credentials {
        loader = loader.credentials_provider(aws_sdk_cognitoidentity::config::Credentials::new(
            id.clone(),
            secret.clone(),
            None,
            None,
            "embedded-emulator",
        ));
    }
    loader.load().await
}

impl CognitoUpstream {
    /// Loads the AWS configuration ([`sdk_config`]). Fails when no region
    /// can be found.
    pub async fn load(settings: &UpstreamSettings) -> Result<Self, String> {
        let config = sdk_config(settings).await;
        if config.region().is_none() {
            return Err(
                "no AWS region found: set --region, AWS_REGION, or a profile region".to_owned(),
            );
        }
        Ok(Self::new(&config, settings.endpoint_url.as_deref()))
    }

    /// A client over an already loaded configuration; `endpoint_url` as
    /// given to the loader, if any.
    pub fn new(config: &SdkConfig, endpoint_url: Option<&str>) -> Self {
        let region: Arc<str> = config.region().map_or("", |r| r.as_ref()).into();
        // Where the SDK will connect: the given endpoint, the SDK's own
        // environment overrides, or the region's public endpoint.
        let endpoint = endpoint_url
            .map(str::to_owned)
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_COGNITO_IDENTITY").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .unwrap_or_else(|| format!("https://cognito-identity.{region}.amazonaws.com"));
        let authority = endpoint
            .parse::<http::Uri>()
            .ok()
            .and_then(|uri| {
                let port = uri
                    .port_u16()
                    .unwrap_or(if uri.scheme_str() == Some("http") {
                        80
                    } else {
                        443
                    });
                uri.host().map(|host| format!("{host}:{port}"))
            })
            .unwrap_or(endpoint);
        Self {
            client: Client::new(config),
            region,
            authority,
        }
    }

    /// Runs one SDK call, records it (what its span and metrics need),
    /// sorts its error, and reads its output with `read`.
    async fn observe<T, E, R>(
        &self,
        operation: OperationName,
        call: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        read: impl FnOnce(T) -> Result<R, Error>,
    ) -> Upstreamed<R>
    where
        T: RequestId,
        E: ProvideErrorMetadata + RequestId + std::error::Error + Send + Sync + 'static,
    {
        let started = SystemTime::now();
        let clock = Instant::now();
        let result = call.await;
        let elapsed = clock.elapsed();
        let mut record = Box::new(UpstreamCall {
            operation,
            region: self.region.clone(),
            started,
            elapsed,
            http_status: None,
            request_id: None,
            error_type: None,
        });
        let result = match result {
            Ok(out) => {
                record.http_status = Some(200);
                record.request_id = out.request_id().map(Into::into);
                read(out)
            }
            Err(err) => {
                record.http_status = err.raw_response().map(|r| r.status().as_u16());
                let err = sort_error(err);
                if let Error::Cognito { request_id, .. } = &err {
                    record.request_id = request_id.as_deref().map(Into::into);
                }
                record.error_type = Some(err.reason().into());
                tracing::warn!(
                    operation = operation.as_str(),
                    code = err.reason(),
                    aws_request_id = record.request_id.as_deref(),
                    "Cognito Identity call failed"
                );
                Err(err)
            }
        };
        Upstreamed {
            result,
            call: Some(record),
            valid_until: None,
        }
    }
}

/// The map as the SDK wants it: `None` rather than an empty map, so that
/// requests look as the AWS CLI sends them.
fn sdk_map(map: &SecretMap) -> Option<std::collections::HashMap<String, String>> {
    (!map.is_empty()).then(|| map.exposed().collect())
}

fn token(identity_id: Option<String>, token: Option<String>) -> Result<OpenIdToken, Error> {
    let (identity_id, token) = match (identity_id, token) {
        (Some(identity_id), Some(token)) => (identity_id, token),
        _ => return Err(missing("IdentityId and Token")),
    };
    let expires_at = jwt::expiry(&token);
    Ok(OpenIdToken {
        identity_id,
        token: Secret::new(token),
        expires_at,
    })
}

fn missing(what: &str) -> Error {
    Error::BadResponse {
        status: 200,
        detail: format!("the response has no {what}"),
    }
}

fn system_time(time: &aws_sdk_cognitoidentity::primitives::DateTime) -> Option<SystemTime> {
    SystemTime::try_from(*time).ok()
}

/// An error and its sources, each by its `Display`. Never `Debug` (nor the
/// SDK's `DisplayErrorContext`, which appends it): the `Debug` of a response
/// error holds the raw response, body included, and a body may hold a token.
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Sorts an SDK error into a domain case: transport failures by the
/// `SdkError` variant first (`into_service_error` would fold them into
/// `Unhandled`), then Cognito's own errors by their code.
fn sort_error<E>(err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + RequestId + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(context) => {
            let err = context.err();
            Error::Cognito {
                code: err.code().unwrap_or("Unknown").to_owned(),
                message: err.message().unwrap_or_default().to_owned(),
                request_id: err.request_id().map(str::to_owned),
            }
        }
        SdkError::TimeoutError(_) => Error::UpstreamTimeout,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => Error::UpstreamTimeout,
        SdkError::DispatchFailure(failure) => {
            Error::Unreachable(match failure.as_connector_error() {
                Some(connector) => causes(connector),
                None => "dispatch failure".to_owned(),
            })
        }
        SdkError::ResponseError(response) => Error::BadResponse {
            status: response.raw().status().as_u16(),
            detail: std::error::Error::source(&SdkError::<E, HttpResponse>::ResponseError(
                response,
            ))
            .map_or_else(|| "unreadable response".to_owned(), causes),
        },
        other => Error::Internal(causes(&other)),
    }
}

impl Upstream for CognitoUpstream {
    async fn reachable(&self) -> bool {
        matches!(
            tokio::time::timeout(
                REACHABILITY_TIMEOUT,
                tokio::net::TcpStream::connect(&self.authority)
            )
            .await,
            Ok(Ok(_))
        )
    }

    async fn get_id(&self, input: &GetIdInput) -> Upstreamed<GetIdOutput> {
        let call = self
            .client
            .get_id()
            .identity_pool_id(input.identity_pool_id.as_str())
            .set_account_id(input.account_id.as_ref().map(|a| a.as_str().to_owned()))
            .set_logins(sdk_map(input.logins.map()))
            .send();
        self.observe(OperationName::GetId, call, |out| {
            let identity_id = out.identity_id.ok_or_else(|| missing("IdentityId"))?;
            Ok(GetIdOutput { identity_id })
        })
        .await
    }

    async fn get_open_id_token(&self, input: &GetOpenIdTokenInput) -> Upstreamed<OpenIdToken> {
        let call = self
            .client
            .get_open_id_token()
            .identity_id(input.identity_id.as_str())
            .set_logins(sdk_map(input.logins.map()))
            .send();
        self.observe(OperationName::GetOpenIdToken, call, |out| {
            token(out.identity_id, out.token)
        })
        .await
    }

    async fn get_open_id_token_for_developer_identity(
        &self,
        input: &GetOpenIdTokenForDeveloperIdentityInput,
    ) -> Upstreamed<OpenIdToken> {
        let call = self
            .client
            .get_open_id_token_for_developer_identity()
            .identity_pool_id(input.identity_pool_id.as_str())
            .set_identity_id(input.identity_id.as_ref().map(|i| i.as_str().to_owned()))
            .set_logins(sdk_map(input.logins.map()))
            .set_principal_tags(sdk_map(input.principal_tags.map()))
            .set_token_duration(input.token_duration.map(|d| i64::from(d.seconds())))
            .send();
        self.observe(
            OperationName::GetOpenIdTokenForDeveloperIdentity,
            call,
            |out| token(out.identity_id, out.token),
        )
        .await
    }

    async fn get_credentials_for_identity(
        &self,
        input: &GetCredentialsForIdentityInput,
    ) -> Upstreamed<GetCredentialsForIdentityOutput> {
        let call = self
            .client
            .get_credentials_for_identity()
            .identity_id(input.identity_id.as_str())
            .set_logins(sdk_map(input.logins.map()))
            .set_custom_role_arn(
                input
                    .custom_role_arn
                    .as_ref()
                    .map(|r| r.as_str().to_owned()),
            )
            .send();
        self.observe(OperationName::GetCredentialsForIdentity, call, |out| {
            let identity_id = out.identity_id.ok_or_else(|| missing("IdentityId"))?;
            let credentials = out.credentials.ok_or_else(|| missing("Credentials"))?;
            let (Some(access_key_id), Some(secret_key), Some(session_token)) = (
                credentials.access_key_id,
                credentials.secret_key,
                credentials.session_token,
            ) else {
                return Err(missing("complete Credentials"));
            };
            Ok(GetCredentialsForIdentityOutput {
                identity_id,
                credentials: Credentials {
                    access_key_id: Secret::new(access_key_id),
                    secret_key: Secret::new(secret_key),
                    session_token: Secret::new(session_token),
                    expiration: credentials.expiration.as_ref().and_then(system_time),
                },
            })
        })
        .await
    }
}
