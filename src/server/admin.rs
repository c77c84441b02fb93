//! The admin HTTP listener: `GET /metrics` (OpenMetrics or the Prometheus
//! text format, as the scraper's `Accept` header asks), `GET /healthz`
//! (the process is alive), `GET /readyz` (serving and not draining: local,
//! whatever the upstream does) and `GET /upstreamz` (whether Cognito can be
//! reached, also the gauge `gateway_upstream_up`).
//!
//! Readiness must not depend on the upstream: every replica shares it, so a
//! Cognito outage would take every replica out of its Service at once, and
//! the tokens their caches hold could be served nowhere.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use super::drain;
use super::metrics::ServerMetrics;
use crate::domain::{CacheStats, IdentityService};
use crate::telemetry::exposition::{self, Format};
use crate::telemetry::metrics::Metrics;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the admin routes ask of the service.
pub(crate) trait Probe: Send + Sync + 'static {
    /// Whether the upstream can be reached now.
    fn upstream_up(&self) -> BoxFuture<bool>;
    /// The cache's counters, brought up to date.
    fn cache_stats(&self) -> BoxFuture<Option<CacheStats>>;
}

impl<S: IdentityService> Probe for Arc<S> {
    fn upstream_up(&self) -> BoxFuture<bool> {
        let service = self.clone();
        Box::pin(async move { IdentityService::upstream_reachable(&*service).await })
    }

    fn cache_stats(&self) -> BoxFuture<Option<CacheStats>> {
        let service = self.clone();
        Box::pin(async move { IdentityService::cache_stats(&*service).await })
    }
}

/// What the admin routes report on.
#[derive(Clone)]
pub(crate) struct AdminState {
    /// The server's drain: `/readyz` is 503 once it has started, and the
    /// listener stops when it is gone.
    pub drain: drain::Watch,
    /// The service.
    pub probe: Arc<dyn Probe>,
    /// The gateway's metrics, for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The server's own, for `gateway_upstream_up`.
    pub(crate) server_metrics: ServerMetrics,
    /// How long a request's head may take to arrive, the first or the next
    /// on a kept-alive connection (`--admin-header-timeout`).
    pub(crate) header_timeout: std::time::Duration,
}

fn text(status: u16, body: impl Into<Bytes>, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

async fn route<B>(
    state: AdminState,
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    Ok(match (request.method().as_str(), request.uri().path()) {
        ("GET", "/metrics") => {
            let accept = request.headers().get(http::header::ACCEPT);
            let format = Format::negotiate(accept.and_then(|v| v.to_str().ok()));
            let cache = state.probe.cache_stats().await;
            let open_metrics = state.metrics.encode(cache);
            let body = match format {
                Format::OpenMetrics => open_metrics,
                Format::Text => exposition::to_text(&open_metrics),
            };
            text(200, body, format.content_type())
        }
        ("GET", "/healthz") => text(200, "ok\n", PLAIN),
        ("GET", "/readyz") => {
            if state.drain.is_draining() {
                text(503, "draining\n", PLAIN)
            } else {
                text(200, "ready\n", PLAIN)
            }
        }
        ("GET", "/upstreamz") => {
            if check_upstream(&*state.probe, &state.server_metrics).await {
                text(200, "upstream reachable\n", PLAIN)
            } else {
                text(503, "upstream unreachable\n", PLAIN)
            }
        }
        _ => text(404, "not found\n", PLAIN),
    })
}

/// Whether the upstream can be reached now, also set in
/// `gateway_upstream_up`.
pub(crate) async fn check_upstream(probe: &dyn Probe, metrics: &ServerMetrics) -> bool {
    let up = probe.upstream_up().await;
    metrics.upstream_up(up);
    up
}

/// Serves the admin routes on `listener` for as long as the server runs:
/// through its drain, until the drain is gone.
pub(crate) async fn serve(listener: TcpListener, state: AdminState) {
    let watch = state.drain.clone();
    let mut stopped = std::pin::pin!(watch.stopped());
    let mut listener = super::accept::Acceptor::new(listener, "admin");
    loop {
        let stream = tokio::select! {
            () = &mut stopped => return,
            (stream, _) = listener.accept() => stream,
        };
        let state = state.clone();
        let header_timeout = state.header_timeout;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| route(state.clone(), req));
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // A request's head must come within the timeout, the next one
            // on a kept-alive connection too: a half-sent or idle connection
            // is closed then.
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
