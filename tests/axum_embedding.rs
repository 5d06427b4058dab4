//! The stack mounted in an axum `Router` with `nest_service("/beta", ...)`, composed with
//! tower-http layers, served over a real loopback socket.

mod common;

use axum::Router;
use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use security_update::{MemoryStore, SecurityUpdateService, stack};
use tower_http::trace::TraceLayer;

#[tokio::test]
async fn nested_under_beta_with_trace_layer() {
    let store = MemoryStore::new();
    let app = Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .nest_service(
            "/beta",
            stack(
                security_update::StackBuilder::new(store.clone())
                    .with_schema(security_update::ResourceSchema::open_type())
                    .into_service(),
                tokens(),
            ),
        )
        .layer(TraceLayer::new_for_http());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let request = Request::patch("/beta/me/security")
        .header("content-type", "application/json")
        .header("authorization", "Bearer alice")
        .body(Full::from(
            r##"{"@odata.type": "#microsoft.graph.security.security", "riskLevel": "low"}"##,
        ))
        .unwrap();
    let reply = send_http1(addr, request).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["riskLevel"], "low");
    assert_eq!(
        reply.json()["@odata.type"],
        "#microsoft.graph.security.security"
    );
    assert_eq!(reply.header("etag"), "\"1\"");
    assert_eq!(store.len(), 1);

    let reply = send_http1(
        addr,
        Request::get("/beta/me/security")
            .body(Full::<Bytes>::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 401);
    reply.error_message();

    let reply = send_http1(
        addr,
        Request::get("/health")
            .body(Full::<Bytes>::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "the rest of the router still routes");
}

/// README's CORS recipe: a browser client can send `If-Match`, `Prefer` and
/// `client-request-id`, and read `ETag`, `request-id` and `client-request-id`.
#[tokio::test]
async fn cors_recipe_lets_a_browser_use_the_graph_headers() {
    use http::header::{self, HeaderName, HeaderValue};
    use http::{Method, StatusCode};
    use tower_http::cors::CorsLayer;

    let cors = CorsLayer::new()
        .allow_origin(HeaderValue::from_static("https://app.contoso.com"))
        .allow_methods([Method::GET, Method::PATCH])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            HeaderName::from_static("prefer"),
            HeaderName::from_static("client-request-id"),
        ])
        .expose_headers([
            header::ETAG,
            HeaderName::from_static("request-id"),
            HeaderName::from_static("client-request-id"),
        ]);
    let app = Router::new()
        .nest_service(
            "/beta",
            stack(SecurityUpdateService::new(MemoryStore::new()), tokens()),
        )
        .layer(cors);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let preflight = Request::options("/beta/me/security")
        .header("origin", "https://app.contoso.com")
        .header("access-control-request-method", "PATCH")
        .header(
            "access-control-request-headers",
            "authorization,content-type,if-match,prefer,client-request-id",
        )
        .body(Full::<Bytes>::default())
        .unwrap();
    let reply = send_http1(addr, preflight).await;
    assert_eq!(reply.status, StatusCode::OK);
    let allowed = reply.header("access-control-allow-headers").to_owned();
    for name in ["if-match", "prefer", "client-request-id"] {
        assert!(allowed.contains(name), "{name} not allowed: {allowed}");
    }

    let request = Request::patch("/beta/me/security")
        .header("origin", "https://app.contoso.com")
        .header("content-type", "application/json")
        .header("authorization", "Bearer alice")
        .body(Full::from("{}"))
        .unwrap();
    let reply = send_http1(addr, request).await;
    assert_eq!(reply.status, StatusCode::OK);
    let exposed = reply.header("access-control-expose-headers").to_owned();
    for name in ["etag", "request-id", "client-request-id"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
}
