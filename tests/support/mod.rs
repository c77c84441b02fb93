//! Shared helpers of the integration tests: starting the gateway in-process
//! on 127.0.0.1:0, reaching the upstreams the test command started, and
//! stand-in upstreams for faults that no real server can show on demand.

#![allow(dead_code)]

pub mod binary;
pub mod certs;
pub mod faults;
pub mod loopback;
pub mod otlp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cognito_identity_gateway::cache::{CacheSettings, Clock};
use cognito_identity_gateway::domain::{IdentityService, Upstream};
use cognito_identity_gateway::emulator::{Emulator, FaultSettings, OperationFaults};
use cognito_identity_gateway::proto as pb;
use cognito_identity_gateway::proto::cognito_identity_service_client::CognitoIdentityServiceClient;
use cognito_identity_gateway::server::ServerSettings;
use cognito_identity_gateway::service::Gateway;
use cognito_identity_gateway::telemetry::metrics::Metrics;
use cognito_identity_gateway::upstream::{CognitoUpstream, UpstreamSettings};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Region every test uses.
pub const REGION: &str = "us-east-1";

/// The moto server the test command started. Panics, saying how to run the
/// tests, when it is not there: a missing moto is a failure, not a skip.
pub fn moto_endpoint() -> String {
    std::env::var("MOTO_ENDPOINT").unwrap_or_else(|_| {
        panic!("MOTO_ENDPOINT is not set: run the tests with scripts/test, which starts moto")
    })
}

/// Developer credentials come from aws-config's default chain, as in
/// production; the test command exports them. Checked here so that a bare
/// `cargo test` fails with a clear message rather than an SDK error.
pub fn require_aws_env() {
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(
            std::env::var_os(var).is_some(),
            "{var} is not set: run the tests with scripts/test"
        );
    }
}

/// Upstream settings for `endpoint`, with short timeouts so fault tests end soon.
pub fn upstream_settings(endpoint: &str) -> UpstreamSettings {
    UpstreamSettings {
        endpoint_url: Some(endpoint.to_owned()),
        region: Some(REGION.to_owned()),
        operation_timeout: Duration::from_secs(5),
        attempt_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        max_attempts: 2,
        static_credentials: None,
    }
}

/// The SDK upstream, loaded as `main` loads it.
pub async fn sdk_upstream(endpoint: &str) -> CognitoUpstream {
    sdk_upstream_with(&upstream_settings(endpoint)).await
}

/// The SDK upstream with the given settings.
pub async fn sdk_upstream_with(settings: &UpstreamSettings) -> CognitoUpstream {
    require_aws_env();
    CognitoUpstream::load(settings)
        .await
        .expect("upstream loads")
}

/// A gateway running in-process.
pub struct TestGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The admin listener's port, when it has one.
    pub admin: Option<u16>,
    /// Its metrics, its own: what `/metrics` would show.
    pub metrics: Arc<Metrics>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestGateway {
    /// Starts the gateway over `upstream` with `settings` and a default cache.
    pub async fn start_with<U: Upstream>(upstream: U, settings: ServerSettings) -> Self {
        let gateway = Gateway::new(upstream, CacheSettings::default(), Clock::default());
        Self::serve_gateway(Arc::new(gateway), settings).await
    }

    /// Serves `gateway`, its metrics (its guard's, policy's, audit log's)
    /// registered beside the server's.
    pub async fn serve_gateway<U: Upstream>(
        gateway: Arc<Gateway<U>>,
        settings: ServerSettings,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        metrics.register(|registry| gateway.register(registry));
        Self::serve_on(gateway, settings, false, metrics).await
    }

    /// Serves `service` (a gateway the test keeps a handle on, or a
    /// stand-in), with only the server's metrics.
    pub async fn serve<S: IdentityService>(service: Arc<S>, settings: ServerSettings) -> Self {
        Self::serve_on(service, settings, false, Arc::default()).await
    }

    /// Serves `service` with the admin listener too.
    pub async fn serve_with_admin<S: IdentityService>(
        service: Arc<S>,
        settings: ServerSettings,
    ) -> Self {
        Self::serve_on(service, settings, true, Arc::default()).await
    }

    async fn serve_on<S: IdentityService>(
        service: Arc<S>,
        settings: ServerSettings,
        with_admin: bool,
        metrics: Arc<Metrics>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin_listener = match with_admin {
            true => Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
            false => None,
        };
        let admin = admin_listener
            .as_ref()
            .map(|l| l.local_addr().unwrap().port());
        let (tx, rx) = oneshot::channel::<()>();
        let served_metrics = metrics.clone();
        let handle = tokio::spawn(async move {
            let listeners = cognito_identity_gateway::server::Listeners {
                grpc: listener,
                admin: admin_listener,
            };
            cognito_identity_gateway::server::run(
                &settings,
                listeners,
                service,
                served_metrics,
                async {
                    let _ = rx.await;
                },
            )
            .await
            .expect("gateway runs");
        });
        Self {
            addr,
            admin,
            metrics,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Starts the gateway over `upstream` with default server settings.
    pub async fn start<U: Upstream>(upstream: U) -> Self {
        Self::start_with(upstream, ServerSettings::default()).await
    }

    /// A connected channel.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("gateway accepts connections")
    }

    /// A client of the gateway API.
    pub async fn client(&self) -> CognitoIdentityServiceClient<Channel> {
        CognitoIdentityServiceClient::new(self.channel().await)
    }

    /// Asks the gateway to stop, without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Asks the gateway to stop and waits until `run` has returned.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("gateway task ends cleanly");
        }
    }
}

/// An emulator with the ready pool on 127.0.0.1:0; returns its URL and a
/// handle to change its faults and count its calls.
pub async fn start_emulator() -> (String, Arc<Emulator>) {
    cognito_identity_gateway::emulator::start_embedded()
        .await
        .expect("emulator starts")
}

/// The SDK upstream of an emulator, with the emulator's access key.
pub async fn emulator_upstream(url: &str) -> CognitoUpstream {
    let secret = cognito_identity_gateway::emulator::DEFAULT_ACCESS_KEY.1;
    emulator_upstream_signing_with(url, secret).await
}

/// The SDK upstream of an emulator, signing with the emulator's access key
/// id and `secret`, which may be wrong.
pub async fn emulator_upstream_signing_with(url: &str, secret: &str) -> CognitoUpstream {
    let id = cognito_identity_gateway::emulator::DEFAULT_ACCESS_KEY.0;
    let settings = UpstreamSettings {
        static_credentials: Some((id.to_owned(), secret.to_owned())),
        ..upstream_settings(url)
    };
    CognitoUpstream::load(&settings)
        .await
        .expect("upstream loads")
}

/// Sets one operation's faults on an emulator.
pub fn set_faults(emulator: &Emulator, operation: &str, faults: OperationFaults) {
    let mut settings = FaultSettings::default();
    settings.operations.insert(operation.to_owned(), faults);
    emulator.faults().set(settings).expect("valid faults");
}

/// A developer-identity request for `user` of the emulator's ready pool,
/// for a token of `duration` seconds.
pub fn developer(user: &str, duration: i64) -> pb::GetOpenIdTokenForDeveloperIdentityRequest {
    pb::GetOpenIdTokenForDeveloperIdentityRequest {
        identity_pool_id: cognito_identity_gateway::emulator::DEFAULT_POOL_ID.into(),
        logins: std::collections::HashMap::from([(
            cognito_identity_gateway::emulator::DEFAULT_DEVELOPER_PROVIDER.into(),
            user.into(),
        )]),
        token_duration_seconds: Some(duration),
        ..Default::default()
    }
}

/// A GetId request for `pool`, unauthenticated.
pub fn get_id(pool: &str) -> pb::GetIdRequest {
    pb::GetIdRequest {
        identity_pool_id: pool.to_owned(),
        ..Default::default()
    }
}

/// A loopback address where nothing listens: connections are refused.
pub async fn refused_endpoint() -> String {
    format!("http://127.0.0.1:{}", loopback::free_port())
}

/// The SDK client itself, to set up pools the way a user would.
pub async fn admin_client(endpoint: &str) -> aws_sdk_cognitoidentity::Client {
    require_aws_env();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .load()
        .await;
    aws_sdk_cognitoidentity::Client::new(&config)
}

/// Creates an identity pool with a developer provider and unauthenticated
/// identities allowed; returns its id.
pub async fn create_pool(endpoint: &str, developer_provider: &str) -> String {
    admin_client(endpoint)
        .await
        .create_identity_pool()
        .identity_pool_name(format!("test-{}", std::process::id()))
        .allow_unauthenticated_identities(true)
        .developer_provider_name(developer_provider)
        .send()
        .await
        .expect("pool created")
        .identity_pool_id
}

/// A fresh, empty directory for one test, named after it.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gateway-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `files` (name, contents) to `dir` as Kubernetes updates a mounted
/// Secret or ConfigMap: into a fresh timestamped directory, then `..data`
/// swapped to it by a rename, each name a link through `..data`.
pub fn kubernetes_update(dir: &std::path::Path, files: &[(&str, &str)]) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static VERSION: AtomicUsize = AtomicUsize::new(0);
    let version = format!("..{}", VERSION.fetch_add(1, Ordering::Relaxed));
    std::fs::create_dir_all(dir.join(&version)).unwrap();
    for (name, contents) in files {
        std::fs::write(dir.join(&version).join(name), contents).unwrap();
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(std::path::Path::new("..data").join(name), &link).unwrap();
        }
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}
