//! [`Checks`]: the three checks [`StackBuilder`](crate::StackBuilder) makes of a request
//! before its body is read — its caller's rate limit, then the preflight (route and
//! authorization), then its content type — in one service.
//!
//! Each check is also a layer of its own ([`RateLimitLayer`], [`PreflightLayer`],
//! [`ContentTypeLayer`](crate::ContentTypeLayer)), for a stack composed by hand; `Checks`
//! runs the same code, in the same order, with the same answers. It exists for speed: every
//! service of a tower stack takes the request by value, makes a future around the one below
//! and maps the response on its way back, and in the bench a layer that only passes a PATCH
//! through costs ~1.5% of the whole stack's time (benches/README.md, nineteenth session).
//! Three checks in one service pay that once.
//!
//! | request                                              | answer |
//! |------------------------------------------------------|--------|
//! | over its caller's rate                               | 429 with `Retry-After` |
//! | to no route, a method the route does not take, or without the permission it needs | 404, 405 or 403, as the preflight |
//! | with a body that is not JSON                         | 415 |
//! | anything else                                        | the inner service's |

use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use crate::body::{ResponseBody, ResponseFuture};
use crate::rate_limit::RateLimitLayer;
use crate::request_id::RequestIds;
use crate::service::PreflightLayer;

/// The rate limit, the preflight and the content-type check in one service; see the
/// [module docs](self). [`StackBuilder`](crate::StackBuilder) makes it, between the batch
/// layer and the merge-patch layer.
#[must_use]
#[derive(Clone)]
pub struct Checks<S> {
    inner: S,
    rate_limit: RateLimitLayer,
    preflight: PreflightLayer,
}

impl<S> Checks<S> {
    /// `inner` behind `rate_limit` and then `preflight`, and then the content-type check.
    pub(crate) fn new(inner: S, rate_limit: RateLimitLayer, preflight: PreflightLayer) -> Self {
        Self {
            inner,
            rate_limit,
            preflight,
        }
    }

    crate::macros::inner_service_accessors!();
}

impl<S: std::fmt::Debug> std::fmt::Debug for Checks<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checks")
            .field("rate_limit", &self.rate_limit)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Service<Request<B>> for Checks<S>
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
        let checked = self
            .rate_limit
            .charge(&request)
            .and_then(|()| self.preflight.admit(&mut request))
            .and_then(|()| crate::content_type::admit(&mut request));
        match checked {
            Ok(()) => ResponseFuture::inner(self.inner.call(request)),
            Err(error) => ResponseFuture::rejected(error.into_response(&RequestIds::of(&request))),
        }
    }
}
