//! The two routes: `/me/security` and `/users/{usersId}/security`, relative to the mount point.
//!
//! Segments match ASCII case-insensitively, as Graph's do. The user id is percent-decoded; the
//! happy path borrows from the path and allocates nothing. A trailing slash, an empty or
//! undecodable id, or any other shape is no route (404).

use std::borrow::Cow;

/// Whose security object a request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// `/me/security`: the signed-in user.
    Me,
    /// `/users/{usersId}/security`, with the id percent-decoded.
    User(Cow<'a, str>),
}

/// The target of `path` (already stripped of the mount point), or `None` for no route.
pub(crate) fn parse_path(path: &str) -> Option<Target<'_>> {
    let rest = path.strip_prefix('/')?;
    let (first, rest) = rest.split_once('/')?;
    if first.eq_ignore_ascii_case("me") {
        return rest.eq_ignore_ascii_case("security").then_some(Target::Me);
    }
    if !first.eq_ignore_ascii_case("users") {
        return None;
    }
    let (id, last) = rest.split_once('/')?;
    if id.is_empty() || !last.eq_ignore_ascii_case("security") {
        return None;
    }
    percent_decode(id).map(Target::User)
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
fn percent_decode(segment: &str) -> Option<Cow<'_, str>> {
    if !segment.contains('%') {
        return Some(Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).ok()?;
    // No user id holds control characters; refusing them keeps them out of logs and audit.
    if decoded.chars().any(char::is_control) {
        return None;
    }
    Some(Cow::Owned(decoded))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `id` is a GUID in its 8-4-4-4-12 hex form (either case).
pub(crate) fn is_guid(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> Option<Target<'static>> {
        Some(Target::User(Cow::Owned(id.to_owned())))
    }

    #[test]
    fn routes_are_recognized() {
        assert_eq!(parse_path("/me/security"), Some(Target::Me));
        assert_eq!(parse_path("/ME/Security"), Some(Target::Me));
        assert_eq!(parse_path("/users/abc/security"), user("abc"));
        assert_eq!(parse_path("/Users/a%40b.com/SECURITY"), user("a@b.com"));
        assert_eq!(parse_path("/users/..%2Fme/security"), user("../me"));
    }

    #[test]
    fn percent_escapes_decode_in_either_case_and_every_digit() {
        // Lowercase and uppercase hex, letters and digits in both nibbles.
        assert_eq!(parse_path("/users/a%3a%3Ab/security"), user("a::b"));
        assert_eq!(parse_path("/users/%7e%7E%2d/security"), user("~~-"));
        assert_eq!(parse_path("/users/%4a%4A%6f%6F/security"), user("JJoo"));
        assert_eq!(
            parse_path("/users/%30%39%61%66%41%46/security"),
            user("09afAF")
        );
        // Not hex, or cut short: no route.
        for bad in [
            "/users/%g0/security",
            "/users/%0g/security",
            "/users/%4/security",
            "/users/%/security",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn other_shapes_are_no_route() {
        for path in [
            "",
            "/",
            "/me",
            "/me/",
            "/me/security/",
            "//me/security",
            "/me//security",
            "/users//security",
            "/users/a/b/security",
            "/users/a/security/x",
            "/users/%zz/security",
            "/users/%ff/security",
            "/users/%4/security",
            "me/security",
            "/security",
        ] {
            assert_eq!(parse_path(path), None, "{path:?}");
        }
    }

    #[test]
    fn guids_are_recognized_in_either_case() {
        assert!(is_guid("9ac7fb1c-d094-9ddd-a004-f7e8be5b32ca"));
        assert!(is_guid("9AC7FB1C-D094-9DDD-A004-F7E8BE5B32CA"));
        assert!(!is_guid("9ac7fb1c-d094-9ddd-a004-f7e8be5b32c"));
        assert!(!is_guid("9ac7fb1cxd094-9ddd-a004-f7e8be5b32ca"));
        // A Cyrillic 'а' looks like 'a' but is not a hex digit.
        assert!(!is_guid("9\u{430}c7fb1c-d094-9ddd-a004-f7e8be5b32c"));
    }
}
