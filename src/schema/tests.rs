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
