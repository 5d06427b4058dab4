//! The one two-way body of the crate, and the one "inner or rejected" future.
//!
//! A layer that rejects a request must answer with a JSON error body without knowing the inner
//! service's body type. Rather than demanding `ResBody: From<Bytes>` or boxing every response,
//! each layer answers [`ResponseBody<ResBody>`](ResponseBody), which delegates to the inner body
//! and costs nothing on the happy path (the shape of tower-http's `limit::ResponseBody`). The
//! merge-patch layer hands its inner service the same type as its request body
//! ([`RequestBody`](crate::merge_patch::RequestBody)): the untouched body, or the bytes it has
//! already read.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

pin_project! {
    /// A body that is either the inner one or bytes of our own: a layer's response body (the
    /// inner service's body or a Graph error rendered by the layer), and the merge-patch
    /// layer's request body (the untouched body or the patch bytes already read).
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Error { #[pin] body: Full<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    /// Wraps the inner service's body.
    pub fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// A body holding a rendered error.
    pub fn error(body: Full<Bytes>) -> Self {
        Self {
            kind: Kind::Error { body },
        }
    }

    /// A body holding `bytes` already in memory.
    pub fn bytes(bytes: Bytes) -> Self {
        Self::error(Full::new(bytes))
    }
}

impl<B: Default> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::inner(B::default())
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Error { body } => body.poll_frame(cx).map(|frame| {
                frame.map(|result| result.map_err(|never: Infallible| match never {}))
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Error { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Error { body } => body.size_hint(),
        }
    }
}

pin_project! {
    /// The response future shared by layers that either pass a request on or reject it at once.
    #[project = ResponseFutureProj]
    #[derive(Debug)]
    pub enum ResponseFuture<F> {
        /// The inner service is answering.
        Inner { #[pin] future: F },
        /// The layer rejected the request with this response.
        Rejected { response: Option<Response<Full<Bytes>>> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(future: F) -> Self {
        Self::Inner { future }
    }

    #[cold]
    pub(crate) fn rejected(response: Response<Full<Bytes>>) -> Self {
        Self::Rejected {
            response: Some(response),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Inner { future } => future
                .poll(cx)
                .map(|result| result.map(|response| response.map(ResponseBody::inner))),
            ResponseFutureProj::Rejected { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(polled_after_completion)
                .map(ResponseBody::error))),
        }
    }
}

/// `text` as an answer's bytes, without the spare room its growth left when that is large:
/// a `String` grows by doubling, and an answer a slow reader holds keeps its whole allocation,
/// up to twice its length, where a server's budget for such answers counts the length.
pub(crate) fn answer_bytes(mut text: String) -> Bytes {
    if text.capacity() - text.len() > 4096 {
        text.shrink_to_fit();
    }
    Bytes::from(text)
}

/// What a rejected future yields if polled again: an empty 500 rather than a panic.
pub(crate) fn polled_after_completion() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    response
}

#[cfg(test)]
mod tests {
    use super::answer_bytes;

    #[test]
    fn a_large_answer_keeps_no_spare_room_and_a_small_one_is_not_moved() {
        let mut large = String::with_capacity(200_000);
        large.push_str(&"x".repeat(100_000));
        let bytes = answer_bytes(large);
        let kept = bytes.try_into_mut().expect("the only owner").capacity();
        assert!(kept < 100_000 + 4096, "kept {kept} bytes for 100,000");

        let mut small = String::with_capacity(1024);
        small.push_str("{}");
        let address = small.as_ptr();
        assert_eq!(answer_bytes(small).as_ptr(), address);
    }
}
