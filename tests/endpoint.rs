//! The stack's `Endpoint` (the checks before the body, the merge patch and the service as one
//! service) answers every request exactly as the pieces it fuses, nested by hand, do.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use security_update::endpoint::Endpoint;
use security_update::{
    AuthLayer, ContentTypeLayer, MemoryStore, MergePatchLayer, ObjectKey, RateLimitLayer,
    RequestIdLayer, ResourceSchema, SecurityStore, StackBuilder,
};
use serde_json::Value;
use tower::ServiceBuilder;

const LIMIT: usize = 64;
/// Requests each caller may make in the test's hour.
const BUDGET: u32 = 40;

/// One request of the sequence: what is sent, and the status both must answer.
struct Case {
    method: Method,
    path: &'static str,
    token: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    status: u16,
}

const fn case(
    method: Method,
    path: &'static str,
    token: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    status: u16,
) -> Case {
    Case {
        method,
        path,
        token,
        headers,
        body,
        status,
    }
}

const JSON: &[(&str, &str)] = &[("content-type", "application/json")];
const TEXT: &[(&str, &str)] = &[("content-type", "text/plain")];
const JSON_2: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("content-length", "2"),
];
const TEXT_5: &[(&str, &str)] = &[("content-type", "text/plain"), ("content-length", "5")];
const GZIP: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("transfer-encoding", "gzip"),
];
const GZIP_TEXT: &[(&str, &str)] = &[
    ("content-type", "text/plain"),
    ("transfer-encoding", "gzip"),
];
const BOTH_FRAMINGS: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("transfer-encoding", "chunked"),
    ("content-length", "2"),
];
const LONG: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("content-length", "100"),
];
const STALE: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("if-match", "W/\"stale\""),
];
const MINIMAL: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("prefer", "return=minimal"),
];
const BOB_PATH: &str = "/users/bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb/security";
const ALICE_PATH: &str = "/users/aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa/security";
const PADDED: &str =
    r#"{"revision": 4, "padding": "0123456789012345678901234567890123456789012345678"}"#;

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use Method as M;
    let alice = Some("alice");
    let mut cases = vec![
        case(M::PATCH, "/me/security", alice, JSON, r#"{"revision": 1}"#, 200),
        case(M::GET, "/me/security", alice, &[], "", 200),
        case(M::HEAD, "/me/security", alice, &[], "", 200),
        case(M::GET, "/me/security?$select=revision", alice, &[], "", 200),
        case(M::GET, "/me/security?$expand=x", alice, &[], "", 400),
        // A read with a body: JSON is read past (the answer closes), anything else is 415.
        case(M::GET, "/me/security", alice, JSON_2, "{}", 200),
        case(M::GET, "/me/security", alice, TEXT_5, "words", 415),
        case(M::PATCH, "/me/security", alice, TEXT, "words", 415),
        case(M::PATCH, "/me/security", alice, &[], r#"{"revision": 2}"#, 415),
        // The route and the method before the content type.
        case(M::PATCH, "/nowhere", alice, TEXT, "words", 404),
        case(M::DELETE, "/me/security", alice, &[], "", 405),
        case(M::POST, "/me/security", alice, JSON_2, "{}", 405),
        case(M::POST, "/me/security", alice, &[("content-length", "2")], "{}", 405),
        // The permission and the policy before the content type.
        case(M::PATCH, "/me/security", Some("noscope"), TEXT, "words", 403),
        case(M::PATCH, "/me/security", None, JSON, "{}", 401),
        case(M::PATCH, BOB_PATH, alice, JSON, "{}", 403),
        case(M::PATCH, ALICE_PATH, Some("admin"), JSON, r#"{"revision": 3}"#, 200),
        // The patch's head (after the content type), then its body.
        case(M::PATCH, "/me/security", alice, GZIP, "{}", 501),
        case(M::PATCH, "/me/security", alice, GZIP_TEXT, "{}", 415),
        case(M::PATCH, "/me/security", alice, BOTH_FRAMINGS, "{}", 400),
        case(M::PATCH, "/me/security", alice, LONG, "{}", 413),
        case(M::PATCH, "/me/security", alice, JSON, PADDED, 413),
        case(M::PATCH, "/me/security", alice, JSON, "[1, 2]", 400),
        case(M::PATCH, "/me/security", alice, JSON, "{not json", 400),
        case(M::PATCH, "/me/security", alice, JSON, "", 400),
        case(M::PATCH, "/me/security", alice, JSON, r#"{"@odata.type": "x"}"#, 400),
        // The operation.
        case(M::PATCH, "/me/security", alice, STALE, r#"{"revision": 5}"#, 412),
        case(M::PATCH, "/me/security", alice, MINIMAL, r#"{"revision": 6}"#, 204),
        case(M::PATCH, "/me/security", alice, JSON, r#"{"revision": null}"#, 200),
    ];
    // Each caller has `BUDGET` requests an hour (Alice uses fewer): Bob's last two are 429
    // before anything else is looked at.
    cases.push(case(M::PATCH, "/me/security", Some("bob"), JSON, r#"{"revision": 7}"#, 200));
    cases.push(case(M::PATCH, "/nowhere", Some("bob"), TEXT, "words", 404));
    for _ in 2..BUDGET {
        cases.push(case(M::GET, "/me/security", Some("bob"), &[], "", 200));
    }
    cases.push(case(M::PATCH, "/nowhere", Some("bob"), TEXT, "words", 429));
    cases.push(case(M::PATCH, "/me/security", Some("bob"), JSON, r#"{"revision": 8}"#, 429));
    assert!(cases.iter().filter(|case| case.token == alice).count() < BUDGET as usize);
    cases
}

fn request(case: &Case) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(case.method.clone())
        .uri(case.path)
        .header("client-request-id", "5b3a3a3e-0000-4000-8000-000000000001");
    if let Some(token) = case.token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in case.headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::from(case.body)).unwrap()
}

/// The answer with what differs by run taken out: the request id (and the date) in error
/// bodies and in the headers.
fn comparable(reply: &Reply) -> (StatusCode, Vec<(String, String)>, Value) {
    let mut headers: Vec<(String, String)> = reply
        .headers
        .iter()
        .filter(|(name, _)| *name != "request-id")
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    let mut body = if reply.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&reply.body).unwrap()
    };
    if let Some(inner) = body
        .pointer_mut("/error/innerError")
        .and_then(Value::as_object_mut)
    {
        inner.remove("request-id");
        inner.remove("date");
    }
    (reply.status, headers, body)
}

fn rate_limit() -> RateLimitLayer {
    RateLimitLayer::new(BUDGET, Duration::from_secs(3600)).with_burst(BUDGET)
}

#[tokio::test]
async fn the_endpoint_answers_as_the_pieces_it_fuses_and_stores_the_same() {
    let fused_store = MemoryStore::new();
    let service = StackBuilder::new(fused_store.clone())
        .with_schema(ResourceSchema::open_type())
        .into_service();
    let fused = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(AuthLayer::new(tokens()))
        .service(Endpoint::new(
            service,
            rate_limit(),
            MergePatchLayer::new().with_limit(LIMIT),
        ));

    let nested_store = MemoryStore::new();
    let service = StackBuilder::new(nested_store.clone())
        .with_schema(ResourceSchema::open_type())
        .into_service();
    let nested = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(AuthLayer::new(tokens()))
        .layer(rate_limit())
        .layer(service.preflight_layer())
        .layer(ContentTypeLayer::new())
        .layer(MergePatchLayer::new().with_limit(LIMIT))
        .service(service);

    for case in cases() {
        let from_fused = send(fused.clone(), request(&case)).await;
        let from_nested = send(nested.clone(), request(&case)).await;
        let what = format!("{} {} {:?}", case.method, case.path, case.headers);
        assert_eq!(
            from_fused.status.as_u16(),
            case.status,
            "{what}: {from_fused:?}"
        );
        assert_eq!(comparable(&from_fused), comparable(&from_nested), "{what}");
    }
    // Each wrote the same, and only what was answered 200 / 204.
    for user in [ALICE, BOB] {
        let key = ObjectKey::new(TENANT, user);
        let fused = fused_store.load(&key).await.unwrap().unwrap();
        let nested = nested_store.load(&key).await.unwrap().unwrap();
        assert_eq!(fused.version(), nested.version(), "{user}");
        assert_eq!(fused.document(), nested.document(), "{user}");
    }
    let alice = fused_store.load(&ObjectKey::new(TENANT, ALICE)).await;
    // Revisions 1, 3 (by the admin), 6, then null: four writes.
    assert_eq!(alice.unwrap().unwrap().version(), 4);
}
