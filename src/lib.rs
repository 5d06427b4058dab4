//! Microsoft Graph's beta **Update security** operation — `PATCH /me/security` and
//! `PATCH /users/{usersId}/security` on `microsoft.graph.security.security` — as reusable tower
//! middleware.
//!
//! The pieces, outermost first, each usable alone around any inner service:
//!
//! ```text
//! RequestIdLayer ─▶ TimeoutLayer ─▶ AuthLayer ─▶ RateLimitLayer ─▶ PreflightLayer ─▶ ContentTypeLayer ─▶ MergePatchLayer ─▶ SecurityUpdateService ─▶ SecurityStore
//! request-id        408 with the    bearer →      per caller       route+authorize   415 unless JSON     body → MergePatch   If-Match, merge,         memory | redb
//! client-request-id request's ids   Principal     (429)            before the body   (415)               (413 / 400)         validate, compare-and-   | postgres
//!                   (off by default) (401)         (off by default) (404/405/403)                                             swap
//! ```
//!
//! [`StackBuilder`] owns the configuration and puts them together in that order, the rate
//! limit, the preflight, the content type, the merge patch and the service as one service
//! ([`endpoint::Endpoint`]), and the whole as one [`Stack`], which takes a request outside a
//! `$batch` whose token is known good straight to the endpoint with its ids, deadline and
//! principal as values; [`stack`] does it with defaults. Every failure is a Graph error response
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
//! use security_update::{MemoryStore, StackBuilder, StaticTokens};
//!
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! let app = StackBuilder::new(MemoryStore::new())
//!     .with_path_prefix("/beta")
//!     .build(StaticTokens::new());
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
//! # Features
//!
//! | feature | adds |
//! |---|---|
//! | `jwt` (default) | `JwtValidator`, `EphemeralSigner`, `JwkSet` |
//! | `jwks-url` | `JwtValidator::from_jwks_url`: keys fetched over HTTPS and refreshed |
//! | `json-schema` | `ResourceSchema::from_json_schema`: deployment schemas |
//! | `redb` | `RedbStore`: the embedded durable store |
//! | `postgres` | `PostgresStore`: one database for several processes |
//! | `prometheus` | `metrics::{PrometheusMetrics, MetricsLayer}`: Prometheus metrics |
//!
//! Features only add pieces; none changes how a request is handled.
//!
//! # Security considerations
//! Forgetting a layer fails closed (401 / 415 / 400). Bodies are bounded before and while
//! reading. Tokens never reach logs or error messages. A rejected request changes nothing.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
pub mod auth;
pub mod batch;
mod body;
pub mod content_type;
pub mod endpoint;
mod error;
mod extension_room;
mod macros;
pub mod merge_patch;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub mod metrics;
pub mod observe;
pub mod odata;
pub mod rate_limit;
pub mod refusal;
pub mod request_id;
mod route;
pub mod schema;
pub mod service;
mod stack;
pub mod store;
pub mod timeout;

#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use auth::jwt::{EphemeralSigner, JwkSet, JwtValidator};
pub use auth::{
    Access, AuthLayer, DefaultPolicy, GLOBAL_ADMINISTRATOR, Policy, Principal, PrincipalKind,
    SECURITY_ADMINISTRATOR, StaticTokens, TokenRejection, TokenValidator,
};
pub use batch::BatchLayer;
pub use body::ResponseBody;
pub use content_type::{ContentTypeLayer, JsonContentType};
pub use error::{ERROR_CATALOGUE, ErrorKind, GraphError};
pub use extension_room::make_extension_room;
pub use merge_patch::{MergePatch, MergePatchLayer};
pub use odata::QueryOptions;
pub use rate_limit::RateLimitLayer;
pub use request_id::{RequestIdLayer, RequestIds};
pub use route::Target;
pub use schema::{ODATA_TYPE, ResourceSchema, SchemaError, SchemaReloader};
pub use service::{Preflight, PreflightLayer, ResponseFuture, SecurityUpdateService};
pub use stack::{Stack, StackBody, StackBuilder, StackFuture, stack};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use store::PostgresStore;
#[cfg(feature = "redb")]
#[cfg_attr(docsrs, doc(cfg(feature = "redb")))]
pub use store::RedbStore;
pub use store::{MemoryStore, ObjectKey, SecurityStore, Snapshot, StoreError, SwapOutcome};
pub use timeout::{TimeoutLayer, WriteDeadline};

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
        assert_send_sync_clone::<TimeoutLayer>();
        assert_send_sync_clone::<PreflightLayer>();
        assert_send_sync_clone::<AuthLayer<StaticTokens>>();
        assert_send_sync_clone::<SecurityUpdateService<MemoryStore>>();
        assert_send_sync_clone::<Stack<MemoryStore, StaticTokens>>();
        assert_send_sync_clone::<endpoint::Endpoint<MemoryStore>>();
        assert_send_sync_clone::<MemoryStore>();
        assert_send_sync_clone::<ResourceSchema>();
        assert_send_sync_clone::<Principal>();
    }
}
