//! [`BatchLayer`]: JSON batching (`POST /$batch`) as Graph documents it, around any inner
//! service — the rest of this crate's stack, or an axum `Router`.
//!
//! ```json
//! {"requests": [
//!   {"id": "1", "method": "PATCH", "url": "/me/security",
//!    "headers": {"Content-Type": "application/json"}, "body": {"@odata.type": "#microsoft.graph.security.security"}},
//!   {"id": "2", "method": "GET", "url": "/me/security?$select=id", "dependsOn": ["1"]}
//! ]}
//! ```
//!
//! answers `200 {"responses": [{"id", "status", "headers", "body"}, ...]}`, one per request, in
//! request order. Each sub-request runs through the inner service as a request of its own
//! (routing, preflight, content type, merge patch, `If-Match`, rate limit), with its own
//! `request-id`; independent ones run concurrently (at most 4 at a time), a dependent one after
//! its dependencies, and with 424 if one of them failed. One refused sub-request leaves the
//! others untouched.
//!
//! The layer sits inside the auth layer: the batch is authenticated once and every
//! sub-request carries the caller's [`Principal`](crate::Principal) (no token travels inside a
//! batch, as with Graph), and outside the rate limit, so each sub-request counts against the
//! caller's budget (Graph too throttles the requests of a batch one by one). The batch
//! itself takes one more token before its body is read
//! ([`with_rate_limit`](BatchLayer::with_rate_limit); [`StackBuilder`](crate::StackBuilder)
//! does this): otherwise a caller over budget could still have megabyte batches read and
//! parsed, each answered with nothing but 429s.
//!
//! | batch | status |
//! |---|---|
//! | well-formed, ≤ 20 requests | 200, a response per request |
//! | not JSON, no `requests`, a request without `id`, `method` or a relative `url` | 400 |
//! | more than 20 requests, duplicate ids, `dependsOn` naming an unknown id or making a cycle | 400 |
//! | a nested `$batch` | 400 |
//! | larger than the body limit | 413 |
//! | the caller over its rate limit (with [`with_rate_limit`](BatchLayer::with_rate_limit)) | 429, the body unread |

mod future;
mod plan;

pub use future::ResponseFuture;

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use tower::{Layer, Service};

use crate::body::ResponseBody;
use crate::rate_limit::RateLimitLayer;

/// Marks a sub-request of a batch: a batch inside one is refused, however it is spelled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InBatch;

/// Most requests in one batch (Graph's limit).
pub const MAX_REQUESTS: usize = 20;
/// Sub-requests run at once.
pub(crate) const CONCURRENCY: usize = 4;

/// Answers `POST {prefix}/$batch`; see the [module docs](crate::batch).
#[must_use]
#[derive(Debug, Clone)]
pub struct BatchLayer {
    config: Arc<Config>,
}

#[derive(Debug)]
pub(crate) struct Config {
    /// The path of the batch endpoint, e.g. `/beta/$batch`; `None` when batching is off.
    path: Option<String>,
    /// The prefix sub-request URLs are relative to, e.g. `/beta`.
    prefix: String,
    limit: usize,
    /// Charges the batch itself one token.
    rate_limit: RateLimitLayer,
}

impl BatchLayer {
    /// Batches at `/$batch`, bodies up to 1 MiB.
    pub fn new() -> Self {
        Self::with_prefix("", crate::merge_patch::DEFAULT_LIMIT)
    }

    /// Batches at `{prefix}/$batch` (sub-request URLs are relative to `prefix`), bodies up to
    /// `limit` bytes.
    pub fn with_prefix(prefix: &str, limit: usize) -> Self {
        let prefix = prefix.trim_end_matches('/').to_owned();
        Self {
            config: Arc::new(Config {
                path: Some(format!("{prefix}/$batch")),
                prefix,
                limit,
                rate_limit: RateLimitLayer::unlimited(),
            }),
        }
    }

    /// Charges each batch one token of `rate_limit`'s budget (the one mounted inside this
    /// layer, which charges each sub-request) before its body is read; over budget, the batch
    /// is 429 with `Retry-After` and its body is left unread. Pass the layer fully configured
    /// and clone it: [`RateLimitLayer::with_burst`] makes a new budget, which a clone taken
    /// before it would not share.
    ///
    /// ```
    /// use std::time::Duration;
    /// use security_update::{BatchLayer, RateLimitLayer};
    ///
    /// let rate_limit = RateLimitLayer::new(50, Duration::from_secs(1));
    /// let batch = BatchLayer::new().with_rate_limit(rate_limit.clone());
    /// // Mount `batch` outside `rate_limit`, both inside the auth layer.
    /// # let _ = (batch, rate_limit);
    /// ```
    pub fn with_rate_limit(self, rate_limit: RateLimitLayer) -> Self {
        let config = &self.config;
        Self {
            config: Arc::new(Config {
                path: config.path.clone(),
                prefix: config.prefix.clone(),
                limit: config.limit,
                rate_limit,
            }),
        }
    }
}

impl BatchLayer {
    /// No batching: every request passes through (one stack type for "on" and "off").
    pub fn disabled() -> Self {
        Self {
            config: Arc::new(Config {
                path: None,
                prefix: String::new(),
                limit: 0,
                rate_limit: RateLimitLayer::unlimited(),
            }),
        }
    }
}

impl Default for BatchLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for BatchLayer {
    type Service = Batch<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Batch {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by [`BatchLayer`].
#[must_use]
#[derive(Debug, Clone)]
pub struct Batch<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Batch<S> {
    crate::macros::inner_service_accessors!();

    /// Whether a request to `path` is a batch this service answers (else it passes on).
    pub(crate) fn serves(&self, path: &str) -> bool {
        self.config.path.as_deref() == Some(path)
    }
}

impl<S, B, ResBody> Service<Request<B>> for Batch<S>
where
    S: Service<Request<ResponseBody<B>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::merge_patch::BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<crate::merge_patch::BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !self.serves(request.uri().path()) {
            return ResponseFuture::inner(self.inner.call(request.map(ResponseBody::inner)));
        }
        // First, as the rate limit does for any request: before the body is read.
        if let Err(error) = self.config.rate_limit.charge(&request) {
            let response = error.into_refusal(&request);
            return ResponseFuture::batch(Box::pin(std::future::ready(Ok(
                response.map(ResponseBody::error)
            ))));
        }
        let refuse = |error: crate::error::GraphError, allow: Option<&'static str>| {
            let mut response = error.into_refusal(&request);
            if let Some(allow) = allow {
                response
                    .headers_mut()
                    .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
            }
            ResponseFuture::batch(Box::pin(std::future::ready(Ok(
                response.map(ResponseBody::error)
            ))))
        };
        // RFC 9110 §15.5.6: the batch resource exists and takes POST only.
        if request.method() != Method::POST {
            return refuse(
                crate::error::GraphError::new(
                    crate::error::ErrorKind::MethodNotAllowed,
                    "The $batch resource takes POST only.",
                ),
                Some("POST"),
            );
        }
        // As for a single PATCH: a transfer coding we cannot decode is 501 before any body is
        // read, and the body must be JSON (415).
        if let Some(coding) = crate::merge_patch::unsupported_transfer_coding(request.headers()) {
            return refuse(
                crate::error::GraphError::new(
                    crate::error::ErrorKind::NotImplemented,
                    format!(
                        "The transfer coding {coding:?} is not supported; send the body with chunked alone."
                    ),
                ),
                None,
            );
        }
        if let Err(error) = crate::content_type::check_json_content_type(request.headers()) {
            return refuse(error, None);
        }
        if request.extensions().get::<InBatch>().is_some() {
            let error = crate::error::GraphError::new(
                crate::error::ErrorKind::BadRequest,
                "A batch cannot contain a batch.",
            );
            let ids = crate::request_id::RequestIds::of(&request);
            return ResponseFuture::batch(Box::pin(std::future::ready(Ok(error
                .into_response(&ids)
                .map(ResponseBody::error)))));
        }
        let inner = self.inner.clone();
        ResponseFuture::batch(future::run(inner, self.config.clone(), request))
    }
}
