//! One structured log line per request: method, path, status, latency, request-id.
//! Never headers, query strings or bodies, so never a token.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{Method, Request, Response};
use pin_project_lite::pin_project;
use tower::Service;

#[derive(Debug, Clone)]
pub(crate) struct AccessLog<S> {
    inner: S,
}

impl<S> AccessLog<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B, ResBody> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = LogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        tracing::debug!(method = %request.method(), "request started");
        LogFuture {
            method: request.method().clone(),
            path: request.uri().path().chars().take(256).collect(),
            started: Instant::now(),
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    pub(crate) struct LogFuture<F> {
        #[pin]
        inner: F,
        method: Method,
        path: String,
        started: Instant,
    }
}

impl<F, B, E> Future for LogFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            if let Some(detail) = response
                .extensions()
                .get::<security_update::GraphError>()
                .and_then(|error| error.detail())
            {
                tracing::warn!(path = %this.path, detail, "request failed in the store");
            }
            let request_id = response
                .headers()
                .get("request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info!(
                method = %this.method,
                path = %this.path,
                status = response.status().as_u16(),
                latency_us = this.started.elapsed().as_micros() as u64,
                request_id,
                "request"
            );
        }
        Poll::Ready(result)
    }
}
