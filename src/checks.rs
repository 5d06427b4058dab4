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
//! A request one of them refuses gets that check's answer, as its layer documents it:
//! 429 from the rate limit ([`rate_limit`](crate::rate_limit)), 404 / 405 / 403 / 401 / 400
//! from the preflight ([`PreflightLayer`]), 415 or 400 from the content type
//! ([`content_type`](crate::content_type)); the first in the order answers, and the body is
//! not read.
//!
//! ```
//! use std::time::Duration;
//! use http_body_util::Full;
//! use security_update::{MemoryStore, Principal, RateLimitLayer, StackBuilder, StaticTokens};
//! use tower::ServiceExt;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let tokens = StaticTokens::new().with_token(
//!     "t",
//!     Principal::delegated("72f988bf-86f1-41af-91ab-2d7cd011db47", "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa")
//!         .with_scopes(["SecurityEvents.ReadWrite.All"]),
//! );
//! let app = StackBuilder::new(MemoryStore::new())
//!     .with_rate_limit(RateLimitLayer::new(1, Duration::from_secs(60)).with_burst(1))
//!     .build(tokens);
//! let text = || {
//!     http::Request::patch("/me/security")
//!         .header("authorization", "Bearer t")
//!         .header("content-type", "text/plain")
//!         .body(Full::from("notes"))
//!         .unwrap()
//! };
//! // Within the rate, not JSON: the content type's 415.
//! assert_eq!(app.clone().oneshot(text()).await.unwrap().status(), 415);
//! // Over the rate: the rate limit's 429, before the content type is looked at.
//! assert_eq!(app.clone().oneshot(text()).await.unwrap().status(), 429);
//! # }
//! ```

use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use crate::body::{ResponseBody, ResponseFuture};
use crate::rate_limit::RateLimitLayer;
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
    /// `inner` behind `rate_limit`, then `preflight` (made by
    /// [`SecurityUpdateService::preflight_layer`](crate::SecurityUpdateService::preflight_layer)
    /// from the service `inner` leads to), then the content-type check: what
    /// [`StackBuilder`](crate::StackBuilder) builds, for a stack otherwise composed by hand.
    pub fn new(inner: S, rate_limit: RateLimitLayer, preflight: PreflightLayer) -> Self {
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
            Err(error) => ResponseFuture::rejected(error.into_refusal(&request)),
        }
    }
}
