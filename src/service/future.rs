//! [`ResponseFuture`] of the service: ready at once for requests refused before the store is
//! involved; otherwise an operation that runs to its end even if the request goes away (its
//! future dropped), within a tokio runtime.

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
///
/// Poll it to its end or drop it, as every tower response future: an operation waiting for
/// its store is driven by this future's polls, and moves to a tokio task of its own when this
/// future is dropped unfinished, so that a write that may already have landed is finished and
/// audited. A future kept without being polled (or leaked) holds its write where it stopped:
/// with the object's queue of writers if it had joined it, and counted as running by
/// [`InFlight`](crate::service::InFlight).
pub struct ResponseFuture {
    kind: Kind,
}

enum Kind {
    Ready(Option<Response<Full<Bytes>>>),
    /// An operation that waits for its store, polled in place; `runtime` is where it goes on
    /// if this future is dropped before it ends (none outside a tokio runtime).
    Running {
        operation: BoxFuture,
        runtime: Option<tokio::runtime::Handle>,
    },
    /// The operation ended (answered or panicked).
    Done,
}

impl ResponseFuture {
    pub(crate) fn ready(response: Response<Full<Bytes>>) -> Self {
        Self {
            kind: Kind::Ready(Some(response)),
        }
    }

    /// Runs the operation so that it finishes even if the request goes away (client gone,
    /// timeout, stream reset): a save that has started (a swap queued for redb's committer, a
    /// statement sent to `PostgreSQL`) may land anyway, and then it must be audited like any
    /// other.
    ///
    /// The operation is polled in place, by whoever polls this future (hyper's connection
    /// or stream task, a `$batch`'s sub-request task), and moves to a tokio task of its own
    /// only if this future is dropped before it ends, on the runtime it was made in (from
    /// whichever thread drops it). Spawning every waiting operation instead costs a task, a
    /// second wake-up and a second poll for each of them (the store's answer wakes the task,
    /// whose end wakes the connection): with the embedded store, ~2.5k instructions a PATCH
    /// (benches/README.md, tenth session). An operation polled here and finished elsewhere
    /// is sound: a future registers the waker of its latest poll. Made outside a tokio
    /// runtime, there is nowhere to move it, and dropping this future drops the operation.
    pub(crate) fn run_to_the_end(operation: BoxFuture) -> Self {
        Self {
            kind: Kind::Running {
                operation,
                runtime: tokio::runtime::Handle::try_current().ok(),
            },
        }
    }
}

impl Drop for ResponseFuture {
    fn drop(&mut self) {
        // Matched in place first: most of these end answered, and moving `kind` out to look
        // at it would copy a whole response.
        if !matches!(
            self.kind,
            Kind::Running {
                runtime: Some(_),
                ..
            }
        ) {
            return;
        }
        if let Kind::Running {
            operation,
            runtime: Some(runtime),
        } = std::mem::replace(&mut self.kind, Kind::Done)
        {
            // A runtime shutting down drops the task at once, as it would have dropped this.
            drop(runtime.spawn(operation));
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
        let response = match &mut self.kind {
            Kind::Ready(response) => {
                return Poll::Ready(Ok(response
                    .take()
                    .unwrap_or_else(crate::body::polled_after_completion)));
            }
            Kind::Done => crate::body::polled_after_completion(),
            // A panicking operation is answered 500 by its own future (`Answering`), with the
            // request's ids.
            Kind::Running { operation, .. } => match operation.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(response)) => response,
                Poll::Ready(Err(never)) => match never {},
            },
        };
        // Ended: nothing for `drop` to move on.
        self.kind = Kind::Done;
        Poll::Ready(Ok(response))
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
        // See `Operation::Read`'s `unread`.
        unread: Option<http::Version>,
    }
}

impl<F> Answering<F> {
    pub(crate) fn new(operation: F, ids: RequestIds, entered: super::in_flight::Entered) -> Self {
        Self {
            operation,
            ids,
            entered: Some(entered),
            unread: None,
        }
    }

    /// The answer closes an HTTP/1 connection when `unread` (see `Operation::Read`).
    pub(crate) fn closing_if(self, unread: Option<http::Version>) -> Self {
        Self { unread, ..self }
    }
}

impl<F> Future for Answering<F>
where
    F: Future<Output = Result<super::reply::Reply, GraphError>>,
{
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (ids, unread) = (&*this.ids, *this.unread);
        // A panicking operation, or a panic in the making of its answer, answers 500, as a
        // panicking task of its own did, and takes neither the connection's task nor anything
        // else down with it. The answer carries the request's ids: no layer outside may be
        // there to stamp them (the built stack's shortcut), and the ids of an error's body are
        // the headers' ones.
        let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            this.operation.poll(cx).map(|outcome| match outcome {
                Ok(reply) => reply.into_response(ids, unread),
                Err(error) => crate::refusal::close_if_unread(error.into_response(ids), unread),
            })
        }));
        let response = match answered {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(response)) => response,
            Err(_) => {
                let error = GraphError::new(ErrorKind::Internal, "the request's operation failed");
                crate::refusal::close_if_unread(error.into_response(ids), unread)
            }
        };
        // The operation ends with its answer, not when this future is dropped later.
        this.entered.take();
        Poll::Ready(Ok(response))
    }
}
