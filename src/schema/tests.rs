//! Unit tests of the resource schema.

use super::*;
use serde_json::json;

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("test objects are objects"),
    }
}

fn current() -> Map<String, Value> {
    object(json!({"@odata.type": ODATA_TYPE, "id": "abc"}))
}

fn message(result: Result<(), GraphError>) -> String {
    result.unwrap_err().message().to_owned()
}

#[test]
fn graph_schema_names_undeclared_and_navigation_properties() {
    let schema = ResourceSchema::graph();
    assert!(
        message(schema.check_patch(&object(json!({"displayName": "x"})))).contains("'displayName'")
    );
    assert!(
        message(schema.check_patch(&object(json!({"informationProtection": {}}))))
            .contains("navigation")
    );
    assert!(
        schema
            .check_patch(&object(json!({"@odata.type": ODATA_TYPE, "id": "abc"})))
            .is_ok()
    );
}

#[test]
fn odata_type_and_id_are_guarded() {
    let schema = ResourceSchema::graph();
    assert!(
        message(schema.check_patch(&object(json!({"@odata.type": "#microsoft.graph.user"}))))
            .contains("@odata.type")
    );
    assert!(
        message(schema.check_patch(&object(json!({"@odata.type": null}))))
            .contains("cannot be removed")
    );
    assert!(message(schema.check_patch(&object(json!({"id": null})))).contains("read-only"));
    let mut changed = object(json!({"@odata.type": ODATA_TYPE, "id": "other"}));
    assert!(message(schema.check_merged(&mut changed, &current())).contains("'id'"));
    let mut same = current();
    assert!(schema.check_merged(&mut same, &current()).is_ok());
    let guid = "9ac7fb1c-d094-9ddd-a004-f7e8be5b32ca";
    let stored = object(json!({"@odata.type": ODATA_TYPE, "id": guid}));
    let mut upper = object(json!({"@odata.type": ODATA_TYPE, "id": guid.to_uppercase()}));
    assert!(schema.check_merged(&mut upper, &stored).is_ok());
    assert_eq!(upper["id"], guid, "the stored spelling is kept");
}

#[cfg(feature = "json-schema")]
#[test]
fn custom_schema_validates_and_names_the_property() {
    let schema = ResourceSchema::from_json_schema(&json!({
        "type": "object",
        "properties": {"riskLevel": {"enum": ["low", "high"]}}
    }))
    .unwrap()
    .with_read_only(["createdBy"]);
    let mut ok = object(json!({"@odata.type": ODATA_TYPE, "id": "abc", "riskLevel": "low"}));
    assert!(schema.check_merged(&mut ok, &current()).is_ok());
    assert_eq!(ok["riskLevel"], "low", "the object survives validation");
    let mut bad = object(json!({"@odata.type": ODATA_TYPE, "id": "abc", "riskLevel": "mid"}));
    assert!(message(schema.check_merged(&mut bad, &current())).contains("'riskLevel'"));
    let mut read_only = object(json!({"@odata.type": ODATA_TYPE, "id": "abc", "createdBy": "me"}));
    assert!(message(schema.check_merged(&mut read_only, &current())).contains("'createdBy'"));
    assert!(ResourceSchema::from_json_schema(&json!({"type": 12})).is_err());
}

/// Which schemas let a write check only the members a patch sets, and which patches.
#[cfg(feature = "json-schema")]
#[test]
fn member_by_member_checks_only_where_members_are_independent() {
    let local = |schema: Value| {
        ResourceSchema::from_json_schema(&schema)
            .unwrap()
            .checks_members_alone(plain_names(&patch(r#"{"notes":"n"}"#)))
    };
    assert!(local(json!({"type": "object"})));
    assert!(local(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "t",
        "type": "object",
        "properties": {"notes": {"type": "string"}},
        "patternProperties": {"^x-": true},
        "additionalProperties": false,
        "propertyNames": {"maxLength": 64},
        "$defs": {"s": {"type": "string"}}
    })));
    for tied in [
        json!({"required": ["notes"]}),
        json!({"minProperties": 1}),
        json!({"maxProperties": 9}),
        json!({"dependentRequired": {"a": ["b"]}}),
        json!({"allOf": [{"type": "object"}]}),
        json!({"if": {"required": ["a"]}, "then": {"required": ["b"]}}),
        json!({"$ref": "#/$defs/o", "$defs": {"o": {"type": "object"}}}),
        json!({"type": ["object", "null"]}),
        json!({"unevaluatedProperties": false}),
        json!(true),
    ] {
        assert!(!local(tied.clone()), "{tied}");
    }
    let open = ResourceSchema::from_json_schema(&json!({"type": "object"}))
        .unwrap()
        .with_read_only(["createdBy"]);
    let a = patch(r#"{"a":1}"#);
    assert!(open.checks_members_alone(plain_names(&a)));
    assert!(!open.checks_members_alone(plain_names(&patch(r#"{"a":1,"createdBy":"x"}"#))));
    // The read-only name found however it is spelled.
    assert!(!open.checks_members_alone(plain_names(&patch(r#"{"a":1,"created\u0042y":"x"}"#))));
    // `id` and `@odata.type` have no plain names: their writes are checked whole.
    for named in ["id", "@odata.type", r"i\u0064"] {
        let text = format!(r#"{{"a":1,"{named}":"x"}}"#);
        assert!(patch(&text).plain_names().is_none(), "{named}");
    }
    assert!(ResourceSchema::open_type().checks_members_alone(plain_names(&a)));
    let (reloadable, _) = ResourceSchema::open_type().reloadable();
    assert!(reloadable.in_effect().checks_members_alone(plain_names(&a)));
}

/// The members a patch set are judged alike, and refused with the same words, whether they
/// are small (validated in the merged text) or big (read into a `Value` first).
#[cfg(feature = "json-schema")]
#[test]
fn set_members_are_judged_alike_small_or_big() {
    let schema = ResourceSchema::from_json_schema(&json!({
        "type": "object",
        "properties": {
            "list": {"type": "array", "items": {"type": "string", "maxLength": 3}},
            "notes": {"type": "string"}
        },
        "additionalProperties": false
    }))
    .unwrap();
    for items in [3, 3_000] {
        let mut list: Vec<Value> = (0..items).map(|_| json!("abc")).collect();
        let good = serde_json::to_vec(&json!({"notes": "x", "list": list.clone()})).unwrap();
        let members = crate::store::members::index(&good).unwrap();
        assert!(
            schema.check_members(&good, &members, &[]).is_ok(),
            "{items}"
        );
        list[items - 1] = json!("abcd");
        let bad = serde_json::to_vec(&json!({"notes": "x", "list": list})).unwrap();
        let members = crate::store::members::index(&bad).unwrap();
        let refused = message(schema.check_members(&bad, &members, &[]));
        assert!(
            refused.contains(&format!("list/{}", items - 1)),
            "{refused}"
        );
        assert!(
            refused.contains("\"abcd\" is longer than 3 characters"),
            "{refused}"
        );
        // Only the members given are judged: without the bad list, the rest passes.
        assert!(schema.check_members(&bad, &members[..1], &[]).is_ok());
    }
}

/// Members set far apart in a big object (its first and its last, 50 KB between them) are
/// judged as near ones are, each read from its own part of the text.
#[cfg(feature = "json-schema")]
#[test]
fn members_far_apart_are_judged_as_near_ones() {
    let schema = ResourceSchema::from_json_schema(&json!({
        "type": "object",
        "properties": {"first": {"type": "string", "maxLength": 3}, "last": {"enum": ["é"]}},
        "additionalProperties": {"type": "string"}
    }))
    .unwrap();
    let object = |first: &str, last: &str| {
        let mut object = serde_json::Map::new();
        object.insert("first".into(), json!(first));
        for i in 0..500 {
            object.insert(format!("filler{i}"), json!("é".repeat(50)));
        }
        object.insert("last".into(), json!(last));
        serde_json::to_vec(&object).unwrap()
    };
    for (first, last, refused) in [
        ("abc", "é", None),
        ("abcd", "é", Some("first")),
        ("abc", "e", Some("last")),
    ] {
        let text = object(first, last);
        let all = crate::store::members::index(&text).unwrap();
        let set = [all[0].clone(), all[all.len() - 1].clone()];
        let outcome = schema.check_members(&text, &set, &[]);
        match refused {
            None => assert!(outcome.is_ok(), "{first} {last}"),
            Some(property) => assert!(message(outcome).contains(property), "{first} {last}"),
        }
    }
}

#[cfg(feature = "json-schema")]
fn patch(text: &str) -> crate::MergePatch {
    crate::MergePatch::parse(bytes::Bytes::copy_from_slice(text.as_bytes()), 64).unwrap()
}

#[cfg(feature = "json-schema")]
fn plain_names(patch: &crate::MergePatch) -> PlainNames<'_> {
    patch.plain_names().expect("plain names")
}

#[test]
fn a_check_takes_its_schema_without_holding_the_slot_and_keeps_it_through_a_reload() {
    let (schema, reloader) = ResourceSchema::graph().reloadable();
    let SchemaKind::Reloadable(slot) = &schema.kind else {
        unreachable!("a reloadable schema has a slot")
    };
    let taken = schema.in_effect();
    assert!(!taken.allows("riskLevel"), "Graph's schema is in effect");
    // A check under way (a big merge, a slow pattern) does not keep a reload waiting, nor the
    // checks that start behind a waiting reload.
    assert!(slot.try_write().is_ok(), "the slot is free during a check");
    reloader.replace(ResourceSchema::open_type());
    assert!(
        !taken.allows("riskLevel"),
        "the check keeps the schema it started with"
    );
    assert!(schema.allows("riskLevel"), "the replacement is in effect");
}
