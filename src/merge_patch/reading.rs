//! What the merge-patch layer checks of a request's head, and how it reads and parses the
//! body: shared by [`MergePatchService`](super::MergePatchService) and the stack's
//! [`Endpoint`](crate::endpoint::Endpoint), which must refuse and read alike.
//!
//! The body is copied into one contiguous buffer as frames arrive, rather than gathered with
//! `http_body_util::Collect`: `Collect` keeps one `Bytes` handle per frame (each pinning the
//! connection's read buffer it points into), so a 1 MiB body sent as 1-byte chunks cost tens of
//! MiB. Copying costs one memcpy of at most the body limit, and a body that arrives in one
//! frame is kept without copying.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, Method, Response, header};
use http_body::Body;
use http_body_util::{Full, Limited};
use pin_project_lite::pin_project;

use super::{BoxError, MergePatch, bad_request, declared_length, read_error, too_large};
use crate::error::{ErrorKind, GraphError};
use crate::refusal::close_after;
use crate::request_id::RequestIds;

/// The first transfer coding other than `chunked`, if any (codings are case-insensitive).
pub(crate) fn unsupported_transfer_coding(headers: &HeaderMap) -> Option<String> {
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

/// The head's checks of a request that names a transfer coding. Out of line (see
/// [`check_head`]): its code stays out of the instruction-cache lines other requests run.
#[cold]
#[inline(never)]
fn check_transfer_coding(method: &Method, headers: &HeaderMap) -> Result<(), GraphError> {
    // RFC 9112 §6.1: a transfer coding we do not implement is 501, before any body is read
    // (`gzip, chunked` read as plain chunked would hand the service compressed bytes).
    if let Some(coding) = unsupported_transfer_coding(headers) {
        return Err(GraphError::new(
            ErrorKind::NotImplemented,
            format!(
                "The transfer coding {coding:?} is not supported; send the body with chunked alone."
            ),
        ));
    }
    // Both framings at once is how request smuggling starts (RFC 9112 §6.3): refuse.
    if method == Method::PATCH && headers.contains_key(header::CONTENT_LENGTH) {
        return Err(bad_request(
            "Content-Length and Transfer-Encoding are both present",
        ));
    }
    Ok(())
}

/// What the layer decides from a request's head, before any body is read.
pub(crate) enum Head {
    /// Not a `PATCH`: passed on untouched.
    PassOn,
    /// A `PATCH` whose body is to be read.
    Read,
}

/// The layer's check of a request's head: 501 for a transfer coding it does not implement
/// (any method), and for a `PATCH` 400 for both framings at once, 413 for a declared length
/// over `limit`.
pub(crate) fn check_head(
    method: &Method,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Head, GraphError> {
    // Most requests carry a length, not a coding: what a coding needs checked is out of line.
    if headers.contains_key(header::TRANSFER_ENCODING) {
        check_transfer_coding(method, headers)?;
    }
    if method != Method::PATCH {
        return Ok(Head::PassOn);
    }
    if let Some(length) = declared_length(headers)
        && length > limit as u64
    {
        return Err(too_large(limit));
    }
    Ok(Head::Read)
}

pin_project! {
    /// A `PATCH` body being read into one buffer, bounded by `limit`, to be parsed as a
    /// merge patch nested at most `max_depth` deep.
    pub(crate) struct BodyReader<B> {
        #[pin]
        body: Limited<B>,
        first: Option<Bytes>,
        rest: Option<BytesMut>,
        limit: usize,
        max_depth: usize,
    }
}

/// Why a body gave no patch, and whether it was left partly unread (the answer then closes
/// an HTTP/1 connection: the rest would be taken for the next request).
pub(crate) struct NoPatch {
    pub(crate) error: GraphError,
    pub(crate) unread: bool,
}

impl<B> BodyReader<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(body: B, limit: usize, max_depth: usize) -> Self {
        Self {
            body: Limited::new(body, limit),
            first: None,
            rest: None,
            limit,
            max_depth,
        }
    }

    /// Reads to the end of the body and parses it.
    pub(crate) fn poll_patch(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<MergePatch, NoPatch>> {
        let mut this = self.project();
        loop {
            match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        append(this.first, this.rest, data);
                    }
                }
                Some(Err(error)) => {
                    return Poll::Ready(Err(NoPatch {
                        error: read_error(&error, *this.limit),
                        unread: true,
                    }));
                }
                None => {
                    let raw = take(this.first, this.rest);
                    return Poll::Ready(MergePatch::parse(raw, *this.max_depth).map_err(|error| {
                        NoPatch {
                            error,
                            unread: false,
                        }
                    }));
                }
            }
        }
    }
}

impl NoPatch {
    /// The answer to the request whose head is `parts`.
    #[cold]
    pub(crate) fn into_response(self, parts: &Parts) -> Response<Full<Bytes>> {
        let ids = RequestIds::from_parts(&parts.headers, &parts.extensions);
        self.into_response_with(&ids, parts.version)
    }

    /// [`into_response`](Self::into_response) with the ids the caller holds, for a request
    /// of `version`.
    #[cold]
    pub(crate) fn into_response_with(
        self,
        ids: &RequestIds,
        version: http::Version,
    ) -> Response<Full<Bytes>> {
        let response = self.error.into_response(ids);
        if self.unread {
            close_after(response, version)
        } else {
            response
        }
    }
}

/// Adds a data frame: the first is kept as it is, later ones are copied into one buffer.
fn append(first: &mut Option<Bytes>, rest: &mut Option<BytesMut>, data: Bytes) {
    if data.is_empty() {
        return;
    }
    match (first.as_ref(), rest.as_mut()) {
        (None, _) => *first = Some(data),
        (Some(head), None) => {
            let mut joined = BytesMut::with_capacity(head.len() + data.len());
            joined.extend_from_slice(head);
            joined.extend_from_slice(&data);
            *rest = Some(joined);
        }
        (Some(_), Some(joined)) => joined.extend_from_slice(&data),
    }
}

/// The body read so far, as one `Bytes`.
fn take(first: &mut Option<Bytes>, rest: &mut Option<BytesMut>) -> Bytes {
    match (first.take(), rest.take()) {
        (_, Some(joined)) => joined.freeze(),
        (Some(head), None) => head,
        (None, None) => Bytes::new(),
    }
}
