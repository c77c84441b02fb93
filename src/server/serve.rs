//! The API listener's serve loop: each accepted connection served over
//! HTTP/2 by hyper on a task of its own, through the middleware and the
//! routes, until it ends or is closed.
//!
//! tonic's own loop closes connections only all at once (on shutdown) or
//! all by one age; a credential broker must close each connection when its
//! caller's identity ends: when its client certificate expires, when the
//! client CA in force no longer vouches for it, and at a maximum age (less
//! a jitter, so that a fleet's connections do not all reconnect at once)
//! so that identity and rotation are checked again at least that often.
//! Each such close is graceful: a GOAWAY, the calls in flight finish (for
//! as long as a call may take), then the connection is closed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tonic::body::Body;
use tower::{BoxError, Service, ServiceExt};

use super::conn::Connection;
use super::drain::{self, Drain};
use super::metrics::ServerMetrics;
use super::one_write::OneWrite;

/// The HTTP/2 settings the server advertises and keeps.
#[derive(Clone, Copy, Debug)]
pub(super) struct Http2 {
    /// Streams a connection may have open at once.
    pub(super) max_concurrent_streams: u32,
    /// How often a quiet connection is PINGed.
    pub(super) keepalive_interval: Duration,
    /// How long a PING's answer may take.
    pub(super) keepalive_timeout: Duration,
    /// After a GOAWAY, how long the calls in flight may take to finish
    /// before the connection is closed under them.
    pub(super) close_grace: Duration,
}

/// Serves every connection `incoming` yields with `service` until `drain`
/// starts; then stops accepting while each connection, following it,
/// finishes (GOAWAY), and returns once all have closed.
pub(super) async fn serve<S, B>(
    incoming: impl Stream<Item = OneWrite<Connection>>,
    service: S,
    http2: Http2,
    drain: &Drain,
    metrics: ServerMetrics,
) where
    S: Service<http::Request<Body>, Response = http::Response<B>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(http2.max_concurrent_streams)
        .keep_alive_interval(http2.keepalive_interval)
        .keep_alive_timeout(http2.keepalive_timeout);
    let builder = Arc::new(builder);
    {
        // Dropped once the drain starts: the accept loop then stops and the
        // listening socket closes, so no client connects to a server that
        // will not serve it.
        let mut incoming = std::pin::pin!(incoming);
        let watch = drain.watch();
        let mut draining = std::pin::pin!(watch.draining());
        loop {
            tokio::select! {
                () = &mut draining => break,
                next = incoming.next() => match next {
                    Some(connection) => {
                        let task = connection_task(
                            connection,
                            service.clone(),
                            builder.clone(),
                            http2.close_grace,
                            drain.hold(),
                            metrics.clone(),
                        );
                        tokio::spawn(task);
                    }
                    None => break,
                },
            }
        }
    }
    // Every connection holds the drain until it has closed.
    drain.drained().await;
}

/// Serves one connection until it ends, or is closed for one of the
/// reasons its [`Close`] names, or the server drains.
async fn connection_task<S, B>(
    connection: OneWrite<Connection>,
    service: S,
    builder: Arc<hyper::server::conn::http2::Builder<TokioExecutor>>,
    grace: Duration,
    drain: drain::Watch,
    metrics: ServerMetrics,
) where
    S: Service<http::Request<Body>, Response = http::Response<B>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let peer = connection.get_ref().peer().clone();
    let mut close = connection.get_ref().close();
    // Each call carries its connection's peer (addresses, certified
    // caller, activity), as tonic's `ConnectInfo` would; an error that is
    // a status is answered as one.
    let service = service
        .map_request(move |request: http::Request<hyper::body::Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(peer.clone());
            request
        })
        .map_result(recover::<B>);
    let served =
        builder.serve_connection(TokioIo::new(connection), TowerToHyperService::new(service));
    let mut served = std::pin::pin!(served);
    let why = tokio::select! {
        result = &mut served => {
            if let Err(e) = result {
                tracing::debug!("connection ended: {e}");
            }
            return;
        }
        () = drain.draining() => None,
        why = close.due() => Some(why),
    };
    if let Some(why) = why {
        metrics.closed(why);
        tracing::debug!(reason = why.as_str(), "closing a connection (GOAWAY)");
    }
    served.as_mut().graceful_shutdown();
    if tokio::time::timeout(grace, served).await.is_err() {
        tracing::debug!("calls still in flight after the close's grace: connection closed");
    }
}

/// A reply in tonic's body, and an error that is a status answered as one
/// (as tonic's own server does); any other error resets the stream. A
/// function, not a closure: a closure's inferred lifetimes here are not
/// general enough for the task to be spawned (rust-lang/rust#102211).
fn recover<B>(result: Result<http::Response<B>, BoxError>) -> Result<http::Response<Body>, BoxError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    match result {
        Ok(response) => Ok(response.map(Body::new)),
        Err(error) => match error.downcast::<tonic::Status>() {
            Ok(status) => Ok(status.into_http()),
            Err(error) => Err(error),
        },
    }
}
