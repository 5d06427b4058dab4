//! [`ResponseFuture`] of the merge-patch service: reads the body (see `reading`), parses it,
//! and calls the inner service with the parsed [`MergePatch`] in the request's extensions —
//! or answers the refusal.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower::Service;

use super::reading::BodyReader;
use super::{BoxError, RequestBody};
use crate::body::{ResponseBody, polled_after_completion};

pin_project! {
    /// Response future of [`MergePatchService`](super::MergePatchService).
    pub struct ResponseFuture<S, F, B> {
        #[pin]
        state: State<S, F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F, B> {
        // Boxed: the request's head, the service and the body are ~300 bytes, and this future
        // sits inside every outer layer's; inline they made each of those bigger, and every
        // layer's future is copied as it is made. With the box a PATCH copies 1.6 KB less in
        // process (`scripts/memmove_bytes.py`), for one allocation and no more instructions.
        Collecting { collecting: Pin<Box<Collecting<S, B>>> },
        Inner { #[pin] future: F },
        Rejected { response: Option<Response<Full<Bytes>>> },
    }
}

pin_project! {
    /// A PATCH whose body is being read.
    #[project = CollectingProj]
    struct Collecting<S, B> {
        #[pin]
        body: BodyReader<B>,
        parts: Option<Parts>,
        inner: Option<S>,
    }
}

impl<S, F, B> std::fmt::Debug for ResponseFuture<S, F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, F, B> ResponseFuture<S, F, B> {
    pub(super) fn inner(future: F) -> Self {
        Self {
            state: State::Inner { future },
        }
    }

    /// Refused before its body was read, with `response` (see `crate::refusal`).
    #[cold]
    pub(super) fn rejected(response: Response<Full<Bytes>>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    pub(super) fn collecting(body: BodyReader<B>, parts: Parts, inner: S) -> Self {
        Self {
            state: State::Collecting {
                collecting: Box::pin(Collecting {
                    body,
                    parts: Some(parts),
                    inner: Some(inner),
                }),
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, S::Future, B>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut state = self.as_mut().project().state;
            let next = match state.as_mut().project() {
                StateProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Rejected { response } => {
                    let response = response.take().unwrap_or_else(polled_after_completion);
                    return Poll::Ready(Ok(response.map(ResponseBody::error)));
                }
                StateProj::Collecting { collecting } => {
                    let CollectingProj { body, parts, inner } = collecting.as_mut().project();
                    let parsed = ready!(body.poll_patch(cx));
                    let (Some(mut parts), Some(mut inner)) = (parts.take(), inner.take()) else {
                        return Poll::Ready(Ok(polled_after_completion().map(ResponseBody::error)));
                    };
                    match parsed {
                        Ok(patch) => {
                            let raw = patch.raw().clone();
                            parts.extensions.insert(patch);
                            let request = Request::from_parts(parts, RequestBody::bytes(raw));
                            State::Inner {
                                future: inner.call(request),
                            }
                        }
                        Err(refused) => State::Rejected {
                            response: Some(refused.into_response(&parts)),
                        },
                    }
                }
            };
            state.set(next);
        }
    }
}
