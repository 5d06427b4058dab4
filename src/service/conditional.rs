//! Conditional requests and preferences: `If-Match` (RFC 9110 §13.1.1, strong comparison),
//! `If-None-Match` on reads (§13.1.2, weak comparison: 304 when it matches) and
//! `Prefer: return=minimal` (RFC 7240). Parsing happens before the store is touched; the
//! comparison happens against the snapshot a write is about to replace.

use http::header::{self, HeaderMap};

use crate::error::{ErrorKind, GraphError};
use crate::store::Snapshot;

/// `If-Match` (or `If-None-Match`): no header, `*`, or a list of entity tags.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Precondition {
    None,
    Any,
    /// Strong tags only (a weak tag never matches in a strong comparison).
    OneOf(Vec<String>),
}

impl Precondition {
    /// `If-Match`, for a strong comparison.
    pub(crate) fn parse(headers: &HeaderMap) -> Result<Self, GraphError> {
        Self::parse_header(headers, &header::IF_MATCH, "If-Match", false)
    }

    /// `If-None-Match`, for a weak comparison (weak tags kept, their `W/` dropped).
    pub(crate) fn parse_none_match(headers: &HeaderMap) -> Result<Self, GraphError> {
        Self::parse_header(headers, &header::IF_NONE_MATCH, "If-None-Match", true)
    }

    fn parse_header(
        headers: &HeaderMap,
        name: &header::HeaderName,
        label: &str,
        keep_weak: bool,
    ) -> Result<Self, GraphError> {
        let mut values = headers.get_all(name).iter().peekable();
        if values.peek().is_none() {
            return Ok(Self::None);
        }
        let malformed = || {
            GraphError::new(
                ErrorKind::BadRequest,
                format!("The {label} header is malformed."),
            )
        };
        let mut tags = Vec::new();
        for value in values {
            let mut rest = value.to_str().map_err(|_| malformed())?;
            loop {
                rest = rest.trim_start_matches([' ', '\t', ',']);
                if rest.is_empty() {
                    break;
                }
                if let Some(after) = rest.strip_prefix('*') {
                    tags.push(None);
                    rest = after;
                    continue;
                }
                let (weak, quoted) = match rest.strip_prefix("W/") {
                    Some(quoted) => (true, quoted),
                    None => (false, rest),
                };
                let inner = quoted.strip_prefix('"').ok_or_else(malformed)?;
                let end = inner.find('"').ok_or_else(malformed)?;
                // A weak tag never matches in a strong comparison; keep it out of the list.
                if !weak || keep_weak {
                    tags.push(Some(inner[..end].to_owned()));
                }
                rest = &inner[end + 1..];
            }
        }
        if tags.iter().any(Option::is_none) {
            return Ok(Self::Any);
        }
        Ok(Self::OneOf(tags.into_iter().flatten().collect()))
    }

    /// For `If-None-Match`: whether the current object matches, so a read answers 304 and a
    /// write 412. `*` matches always, as in `check`.
    pub(crate) fn matches_weakly(&self, current: &Snapshot) -> bool {
        match self {
            Self::None => false,
            Self::Any => true,
            Self::OneOf(tags) => {
                let etag = current.etag();
                let current_tag = etag.to_str().unwrap_or_default().trim_matches('"');
                tags.iter().any(|tag| tag == current_tag)
            }
        }
    }

    /// For `If-None-Match` on a write (RFC 9110 §13.1.2): 412 when it matches; a tag matches
    /// weakly, `*` always (see `check`).
    pub(crate) fn check_none_match(&self, current: &Snapshot) -> Result<(), GraphError> {
        if self.matches_weakly(current) {
            Err(GraphError::new(
                ErrorKind::PreconditionFailed,
                format!(
                    "If-None-Match matches the current object (ETag {}); nothing was changed.",
                    current.etag().to_str().unwrap_or_default()
                ),
            ))
        } else {
            Ok(())
        }
    }

    /// For `If-Match` (RFC 9110 §13.1.1): 412 unless a tag matches strongly. `*` matches
    /// always: a user's security object always has a current representation, as in Graph (a
    /// `GET` of one never saved answers the default object, `ETag: "0"`). So `If-Match: *`
    /// always passes and `If-None-Match: *` never does, on reads and writes alike.
    pub(crate) fn check(&self, current: &Snapshot) -> Result<(), GraphError> {
        let Self::OneOf(tags) = self else {
            return Ok(());
        };
        let etag = current.etag();
        let current_tag = etag.to_str().unwrap_or_default().trim_matches('"');
        if tags.iter().any(|tag| tag == current_tag) {
            Ok(())
        } else {
            Err(GraphError::new(
                ErrorKind::PreconditionFailed,
                format!(
                    "The If-Match ETag does not match the current ETag {}.",
                    etag.to_str().unwrap_or_default()
                ),
            ))
        }
    }
}

/// A constant name: a `&str` would be parsed into a `HeaderName` on every request.
const PREFER: http::HeaderName = http::HeaderName::from_static("prefer");

/// Requests with at most this many header names are walked once to see whether they send any
/// of `If-Match`, `If-None-Match` and `Prefer`, where three hashed lookups cost ~300
/// instructions (callgrind) for headers most requests do not send.
const WALK_NAMES_UP_TO: usize = 16;

/// A request's `If-Match`, `If-None-Match` and `Prefer: return=minimal`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Conditions {
    pub(crate) if_match: Precondition,
    pub(crate) if_none_match: Precondition,
    pub(crate) minimal: bool,
}

impl Conditions {
    /// [`Precondition::parse`], [`Precondition::parse_none_match`] and [`prefers_minimal`].
    pub(crate) fn parse(headers: &HeaderMap) -> Result<Self, GraphError> {
        let none_sent = headers.keys_len() <= WALK_NAMES_UP_TO
            && !headers.keys().any(|name| {
                name == header::IF_MATCH || name == header::IF_NONE_MATCH || name == PREFER
            });
        if none_sent {
            return Ok(Self {
                if_match: Precondition::None,
                if_none_match: Precondition::None,
                minimal: false,
            });
        }
        Ok(Self {
            if_match: Precondition::parse(headers)?,
            if_none_match: Precondition::parse_none_match(headers)?,
            minimal: prefers_minimal(headers),
        })
    }
}

/// Whether `Prefer` asks for `return=minimal` (RFC 7240).
pub(crate) fn prefers_minimal(headers: &HeaderMap) -> bool {
    headers
        .get_all(PREFER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|preference| {
            preference
                .split(';')
                .next()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("return=minimal"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// The three headers read together answer as each read alone, whichever of them a
    /// request sends, among few other headers or many.
    #[test]
    fn conditions_read_together_are_read_as_alone() {
        let sent = [
            (header::IF_MATCH, "\"1\""),
            (header::IF_NONE_MATCH, "*"),
            (PREFER, "return=minimal"),
            (header::IF_MATCH, "not a tag"),
            (header::IF_NONE_MATCH, "W/"),
        ];
        let (mut cases, mut refused) = (0, 0);
        for others in [0, 2, WALK_NAMES_UP_TO, WALK_NAMES_UP_TO + 3] {
            for chosen in 0..1 << sent.len() {
                let mut map = HeaderMap::new();
                for n in 0..others {
                    let name = http::HeaderName::from_bytes(format!("x-other-{n}").as_bytes());
                    map.insert(name.unwrap(), HeaderValue::from_static("v"));
                }
                for (bit, (name, value)) in sent.iter().enumerate() {
                    if chosen & (1 << bit) != 0 {
                        map.append(name, HeaderValue::from_static(value));
                    }
                }
                let alone = Precondition::parse(&map).and_then(|if_match| {
                    Ok(Conditions {
                        if_match,
                        if_none_match: Precondition::parse_none_match(&map)?,
                        minimal: prefers_minimal(&map),
                    })
                });
                let together = Conditions::parse(&map);
                assert_eq!(
                    together.as_ref().map_err(GraphError::message),
                    alone.as_ref().map_err(GraphError::message),
                    "{map:?}"
                );
                refused += usize::from(together.is_err());
                cases += usize::from(together.is_ok_and(|c| c.minimal));
            }
        }
        assert_eq!(cases, 4 * 4, "return=minimal among the valid cases");
        assert!(refused >= 3 * 4 * 4, "{refused} refused");
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(header::IF_MATCH, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn if_match_is_parsed_per_rfc_9110() {
        assert_eq!(
            Precondition::parse(&headers(&[])).unwrap(),
            Precondition::None
        );
        assert_eq!(
            Precondition::parse(&headers(&["*"])).unwrap(),
            Precondition::Any
        );
        assert_eq!(
            Precondition::parse(&headers(&["\"1\", W/\"2\"", "\"a,b\""])).unwrap(),
            Precondition::OneOf(vec!["1".into(), "a,b".into()])
        );
        for bad in ["1", "\"1", "W/1", "\"1\" x"] {
            assert!(Precondition::parse(&headers(&[bad])).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefer_return_minimal_is_found_among_preferences() {
        let mut map = HeaderMap::new();
        map.insert(
            "prefer",
            HeaderValue::from_static("odata.maxpagesize=3, Return=Minimal"),
        );
        assert!(prefers_minimal(&map));
        map.insert("prefer", HeaderValue::from_static("return=representation"));
        assert!(!prefers_minimal(&map));
    }
}
