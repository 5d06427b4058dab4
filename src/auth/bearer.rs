//! The bearer token of a request (RFC 6750 §2.1): one `Authorization` header, scheme
//! `Bearer` in any case, a token68; and text made safe for the quoted strings of a
//! `WWW-Authenticate` challenge (§3).

use http::header::{self, HeaderMap};

use super::AuthFailure;

/// The bearer token of `headers`, or why there is none.
pub(super) fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthFailure> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthFailure::Missing("Access token is empty."));
    };
    if values.next().is_some() {
        return Err(AuthFailure::Ambiguous);
    }
    // One pass over the bytes (a JWT is ~1 KB on every request): the token68 check admits
    // ASCII only, so `to_str`'s own pass is needed only to say why a header was refused.
    let bytes = value.as_bytes();
    let refuse = |failure: AuthFailure| {
        if bytes.is_ascii() {
            Err(failure)
        } else {
            Err(AuthFailure::Malformed(
                "the Authorization header is not ASCII",
            ))
        }
    };
    let (scheme, rest) = match bytes.iter().position(|&b| b == b' ') {
        Some(at) => (&bytes[..at], &bytes[at + 1..]),
        None => (bytes, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return refuse(AuthFailure::Missing(
            "the Authorization header does not carry a Bearer token",
        ));
    }
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let token = &rest[start..];
    if token.is_empty() {
        return refuse(AuthFailure::Malformed("Access token is empty."));
    }
    let Some(token) = is_token68(token)
        .then(|| std::str::from_utf8(token).ok())
        .flatten()
    else {
        return refuse(AuthFailure::Malformed(
            "the bearer token is not well formed",
        ));
    };
    Ok(token)
}

/// RFC 7235 `token68`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
/// A table lookup per byte: bearer tokens are ~1-2 KB and this runs on every request.
fn is_token68(token: &[u8]) -> bool {
    const fn table() -> [bool; 256] {
        let mut table = [false; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            table[b] =
                c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            b += 1;
        }
        table
    }
    static TOKEN68: [bool; 256] = table();
    // Padding `=` only at the end.
    let end = token
        .iter()
        .rposition(|&b| b != b'=')
        .map_or(0, |at| at + 1);
    let body = &token[..end];
    !body.is_empty() && body.iter().all(|&b| TOKEN68[usize::from(b)])
}

/// Text safe inside a quoted-string: printable ASCII without `"` or `\`.
pub(super) fn sanitize_quoted(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"' && *c != '\\')
        .collect()
}
