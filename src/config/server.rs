//! The flags of the server: where it listens (the API, the admin routes),
//! how long a call may take, how many are served at once, and how long
//! they may take to finish on shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use super::connections::Connections;
use super::problems::Problems;
use crate::grpc::IdentityHeader;
use crate::server::ServerSettings;
use crate::server::tls::LoadedTls;

/// Flags of the server.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Server")]
pub(crate) struct ServerArgs {
    /// Address the gRPC server listens on.
    #[arg(long, env = "COGNITO_GATEWAY_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: String,

    /// Admin HTTP address for /metrics, /healthz and /readyz; `off` for none.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_ADMIN_LISTEN",
        default_value = "0.0.0.0:9464"
    )]
    pub admin_listen: String,

    /// Bound on a whole gRPC call; a shorter grpc-timeout from the caller wins.
    #[arg(long, env = "COGNITO_GATEWAY_REQUEST_TIMEOUT", default_value = "10s")]
    pub request_timeout: String,

    /// Calls served at once; more are refused with RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CONCURRENCY_LIMIT",
        default_value = "1024"
    )]
    pub concurrency_limit: String,

    /// On SIGTERM or SIGINT, how long in-flight calls may take to finish.
    #[arg(long, env = "COGNITO_GATEWAY_SHUTDOWN_GRACE", default_value = "20s")]
    pub shutdown_grace: String,
}

/// The checked values.
#[derive(Debug)]
pub(super) struct Server {
    pub(super) listen: SocketAddr,
    pub(super) admin_listen: Option<SocketAddr>,
    pub(super) concurrency_limit: usize,
    request_timeout: Duration,
    shutdown_grace: Duration,
}

impl ServerArgs {
    /// Checks the flags.
    pub(super) fn settings(&self, p: &mut Problems) -> Option<Server> {
        let listen = p.check(
            "listen",
            self.listen.parse::<SocketAddr>().map_err(|e| {
                format!(
                    "{:?}: {e} (expected HOST:PORT, e.g. 0.0.0.0:50051)",
                    self.listen
                )
            }),
        );
        let admin_listen = match self.admin_listen.as_str() {
            "off" | "" => Some(None),
            addr => p
                .check(
                    "admin-listen",
                    addr.parse::<SocketAddr>()
                        .map_err(|e| format!("{addr:?}: {e} (expected HOST:PORT or off)")),
                )
                .map(Some),
        };
        let request_timeout = p.duration("request-timeout", &self.request_timeout);
        let concurrency_limit =
            p.number("concurrency-limit", &self.concurrency_limit, 1..=usize::MAX);
        let shutdown_grace = p.duration("shutdown-grace", &self.shutdown_grace);
        Some(Server {
            listen: listen?,
            admin_listen: admin_listen?,
            concurrency_limit: concurrency_limit?,
            request_timeout: request_timeout?,
            shutdown_grace: shutdown_grace?,
        })
    }
}

impl Server {
    /// The server's settings: these, its connections', and how callers
    /// are identified (a mesh's header, or TLS and client certificates).
    pub(super) fn with(
        &self,
        connections: Connections,
        caller_identity_header: Option<IdentityHeader>,
        tls: Option<LoadedTls>,
    ) -> ServerSettings {
        ServerSettings {
            request_timeout: self.request_timeout,
            concurrency_limit: self.concurrency_limit,
            shutdown_grace: self.shutdown_grace,
            caller_identity_header,
            tls,
            max_concurrent_streams: connections.max_concurrent_streams,
            handshake_timeout: connections.handshake_timeout,
            request_body_timeout: connections.request_body_timeout,
            max_buffered_request_bytes: connections.max_buffered_request_bytes,
            idle_timeout: connections.idle_timeout,
            admin_header_timeout: connections.admin_header_timeout,
            keepalive_interval: connections.keepalive_interval,
            keepalive_timeout: connections.keepalive_timeout,
            max_connection_age: connections.max_connection_age,
        }
    }
}
