//! [`SecurityUpdateService`]: the leaf service that routes, authorizes, checks preconditions,
//! merges, validates and saves.
//!
//! It expects the layers of [`stack`](crate::stack) outside it and fails closed without them:
//! no [`Principal`](crate::Principal) is 401, a `PATCH` whose content type was not checked is
//! checked here (415), and a `PATCH` without a parsed [`MergePatch`](crate::MergePatch) is 400.
//!
//! | request                                        | status |
//! |------------------------------------------------|--------|
//! | `GET /me/security`                              | 200, the object, `ETag` |
//! | `PATCH /me/security`, valid patch               | 200, the updated object, `ETag` |
//! | ... with `Prefer: return=minimal`               | 204, `ETag` |
//! | ... with a stale `If-Match`                     | 412 |
//! | ... with an undeclared property                 | 400, names it |
//! | `DELETE /me/security`                           | 405, `Allow: GET, PATCH` |
//! | `GET /elsewhere`                                | 404 |
//! | no principal in extensions                      | 401 |
//!
//! Every failure is a Graph error response: `Error = Infallible`.

mod candidate;
mod conditional;
mod endpoint;
mod future;
mod in_flight;
mod preflight;
mod prepare;
mod reply;
mod write;
mod write_at_once;
mod write_gate;

pub use future::ResponseFuture;
pub use in_flight::InFlight;
pub use preflight::{Preflight, PreflightLayer};

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use tower::Service;

use crate::audit::{AuditSink, TracingAudit};
use crate::auth::{DefaultPolicy, Policy};
use crate::error::GraphError;
use crate::observe::StoreOperation;
use crate::odata::representation::Representation;
use crate::refusal::{close_if_body_unread, close_if_unread};
use crate::request_id::RequestIds;
use crate::schema::ResourceSchema;
use crate::store::{ObjectKey, SecurityStore, Snapshot};
use conditional::Precondition;
use future::{Answering, BoxFuture};
pub(crate) use prepare::Handed;
use prepare::Operation;
use reply::{Reply, default_snapshot};
use write::Resumed;
use write_at_once::AtOnceOutcome;

/// Compare-and-swap attempts before answering 503; each lost race means another write landed.
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 64;
/// Default limit on an object's serialized size: 4 MiB, four of the default 1 MiB bodies.
/// Every read and write moves the whole object, so without a bound a caller under an open
/// schema could grow one object without end.
pub const DEFAULT_MAX_OBJECT_BYTES: usize = 4 * 1024 * 1024;
/// Default limit on objects per tenant: a million, far above any real directory's users
/// with a security object, far below what one token minting ids could fill a disk with.
pub const DEFAULT_MAX_OBJECTS_PER_TENANT: u64 = 1_000_000;

/// The Graph "Update security" operation as a `tower::Service`; see the [module docs](self).
///
/// Cheap to clone (two reference counts) and always ready, as hyper and axum want. Its
/// configuration is fixed when it is made: [`SecurityUpdateService::new`] for the defaults,
/// [`StackBuilder`](crate::StackBuilder) for anything else, so a [`PreflightLayer`] taken from
/// it always agrees with it.
///
/// ```
/// use security_update::{DefaultPolicy, MemoryStore, SecurityUpdateService, StackBuilder};
///
/// let service: SecurityUpdateService<MemoryStore> = StackBuilder::new(MemoryStore::new())
///     .with_policy(DefaultPolicy::new().with_write_permissions(["Custom.Write"]))
///     .with_path_prefix("/beta")
///     .into_service();
/// # let _ = service;
/// ```
pub struct SecurityUpdateService<S> {
    shared: Arc<Shared<S>>,
}

/// The store and the configuration behind one `Arc`: a service is cloned for every request
/// (hyper-util's adapter does), and each `Arc` in it is two atomic instructions a request
/// (`scripts/atomics.py`). The configuration stays an `Arc` of its own: the preflight shares
/// it.
struct Shared<S> {
    store: Arc<S>,
    config: Arc<Config>,
}

/// What the service and its preflight decide with; fixed once built.
pub(crate) struct Config {
    /// Which configuration this is, never reused in the process: the preflight's decision
    /// names its configuration by this, not by a clone of its `Arc` (two atomic instructions
    /// a request). `Config` is not `Clone`, so one id is one configuration.
    pub(crate) id: u64,
    pub(crate) gates: write_gate::WriteGates,
    pub(crate) in_flight: InFlight,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) policy: Arc<dyn Policy>,
    pub(crate) schema: ResourceSchema,
    pub(crate) path_prefix: Option<Box<str>>,
    /// The service root of `@odata.context` (e.g. `https://graph.example.com/beta`); `None`:
    /// from the request's scheme and `Host` and the path prefix.
    pub(crate) service_root: Option<Box<str>>,
    pub(crate) max_attempts: u32,
    /// Largest object a write may leave behind, serialized.
    pub(crate) max_object_bytes: usize,
    /// Most objects one tenant may have; a write that would create one more is 507.
    pub(crate) max_objects_per_tenant: u64,
    /// Told of store operations, conflicts and audit records; `None`: nothing is measured.
    pub(crate) observer: Option<crate::observe::SharedObserver>,
}

impl Config {
    pub(crate) fn new() -> Self {
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            gates: write_gate::WriteGates::new(),
            in_flight: InFlight::default(),
            audit: Arc::new(TracingAudit),
            policy: Arc::new(DefaultPolicy::new()),
            schema: ResourceSchema::graph(),
            path_prefix: None,
            service_root: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            max_objects_per_tenant: DEFAULT_MAX_OBJECTS_PER_TENANT,
            observer: None,
        }
    }
}

impl<S> Clone for SecurityUpdateService<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<S> fmt::Debug for SecurityUpdateService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityUpdateService")
            .field("policy", &self.shared.config.policy)
            .field("schema", &self.shared.config.schema)
            .field("path_prefix", &self.shared.config.path_prefix)
            .finish_non_exhaustive()
    }
}

impl<S: SecurityStore> SecurityUpdateService<S> {
    /// The service over `store`, with the default policy, Graph's schema, the tracing audit
    /// sink and no path prefix. [`StackBuilder`](crate::StackBuilder) changes any of these.
    pub fn new(store: S) -> Self {
        Self::from_parts(Arc::new(store), Config::new())
    }

    pub(crate) fn from_parts(store: Arc<S>, config: Config) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                config: Arc::new(config),
            }),
        }
    }

    /// The configuration the service (and its preflight) decide with.
    pub(crate) fn config(&self) -> &Config {
        &self.shared.config
    }

    pub(crate) fn config_path_prefix(&self) -> &str {
        self.shared.config.path_prefix.as_deref().unwrap_or("")
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &S {
        &self.shared.store
    }

    /// A layer that routes and authorizes requests exactly as this service will, before any
    /// body is read: `PATCH /nowhere` is 404 and a caller without the write permission is 403
    /// without uploading a megabyte first, in a stack composed by hand (between the auth and
    /// content-type layers; [`stack`](crate::stack)'s [`Endpoint`](crate::endpoint::Endpoint)
    /// makes the same decision itself). The service takes the layer's decision for the request
    /// it was made for (not after a layer in between changed the path or the principal) and
    /// makes it itself otherwise, so it stays fail-closed without the layer.
    pub fn preflight_layer(&self) -> PreflightLayer {
        PreflightLayer {
            config: self.shared.config.clone(),
        }
    }
}

impl<S, B> Service<Request<B>> for SecurityUpdateService<S>
where
    S: SecurityStore,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let ids = RequestIds::take(&mut request);
        self.call_handed(request, ids, Handed::InExtensions)
    }
}

impl<S: SecurityStore> SecurityUpdateService<S> {
    /// [`call`](Service::call) for a request with `ids`, with what the layers before decided
    /// found where `handed` says.
    pub(crate) fn call_handed<B>(
        &self,
        mut request: Request<B>,
        ids: RequestIds,
        handed: Handed,
    ) -> ResponseFuture {
        // This service reads no body. A PATCH's was read before it when its patch came with
        // it (from the merge-patch layer or the endpoint); any other body a request declares
        // is left unread, and a refusal then closes the connection (`crate::refusal`).
        let body_read = match &handed {
            Handed::Direct { patch, .. } => patch.is_some(),
            Handed::InExtensions => {
                request.method() == Method::PATCH
                    && request.extensions().get::<crate::MergePatch>().is_some()
            }
        };
        let operation = match self.prepare(&mut request, handed) {
            Ok(operation) => operation,
            Err(error) => {
                let response = error.into_response(&ids);
                if body_read {
                    return ResponseFuture::ready(response);
                }
                let (version, headers) = (request.version(), request.headers());
                return ResponseFuture::ready(close_if_body_unread(response, version, headers));
            }
        };
        // A store that answers at once: the operation is done here, or goes on in the
        // response future from where it stopped (see `write_at_once`).
        let (operation, resumed) = match (self.shared.store.at_once(), operation) {
            (Some(store), Operation::Write(write)) => match self.write_at_once(store, write) {
                Ok(AtOnceOutcome::GoesOn(write, resumed)) => (Operation::Write(write), resumed),
                Ok(AtOnceOutcome::Answered(reply)) => return answer(Ok(reply), &ids, None),
                Err(error) => return answer(Err(error), &ids, None),
            },
            (
                Some(store),
                Operation::Read {
                    key,
                    representation,
                    conditions,
                    head,
                    unread,
                },
            ) => {
                let outcome = self.read_at_once(store, &key, representation, &conditions, head);
                return answer(outcome, &ids, unread);
            }
            (None, operation) => (operation, Resumed::default()),
        };
        self.run_to_the_end(operation, resumed, ids)
    }

    /// An operation that goes on after `call`: a store that does not answer at once, or a
    /// write that waits for its turn. Out of line: on a store that answers at once, a PATCH
    /// that does not wait never runs it, and its code stays out of the lines that PATCH
    /// runs (the instruction cache; benches/README.md, twenty-second session).
    #[inline(never)]
    fn run_to_the_end(
        &self,
        operation: Operation,
        resumed: Resumed,
        ids: RequestIds,
    ) -> ResponseFuture {
        let this = self.clone();
        let entered = self.shared.config.in_flight.enter();
        // Each operation's future held once, in a named future that answers with its outcome
        // (an `async` block awaiting it would hold it twice).
        let future: BoxFuture = match operation {
            Operation::Read {
                key,
                representation,
                conditions,
                head,
                unread,
            } => Box::pin(
                Answering::new(
                    async move { this.read(&key, representation, &conditions, head).await },
                    ids,
                    entered,
                )
                .closing_if(unread),
            ),
            Operation::Write(write) => {
                Box::pin(Answering::new(this.write(write, resumed), ids, entered))
            }
        };
        ResponseFuture::run_to_the_end(future)
    }
}

/// The answer to an operation done within `call`; `unread`: see [`Operation::Read`].
fn answer(
    outcome: Result<Reply, GraphError>,
    ids: &RequestIds,
    unread: Option<http::Version>,
) -> ResponseFuture {
    let response = match outcome {
        Ok(reply) => reply.into_response(ids, unread),
        Err(error) => close_if_unread(error.into_response(ids), unread),
    };
    ResponseFuture::ready(response)
}

impl<S: SecurityStore> SecurityUpdateService<S> {
    /// A read, with RFC 9110 §13.2.2's order: `If-Match` (412), then `If-None-Match` (304).
    async fn read(
        &self,
        key: &ObjectKey,
        representation: Representation,
        (if_match, if_none_match): &(Precondition, Precondition),
        head: bool,
    ) -> Result<Reply, GraphError> {
        let snapshot = self.load_or_default(key).await?;
        Self::read_reply(snapshot, representation, if_match, if_none_match, head)
    }

    /// A read's answer, with RFC 9110 §13.2.2's order of its preconditions.
    fn read_reply(
        snapshot: Snapshot,
        representation: Representation,
        if_match: &Precondition,
        if_none_match: &Precondition,
        head: bool,
    ) -> Result<Reply, GraphError> {
        if_match.check(&snapshot)?;
        let not_modified = if_none_match.matches_weakly(&snapshot);
        Ok(Reply {
            not_modified,
            head,
            ..Reply::of(snapshot, false, representation)
        })
    }

    pub(crate) async fn load_or_default(&self, key: &ObjectKey) -> Result<Snapshot, GraphError> {
        let load = self.shared.store.load(key);
        let observer = self.shared.config.observer.as_ref();
        match crate::observe::timed(
            observer,
            self.shared.store.kind(),
            StoreOperation::Load,
            load,
        )
        .await
        {
            Ok(Some(snapshot)) => Ok(snapshot),
            Ok(None) => default_snapshot(key),
            Err(error) => Err(error.into()),
        }
    }
}
