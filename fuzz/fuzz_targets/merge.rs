//! Body parse + merge: any bytes either parse as a merge patch object or are refused with a
//! 400; a parsed patch applies to an object without panicking, and applying it twice gives
//! the same object as once (RFC 7396 merges are idempotent).
#![no_main]

use libfuzzer_sys::fuzz_target;
use security_update::MergePatch;
use security_update::merge_patch::apply_to_object;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let patch = match MergePatch::parse(bytes::Bytes::copy_from_slice(data), 64) {
        Ok(patch) => patch,
        Err(error) => {
            assert_eq!(error.status(), 400);
            return;
        }
    };
    let base = json!({
        "@odata.type": "#microsoft.graph.security.security",
        "id": "9ac7fb1c-d094-9ddd-a004-f7e8be5b32ca",
        "a": {"b": [1, 2], "c": null, "d": {"e": "f"}},
        "n": 1,
    });
    let serde_json::Value::Object(mut once) = base else { unreachable!() };
    apply_to_object(&mut once, patch.document().clone());
    let mut twice = once.clone();
    apply_to_object(&mut twice, patch.into_document());
    assert_eq!(once, twice, "merge patch is not idempotent");
});
