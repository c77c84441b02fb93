//! The server: the listeners, their connections ([`conn`]: plaintext or
//! [`tls`], each reply in one write, [`one_write`]), the admin routes
//! ([`admin`]), and [`run`], which serves the API through the middleware
//! until shutdown, then drains.

pub mod accept;
pub mod admin;
pub mod conn;
mod metrics;
pub mod one_write;
mod serve;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic_health::ServingStatus;

use crate::domain::IdentityService;
use crate::grpc::{CognitoIdentityServiceServer, GrpcApi, IdentityHeader};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::rpc_metrics::RpcMetrics;
use crate::{middleware, proto};

pub use metrics::ServerMetrics;

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

/// A task that ends when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

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

/// Serves the gateway API over `service` (a [`crate::service::Gateway`] in
/// production), with gRPC health checking and reflection, and the admin
/// routes, until `shutdown` resolves. Then it reports NOT_SERVING (and
/// `/readyz` 503), stops accepting, and lets in-flight calls finish within
/// the grace period. The server's metrics join the service's in `metrics`,
/// which `/metrics` exposes.
pub async fn run<S: IdentityService>(
    settings: &ServerSettings,
    listeners: Listeners,
    service: Arc<S>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    type Api<S> = CognitoIdentityServiceServer<GrpcApi<S>>;

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
    let rpc_metrics = RpcMetrics::default();
    let api =
        GrpcApi::new(service.clone()).trusting_header(settings.caller_identity_header.clone());
    metrics.register(|registry| {
        rpc_metrics.register(registry);
        server_metrics.register(registry);
        api.register(registry);
        if let Some(tls) = &tls {
            tls.register(registry);
        }
    });

    let draining = Arc::new(AtomicBool::new(false));
    let (admin_stop, admin_stopped) = oneshot::channel::<()>();
    let probe: Arc<dyn admin::Probe> = Arc::new(service.clone());
    // `gateway_upstream_up` kept current whether or not anyone asks.
    let upstream_checks = {
        let probe = probe.clone();
        let server_metrics = server_metrics.clone();
        AbortOnDrop(tokio::spawn(async move {
            let mut every = tokio::time::interval(UPSTREAM_CHECK);
            loop {
                every.tick().await;
                admin::check_upstream(&*probe, &server_metrics).await;
            }
        }))
    };
    if let Some(admin) = listeners.admin {
        let state = admin::AdminState {
            draining: draining.clone(),
            probe,
            metrics,
            server_metrics: server_metrics.clone(),
            header_timeout: settings.admin_header_timeout,
        };
        tokio::spawn(admin::serve(admin, state, async {
            let _ = admin_stopped.await;
        }));
    }

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

    let (draining_tx, draining_rx) = oneshot::channel::<()>();
    // The one drain signal connections follow: turned true when shutdown
    // starts. Connections that have not spoken yet are closed then; the
    // others are told to finish (GOAWAY).
    let (drain_connections, connections_drain) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: NOT_SERVING, draining in-flight calls");
        draining.store(true, Ordering::Release);
        health.set_not_serving::<Api<S>>().await;
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        let _ = draining_tx.send(());
    };

    let incoming = conn::incoming(
        listeners.grpc,
        tls,
        conn::Timeouts {
            handshake: settings.handshake_timeout,
            idle: settings.idle_timeout,
            max_age: settings.max_connection_age,
        },
        connections_drain,
        server_metrics.clone(),
    );
    let routes = tonic::service::Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let service = middleware::stack(
        settings.request_timeout,
        settings.concurrency_limit,
        settings.request_body_timeout,
        MAX_REQUEST_BYTES,
        settings.max_buffered_request_bytes,
        rpc_metrics,
        api,
    )
    .service(routes);
    let http2 = serve::Http2 {
        max_concurrent_streams: settings.max_concurrent_streams,
        keepalive_interval: settings.keepalive_interval,
        keepalive_timeout: settings.keepalive_timeout,
        // A connection told to close keeps its calls in flight for as long
        // as a call may take.
        close_grace: settings.request_timeout + Duration::from_secs(1),
    };
    let server = serve::serve(
        incoming,
        service,
        http2,
        drain_connections,
        signal,
        server_metrics,
    );

    let grace = settings.shutdown_grace;
    let grace_over = async move {
        // Only a fired shutdown starts the clock; a dropped sender means the
        // server already ended on its own.
        if draining_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = server => {}
        () = grace_over => tracing::warn!(?grace, "grace period over: abandoning calls still in flight"),
    }
    let _ = admin_stop.send(());
    drop(upstream_checks);
    tracing::info!("stopped");
    Ok(())
}
