//! [`MergePatchLayer`] and its service: bounds a `PATCH` body before reading it (by
//! `Content-Length`) and hands the reading to [`ResponseFuture`].

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower::{Layer, Service};

use super::future::ResponseFuture;
use super::reading::{BodyReader, Head, check_head};
use super::{BoxError, DEFAULT_LIMIT, DEFAULT_MAX_DEPTH, RequestBody, parse};
use crate::body::ResponseBody;

/// Reads, bounds and parses `PATCH` bodies; see the [module docs](crate::merge_patch).
#[must_use]
#[derive(Debug, Clone, Copy)]
pub struct MergePatchLayer {
    limit: usize,
    max_depth: usize,
}

impl Default for MergePatchLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl MergePatchLayer {
    /// A 1 MiB body limit and a nesting bound of 64.
    pub fn new() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }

    /// Sets the body limit in bytes; longer bodies are answered 413.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The body limit in bytes.
    #[must_use]
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many arrays and objects may nest.
    pub(crate) fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// Sets how many arrays and objects may nest (at most 128, `serde_json`'s own bound).
    pub fn with_max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = max_depth.min(parse::SERDE_JSON_DEPTH_LIMIT);
        self
    }
}

impl<S> Layer<S> for MergePatchLayer {
    type Service = MergePatchService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MergePatchService {
            inner,
            limit: self.limit,
            max_depth: self.max_depth,
        }
    }
}

/// The service made by [`MergePatchLayer`].
#[must_use]
#[derive(Debug, Clone)]
pub struct MergePatchService<S> {
    inner: S,
    limit: usize,
    max_depth: usize,
}

impl<S> MergePatchService<S> {
    crate::macros::inner_service_accessors!();
}

impl<S, B, ResBody> Service<Request<B>> for MergePatchService<S>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>> + Clone,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match check_head(request.method(), request.headers(), self.limit) {
            Ok(Head::PassOn) => {
                return ResponseFuture::inner(self.inner.call(request.map(RequestBody::inner)));
            }
            Ok(Head::Read) => {}
            Err(error) => return ResponseFuture::rejected(error.into_refusal(&request)),
        }
        let (parts, body) = request.into_parts();
        // The future calls the inner service once the body is in, so it must own the service
        // that was polled ready. See "Be careful when cloning inner services" in tower-service's
        // docs (`tower-service/src/lib.rs`): keep the clone, send the ready one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::collecting(
            BodyReader::new(body, self.limit, self.max_depth),
            parts,
            inner,
        )
    }
}
