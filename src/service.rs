//! [`SecurityUpdateService`]: the leaf service that routes, authorizes, checks preconditions,
//! merges, validates and saves.
//!
//! It expects the layers of [`stack`](crate::stack) outside it and fails closed without them:
//! no [`Principal`] is 401, a `PATCH` whose content type was not checked is checked here (415),
//! and a `PATCH` without a parsed [`MergePatch`] is 400.
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

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value};
use tower::Service;

use crate::audit::{AuditOutcome, AuditRecord, AuditSink, TracingAudit};
use crate::auth::{Access, DefaultPolicy, Policy, Principal};
use crate::content_type::{JsonContentType, check_json_content_type};
use crate::error::{ErrorKind, GraphError};
use crate::merge_patch::{MergePatch, apply_to_object};
use crate::request_id::RequestIds;
use crate::route::{Target, parse_path};
use crate::schema::{ODATA_TYPE, ResourceSchema};
use crate::store::{ObjectKey, SecurityStore, Snapshot, SwapOutcome};

/// The content type Graph answers objects with.
const ODATA_JSON: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";
const ODATA_VERSION: HeaderName = HeaderName::from_static("odata-version");
const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");
/// Namespace of the deterministic (v5) object ids: the same user gets the same id everywhere.
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5e6c_0d1e_7a4b_4c2e_9f0a_3b1d_2c4e_6f80);
/// Compare-and-swap attempts before answering 503; each lost race means another write landed.
const DEFAULT_MAX_ATTEMPTS: u32 = 64;

/// The Graph "Update security" operation as a `tower::Service`; see the [module docs](self).
///
/// Cheap to clone (two reference counts) and always ready, as hyper and axum want.
///
/// ```
/// use security_update::{MemoryStore, SecurityUpdateService, DefaultPolicy};
///
/// let service = SecurityUpdateService::new(MemoryStore::new())
///     .with_policy(DefaultPolicy::new().with_write_permissions(["Custom.Write"]))
///     .with_path_prefix("/beta");
/// # let _ = service;
/// ```
pub struct SecurityUpdateService<S> {
    store: Arc<S>,
    config: Arc<Config>,
}

#[derive(Clone)]
struct Config {
    #[cfg(feature = "tokio")]
    gates: Arc<crate::write_gate::WriteGates>,
    audit: Arc<dyn AuditSink>,
    policy: Arc<dyn Policy>,
    schema: ResourceSchema,
    path_prefix: Option<Box<str>>,
    max_attempts: u32,
}

impl Config {
    /// Routing, method, principal and policy: what decides 404 / 405 / 401 / 403 / 400 before
    /// any body is read.
    fn authorize<B>(&self, request: &Request<B>) -> Result<(Access, ObjectKey), GraphError> {
        let path = request.uri().path();
        let path = match &self.path_prefix {
            Some(prefix) => path.strip_prefix(&**prefix).ok_or_else(no_route)?,
            None => path,
        };
        let target = parse_path(path).ok_or_else(no_route)?;
        let access = match *request.method() {
            Method::GET => Access::Read,
            Method::PATCH => Access::Write,
            _ => {
                return Err(GraphError::new(
                    ErrorKind::MethodNotAllowed,
                    format!(
                        "The method {} is not allowed on this resource.",
                        request.method()
                    ),
                ));
            }
        };
        let principal = request
            .extensions()
            .get::<Principal>()
            .ok_or_else(|| GraphError::new(ErrorKind::MissingToken, "Access token is empty."))?;
        let key = self
            .policy
            .authorize(principal, access, &target)
            .inspect_err(|error| {
                // Refused attempts at a user object by id are audited; `/me` is always the caller.
                if let Target::User(user) = &target
                    && error.status() == StatusCode::FORBIDDEN
                {
                    self.audit.record(&AuditRecord::new(
                        principal,
                        principal.tenant_id(),
                        &user.to_ascii_lowercase(),
                        AuditOutcome::Denied {
                            status: error.status().as_u16(),
                            reason: error.message().to_owned(),
                        },
                    ));
                }
            })?;
        Ok((access, key))
    }
}

impl<S> Clone for SecurityUpdateService<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S> fmt::Debug for SecurityUpdateService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityUpdateService")
            .field("policy", &self.config.policy)
            .field("schema", &self.config.schema)
            .field("path_prefix", &self.config.path_prefix)
            .finish_non_exhaustive()
    }
}

impl<S: SecurityStore> SecurityUpdateService<S> {
    /// The service over `store`, with the default policy and Graph's schema.
    pub fn new(store: S) -> Self {
        Self {
            store: Arc::new(store),
            config: Arc::new(Config {
                #[cfg(feature = "tokio")]
                gates: Arc::new(crate::write_gate::WriteGates::new()),
                audit: Arc::new(TracingAudit),
                policy: Arc::new(DefaultPolicy::new()),
                schema: ResourceSchema::graph(),
                path_prefix: None,
                max_attempts: DEFAULT_MAX_ATTEMPTS,
            }),
        }
    }

    /// Replaces the authorization policy.
    pub fn with_policy(mut self, policy: impl Policy) -> Self {
        Arc::make_mut(&mut self.config).policy = Arc::new(policy);
        self
    }

    /// Replaces the audit sink (default: [`TracingAudit`]).
    pub fn with_audit(mut self, audit: Arc<dyn AuditSink>) -> Self {
        Arc::make_mut(&mut self.config).audit = audit;
        self
    }

    /// Replaces the resource schema.
    pub fn with_schema(mut self, schema: ResourceSchema) -> Self {
        Arc::make_mut(&mut self.config).schema = schema;
        self
    }

    /// Serves the routes under `prefix` (e.g. `/beta`) when mounted directly in hyper.
    /// Not needed under axum's `nest_service`, which strips the prefix itself.
    pub fn with_path_prefix(mut self, prefix: &str) -> Self {
        let prefix = prefix.trim_end_matches('/');
        Arc::make_mut(&mut self.config).path_prefix =
            (!prefix.is_empty()).then(|| Box::from(prefix));
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// A layer that routes and authorizes requests exactly as this service will, before any
    /// body is read: `PATCH /nowhere` is 404 and a caller without the write permission is 403
    /// without uploading a megabyte first. [`stack`](crate::stack) mounts it between the auth
    /// and content-type layers. The service repeats the checks itself, so it stays fail-closed
    /// without it.
    pub fn preflight_layer(&self) -> PreflightLayer {
        PreflightLayer {
            config: self.config.clone(),
        }
    }
}

/// Routes and authorizes before the body is read; see
/// [`SecurityUpdateService::preflight_layer`].
#[must_use]
#[derive(Clone)]
pub struct PreflightLayer {
    config: Arc<Config>,
}

impl fmt::Debug for PreflightLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreflightLayer").finish_non_exhaustive()
    }
}

impl<S> tower::Layer<S> for PreflightLayer {
    type Service = Preflight<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Preflight {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by [`PreflightLayer`].
#[must_use]
#[derive(Clone)]
pub struct Preflight<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for Preflight<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Preflight")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Service<Request<B>> for Preflight<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<crate::body::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = crate::body::ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.config.authorize(&request) {
            Ok(_) => crate::body::ResponseFuture::inner(self.inner.call(request)),
            Err(error) => crate::body::ResponseFuture::rejected(
                error.into_response(&RequestIds::of(&request)),
            ),
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
        let ids = RequestIds::of(&request);
        let operation = match self.prepare(&mut request) {
            Ok(operation) => operation,
            Err(error) => return ResponseFuture::ready(error.into_response(&ids)),
        };
        let this = self.clone();
        let future: BoxFuture = Box::pin(async move {
            let outcome = match operation {
                Operation::Read { key } => this.read(&key).await,
                Operation::Write(write) => this.write(write).await,
            };
            Ok(match outcome {
                Ok(reply) => reply.into_response(&ids),
                Err(error) => error.into_response(&ids),
            })
        });
        ResponseFuture::run_to_the_end(future)
    }
}

/// What a request asks for, once everything that needs no store has been checked.
enum Operation {
    Read { key: ObjectKey },
    Write(Write),
}

struct Write {
    key: ObjectKey,
    actor: Principal,
    patch: MergePatch,
    precondition: Precondition,
    minimal: bool,
}

/// A successful answer.
struct Reply {
    snapshot: Snapshot,
    minimal: bool,
}

impl<S: SecurityStore> SecurityUpdateService<S> {
    /// Routing, authentication, authorization, content type, patch presence, `If-Match`
    /// syntax and the patch-only schema rules: everything that needs no store.
    fn prepare<B>(&self, request: &mut Request<B>) -> Result<Operation, GraphError> {
        let config = &*self.config;
        let (access, key) = config.authorize(request)?;
        if access == Access::Read {
            return Ok(Operation::Read { key });
        }
        if request.extensions().get::<JsonContentType>().is_none() {
            check_json_content_type(request.headers())?;
        }
        let patch = request
            .extensions_mut()
            .remove::<MergePatch>()
            .ok_or_else(|| {
                GraphError::new(
                    ErrorKind::BadRequest,
                    "The request body was not read as a merge patch (is MergePatchLayer mounted?).",
                )
            })?;
        config.schema.check_patch(patch.document())?;
        let headers = request.headers();
        let actor = request
            .extensions()
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| GraphError::new(ErrorKind::MissingToken, "Access token is empty."))?;
        Ok(Operation::Write(Write {
            key,
            actor,
            patch,
            precondition: Precondition::parse(headers)?,
            minimal: prefers_minimal(headers),
        }))
    }

    async fn read(&self, key: &ObjectKey) -> Result<Reply, GraphError> {
        let snapshot = self.load_or_default(key).await?;
        Ok(Reply {
            snapshot,
            minimal: false,
        })
    }

    async fn load_or_default(&self, key: &ObjectKey) -> Result<Snapshot, GraphError> {
        match self.store.load(key).await {
            Ok(Some(snapshot)) => Ok(snapshot),
            Ok(None) => default_snapshot(key),
            Err(error) => Err(error.into_graph_error()),
        }
    }

    /// Merge, validate, check `If-Match`, compare-and-swap; on a lost race, again from the
    /// winner's object. The patch is moved into the first attempt and re-parsed from its raw
    /// bytes only when a race is lost.
    async fn write(&self, write: Write) -> Result<Reply, GraphError> {
        let Write {
            key,
            actor,
            patch,
            precondition,
            minimal,
        } = write;
        let raw = patch.raw().clone();
        let mut patch = Some(patch.into_document());
        // Queue behind writers already queueing for this object (see `write_gate`).
        #[cfg(feature = "tokio")]
        let mut gate = if self.config.gates.is_busy(&key) {
            Some(self.config.gates.enter(&key).await)
        } else {
            None
        };
        let mut current = self.load_or_default(&key).await?;
        for _ in 0..self.config.max_attempts {
            let document = match patch.take() {
                Some(document) => document,
                None => MergePatch::parse(raw.clone(), usize::MAX)?.into_document(),
            };
            let mut candidate = current.document().clone();
            apply_to_object(&mut candidate, document);
            self.config
                .schema
                .check_merged(&mut candidate, current.document())?;
            precondition.check(&current)?;
            let next = Snapshot::new(current.version() + 1, candidate).map_err(|_| {
                GraphError::new(ErrorKind::Internal, "the object could not be serialized")
            })?;
            match self
                .store
                .compare_and_swap(&key, current.version(), next.clone())
                .await
            {
                Ok(SwapOutcome::Swapped) => {
                    if self.config.audit.enabled() {
                        self.config.audit.record(&AuditRecord::accepted(
                            &actor,
                            &key,
                            etag_text(&current),
                            etag_text(&next),
                            String::from_utf8_lossy(&raw).into_owned(),
                        ));
                    }
                    return Ok(Reply {
                        snapshot: next,
                        minimal,
                    });
                }
                Ok(SwapOutcome::Conflict { .. }) => {}
                Err(error) => return Err(error.into_graph_error()),
            }
            // Lost a race. Queue at the object's gate (once) so that retries are fair, or at
            // least let the other tasks on this thread run; then start again from what is
            // current by then.
            #[cfg(feature = "tokio")]
            if gate.is_none() {
                gate = Some(self.config.gates.enter(&key).await);
            } else {
                yield_now().await;
            }
            #[cfg(not(feature = "tokio"))]
            yield_now().await;
            current = self.load_or_default(&key).await?;
        }
        Err(GraphError::new(
            ErrorKind::ServiceUnavailable,
            "The object is being updated by too many writers at once; retry later.",
        )
        .with_retry_after(1))
    }
}

impl Reply {
    fn into_response(self, ids: &RequestIds) -> Response<Full<Bytes>> {
        let mut response = if self.minimal {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            response.headers_mut().insert(
                PREFERENCE_APPLIED,
                HeaderValue::from_static("return=minimal"),
            );
            response
        } else {
            let mut response = Response::new(Full::new(self.snapshot.json().clone()));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ODATA_JSON));
            response
        };
        let headers = response.headers_mut();
        headers.insert(ODATA_VERSION, HeaderValue::from_static("4.0"));
        headers.insert(header::ETAG, self.snapshot.etag());
        ids.stamp(headers);
        response
    }
}

fn etag_text(snapshot: &Snapshot) -> String {
    snapshot.etag().to_str().unwrap_or_default().to_owned()
}

/// A user's object before its first save: version 0, its type and its stable id.
fn default_snapshot(key: &ObjectKey) -> Result<Snapshot, GraphError> {
    let name = format!("{}/{}", key.tenant_id(), key.user_id());
    let id = uuid::Uuid::new_v5(&ID_NAMESPACE, name.as_bytes());
    let mut document = Map::new();
    document.insert("@odata.type".to_owned(), Value::from(ODATA_TYPE));
    document.insert("id".to_owned(), Value::from(id.to_string()));
    Snapshot::new(0, document)
        .map_err(|_| GraphError::new(ErrorKind::Internal, "the object could not be serialized"))
}

fn no_route() -> GraphError {
    GraphError::new(
        ErrorKind::NotFound,
        "Resource not found for the segment; the routes are /me/security and /users/{id}/security.",
    )
}

/// Goes to the back of the scheduler's queue. Under tokio, tokio's own yield: a task that wakes
/// itself lands in tokio's LIFO slot and is polled again at once, which yields nothing.
#[cfg(feature = "tokio")]
fn yield_now() -> impl Future<Output = ()> {
    tokio::task::yield_now()
}

/// Returns `Pending` once after waking itself: "go to the back of the queue" on runtimes
/// that queue self-woken tasks behind the others.
#[cfg(not(feature = "tokio"))]
fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}

/// `If-Match`, compared strongly (RFC 9110 §13.1.1).
#[derive(Debug, PartialEq, Eq)]
enum Precondition {
    None,
    Any,
    OneOf(Vec<String>),
}

impl Precondition {
    fn parse(headers: &HeaderMap) -> Result<Self, GraphError> {
        let mut values = headers.get_all(header::IF_MATCH).iter().peekable();
        if values.peek().is_none() {
            return Ok(Self::None);
        }
        let malformed =
            || GraphError::new(ErrorKind::BadRequest, "The If-Match header is malformed.");
        let mut tags = Vec::new();
        for value in values {
            let mut rest = value.to_str().map_err(|_| malformed())?;
            loop {
                rest = rest.trim_start_matches([' ', '\t', ',']);
                if rest.is_empty() {
                    break;
                }
                if let Some(after) = rest.strip_prefix('*') {
                    tags.push(None);
                    rest = after;
                    continue;
                }
                let (weak, quoted) = match rest.strip_prefix("W/") {
                    Some(quoted) => (true, quoted),
                    None => (false, rest),
                };
                let inner = quoted.strip_prefix('"').ok_or_else(malformed)?;
                let end = inner.find('"').ok_or_else(malformed)?;
                // A weak tag never matches in a strong comparison; keep it out of the list.
                if !weak {
                    tags.push(Some(inner[..end].to_owned()));
                }
                rest = &inner[end + 1..];
            }
        }
        if tags.iter().any(Option::is_none) {
            return Ok(Self::Any);
        }
        Ok(Self::OneOf(tags.into_iter().flatten().collect()))
    }

    fn check(&self, current: &Snapshot) -> Result<(), GraphError> {
        let Self::OneOf(tags) = self else {
            return Ok(());
        };
        let etag = current.etag();
        let current_tag = etag.to_str().unwrap_or_default().trim_matches('"');
        if tags.iter().any(|tag| tag == current_tag) {
            Ok(())
        } else {
            Err(GraphError::new(
                ErrorKind::PreconditionFailed,
                format!(
                    "The If-Match ETag does not match the current ETag {}.",
                    etag.to_str().unwrap_or_default()
                ),
            ))
        }
    }
}

/// Whether `Prefer` asks for `return=minimal` (RFC 7240).
fn prefers_minimal(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|preference| {
            preference
                .split(';')
                .next()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("return=minimal"))
        })
}

/// Response future of [`SecurityUpdateService`]: ready at once for requests refused before
/// the store is involved, boxed otherwise.
pub struct ResponseFuture {
    kind: FutureKind,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

enum FutureKind {
    Ready(Option<Response<Full<Bytes>>>),
    Pending(BoxFuture),
    #[cfg(feature = "tokio")]
    Spawned(tokio::task::JoinHandle<Result<Response<Full<Bytes>>, Infallible>>),
}

impl ResponseFuture {
    fn ready(response: Response<Full<Bytes>>) -> Self {
        Self {
            kind: FutureKind::Ready(Some(response)),
        }
    }

    /// Runs the operation so that it finishes even if the request goes away (client gone,
    /// timeout, stream reset): a save that has started (redb's blocking commit, a statement
    /// sent to PostgreSQL) may land anyway, and then it must be audited like any other.
    ///
    /// Stores that answer at once (the memory store) finish on a first poll right here, with
    /// nothing to protect and no task to spawn. Under tokio, an operation that has to wait
    /// moves to its own task, which dropping this future does not cancel. (A future polled
    /// with a no-op waker registers the real one on its next poll, so handing it on is sound.)
    fn run_to_the_end(mut future: BoxFuture) -> Self {
        #[cfg(feature = "tokio")]
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            return match future.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(response)) => Self::ready(response),
                Poll::Ready(Err(never)) => match never {},
                Poll::Pending => Self {
                    kind: FutureKind::Spawned(runtime.spawn(future)),
                },
            };
        }
        Self {
            kind: FutureKind::Pending(future),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.kind {
            FutureKind::Ready(response) => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(crate::body::polled_after_completion))),
            FutureKind::Pending(future) => future.as_mut().poll(cx),
            #[cfg(feature = "tokio")]
            FutureKind::Spawned(task) => Pin::new(task).poll(cx).map(|joined| {
                joined.unwrap_or_else(|_| {
                    Ok(
                        GraphError::new(ErrorKind::Internal, "the request's task failed")
                            .into_response(&RequestIds::generate(None)),
                    )
                })
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(header::IF_MATCH, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn if_match_is_parsed_per_rfc_9110() {
        assert_eq!(
            Precondition::parse(&headers(&[])).unwrap(),
            Precondition::None
        );
        assert_eq!(
            Precondition::parse(&headers(&["*"])).unwrap(),
            Precondition::Any
        );
        assert_eq!(
            Precondition::parse(&headers(&["\"1\", W/\"2\"", "\"a,b\""])).unwrap(),
            Precondition::OneOf(vec!["1".into(), "a,b".into()])
        );
        for bad in ["1", "\"1", "W/1", "\"1\" x"] {
            assert!(Precondition::parse(&headers(&[bad])).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefer_return_minimal_is_found_among_preferences() {
        let mut map = HeaderMap::new();
        map.insert(
            "prefer",
            HeaderValue::from_static("odata.maxpagesize=3, Return=Minimal"),
        );
        assert!(prefers_minimal(&map));
        map.insert("prefer", HeaderValue::from_static("return=representation"));
        assert!(!prefers_minimal(&map));
    }

    #[test]
    fn default_ids_are_stable_and_distinct() {
        let a = default_snapshot(&ObjectKey::new("T", "A")).unwrap();
        let again = default_snapshot(&ObjectKey::new("t", "a")).unwrap();
        let b = default_snapshot(&ObjectKey::new("t", "b")).unwrap();
        assert_eq!(a.document()["id"], again.document()["id"]);
        assert_ne!(a.document()["id"], b.document()["id"]);
        assert_eq!(a.version(), 0);
    }
}
