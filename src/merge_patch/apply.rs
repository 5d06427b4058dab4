//! RFC 7396 JSON merge patch, applied in place.

use serde_json::{Map, Value};

/// Applies the RFC 7396 merge `patch` to `target`, in place.
///
/// A non-object patch replaces the target. An object patch turns a non-object target into `{}`
/// first, then for each member: `null` removes it, anything else is merged recursively. The patch
/// is taken by value so that its leaves move into the target instead of being cloned, and
/// members already present are updated through `get_mut` without re-inserting their key.
/// Member order is kept (`serde_json`'s `preserve_order`). Deletions cost time linear in the
/// target, however many there are: removing one member of an ordered map shifts all the members
/// after it, so a patch of 75,000 `null`s removed one by one was quadratic (seconds of CPU
/// from one request); past a handful they are removed together in one pass.
///
/// Recursion follows the patch's depth; patches parsed by [`MergePatchLayer`] are depth-bounded.
///
/// ```
/// use serde_json::json;
///
/// let mut target = json!({"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"}});
/// security_update::merge_patch::apply(
///     &mut target,
///     json!({"title": "Hello!", "author": {"familyName": null}, "tags": ["x"]}),
/// );
/// assert_eq!(target, json!({"title": "Hello!", "author": {"givenName": "John"}, "tags": ["x"]}));
/// ```
///
/// [`MergePatchLayer`]: crate::MergePatchLayer
pub fn apply(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(patch) => {
            if let Value::Object(map) = target {
                apply_to_object(map, patch);
            } else {
                let mut map = Map::new();
                apply_to_object(&mut map, patch);
                *target = Value::Object(map);
            }
        }
        other => *target = other,
    }
}

/// Applies an object `patch` to an object `target`, in place: the common case of [`apply`]
/// without wrapping either side in a [`Value`].
pub fn apply_to_object(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    let mut deletions = Vec::new();
    for (key, value) in patch {
        if value.is_null() {
            if target.contains_key(&key) {
                deletions.push(key);
            }
        } else if let Some(existing) = target.get_mut(&key) {
            apply(existing, value);
        } else {
            target.insert(key, without_nulls(value));
        }
    }
    remove_all(target, deletions);
}

/// Deletions one by one below this many (each shifts the members after it), in one pass above.
const BATCH_DELETIONS_FROM: usize = 8;

/// Removes `keys` from `target`, keeping the order of what stays. The patch's keys are
/// distinct (duplicates are refused when parsing, and a `Map` has none), so removing after
/// the inserts gives the same object as removing in patch order.
fn remove_all(target: &mut Map<String, Value>, keys: Vec<String>) {
    if keys.len() < BATCH_DELETIONS_FROM {
        for key in keys {
            target.shift_remove(&key);
        }
    } else {
        let doomed: std::collections::HashSet<String> = keys.into_iter().collect();
        target.retain(|key, _| !doomed.contains(key));
    }
}

/// A patch value landing where nothing was: RFC 7396 merges it into `null`, which for an
/// object means "the object with its `null` members dropped, recursively".
pub(crate) fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(patch) => {
            let mut map = Map::new();
            apply_to_object(&mut map, patch);
            Value::Object(map)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Below and above the batching threshold, deletions leave the same object, in order.
    #[test]
    fn many_deletions_keep_the_rest_in_order() {
        for deleted in [3usize, 8, 20] {
            let mut target: Map<String, Value> = (0..30)
                .map(|i| (format!("m{i:02}"), Value::from(i)))
                .collect();
            let mut patch: Map<String, Value> = (0..deleted)
                .map(|i| (format!("m{:02}", i * 2), Value::Null))
                .collect();
            patch.insert("new".to_owned(), json!(1));
            patch.insert("absent".to_owned(), Value::Null);
            apply_to_object(&mut target, patch);
            let expected: Vec<String> = (0..30)
                .filter(|i| i % 2 == 1 || *i >= deleted * 2)
                .map(|i| format!("m{i:02}"))
                .chain(["new".to_owned()])
                .collect();
            let keys: Vec<&String> = target.keys().collect();
            assert_eq!(
                keys,
                expected.iter().collect::<Vec<_>>(),
                "{deleted} deletions"
            );
        }
    }
}
