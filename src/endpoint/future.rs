//! [`ResponseFuture`] of [`Endpoint`](super::Endpoint): reads a `PATCH` body, parses it, and
//! hands the patch with the decision to the service's operation — or answers the refusal.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;

use crate::auth::{Access, Principal};
use crate::body::polled_after_completion;
use crate::merge_patch::BoxError;
use crate::merge_patch::reading::BodyReader;
use crate::request_id::RequestIds;
use crate::service::{self, Handed, SecurityUpdateService};
use crate::store::{ObjectKey, SecurityStore};
use crate::timeout::WriteDeadline;

pin_project! {
    /// Response future of [`Endpoint`](super::Endpoint).
    ///
    /// Poll it to its end or drop it: once the body is read, it is the service's own
    /// [`ResponseFuture`](crate::ResponseFuture), whose write goes on if it is dropped.
    pub struct ResponseFuture<S, B> {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B> {
        // Boxed, as the merge-patch layer's: the request's head, the service and the body
        // are ~300 bytes, and this future sits inside every outer layer's, each copied as it
        // is made.
        Reading { reading: Pin<Box<Reading<S, B>>> },
        Answering { future: service::ResponseFuture },
    }
}

pin_project! {
    /// A `PATCH` whose body is being read, and what was decided for it.
    #[project = ReadingProj]
    struct Reading<S, B> {
        #[pin]
        body: BodyReader<B>,
        parts: Option<Parts>,
        service: SecurityUpdateService<S>,
        handover: Option<Handover>,
    }
}

/// What the endpoint decided of a request whose body is being read, and what it carries.
pub(super) struct Handover {
    pub(super) access: Access,
    pub(super) key: ObjectKey,
    pub(super) actor: Principal,
    pub(super) deadline: Option<WriteDeadline>,
    pub(super) ids: RequestIds,
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, B> ResponseFuture<S, B> {
    /// Refused before the body was read, with `response` (see `crate::refusal`).
    #[cold]
    pub(super) fn refused(response: Response<Full<Bytes>>) -> Self {
        Self::answering(service::ResponseFuture::ready(response))
    }

    /// The service is answering.
    pub(super) fn answering(future: service::ResponseFuture) -> Self {
        Self {
            state: State::Answering { future },
        }
    }

    pub(super) fn reading(
        body: BodyReader<B>,
        parts: Parts,
        service: SecurityUpdateService<S>,
        handover: Handover,
    ) -> Self {
        Self {
            state: State::Reading {
                reading: Box::pin(Reading {
                    body,
                    parts: Some(parts),
                    service,
                    handover: Some(handover),
                }),
            },
        }
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: SecurityStore,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut state = self.as_mut().project().state;
            let future = match state.as_mut().project() {
                StateProj::Answering { future } => return Pin::new(future).poll(cx),
                StateProj::Reading { reading } => {
                    let ReadingProj {
                        body,
                        parts,
                        service,
                        handover,
                    } = reading.as_mut().project();
                    let parsed = ready!(body.poll_patch(cx));
                    let (Some(parts), Some(handover)) = (parts.take(), handover.take()) else {
                        return Poll::Ready(Ok(polled_after_completion()));
                    };
                    let Handover {
                        access,
                        key,
                        actor,
                        deadline,
                        ids,
                    } = handover;
                    match parsed {
                        Ok(patch) => {
                            let handed = Handed::Direct {
                                access,
                                key,
                                actor,
                                deadline,
                                patch: Some(patch),
                            };
                            service.call_handed(Request::from_parts(parts, ()), ids, handed)
                        }
                        Err(refused) => service::ResponseFuture::ready(
                            refused.into_response_with(&ids, parts.version),
                        ),
                    }
                }
            };
            state.set(State::Answering { future });
        }
    }
}
