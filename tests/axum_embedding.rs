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
            stack(SecurityUpdateService::new(store.clone()), tokens()),
        )
        .layer(TraceLayer::new_for_http());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let request = Request::patch("/beta/me/security")
        .header("content-type", "application/json")
        .header("authorization", "Bearer alice")
        .body(Full::from(
            r##"{"@odata.type": "#microsoft.graph.security.security"}"##,
        ))
        .unwrap();
    let reply = send_http1(addr, request).await;
    assert_eq!(reply.status, 200);
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
