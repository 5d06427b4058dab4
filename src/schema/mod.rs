//! The resource schema: what a merged security object may look like.
//!
//! Graph's `microsoft.graph.security.security` has the key `id` and one navigation property,
//! `informationProtection`, and is not an open type. So [`ResourceSchema::graph`] (the default)
//! accepts only `@odata.type` (which must stay `#microsoft.graph.security.security`) and `id`
//! (read-only: absent from the patch or unchanged), and rejects anything else, naming the
//! property. Deployments that add properties supply a JSON Schema of their own with
//! `ResourceSchema::from_json_schema` (feature `json-schema`); the `@odata.type` and `id` rules hold for them too.
//!
//! | patch                                              | default schema |
//! |----------------------------------------------------|----------------|
//! | `{"@odata.type": "#microsoft.graph.security.security"}` | 200 |
//! | `{"id": "<the same id>"}`                          | 200 |
//! | `{"id": "other"}` or `{"id": null}`                 | 400, `id` is read-only |
//! | `{"@odata.type": "#microsoft.graph.user"}`          | 400 |
//! | `{"informationProtection": {}}`                    | 400, navigation property |
//! | `{"displayName": "x"}`                             | 400, names `displayName` |
//!
//! With the `json-schema` feature:
//!
//! ```
//! # #[cfg(feature = "json-schema")] {
//! use security_update::ResourceSchema;
//! use serde_json::json;
//!
//! let schema = ResourceSchema::from_json_schema(&json!({
//!     "type": "object",
//!     "properties": {"riskLevel": {"enum": ["low", "high"]}}
//! }))
//! .unwrap();
//! assert!(schema.allows("riskLevel"));
//! # }
//! ```

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

use crate::error::{ErrorKind, GraphError};
use crate::merge_patch::PlainNames;
use crate::store::members::{Member, ObjectValues};
#[cfg(feature = "json-schema")]
use custom::CustomSchema;
pub(crate) use slot::InEffect;
pub use slot::SchemaReloader;
use slot::current;

#[cfg(feature = "json-schema")]
mod custom;
mod slot;
#[cfg(feature = "json-schema")]
mod text_json;

/// The `@odata.type` of every security object.
pub const ODATA_TYPE: &str = "#microsoft.graph.security.security";
const ODATA_TYPE_KEY: &str = "@odata.type";
const ID_KEY: &str = "id";
const NAVIGATION_PROPERTIES: &[&str] = &["informationProtection"];

/// Validates patched objects; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct ResourceSchema {
    kind: SchemaKind,
    read_only: Arc<[Box<str>]>,
}

#[derive(Clone)]
enum SchemaKind {
    Graph,
    /// Any top-level property (an OData open type), no validation of their values.
    Open,
    #[cfg(feature = "json-schema")]
    Custom(Arc<CustomSchema>),
    /// Whatever schema the slot holds now ([`ResourceSchema::reloadable`]).
    Reloadable(Arc<RwLock<Arc<ResourceSchema>>>),
}

impl std::fmt::Debug for ResourceSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            SchemaKind::Graph => "graph",
            SchemaKind::Open => "open",
            #[cfg(feature = "json-schema")]
            SchemaKind::Custom(_) => "custom",
            SchemaKind::Reloadable(_) => "reloadable",
        };
        f.debug_struct("ResourceSchema")
            .field("kind", &kind)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl Default for ResourceSchema {
    fn default() -> Self {
        Self::graph()
    }
}

/// A JSON Schema that could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    message: String,
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid JSON Schema: {}", self.message)
    }
}

impl std::error::Error for SchemaError {}

impl ResourceSchema {
    /// Strictly Graph's type: `@odata.type` and a read-only `id`, nothing else.
    #[must_use]
    pub fn graph() -> Self {
        Self {
            kind: SchemaKind::Graph,
            read_only: Arc::from([]),
        }
    }

    /// A deployment's own JSON Schema for the whole object (it sees `@odata.type` and `id`
    /// too). Compiled once, here.
    ///
    /// # Errors
    /// When `schema` is not a valid JSON Schema.
    #[cfg(feature = "json-schema")]
    pub fn from_json_schema(schema: &Value) -> Result<Self, SchemaError> {
        Ok(Self {
            kind: SchemaKind::Custom(Arc::new(CustomSchema::compile(schema)?)),
            read_only: Arc::from([]),
        })
    }

    /// An open type: any top-level property is accepted and stored as sent, under the same
    /// `@odata.type` and `id` rules. For deployments that validate elsewhere, and for tests;
    /// with the `json-schema` feature, `from_json_schema` checks
    /// values too.
    ///
    /// ```
    /// use security_update::ResourceSchema;
    ///
    /// assert!(ResourceSchema::open_type().allows("riskLevel"));
    /// assert!(!ResourceSchema::graph().allows("riskLevel"));
    /// ```
    #[must_use]
    pub fn open_type() -> Self {
        Self {
            kind: SchemaKind::Open,
            read_only: Arc::from([]),
        }
    }

    /// Whether an object under this schema can have the top-level property `name` (what
    /// `$select` may name): `id` always; for a custom schema, a declared property, or any name
    /// when the schema is open.
    #[must_use]
    pub fn allows(&self, name: &str) -> bool {
        if name == ID_KEY {
            return true;
        }
        match &self.kind {
            SchemaKind::Graph => false,
            SchemaKind::Open => true,
            #[cfg(feature = "json-schema")]
            SchemaKind::Custom(custom) => custom.open || custom.declared.iter().any(|d| d == name),
            SchemaKind::Reloadable(slot) => current(slot).allows(name),
        }
    }

    /// This schema, replaceable while the service runs: the returned schema goes to the
    /// [`StackBuilder`](crate::StackBuilder), the [`SchemaReloader`] to whoever reloads it (the
    /// server does on SIGHUP). A write is judged whole by the schema in place when it starts
    /// (its patch was also checked alone by the one in place when it came); stored objects
    /// are not revalidated when it changes.
    ///
    /// ```
    /// use security_update::ResourceSchema;
    ///
    /// let (schema, reloader) = ResourceSchema::graph().reloadable();
    /// assert!(!schema.allows("riskLevel"));
    /// # #[cfg(feature = "json-schema")] {
    /// let open = ResourceSchema::from_json_schema(&serde_json::json!({"type": "object"})).unwrap();
    /// reloader.replace(open);
    /// assert!(schema.allows("riskLevel"));
    /// # }
    /// ```
    #[must_use]
    pub fn reloadable(self) -> (Self, SchemaReloader) {
        let slot = Arc::new(RwLock::new(Arc::new(self.resolved())));
        (
            Self {
                kind: SchemaKind::Reloadable(slot.clone()),
                read_only: Arc::from([]),
            },
            SchemaReloader { slot },
        )
    }

    /// The schema in effect now: itself, or what its slot holds.
    fn resolved(self) -> Self {
        match &self.kind {
            SchemaKind::Reloadable(slot) => ResourceSchema::clone(&current(slot)),
            _ => self,
        }
    }

    /// Top-level properties that a patch may not change (besides `id`, always read-only).
    #[must_use]
    pub fn with_read_only<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, names: I) -> Self {
        self.read_only = names.into_iter().map(|n| Box::from(n.as_ref())).collect();
        self
    }

    /// Checks a patch before it touches any stored object: the rules that do not depend on
    /// the current object.
    ///
    /// # Errors
    /// 400 naming the first offending property.
    pub(crate) fn check_patch(&self, patch: &Map<String, Value>) -> Result<(), GraphError> {
        if let SchemaKind::Reloadable(slot) = &self.kind {
            return current(slot).check_patch(patch);
        }
        for (key, value) in patch {
            match key.as_str() {
                ODATA_TYPE_KEY => match value {
                    Value::String(t) if t == ODATA_TYPE => {}
                    Value::Null => return Err(invalid(ODATA_TYPE_KEY, "cannot be removed")),
                    _ => {
                        return Err(invalid(ODATA_TYPE_KEY, format!("must be \"{ODATA_TYPE}\"")));
                    }
                },
                ID_KEY if !value.is_string() => {
                    return Err(invalid(ID_KEY, "is read-only and cannot be changed"));
                }
                ID_KEY => {}
                _ if matches!(self.kind, SchemaKind::Graph) => {
                    return Err(undeclared(key));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// [`check_patch`](Self::check_patch) for a patch known by its names alone, none of them
    /// `id` or `@odata.type` (the two whose values it reads).
    ///
    /// # Errors
    /// 400 naming the first undeclared property.
    pub(crate) fn check_patch_names(&self, names: PlainNames<'_>) -> Result<(), GraphError> {
        match &self.kind {
            SchemaKind::Reloadable(slot) => current(slot).check_patch_names(names),
            SchemaKind::Graph => names
                .iter()
                .next()
                .map_or(Ok(()), |key| Err(undeclared(&key))),
            _ => Ok(()),
        }
    }

    /// The checks of a patch alone ([`check_patch_names`](Self::check_patch_names), or
    /// [`check_patch`](Self::check_patch) when its names are not all plain).
    ///
    /// # Errors
    /// 400 naming the first offending property.
    pub(crate) fn check_patch_alone(&self, patch: &crate::MergePatch) -> Result<(), GraphError> {
        match patch.plain_names() {
            Some(names) => self.check_patch_names(names),
            None => self.check_patch(patch.document()),
        }
    }

    /// Checks a merged object against the object it was patched from.
    ///
    /// # Errors
    /// 400 naming the first offending property.
    pub(crate) fn check_merged(
        &self,
        merged: &mut Map<String, Value>,
        current: &Map<String, Value>,
    ) -> Result<(), GraphError> {
        if let SchemaKind::Reloadable(slot) = &self.kind {
            // The whole check under one schema, even if it is replaced meanwhile.
            return self::current(slot).check_merged(merged, current);
        }
        match (merged.get_mut(ID_KEY), current.get(ID_KEY)) {
            (Some(new), Some(old)) if new == old => {}
            // The same GUID in another case is the same id (GUIDs compare case-insensitively):
            // accept it, and keep the stored spelling.
            (Some(Value::String(new)), Some(Value::String(old)))
                if crate::route::is_guid(new) && new.eq_ignore_ascii_case(old) =>
            {
                new.clone_from(old);
            }
            (None, None) => {}
            _ => return Err(invalid(ID_KEY, "is read-only and cannot be changed")),
        }
        if merged.get(ODATA_TYPE_KEY).and_then(Value::as_str) != Some(ODATA_TYPE) {
            return Err(invalid(ODATA_TYPE_KEY, format!("must be \"{ODATA_TYPE}\"")));
        }
        for name in self.read_only.iter() {
            if merged.get(&**name) != current.get(&**name) {
                return Err(invalid(name, "is read-only and cannot be changed"));
            }
        }
        match &self.kind {
            SchemaKind::Graph => {
                if let Some(key) = merged.keys().find(|k| *k != ID_KEY && *k != ODATA_TYPE_KEY) {
                    return Err(undeclared(key));
                }
                Ok(())
            }
            SchemaKind::Open => Ok(()),
            #[cfg(feature = "json-schema")]
            SchemaKind::Custom(custom) => {
                // jsonschema validates a `Value`; move the map in and back out, no copy.
                let instance = Value::Object(std::mem::take(merged));
                let outcome = custom.validate(&instance);
                if let Value::Object(map) = instance {
                    *merged = map;
                }
                outcome
            }
            SchemaKind::Reloadable(slot) => self::current(slot).check_merged(merged, current),
        }
    }

    /// The schema in effect now: this one, or what its slot holds (taken once, so a whole
    /// write is checked against one schema even if it is replaced meanwhile).
    pub(crate) fn in_effect(&self) -> InEffect<'_> {
        match &self.kind {
            SchemaKind::Reloadable(slot) => InEffect::Taken(current(slot)),
            _ => InEffect::Itself(self),
        }
    }

    /// Whether a write of `patch` may check only the members the patch sets
    /// ([`check_members`](Self::check_members)) instead of the whole merged object: when the
    /// schema judges members one by one, and the patch names no read-only property (nor, as
    /// [`PlainNames`] are, `id` or `@odata.type`: those are compared with the stored object).
    /// Members the patch leaves alone were valid when written and are not judged again, as
    /// Kubernetes ratchets unchanged fields of custom resources (KEP-4008); nor are members
    /// whose merged value is byte for byte the stored one (always so for a value repeated
    /// onto an object this crate wrote; a stored text with other spacing or escapes is
    /// judged). A patch that names `id`, `@odata.type` or a read-only property has the whole
    /// object judged. Without read-only properties, no name is read.
    pub(crate) fn checks_members_alone(&self, names: PlainNames<'_>) -> bool {
        let local = match &self.kind {
            SchemaKind::Graph | SchemaKind::Open => true,
            #[cfg(feature = "json-schema")]
            SchemaKind::Custom(custom) => custom.member_local,
            SchemaKind::Reloadable(_) => false,
        };
        local
            && (self.read_only.is_empty()
                || !names
                    .iter()
                    .any(|key| self.read_only.iter().any(|r| **r == *key)))
    }

    /// Checks the members a patch changed, after
    /// [`checks_members_alone`](Self::checks_members_alone): `touched`, members of the merged
    /// object's text `json`, read where they lie; `nested`, the members of those of their
    /// object values that are noted.
    ///
    /// # Errors
    /// 400 naming the first offending property.
    pub(crate) fn check_members(
        &self,
        json: &[u8],
        touched: &[Member],
        nested: &ObjectValues,
    ) -> Result<(), GraphError> {
        // Only a JSON Schema reads the nested objects' members.
        #[cfg(not(feature = "json-schema"))]
        let _ = nested;
        match &self.kind {
            SchemaKind::Graph => match touched.first() {
                Some(member) => Err(undeclared(&member.name(json).unwrap_or_default())),
                None => Ok(()),
            },
            SchemaKind::Open => Ok(()),
            #[cfg(feature = "json-schema")]
            SchemaKind::Custom(custom) => custom.validate_members(json, touched, nested),
            SchemaKind::Reloadable(slot) => current(slot).check_members(json, touched, nested),
        }
    }
}

#[cold]
pub(crate) fn invalid(property: &str, problem: impl Into<Cow<'static, str>>) -> GraphError {
    let problem = problem.into();
    GraphError::new(
        ErrorKind::BadRequest,
        format!("Invalid value for property '{property}': {problem}"),
    )
}

#[cold]
fn undeclared(property: &str) -> GraphError {
    let message = if NAVIGATION_PROPERTIES.contains(&property) {
        format!(
            "Property '{property}' is a navigation property of microsoft.graph.security.security and cannot be set inline."
        )
    } else {
        format!(
            "Property '{property}' does not exist as a declared property or extension property on type microsoft.graph.security.security."
        )
    };
    GraphError::new(ErrorKind::BadRequest, message)
}

#[cfg(test)]
mod tests;
