//! [`MergePatchLayer`] and its service: bounds a `PATCH` body before reading it (by
//! `Content-Length`) and hands the reading to [`ResponseFuture`].

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, header};
use http_body::Body;
use http_body_util::Limited;
use tower::{Layer, Service};

use super::future::ResponseFuture;
use super::{
    BoxError, DEFAULT_LIMIT, DEFAULT_MAX_DEPTH, RequestBody, bad_request, declared_length, parse,
    too_large,
};
use crate::body::ResponseBody;
use crate::error::{ErrorKind, GraphError};

/// The first transfer coding other than `chunked`, if any (codings are case-insensitive).
pub(crate) fn unsupported_transfer_coding(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("?").split(','))
        .map(str::trim)
        // Empty list elements do not count (RFC 9110 §5.6.1).
        .filter(|coding| !coding.is_empty())
        .find(|coding| !coding.eq_ignore_ascii_case("chunked"))
        .map(|coding| coding.chars().take(32).collect())
}

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
        // RFC 9112 §6.1: a transfer coding we do not implement is 501, before any body is read
        // (`gzip, chunked` read as plain chunked would hand the service compressed bytes).
        if let Some(coding) = unsupported_transfer_coding(request.headers()) {
            let (parts, _) = request.into_parts();
            let error = GraphError::new(
                ErrorKind::NotImplemented,
                format!(
                    "The transfer coding {coding:?} is not supported; send the body with chunked alone."
                ),
            );
            return ResponseFuture::rejected(error, &parts);
        }
        if request.method() != Method::PATCH {
            let future = self.inner.call(request.map(RequestBody::inner));
            return ResponseFuture::inner(future);
        }
        let (parts, body) = request.into_parts();
        // Both framings at once is how request smuggling starts (RFC 9112 §6.3): refuse.
        if parts.headers.contains_key(header::TRANSFER_ENCODING)
            && parts.headers.contains_key(header::CONTENT_LENGTH)
        {
            let error = bad_request("Content-Length and Transfer-Encoding are both present");
            return ResponseFuture::rejected(error, &parts);
        }
        if let Some(length) = declared_length(&parts)
            && length > self.limit as u64
        {
            return ResponseFuture::rejected(too_large(self.limit), &parts);
        }
        // The future calls the inner service once the body is in, so it must own the service
        // that was polled ready. See "Be careful when cloning inner services" in tower-service's
        // docs (`tower-service/src/lib.rs`): keep the clone, send the ready one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::collecting(
            Limited::new(body, self.limit),
            parts,
            inner,
            self.limit,
            self.max_depth,
        )
    }
}
