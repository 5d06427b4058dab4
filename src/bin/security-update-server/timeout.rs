//! A whole-request deadline: a client that stalls mid-body (or any request that hangs) gets a
//! Graph-style 408 instead of holding its connection and task forever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use security_update::request_id::CLIENT_REQUEST_ID;
use security_update::{ErrorKind, GraphError, RequestIds, ResponseBody};
use tower::Service;

#[derive(Debug, Clone)]
pub(crate) struct RequestTimeout<S> {
    inner: S,
    limit: Duration,
}

impl<S> RequestTimeout<S> {
    pub(crate) fn new(inner: S, limit: Duration) -> Self {
        Self { inner, limit }
    }
}

impl<S, B, ResBody> Service<Request<B>> for RequestTimeout<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let client_request_id = request.headers().get(CLIENT_REQUEST_ID).cloned();
        TimeoutFuture {
            inner: self.inner.call(request),
            sleep: tokio::time::sleep(self.limit),
            client_request_id,
            limit: self.limit,
        }
    }
}

pin_project! {
    pub(crate) struct TimeoutFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: tokio::time::Sleep,
        client_request_id: Option<HeaderValue>,
        limit: Duration,
    }
}

impl<F, B, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map(|response| response.map(ResponseBody::inner)));
        }
        if this.sleep.poll(cx).is_ready() {
            let ids = RequestIds::generate(this.client_request_id.take());
            let error = GraphError::new(
                ErrorKind::RequestTimeout,
                format!(
                    "The request was not completed within {} seconds.",
                    this.limit.as_secs()
                ),
            );
            return Poll::Ready(Ok(error.into_response(&ids).map(ResponseBody::error)));
        }
        Poll::Pending
    }
}
