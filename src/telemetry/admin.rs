//! The admin HTTP listener: `GET /metrics` (Prometheus text), `GET /healthz`
//! (the process is alive) and `GET /readyz` (serving, and the upstream can
//! be reached).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use super::metrics::metrics;

/// Answers whether the upstream can be reached now.
pub type ReadinessProbe = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// What the admin routes report on.
#[derive(Clone)]
pub struct AdminState {
    /// Set once shutdown has begun.
    pub draining: Arc<AtomicBool>,
    /// The upstream check of `/readyz`.
    pub upstream_reachable: ReadinessProbe,
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
        ("GET", "/metrics") => text(
            200,
            metrics().encode(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        ("GET", "/healthz") => text(200, "ok\n", PLAIN),
        ("GET", "/readyz") => {
            if state.draining.load(Ordering::Acquire) {
                text(503, "draining\n", PLAIN)
            } else if (state.upstream_reachable)().await {
                text(200, "ready\n", PLAIN)
            } else {
                text(503, "upstream unreachable\n", PLAIN)
            }
        }
        _ => text(404, "not found\n", PLAIN),
    })
}

/// Serves the admin routes on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, state: AdminState, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| route(state.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
