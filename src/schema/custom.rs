//! A deployment's JSON Schema, compiled (feature `json-schema`).

use serde_json::Value;

use jsonschema::json::Node as _;

use super::text_json::{TextJson, TextNode, Window, Windows};
use super::{SchemaError, invalid};
use crate::error::{ErrorKind, GraphError};
use crate::store::members::{Member, ObjectValues};

/// A deployment's JSON Schema: the compiled validator, and which top-level names it allows
/// (for `$select`).
pub(super) struct CustomSchema {
    validator: jsonschema::Validator,
    /// The same schema over the JSON text a write produced (see `text_json`), for the members
    /// a patch set.
    text_validator: jsonschema::Validator<TextJson>,
    /// Names under `properties`.
    pub(super) declared: Vec<String>,
    /// Whether other names may appear (`additionalProperties` not `false`, or
    /// `patternProperties` present).
    pub(super) open: bool,
    /// Whether the schema judges each top-level member on its own (see [`MEMBER_LOCAL`]).
    pub(super) member_local: bool,
}

/// Top-level keywords under which an object is valid exactly when each of its members is:
/// annotations, and the keywords that pick a subschema for a member by its name. Any other
/// (`required`, `minProperties`, `dependentRequired`, `if`, `allOf`, `$ref`, ...) can tie
/// members together, and then a write validates the whole object.
const MEMBER_LOCAL: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "title",
    "description",
    "examples",
    "default",
    "deprecated",
    "properties",
    "patternProperties",
    "additionalProperties",
    "propertyNames",
];

/// Members a patch set of at most this many bytes in all are validated in the merged text;
/// more are read into a `Value` first (see [`CustomSchema::validate_members`]).
const CHECK_TEXT_UP_TO: usize = 4 * 1024;

/// 400 naming the first offending property (its JSON pointer below the object).
#[cold]
fn refusal(error: &jsonschema::ValidationError<'_>) -> GraphError {
    let path = error.instance_path().to_string();
    let property = path.trim_start_matches('/');
    let property = if property.is_empty() {
        "(object)"
    } else {
        property
    };
    invalid(property, error.to_string())
}

impl CustomSchema {
    /// Compiles `schema` and notes what `$select` and the write path need to know of it.
    pub(super) fn compile(schema: &Value) -> Result<Self, SchemaError> {
        let validator = jsonschema::validator_for(schema).map_err(|error| SchemaError {
            message: error.to_string(),
        })?;
        let text_validator = jsonschema::options_for::<TextJson>()
            .build(schema)
            .map_err(|error| SchemaError {
                message: error.to_string(),
            })?;
        let declared = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|properties| properties.keys().cloned().collect())
            .unwrap_or_default();
        let open = schema.get("additionalProperties") != Some(&Value::Bool(false))
            || schema.get("patternProperties").is_some();
        let member_local = schema.as_object().is_some_and(|top| {
            top.iter().all(|(keyword, value)| {
                MEMBER_LOCAL.contains(&keyword.as_str()) || (keyword == "type" && value == "object")
            })
        });
        Ok(Self {
            validator,
            text_validator,
            declared,
            open,
            member_local,
        })
    }

    /// 400 naming the first offending property (its JSON pointer below the object).
    pub(super) fn validate(&self, instance: &Value) -> Result<(), GraphError> {
        // `is_valid` first: it tracks no location, and most writes are valid.
        if self.validator.is_valid(instance) {
            return Ok(());
        }
        self.validator
            .validate(instance)
            .map_err(|error| refusal(&error))
    }

    /// [`validate`](Self::validate) for the object made of `members` of the object text
    /// `json`: read where they lie when they are small (the usual patch), read into a `Value`
    /// first when they are not. In the text a lookup by name walks the object, and a walk
    /// rescans each member's subtree, so a schema that looks names up at every level of a
    /// deep, big member (`required`, `dependentRequired`, through `$ref`) would cost depth ×
    /// lookups × size; a `Value` is read once and looked up by hash.
    pub(super) fn validate_members(
        &self,
        json: &[u8],
        members: &[Member],
        nested: &ObjectValues,
    ) -> Result<(), GraphError> {
        // The part of the text the members span, checked as UTF-8 once; each member's own
        // part when they lie far apart in a big object (a patch to its first and last
        // members must not check all that lies between).
        let (start, end) = members
            .iter()
            .fold((usize::MAX, 0), |(start, end), member| {
                (start.min(member.key.start), end.max(member.value.end))
            });
        let spans: usize = members.iter().map(|m| m.value.end - m.key.start).sum();
        let base = start.min(end);
        let each: Vec<Window<'_>>;
        let windows = if end - base <= 2 * spans + WINDOW_SLACK {
            Windows::One(window(json, base, end)?)
        } else {
            each = members
                .iter()
                .map(|member| window(json, member.key.start, member.value.end))
                .collect::<Result<_, _>>()?;
            Windows::Each(&each)
        };
        let chosen = TextNode::Chosen {
            json: windows,
            members,
            nested,
            whole: false,
        };
        let size: usize = members.iter().map(|member| member.value.len()).sum();
        if size <= CHECK_TEXT_UP_TO {
            if self.text_validator.is_valid(chosen) {
                return Ok(());
            }
            return self
                .text_validator
                .validate(chosen)
                .map_err(|error| refusal(&error));
        }
        self.validate(&chosen.to_value())
    }
}

/// Bytes between the members a patch set that are checked as UTF-8 with them rather than
/// each member apart (a check has a fixed cost of about a hundred instructions).
const WINDOW_SLACK: usize = 1024;

/// The part of `json` from `start` to `end`, checked as UTF-8.
fn window(json: &[u8], start: usize, end: usize) -> Result<Window<'_>, GraphError> {
    json.get(start..end)
        .and_then(|part| std::str::from_utf8(part).ok())
        .map(|text| Window { text, base: start })
        .ok_or_else(|| GraphError::new(ErrorKind::Internal, "the merged object could not be read"))
}
