//! Each layer alone, around an axum `Router` and around a `tower::service_fn`.

mod common;

use std::convert::Infallible;

use axum::routing::{get, patch};
use axum::{Extension, Router};
use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use security_update::{
    AuthLayer, ContentTypeLayer, MergePatch, MergePatchLayer, Principal, RequestIdLayer, RequestIds,
};
use tower::{Layer, ServiceExt, service_fn};

async fn body_text<B: http_body::Body>(response: http::Response<B>) -> (StatusCode, String)
where
    B::Error: std::fmt::Debug,
{
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn bearer(token: &str) -> Request<Full<Bytes>> {
    Request::get("/who")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn auth_layer_around_an_axum_router() {
    let router = Router::new().route(
        "/who",
        get(|Extension(p): Extension<Principal>| async move { p.object_id().to_owned() }),
    );
    let app = AuthLayer::new(tokens()).layer(router);
    assert_eq!(
        body_text(app.clone().oneshot(bearer("alice")).await.unwrap()).await,
        (StatusCode::OK, ALICE.to_owned())
    );
    let (status, body) = body_text(app.oneshot(bearer("nobody")).await.unwrap()).await;
    assert_eq!(status, 401);
    assert!(body.contains("InvalidAuthenticationToken"));
}

#[tokio::test]
async fn auth_layer_around_a_service_fn() {
    let app = AuthLayer::new(tokens()).layer(service_fn(|req: Request<Full<Bytes>>| async move {
        let principal = req.extensions().get::<Principal>().cloned();
        Ok::<_, Infallible>(http::Response::new(
            principal
                .map(|p| p.object_id().to_owned())
                .unwrap_or_default(),
        ))
    }));
    assert_eq!(
        body_text(app.clone().oneshot(bearer("bob")).await.unwrap())
            .await
            .1,
        BOB
    );
    assert_eq!(
        app.oneshot(Request::get("/").body(Full::default()).unwrap())
            .await
            .unwrap()
            .status(),
        401
    );
}

fn json_patch_request(content_type: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::patch("/thing")
        .header("content-type", content_type)
        .body(Full::from(body))
        .unwrap()
}

#[tokio::test]
async fn content_type_layer_around_an_axum_router() {
    let router = Router::new().route("/thing", patch(|| async { "ok" }));
    let app = ContentTypeLayer::new().layer(router);
    assert_eq!(
        app.clone()
            .oneshot(json_patch_request("application/json", "{}"))
            .await
            .unwrap()
            .status(),
        200
    );
    let response = app
        .oneshot(json_patch_request("text/html", "{}"))
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert!(response.headers().contains_key("accept-patch"));
}

#[tokio::test]
async fn content_type_layer_around_a_service_fn() {
    let app = ContentTypeLayer::new().layer(service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(http::Response::new(String::from("ok")))
    }));
    assert_eq!(
        app.clone()
            .oneshot(json_patch_request("application/merge-patch+json", "{}"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.oneshot(json_patch_request("application/json; charset=latin1", "{}"))
            .await
            .unwrap()
            .status(),
        415
    );
}

#[tokio::test]
async fn merge_patch_layer_around_an_axum_router() {
    // The handler gets the parsed patch as a type, and the raw bytes are still its body.
    let router = Router::new().route(
        "/thing",
        patch(
            |Extension(patch): Extension<MergePatch>, body: Bytes| async move {
                format!("{} keys, {} bytes", patch.document().len(), body.len())
            },
        ),
    );
    let app = MergePatchLayer::new().with_limit(64).layer(router);
    let (status, text) = body_text(
        app.clone()
            .oneshot(json_patch_request("application/json", r#"{"a":1,"b":2}"#))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::OK, "2 keys, 13 bytes")
    );
    let (status, text) = body_text(
        app.clone()
            .oneshot(json_patch_request("application/json", "[]"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("JSON object"));
    let long = Box::leak(format!("{{\"a\":\"{}\"}}", "x".repeat(100)).into_boxed_str());
    assert_eq!(
        app.oneshot(json_patch_request("application/json", long))
            .await
            .unwrap()
            .status(),
        413
    );
}

/// Other methods pass through untouched: a POST whose body the router's handler reads is
/// answered as the handler answers, the connection kept.
#[tokio::test]
async fn merge_patch_layer_passes_other_methods_through_untouched() {
    use axum::routing::post;
    let router = Router::new().route(
        "/thing",
        post(|body: Bytes| async move { body.len().to_string() }),
    );
    let app = MergePatchLayer::new().with_limit(64).layer(router);
    let request = Request::post("/thing")
        .header("content-length", "200")
        .body(Full::from("y".repeat(200)))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert!(response.headers().get("connection").is_none());
    assert_eq!(
        body_text(response).await,
        (StatusCode::OK, "200".to_owned())
    );
}

#[tokio::test]
async fn merge_patch_layer_around_a_service_fn() {
    let app = MergePatchLayer::new().layer(service_fn(
        |req: Request<security_update::merge_patch::RequestBody<Full<Bytes>>>| async move {
            let keys = req
                .extensions()
                .get::<MergePatch>()
                .map_or(0, |p| p.document().len());
            Ok::<_, Infallible>(http::Response::new(keys.to_string()))
        },
    ));
    let (status, text) = body_text(
        app.clone()
            .oneshot(json_patch_request("application/json", r#"{"x":null}"#))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "1"));
    assert_eq!(
        app.oneshot(json_patch_request("application/json", "{"))
            .await
            .unwrap()
            .status(),
        400
    );
}

#[tokio::test]
async fn request_id_layer_around_an_axum_router() {
    let router = Router::new().route(
        "/who",
        get(|Extension(ids): Extension<RequestIds>| async move {
            ids.request_id().to_str().unwrap().to_owned()
        }),
    );
    let response = RequestIdLayer::new()
        .layer(router)
        .oneshot(bearer("x"))
        .await
        .unwrap();
    let header = response.headers()["request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(body_text(response).await.1, header);
}

#[tokio::test]
async fn layers_compose_with_axum_and_tower_http_layers() {
    // Router::layer applies our layers like any tower layer, in axum's own order.
    let router = Router::new()
        .route(
            "/thing",
            patch(|Extension(p): Extension<Principal>, Extension(m): Extension<MergePatch>| async move {
                format!("{}:{}", p.object_id(), m.document().len())
            }),
        )
        .layer(MergePatchLayer::new())
        .layer(ContentTypeLayer::new())
        .layer(AuthLayer::new(tokens()))
        .layer(RequestIdLayer::new())
        .layer(tower_http::trace::TraceLayer::new_for_http());
    let request = Request::patch("/thing")
        .header("authorization", "Bearer alice")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(r#"{"a":1}"#))
        .unwrap();
    let (status, text) = body_text(router.clone().oneshot(request).await.unwrap()).await;
    assert_eq!((status, text), (StatusCode::OK, format!("{ALICE}:1")));
}
