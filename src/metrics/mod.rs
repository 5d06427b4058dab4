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

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::observe::{Observer, StoreOperation, TokenOutcome};

/// The content type of [`PrometheusMetrics::render`]'s text (OpenMetrics 1.0, which
/// Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels2 = [(&'static str, &'static str); 2];
type RequestLabels = (Labels2, [(&'static str, u16); 1]);

/// Routes × methods: the index of a request's (route, method) pair in the handle caches.
const ROUTES: [&str; 4] = ["me", "users", "batch", "other"];
const METHODS: [&str; 8] = [
    "GET", "PATCH", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "other",
];
const PAIRS: usize = ROUTES.len() * METHODS.len();
/// The statuses the stack answers; others go through the family's map.
const STATUSES: [u16; 21] = [
    200, 204, 304, 400, 401, 403, 404, 405, 406, 408, 412, 413, 415, 424, 428, 429, 431, 500, 501,
    503, 507,
];

/// Handles to metrics of a family, kept so the request path indexes an array instead of
/// hashing label strings into the family's map (which costs more than the metric itself).
struct Handles {
    histograms: [OnceLock<Histogram>; PAIRS],
    counters: Box<[OnceLock<Counter>]>,
    store: [OnceLock<(&'static str, Histogram)>; 3],
    accepted: [OnceLock<Counter>; 2],
}

impl Handles {
    fn new() -> Self {
        Self {
            histograms: std::array::from_fn(|_| OnceLock::new()),
            counters: (0..PAIRS * STATUSES.len())
                .map(|_| OnceLock::new())
                .collect(),
            store: std::array::from_fn(|_| OnceLock::new()),
            accepted: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

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
    held_answer_bytes: Gauge,
    held_answer_refusals: Family<[(&'static str, &'static str); 1], Counter>,
    store_seconds: Family<Labels2, Histogram, fn() -> Histogram>,
    store_errors: Family<Labels2, Counter>,
    write_conflicts: Counter,
    tokens: Family<Labels2, Counter>,
    rate_limited: Counter,
    audit_records: Counter,
    handles: Handles,
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
        let held_answer_bytes = Gauge::default();
        registry.register(
            "held_answer_bytes",
            "Bytes of answers their clients have not taken yet, as the server's budget counts them",
            held_answer_bytes.clone(),
        );
        let held_answer_refusals = Family::default();
        registry.register(
            "held_answer_refusals",
            "Requests refused (503) because answers not taken held the budget, by whose (client, server)",
            held_answer_refusals.clone(),
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
            held_answer_bytes,
            held_answer_refusals,
            store_seconds,
            store_errors,
            write_conflicts,
            tokens,
            rate_limited,
            audit_records,
            handles: Handles::new(),
        }
    }

    fn request_histogram(&self, pair: usize) -> &Histogram {
        self.handles.histograms[pair].get_or_init(|| {
            self.request_seconds
                .get_or_create(&pair_labels(pair))
                .clone()
        })
    }

    fn count_request(&self, pair: usize, status: u16) {
        let labels = || (pair_labels(pair), [("status", status)]);
        match STATUSES.iter().position(|known| *known == status) {
            Some(index) => self.handles.counters[pair * STATUSES.len() + index]
                .get_or_init(|| self.requests.get_or_create(&labels()).clone())
                .inc(),
            None => self.requests.get_or_create(&labels()).inc(),
        };
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

    /// The bytes of answers their clients have not taken yet (set at each scrape).
    pub fn set_held_answer_bytes(&self, bytes: u64) {
        self.held_answer_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// A request was refused because answers not taken held a budget; `whose` is a short
    /// fixed label (`client`, `server`).
    pub fn held_answer_refused(&self, whose: &'static str) {
        self.held_answer_refusals
            .get_or_create(&[("whose", whose)])
            .inc();
    }
}

impl Observer for PrometheusMetrics {
    fn token(&self, outcome: TokenOutcome) {
        let (slot, labels) = match outcome {
            TokenOutcome::CacheHit => (0, [("outcome", "cache_hit"), ("reason", "")]),
            TokenOutcome::Verified => (1, [("outcome", "verified"), ("reason", "")]),
            TokenOutcome::Rejected { reason } => {
                self.tokens
                    .get_or_create(&[("outcome", "rejected"), ("reason", reason)])
                    .inc();
                return;
            }
        };
        self.handles.accepted[slot]
            .get_or_init(|| self.tokens.get_or_create(&labels).clone())
            .inc();
    }

    fn store_operation(
        &self,
        store: &'static str,
        operation: StoreOperation,
        elapsed: Duration,
        failed: bool,
    ) {
        let labels = [("store", store), ("operation", operation.as_str())];
        let slot = match operation {
            StoreOperation::Load => 0,
            StoreOperation::CompareAndSwap => 1,
            StoreOperation::CountTenant => 2,
        };
        let (cached_store, histogram) = self.handles.store[slot]
            .get_or_init(|| (store, self.store_seconds.get_or_create(&labels).clone()));
        if *cached_store == store {
            histogram.observe(elapsed.as_secs_f64());
        } else {
            self.store_seconds
                .get_or_create(&labels)
                .observe(elapsed.as_secs_f64());
        }
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

/// The labels of a (route, method) pair index.
fn pair_labels(pair: usize) -> Labels2 {
    [
        ("route", ROUTES[pair / METHODS.len()]),
        ("method", METHODS[pair % METHODS.len()]),
    ]
}

mod layer;
#[cfg(test)]
mod tests;

pub use layer::{Metrics, MetricsFuture, MetricsLayer};
