//! The server: the listeners, their connections ([`conn`]: plaintext or
//! [`tls`], each reply in one write, [`one_write`]), the admin routes
//! ([`admin`]), and [`run`], which serves the API through the middleware
//! until shutdown, then drains ([`drain`], the one signal all of them
//! follow).

pub(crate) mod accept;
pub(crate) mod admin;
pub(crate) mod close;
pub(crate) mod conn;
pub mod drain;
mod metrics;
pub mod one_write;
mod serve;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::domain::IdentityService;
use crate::grpc::{CognitoIdentityServiceServer, GrpcApi, IdentityHeader};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::rpc_metrics::RpcMetrics;
use crate::{middleware, proto};

pub(crate) use metrics::ServerMetrics;

use drain::Drain;
use tls::{LiveTls, LoadedTls};

/// The largest request message the API decodes: twice the largest valid
/// request of the service model in ASCII (see
/// [`crate::domain::validate::LARGEST_REQUEST_BYTES`]), for multi-byte
/// characters. A longer one is refused on its length prefix, unread.
pub const MAX_REQUEST_BYTES: usize = 2 * crate::domain::validate::LARGEST_REQUEST_BYTES;

/// The largest message health checks and reflection decode: their requests
/// are a service or symbol name.
const MAX_SUPPORT_REQUEST_BYTES: usize = 64 * 1024;

/// How often `gateway_upstream_up` is brought up to date.
const UPSTREAM_CHECK: Duration = Duration::from_secs(10);

/// The gRPC server's own settings.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Bound on a whole call.
    pub request_timeout: Duration,
    /// Calls served at once.
    pub concurrency_limit: usize,
    /// How long in-flight calls may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// The header a service mesh in front of the gateway names the caller
    /// in (`--caller-identity-header`), and the peers it is believed from
    /// (`--caller-identity-header-trusted-peers`); plaintext only. `None`:
    /// callers are anonymous unless a client certificate names them.
    pub caller_identity_header: Option<IdentityHeader>,
    /// TLS on the API listener (`--tls-cert`, `--tls-key`,
    /// `--tls-client-ca`), its files read and checked: [`run`] puts them in
    /// force, and reloads them when they change. `None`: plaintext.
    pub tls: Option<LoadedTls>,
    /// Streams a connection may have open at once, advertised in SETTINGS.
    pub max_concurrent_streams: u32,
    /// How long a new connection may take to finish its TLS handshake, and
    /// then to send its HTTP/2 preface, before it is closed.
    pub handshake_timeout: Duration,
    /// How long a call's request message may take to arrive.
    pub request_body_timeout: Duration,
    /// Bytes that request messages still arriving may hold, all
    /// connections together.
    pub max_buffered_request_bytes: usize,
    /// How long a connection with no call in flight is kept open.
    pub idle_timeout: Duration,
    /// How long an admin request's head may take to arrive, the first or
    /// the next on a kept-alive connection.
    pub admin_header_timeout: Duration,
    /// How often an HTTP/2 PING checks a connection that has been quiet.
    pub keepalive_interval: Duration,
    /// How long a PING's answer may take before the connection is closed.
    pub keepalive_timeout: Duration,
    /// How long a connection is kept at most (less a jitter of up to a
    /// tenth), so that its caller's identity and the TLS files in force are
    /// checked again at least that often.
    pub max_connection_age: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            concurrency_limit: 1024,
            shutdown_grace: Duration::from_secs(20),
            caller_identity_header: None,
            tls: None,
            max_concurrent_streams: 128,
            handshake_timeout: Duration::from_secs(10),
            request_body_timeout: Duration::from_secs(5),
            max_buffered_request_bytes: 64 * 1024 * 1024,
            idle_timeout: Duration::from_secs(300),
            admin_header_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
            max_connection_age: Duration::from_secs(3600),
        }
    }
}

/// Why the server stopped other than by being asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The reflection service could not read the descriptor set.
    #[error("gRPC reflection could not be built: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Where the gateway listens.
#[derive(Debug)]
pub struct Listeners {
    /// The gRPC API, health and reflection.
    pub grpc: TcpListener,
    /// `/metrics`, `/healthz`, `/readyz`, if wanted.
    pub admin: Option<TcpListener>,
}

/// The API's gRPC service.
type Api<S> = CognitoIdentityServiceServer<GrpcApi<S>>;

/// What the API listener serves: the API, health checking and reflection
/// behind the middleware.
type Routed<S> = <middleware::GatewayStack<Api<S>> as tower::Layer<Routes>>::Service;

/// Serves the gateway API over `service` (a [`crate::service::Gateway`] in
/// production), with gRPC health checking and reflection, and the admin
/// routes, until `shutdown` resolves. Then it reports NOT_SERVING (and
/// `/readyz` 503), stops accepting, and lets in-flight calls finish within
/// the grace period ([`drain`]). The server's metrics join the service's in
/// `metrics`, which `/metrics` exposes.
pub async fn run<S: IdentityService>(
    settings: &ServerSettings,
    listeners: Listeners,
    service: Arc<S>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    // The one signal that every listener, connection and task follows.
    let drain = Drain::new();
    // The TLS files in force as they were checked, reloaded when they
    // change for as long as the server runs.
    let tls = settings
        .tls
        .clone()
        .map(|loaded| Arc::new(LiveTls::new(loaded)));
    let _tls_watch = tls
        .clone()
        .and_then(|tls| tls.watch(crate::reload::CHECK_EVERY));
    let server_metrics = ServerMetrics::default();
    metrics.register(|registry| {
        server_metrics.register(registry);
        if let Some(tls) = &tls {
            tls.register(registry);
        }
    });
    let (health, routed) = services(settings, service.clone(), &metrics).await?;

    let probe: Arc<dyn admin::Probe> = Arc::new(service);
    tokio::spawn(check_upstream(
        probe.clone(),
        server_metrics.clone(),
        drain.watch(),
    ));
    if let Some(admin) = listeners.admin {
        let state = admin::AdminState {
            drain: drain.watch(),
            probe,
            metrics,
            server_metrics: server_metrics.clone(),
            header_timeout: settings.admin_header_timeout,
        };
        tokio::spawn(admin::serve(admin, state));
    }

    let timeouts = conn::Timeouts {
        handshake: settings.handshake_timeout,
        idle: settings.idle_timeout,
        max_age: settings.max_connection_age,
    };
    let incoming = conn::incoming(
        listeners.grpc,
        tls,
        timeouts,
        drain.hold(),
        server_metrics.clone(),
    );
    let http2 = serve::Http2 {
        max_concurrent_streams: settings.max_concurrent_streams,
        keepalive_interval: settings.keepalive_interval,
        keepalive_timeout: settings.keepalive_timeout,
        // A connection told to close keeps its calls in flight for as long
        // as a call may take.
        close_grace: settings.request_timeout + Duration::from_secs(1),
    };
    let served = serve::serve(incoming, routed, http2, &drain, server_metrics);
    let grace = settings.shutdown_grace;
    tokio::select! {
        () = served => {}
        () = drain_on::<S>(shutdown, &health, &drain, grace) => {
            tracing::warn!(?grace, "grace period over: abandoning calls still in flight");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Once `shutdown` resolves: health checking says NOT_SERVING, then
/// `drain` starts, and its `grace` period with it; resolves when that is
/// over.
async fn drain_on<S: IdentityService>(
    shutdown: impl Future<Output = ()>,
    health: &HealthReporter,
    drain: &Drain,
    grace: Duration,
) {
    shutdown.await;
    tracing::info!("shutting down: NOT_SERVING, draining in-flight calls");
    health.set_not_serving::<Api<S>>().await;
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    drain.start();
    tokio::time::sleep(grace).await;
}

/// The API over `service`, gRPC health checking (SERVING until the
/// reporter returned says otherwise) and reflection, behind the middleware
/// ([`middleware::stack`]); their metrics join `metrics`.
async fn services<S: IdentityService>(
    settings: &ServerSettings,
    service: Arc<S>,
    metrics: &Metrics,
) -> Result<(HealthReporter, Routed<S>), RunError> {
    let rpc_metrics = RpcMetrics::default();
    let api = GrpcApi::new(service).trusting_header(settings.caller_identity_header.clone());
    metrics.register(|registry| {
        rpc_metrics.register(registry);
        api.register(registry);
    });
    let api = api
        .into_server()
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let (health, health_service) = tonic_health::server::health_reporter();
    let health_service = health_service.max_decoding_message_size(MAX_SUPPORT_REQUEST_BYTES);
    health.set_serving::<Api<S>>().await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?
        .max_decoding_message_size(MAX_SUPPORT_REQUEST_BYTES);
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?
        .max_decoding_message_size(MAX_SUPPORT_REQUEST_BYTES);
    let routes = Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let routed = middleware::stack(
        settings.request_timeout,
        settings.concurrency_limit,
        settings.request_body_timeout,
        MAX_REQUEST_BYTES,
        settings.max_buffered_request_bytes,
        rpc_metrics,
        api,
    )
    .service(routes);
    Ok((health, routed))
}

/// Keeps `gateway_upstream_up` current whether or not anyone asks, until
/// the server stops.
async fn check_upstream(probe: Arc<dyn admin::Probe>, metrics: ServerMetrics, drain: drain::Watch) {
    let checks = async {
        let mut every = tokio::time::interval(UPSTREAM_CHECK);
        loop {
            every.tick().await;
            admin::check_upstream(&*probe, &metrics).await;
        }
    };
    tokio::select! {
        () = checks => {}
        () = drain.stopped() => {}
    }
}
