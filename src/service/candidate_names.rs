//! Which patch member names each stored member, for the text merge (`candidate`).

use std::borrow::Cow;

use super::{ObjectText, unreadable};
use crate::store::members::Member;

/// Patches of at most this many members are matched to stored members by comparing names
/// (a length check, then bytes): cheaper than hashing every stored name, and still linear in
/// the object. Bigger patches go through a hash map of their names, so that matching stays
/// linear for big objects and big patches alike.
const COMPARE_NAMES_UP_TO: usize = 8;

/// Finds the patch member that names a stored member: by comparing names for small patches
/// (no allocation, no hashing), through a map of the patch's names for big ones. Each name is
/// decoded at most once per object, whatever its escapes: decoding a long escaped patch name
/// again for every stored member would make one small patch cost minutes of CPU against a
/// wide object.
pub(super) enum PatchNames<'a> {
    /// Compare; the patch's names decoded once when one of them holds an escape.
    Compare(Option<Vec<Cow<'a, str>>>),
    Map(std::collections::HashMap<Cow<'a, str>, usize>),
}

impl<'a> PatchNames<'a> {
    pub(super) fn new(patch: &ObjectText<'a>) -> Result<Self, serde_json::Error> {
        if patch.members.len() <= COMPARE_NAMES_UP_TO {
            if patch.members.iter().all(|member| !member.escaped) {
                return Ok(Self::Compare(None));
            }
            let decoded = patch
                .members
                .iter()
                .map(|member| name(patch, member))
                .collect::<Result<_, _>>()?;
            return Ok(Self::Compare(Some(decoded)));
        }
        let mut by_name = std::collections::HashMap::with_capacity(patch.members.len());
        for (entry, member) in patch.members.iter().enumerate() {
            by_name.insert(name(patch, member)?, entry);
        }
        Ok(Self::Map(by_name))
    }

    /// The patch member naming `member` (a member of `stored`), if any. The stored object
    /// names each member once, and so does the patch.
    pub(super) fn naming(
        &mut self,
        stored: &ObjectText<'_>,
        member: &Member,
        patch: &ObjectText<'_>,
    ) -> Result<Option<usize>, serde_json::Error> {
        match self {
            // Both plain: the key literals are the names.
            Self::Compare(None) if !member.escaped => {
                let key = stored.key(member);
                Ok(patch
                    .members
                    .iter()
                    .position(|wanted| patch.key(wanted) == key))
            }
            Self::Compare(decoded) => {
                let own = name(stored, member)?;
                Ok(match decoded {
                    Some(names) => names.iter().position(|wanted| *wanted == own),
                    None => patch.members.iter().position(|wanted| {
                        let key = patch.key(wanted);
                        key[1..key.len() - 1] == *own.as_bytes()
                    }),
                })
            }
            Self::Map(by_name) => Ok(by_name.remove(name(stored, member)?.as_ref())),
        }
    }
}

/// Which patch members named a stored member: bits for up to 64 of them.
pub(super) enum Matched {
    Bits(u64),
    Flags(Vec<bool>),
}

impl Matched {
    pub(super) fn new(len: usize) -> Self {
        if len <= 64 {
            Self::Bits(0)
        } else {
            Self::Flags(vec![false; len])
        }
    }

    pub(super) fn set(&mut self, entry: usize) {
        match self {
            Self::Bits(bits) => *bits |= 1 << entry,
            Self::Flags(flags) => flags[entry] = true,
        }
    }

    pub(super) fn get(&self, entry: usize) -> bool {
        match self {
            Self::Bits(bits) => bits & (1 << entry) != 0,
            Self::Flags(flags) => flags[entry],
        }
    }
}

fn name<'a>(object: &ObjectText<'a>, member: &Member) -> Result<Cow<'a, str>, serde_json::Error> {
    member.name(object.json).ok_or_else(unreadable)
}
