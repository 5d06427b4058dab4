//! [`PreflightLayer`]: routes and authorizes a request exactly as the service will, before any
//! body is read, so `PATCH /nowhere` is 404 and a caller without the write permission is 403
//! without uploading a megabyte first. Its decision travels to the service with the request,
//! which takes it only for the request it was made for and otherwise decides itself (fail
//! closed).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use super::Config;
use super::endpoint::Decided;
use crate::body::{ResponseBody, ResponseFuture};
use crate::error::GraphError;

/// Routes and authorizes before the body is read; made by
/// [`SecurityUpdateService::preflight_layer`](super::SecurityUpdateService::preflight_layer)
/// from the service's own configuration.
#[must_use]
#[derive(Clone)]
pub struct PreflightLayer {
    pub(super) config: Arc<Config>,
}

impl fmt::Debug for PreflightLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreflightLayer").finish_non_exhaustive()
    }
}

impl<S> tower::Layer<S> for PreflightLayer {
    type Service = Preflight<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Preflight {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by [`PreflightLayer`].
#[must_use]
#[derive(Clone)]
pub struct Preflight<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Preflight<S> {
    crate::macros::inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for Preflight<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Preflight")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Service<Request<B>> for Preflight<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        match admit(&self.config, &mut request) {
            Ok(()) => ResponseFuture::inner(self.inner.call(request)),
            Err(error) => ResponseFuture::rejected(error.into_refusal(&request)),
        }
    }
}

/// The preflight's check of `request` under `config`: routed and authorized, it carries the
/// decision on.
fn admit<B>(config: &Config, request: &mut Request<B>) -> Result<(), GraphError> {
    let decision = config.authorize(request)?;
    // The service takes this decision instead of making it again.
    if let Some(decided) = Decided::new(config, request, decision) {
        request.extensions_mut().insert(decided);
    }
    Ok(())
}
