//! Property tests (proptest): `apply` against a straightforward reference of RFC 7396 and
//! against json-patch, idempotence, and that a refused patch leaves the object unchanged.
//! `PROPTEST_CASES` sets how many cases run (CI: the default 256).

mod common;

use common::*;
use proptest::prelude::*;
use security_update::merge_patch::apply;
use security_update::{MemoryStore, ResourceSchema, StackBuilder, stack};
use serde_json::{Map, Value, json};

/// RFC 7396 section 2, transcribed: clone-based, recursive, obviously right.
fn reference(target: &Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut result = match target {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    for (name, value) in patch {
        if value.is_null() {
            result.remove(name);
        } else {
            let current = result.get(name).cloned().unwrap_or(Value::Null);
            result.insert(name.clone(), reference(&current, value));
        }
    }
    Value::Object(result)
}

/// JSON values over a small set of keys, so patches and targets overlap often.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-c]{0,3}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-e]", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn apply_matches_the_reference(target in json_value(), patch in json_value()) {
        let mut ours = target.clone();
        apply(&mut ours, patch.clone());
        prop_assert_eq!(&ours, &reference(&target, &patch));
        let mut theirs = target.clone();
        json_patch::merge(&mut theirs, &patch);
        prop_assert_eq!(ours, theirs);
    }

    #[test]
    fn applying_twice_equals_applying_once(target in json_value(), patch in json_value()) {
        let mut once = target.clone();
        apply(&mut once, patch.clone());
        let mut twice = once.clone();
        apply(&mut twice, patch);
        prop_assert_eq!(once, twice);
    }
}

/// A schema that refuses `forbidden` anywhere at the top level, so generated patches are
/// refused or accepted by content.
fn guarded_app() -> (App, MemoryStore) {
    let schema = ResourceSchema::from_json_schema(&json!({
        "type": "object",
        "properties": {"forbidden": false}
    }))
    .unwrap();
    let store = MemoryStore::new();
    (
        stack(
            StackBuilder::new(store.clone())
                .with_schema(schema)
                .into_service(),
            tokens(),
        ),
        store,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_refused_patch_leaves_the_object_unchanged(
        seed in prop::collection::btree_map("[a-e]", json_value(), 0..4),
        patch in prop::collection::btree_map("[a-e]", json_value(), 0..4),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let (app, store) = guarded_app();
            let seed = Value::Object(seed.into_iter().collect());
            assert_eq!(patch_status(&app, &seed).await, 200);
            let before = store.entries();
            let mut refused: Map<String, Value> = patch.into_iter().collect();
            refused.insert("forbidden".into(), json!(1));
            let status = patch_status(&app, &Value::Object(refused)).await;
            assert_eq!(status, 400);
            assert_eq!(store.entries(), before);
        });
    }
}

async fn patch_status(app: &App, body: &Value) -> u16 {
    patch(app, "/me/security", "alice", &body.to_string())
        .await
        .status
        .as_u16()
}
