//! Prometheus metrics: [`PrometheusMetrics`] (an [`Observer`] and the registry behind
//! `GET /metrics`) and [`MetricsLayer`] (requests, latency and in-flight requests as the HTTP
//! side sees them). Available with the `prometheus` feature.
//!
//! Every name is prefixed `security_update_`, counters end in `_total`, durations are in
//! seconds, and labels have a small fixed set of values (no tenant, user or object id), so a
//! scrape stays small however many callers there are.
//!
//! ```
//! use std::sync::Arc;
//! use security_update::{MemoryStore, StackBuilder};
//! use security_update::StaticTokens;
//! use security_update::metrics::{MetricsLayer, PrometheusMetrics};
//! use tower::Layer;
//!
//! let metrics = Arc::new(PrometheusMetrics::new());
//! let stack = StackBuilder::new(MemoryStore::new())
//!     .with_observer(metrics.clone())
//!     .build(StaticTokens::new());
//! let service = MetricsLayer::new(metrics.clone()).layer(stack);
//! # let _ = service;
//! assert!(metrics.render().contains("security_update_http_requests_in_flight"));
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use pin_project_lite::pin_project;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tower::{Layer, Service};

use crate::observe::{Observer, StoreOperation, TokenOutcome};

/// The content type of [`PrometheusMetrics::render`]'s text (OpenMetrics 1.0, which
/// Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels2 = [(&'static str, &'static str); 2];
type RequestLabels = (Labels2, [(&'static str, u16); 1]);

fn latency_histogram() -> Histogram {
    // 100 µs to about 13 s.
    Histogram::new(exponential_buckets(0.0001, 2.5, 14))
}

/// Every metric of the stack and the server, in one registry.
pub struct PrometheusMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<Labels2, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    connections_open: Gauge,
    connections_accepted: Counter,
    connections_refused: Family<[(&'static str, &'static str); 1], Counter>,
    store_seconds: Family<Labels2, Histogram, fn() -> Histogram>,
    store_errors: Family<Labels2, Counter>,
    write_conflicts: Counter,
    tokens: Family<Labels2, Counter>,
    rate_limited: Counter,
    audit_records: Counter,
}

impl std::fmt::Debug for PrometheusMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusMetrics").finish_non_exhaustive()
    }
}

impl Default for PrometheusMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PrometheusMetrics {
    /// A registry with every metric at zero.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("security_update");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        let request_seconds: Family<Labels2, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response headers, by route and method",
            request_seconds.clone(),
        );
        let in_flight = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "http_requests_in_flight",
            "Requests being handled now",
            in_flight.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open now",
            connections_open.clone(),
        );
        let connections_accepted = Counter::<u64, AtomicU64>::default();
        registry.register(
            "connections_accepted",
            "Client connections accepted",
            connections_accepted.clone(),
        );
        let connections_refused = Family::default();
        registry.register(
            "connections_refused",
            "Client connections closed at once, by reason (global_cap, per_client_cap)",
            connections_refused.clone(),
        );
        let store_seconds: Family<Labels2, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "store_operation_duration_seconds",
            "Store operation latency, by store and operation",
            store_seconds.clone(),
        );
        let store_errors = Family::default();
        registry.register(
            "store_errors",
            "Store operations that failed, by store and operation",
            store_errors.clone(),
        );
        let write_conflicts = Counter::default();
        registry.register(
            "write_conflicts",
            "Compare-and-swap races lost by a write (each one retried or, at the last attempt, 503)",
            write_conflicts.clone(),
        );
        let tokens = Family::default();
        registry.register(
            "token_validations",
            "Bearer tokens checked, by outcome (cache_hit, verified, rejected) and reason",
            tokens.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited",
            "Requests refused by the per-caller rate limit (429)",
            rate_limited.clone(),
        );
        let audit_records = Counter::default();
        registry.register(
            "audit_records",
            "Audit records of accepted changes written",
            audit_records.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            in_flight,
            connections_open,
            connections_accepted,
            connections_refused,
            store_seconds,
            store_errors,
            write_conflicts,
            tokens,
            rate_limited,
            audit_records,
        }
    }

    /// The metrics in the OpenMetrics text format ([`CONTENT_TYPE`]).
    #[must_use]
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// A client connection was accepted; it counts as open until [`connection_closed`](Self::connection_closed).
    pub fn connection_opened(&self) {
        self.connections_accepted.inc();
        self.connections_open.inc();
    }

    /// A connection counted by [`connection_opened`](Self::connection_opened) closed.
    pub fn connection_closed(&self) {
        self.connections_open.dec();
    }

    /// A connection was closed at once; `reason` is a short fixed label.
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&[("reason", reason)])
            .inc();
    }
}

impl Observer for PrometheusMetrics {
    fn token(&self, outcome: TokenOutcome) {
        let labels = match outcome {
            TokenOutcome::CacheHit => [("outcome", "cache_hit"), ("reason", "")],
            TokenOutcome::Verified => [("outcome", "verified"), ("reason", "")],
            TokenOutcome::Rejected { reason } => [("outcome", "rejected"), ("reason", reason)],
        };
        self.tokens.get_or_create(&labels).inc();
    }

    fn store_operation(
        &self,
        store: &'static str,
        operation: StoreOperation,
        elapsed: Duration,
        failed: bool,
    ) {
        let labels = [("store", store), ("operation", operation.as_str())];
        self.store_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if failed {
            self.store_errors.get_or_create(&labels).inc();
        }
    }

    fn write_conflict(&self) {
        self.write_conflicts.inc();
    }

    fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    fn audit_written(&self) {
        self.audit_records.inc();
    }
}

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

/// The route label of a path: `me`, `users`, `batch` or `other` (never the path itself: ids
/// would make the label set unbounded).
fn route_label(path: &str) -> &'static str {
    if path.ends_with("/me/security") {
        "me"
    } else if path.ends_with("/security") && path.contains("/users/") {
        "users"
    } else if path.ends_with("/$batch") {
        "batch"
    } else {
        "other"
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::PATCH => "PATCH",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "other",
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
        let labels = [
            ("route", route_label(request.uri().path())),
            ("method", method_label(request.method())),
        ];
        self.metrics.in_flight.inc();
        MetricsFuture {
            inner: self.inner.call(request),
            guard: InFlightGuard {
                metrics: self.metrics.clone(),
                labels,
                started: Instant::now(),
            },
        }
    }
}

/// Decrements the in-flight gauge however the request ends (answered or dropped).
struct InFlightGuard {
    metrics: Arc<PrometheusMetrics>,
    labels: Labels2,
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
            let status = response.status().as_u16();
            guard
                .metrics
                .requests
                .get_or_create(&(guard.labels, [("status", status)]))
                .inc();
            guard
                .metrics
                .request_seconds
                .get_or_create(&guard.labels)
                .observe(guard.started.elapsed().as_secs_f64());
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_a_fixed_set() {
        assert_eq!(route_label("/beta/me/security"), "me");
        assert_eq!(
            route_label("/beta/users/alice@contoso.com/security"),
            "users"
        );
        assert_eq!(route_label("/beta/$batch"), "batch");
        assert_eq!(route_label("/beta/users/x"), "other");
        assert_eq!(route_label("/anything/else"), "other");
    }

    #[test]
    fn observer_calls_show_in_the_text() {
        let metrics = PrometheusMetrics::new();
        metrics.token(TokenOutcome::Rejected { reason: "expired" });
        metrics.store_operation(
            "memory",
            StoreOperation::CompareAndSwap,
            Duration::from_millis(2),
            true,
        );
        metrics.write_conflict();
        let text = metrics.render();
        assert!(
            text.contains(
                r#"security_update_token_validations_total{outcome="rejected",reason="expired"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"security_update_store_errors_total{store="memory",operation="compare_and_swap"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("security_update_write_conflicts_total 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
