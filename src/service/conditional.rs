//! Conditional requests and preferences: `If-Match` (RFC 9110 §13.1.1, strong comparison) and
//! `Prefer: return=minimal` (RFC 7240). Parsing happens before the store is touched; the
//! comparison happens against the snapshot a write is about to replace.

use http::header::{self, HeaderMap};

use crate::error::{ErrorKind, GraphError};
use crate::store::Snapshot;

/// `If-Match`, compared strongly (RFC 9110 §13.1.1).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Precondition {
    None,
    Any,
    OneOf(Vec<String>),
}

impl Precondition {
    pub(crate) fn parse(headers: &HeaderMap) -> Result<Self, GraphError> {
        let mut values = headers.get_all(header::IF_MATCH).iter().peekable();
        if values.peek().is_none() {
            return Ok(Self::None);
        }
        let malformed =
            || GraphError::new(ErrorKind::BadRequest, "The If-Match header is malformed.");
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
                if !weak {
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

/// Whether `Prefer` asks for `return=minimal` (RFC 7240).
pub(crate) fn prefers_minimal(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
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

/// The `ETag` of `snapshot` as text, for audit records.
pub(crate) fn etag_text(snapshot: &Snapshot) -> String {
    snapshot.etag().to_str().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

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
