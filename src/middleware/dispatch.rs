//! Dispatch: the API's calls straight to the API's service, everything
//! else (health checks, reflection) through tonic's router.

use std::task::{Context, Poll};

use futures_util::TryFutureExt;
use futures_util::future::{Either, ErrInto};
use tonic::body::Body;
use tower::{BoxError, Layer, Service};

use crate::proto::API_PREFIX;

/// Hands the API's calls (paths under [`API_PREFIX`]) to the API's service
/// and everything else to the service below, tonic's router. The router is
/// an axum router that wraps the request body in one more box and matches
/// the path against every service, a cost every call would pay.
#[derive(Clone, Debug)]
pub(crate) struct DispatchLayer<A> {
    api: A,
}

impl<A> DispatchLayer<A> {
    /// Hands API calls to `api`.
    pub(crate) fn new(api: A) -> Self {
        Self { api }
    }
}

impl<A: Clone, S> Layer<S> for DispatchLayer<A> {
    type Service = Dispatch<A, S>;

    fn layer(&self, routes: S) -> Self::Service {
        Dispatch {
            api: self.api.clone(),
            routes,
        }
    }
}

/// The service of [`DispatchLayer`].
#[derive(Clone, Debug)]
pub(crate) struct Dispatch<A, S> {
    api: A,
    routes: S,
}

impl<A, S, B> Service<http::Request<B>> for Dispatch<A, S>
where
    A: Service<http::Request<B>, Response = http::Response<Body>>,
    A::Error: Into<BoxError>,
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Either<ErrInto<A::Future, BoxError>, ErrInto<S::Future, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        std::task::ready!(self.api.poll_ready(cx)).map_err(Into::into)?;
        self.routes.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path().starts_with(API_PREFIX) {
            Either::Left(self.api.call(request).err_into())
        } else {
            Either::Right(self.routes.call(request).err_into())
        }
    }
}
