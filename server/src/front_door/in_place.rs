//! [`InPlace`]: a tower service as hyper's service for one connection, called where it is.
//!
//! hyper calls its services through `&self`, tower's through `&mut self`; hyper-util's
//! `TowerToHyperService` bridges the two by cloning the tower service for every request and
//! driving the clone with `oneshot`. Our application is some twenty `Arc`s deep (the stack's
//! shared configuration, the validator, the access log's and the probes' state), so that clone
//! and its drop cost ~18 atomic instructions a request, each ~6-9 ns here uncontended, more than
//! the floor spends on its whole service (`scripts/atomics.py`, benches/README.md).
//!
//! A connection calls its service from one task, one call at a time: HTTP/1 has one request in
//! flight, and hyper's HTTP/2 server calls the service from the connection's task and spawns
//! each stream's response future. So one service a connection, in a `RefCell`, is enough: a
//! call asks it to be ready and calls it in place. Tower's contract is kept: a service that is
//! not ready at once (none of ours: their readiness is their inner service's, down to the leaf,
//! always ready) is cloned and driven with `oneshot`, as hyper-util does.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

/// hyper's service for one connection; see the [module docs](self).
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

/// Another connection's service (hyper's HTTP/2 wrapper is cloned with it): the same service,
/// cloned, in a cell of its own.
impl<S: Clone> Clone for InPlace<S> {
    fn clone(&self) -> Self {
        Self::new(self.service.borrow().clone())
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
            // Not ready at once, or failing: a clone gets ready with the request's own waker
            // (and reports the failure), as `TowerToHyperService` does for every request.
            _ => InPlaceFuture::Waiting {
                oneshot: service.clone().oneshot(request),
            },
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its clones and calls; ready only after `not_ready_for` polls of a service made
    /// by a clone (the original is ready at once when `not_ready_for` is 0).
    #[derive(Default)]
    struct Counting {
        clones: Arc<AtomicUsize>,
        calls: Arc<AtomicUsize>,
        pending_polls: usize,
    }

    impl Clone for Counting {
        fn clone(&self) -> Self {
            self.clones.fetch_add(1, Ordering::SeqCst);
            Self {
                clones: self.clones.clone(),
                calls: self.calls.clone(),
                pending_polls: self.pending_polls,
            }
        }
    }

    impl Service<u32> for Counting {
        type Response = u32;
        type Error = Infallible;
        type Future = std::future::Ready<Result<u32, Infallible>>;

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
            std::future::ready(Ok(request * 2))
        }
    }

    #[tokio::test]
    async fn a_ready_service_is_called_in_place_without_a_clone() {
        let service = Counting::default();
        let (clones, calls) = (service.clones.clone(), service.calls.clone());
        let in_place = InPlace::new(service);
        for n in 0..3 {
            let answer = hyper::service::Service::call(&in_place, n).await;
            assert_eq!(answer.unwrap(), n * 2);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(
            clones.load(Ordering::SeqCst),
            0,
            "no clone for a ready service"
        );
    }

    #[tokio::test]
    async fn a_service_not_ready_at_once_is_cloned_and_waited_for() {
        let service = Counting {
            pending_polls: 2,
            ..Counting::default()
        };
        let (clones, calls) = (service.clones.clone(), service.calls.clone());
        let in_place = InPlace::new(service);
        let answer = hyper::service::Service::call(&in_place, 21).await;
        assert_eq!(answer.unwrap(), 42);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            clones.load(Ordering::SeqCst),
            1,
            "the request went to a clone"
        );
    }
}
