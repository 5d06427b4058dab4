//! [`InPlace`]: a tower service as hyper's service for an HTTP/1 connection, called where it
//! is.
//!
//! hyper calls its services through `&self`, tower's through `&mut self`; hyper-util's
//! `TowerToHyperService` bridges the two by cloning the tower service for every request and
//! driving the clone with `oneshot`. Our application is many `Arc`s deep (the stack's shared
//! parts, the access log's and the probes' state), so that clone and its drop cost ~18 atomic
//! instructions a request (`scripts/atomics.py`, benches/README.md), and the clone's futures
//! and state are moved and dropped for each.
//!
//! An HTTP/1 connection has one request in flight, and hyper calls its service and polls the
//! response future on the connection's task: one service a connection, in a `RefCell`, is
//! enough. A call asks it to be ready (with a no-op waker) and calls it in place. A service not
//! ready at once (none of ours: their readiness is their inner service's, down to the leaf,
//! always ready) goes with the request, driven by `oneshot` with the request's own waker, and a
//! clone of it stays for the next request: the one that was asked is the one a layer may have
//! queued for capacity (a semaphore's place), so it is the one that must be polled again.
//!
//! Not for HTTP/2: hyper's HTTP/2 server calls the service on the connection's task for every
//! stream and spawns the response futures, so work done in `call` (a token's signature, a
//! read) would run there for each stream in turn; `front_door` keeps hyper-util's adapter,
//! which does that work in each stream's task.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

/// hyper's service for one HTTP/1 connection; see the [module docs](self).
pub(crate) struct InPlace<S> {
    service: RefCell<S>,
}

impl<S> InPlace<S> {
    pub(crate) fn new(service: S) -> Self {
        Self {
            service: RefCell::new(service),
        }
    }
}

impl<S, R> hyper::service::Service<R> for InPlace<S>
where
    S: Service<R> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = InPlaceFuture<S, R>;

    fn call(&self, request: R) -> Self::Future {
        // Never borrowed already: a tower service's `call` cannot reach back into hyper's.
        let mut service = self.service.borrow_mut();
        let mut cx = Context::from_waker(Waker::noop());
        match service.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => InPlaceFuture::Called {
                future: service.call(request),
            },
            // A failed service answers with its error, once, as `oneshot` would.
            Poll::Ready(Err(error)) => InPlaceFuture::Failed { error: Some(error) },
            // Not ready at once: the service asked goes with the request and gets ready with
            // the request's own waker; a clone stays.
            Poll::Pending => {
                let clone = service.clone();
                let asked = std::mem::replace(&mut *service, clone);
                InPlaceFuture::Waiting {
                    oneshot: asked.oneshot(request),
                }
            }
        }
    }
}

pin_project! {
    /// The response future of [`InPlace`].
    #[project = Projected]
    pub(crate) enum InPlaceFuture<S, R>
    where
        S: Service<R>,
    {
        Called { #[pin] future: S::Future },
        Waiting { #[pin] oneshot: Oneshot<S, R> },
        Failed { error: Option<S::Error> },
    }
}

impl<S, R> Future for InPlaceFuture<S, R>
where
    S: Service<R>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Projected::Called { future } => future.poll(cx),
            Projected::Waiting { oneshot } => oneshot.poll(cx),
            Projected::Failed { error } => {
                Poll::Ready(Err(error.take().expect("polled after its error")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its clones and calls, and answers which one it is (0: the first, n: the nth
    /// clone); not ready for its first `pending_polls` polls.
    #[derive(Default)]
    struct Counting {
        clones: Arc<AtomicUsize>,
        calls: Arc<AtomicUsize>,
        pending_polls: usize,
        which: usize,
    }

    impl Clone for Counting {
        fn clone(&self) -> Self {
            let which = self.clones.fetch_add(1, Ordering::SeqCst) + 1;
            Self {
                clones: self.clones.clone(),
                calls: self.calls.clone(),
                pending_polls: self.pending_polls,
                which,
            }
        }
    }

    impl Service<u32> for Counting {
        type Response = (u32, usize);
        type Error = Infallible;
        type Future = std::future::Ready<Result<(u32, usize), Infallible>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            if self.pending_polls > 0 {
                self.pending_polls -= 1;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: u32) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok((request * 2, self.which)))
        }
    }

    #[tokio::test]
    async fn a_ready_service_is_called_in_place_without_a_clone() {
        let service = Counting::default();
        let (clones, calls) = (service.clones.clone(), service.calls.clone());
        let in_place = InPlace::new(service);
        for n in 0..3 {
            let answer = hyper::service::Service::call(&in_place, n).await;
            assert_eq!(answer.unwrap(), (n * 2, 0));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(
            clones.load(Ordering::SeqCst),
            0,
            "no clone for a ready service"
        );
    }

    #[tokio::test]
    async fn a_service_not_ready_at_once_goes_with_the_request_and_a_clone_stays() {
        let service = Counting {
            pending_polls: 2,
            ..Counting::default()
        };
        let (clones, calls) = (service.clones.clone(), service.calls.clone());
        let in_place = InPlace::new(service);
        let answer = hyper::service::Service::call(&in_place, 21).await;
        // The service that was asked (and may hold a place in a queue) answered it.
        assert_eq!(answer.unwrap(), (42, 0));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            clones.load(Ordering::SeqCst),
            1,
            "one clone stays for the next"
        );
        // The clone that stayed serves the next request (after its own wait).
        let answer = hyper::service::Service::call(&in_place, 1).await;
        assert_eq!(answer.unwrap(), (2, 1));
    }

    /// Fails in `poll_ready`; counts how often it is asked and called.
    #[derive(Clone, Default)]
    struct Failing {
        polls: Arc<AtomicUsize>,
        calls: Arc<AtomicUsize>,
    }

    impl Service<u32> for Failing {
        type Response = u32;
        type Error = &'static str;
        type Future = std::future::Ready<Result<u32, &'static str>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), &'static str>> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            Poll::Ready(Err("broken"))
        }

        fn call(&mut self, request: u32) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(request))
        }
    }

    #[tokio::test]
    async fn a_service_that_fails_to_get_ready_answers_its_error_uncalled() {
        let service = Failing::default();
        let (polls, calls) = (service.polls.clone(), service.calls.clone());
        let in_place = InPlace::new(service);
        let answer = hyper::service::Service::call(&in_place, 1).await;
        assert_eq!(answer, Err("broken"));
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "its first error is the answer"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0, "never called");
    }
}
