//! Graph's OData as its SDKs see it: query options, `@odata.context`, annotations in bodies.

mod common;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use http_body_util::Full;
use security_update::{MemoryStore, ObjectKey, ResourceSchema, SecurityStore, StackBuilder};
use serde_json::json;

fn get_with_host(path: &str, host: &str) -> http::Request<Full<Bytes>> {
    request(Method::GET, path, Some("alice"))
        .header("host", host)
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn select_returns_only_what_it_names_with_or_without_dollar() {
    let (app, _) = app();
    for query in ["$select=id", "select=id", "%24select=id", "$SELECT=id"] {
        let reply = get(&app, &format!("/me/security?{query}"), "alice").await;
        assert_eq!(reply.status, StatusCode::OK, "{query}");
        let json = reply.json();
        let context = json["@odata.context"].as_str().unwrap();
        assert!(
            context.ends_with(&format!("#users('{ALICE}')/security(id)/$entity")),
            "{context}"
        );
        let mut names: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["@odata.context", "@odata.type", "id"], "{query}");
    }
}

#[tokio::test]
async fn a_property_no_schema_allows_is_400_naming_it() {
    let (app, _) = app();
    let reply = get(&app, "/me/security?$select=bogusProperty", "alice").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.error_message().contains("'bogusProperty'"));
    // A closed custom schema refuses what it does not declare; an open one lets it be absent.
    let closed = ResourceSchema::from_json_schema(&json!({
        "type": "object",
        "properties": {"@odata.type": {}, "id": {}, "level": {"type": "integer"}},
        "additionalProperties": false
    }))
    .unwrap();
    let app = StackBuilder::new(MemoryStore::new())
        .with_schema(closed)
        .build(tokens());
    assert_eq!(
        get(&app, "/me/security?$select=level", "alice")
            .await
            .status,
        200
    );
    assert_eq!(
        get(&app, "/me/security?$select=other", "alice")
            .await
            .status,
        400
    );
    let open = ResourceSchema::from_json_schema(&json!({"type": "object"})).unwrap();
    let app = StackBuilder::new(MemoryStore::new())
        .with_schema(open)
        .build(tokens());
    let reply = get(&app, "/me/security?$select=anything", "alice").await;
    assert_eq!(reply.status, 200);
    assert!(reply.json().get("anything").is_none());
}

#[tokio::test]
async fn expand_information_protection_expands_it_with_a_stable_id() {
    let (app, _) = app();
    let first = get(&app, "/me/security?$expand=informationProtection", "alice").await;
    assert_eq!(first.status, StatusCode::OK);
    let expanded = &first.json()["informationProtection"];
    assert_eq!(
        expanded["@odata.type"],
        "#microsoft.graph.security.informationProtection"
    );
    assert_eq!(expanded["id"].as_str().unwrap().len(), 36);
    let again = get(&app, "/me/security?expand=informationProtection", "alice").await;
    assert_eq!(again.json()["informationProtection"], *expanded);
    assert!(
        first.json()["@odata.context"]
            .as_str()
            .unwrap()
            .contains("/security(informationProtection())/$entity")
    );
}

#[tokio::test]
async fn other_system_query_options_are_refused_and_plain_parameters_ignored() {
    let (app, _) = app();
    for (query, needle) in [
        ("$expand=owner", "'owner'"),
        ("$filter=id%20eq%20'x'", "'$filter'"),
        ("$top=1", "'$top'"),
        ("count=true", "'$count'"),
        ("$foo=1", "'$foo'"),
    ] {
        let reply = get(&app, &format!("/me/security?{query}"), "alice").await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(reply.error_message().contains(needle), "{query}");
    }
    assert_eq!(
        get(&app, "/me/security?foo=1&bar", "alice").await.status,
        200
    );
}

#[tokio::test]
async fn odata_context_names_the_user_and_the_service_root() {
    let (app, _) = app();
    // /me is the caller; the root comes from Host (no prefix configured here).
    let reply = send(
        app.clone(),
        get_with_host("/me/security", "graph.contoso.com"),
    )
    .await;
    assert_eq!(
        reply.json()["@odata.context"],
        format!("http://graph.contoso.com/$metadata#users('{ALICE}')/security/$entity")
    );
    // By UPN: the resolved object id.
    let reply = get(&app, "/users/alice@contoso.com/security", "alice").await;
    assert!(
        reply.json()["@odata.context"]
            .as_str()
            .unwrap()
            .contains(&format!("users('{ALICE}')"))
    );
    // A configured root wins, and a Host that is not a host name is never echoed.
    let app = StackBuilder::new(MemoryStore::new())
        .with_service_root("https://graph.example.com/beta/")
        .build(tokens());
    let reply = send(app, get_with_host("/me/security", "evil\"host")).await;
    assert_eq!(
        reply.json()["@odata.context"],
        format!("https://graph.example.com/beta/$metadata#users('{ALICE}')/security/$entity")
    );
}

#[tokio::test]
async fn a_patch_may_carry_annotations_which_are_never_stored() {
    let open = ResourceSchema::from_json_schema(&json!({"type": "object"})).unwrap();
    let store = MemoryStore::new();
    let app = StackBuilder::new(store.clone())
        .with_schema(open)
        .build(tokens());
    let body = r#"{"@odata.context":"https://graph.microsoft.com/beta/$metadata#x",
        "@odata.etag":"W/\"1\"","@contoso.note":"hi","level@contoso.note":"why","level":3}"#;
    let reply = patch(&app, "/me/security?$select=level", "alice", body).await;
    assert_eq!(reply.status, StatusCode::OK);
    // $select shapes what a PATCH returns, as it shapes a GET.
    let json = reply.object();
    assert_eq!(
        json,
        json!({"@odata.type": "#microsoft.graph.security.security", "level": 3})
    );
    let stored = store
        .load(&ObjectKey::new(TENANT, ALICE))
        .await
        .unwrap()
        .unwrap();
    let mut names: Vec<_> = stored.document().keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["@odata.type", "id", "level"]);
    // A malformed annotation name changes nothing.
    let before = store.entries();
    let reply = patch(&app, "/me/security", "alice", r#"{"@note":1,"level":4}"#).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.error_message().contains("'@note'"));
    assert_eq!(store.entries(), before);
}
