//! A span that has ended: the plain record the server and client spans
//! ([`super::spans`]) hand to the exporter's queue ([`super::export`]) and
//! that [`super::otlp`] encodes.

use std::net::SocketAddr;
use std::sync::Arc;

/// A span that has ended, as the exporter encodes it.
#[derive(Debug)]
pub(crate) struct FinishedSpan {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) parent_span_id: Option<[u8; 8]>,
    pub(crate) trace_state: Option<Box<str>>,
    pub(crate) start_unix_nanos: u64,
    pub(crate) end_unix_nanos: u64,
    /// `error.type`: an error's reason (a Cognito error code, or the
    /// gateway's own reason such as `INVALID_REQUEST`).
    pub(crate) error_type: Option<Box<str>>,
    pub(crate) side: Side,
}

/// What differs between the two kinds of span.
#[derive(Debug)]
pub(crate) enum Side {
    /// An API call, served.
    Server {
        /// `{package.service}/{method}`.
        name: &'static str,
        /// `rpc.method`.
        method: &'static str,
        /// `rpc.grpc.status_code`.
        status: i32,
        /// `server.address`/`server.port`.
        server: Option<SocketAddr>,
        /// `client.address`/`client.port`.
        client: Option<SocketAddr>,
        /// `cache.outcome`: hit, miss, coalesced, stale.
        cache_outcome: Option<&'static str>,
    },
    /// A call to Cognito.
    Client {
        /// `rpc.method`: the Cognito operation.
        operation: &'static str,
        /// `cloud.region`.
        region: Arc<str>,
        /// `aws.request_id`.
        request_id: Option<Box<str>>,
        /// `http.response.status_code`.
        http_status: Option<u16>,
    },
}
