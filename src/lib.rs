//! Microsoft Graph's beta **Update security** operation — `PATCH /me/security` and
//! `PATCH /users/{usersId}/security` on `microsoft.graph.security.security` — as reusable tower
//! middleware.
//!
//! The pieces, outermost first, each usable alone around any inner service:
//!
//! ```text
//! RequestIdLayer ─▶ AuthLayer ─▶ PreflightLayer ─▶ ContentTypeLayer ─▶ MergePatchLayer ─▶ SecurityUpdateService ─▶ SecurityStore
//! request-id        bearer →      route+authorize   415 unless JSON     body → MergePatch   If-Match, merge,         memory | redb
//! client-request-id Principal     before the body   (415)               (413 / 400)         validate, compare-and-   | postgres
//!                   (401)         (404/405/403)                                             swap
//! ```
//!
//! [`stack`] puts them together with defaults. Every failure is a Graph error response
//! (`{"error":{"code","message","innerError":{...}}}`); the service's error type is
//! `Infallible`.
//!
//! # Mounting in axum
//!
//! ```
//! use axum::Router;
//! use security_update::{stack, MemoryStore, Principal, SecurityUpdateService, StaticTokens};
//!
//! let tokens = StaticTokens::new().with_token(
//!     "dev-token",
//!     Principal::delegated("11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222")
//!         .with_scopes(["SecurityEvents.ReadWrite.All"]),
//! );
//! let app: Router = Router::new()
//!     .nest_service("/beta", stack(SecurityUpdateService::new(MemoryStore::new()), tokens));
//! # let _ = app;
//! ```
//!
//! # Serving with hyper
//!
//! ```no_run
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::server::conn::auto::Builder;
//! use hyper_util::service::TowerToHyperService;
//! use security_update::{stack, MemoryStore, SecurityUpdateService, StaticTokens};
//!
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! let service = SecurityUpdateService::new(MemoryStore::new()).with_path_prefix("/beta");
//! let app = stack(service, StaticTokens::new());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     let app = TowerToHyperService::new(app.clone());
//!     tokio::spawn(async move {
//!         let _ = Builder::new(TokioExecutor::new())
//!             .serve_connection(TokioIo::new(stream), app)
//!             .await;
//!     });
//! }
//! # }
//! ```
//!
//! # Security considerations
//! Forgetting a layer fails closed (401 / 415 / 400). Bodies are bounded before and while
//! reading. Tokens never reach logs or error messages. A rejected request changes nothing.

#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
mod body;
pub mod content_type;
mod error;
pub mod merge_patch;
pub mod rate_limit;
pub mod request_id;
mod route;
pub mod schema;
pub mod service;
pub mod store;
#[cfg(feature = "tokio")]
mod write_gate;

#[cfg(feature = "jwt")]
pub use auth::JwtValidator;
pub use auth::{
    Access, AuthLayer, DefaultPolicy, GLOBAL_ADMINISTRATOR, Policy, Principal, PrincipalKind,
    SECURITY_ADMINISTRATOR, StaticTokens, TokenRejection, TokenValidator,
};
pub use body::ResponseBody;
pub use content_type::{ContentTypeLayer, JsonContentType};
pub use error::{ErrorKind, GraphError};
pub use merge_patch::{MergePatch, MergePatchLayer};
pub use rate_limit::RateLimitLayer;
pub use request_id::{RequestIdLayer, RequestIds};
pub use route::Target;
pub use schema::{ODATA_TYPE, ResourceSchema, SchemaError};
pub use service::{Preflight, PreflightLayer, ResponseFuture, SecurityUpdateService};
#[cfg(feature = "postgres")]
pub use store::PostgresStore;
#[cfg(feature = "redb")]
pub use store::RedbStore;
pub use store::{MemoryStore, ObjectKey, SecurityStore, Snapshot, StoreError, SwapOutcome};

use tower::Layer;

/// The whole pipeline of [`stack`]: request ids, auth, preflight (route and authorize before the
/// body is read), content type, merge patch, service.
pub type Stack<S, V> = request_id::RequestId<
    auth::Auth<
        Preflight<
            content_type::ContentType<merge_patch::MergePatchService<SecurityUpdateService<S>>>,
        >,
        V,
    >,
>;

/// Wraps `service` in the default layers, authenticating with `validator`.
pub fn stack<S, V>(service: SecurityUpdateService<S>, validator: V) -> Stack<S, V>
where
    S: SecurityStore,
    V: TokenValidator,
{
    stack_with(service, AuthLayer::new(validator), MergePatchLayer::new())
}

/// Like [`stack`], with a configured auth layer (realm) and merge-patch layer (body limit,
/// depth bound).
pub fn stack_with<S, V>(
    service: SecurityUpdateService<S>,
    auth: AuthLayer<V>,
    merge_patch: MergePatchLayer,
) -> Stack<S, V>
where
    S: SecurityStore,
    V: TokenValidator,
{
    let preflight = service.preflight_layer();
    let inner = merge_patch.layer(service);
    let inner = ContentTypeLayer::new().layer(inner);
    let inner = preflight.layer(inner);
    let inner = auth.layer(inner);
    RequestIdLayer::new().layer(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn public_layers_and_services_are_send_sync_clone() {
        assert_send_sync_clone::<RequestIdLayer>();
        assert_send_sync_clone::<ContentTypeLayer>();
        assert_send_sync_clone::<MergePatchLayer>();
        assert_send_sync_clone::<RateLimitLayer>();
        assert_send_sync_clone::<PreflightLayer>();
        assert_send_sync_clone::<AuthLayer<StaticTokens>>();
        assert_send_sync_clone::<SecurityUpdateService<MemoryStore>>();
        assert_send_sync_clone::<Stack<MemoryStore, StaticTokens>>();
        assert_send_sync_clone::<MemoryStore>();
        assert_send_sync_clone::<ResourceSchema>();
        assert_send_sync_clone::<Principal>();
    }
}
