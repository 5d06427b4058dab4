//! The full stack, in process: every status of the contract, and that refusals change nothing.

mod common;

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use security_update::{
    MemoryStore, ODATA_TYPE, ObjectKey, ResourceSchema, SecurityStore, SecurityUpdateService,
    StackBuilder,
};
use serde_json::{Value, json};

const ODATA_JSON: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// The seed's example request, byte for byte (its Content-length counts the body as written
/// on the page; we send the real length, as any client would).
#[tokio::test]
async fn seed_example_request_gets_the_seed_example_response_shape() {
    let (app, store) = app();
    let body = "{\n  \"@odata.type\": \"#microsoft.graph.security.security\"\n}";
    let request = Request::patch("/me/security")
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .header("authorization", "Bearer alice")
        .body(Full::from(body))
        .unwrap();
    let reply = send(app, request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), ODATA_JSON);
    assert_eq!(reply.header("odata-version"), "4.0");
    // Graph's answer carries @odata.context besides what the seed shows (it is "shortened").
    let json = reply.object();
    assert_eq!(json["@odata.type"], "#microsoft.graph.security.security");
    let id = json["id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a GUID id like the seed's: {id}");
    assert_eq!(json.as_object().unwrap().len(), 2, "{json}");
    // Graph's type has no writable property: the seed's PATCH changes nothing, so nothing is
    // stored and the ETag is the never-written object's.
    assert_eq!(reply.header("etag"), "\"0\"");
    assert!(store.is_empty());
}

#[tokio::test]
async fn a_patch_that_changes_nothing_writes_nothing_and_keeps_the_etag() {
    let (app, store) = open_app();
    let saved = patch(&app, "/me/security", "alice", &revision(1)).await;
    assert_eq!(saved.header("etag"), "\"1\"");
    let before = store.entries();
    for same in [
        "{}".to_owned(),
        revision(1),
        r#"{"absent": null}"#.to_owned(),
    ] {
        let reply = patch(&app, "/me/security", "alice", &same).await;
        assert_eq!(reply.status, 200, "{same}");
        assert_eq!(
            reply.header("etag"),
            "\"1\"",
            "{same}: a no-op keeps the ETag"
        );
        assert_eq!(reply.object()["revision"], 1, "{same}");
        assert_eq!(
            store.entries(),
            before,
            "{same}: a no-op wrote to the store"
        );
    }
    // Prefer: return=minimal on a no-op: 204 with the current ETag.
    let minimal = request(Method::PATCH, "/me/security", Some("alice"))
        .header("prefer", "return=minimal")
        .body(Full::from("{}"))
        .unwrap();
    let reply = send(app.clone(), minimal).await;
    assert_eq!(
        (reply.status, reply.header("etag")),
        (StatusCode::NO_CONTENT, "\"1\"")
    );
    // If-Match still applies: a stale ETag is 412 even when nothing would change.
    let stale = request(Method::PATCH, "/me/security", Some("alice"))
        .header("if-match", "\"7\"")
        .body(Full::from("{}"))
        .unwrap();
    assert_eq!(send(app.clone(), stale).await.status, 412);
    // A no-op on a never-saved object creates nothing.
    assert_eq!(
        patch(&app, "/me/security", "bob", "{}")
            .await
            .header("etag"),
        "\"0\""
    );
    assert_eq!(store.entries(), before);
    // A real change after all that is version 2.
    assert_eq!(
        patch(&app, "/me/security", "alice", &revision(2))
            .await
            .header("etag"),
        "\"2\""
    );
}

#[tokio::test]
async fn id_is_stable_across_requests_and_distinct_per_user() {
    let (app, _) = app();
    let first = get(&app, "/me/security", "alice").await.json();
    let second = patch(&app, "/me/security", "alice", "{}").await.json();
    let third = get(&app, &format!("/users/{ALICE}/security"), "alice")
        .await
        .json();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first["id"], third["id"]);
    let bob = get(&app, "/me/security", "bob").await.json();
    assert_ne!(first["id"], bob["id"]);
}

#[tokio::test]
async fn get_answers_the_object_without_storing_it() {
    let (app, store) = app();
    let reply = get(&app, "/me/security", "reader").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["@odata.type"], ODATA_TYPE);
    assert_eq!(reply.header("etag"), "\"0\"");
    assert!(store.is_empty());
}

/// Conditional reads (RFC 9110 §13.2.2): `If-Match` first (412), then `If-None-Match`
/// (weak comparison: 304 with the `ETag` and no body); `HEAD` is `GET` without the body.
#[tokio::test]
async fn reads_honour_if_none_match_and_if_match_and_head() {
    let (app, _) = open_app();
    patch(&app, "/me/security", "alice", &revision(1)).await;
    let conditional = |name: &'static str, value: &'static str| {
        request(Method::GET, "/me/security", Some("alice"))
            .header(name, value)
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    for value in ["\"1\"", "W/\"1\"", "\"7\", \"1\"", "*"] {
        let reply = send(app.clone(), conditional("if-none-match", value)).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_MODIFIED,
            "If-None-Match: {value}"
        );
        assert_eq!(reply.header("etag"), "\"1\"", "If-None-Match: {value}");
        assert!(reply.body.is_empty(), "If-None-Match: {value}");
    }
    let reply = send(app.clone(), conditional("if-none-match", "\"0\"")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.object()["revision"], 1);
    let reply = send(app.clone(), conditional("if-none-match", "nonsense")).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.error_message().contains("If-None-Match"),
        "{:?}",
        reply.body
    );
    assert_eq!(
        send(app.clone(), conditional("if-match", "\"0\""))
            .await
            .status,
        412
    );
    assert_eq!(
        send(app.clone(), conditional("if-match", "\"1\""))
            .await
            .status,
        200
    );

    let get = get(&app, "/me/security", "alice").await;
    let head = send(
        app.clone(),
        request(Method::HEAD, "/me/security", Some("alice"))
            .body(Full::<Bytes>::default())
            .unwrap(),
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(head.header("etag"), get.header("etag"));
    assert_eq!(head.header("content-length"), get.body.len().to_string());
    assert_eq!(head.header("content-type"), get.header("content-type"));
}

/// `If-None-Match` on a PATCH (RFC 9110 §13.1.2): a matching tag is 412, and a refused write
/// changes nothing.
#[tokio::test]
async fn patch_if_none_match_refuses_a_matching_tag() {
    let (app, store) = open_app();
    let unless = |value: &'static str, body: String| {
        request(Method::PATCH, "/me/security", Some("alice"))
            .header("if-none-match", value)
            .body(Full::from(body))
            .unwrap()
    };
    assert_eq!(
        patch(&app, "/me/security", "alice", &revision(1))
            .await
            .status,
        200
    );
    let before = store.entries();
    for value in ["*", "\"1\"", "W/\"1\""] {
        let reply = send(app.clone(), unless(value, revision(2))).await;
        assert_eq!(
            reply.status,
            StatusCode::PRECONDITION_FAILED,
            "If-None-Match: {value}"
        );
        assert!(reply.error_message().contains("If-None-Match"), "{value}");
        assert_eq!(store.entries(), before, "{value}: a 412 changed the store");
    }
    let other = send(app.clone(), unless("\"7\"", revision(2))).await;
    assert_eq!(
        (other.status, other.header("etag")),
        (StatusCode::OK, "\"2\"")
    );
}

/// `*` (RFC 9110 §13.1.1-2) matches whenever there is a current representation, and a
/// user's security object always has one, as in Graph: one never saved reads as the default
/// object with `ETag: "0"`. So `If-Match: *` passes and `If-None-Match: *` matches, on reads
/// and writes, saved or not; never the one without the other on one state.
#[tokio::test]
async fn a_star_always_matches_the_users_object_on_reads_and_writes() {
    let (app, store) = open_app();
    let with = |method: Method, name: &'static str, body: Option<String>| {
        let request = request(method, "/me/security", Some("alice")).header(name, "*");
        request
            .body(body.map(Full::from).unwrap_or_default())
            .unwrap()
    };
    for saved in [false, true] {
        let read = send(app.clone(), with(Method::GET, "if-none-match", None)).await;
        assert_eq!(read.status, StatusCode::NOT_MODIFIED, "saved: {saved}");
        let read = send(app.clone(), with(Method::GET, "if-match", None)).await;
        assert_eq!(read.status, StatusCode::OK, "saved: {saved}");
        let before = store.entries();
        let write = send(
            app.clone(),
            with(Method::PATCH, "if-none-match", Some(revision(9))),
        )
        .await;
        assert_eq!(
            write.status,
            StatusCode::PRECONDITION_FAILED,
            "saved: {saved}"
        );
        assert_eq!(store.entries(), before, "a 412 changed the store");
        let write = send(
            app.clone(),
            with(Method::PATCH, "if-match", Some(revision(1))),
        )
        .await;
        assert_eq!(write.status, StatusCode::OK, "saved: {saved}");
    }
}

#[tokio::test]
async fn etag_changes_with_each_write_and_matches_get() {
    let (app, _) = open_app();
    let first = patch(&app, "/me/security", "alice", &revision(1)).await;
    let second = patch(&app, "/me/security", "alice", &revision(2)).await;
    assert_eq!(first.header("etag"), "\"1\"");
    assert_eq!(second.header("etag"), "\"2\"");
    assert_eq!(
        get(&app, "/me/security", "alice").await.header("etag"),
        "\"2\""
    );
}

#[tokio::test]
async fn prefer_return_minimal_is_204_with_etag() {
    let (app, _) = open_app();
    let request = request(Method::PATCH, "/me/security", Some("alice"))
        .header("prefer", "return=minimal")
        .body(Full::from(revision(1)))
        .unwrap();
    let reply = send(app, request).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("etag"), "\"1\"");
    assert_eq!(reply.header("preference-applied"), "return=minimal");
}

async fn patch_if_match(app: &App, if_match: &str, body: String) -> common::Reply {
    let request = request(Method::PATCH, "/me/security", Some("alice"))
        .header("if-match", if_match)
        .body(Full::from(body))
        .unwrap();
    send(app.clone(), request).await
}

#[tokio::test]
async fn if_match_is_strong_and_checked_against_the_current_version() {
    let (app, store) = open_app();
    patch(&app, "/me/security", "alice", &revision(1)).await;
    let before = store.entries();
    for stale in ["\"0\"", "\"2\"", "W/\"1\"", "\"1 \"", "\"x\", \"7\""] {
        let reply = patch_if_match(&app, stale, revision(9)).await;
        assert_eq!(
            reply.status,
            StatusCode::PRECONDITION_FAILED,
            "If-Match: {stale}"
        );
        assert!(reply.error_message().contains("\"1\""));
        assert_eq!(store.entries(), before, "a 412 changed the store");
    }
    assert_eq!(patch_if_match(&app, "\"1\"", revision(2)).await.status, 200);
    assert_eq!(
        patch_if_match(&app, "\"9\", \"2\"", revision(3))
            .await
            .status,
        200
    );
    assert_eq!(patch_if_match(&app, "*", revision(4)).await.status, 200);
    let reply = patch_if_match(&app, "nonsense", revision(5)).await;
    assert_eq!(reply.status, 400);
    assert!(reply.error_message().contains("If-Match"));
}

#[tokio::test]
async fn if_match_is_checked_after_body_validity() {
    let (app, _) = app();
    let request = request(Method::PATCH, "/me/security", Some("alice"))
        .header("if-match", "\"42\"")
        .body(Full::from(r#"{"displayName":"x"}"#))
        .unwrap();
    assert_eq!(send(app.clone(), request).await.status, 400);
    let mut request = common::request(Method::PATCH, "/me/security", Some("alice"))
        .header("if-match", "\"42\"")
        .body(Full::from("{}"))
        .unwrap();
    request
        .headers_mut()
        .insert("content-type", "text/plain".parse().unwrap());
    assert_eq!(send(app, request).await.status, 415);
}

#[tokio::test]
async fn request_id_is_on_every_response_and_client_request_id_echoed() {
    let (app, _) = app();
    let cases = [
        request(Method::GET, "/me/security", Some("alice")),
        request(Method::GET, "/nowhere", Some("alice")),
        request(Method::GET, "/me/security", None),
        request(Method::DELETE, "/me/security", Some("alice")),
        request(Method::PATCH, "/me/security", Some("alice")),
    ];
    for builder in cases {
        let request = builder
            .header("client-request-id", "7f0c1f4e-client")
            .body(Full::from("not json"))
            .unwrap();
        let reply = send(app.clone(), request).await;
        assert_eq!(reply.header("request-id").len(), 36, "{:?}", reply.status);
        assert_eq!(reply.header("client-request-id"), "7f0c1f4e-client");
        if !reply.status.is_success() {
            reply.error_message();
        }
    }
    // Answers that succeed too (the service leaves the ids to the layer outside), the
    // PATCH a real change under an open type.
    let (app, _) = open_app();
    for (method, body) in [(Method::PATCH, revision(1)), (Method::GET, String::new())] {
        let request = request(method, "/me/security", Some("alice"))
            .header("client-request-id", "7f0c1f4e-client")
            .body(Full::from(body))
            .unwrap();
        let reply = send(app.clone(), request).await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.header("etag"), "\"1\"");
        assert_eq!(reply.header("request-id").len(), 36);
        assert_eq!(reply.header("client-request-id"), "7f0c1f4e-client");
    }
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let (app, _) = app();
    for path in [
        "/",
        "/me",
        "/me/security/",
        "/me/securityx",
        "/users/security",
        "/beta/me/security",
    ] {
        let reply = get(&app, path, "alice").await;
        assert_eq!(reply.status, 404, "{path}");
        reply.error_message();
    }
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
        let request = request(method.clone(), "/me/security", Some("alice"))
            .header("content-type", "application/json")
            .body(Full::from("{}"))
            .unwrap();
        let reply = send(app.clone(), request).await;
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), "GET, HEAD, PATCH");
    }
}

/// Routing and authorization come before the body is even read: a bad body on an unknown path
/// is 404, a bare POST is 405, and a caller without the permission is 403 however large or
/// malformed its body.
#[tokio::test]
async fn route_and_permission_are_decided_before_the_body() {
    let (app, store) = app();
    let big = "x".repeat(4 * 1024 * 1024);
    type Case<'a> = (Method, &'a str, &'a str, Option<&'a str>, String, u16);
    let cases: Vec<Case> = vec![
        (
            Method::PATCH,
            "/nowhere",
            "alice",
            Some("text/plain"),
            "nonsense".into(),
            404,
        ),
        (
            Method::PATCH,
            "/nowhere",
            "alice",
            Some("application/json"),
            big.clone(),
            404,
        ),
        (
            Method::POST,
            "/me/security",
            "alice",
            None,
            String::new(),
            405,
        ),
        (
            Method::DELETE,
            "/me/security",
            "alice",
            None,
            String::new(),
            405,
        ),
        (
            Method::PATCH,
            "/me/security",
            "reader",
            Some("application/json"),
            big.clone(),
            403,
        ),
        (
            Method::PATCH,
            "/me/security",
            "reader",
            Some("text/plain"),
            "{}".into(),
            403,
        ),
        (
            Method::PATCH,
            "/users/bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb/security",
            "alice",
            Some("application/json"),
            "[".into(),
            403,
        ),
        (
            Method::PATCH,
            "/me/security",
            "app",
            Some("application/json"),
            big,
            400,
        ),
    ];
    for (method, path, token, content_type, body, status) in cases {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("authorization", format!("Bearer {token}"));
        if let Some(content_type) = content_type {
            builder = builder.header("content-type", content_type);
        }
        let reply = send(app.clone(), builder.body(Full::from(body)).unwrap()).await;
        assert_eq!(reply.status, status, "{method} {path} as {token}");
        reply.error_message();
    }
    assert!(store.is_empty());
}

#[tokio::test]
async fn missing_or_bad_tokens_are_401_with_challenge() {
    let (app, store) = app();
    let reply = send(
        app.clone(),
        request(Method::PATCH, "/me/security", None)
            .body(Full::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate"),
        "Bearer realm=\"security-update\""
    );
    assert!(reply.error_message().contains("empty"));
    let reply = patch(&app, "/me/security", "mallory", "{}").await;
    assert_eq!(reply.status, 401);
    assert!(
        reply
            .header("www-authenticate")
            .contains("error=\"invalid_token\"")
    );
    assert_eq!(reply.json()["error"]["code"], "InvalidAuthenticationToken");
    assert!(store.is_empty());
}

#[tokio::test]
async fn permissions_and_ownership_are_enforced() {
    let (app, store) = app();
    let bob_path = format!("/users/{BOB}/security");
    let cases = [
        ("reader", Method::PATCH, "/me/security".to_owned(), 403),
        ("noscope", Method::GET, "/me/security".to_owned(), 403),
        ("alice", Method::PATCH, bob_path.clone(), 403),
        ("alice", Method::GET, bob_path.clone(), 403),
        ("app", Method::PATCH, "/me/security".to_owned(), 400),
    ];
    for (token, method, path, status) in cases {
        let request = request(method.clone(), &path, Some(token))
            .body(Full::from("{}"))
            .unwrap();
        let reply = send(app.clone(), request).await;
        assert_eq!(reply.status, status, "{token} {method} {path}");
        reply.error_message();
    }
    assert!(store.is_empty(), "a refused request stored something");

    assert_eq!(patch(&app, &bob_path, "admin", "{}").await.status, 200);
    assert_eq!(
        patch(
            &app,
            &bob_path
                .to_uppercase()
                .replace("/USERS/", "/users/")
                .replace("/SECURITY", "/security"),
            "app",
            "{}"
        )
        .await
        .status,
        200
    );
    assert_eq!(
        get(&app, "/users/alice@contoso.com/security", "alice")
            .await
            .status,
        200
    );
    assert_eq!(
        get(&app, "/users/ALICE%40contoso.com/security", "alice")
            .await
            .status,
        200
    );
    let reply = get(&app, "/users/bob@contoso.com/security", "admin").await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn tenants_do_not_share_objects() {
    let (app, store) = open_app();
    let path = format!("/users/{ALICE}/security");
    assert_eq!(patch(&app, &path, "app", &revision(1)).await.status, 200);
    assert_eq!(
        patch(&app, &path, "foreign-app", &revision(1)).await.status,
        200
    );
    let keys: Vec<_> = store.entries().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 2);
    assert!(keys.contains(&ObjectKey::new(TENANT, ALICE)));
    assert!(keys.contains(&ObjectKey::new(OTHER_TENANT, ALICE)));
}

#[tokio::test]
async fn guid_case_does_not_split_objects() {
    let (app, store) = open_app();
    let upper = format!("/users/{}/security", BOB.to_uppercase());
    let lower = format!("/users/{BOB}/security");
    assert_eq!(patch(&app, &upper, "app", &revision(1)).await.status, 200);
    assert_eq!(
        patch(&app, &lower, "app", &revision(2))
            .await
            .header("etag"),
        "\"2\""
    );
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn bodies_are_bounded_typed_and_parsed() {
    let (app, store) = app();
    let big = format!("{{\"a\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let cases: Vec<(Option<&str>, String, u16, &str)> = vec![
        (Some("text/plain"), "{}".into(), 415, "text/plain"),
        (None, "{}".into(), 415, "Content-Type"),
        (Some("application/json"), big, 413, "limit"),
        (Some("application/json"), "".into(), 400, "empty"),
        (Some("application/json"), "[]".into(), 400, "JSON object"),
        (
            Some("application/json"),
            "{\"a\":".into(),
            400,
            "ends before",
        ),
        (
            Some("application/json"),
            "{} {}".into(),
            400,
            "not valid JSON",
        ),
        (
            Some("application/json"),
            "{\"id\":1,\"id\":2}".into(),
            400,
            "duplicate",
        ),
        (
            Some("application/json"),
            format!("{}1{}", "{\"a\":".repeat(100), "}".repeat(100)),
            400,
            "deeply",
        ),
    ];
    for (content_type, body, status, needle) in cases {
        let mut builder = Request::patch("/me/security").header("authorization", "Bearer alice");
        if let Some(content_type) = content_type {
            builder = builder.header("content-type", content_type);
        }
        let reply = send(app.clone(), builder.body(Full::from(body)).unwrap()).await;
        assert_eq!(reply.status, status, "{needle}");
        let message = reply.error_message();
        assert!(message.contains(needle), "{message} lacks {needle}");
        if status == 415 {
            assert_eq!(
                reply.header("accept-patch"),
                "application/json, application/merge-patch+json"
            );
        }
    }
    assert!(store.is_empty(), "a refused body stored something");
}

#[tokio::test]
async fn merge_patch_content_type_is_accepted() {
    let (app, _) = app();
    let request = Request::patch("/me/security")
        .header("authorization", "Bearer alice")
        .header(
            "content-type",
            "application/merge-patch+json; charset=UTF-8",
        )
        .body(Full::from("{}"))
        .unwrap();
    assert_eq!(send(app, request).await.status, 200);
}

/// Graph-specific cases, as data: each names its case, and a refused one changes nothing.
#[tokio::test]
async fn graph_cases_from_data() {
    let cases: Vec<Value> = serde_json::from_str(include_str!("data/graph_cases.json")).unwrap();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (app, store) = app();
        let id = patch(&app, "/me/security", "alice", "{}").await.json()["id"].clone();
        let before = store.entries();
        let id_text = id.as_str().unwrap();
        let body = case["patch"]
            .to_string()
            .replace("$ID_UPPER", &id_text.to_uppercase())
            .replace("$ID", id_text);
        let reply = patch(&app, "/me/security", "alice", &body).await;
        assert_eq!(
            reply.status.as_u16(),
            case["status"].as_u64().unwrap() as u16,
            "case {name}"
        );
        if reply.status == 200 {
            assert_eq!(
                reply.object(),
                json!({"@odata.type": ODATA_TYPE, "id": id}),
                "case {name}"
            );
        } else {
            let message = reply.error_message();
            let needle = case["message"].as_str().unwrap();
            assert!(
                message.contains(needle),
                "case {name}: {message} lacks {needle}"
            );
            assert_eq!(store.entries(), before, "case {name} changed the store");
        }
    }
}

/// Without the layers, the service fails closed: 401 without a principal, 415 without a
/// checked content type, 400 without a parsed patch (closing the connection when the request
/// declared a body it leaves unread).
#[tokio::test]
async fn bare_service_fails_closed() {
    let store = MemoryStore::new();
    let service = SecurityUpdateService::new(store.clone());
    let reply = send(
        service.clone(),
        Request::get("/me/security")
            .body(Full::<Bytes>::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("www-authenticate"), "Bearer");

    let principal = security_update::Principal::delegated(TENANT, ALICE).with_scopes([WRITE]);
    let mut request = Request::patch("/me/security")
        .body(Full::from("{}"))
        .unwrap();
    request.extensions_mut().insert(principal.clone());
    assert_eq!(send(service.clone(), request).await.status, 415);

    let mut request = Request::patch("/me/security")
        .header("content-type", "application/json")
        .body(Full::from("{}"))
        .unwrap();
    request.extensions_mut().insert(principal.clone());
    let reply = send(service.clone(), request).await;
    assert_eq!(reply.status, 400);
    assert!(reply.error_message().contains("MergePatchLayer"));
    // No body was declared: the connection is kept.
    assert!(!reply.headers.contains_key("connection"), "{reply:?}");

    // A body declared and never read (no merge-patch layer read it): the refusal closes an
    // HTTP/1 connection, or the unread body would be taken for the next request.
    for (content_type, status) in [("application/json", 400), ("text/plain", 415)] {
        let mut request = Request::patch("/me/security")
            .header("content-type", content_type)
            .header("content-length", "2")
            .body(Full::from("{}"))
            .unwrap();
        request.extensions_mut().insert(principal.clone());
        let reply = send(service.clone(), request).await;
        assert_eq!(reply.status, status, "{reply:?}");
        assert_eq!(reply.header("connection"), "close", "{content_type}");
    }

    // The merge-patch layer read the body: the service's refusal keeps the connection.
    let read_first = tower::Layer::layer(&security_update::MergePatchLayer::new(), service);
    let body = r#"{"@odata.type":"x"}"#;
    let mut request = Request::patch("/me/security")
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Full::from(body))
        .unwrap();
    request.extensions_mut().insert(principal);
    let reply = send(read_first, request).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.error_message().contains("@odata.type"), "{reply:?}");
    assert!(!reply.headers.contains_key("connection"), "{reply:?}");
    assert!(store.is_empty());
}

#[tokio::test]
async fn path_prefix_mounts_under_beta() {
    let store = MemoryStore::new();
    let app = security_update::stack(
        StackBuilder::new(store)
            .with_path_prefix("/beta/")
            .into_service(),
        tokens(),
    );
    assert_eq!(get(&app, "/beta/me/security", "alice").await.status, 200);
    assert_eq!(get(&app, "/me/security", "alice").await.status, 404);
    assert_eq!(get(&app, "/betame/security", "alice").await.status, 404);
}

#[tokio::test]
async fn store_failures_are_graph_errors_not_panics() {
    #[derive(Debug)]
    struct Down;
    impl SecurityStore for Down {
        async fn load(
            &self,
            _: &ObjectKey,
        ) -> Result<Option<security_update::Snapshot>, security_update::StoreError> {
            Err(security_update::StoreError::new(
                security_update::store::StoreErrorKind::Unavailable,
                "down",
            ))
        }
        async fn compare_and_swap(
            &self,
            _: &ObjectKey,
            _: u64,
            _: security_update::Snapshot,
        ) -> Result<security_update::SwapOutcome, security_update::StoreError> {
            Err(security_update::StoreError::new(
                security_update::store::StoreErrorKind::Unavailable,
                "down",
            ))
        }
    }
    let app = security_update::stack(SecurityUpdateService::new(Down), tokens());
    let reply = send(
        app.clone(),
        request(Method::GET, "/me/security", Some("alice"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), "1");
    assert_eq!(reply.json()["error"]["code"], "serviceNotAvailable");
    let reply = send(
        app,
        request(Method::PATCH, "/me/security", Some("alice"))
            .body(Full::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 503);
}

/// A store operation that panics (a bug) while the request waits for it is answered 500 with
/// Graph's error shape, and the service goes on serving: the panic stays in that operation.
#[tokio::test]
async fn a_store_that_panics_mid_write_is_a_500_not_a_lost_connection() {
    #[derive(Debug)]
    struct Panics(MemoryStore);
    impl SecurityStore for Panics {
        async fn load(
            &self,
            key: &ObjectKey,
        ) -> Result<Option<security_update::Snapshot>, security_update::StoreError> {
            if key.user_id() == BOB {
                tokio::task::yield_now().await;
                panic!("a bug in a store's read");
            }
            self.0.load(key).await
        }
        async fn compare_and_swap(
            &self,
            _: &ObjectKey,
            _: u64,
            _: security_update::Snapshot,
        ) -> Result<security_update::SwapOutcome, security_update::StoreError> {
            // Waits first, so that the panic comes on a later poll, as a real store's would.
            tokio::task::yield_now().await;
            panic!("a bug in a store");
        }
    }
    let memory = MemoryStore::new();
    let service = StackBuilder::new(Panics(memory.clone()))
        .with_schema(ResourceSchema::open_type())
        .into_service();
    let app = security_update::stack(service, tokens());
    let sent = request(Method::PATCH, "/me/security", Some("alice"))
        .header("client-request-id", "my-id")
        .body(Full::from(revision(1)))
        .unwrap();
    let reply = send(app.clone(), sent).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json()["error"]["code"], "generalException");
    // The request's own ids, in the headers and the body alike.
    let inner = &reply.json()["error"]["innerError"];
    assert_eq!(reply.headers["client-request-id"], "my-id");
    assert_eq!(inner["client-request-id"], "my-id");
    assert_eq!(
        inner["request-id"],
        reply.headers["request-id"].to_str().unwrap()
    );
    assert_eq!(get(&app, "/me/security", "alice").await.status, 200);
    let stored = memory.load(&ObjectKey::new(TENANT, ALICE)).await.unwrap();
    assert!(stored.is_none(), "nothing was saved");
    // A read that panics, its declared body unread: 500, and the HTTP/1 connection closes.
    let read = request(Method::GET, "/me/security", Some("bob"))
        .header("content-type", "application/json")
        .header("content-length", "2")
        .body(Full::from("{}"))
        .unwrap();
    let reply = send(app.clone(), read).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.headers["connection"], "close");
}
