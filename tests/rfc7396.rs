//! RFC 7396 Appendix A, as data: every vector through `apply` (checked against json-patch as an
//! oracle too), and the object-on-object vectors through the whole HTTP stack.

mod common;

use common::*;
use http::Method;
use http_body_util::Full;
use security_update::merge_patch::apply;
use security_update::{
    MemoryStore, ODATA_TYPE, ObjectKey, ResourceSchema, SecurityStore, Snapshot, StackBuilder,
    stack,
};
use serde_json::{Map, Value, json};

fn vectors() -> Vec<Value> {
    serde_json::from_str(include_str!("data/rfc7396.json")).unwrap()
}

#[test]
fn all_fifteen_appendix_a_vectors_through_apply() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 15);
    for case in vectors {
        let name = case["name"].as_str().unwrap();
        let mut target = case["target"].clone();
        apply(&mut target, case["patch"].clone());
        assert_eq!(target, case["result"], "{name}");

        let mut oracle = case["target"].clone();
        json_patch::merge(&mut oracle, &case["patch"]);
        assert_eq!(target, oracle, "{name}: differs from json-patch");
    }
}

/// Vectors with an object target and an object patch, sent as real PATCH requests against a
/// stored object holding the target (plus `@odata.type` and `id`), under an open schema.
#[tokio::test]
async fn object_vectors_through_the_http_stack() {
    let open = ResourceSchema::from_json_schema(&json!({"type": "object"})).unwrap();
    for case in vectors() {
        let name = case["name"].as_str().unwrap();
        let (Some(target), Some(patch)) = (case["target"].as_object(), case["patch"].as_object())
        else {
            continue;
        };
        let store = MemoryStore::new();
        let app = stack(
            StackBuilder::new(store.clone())
                .with_schema(open.clone())
                .into_service(),
            tokens(),
        );
        let id = get(&app, "/me/security", "alice").await.json()["id"].clone();
        let mut seeded = Map::new();
        seeded.insert("@odata.type".into(), ODATA_TYPE.into());
        seeded.insert("id".into(), id.clone());
        seeded.extend(target.clone());
        let key = ObjectKey::new(TENANT, ALICE);
        store
            .compare_and_swap(&key, 0, Snapshot::new(1, seeded).unwrap())
            .await
            .unwrap();

        let request = request(Method::PATCH, "/me/security", Some("alice"))
            .body(Full::from(Value::Object(patch.clone()).to_string()))
            .unwrap();
        let reply = send(app, request).await;
        assert_eq!(reply.status, 200, "{name}: {:?}", reply.body);
        let mut expected = Map::new();
        expected.insert("@odata.type".into(), ODATA_TYPE.into());
        expected.insert("id".into(), id);
        expected.extend(case["result"].as_object().unwrap().clone());
        assert_eq!(reply.object(), Value::Object(expected.clone()), "{name}");
        let stored = store.load(&key).await.unwrap().unwrap();
        assert_eq!(stored.document(), &expected, "{name}: stored");
    }
}

/// The other vectors have a non-object patch: RFC 7396 would replace the whole target, which
/// for a Graph entity is not an update; the service answers 400 and changes nothing.
#[tokio::test]
async fn non_object_patches_are_refused_over_http() {
    for case in vectors() {
        if case["patch"].is_object() {
            continue;
        }
        let name = case["name"].as_str().unwrap();
        let (app, store) = app();
        let reply = patch(&app, "/me/security", "alice", &case["patch"].to_string()).await;
        assert_eq!(reply.status, 400, "{name}");
        assert!(
            reply.error_message().contains("must be a JSON object"),
            "{name}"
        );
        assert!(store.is_empty(), "{name}");
    }
}
