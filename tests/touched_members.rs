//! Writes that copy the members a patch does not name as stored bytes (issue 12's
//! copy-on-write path) against the parsed reference, and which schemas may judge only the
//! members a patch sets.

mod common;

use common::*;
use proptest::prelude::*;
use security_update::merge_patch::apply;
use security_update::{
    MemoryStore, ObjectKey, ResourceSchema, SecurityStore, Snapshot, StackBuilder, stack,
};
use serde_json::{Map, Value, json};

fn app_with(schema: ResourceSchema) -> (App, MemoryStore) {
    let store = MemoryStore::new();
    let service = StackBuilder::new(store.clone())
        .with_schema(schema)
        .into_service();
    (stack(service, tokens()), store)
}

fn schema(value: Value) -> ResourceSchema {
    ResourceSchema::from_json_schema(&value).unwrap()
}

fn alice() -> ObjectKey {
    ObjectKey::new(TENANT, ALICE)
}

/// Alice's object as stored, parsed.
fn stored(store: &MemoryStore) -> Value {
    let entries = store.entries();
    let (_, snapshot) = entries.iter().find(|(key, _)| *key == alice()).unwrap();
    serde_json::from_slice(snapshot.json()).unwrap()
}

/// Puts `document` in `app`'s store as Alice's object (version 1), bypassing every check.
async fn seed(app: &App, store: &MemoryStore, document: Value) {
    let Value::Object(mut document) = document else {
        unreachable!()
    };
    // The id the service gives Alice's object, so the seeded one passes the id rule.
    let reply = get(app, "/me/security", "alice").await;
    document.insert("id".into(), reply.json()["id"].clone());
    document.insert(
        "@odata.type".into(),
        json!("#microsoft.graph.security.security"),
    );
    let snapshot = Snapshot::new(1, document).unwrap();
    store.compare_and_swap(&alice(), 0, snapshot).await.unwrap();
}

/// JSON values over a small set of names, so patches and stored objects overlap often.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-c\"é]{0,3}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-e]", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A run of patches through the service leaves exactly the object (and the very bytes)
    /// that merging each into a parsed copy gives: the second and later writes start from a
    /// version written by the copy-on-write path.
    #[test]
    fn a_run_of_patches_stores_what_the_parsed_merge_gives(
        patches in prop::collection::vec(prop::collection::btree_map("[a-e]", json_value(), 0..5), 1..5),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let (app, store) = app_with(schema(json!({"type": "object"})));
            let mut expected = get(&app, "/me/security", "alice").await.object();
            for patch in patches {
                let patch = Value::Object(patch.into_iter().collect());
                let reply = patch_body(&app, &patch).await;
                assert_eq!(reply.status, 200, "{}", reply.error_message());
                apply(&mut expected, patch);
                assert_eq!(reply.object(), expected);
            }
            if !store.is_empty() {
                let entries = store.entries();
                let json = entries[0].1.json().clone();
                assert_eq!(json, serde_json::to_vec(&expected).unwrap());
            }
        });
    }
}

async fn patch_body(app: &App, body: &Value) -> Reply {
    patch(app, "/me/security", "alice", &body.to_string()).await
}

/// `body` is refused with a 400 naming `name`, and the store is as it was.
async fn assert_refused_naming(app: &App, store: &MemoryStore, body: &Value, name: &str) {
    assert_text_refused_naming(app, store, &body.to_string(), name).await;
}

/// [`assert_refused_naming`] for a body sent as it is written.
async fn assert_text_refused_naming(app: &App, store: &MemoryStore, body: &str, name: &str) {
    let before = store.entries();
    let reply = patch(app, "/me/security", "alice", body).await;
    assert_eq!(reply.status, 400, "{body}");
    assert!(
        reply.error_message().contains(name),
        "{body}: {}",
        reply.error_message()
    );
    assert_eq!(store.entries(), before, "{body} changed the object");
}

/// A schema that judges members one by one: a stored member that it would refuse (written
/// under an earlier schema) does not block patches of other members, and stays as stored;
/// a patch that sets it to something the schema refuses is 400 and changes nothing.
#[tokio::test]
async fn members_a_patch_leaves_alone_are_not_judged_again() {
    let (app, store) = app_with(schema(json!({
        "type": "object",
        "properties": {"level": {"enum": ["low", "high"]}, "notes": {"type": "string"}},
        "additionalProperties": true
    })));
    seed(&app, &store, json!({"level": "legacy-value", "notes": "a"})).await;

    let reply = patch_body(&app, &json!({"notes": "b"})).await;
    assert_eq!(reply.status, 200, "{}", reply.error_message());
    assert_eq!(stored(&store)["level"], "legacy-value");
    assert_eq!(stored(&store)["notes"], "b");

    assert_refused_naming(
        &app,
        &store,
        &json!({"level": "medium", "notes": "c"}),
        "level",
    )
    .await;
}

/// A member a patch sets to the very text it has is not judged again either (the object is
/// the one a patch leaving it alone would make): stored values the schema now refuses may be
/// repeated, at the top or inside a merged object, and a patch of nothing else is a no-op.
/// Any other value is judged, and so is the whole object when the patch names `id`; refused
/// patches change nothing.
#[tokio::test]
async fn members_a_patch_sets_to_their_stored_value_are_not_judged_again() {
    let (app, store) = app_with(schema(json!({
        "type": "object",
        "properties": {
            "level": {"enum": ["low", "high"]},
            "notes": {"type": "string"},
            "risk": {"type": "object", "properties": {"a": {"type": "integer", "maximum": 5}}}
        },
        "additionalProperties": false
    })));
    seed(
        &app,
        &store,
        json!({"level": "legacy-value", "notes": "a", "risk": {"a": 9}}),
    )
    .await;

    for (body, notes) in [
        (json!({"level": "legacy-value", "notes": "b"}), "b"),
        (json!({"risk": {"a": 9, "gone": null}, "notes": "c"}), "c"),
    ] {
        let reply = patch_body(&app, &body).await;
        assert_eq!(reply.status, 200, "{body}: {}", reply.error_message());
        let now = stored(&store);
        assert_eq!(
            (&now["level"], &now["risk"], &now["notes"]),
            (&json!("legacy-value"), &json!({"a": 9}), &json!(notes)),
            "{body}"
        );
    }
    let before = store.entries();
    let reply = patch_body(&app, &json!({"level": "legacy-value", "risk": {"a": 9}})).await;
    assert_eq!(reply.status, 200, "{}", reply.error_message());
    assert_eq!(store.entries(), before, "a no-op writes nothing");

    let id = stored(&store)["id"].clone();
    for (body, path) in [
        (json!({"level": "legacy-value2", "notes": "d"}), "level"),
        (json!({"risk": {"a": 9, "b": 1}, "notes": "d"}), "risk/a"),
        (json!({"risk": {"a": 10}}), "risk/a"),
        (json!({"id": id, "notes": "d"}), "level"),
    ] {
        assert_refused_naming(&app, &store, &body, path).await;
    }
}

/// Byte for byte, not value for value: a stored text spelled otherwise than this crate writes
/// (another store's spacing, or escapes where this crate writes the characters) has its
/// repeated value rewritten by the merge, and judged, even when the patch repeats the very
/// text stored.
#[tokio::test]
async fn a_value_repeated_onto_another_spelling_is_judged() {
    let (app, store) = app_with(schema(json!({
        "type": "object",
        "properties": {
            "risk": {"type": "object", "properties": {"a": {"type": "integer", "maximum": 5}}},
            "notes": {"type": "string", "maxLength": 3}
        }
    })));
    let id = get(&app, "/me/security", "alice").await.json()["id"].clone();
    let text = format!(
        r##"{{"@odata.type":"#microsoft.graph.security.security","id":{id},"risk": {{ "a": 9 }},"notes":"\u00e9\u00e9\u00e9\u00e9"}}"##
    );
    let snapshot = Snapshot::from_json(1, text.into()).unwrap();
    store.compare_and_swap(&alice(), 0, snapshot).await.unwrap();
    // Sent as written here: the second repeats the stored text byte for byte.
    for (body, path) in [
        (r#"{"risk":{"a":9}}"#, "risk/a"),
        (r#"{"notes":"\u00e9\u00e9\u00e9\u00e9"}"#, "notes"),
        (r#"{"notes":"éééé"}"#, "notes"),
    ] {
        assert_text_refused_naming(&app, &store, body, path).await;
    }
}

/// The case the rule is for: an object written under one schema, the schema replaced by a
/// stricter one (`SchemaReloader`), and a client repeating a value it read.
#[tokio::test]
async fn a_value_written_under_a_replaced_schema_may_be_repeated() {
    let lenient = json!({"type": "object", "properties": {"level": {"type": "string"}}});
    let (reloadable, reloader) = schema(lenient).reloadable();
    let (app, store) = app_with(reloadable);
    let reply = patch_body(&app, &json!({"level": "legacy-value", "notes": "a"})).await;
    assert_eq!(reply.status, 200, "{}", reply.error_message());

    reloader.replace(schema(json!({
        "type": "object",
        "properties": {"level": {"enum": ["low", "high"]}}
    })));
    let reply = patch_body(&app, &json!({"level": "legacy-value", "notes": "b"})).await;
    assert_eq!(reply.status, 200, "{}", reply.error_message());
    assert_eq!(
        (&stored(&store)["level"], &stored(&store)["notes"]),
        (&json!("legacy-value"), &json!("b"))
    );
    assert_refused_naming(&app, &store, &json!({"level": "medium"}), "level").await;
}

/// A member the patch merges into a stored object is judged inside as well: a name the
/// member's schema refuses is 400 naming it (as the whole-object check names it), the object
/// unchanged; an allowed one is stored.
#[tokio::test]
async fn inside_a_merged_object_the_schema_still_judges() {
    let risk = json!({
        "type": "object",
        "properties": {"a": {"type": "integer", "maximum": 5}, "c": {"type": "string"}},
        "additionalProperties": false
    });
    let member_local = json!({"type": "object", "properties": {"riskProfile": risk}});
    // The same, judged whole (`required` ties the members together).
    let mut whole = member_local.clone();
    whole["required"] = json!(["riskProfile"]);
    for schema_value in [member_local, whole] {
        let (app, store) = app_with(schema(schema_value.clone()));
        seed(&app, &store, json!({"riskProfile": {"a": 1}})).await;
        for (body, path) in [
            (json!({"riskProfile": {"b": 1}}), "riskProfile"),
            (json!({"riskProfile": {"a": 6, "c": "x"}}), "riskProfile/a"),
        ] {
            assert_refused_naming(&app, &store, &body, path).await;
        }
        let reply = patch_body(&app, &json!({"riskProfile": {"a": 5, "c": "x"}})).await;
        assert_eq!(reply.status, 200, "{}", reply.error_message());
        assert_eq!(stored(&store)["riskProfile"], json!({"a": 5, "c": "x"}));
    }
}

/// A schema whose top-level keywords tie members together (`required`) judges the whole
/// merged object: removing a required member is 400 and changes nothing, which the same
/// schema without `required` allows.
#[tokio::test]
async fn a_schema_that_ties_members_together_judges_the_whole_object() {
    let properties = json!({"level": {"enum": ["low", "high"]}, "notes": {"type": "string"}});
    let (app, store) = app_with(schema(json!({
        "type": "object",
        "properties": properties,
        "required": ["notes"]
    })));
    seed(&app, &store, json!({"level": "low", "notes": "a"})).await;
    assert_refused_naming(&app, &store, &json!({"notes": null}), "notes").await;

    let (app, store) = app_with(schema(json!({"type": "object", "properties": properties})));
    seed(&app, &store, json!({"level": "low", "notes": "a"})).await;
    let reply = patch_body(&app, &json!({"notes": null})).await;
    assert_eq!(reply.status, 200, "{}", reply.error_message());
    assert_eq!(stored(&store).get("notes"), None);
}

/// Read-only properties are compared with the stored object whichever way the write goes.
#[tokio::test]
async fn read_only_properties_still_cannot_change() {
    let (app, store) = app_with(schema(json!({"type": "object"})).with_read_only(["createdBy"]));
    seed(&app, &store, json!({"createdBy": "alice", "notes": "a"})).await;
    for body in [json!({"createdBy": "mallory"}), json!({"createdBy": null})] {
        assert_refused_naming(&app, &store, &body, "createdBy").await;
    }
    let reply = patch_body(&app, &json!({"createdBy": "alice", "notes": "b"})).await;
    assert_eq!(reply.status, 200, "{}", reply.error_message());
    let object: Map<String, Value> = serde_json::from_value(stored(&store)).unwrap();
    assert_eq!(object["createdBy"], "alice");
    assert_eq!(object["notes"], "b");
}

/// A stored text that names a member twice (no store of this crate writes one; a custom store
/// might hand one back) is merged as a parser reads it, the last value winning: the write
/// takes the parsing path instead of copying both copies.
#[tokio::test]
async fn a_stored_name_given_twice_is_merged_as_parsed() {
    let (app, store) = app_with(ResourceSchema::open_type());
    let id = get(&app, "/me/security", "alice").await.json()["id"].clone();
    let text = format!(
        r##"{{"@odata.type":"#microsoft.graph.security.security","id":{id},"a":1,"a":2,"b":1}}"##
    );
    let snapshot = Snapshot::from_json(1, text.into()).unwrap();
    store.compare_and_swap(&alice(), 0, snapshot).await.unwrap();
    let reply = patch_body(&app, &json!({"b": 2})).await;
    assert_eq!(reply.status, 200, "{}", reply.error_message());
    let entries = store.entries();
    let json = String::from_utf8(entries[0].1.json().to_vec()).unwrap();
    assert_eq!(json.matches("\"a\"").count(), 1, "{json}");
    assert_eq!(stored(&store)["a"], 2);
    assert_eq!(stored(&store)["b"], 2);
}
