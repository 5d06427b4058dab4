//! [`TimeoutLayer`]: a whole-request deadline. A client that stalls mid-body (or any request
//! that hangs) gets a Graph-style 408 instead of holding its connection and task forever.
//!
//! A write has one point of no return: the first compare-and-swap. The layer hands the service
//! a [`WriteDeadline`] in the request's extensions; the deadline and the write race for it once,
//! atomically. If the deadline wins, the write never starts and the caller gets 408; if the
//! write wins, it finishes, is audited and is answered with its real outcome, however long the
//! store takes — a write that was applied is never reported as timed out.
//!
//! | request                                         | status |
//! |-------------------------------------------------|--------|
//! | answered within the limit                       | the inner service's |
//! | not answered within the limit, no write started | 408 `requestTimeout`, the request's ids |
//! | a write started before the limit                | the write's own answer |
//! | a write that would start after the limit        | not started: 408 (in a `$batch`, its own) |
//!
//! The limit runs from the request's arrival at this layer, even when the request is first
//! polled later (hyper polls a pipelined request once it can write its answer): a write that
//! would start past it does not, and a request that is still running when the layer's timer
//! fires gets 408, as in the table.
//!
//! Mount it inside [`RequestIdLayer`](crate::RequestIdLayer) so the 408 carries the request's
//! ids; [`StackBuilder`](crate::StackBuilder) does. It needs a tokio runtime with timers
//! (`enable_time`, or `enable_all` as `#[tokio::main]` has): a request's timer is made the
//! first time it waits, on tokio's clock (paused with it in tests), unless a write of it has
//! started by then (the deadline could no longer answer).
//!
//! ```
//! use std::time::Duration;
//! use security_update::TimeoutLayer;
//! use tower::{service_fn, Layer, ServiceExt};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let slow = TimeoutLayer::new(Duration::from_millis(10)).layer(service_fn(|_req: http::Request<()>| async {
//!     std::future::pending::<()>().await;
//!     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! }));
//! let response = slow.oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(response.status(), 408);
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::body::ResponseBody;
use crate::error::{ErrorKind, GraphError};
use crate::request_id::RequestIds;

const OPEN: u8 = 0;
const WRITING: u8 = 1;
const TIMED_OUT: u8 = 2;

/// The race between a request's deadline and its write; see the [module docs](self).
#[derive(Clone)]
pub struct WriteDeadline {
    // One allocation for all of it: the layer's future holds a clone, and that future sits
    // inside every outer layer's, moved as each is made.
    shared: Arc<Shared>,
}

struct Shared {
    state: AtomicU8,
    limit: Duration,
    /// When the limit runs out, on tokio's clock (the one its timers keep, paused in tests
    /// with `test-util`). A request may carry several writes (the sub-requests of a batch
    /// share their batch's deadline): once one has started, the deadline no longer answers
    /// 408, so a write that has not started yet checks the time itself.
    at: tokio::time::Instant,
    /// The request's ids and HTTP version, for its 408.
    ids: RequestIds,
    version: http::Version,
}

impl std::fmt::Debug for WriteDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The ids it keeps for the 408 are the request's, not the deadline's: not shown.
        f.debug_struct("WriteDeadline")
            .field("state", &self.shared.state)
            .field("limit", &self.shared.limit)
            .field("at", &self.shared.at)
            .finish_non_exhaustive()
    }
}

/// As far as a limit too long for the clock reaches: thirty years, as tokio's own
/// `sleep(Duration::MAX)` does.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

impl WriteDeadline {
    pub(crate) fn new(limit: Duration, ids: RequestIds, version: http::Version) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            shared: Arc::new(Shared {
                state: AtomicU8::new(OPEN),
                limit,
                at: now.checked_add(limit).unwrap_or_else(|| now + FAR_FUTURE),
                ids,
                version,
            }),
        }
    }

    /// Claims the request for a write. Called right before each compare-and-swap;
    /// `already_started` is true for the retries of a write that has claimed it once (they go
    /// on whatever the time: a started write finishes).
    ///
    /// # Errors
    /// 408 when the deadline has passed and this write has not started: it must not start.
    pub fn begin_write(&self, already_started: bool) -> Result<(), GraphError> {
        if already_started {
            return Ok(());
        }
        // The limit may have run out before the deadline's timer could say so: the timer is
        // made on the request's first wait, and a request may be polled first only after its
        // limit (hyper polls a pipelined request once it can write its answer). A write that
        // would start late does not, whoever else has started.
        if tokio::time::Instant::now() >= self.shared.at {
            self.expire();
            return Err(timed_out(self.shared.limit));
        }
        match self
            .shared
            .state
            .compare_exchange(OPEN, WRITING, Ordering::AcqRel, Ordering::Acquire)
        {
            // Or another write of the same request (a batch) holds the deadline off; this one
            // starts, within the limit.
            Ok(_) | Err(WRITING) => Ok(()),
            Err(_) => Err(timed_out(self.shared.limit)),
        }
    }

    /// 408 if the deadline has already passed: a write that has not started can stop early
    /// (before queueing or merging), since its caller has been answered.
    ///
    /// # Errors
    /// 408 when the deadline has passed.
    pub fn check(&self) -> Result<(), GraphError> {
        if self.shared.state.load(Ordering::Acquire) == TIMED_OUT {
            Err(timed_out(self.shared.limit))
        } else {
            Ok(())
        }
    }

    /// Whether a write has claimed the deadline: then it never answers 408 (a started write
    /// finishes), and the layer needs no timer.
    fn write_started(&self) -> bool {
        self.shared.state.load(Ordering::Acquire) == WRITING
    }

    /// Claims the request for the deadline; false when a write has already started. True
    /// again when the deadline was taken already: by a write that found the limit run out
    /// ([`begin_write`](Self::begin_write)) before the timer fired, and the layer must then
    /// answer 408 for whatever else the request is still doing (a batch's other parts).
    fn expire(&self) -> bool {
        matches!(
            self.shared.state.compare_exchange(
                OPEN,
                TIMED_OUT,
                Ordering::AcqRel,
                Ordering::Acquire
            ),
            Ok(_) | Err(TIMED_OUT)
        )
    }
}

#[cold]
fn timed_out(limit: Duration) -> GraphError {
    GraphError::new(
        ErrorKind::RequestTimeout,
        format!(
            "The request was not completed within {} seconds; send it again.",
            limit.as_secs_f64()
        ),
    )
}

/// Answers 408 when a request takes longer than its limit; see the [module docs](self).
#[must_use]
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    limit: Option<Duration>,
}

impl TimeoutLayer {
    /// A deadline of `limit` per request.
    pub fn new(limit: Duration) -> Self {
        Self { limit: Some(limit) }
    }

    /// No deadline: requests pass through untouched.
    pub fn disabled() -> Self {
        Self { limit: None }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            limit: self.limit,
        }
    }
}

/// The service made by [`TimeoutLayer`].
#[must_use]
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    limit: Option<Duration>,
}

impl<S> Timeout<S> {
    crate::macros::inner_service_accessors!();

    /// The limit of a request's time, if there is one.
    pub(crate) fn limit(&self) -> Option<Duration> {
        self.limit
    }
}

impl<S, B, ResBody> Service<Request<B>> for Timeout<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let Some(limit) = self.limit else {
            return ResponseFuture::new(self.inner.call(request), None);
        };
        let deadline = WriteDeadline::new(limit, RequestIds::of(&request), request.version());
        request.extensions_mut().insert(deadline.clone());
        ResponseFuture::new(self.inner.call(request), Some(deadline))
    }
}

impl<F> ResponseFuture<F> {
    /// `inner`'s answer, or 408 when `deadline` runs out first (none: `inner`'s answer).
    pub(crate) fn new(inner: F, deadline: Option<WriteDeadline>) -> Self {
        Self {
            inner,
            // Made the first time the inner future is not ready, unless a write has started
            // by then: most requests are answered within their first poll (a body that came
            // with its head, a store that answers at once), and a timer made for nothing
            // costs a clock read and a runtime lookup.
            sleep: None,
            deadline,
        }
    }
}

pin_project! {
    /// Response future of [`Timeout`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // Boxed: made only for a request that waits (see `call`), where one allocation is
        // nothing next to the wait; inline, tokio's timer entry (~240 bytes) made every
        // request's whole future that much bigger, copied at each move of it.
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        // Holds the request's ids for the 408 as well.
        deadline: Option<WriteDeadline>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map(|response| response.map(ResponseBody::inner)));
        }
        if this.sleep.is_none() {
            // The first time the request waits: the timer, to the deadline set in `call`;
            // none while a write has started, since from then on the deadline can no longer
            // answer (the write wins). A write to the embedded store starts before its first
            // wait (its object is read in place, from the cache or the file; the commit is
            // the wait), and a timer is an allocation, a timer-wheel entry made and removed,
            // and a waker kept. (One to PostgreSQL waits for its read first: it keeps its
            // timer.)
            let Some(deadline) = this.deadline.as_ref() else {
                return Poll::Pending;
            };
            if deadline.write_started() {
                return Poll::Pending;
            }
            *this.sleep = Some(Box::pin(tokio::time::sleep_until(deadline.shared.at)));
        }
        let Some(sleep) = this.sleep.as_mut() else {
            return Poll::Pending;
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // The deadline passed. If a write already started, it wins: wait for it, with no
        // further deadline (the store's own timeouts bound it). With the deadline taken, no
        // timer is made again.
        *this.sleep = None;
        let Some(deadline) = this.deadline.take() else {
            return Poll::Pending;
        };
        if !deadline.expire() {
            return Poll::Pending;
        }
        let error = timed_out(deadline.shared.limit);
        // A 408 may come mid-body: it closes an HTTP/1 connection (`crate::refusal`).
        let response = error.into_response(&deadline.shared.ids);
        let response = crate::refusal::close_after(response, deadline.shared.version);
        Poll::Ready(Ok(response.map(ResponseBody::error)))
    }
}

#[cfg(test)]
#[path = "timeout_tests.rs"]
mod tests;
