//! The server side of every API call: its span ([`super::spans`]), continued
//! from the caller's W3C trace context, and the request metrics. A tower
//! layer, so that time spent in the middleware below it (deadlines, load
//! shedding) is inside the span.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame};
use tonic::Code;
use tonic::transport::server::TcpConnectInfo;
use tower::{BoxError, Layer, Service};

use super::metrics::{code_name, metrics};
use super::spans::ServerSpan;
use crate::grpc::API_PREFIX;

/// Observes API calls; see the module documentation.
#[derive(Clone, Copy, Debug, Default)]
pub struct ObserveLayer;

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner }
    }
}

/// The service of [`ObserveLayer`].
#[derive(Clone, Debug)]
pub struct Observe<S> {
    inner: S,
}

/// Closes a call's books once its status is known: records it on the span,
/// counts it, and logs it at debug. Runs once, also when the client goes
/// away mid-call (then the call counts as CANCELLED).
struct Finish {
    /// `None` when the call is not traced. Boxed: the response body carries
    /// this through hyper, which moves it several times, and an untraced
    /// call should not pay to move a span's worth of empty bytes.
    span: Option<Box<ServerSpan>>,
    method: &'static str,
    started: Instant,
    done: bool,
}

impl Finish {
    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        metrics().call_finished(self.method, code, elapsed);
        tracing::debug!(
            rpc = self.method,
            code = code_name(code),
            elapsed_us = elapsed.as_micros() as u64,
            trace_id = self
                .span
                .as_ref()
                .map(|s| tracing::field::display(s.trace_id())),
            "call finished"
        );
        if let Some(span) = self.span.take() {
            span.end(code as i32, elapsed);
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// Looked up on every call: a `HeaderName` is hashed, a `&str` parsed first.
static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers
        .get(&GRPC_STATUS)?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(Code::from_i32(value))
}

/// The API method a path calls, as `'static` names: the method for labels
/// and the server span's name (`{package.service}/{method}`).
fn method_name(path: &str) -> Option<(&'static str, &'static str)> {
    let method = path.strip_prefix(API_PREFIX)?;
    let i = API_METHODS.iter().position(|m| *m == method)?;
    Some((API_METHODS[i], SPAN_NAMES[i]))
}

/// The API's methods; [`method_name`] hands out these very `&'static str`s.
pub(crate) static API_METHODS: [&str; 4] = [
    "GetId",
    "GetOpenIdToken",
    "GetOpenIdTokenForDeveloperIdentity",
    "GetCredentialsForIdentity",
];

/// The server spans' names, in the order of [`API_METHODS`]: written out
/// rather than formatted on every call.
static SPAN_NAMES: [&str; 4] = [
    "cognito_identity_gateway.v1.CognitoIdentityService/GetId",
    "cognito_identity_gateway.v1.CognitoIdentityService/GetOpenIdToken",
    "cognito_identity_gateway.v1.CognitoIdentityService/GetOpenIdTokenForDeveloperIdentity",
    "cognito_identity_gateway.v1.CognitoIdentityService/GetCredentialsForIdentity",
];

pin_project_lite::pin_project! {
    /// A response body that reads the status from the trailers.
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        finish: Option<Finish>,
    }
}

impl<B> Body for ObservedBody<B>
where
    B: Body,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(finish)) = (&polled, this.finish.as_mut())
            && let Some(trailers) = frame.trailers_ref()
        {
            finish.finish(grpc_status(trailers).unwrap_or(Code::Unknown));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Observe`]: the call, polled with its span current,
    /// then its books closed. Not boxed: the inner future is large and
    /// moving it costs more than this.
    pub struct ObserveFuture<F> {
        #[pin]
        call: F,
        finish: Option<Finish>,
    }
}

impl<F, E, ResBody> Future for ObserveFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    E: Into<BoxError>,
    ResBody: Default,
{
    type Output = Result<http::Response<ObservedBody<ResBody>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let call = this.call;
        let polled = match this.finish.as_mut().and_then(|f| f.span.as_mut()) {
            Some(span) => span.in_scope(|| call.poll(cx)),
            None => call.poll(cx),
        };
        let Poll::Ready(result) = polled else {
            return Poll::Pending;
        };
        let mut finish = this.finish.take();
        Poll::Ready(Ok(match result {
            Ok(response) => {
                // A trailers-only response (an error) carries the status in
                // its headers; otherwise it comes in the trailers.
                if let (Some(code), Some(f)) = (grpc_status(response.headers()), finish.as_mut()) {
                    f.finish(code);
                    finish = None;
                }
                response.map(|inner| ObservedBody { inner, finish })
            }
            Err(err) => {
                // A middleware error (load shed): answered here, as tonic
                // would, so that it is counted like any status.
                let status = tonic::Status::from_error(err.into());
                if let Some(f) = finish.as_mut() {
                    f.finish(status.code());
                }
                status.into_http().map(|inner| ObservedBody {
                    inner,
                    finish: None,
                })
            }
        }))
    }
}

impl<S, B, ResBody> Service<http::Request<B>> for Observe<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Default,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = BoxError;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some((method, span_name)) = method_name(request.uri().path()) else {
            return ObserveFuture {
                call: self.inner.call(request),
                finish: None,
            };
        };
        let span = ServerSpan::start(span_name, method, request.headers(), || {
            let peers = request.extensions().get::<TcpConnectInfo>();
            (
                peers.and_then(TcpConnectInfo::local_addr),
                peers.and_then(TcpConnectInfo::remote_addr),
            )
        });
        metrics().call_started();
        let finish = Finish {
            span: span.map(Box::new),
            method,
            started: Instant::now(),
            done: false,
        };
        ObserveFuture {
            call: self.inner.call(request),
            finish: Some(finish),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::SERVICE;

    #[test]
    fn only_the_api_is_observed() {
        assert_eq!(
            method_name("/cognito_identity_gateway.v1.CognitoIdentityService/GetId"),
            Some((
                "GetId",
                "cognito_identity_gateway.v1.CognitoIdentityService/GetId"
            ))
        );
        assert_eq!(method_name("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            method_name("/cognito_identity_gateway.v1.CognitoIdentityService/Nope"),
            None
        );
    }

    #[test]
    fn every_span_name_is_the_service_and_its_method() {
        assert_eq!(API_PREFIX, format!("/{SERVICE}/"));
        for (method, name) in API_METHODS.iter().zip(SPAN_NAMES) {
            assert_eq!(name, format!("{}{method}", &API_PREFIX[1..]));
        }
    }
}
