//! [`ResponseFuture`] of the service: ready at once for requests refused before the store is
//! involved; otherwise an operation that runs to its end even if the request goes away.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;

use crate::error::{ErrorKind, GraphError};
use crate::request_id::RequestIds;

pub(crate) type BoxFuture =
    Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

/// Response future of [`SecurityUpdateService`](super::SecurityUpdateService).
pub struct ResponseFuture {
    kind: Kind,
}

enum Kind {
    Ready(Option<Response<Full<Bytes>>>),
    Pending(BoxFuture),
    Spawned(tokio::task::JoinHandle<Result<Response<Full<Bytes>>, Infallible>>),
}

impl ResponseFuture {
    pub(crate) fn ready(response: Response<Full<Bytes>>) -> Self {
        Self {
            kind: Kind::Ready(Some(response)),
        }
    }

    /// Runs the operation so that it finishes even if the request goes away (client gone,
    /// timeout, stream reset): a save that has started (redb's blocking commit, a statement
    /// sent to `PostgreSQL`) may land anyway, and then it must be audited like any other.
    ///
    /// Stores that answer at once (the memory store) finish on a first poll right here, with
    /// nothing to protect and no task to spawn. An operation that has to wait moves to its own
    /// tokio task, which dropping this future does not cancel. (A future polled with a no-op
    /// waker registers the real one on its next poll, so handing it on is sound.) Outside a
    /// tokio runtime there is nowhere to spawn, so the operation is polled in place.
    pub(crate) fn run_to_the_end(mut future: BoxFuture) -> Self {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Self {
                kind: Kind::Pending(future),
            };
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(response)) => Self::ready(response),
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => Self {
                kind: Kind::Spawned(runtime.spawn(future)),
            },
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.kind {
            Kind::Ready(response) => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(crate::body::polled_after_completion))),
            Kind::Pending(future) => future.as_mut().poll(cx),
            Kind::Spawned(task) => Pin::new(task).poll(cx).map(|joined| {
                joined.unwrap_or_else(|_| {
                    Ok(
                        GraphError::new(ErrorKind::Internal, "the request's task failed")
                            .into_response(&RequestIds::generate(None)),
                    )
                })
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// An operation that waits for its store, answering with its outcome; the operation counts
    /// as running ([`InFlight`](super::InFlight)) until the answer is made. A named future, so
    /// that the operation's future is held once: an `async` block awaiting it keeps it twice
    /// (as captured and as awaited), and this is boxed for every such request.
    pub(crate) struct Answering<F> {
        #[pin]
        operation: F,
        ids: RequestIds,
        entered: Option<super::in_flight::Entered>,
    }
}

impl<F> Answering<F> {
    pub(crate) fn new(operation: F, ids: RequestIds, entered: super::in_flight::Entered) -> Self {
        Self {
            operation,
            ids,
            entered: Some(entered),
        }
    }
}

impl<F> Future for Answering<F>
where
    F: Future<Output = Result<super::reply::Reply, GraphError>>,
{
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = std::task::ready!(this.operation.poll(cx));
        let response = match outcome {
            Ok(reply) => reply.into_response(this.ids),
            Err(error) => error.into_response(this.ids),
        };
        // The operation ends with its answer, not when this future is dropped later.
        this.entered.take();
        Poll::Ready(Ok(response))
    }
}
