//! A patch's JSON text with its top-level members indexed ([`PatchText`]), what the write
//! path works on instead of a parsed document, and the names it can hand to a check
//! ([`PlainNames`]).

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{SCAN_DEPTH_LIMIT, scan};
use crate::store::members::{Member, NotedObjectValues};

/// Where a patch's top-level members lie in its JSON text
/// ([`MergePatch::text_json`](super::MergePatch::text_json)).
#[derive(Debug, Clone)]
pub(crate) struct PatchText {
    /// The parsed document written out again, when the raw bytes did not scan; `None`: the
    /// text is the raw bytes (not a second handle on them: each `Bytes` clone and drop is an
    /// atomic instruction, two a request).
    pub(super) rewritten: Option<Bytes>,
    pub(crate) members: Vec<Member>,
    /// The members of the top-level object values.
    pub(crate) object_values: NotedObjectValues,
    /// Every top-level name can be read, and none is `id` or `@odata.type` (the two whose
    /// values the schema reads) or an annotation.
    pub(super) plain: bool,
    /// Some top-level name is an annotation other than `@odata.type`, or cannot be read.
    pub(super) annotated: bool,
    /// The text is already in `serde_json`'s compact form (see [`scan::scan_noting_compact`]).
    pub(crate) compact: bool,
}

impl PatchText {
    /// The index of `json`, the raw bytes (`of` sets `rewritten` for other texts).
    pub(super) fn new(json: &[u8], scanned: scan::Scanned) -> Self {
        let scan::Scanned {
            members,
            object_values,
            compact,
        } = scanned;
        let (mut plain, mut annotated) = (true, false);
        for member in &members {
            let literal = &json[member.key.clone()];
            let name = if member.escaped {
                match scan::name_of(literal, true) {
                    Some(name) => Cow::Owned(name.into_owned().into_bytes()),
                    None => {
                        (plain, annotated) = (false, true);
                        continue;
                    }
                }
            } else {
                Cow::Borrowed(&literal[1..literal.len() - 1])
            };
            let at_sign = name.contains(&b'@');
            if at_sign || *name == *b"id" {
                plain = false;
            }
            if at_sign && *name != *b"@odata.type" {
                annotated = true;
            }
        }
        Self {
            rewritten: None,
            members,
            object_values,
            plain,
            annotated,
            compact,
        }
    }

    /// The text of `document`, compact.
    pub(super) fn of(document: &Map<String, Value>) -> Option<Self> {
        let json = Bytes::from(serde_json::to_vec(document).ok()?);
        let scanned = scan::scan_noting_compact(&json, SCAN_DEPTH_LIMIT)?;
        let mut text = Self::new(&json, scanned);
        text.rewritten = Some(json);
        Some(text)
    }
}

/// The top-level names of a patch when every one can be read and none is `id`,
/// `@odata.type` (the two whose values the schema reads) or an annotation
/// ([`MergePatch::plain_names`](super::MergePatch::plain_names)): a check that needs only
/// names, and none of those, may skip reading them when it has nothing to look for.
#[derive(Clone, Copy)]
pub(crate) struct PlainNames<'a> {
    pub(super) json: &'a [u8],
    pub(super) text: &'a PatchText,
}

impl<'a> PlainNames<'a> {
    /// The names, in order.
    pub(crate) fn iter(self) -> impl Iterator<Item = Cow<'a, str>> {
        let json = self.json;
        self.text
            .members
            .iter()
            .filter_map(move |member| scan::name_of(&json[member.key.clone()], member.escaped))
    }
}
