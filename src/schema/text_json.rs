//! The JSON text a write produced, as an instance `jsonschema` validates in place (its
//! [`Json`] representation trait): the members a patch set are checked where they lie in the
//! merged object's text, with no `serde_json::Value` built, hashed and dropped for them.
//!
//! Objects and arrays are walked in their text ([`members::members`], [`members::elements`]):
//! a lookup by name is a walk of the object, cheap for the objects a patch sets, and linear in
//! an object's size for each property the schema names. Strings without escapes are borrowed
//! from the text (which is UTF-8, checked once); numbers are read from their literal. The texts are ones this crate wrote
//! (compact, checked when parsed), so the accessors need no error path; `to_value` (error
//! messages, `enum`, `const`) reads a node as `serde_json` would. The representation is
//! checked against `jsonschema`'s own conformance document in the tests below.

use std::borrow::Cow;

use jsonschema::JsonType;
use jsonschema::json::{Array, Json, JsonNumber, Node, NodeIdentity, Object};
use serde_json::{Map, Value};

use crate::merge_patch::value::value_of;
use crate::store::members::{self, Elements, Member, Members, ObjectValues, object_value};

#[path = "text_window.rs"]
mod window;
pub(crate) use window::{Window, Windows};

/// The representation: nodes are [`TextNode`]s.
#[derive(Debug)]
pub(crate) struct TextJson;

impl Json for TextJson {
    type Node<'a> = TextNode<'a>;
    type PreparedKey = Box<str>;
    type StringBuffer = ();
    /// `required` (in nested subschemas) walks an object once instead of looking each name
    /// up when the object has at most this many members per name: a lookup here is a walk,
    /// so always walk. `jsonschema` multiplies it by at most 16.
    const KEYS_PER_LOOKUP: usize = usize::MAX / 16;
    /// A text has no cycles.
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> Box<str> {
        key.into()
    }

    fn with_string_node<T>(_: &mut (), string: &str, f: impl FnOnce(TextNode<'_>) -> T) -> T {
        f(TextNode::Name(string))
    }
}

/// One value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TextNode<'a> {
    /// A value's JSON text, with no space around it.
    Text(&'a str),
    /// An object made of members of the object text `json`: those a patch set, or all of
    /// them (`whole`: then `json` is one window on this object's own text, and the node is
    /// the same value as `Text` of it). `nested` has the members of some of their object
    /// values.
    Chosen {
        json: Windows<'a>,
        members: &'a [Member],
        nested: &'a ObjectValues,
        whole: bool,
    },
    /// A member name, for `propertyNames`.
    Name(&'a str),
}

impl<'a> TextNode<'a> {
    /// The text, for a node that is one.
    fn text(&self) -> Option<&'a str> {
        match self {
            Self::Text(text) => Some(text),
            Self::Chosen { .. } | Self::Name(_) => None,
        }
    }

    fn first_byte(&self) -> Option<u8> {
        self.text()
            .and_then(|text| text.as_bytes().first().copied())
    }
}

impl<'a> Node<'a, TextJson> for TextNode<'a> {
    type Object = TextObject<'a>;
    type Array = TextArray<'a>;
    type Number = TextNumber<'a>;

    fn as_object(&self) -> Option<TextObject<'a>> {
        match *self {
            Self::Text(text) if text.starts_with('{') => Some(TextObject::Text(text)),
            Self::Chosen {
                json,
                members,
                nested,
                ..
            } => Some(TextObject::Chosen {
                json,
                members,
                nested,
            }),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<TextArray<'a>> {
        self.text()
            .filter(|text| text.starts_with('['))
            .map(TextArray)
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        match *self {
            Self::Text(text) if text.starts_with('"') => string_of(text),
            Self::Name(name) => Some(Cow::Borrowed(name)),
            _ => None,
        }
    }

    fn as_number(&self) -> Option<TextNumber<'a>> {
        self.text()
            .filter(|text| matches!(text.as_bytes().first(), Some(b'-' | b'0'..=b'9')))
            .map(TextNumber)
    }

    fn as_boolean(&self) -> Option<bool> {
        match self.text()? {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        self.text() == Some("null")
    }

    /// `minLength` and `maxLength`, decided by the byte length where it can be, as
    /// `jsonschema` does for a `serde_json` string: `n` bytes of UTF-8 hold `n / 4` (rounded
    /// up) to `n` code points. A literal without escapes is its string's bytes between quotes,
    /// so it is not decoded; one with escapes is.
    fn string_length_within(&self, min: u64, max: u64) -> Option<bool> {
        let Self::Text(text) = *self else {
            return self
                .string_length()
                .map(|length| (min..=max).contains(&length));
        };
        let content = text.strip_prefix('"')?.strip_suffix('"')?;
        if content.contains('\\') {
            let length = string_of(text)?.chars().count() as u64;
            return Some((min..=max).contains(&length));
        }
        let bytes = content.len() as u64;
        let fewest = bytes.div_ceil(4);
        if bytes < min || fewest > max {
            return Some(false);
        }
        if min <= fewest && bytes <= max {
            return Some(true);
        }
        Some((min..=max).contains(&(content.chars().count() as u64)))
    }

    fn json_type(&self) -> JsonType {
        match self {
            Self::Chosen { .. } => JsonType::Object,
            Self::Name(_) => JsonType::String,
            Self::Text(_) => match self.first_byte() {
                Some(b'{') => JsonType::Object,
                Some(b'[') => JsonType::Array,
                Some(b'"') => JsonType::String,
                Some(b't' | b'f') => JsonType::Boolean,
                Some(b'n') => JsonType::Null,
                _ => JsonType::Number,
            },
        }
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(match *self {
            Self::Text(text) => value_of(text.as_bytes()).unwrap_or(Value::Null),
            Self::Chosen { json, members, .. } => Value::Object(
                members
                    .iter()
                    .enumerate()
                    .filter_map(|(entry, member)| {
                        let json = json.of(entry);
                        Some((
                            json.name(member)?.into_owned(),
                            value_of(json.part(&member.value).as_bytes()).ok()?,
                        ))
                    })
                    .collect::<Map<_, _>>(),
            ),
            Self::Name(name) => Value::String(name.to_owned()),
        })
    }

    fn identity(&self) -> Option<NodeIdentity> {
        // No two values of a text start at the same byte; the other kinds are told apart by
        // their tags.
        Some(match self {
            Self::Text(text) => NodeIdentity::tagged(text.as_ptr() as usize, 0),
            Self::Chosen {
                members,
                whole: false,
                ..
            } => NodeIdentity::tagged(members.as_ptr() as usize, 1),
            // The object's own text has the same identity.
            Self::Chosen {
                json, whole: true, ..
            } => NodeIdentity::tagged(json.of(0).text.as_ptr() as usize, 0),
            Self::Name(name) => NodeIdentity::tagged(name.as_ptr() as usize, 2),
        })
    }
}

/// An object: a text, or chosen members of one.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TextObject<'a> {
    Text(&'a str),
    Chosen {
        json: Windows<'a>,
        members: &'a [Member],
        nested: &'a ObjectValues,
    },
}

/// A string literal's value: borrowed when it holds no escape.
fn string_of(literal: &str) -> Option<Cow<'_, str>> {
    if literal.contains('\\') {
        serde_json::from_str(literal).ok().map(Cow::Owned)
    } else {
        literal.get(1..literal.len() - 1).map(Cow::Borrowed)
    }
}

/// The node for the value of `member` of `json`: its members read from `nested` when noted.
fn member_value<'a>(json: Window<'a>, member: &Member, nested: &'a ObjectValues) -> TextNode<'a> {
    let value = json.part(&member.value);
    match object_value(nested, member.value.start) {
        Some(members) => TextNode::Chosen {
            json: Windows::One(Window::whole(value)),
            members,
            nested: &[],
            whole: true,
        },
        None => TextNode::Text(value),
    }
}

impl<'a> TextObject<'a> {
    fn walk(&self) -> ObjectMembers<'a> {
        match *self {
            Self::Text(text) => ObjectMembers::Text {
                json: Window::whole(text),
                walk: members::members(text.as_bytes()),
            },
            Self::Chosen {
                json,
                members,
                nested,
            } => ObjectMembers::Chosen {
                json,
                members: members.iter().enumerate(),
                nested,
            },
        }
    }
}

impl<'a> Object<'a, TextJson> for TextObject<'a> {
    type Node = TextNode<'a>;
    type MemberName = Cow<'a, str>;
    type MembersIter = ObjectMembers<'a>;

    fn len(&self) -> usize {
        match self {
            Self::Text(text) => members::members(text.as_bytes()).count(),
            Self::Chosen { members, .. } => members.len(),
        }
    }

    fn get(&self, key: &Box<str>) -> Option<TextNode<'a>> {
        let named = |json: Window<'_>, member: &Member| {
            json.name(member).is_some_and(|name| *name == **key)
        };
        match *self {
            Self::Text(text) => {
                let json = Window::whole(text);
                members::members(text.as_bytes())
                    .find(|member| named(json, member))
                    .map(|member| TextNode::Text(json.part(&member.value)))
            }
            Self::Chosen {
                json,
                members,
                nested,
            } => members
                .iter()
                .enumerate()
                .find(|(entry, member)| named(json.of(*entry), member))
                .map(|(entry, member)| member_value(json.of(entry), member, nested)),
        }
    }

    fn members(&self) -> ObjectMembers<'a> {
        self.walk()
    }
}

/// An object's members, in order.
#[derive(Debug, Clone)]
pub(crate) enum ObjectMembers<'a> {
    Text {
        json: Window<'a>,
        walk: Members<'a>,
    },
    Chosen {
        json: Windows<'a>,
        members: std::iter::Enumerate<std::slice::Iter<'a, Member>>,
        nested: &'a ObjectValues,
    },
}

impl<'a> Iterator for ObjectMembers<'a> {
    type Item = (Cow<'a, str>, TextNode<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Text { json, walk } => {
                let member = walk.next()?;
                let name = json.name(&member).unwrap_or_default();
                Some((name, TextNode::Text(json.part(&member.value))))
            }
            Self::Chosen {
                json,
                members,
                nested,
            } => {
                let (entry, member) = members.next()?;
                let json = json.of(entry);
                let name = json.name(member).unwrap_or_default();
                Some((name, member_value(json, member, nested)))
            }
        }
    }
}

/// An array's text, brackets included.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TextArray<'a>(&'a str);

impl<'a> Array<'a, TextJson> for TextArray<'a> {
    type Node = TextNode<'a>;
    type ElementsIter = ArrayElements<'a>;

    fn len(&self) -> usize {
        members::elements(self.0.as_bytes()).count()
    }

    fn elements(&self) -> ArrayElements<'a> {
        ArrayElements {
            json: self.0,
            walk: members::elements(self.0.as_bytes()),
        }
    }
}

/// An array's elements, in order.
#[derive(Debug, Clone)]
pub(crate) struct ArrayElements<'a> {
    json: &'a str,
    walk: Elements<'a>,
}

impl<'a> Iterator for ArrayElements<'a> {
    type Item = TextNode<'a>;

    fn next(&mut self) -> Option<TextNode<'a>> {
        self.walk
            .next()
            .map(|at| TextNode::Text(self.json.get(at).unwrap_or_default()))
    }
}

/// A number's literal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TextNumber<'a>(&'a str);

impl TextNumber<'_> {
    /// Written with neither a fraction nor an exponent (and not `-0`, which `serde_json` reads
    /// as a float): then `i64` or `u64` holds it, as the patch scan made sure.
    fn is_integer_literal(&self) -> bool {
        self.0 != "-0" && !self.0.contains(['.', 'e', 'E'])
    }
}

impl JsonNumber for TextNumber<'_> {
    fn as_u64(&self) -> Option<u64> {
        self.is_integer_literal()
            .then(|| self.0.parse().ok())
            .flatten()
    }

    fn as_i64(&self) -> Option<i64> {
        self.is_integer_literal()
            .then(|| self.0.parse().ok())
            .flatten()
    }

    fn as_f64(&self) -> Option<f64> {
        self.to_number().as_f64()
    }

    fn as_str(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.0)
    }

    fn to_number(&self) -> Cow<'_, serde_json::Number> {
        // As `serde_json` reads the literal: the number a `Value` of this text holds.
        Cow::Owned(serde_json::from_str(self.0).unwrap_or_else(|_| serde_json::Number::from(0_u8)))
    }

    /// Draft 4's `type: integer`: answered as `jsonschema` answers it for a `serde_json`
    /// number, which it reads back from the `f64` (so `1e19` is an integer: every `f64` from
    /// 2^63 up is whole).
    fn is_written_as_integer(&self) -> bool {
        if self.is_integer_literal() {
            return true;
        }
        let number = self.to_number();
        let text = number.to_string();
        if text.contains(['e', 'E']) {
            return number
                .as_f64()
                .is_some_and(|value| value.abs() >= 9_223_372_036_854_775_808.0);
        }
        !text.contains('.')
    }
}

#[cfg(test)]
#[path = "text_json_tests.rs"]
mod tests;
