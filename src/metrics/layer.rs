//! [`MetricsLayer`]: requests, latency and in-flight requests as the HTTP side sees them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{Method, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::{METHODS, PrometheusMetrics};

/// Counts requests by route, method and status, times them, and gauges those in flight.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Arc<PrometheusMetrics>,
}

impl MetricsLayer {
    /// Reports to `metrics`.
    #[must_use]
    pub fn new(metrics: Arc<PrometheusMetrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service made by [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct Metrics<S> {
    inner: S,
    metrics: Arc<PrometheusMetrics>,
}

impl<S> Metrics<S> {
    crate::macros::inner_service_accessors!();
}

/// The route of a path, as an index into [`ROUTES`](super::ROUTES): `me`, `users`, `batch` or `other` (never
/// the path itself: ids would make the label set unbounded).
pub(super) fn route_index(path: &str) -> usize {
    if path.ends_with("/me/security") {
        0
    } else if path.ends_with("/security") && path.contains("/users/") {
        1
    } else if path.ends_with("/$batch") {
        2
    } else {
        3
    }
}

/// The method, as an index into [`METHODS`](super::METHODS).
pub(super) fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::PATCH => 1,
        Method::POST => 2,
        Method::HEAD => 3,
        Method::OPTIONS => 4,
        Method::PUT => 5,
        Method::DELETE => 6,
        _ => 7,
    }
}

impl<S, B, ResBody> Service<Request<B>> for Metrics<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let pair =
            route_index(request.uri().path()) * METHODS.len() + method_index(request.method());
        self.metrics.in_flight.inc();
        MetricsFuture {
            inner: self.inner.call(request),
            guard: InFlightGuard {
                metrics: self.metrics.clone(),
                pair,
                started: Instant::now(),
            },
        }
    }
}

/// Decrements the in-flight gauge however the request ends (answered or dropped).
struct InFlightGuard {
    metrics: Arc<PrometheusMetrics>,
    /// Index of the (route, method) pair.
    pair: usize,
    started: Instant,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

pin_project! {
    /// The future of [`Metrics`].
    pub struct MetricsFuture<F> {
        #[pin]
        inner: F,
        guard: InFlightGuard,
    }
}

impl<F, ResBody, E> Future for MetricsFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let guard = &*this.guard;
        if let Ok(response) = &result {
            let metrics = &guard.metrics;
            metrics.count_request(guard.pair, response.status().as_u16());
            metrics
                .request_histogram(guard.pair)
                .observe(guard.started.elapsed().as_secs_f64());
        }
        Poll::Ready(result)
    }
}
