//! [`Endpoint`]: the inner end of the stack [`StackBuilder`](crate::StackBuilder) builds —
//! the checks made before a body is read (the caller's rate limit, the route and the
//! permission, the content type), the reading of the merge patch, and the operation — as one
//! service.
//!
//! Each part is also a piece of its own, for a stack composed by hand: [`RateLimitLayer`],
//! [`PreflightLayer`](crate::PreflightLayer), [`ContentTypeLayer`](crate::ContentTypeLayer),
//! [`MergePatchLayer`] and [`SecurityUpdateService`]. `Endpoint` runs the same checks in the
//! same order, with the same answers. It exists for speed: every service of a tower stack
//! takes the request by value, makes a future around the one below and maps the response on
//! its way back, and those pieces hand each other their results (the decision, the content
//! type's mark, the patch) in the request's extensions, a box made and freed for each. Here
//! the decision and the patch are handed over as values (benches/README.md, twenty-first
//! session).
//!
//! A request one of the checks refuses gets that check's answer, as its piece documents it:
//! 429 from the rate limit ([`rate_limit`](crate::rate_limit)); 404 / 405 / 403 / 401 / 400
//! from the route and the policy ([`PreflightLayer`](crate::PreflightLayer)); 415 or 400 from
//! the content type ([`content_type`](crate::content_type)); 501, 400 or 413 from the
//! patch's head ([`merge_patch`](crate::merge_patch)). The first in that order answers, and
//! the body is not read.
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

mod future;

use future::Handover;
pub use future::ResponseFuture;

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower::Service;

use crate::auth::Principal;
use crate::merge_patch::MergePatchLayer;
use crate::merge_patch::reading::{BodyReader, Head, check_head};
use crate::rate_limit::RateLimitLayer;
use crate::request_id::RequestIds;
use crate::service::{Handed, SecurityUpdateService};
use crate::store::SecurityStore;
use crate::timeout::WriteDeadline;

/// The checks before the body, the merge patch and the operation in one service; see the
/// [module docs](self). [`StackBuilder`](crate::StackBuilder) makes it, inside the batch layer;
/// a stack composed by hand mounts it behind its own outer layers:
///
/// ```
/// use security_update::endpoint::Endpoint;
/// use security_update::{
///     AuthLayer, MemoryStore, MergePatchLayer, Principal, RateLimitLayer, RequestIdLayer,
///     StackBuilder, StaticTokens,
/// };
/// use tower::{ServiceBuilder, ServiceExt};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let tokens = StaticTokens::new().with_token(
///     "t",
///     Principal::delegated("72f988bf-86f1-41af-91ab-2d7cd011db47", "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa")
///         .with_scopes(["SecurityEvents.ReadWrite.All"]),
/// );
/// let service = StackBuilder::new(MemoryStore::new()).into_service();
/// let app = ServiceBuilder::new()
///     .layer(RequestIdLayer::new())
///     .layer(AuthLayer::new(tokens))
///     .service(Endpoint::new(service, RateLimitLayer::unlimited(), MergePatchLayer::new()));
/// let patch = http::Request::patch("/me/security")
///     .header("authorization", "Bearer t")
///     .header("content-type", "application/json")
///     .body(http_body_util::Full::from(r##"{"@odata.type": "#microsoft.graph.security.security"}"##))
///     .unwrap();
/// assert_eq!(app.oneshot(patch).await.unwrap().status(), 200);
/// # }
/// ```
#[must_use]
pub struct Endpoint<S> {
    service: SecurityUpdateService<S>,
    rate_limit: RateLimitLayer,
    merge_patch: MergePatchLayer,
}

impl<S> Clone for Endpoint<S> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            rate_limit: self.rate_limit.clone(),
            merge_patch: self.merge_patch,
        }
    }
}

impl<S> Endpoint<S> {
    /// `service` behind `rate_limit`, its own preflight, the content-type check and
    /// `merge_patch`: what [`StackBuilder`](crate::StackBuilder) builds, for a stack otherwise
    /// composed by hand.
    pub fn new(
        service: SecurityUpdateService<S>,
        rate_limit: RateLimitLayer,
        merge_patch: MergePatchLayer,
    ) -> Self {
        Self {
            service,
            rate_limit,
            merge_patch,
        }
    }

    /// The operation's service.
    #[must_use]
    pub fn service(&self) -> &SecurityUpdateService<S> {
        &self.service
    }
}

impl<S> std::fmt::Debug for Endpoint<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("service", &self.service)
            .field("rate_limit", &self.rate_limit)
            .field("merge_patch", &self.merge_patch)
            .finish()
    }
}

impl<S, B> Service<Request<B>> for Endpoint<S>
where
    S: SecurityStore,
    B: Body<Data = Bytes>,
    B::Error: Into<crate::merge_patch::BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let carried = Carried::take_from(&mut request);
        self.call_carried(request, carried)
    }
}

/// What the layers outside the endpoint know of a request: its ids, its caller and its
/// deadline. The built [`Stack`](crate::Stack) hands them over as values; behind layers
/// composed by hand, they are taken from the request's extensions, where those layers put
/// them.
pub(crate) struct Carried {
    pub(crate) ids: RequestIds,
    pub(crate) principal: Option<Principal>,
    pub(crate) deadline: Option<WriteDeadline>,
}

impl Carried {
    /// What the layers outside put into `request`'s extensions, taken out: nothing inside the
    /// endpoint looks there again.
    fn take_from<B>(request: &mut Request<B>) -> Self {
        let ids = RequestIds::take(request);
        let extensions = request.extensions_mut();
        Self {
            ids,
            principal: extensions.remove::<Principal>(),
            deadline: extensions.remove::<WriteDeadline>(),
        }
    }
}

impl<S: SecurityStore> Endpoint<S> {
    /// [`call`](Service::call) for a request whose ids, caller and deadline are `carried`.
    pub(crate) fn call_carried<B>(
        &self,
        request: Request<B>,
        carried: Carried,
    ) -> ResponseFuture<S, B>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<crate::merge_patch::BoxError>,
    {
        let Carried {
            ids,
            principal,
            deadline,
        } = carried;
        let limit = self.merge_patch.limit();
        // The order of the pieces: rate limit, preflight, content type, the patch's head.
        let checked = self
            .rate_limit
            .charge_principal(principal.as_ref())
            .and_then(|()| self.service.config().authorize_as(&request, principal))
            .and_then(|decision| {
                crate::content_type::check(&request)?;
                let head = check_head(request.method(), request.headers(), limit)?;
                Ok((decision, head))
            });
        let ((access, key, actor), head) = match checked {
            Ok(checked) => checked,
            Err(error) => {
                return ResponseFuture::refused(error.into_refusal_with(&ids, &request));
            }
        };
        match head {
            Head::PassOn => {
                let handed = Handed::Direct {
                    access,
                    key,
                    actor,
                    deadline,
                    patch: None,
                };
                ResponseFuture::answering(self.service.call_handed(request, ids, handed))
            }
            Head::Read => {
                let (parts, body) = request.into_parts();
                let body = BodyReader::new(body, limit, self.merge_patch.max_depth());
                let handover = Handover {
                    access,
                    key,
                    actor,
                    deadline,
                    ids,
                };
                ResponseFuture::reading(body, parts, self.service.clone(), handover)
            }
        }
    }
}
