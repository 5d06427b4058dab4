//! [`ResponseFuture`] of the merge-patch service: reads the body (bounded by
//! `http_body_util::Limited`, gathered by `Collect`), parses it, and calls the inner service
//! with the parsed [`MergePatch`] in the request's extensions — or answers the refusal.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use http_body_util::combinators::Collect;
use http_body_util::{Full, Limited};
use pin_project_lite::pin_project;
use tower::Service;

use super::{BoxError, MergePatch, RequestBody, read_error};
use crate::body::{ResponseBody, polled_after_completion};
use crate::error::GraphError;
use crate::request_id::RequestIds;

pin_project! {
    /// Response future of [`MergePatchService`](super::MergePatchService).
    pub struct ResponseFuture<S, F, B>
    where
        Limited<B>: Body,
    {
        #[pin]
        state: State<S, F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F, B>
    where
        Limited<B>: Body,
    {
        Collecting {
            #[pin]
            collect: Collect<Limited<B>>,
            parts: Option<Parts>,
            inner: Option<S>,
            limit: usize,
            max_depth: usize,
        },
        Inner { #[pin] future: F },
        Rejected { response: Option<Response<Full<Bytes>>> },
    }
}

impl<S, F, B> std::fmt::Debug for ResponseFuture<S, F, B>
where
    Limited<B>: Body,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, F, B> ResponseFuture<S, F, B>
where
    Limited<B>: Body,
{
    pub(super) fn inner(future: F) -> Self {
        Self {
            state: State::Inner { future },
        }
    }

    pub(super) fn rejected(error: GraphError, parts: &Parts) -> Self {
        let ids = RequestIds::from_parts(&parts.headers, &parts.extensions);
        Self {
            state: State::Rejected {
                response: Some(error.into_response(&ids)),
            },
        }
    }

    pub(super) fn collecting(
        collect: Collect<Limited<B>>,
        parts: Parts,
        inner: S,
        limit: usize,
        max_depth: usize,
    ) -> Self {
        Self {
            state: State::Collecting {
                collect,
                parts: Some(parts),
                inner: Some(inner),
                limit,
                max_depth,
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
                StateProj::Collecting {
                    collect,
                    parts,
                    inner,
                    limit,
                    max_depth,
                } => {
                    let outcome = ready!(collect.poll(cx))
                        .map(http_body_util::Collected::to_bytes)
                        .map_err(|error| read_error(&error, *limit));
                    let (Some(mut parts), Some(mut inner)) = (parts.take(), inner.take()) else {
                        return Poll::Ready(Ok(polled_after_completion().map(ResponseBody::error)));
                    };
                    match outcome.and_then(|raw| MergePatch::parse(raw, *max_depth)) {
                        Ok(patch) => {
                            let raw = patch.raw.clone();
                            parts.extensions.insert(patch);
                            let request = Request::from_parts(parts, RequestBody::bytes(raw));
                            State::Inner {
                                future: inner.call(request),
                            }
                        }
                        Err(error) => {
                            let ids = RequestIds::from_parts(&parts.headers, &parts.extensions);
                            State::Rejected {
                                response: Some(error.into_response(&ids)),
                            }
                        }
                    }
                }
            };
            state.set(next);
        }
    }
}
