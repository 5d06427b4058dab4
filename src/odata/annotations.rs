//! Annotations in request bodies (OData JSON Format 4.01 §4.5, §18, §20): control
//! information (`@odata.context`, `@odata.etag`, `@odata.id`, ...), instance annotations
//! (`@contoso.note`) and property annotations (`id@odata.type`, `prop@contoso.note`) are not
//! properties. A patch may carry them (clients echo what they read); they are accepted and
//! never stored. `@odata.type` is the exception: it names the type and keeps its own rules. A
//! name that is not a well-formed annotation (`@`, `@note`, `@a..b`, `prop@`) is a 400 that
//! names it. Only the top level is looked at: nested values are data of the deployment's own
//! schema.

use serde_json::{Map, Value};

use crate::error::{ErrorKind, GraphError};

const ODATA_TYPE: &str = "@odata.type";

/// Control information whose value is a URL or an entity tag: a string (OData JSON Format 4.01
/// §4.5). Anything else in their place is a client bug worth a precise 400, not silence.
const STRING_CONTROL_INFORMATION: &[&str] = &[
    "@odata.context",
    "@odata.etag",
    "@odata.id",
    "@odata.editLink",
    "@odata.readLink",
    "@odata.mediaEditLink",
    "@odata.mediaReadLink",
    "@odata.mediaContentType",
    "@odata.mediaEtag",
    "@odata.nextLink",
    "@odata.deltaLink",
];

/// Removes the annotations from `patch`, refusing malformed annotation names.
///
/// # Errors
/// 400 naming the first malformed annotation.
pub(crate) fn strip(patch: &mut Map<String, Value>) -> Result<(), GraphError> {
    if !patch
        .keys()
        .any(|key| key.contains('@') && key != ODATA_TYPE)
    {
        return Ok(());
    }
    if let Some((key, _)) = patch.iter().find(|(key, value)| {
        !value.is_string() && STRING_CONTROL_INFORMATION.contains(&key.as_str())
    }) {
        return Err(GraphError::new(
            ErrorKind::BadRequest,
            format!("The control information '{key}' must be a string."),
        ));
    }
    let mut malformed = None;
    patch.retain(|key, _| {
        if malformed.is_some() || key == ODATA_TYPE || !key.contains('@') {
            return true;
        }
        let well_formed = match key.split_once('@') {
            Some(("", term)) => is_term(term),
            Some((property, term)) => is_identifier(property) && is_term(term),
            None => true,
        };
        if !well_formed {
            malformed = Some(key.clone());
        }
        false
    });
    match malformed {
        None => Ok(()),
        Some(key) => Err(GraphError::new(
            ErrorKind::BadRequest,
            format!(
                "'{}' is not a well-formed annotation name: use @namespace.term or \
                 property@namespace.term.",
                key.chars().take(64).collect::<String>()
            ),
        )),
    }
}

/// `namespace.term`, optionally `#qualifier`: at least two dotted identifiers.
fn is_term(text: &str) -> bool {
    let (term, qualifier) = match text.split_once('#') {
        Some((term, qualifier)) => (term, Some(qualifier)),
        None => (text, None),
    };
    qualifier.is_none_or(is_identifier)
        && term.split('.').count() >= 2
        && term.split('.').all(is_identifier)
}

/// An OData simple identifier: a letter or `_`, then letters, digits or `_`.
fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|first| first.is_alphabetic() || first == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stripped(patch: Value) -> Result<Value, String> {
        let Value::Object(mut map) = patch else {
            unreachable!()
        };
        strip(&mut map).map_err(|e| e.message().to_owned())?;
        Ok(Value::Object(map))
    }

    #[test]
    fn control_information_and_annotations_are_dropped() {
        let patch = json!({
            "@odata.type": "#microsoft.graph.security.security",
            "@odata.context": "https://graph.microsoft.com/beta/$metadata#x",
            "@odata.etag": "W/\"1\"",
            "@contoso.note": "hello",
            "@contoso.note#v2": 1,
            "id@odata.type": "#String",
            "a": 1,
        });
        assert_eq!(
            stripped(patch).unwrap(),
            json!({"@odata.type": "#microsoft.graph.security.security", "a": 1})
        );
    }

    #[test]
    fn malformed_annotation_names_are_named() {
        for bad in [
            "@", "@note", "@a..b", "@.x", "prop@", "@1a.b", "a b@x.y", "@x.y#",
        ] {
            let error = stripped(json!({ bad: 1 })).unwrap_err();
            assert!(error.contains(bad), "{bad}: {error}");
        }
    }

    #[test]
    fn url_and_etag_control_information_must_be_strings() {
        for (key, value) in [
            ("@odata.id", json!({})),
            ("@odata.etag", json!(1)),
            ("@odata.context", json!(null)),
        ] {
            let error = stripped(json!({ key: value })).unwrap_err();
            assert!(
                error.contains(key) && error.contains("string"),
                "{key}: {error}"
            );
        }
    }
}
