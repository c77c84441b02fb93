//! The server: the listeners, their connections ([`conn`]: plaintext or
//! [`tls`], each reply in one write, [`one_write`]), the admin routes
//! ([`admin`]), and [`run`], which serves the API through the middleware
//! until shutdown, then drains.

pub mod accept;
pub mod admin;
pub mod conn;
pub mod one_write;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::domain::IdentityService;
use crate::grpc::{CognitoIdentityServiceServer, GrpcApi};
use crate::{middleware, proto};

use tls::LiveTls;

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
    /// in (`--caller-identity-header`); plaintext only. `None`: callers are
    /// anonymous unless a client certificate names them.
    pub caller_identity_header: Option<http::HeaderName>,
    /// TLS on the API listener (`--tls-cert`, `--tls-key`,
    /// `--tls-client-ca`); `None`: plaintext.
    pub tls: Option<Arc<LiveTls>>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            concurrency_limit: 1024,
            shutdown_grace: Duration::from_secs(20),
            caller_identity_header: None,
            tls: None,
        }
    }
}

/// Why the server stopped other than by being asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The reflection service could not read the descriptor set.
    #[error("gRPC reflection could not be built: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The server failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
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
/// the grace period.
pub async fn run<S: IdentityService>(
    settings: &ServerSettings,
    listeners: Listeners,
    service: Arc<S>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    type Api<S> = CognitoIdentityServiceServer<GrpcApi<S>>;

    let draining = Arc::new(AtomicBool::new(false));
    let (admin_stop, admin_stopped) = oneshot::channel::<()>();
    let probe: Arc<dyn admin::Probe> = Arc::new(service.clone());
    // `gateway_upstream_up` kept current whether or not anyone asks.
    let upstream_checks = {
        let probe = probe.clone();
        AbortOnDrop(tokio::spawn(async move {
            let mut every = tokio::time::interval(UPSTREAM_CHECK);
            loop {
                every.tick().await;
                admin::check_upstream(&*probe).await;
            }
        }))
    };
    if let Some(admin) = listeners.admin {
        let state = admin::AdminState {
            draining: draining.clone(),
            probe,
        };
        tokio::spawn(admin::serve(admin, state, async {
            let _ = admin_stopped.await;
        }));
    }

    let api = GrpcApi::new(service)
        .trusting_header(settings.caller_identity_header.clone())
        .into_server();
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<Api<S>>().await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let (draining_tx, draining_rx) = oneshot::channel::<()>();
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

    let incoming = conn::incoming(listeners.grpc, settings.tls.clone());
    let server = Server::builder()
        .layer(middleware::stack(
            settings.request_timeout,
            settings.concurrency_limit,
            api,
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, signal);

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
        served = server => served?,
        () = grace_over => tracing::warn!(?grace, "grace period over: abandoning calls still in flight"),
    }
    let _ = admin_stop.send(());
    drop(upstream_checks);
    tracing::info!("stopped");
    Ok(())
}
