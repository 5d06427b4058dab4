//! The stack builder: one place owns the configuration and the order of the layers.

use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use crate::audit::AuditSink;
use crate::auth::{AuthLayer, FailureThrottle, Policy, TokenValidator};
use crate::batch::BatchLayer;
use crate::endpoint::Endpoint;
use crate::merge_patch::MergePatchLayer;
use crate::rate_limit::RateLimitLayer;
use crate::request_id::RequestIdLayer;
use crate::schema::ResourceSchema;
use crate::service::{Config, SecurityUpdateService};
use crate::store::SecurityStore;
use crate::timeout::TimeoutLayer;

mod service;

pub use service::{Stack, StackBody, StackFuture};

/// [`StackBuilder`]: the one place that owns the configuration and writes down the order of the
/// layers. [`stack`](crate::stack), the server binary and the benches all build through it.
///
/// ```text
/// RequestId ─▶ Timeout ─▶ Auth ─▶ Batch ─▶ [RateLimit ─▶ Preflight ─▶ ContentType ─▶ MergePatch ─▶ SecurityUpdateService]
/// ids first,   408 with    bearer  per caller   route and    415 unless     body → typed    If-Match, merge,
/// so every     the         → (401) (429; off    authorize    JSON           patch (413 /    validate, compare-
/// answer has   request's   Principal by default) (404/405/                  400)            and-swap
/// them         ids (off by default)              403)
/// ```
///
/// The pieces in brackets run as one service,
/// [`Endpoint`](crate::endpoint::Endpoint): their own checks, in this order, at one service's
/// cost, the decision and the patch handed over as values. The layers outside it are nested
/// as written, and [`Stack`] takes one shortcut through them: a request with a token the
/// validator knows good at no cost ([`TokenValidator::cached`]), outside a `$batch`, goes
/// straight to the endpoint with its ids, deadline and caller as values, answered as the
/// layers would answer it (see [`Stack`]).
///
/// Configuration is fixed when [`build`](StackBuilder::build) (or
/// [`into_service`](StackBuilder::into_service)) is called: the preflight and the service are
/// made from the same configuration, so they cannot disagree.
///
/// ```
/// use std::time::Duration;
/// use security_update::{DefaultPolicy, MemoryStore, RateLimitLayer, StackBuilder, StaticTokens};
///
/// let app = StackBuilder::new(MemoryStore::new())
///     .with_policy(DefaultPolicy::new().with_write_permissions(["Custom.Write"]))
///     .with_path_prefix("/beta")
///     .with_body_limit(64 * 1024)
///     .with_rate_limit(RateLimitLayer::new(50, Duration::from_secs(1)))
///     .with_timeout(Duration::from_secs(30))
///     .build(StaticTokens::new());
/// # let _ = app;
/// ```
#[must_use]
pub struct StackBuilder<S> {
    store: Arc<S>,
    config: Config,
    realm: Option<String>,
    failure_throttle: Option<FailureThrottle>,
    merge_patch: MergePatchLayer,
    rate_limit: RateLimitLayer,
    timeout: TimeoutLayer,
    batch: bool,
}

impl<S> std::fmt::Debug for StackBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackBuilder")
            .field("policy", &self.config.policy)
            .field("schema", &self.config.schema)
            .field("path_prefix", &self.config.path_prefix)
            .field("merge_patch", &self.merge_patch)
            .field("rate_limit", &self.rate_limit)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<S: SecurityStore> StackBuilder<S> {
    /// Defaults: Graph's schema, [`DefaultPolicy`](crate::DefaultPolicy), the tracing audit
    /// sink, no path prefix, a 1 MiB body limit, no rate limit, no timeout.
    pub fn new(store: S) -> Self {
        Self {
            store: Arc::new(store),
            config: Config::new(),
            realm: None,
            failure_throttle: None,
            merge_patch: MergePatchLayer::new(),
            rate_limit: RateLimitLayer::unlimited(),
            timeout: TimeoutLayer::disabled(),
            batch: true,
        }
    }

    /// Replaces the authorization policy (used by the preflight and the service alike).
    pub fn with_policy(mut self, policy: impl Policy) -> Self {
        self.config.policy = Arc::new(policy);
        self
    }

    /// Replaces the audit sink (default: [`TracingAudit`](crate::audit::TracingAudit)).
    pub fn with_audit(mut self, audit: Arc<dyn AuditSink>) -> Self {
        self.config.audit = audit;
        self
    }

    /// Replaces the resource schema.
    pub fn with_schema(mut self, schema: ResourceSchema) -> Self {
        self.config.schema = schema;
        self
    }

    /// Serves the routes under `prefix` (e.g. `/beta`) when mounted directly in hyper.
    /// Not needed under axum's `nest_service`, which strips the prefix itself.
    pub fn with_path_prefix(mut self, prefix: &str) -> Self {
        let prefix = prefix.trim_end_matches('/');
        self.config.path_prefix = (!prefix.is_empty()).then(|| Box::from(prefix));
        self
    }

    /// Sets the service root of `@odata.context` (for example
    /// `https://graph.contoso.com/beta`), for an embedder behind a proxy or under its own
    /// prefix. Default: the request's scheme and `Host`, then the path prefix.
    pub fn with_service_root(mut self, root: &str) -> Self {
        let root = root.trim_end_matches('/');
        self.config.service_root = (!root.is_empty()).then(|| Box::from(root));
        self
    }

    /// Sets the realm named in `WWW-Authenticate`.
    pub fn with_realm(mut self, realm: &str) -> Self {
        self.realm = Some(realm.to_owned());
        self
    }

    /// Throttles failed authentications per client address (default: off); see
    /// [`FailureThrottle`].
    pub fn with_failure_throttle(mut self, throttle: FailureThrottle) -> Self {
        self.failure_throttle = Some(throttle);
        self
    }

    /// Sets the body limit in bytes (default 1 MiB); longer bodies are answered 413.
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.merge_patch = self.merge_patch.with_limit(limit);
        self
    }

    /// Sets how deep a patch may nest (default 64).
    pub fn with_max_depth(mut self, max_depth: usize) -> Self {
        self.merge_patch = self.merge_patch.with_max_depth(max_depth);
        self
    }

    /// Limits each caller's request rate (default: unlimited).
    pub fn with_rate_limit(mut self, rate_limit: RateLimitLayer) -> Self {
        self.rate_limit = rate_limit;
        self
    }

    /// Reports store operations, compare-and-swap conflicts, audit records and rate-limit
    /// refusals to `observer` (see [`observe`](crate::observe)). Token outcomes come from the
    /// validator: give it the same observer (`JwtValidator::with_observer`).
    pub fn with_observer(mut self, observer: crate::observe::SharedObserver) -> Self {
        self.config.observer = Some(observer);
        self
    }

    /// Turns JSON batching (`POST {prefix}/$batch`, on by default) off.
    pub fn without_batch(mut self) -> Self {
        self.batch = false;
        self
    }

    /// Answers 408 to requests not done within `limit` (default: no deadline).
    pub fn with_timeout(mut self, limit: Duration) -> Self {
        self.timeout = TimeoutLayer::new(limit);
        self
    }

    /// Sets how many compare-and-swap attempts a write makes before answering 503 (default 64).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.config.max_attempts = attempts.max(1);
        self
    }

    /// Sets the largest object, serialized, that a write may leave behind (default
    /// [`DEFAULT_MAX_OBJECT_BYTES`](crate::service::DEFAULT_MAX_OBJECT_BYTES)); a patch that
    /// would grow an object past it is answered 413 and changes nothing.
    pub fn with_max_object_bytes(mut self, bytes: usize) -> Self {
        self.config.max_object_bytes = bytes;
        self
    }

    /// Sets how many objects one tenant may have (default
    /// [`DEFAULT_MAX_OBJECTS_PER_TENANT`](crate::service::DEFAULT_MAX_OBJECTS_PER_TENANT)); a
    /// write that would create one more is answered 507 `quotaLimitReached`.
    pub fn with_max_objects_per_tenant(mut self, objects: u64) -> Self {
        self.config.max_objects_per_tenant = objects;
        self
    }

    /// The running operations of the service this builder will build, to wait for on
    /// shutdown (see [`InFlight`](crate::service::InFlight)).
    #[must_use]
    pub fn in_flight(&self) -> crate::service::InFlight {
        self.config.in_flight.clone()
    }

    /// The leaf service alone, for users who compose the layers themselves.
    pub fn into_service(self) -> SecurityUpdateService<S> {
        SecurityUpdateService::from_parts(self.store, self.config)
    }

    /// The whole stack, authenticating with `validator`.
    pub fn build<V: TokenValidator>(mut self, validator: V) -> Stack<S, V> {
        let mut auth = AuthLayer::new(validator);
        if let Some(realm) = &self.realm {
            auth = auth.with_realm(realm);
        }
        if let Some(throttle) = self.failure_throttle.take() {
            auth = auth.with_failure_throttle(throttle);
        }
        let Self {
            merge_patch,
            mut rate_limit,
            timeout,
            ..
        } = self;
        if let Some(observer) = &self.config.observer {
            rate_limit = rate_limit.with_observer(observer.clone());
        }
        let batch = if self.batch {
            BatchLayer::with_prefix(
                self.config.path_prefix.as_deref().unwrap_or(""),
                merge_patch.limit(),
            )
            .with_rate_limit(rate_limit.clone())
        } else {
            BatchLayer::disabled()
        };
        let service = SecurityUpdateService::from_parts(self.store, self.config);
        assemble(service, auth, batch, merge_patch, rate_limit, timeout)
    }
}

/// The layer order, written once.
fn assemble<S: SecurityStore, V: TokenValidator>(
    service: SecurityUpdateService<S>,
    auth: AuthLayer<V>,
    batch: BatchLayer,
    merge_patch: MergePatchLayer,
    rate_limit: RateLimitLayer,
    timeout: TimeoutLayer,
) -> Stack<S, V> {
    // The rate limit, the preflight, the content type, the merge patch and the operation:
    // one service, `Endpoint`.
    let inner = Endpoint::new(service, rate_limit, merge_patch);
    let inner = batch.layer(inner);
    let inner = auth.layer(inner);
    let inner = timeout.layer(inner);
    Stack::new(RequestIdLayer::new().layer(inner))
}

/// Wraps an already built `service` in the default layers, authenticating with `validator`:
/// no rate limit, no timeout, 1 MiB bodies.
pub fn stack<S, V>(service: SecurityUpdateService<S>, validator: V) -> Stack<S, V>
where
    S: SecurityStore,
    V: TokenValidator,
{
    let batch = BatchLayer::with_prefix(
        service.config_path_prefix(),
        crate::merge_patch::DEFAULT_LIMIT,
    );
    assemble(
        service,
        AuthLayer::new(validator),
        batch,
        MergePatchLayer::new(),
        RateLimitLayer::unlimited(),
        TimeoutLayer::disabled(),
    )
}
