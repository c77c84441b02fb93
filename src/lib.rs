//! cognito-identity-gateway: a gRPC gateway in front of Amazon Cognito
//! Identity (identity pools), so that internal services get identity ids,
//! OpenID tokens and AWS credentials without holding developer credentials.
//!
//! A request travels down through these modules and back:
//!
//! - [`middleware`]: the tower stack: the call's span and metrics
//!   ([`telemetry::rpc`]), deadline ([`deadline`]), admission (a concurrency
//!   limit that refuses rather than queues), and dispatch (API calls straight
//!   to the API, health and reflection through tonic's router).
//! - [`grpc`]: translates proto messages into validated domain inputs and
//!   domain outputs into replies; [`grpc::status`] maps every error to a gRPC
//!   status, in one place.
//! - [`domain`]: validated newtypes (one implementation of the service model's
//!   constraints), inputs, outputs, the caller, and the two seams
//!   [`domain::IdentityService`] and [`domain::Upstream`].
//! - [`service`]: the identity service: calls answered through [`cache`] (the
//!   token cache over moka) or the upstream.
//! - [`upstream`]: Cognito through `aws-sdk-cognitoidentity`, its errors sorted
//!   into [`error::Error`].
//!
//! Around them: [`config`] (flags and environment), [`coalesce`] (the API
//! connections' writes, a reply in one), [`telemetry`] (logs,
//! traces, metrics, the admin listener), [`shutdown`] (signals), [`jwt`]
//! (reading a token's expiry), [`rate`] (a token bucket), [`proto`] (the
//! generated code), and `emulator` (an embedded Cognito Identity emulator,
//! behind the default feature `emulator`). [`run`] serves the API; `main`
//! and the integration tests both call it.

#![forbid(unsafe_code)]

pub mod cache;
pub mod coalesce;
pub mod config;
pub mod deadline;
pub mod domain;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod error;
pub mod grpc;
pub mod jwt;
pub mod middleware;
pub mod proto;
pub mod rate;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::TryStreamExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::config::ServerSettings;
use crate::domain::IdentityService;
use crate::grpc::{CognitoIdentityServiceServer, GrpcApi};

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

/// Serves the gateway API over `service` (a [`service::Gateway`] in
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
    if let Some(admin) = listeners.admin {
        let state = telemetry::admin::AdminState {
            draining: draining.clone(),
            probe: Arc::new(service.clone()),
        };
        tokio::spawn(telemetry::admin::serve(admin, state, async {
            let _ = admin_stopped.await;
        }));
    }

    let api = GrpcApi::new(service).into_server();
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

    // Each reply in one write rather than two ([`coalesce`]).
    let incoming = TcpIncoming::from(listeners.grpc)
        .with_nodelay(Some(true))
        .map_ok(coalesce::Coalesced::new);
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
    tracing::info!("stopped");
    Ok(())
}
