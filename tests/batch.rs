//! JSON batching: `POST /$batch` through the whole stack, and around an axum `Router`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use http_body_util::Full;
use security_update::{
    BatchLayer, MemoryStore, ObjectKey, RateLimitLayer, ResourceSchema, SecurityStore, StackBuilder,
};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};

fn open_app() -> (App, MemoryStore) {
    let open = ResourceSchema::from_json_schema(&json!({"type": "object"})).unwrap();
    let store = MemoryStore::new();
    (
        StackBuilder::new(store.clone())
            .with_schema(open)
            .build(tokens()),
        store,
    )
}

fn batch(token: Option<&str>, body: &Value) -> http::Request<Full<Bytes>> {
    let request =
        request(Method::POST, "/$batch", token).header("content-type", "application/json");
    request.body(Full::from(body.to_string())).unwrap()
}

fn by_id<'a>(reply: &'a Value, id: &str) -> &'a Value {
    reply["responses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no response {id} in {reply}"))
}

#[tokio::test]
async fn a_batch_runs_each_request_through_the_stack_in_dependency_order() {
    let (app, store) = open_app();
    let body = json!({"requests": [
        {"id": "read", "method": "GET", "url": "/me/security?$select=level", "dependsOn": ["write"]},
        {"id": "write", "method": "PATCH", "url": "/me/security",
         "headers": {"Content-Type": "application/json", "client-request-id": "sub-1"},
         "body": {"level": 7}},
        {"id": "other", "method": "GET", "url": "users/bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb/security"}
    ]});
    let reply = send(app, batch(Some("alice"), &body)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let json = reply.json();
    assert_eq!(by_id(&json, "write")["status"], 200);
    assert_eq!(
        by_id(&json, "write")["headers"]["client-request-id"],
        "sub-1"
    );
    assert_eq!(by_id(&json, "read")["status"], 200);
    assert_eq!(
        by_id(&json, "read")["body"]["level"],
        7,
        "the read saw the write"
    );
    // Bob's object is not Alice's: refused alone, the rest of the batch stands.
    assert_eq!(by_id(&json, "other")["status"], 403);
    // Each sub-request has its own request-id, none of them the batch's.
    let ids: Vec<&str> = json["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["headers"]["request-id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&reply.header("request-id")));
    assert_ne!(ids[0], ids[1]);
    let stored = store
        .load(&ObjectKey::new(TENANT, ALICE))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.document()["level"], 7);
}

#[tokio::test]
async fn a_request_whose_dependency_failed_is_424_and_not_run() {
    let (app, store) = open_app();
    let body = json!({"requests": [
        {"id": "bad", "method": "PATCH", "url": "/me/security",
         "headers": {"Content-Type": "application/json"}, "body": {"id": "not-mine"}},
        {"id": "after", "method": "PATCH", "url": "/me/security", "dependsOn": ["bad"],
         "headers": {"Content-Type": "application/json"}, "body": {"level": 1}},
        {"id": "alone", "method": "PATCH", "url": "/me/security",
         "headers": {"Content-Type": "application/json"}, "body": {"note": "x"}}
    ]});
    let json = send(app, batch(Some("alice"), &body)).await.json();
    assert_eq!(by_id(&json, "bad")["status"], 400);
    assert_eq!(by_id(&json, "after")["status"], 424);
    assert_eq!(
        by_id(&json, "after")["body"]["error"]["code"],
        "failedDependency"
    );
    // Like every Graph error: innerError with its own request-id, also in its headers.
    let inner = &by_id(&json, "after")["body"]["error"]["innerError"];
    assert_eq!(
        inner["request-id"],
        by_id(&json, "after")["headers"]["request-id"]
    );
    assert_eq!(
        inner["request-id"].as_str().map(str::len),
        Some(36),
        "{inner}"
    );
    assert!(inner["date"].is_string(), "{inner}");
    assert_eq!(by_id(&json, "alone")["status"], 200);
    let stored = store
        .load(&ObjectKey::new(TENANT, ALICE))
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.document().get("level").is_none(),
        "the dependent request ran"
    );
    assert_eq!(stored.document()["note"], "x");
}

/// A conditional read answered 304 (the object is as the caller has it) did not fail: a
/// request depending on it runs, where one depending on a failed request is 424.
#[tokio::test]
async fn a_request_depending_on_a_304_runs() {
    let (app, store) = open_app();
    let first = json!({"requests": [{"id": "w", "method": "PATCH", "url": "/me/security",
        "headers": {"Content-Type": "application/json"}, "body": {"level": 1}}]});
    let json = send(app.clone(), batch(Some("alice"), &first)).await.json();
    let etag = by_id(&json, "w")["headers"]["etag"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"requests": [
        {"id": "r", "method": "GET", "url": "/me/security", "headers": {"If-None-Match": etag}},
        {"id": "after", "method": "PATCH", "url": "/me/security", "dependsOn": ["r"],
         "headers": {"Content-Type": "application/json"}, "body": {"level": 2}}
    ]});
    let json = send(app, batch(Some("alice"), &body)).await.json();
    assert_eq!(by_id(&json, "r")["status"], 304);
    assert_eq!(by_id(&json, "after")["status"], 200, "{json}");
    let stored = store
        .load(&ObjectKey::new(TENANT, ALICE))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.document()["level"], 2);
}

#[tokio::test]
async fn the_batch_resource_takes_json_posts_only() {
    let (app, store) = open_app();
    let body = json!({"requests": [
        {"id": "1", "method": "PATCH", "url": "/me/security",
         "headers": {"Content-Type": "application/json"}, "body": {"level": 1}}
    ]});
    for method in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
        let request = request(method.clone(), "/$batch", Some("alice"))
            .header("content-type", "application/json")
            .body(Full::from(body.to_string()))
            .unwrap();
        let reply = send(app.clone(), request).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.header("allow"), "POST", "{method}");
        assert!(reply.error_message().contains("POST"), "{method}");
    }
    let text = request(Method::POST, "/$batch", Some("alice"))
        .header("content-type", "text/plain")
        .body(Full::from(body.to_string()))
        .unwrap();
    assert_eq!(
        send(app.clone(), text).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let gzip = request(Method::POST, "/$batch", Some("alice"))
        .header("content-type", "application/json")
        .header("transfer-encoding", "gzip, chunked")
        .body(Full::from(body.to_string()))
        .unwrap();
    assert_eq!(send(app, gzip).await.status, StatusCode::NOT_IMPLEMENTED);
    assert!(store.is_empty(), "a refused batch ran");
}

/// A batch of `patch` and a read naming `count` distinct headers.
fn many_headers(patch: &Value, count: usize) -> Value {
    let headers: serde_json::Map<String, Value> = (0..count)
        .map(|i| (format!("x-{i}"), Value::from("")))
        .collect();
    json!({"requests": [patch.clone(),
        {"id": "h", "method": "GET", "url": "/me/security", "headers": headers}]})
}

#[tokio::test]
async fn malformed_batches_are_400_and_change_nothing() {
    let (app, store) = open_app();
    let get = |id: &str| json!({"id": id, "method": "GET", "url": "/me/security"});
    let patch = json!({"id": "p", "method": "PATCH", "url": "/me/security",
        "headers": {"Content-Type": "application/json"}, "body": {"level": 1}});
    for (body, needle) in [
        (json!({"requests": [patch.clone(), get("p")]}), "used twice"),
        (
            json!({"requests": (0..21).map(|i| get(&i.to_string())).collect::<Vec<_>>()}),
            "at most 20",
        ),
        (
            json!({"requests": [patch.clone(), {"id": "n", "method": "POST", "url": "/$batch"}]}),
            "do not nest",
        ),
        (
            json!({"requests": [patch.clone(), {"id": "d", "method": "GET", "url": "/me/security", "dependsOn": ["zz"]}]}),
            "not in the batch",
        ),
        (json!({"nope": []}), "requests"),
        // Past what a request's own head may hold at the front door: a header map holds at
        // most 24,576 entries and panics past that, taking the connection down.
        (many_headers(&patch, 101), "at most 100"),
        (many_headers(&patch, 30_000), "at most 100"),
        (
            json!({"requests": [patch.clone(), {"id": "h", "method": "GET", "url": "/me/security",
                "headers": {"x-big": "x".repeat(17 * 1024)}}]}),
            "more than 16384 bytes",
        ),
    ] {
        let reply = send(app.clone(), batch(Some("alice"), &body)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(reply.error_message().contains(needle), "{needle}");
    }
    assert!(store.is_empty());
}

#[tokio::test]
async fn a_batch_without_a_token_is_401_and_one_over_the_body_limit_is_413() {
    let (app, store) = open_app();
    let body = json!({"requests": [{"id": "1", "method": "GET", "url": "/me/security"}]});
    let reply = send(app, batch(None, &body)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let small = StackBuilder::new(store.clone())
        .with_body_limit(64)
        .build(tokens());
    let big = json!({"requests": (0..5).map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/me/security"})).collect::<Vec<_>>()});
    let reply = send(small, batch(Some("alice"), &big)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn every_request_of_a_batch_counts_against_the_callers_rate_limit() {
    // Three tokens: the batch takes one, its three requests two (the third is 429).
    let app = StackBuilder::new(MemoryStore::new())
        .with_rate_limit(RateLimitLayer::new(3, Duration::from_secs(3600)).with_burst(3))
        .build(tokens());
    let body = json!({"requests": (0..3).map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/me/security"})).collect::<Vec<_>>()});
    let json = send(app, batch(Some("alice"), &body)).await.json();
    let statuses: Vec<u64> = json["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        1,
        "{statuses:?}"
    );
}

/// A request body that records whether anything polled it, and never ends.
struct Untouched(Arc<AtomicBool>);

impl http_body::Body for Untouched {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0.store(true, Ordering::SeqCst);
        std::task::Poll::Pending
    }
}

/// Over budget, a batch is refused before its body is read: reading and parsing a megabyte
/// batch only to answer 429 for each of its requests would let a throttled caller keep a
/// worker busy. The caller's other requests are still refused, and nothing ran.
#[tokio::test]
async fn a_batch_over_the_rate_limit_is_429_with_its_body_unread() {
    let store = MemoryStore::new();
    let app = StackBuilder::new(store.clone())
        .with_schema(ResourceSchema::from_json_schema(&json!({"type": "object"})).unwrap())
        .with_rate_limit(RateLimitLayer::new(1, Duration::from_secs(3600)))
        .build(tokens());
    let one = json!({"requests": [{"id": "1", "method": "PATCH", "url": "/me/security",
        "headers": {"Content-Type": "application/json"}, "body": {"level": 1}}]});
    // The only token goes to the batch; its request is 429.
    let json = send(app.clone(), batch(Some("alice"), &one)).await.json();
    assert_eq!(by_id(&json, "1")["status"], 429, "{json}");
    assert!(store.is_empty(), "a throttled sub-request ran");
    let polled = Arc::new(AtomicBool::new(false));
    let request = request(Method::POST, "/$batch", Some("alice"))
        .header("content-type", "application/json")
        .body(Untouched(polled.clone()))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), app.clone().oneshot(request))
        .await
        .expect("a throttled batch waited for its body")
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    assert!(!polled.load(Ordering::SeqCst), "the body was read");
    assert!(store.is_empty());
    // Another caller has its own budget.
    let json = send(app, batch(Some("bob"), &one)).await.json();
    assert_eq!(
        by_id(&json, "1")["status"],
        429,
        "bob's batch took his token: {json}"
    );
}

#[tokio::test]
async fn the_batch_layer_works_around_an_axum_router() {
    let router = axum::Router::new().route(
        "/hello",
        axum::routing::get(|| async { axum::Json(json!({"hello": "world"})) }),
    );
    let service = BatchLayer::new().layer(router);
    let body = json!({"requests": [
        {"id": "1", "method": "GET", "url": "/hello"},
        {"id": "2", "method": "GET", "url": "/nowhere"}
    ]});
    let request = http::Request::post("/$batch")
        .header("content-type", "application/json")
        .body(Full::from(body.to_string()))
        .unwrap();
    let reply = send(service, request).await;
    assert_eq!(reply.status, StatusCode::OK);
    let json = reply.json();
    assert_eq!(by_id(&json, "1")["body"]["hello"], "world");
    assert_eq!(by_id(&json, "2")["status"], 404);
}

/// The text of the body of request `id` in the batch `text`, as written there.
fn body_of(text: &str, id: &str) -> String {
    let start = text.find(&format!(r#""id": "{id}""#)).unwrap();
    let body = start + text[start..].find(r#""body": "#).unwrap() + r#""body": "#.len();
    let end = body + text[body..].find('}').unwrap() + 1;
    text[body..end].to_owned()
}

#[tokio::test]
async fn sub_request_bodies_meet_the_strict_patch_parser_and_batches_never_nest() {
    let (app, store) = open_app();
    // The body travels as the batch carried it: duplicate members, integers past 64 bits and
    // numbers that underflow are refused as they are for a PATCH of its own, not silently
    // re-serialized.
    let body = r#"{"requests": [
        {"id": "dup", "method": "PATCH", "url": "/me/security",
         "headers": {"Content-Type": "application/json"}, "body": {"a": 1, "a": 2}},
        {"id": "big", "method": "PATCH", "url": "/me/security",
         "headers": {"Content-Type": "application/json"}, "body": {"n": 18446744073709551616}},
        {"id": "tiny", "method": "PATCH", "url": "/me/security",
         "headers": {"Content-Type": "application/json"}, "body": {"n": 1e-400}},
        {"id": "huge", "method": "PATCH", "url": "/me/security",
         "headers": {"Content-Type": "application/json"}, "body": {"n": 1e400}},
        {"id": "surrogate", "method": "PATCH", "url": "/me/security",
         "headers": {"Content-Type": "application/json"}, "body": {"s": "\ud800"}},
        {"id": "read", "method": "GET", "url": "/me/security"}
    ]}"#;
    let request = request(Method::POST, "/$batch", Some("alice"))
        .header("content-type", "application/json")
        .body(Full::from(body))
        .unwrap();
    let json = send(app.clone(), request).await.json();
    assert_eq!(by_id(&json, "dup")["status"], 400);
    assert_eq!(by_id(&json, "big")["status"], 400);
    assert_eq!(by_id(&json, "tiny")["status"], 400);
    let tiny = by_id(&json, "tiny")["body"]["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(tiny.contains("1e-400 of member \"n\""), "{tiny}");
    // JSON this parser cannot hold inside one request's body is that request's 400, as for
    // a PATCH of its own; the batch and its other requests run.
    for id in ["huge", "surrogate"] {
        let reply = by_id(&json, id);
        assert_eq!(reply["status"], 400, "{reply}");
        let alone = patch(&app, "/me/security", "alice", &body_of(body, id)).await;
        assert_eq!(alone.status, StatusCode::BAD_REQUEST, "{id}");
        assert_eq!(
            reply["body"]["error"]["message"].as_str(),
            Some(alone.error_message().as_str()),
            "{id}"
        );
    }
    assert_eq!(by_id(&json, "read")["status"], 200);
    assert!(store.is_empty());
    for url in ["/%24batch", "/$BATCH/", "/beta/$batch"] {
        let nested = json!({"requests": [{"id": "n", "method": "POST", "url": url}]});
        let reply = send(app.clone(), batch(Some("alice"), &nested)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{url}");
    }
}

#[tokio::test]
async fn a_batch_naming_a_member_twice_is_400_and_changes_nothing() {
    let (app, _store) = open_app();
    assert_eq!(
        patch(&app, "/me/security", "alice", r#"{"level":1}"#)
            .await
            .status,
        StatusCode::OK
    );
    let before = get(&app, "/me/security", "alice").await;
    // serde_json keeps the last of two members, another reader of the same bytes may keep the
    // first (or fold case): each of these is a request another reader reads otherwise.
    let sub = |members: &str| {
        format!(
            r#"{{"requests":[{{"id":"1","url":"/me/security",{members},"body":{{"level":2}}}}]}}"#
        )
    };
    let json = r#""headers":{"Content-Type":"application/json"}"#;
    let get_then_patch = format!(
        r#"{{"requests":[{{"id":"1","method":"GET","url":"/me/security"}}],"requests":{}}}"#,
        sub(&format!(r#""method":"PATCH",{json}"#))
            .strip_prefix(r#"{"requests":"#)
            .and_then(|rest| rest.strip_suffix('}'))
            .unwrap()
    );
    let cases = [
        // GET, then PATCH.
        sub(&format!(r#""method":"GET","method":"PATCH",{json}"#)),
        // PATCH, then GET to a reader that folds case.
        sub(&format!(r#""method":"PATCH","Method":"GET",{json}"#)),
        // Headers with an `If-Match` that fails, then headers without one.
        sub(&format!(
            r#""method":"PATCH","headers":{{"Content-Type":"application/json","If-Match":"\"9\""}},{json}"#
        )),
        // One header in two cases: a failing `If-Match`, then `*`.
        sub(
            r#""method":"PATCH","headers":{"Content-Type":"application/json","If-Match":"\"9\"","if-match":"*"}"#,
        ),
        get_then_patch,
    ];
    for body in cases {
        let request = request(Method::POST, "/$batch", Some("alice"))
            .header("content-type", "application/json")
            .body(Full::from(body.clone()))
            .unwrap();
        let reply = send(app.clone(), request).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(reply.error_message().contains("twice"), "{body}");
    }
    let after = get(&app, "/me/security", "alice").await;
    assert_eq!(after.header("etag"), before.header("etag"));
    assert_eq!(after.body, before.body);
}
