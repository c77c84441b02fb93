//! The tower stack every request goes through before the gRPC layer, built
//! in one function and read top to bottom; a layer a file: [`deadline`],
//! [`admit`], [`dispatch`] (the span and metrics layer is telemetry's,
//! [`ObserveLayer`]).

pub(crate) mod admit;
pub(crate) mod deadline;
pub(crate) mod dispatch;

use std::time::Duration;

use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};

pub(crate) use admit::AdmitLayer;
pub(crate) use deadline::DeadlineLayer;
pub(crate) use dispatch::DispatchLayer;

use crate::telemetry::rpc::ObserveLayer;
use crate::telemetry::rpc_metrics::RpcMetrics;

/// The stack's type, for `tonic::transport::Server::layer`.
pub(crate) type GatewayStack<A> =
    Stack<DispatchLayer<A>, Stack<AdmitLayer, Stack<DeadlineLayer, Stack<ObserveLayer, Identity>>>>;

/// The middleware, outermost first, ending in `api`, the API's gRPC service.
pub(crate) fn stack<A>(
    request_timeout: Duration,
    concurrency_limit: usize,
    body_timeout: Duration,
    max_message: usize,
    buffer_limit: usize,
    metrics: RpcMetrics,
    api: A,
) -> ServiceBuilder<GatewayStack<A>> {
    ServiceBuilder::new()
        // A span and metrics for every API call, around everything below,
        // continued from the caller's trace context.
        .layer(ObserveLayer::new(metrics))
        // Every call gets a deadline: the caller's grpc-timeout, capped by the
        // server's request timeout. Time spent waiting below counts, and
        // when it passes the whole call is dropped, its upstream request
        // with it. The only timer of the gateway's own on a call.
        .layer(DeadlineLayer::new(request_timeout))
        // At most this many API calls in the whole process, across
        // connections, each counted once its message has arrived (read
        // here, within `body_timeout`, at most `max_message` bytes, the
        // messages still arriving at most `buffer_limit` bytes together);
        // past that, refuse at once (RESOURCE_EXHAUSTED) rather than queue:
        // a queue only adds latency that the caller's deadline then
        // wastes. Health checks and reflection pass uncounted.
        .layer(AdmitLayer::new(
            concurrency_limit,
            body_timeout,
            max_message,
            buffer_limit,
        ))
        // API calls straight to the API; health and reflection through
        // tonic's router.
        .layer(DispatchLayer::new(api))
}
