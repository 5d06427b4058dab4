//! Per-principal rate limiting: a token bucket for each caller, shared by every clone of the
//! layer (tower's own `RateLimit` keeps one budget per service clone, and hyper clones per
//! connection, so it would not limit a caller with many connections).
//!
//! The caller is the [`Principal`] the auth layer found: its tenant and object id (for an
//! application, the object id of its service principal). Requests without a principal pass
//! through untouched: the service refuses them anyway. Over budget is `429` with
//! `Retry-After` (whole seconds until the next token) and Graph's `activityLimitReached`
//! envelope.
//!
//! Off by default in [`stack`](crate::stack); mount it after the auth layer:
//!
//! ```
//! use std::time::Duration;
//! use security_update::{AuthLayer, RateLimitLayer, StaticTokens};
//! use tower::ServiceBuilder;
//!
//! let layers = ServiceBuilder::new()
//!     .layer(AuthLayer::new(StaticTokens::new()))
//!     .layer(RateLimitLayer::new(10, Duration::from_secs(1)).with_burst(20));
//! # let _ = layers;
//! ```

use crate::observe::SharedObserver;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use tower::{Layer, Service};

use crate::auth::Principal;
use crate::body::{ResponseBody, ResponseFuture};
use crate::error::{ErrorKind, GraphError};

/// Independent locks, so callers rarely wait on each other.
const SHARDS: usize = 32;
/// Buckets kept per shard before idle (full) ones are dropped.
const MAX_BUCKETS_PER_SHARD: usize = 4096;

/// Limits each principal to a number of requests per period; see the [module docs](self).
#[must_use]
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Option<Arc<Limiter>>,
    observer: Option<SharedObserver>,
}

struct Limiter {
    /// Tokens added per second.
    rate: f64,
    /// Bucket size: how many requests may come at once after a quiet spell.
    burst: f64,
    /// Buckets by a keyed 64-bit hash of (tenant, object id): no allocation per request, and
    /// with per-limiter random keys no caller can aim for another's bucket.
    shards: Box<[Mutex<HashMap<u64, Bucket>>]>,
    hasher: std::collections::hash_map::RandomState,
}

/// The settings, not the buckets: a stack's `Debug` would print every caller's.
impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimitLayer {
    /// `requests` per `period` for each principal, with a burst of the same size.
    pub fn new(requests: u32, period: Duration) -> Self {
        let rate = f64::from(requests.max(1)) / period.as_secs_f64().max(1e-3);
        Self::build(rate, f64::from(requests.max(1)))
    }

    /// A layer that lets everything through: one type for "limit on" and "limit off", so a
    /// stack can switch it by configuration.
    pub fn unlimited() -> Self {
        Self {
            limiter: None,
            observer: None,
        }
    }

    fn build(rate: f64, burst: f64) -> Self {
        Self {
            limiter: Some(Arc::new(Limiter {
                rate,
                burst,
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                hasher: std::collections::hash_map::RandomState::new(),
            })),
            observer: None,
        }
    }

    /// Sets how many requests a principal may send at once after being idle.
    pub fn with_burst(self, burst: u32) -> Self {
        match &self.limiter {
            Some(limiter) => Self {
                observer: self.observer.clone(),
                ..Self::build(limiter.rate, f64::from(burst.max(1)))
            },
            None => self,
        }
    }

    /// Tells `observer` of every refusal ([`Observer::rate_limited`](crate::observe::Observer::rate_limited)).
    pub fn with_observer(mut self, observer: SharedObserver) -> Self {
        self.observer = Some(observer);
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            observer: self.observer.clone(),
        }
    }
}

/// The service made by [`RateLimitLayer`].
#[must_use]
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Option<Arc<Limiter>>,
    observer: Option<SharedObserver>,
}

impl std::fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl<S> RateLimit<S> {
    crate::macros::inner_service_accessors!();
}

impl<S, B, ResBody> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Err(error) = charge(
            self.limiter.as_deref(),
            self.observer.as_ref(),
            request.extensions().get::<Principal>(),
        ) {
            return ResponseFuture::rejected(error.into_refusal(&request));
        }
        ResponseFuture::inner(self.inner.call(request))
    }
}

impl RateLimitLayer {
    /// Takes one token for `request`'s principal, as the layer's service does: for the stack's
    /// [`Endpoint`](crate::endpoint::Endpoint), and for a request that goes through neither (a
    /// `$batch` envelope, whose sub-requests do).
    ///
    /// # Errors
    /// The 429 to answer when the caller is over budget.
    pub(crate) fn charge<B>(&self, request: &Request<B>) -> Result<(), GraphError> {
        let principal = request.extensions().get::<Principal>();
        charge(self.limiter.as_deref(), self.observer.as_ref(), principal)
    }

    /// [`charge`](Self::charge) for a request made by `principal` (none: it passes).
    pub(crate) fn charge_principal(&self, principal: Option<&Principal>) -> Result<(), GraphError> {
        charge(self.limiter.as_deref(), self.observer.as_ref(), principal)
    }
}

/// One token for `request`'s principal from `limiter`, or the 429 (`Retry-After`: whole
/// seconds until the next token). Requests without a principal pass.
fn charge(
    limiter: Option<&Limiter>,
    observer: Option<&SharedObserver>,
    principal: Option<&Principal>,
) -> Result<(), GraphError> {
    let (Some(limiter), Some(principal)) = (limiter, principal) else {
        return Ok(());
    };
    let Err(wait) = limiter.take(principal, Instant::now()) else {
        return Ok(());
    };
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u32;
    if let Some(observer) = observer {
        observer.rate_limited();
    }
    Err(GraphError::new(
        ErrorKind::TooManyRequests,
        format!("Too many requests from this caller; retry after {seconds} seconds."),
    )
    .with_retry_after(seconds))
}

impl Limiter {
    /// Takes one token for `principal`, or says how long until one is available.
    fn take(&self, principal: &Principal, now: Instant) -> Result<(), Duration> {
        use std::hash::BuildHasher;
        let key = self
            .hasher
            .hash_one((principal.tenant_id(), principal.object_id()));
        let mut shard = self.shards[key as usize % SHARDS]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if shard.len() >= MAX_BUCKETS_PER_SHARD && !shard.contains_key(&key) {
            // Buckets that have refilled completely carry no information: drop them.
            let (rate, burst) = (self.rate, self.burst);
            shard.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < burst
            });
        }
        let bucket = shard.entry(key).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    fn alice() -> Principal {
        Principal::delegated("t", "alice")
    }

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let layer = RateLimitLayer::new(2, Duration::from_secs(1)).with_burst(3);
        let limiter = layer.limiter.as_ref().unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take(&alice(), start).is_ok());
        }
        let wait = limiter.take(&alice(), start).unwrap_err();
        assert!(
            wait <= Duration::from_millis(500) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // Half a second later one token (2 per second) is back, and only one.
        let later = start + Duration::from_millis(500);
        assert!(limiter.take(&alice(), later).is_ok());
        assert!(limiter.take(&alice(), later).is_err());
        // Another caller has its own bucket.
        assert!(
            limiter
                .take(&Principal::delegated("t", "bob"), start)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn over_budget_is_429_with_retry_after_in_graph_shape() {
        let svc = RateLimitLayer::new(1, Duration::from_secs(60)).layer(service_fn(
            |_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) },
        ));
        let request = || {
            let mut request = Request::new(());
            request.extensions_mut().insert(alice());
            request
        };
        assert_eq!(svc.clone().oneshot(request()).await.unwrap().status(), 200);
        let response = svc.clone().oneshot(request()).await.unwrap();
        assert_eq!(response.status(), 429);
        let retry: u32 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "activityLimitReached");
        // No principal: not this layer's business.
        assert_eq!(svc.oneshot(Request::new(())).await.unwrap().status(), 200);
        let open = RateLimitLayer::unlimited().layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
        for _ in 0..100 {
            assert_eq!(open.clone().oneshot(request()).await.unwrap().status(), 200);
        }
    }

    #[test]
    fn idle_buckets_are_dropped_when_a_shard_fills() {
        let layer = RateLimitLayer::new(1000, Duration::from_secs(1));
        let limiter = layer.limiter.as_ref().unwrap();
        let start = Instant::now();
        for i in 0..(SHARDS * MAX_BUCKETS_PER_SHARD * 2) {
            let _ = limiter.take(
                &Principal::delegated("t", &i.to_string()),
                start + Duration::from_secs(i as u64),
            );
        }
        let total: usize = limiter.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(
            total <= SHARDS * MAX_BUCKETS_PER_SHARD,
            "{total} buckets kept"
        );
    }
}
