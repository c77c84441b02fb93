//! cognito-identity-gateway: a gRPC gateway in front of Amazon Cognito
//! Identity (identity pools), so that internal services get identity ids,
//! OpenID tokens and AWS credentials without holding developer credentials.
//!
//! A request travels down through these modules and back; imports go the
//! same way, and none goes back up:
//!
//! - [`server`]: the listeners, their connections (plaintext or TLS with
//!   certificates that rotate live, [`server::tls`]; each reply in one
//!   write, [`server::one_write`]), the admin routes, and [`server::run`].
//! - [`middleware`]: the tower stack: the call's span and metrics
//!   ([`telemetry::rpc`]), deadline, admission (a concurrency limit that
//!   refuses rather than queues), and dispatch (API calls straight to the
//!   API, health and reflection through tonic's router).
//! - [`grpc`]: translates proto messages into validated domain operations
//!   and answers into replies, one generic path for the four; it hands a
//!   traced call's span how the answer was reached. [`grpc::status`] maps
//!   every error to a gRPC status, in one place.
//! - [`service`]: the identity service, one generic path for every
//!   [`domain::Operation`]: the caller judged by the [`policy`] first, then
//!   answered through [`cache`] (the token cache over moka) or the
//!   upstream, through the [`guard`].
//! - [`guard`]: between a miss and Cognito: a limit on the callers waiting
//!   on it, the circuit breaker, the per-operation quota budgets.
//! - [`upstream`]: Cognito through `aws-sdk-cognitoidentity`, its errors
//!   sorted into [`domain::Error`], each call returned with its record.
//! - [`domain`]: at the bottom: validated newtypes (one implementation of
//!   the service model's constraints), the operations, their answers, the
//!   error, what happened on the way ([`domain::Served`]), and the two seams
//!   [`domain::IdentityService`] and [`domain::Upstream`].
//!
//! Beside them: [`telemetry`] (logs, traces, metrics; handed what happened,
//! it imports only the domain's records and the generated names),
//! [`audit`] (the audit log, written off the request path; the service
//! hands it each developer call and each refusal),
//! [`config`] (flags and environment, assembled into each module's own
//! settings; only this file and `main` import it), [`shutdown`] (signals),
//! [`jwt`] (reading a token's claims), [`rate`] (a token bucket), [`clock`]
//! (the time tokens' lives and budgets are read from), [`reload`]
//! (values built from files, taken up again when they change), [`proto`]
//! (the generated code), and `emulator` (an embedded Cognito Identity
//! emulator, behind the default feature `emulator`). [`serve`] runs what the
//! configuration says; `main` calls it, and the integration tests call
//! [`server::run`].

#![forbid(unsafe_code)]
// The public surface is what the binary, the tests, the benches and the
// fuzz targets use; everything else is the crate's own.
#![warn(unreachable_pub)]

mod audit;
pub mod cache;
pub mod clock;
pub mod config;
pub mod domain;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod grpc;
pub mod guard;
pub mod jwt;
mod labels;
mod middleware;
pub mod policy;
pub mod proto;
mod rate;
pub mod reload;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::config::{ConfigError, Program, Settings};
use crate::policy::LivePolicy;
use crate::server::{Listeners, RunError};
use crate::service::Gateway;
use crate::telemetry::metrics::Metrics;
use crate::upstream::CognitoUpstream;

/// Exit code of a bad configuration, as clap uses for bad usage.
const BAD_CONFIGURATION: u8 = 2;

/// Why the program did not run to a clean stop.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The configuration is bad: nothing was served.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The embedded emulator could not start.
    #[error("{0}")]
    Emulator(String),
    /// The server failed.
    #[error("{0}")]
    Run(#[from] RunError),
}

impl Failure {
    /// The process's exit code: 2 for a bad configuration, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Config(_) => BAD_CONFIGURATION,
            _ => 1,
        }
    }
}

/// Runs `program` until `shutdown` resolves: the gateway (with its embedded
/// emulator when asked), its parts' metrics joining `metrics`, or the
/// emulator alone.
pub async fn serve(
    program: Program,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Failure> {
    match program {
        Program::Gateway(settings) => gateway(*settings, metrics, shutdown).await,
        #[cfg(feature = "emulator")]
        Program::Emulator(config) => emulator(config, shutdown).await,
        // Checked, nothing to run.
        Program::Checked(_) => Ok(()),
    }
}

/// The gateway: the upstream loaded from the AWS configuration, the cache,
/// the listeners bound, served.
async fn gateway(
    #[allow(unused_mut)] mut settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Failure> {
    #[cfg(feature = "emulator")]
    let _embedded = settings
        .start_embedded_emulator()
        .await
        .map_err(Failure::Emulator)?;
    let upstream = CognitoUpstream::load(&settings.upstream)
        .await
        .map_err(|problem| ConfigError(vec![problem]))?;
    let listeners = Listeners {
        grpc: bind(settings.listen).await?,
        admin: match settings.admin_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        },
    };
    if let Some(header) = &settings.server.caller_identity_header {
        tracing::warn!(
            header = %header.name,
            trusted_peers = %header.trusted_peers,
            "callers are identified by a header, believed from the trusted peers: only a \
             service mesh's proxies, which set it on every call, may reach this listener from \
             there"
        );
    }
    let tls = match &settings.server.tls {
        Some(tls) if tls.files().asks_for_client_certificates() => "mutual TLS",
        Some(_) => "TLS",
        None => "plaintext",
    };
    let admin = settings
        .admin_listen
        .map_or_else(|| "off".to_owned(), |a| a.to_string());
    tracing::info!(listen = %settings.listen, admin, tls, "serving gRPC");
    // The policy in force from the file as it was checked, and reloaded
    // when it changes while the gateway runs.
    let policy = settings
        .policy
        .map(|loaded| Arc::new(LivePolicy::new(loaded)));
    let _policy_watch = policy
        .clone()
        .and_then(|policy| policy.watch(reload::CHECK_EVERY));
    let (audit, audit_writer) = match settings.audit {
        Some(audit) => {
            let (auditor, writer) = audit::Auditor::start(audit, grpc::status::code_name)
                .map_err(|problem| ConfigError(vec![problem]))?;
            (Some(auditor), Some(writer))
        }
        None => (None, None),
    };
    let service = Gateway::new(upstream, settings.cache, Clock::default())
        .with_guard(settings.guard)
        .with_policy(policy)
        .with_audit(audit);
    metrics.register(|registry| service.register(registry));
    let service = Arc::new(service);
    let served = server::run(&settings.server, listeners, service, metrics, shutdown).await;
    if let Some(writer) = audit_writer {
        writer.finish(std::time::Duration::from_secs(5)).await;
    }
    Ok(served?)
}

/// The emulator alone, for any AWS client.
#[cfg(feature = "emulator")]
async fn emulator(
    config: config::EmulatorConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Failure> {
    let emulator = emulator::Emulator::new(config.settings).map_err(|e| ConfigError(vec![e]))?;
    if config.default_pool {
        emulator.add_default_pool();
    }
    let listener = bind(config.listen).await?;
    let addr = listener.local_addr().map_or(config.listen, |a| a);
    // The exact line scripts wait for: the address actually bound.
    println!("emulator listening on http://{addr}");
    emulator::serve(listener, emulator, shutdown).await;
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Failure::Bind { addr, source })
}
