//! The bearer token of a request (RFC 6750 §2.1): one `Authorization` header, scheme
//! `Bearer` in any case, a token68; and text made safe for the quoted strings of a
//! `WWW-Authenticate` challenge (§3).

use http::header::{self, HeaderMap};

use super::AuthFailure;

/// The bearer token of `headers`, or why there is none: [`bearer_bytes`], then
/// [`token_text`] (the layer asks the validator's cache in between).
#[cfg(test)]
pub(super) fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthFailure> {
    token_text(bearer_bytes(headers)?)
}

/// The bytes of `headers`' bearer token, its form not checked yet ([`token_text`] checks
/// it), or why there is none.
pub(super) fn bearer_bytes(headers: &HeaderMap) -> Result<&[u8], AuthFailure> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthFailure::Missing("Access token is empty."));
    };
    if values.next().is_some() {
        return Err(AuthFailure::Ambiguous);
    }
    let bytes = value.as_bytes();
    let (scheme, rest) = match bytes.iter().position(|&b| b == b' ') {
        Some(at) => (&bytes[..at], &bytes[at + 1..]),
        None => (bytes, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return refuse(
            bytes,
            AuthFailure::Missing("the Authorization header does not carry a Bearer token"),
        );
    }
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let token = &rest[start..];
    if token.is_empty() {
        return refuse(bytes, AuthFailure::Malformed("Access token is empty."));
    }
    Ok(token)
}

/// The token as text when it is a `token68`, or why it is not. One pass over the bytes (a
/// JWT is ~1 KB on every request): the `token68` check admits ASCII only, so the bytes are
/// checked for ASCII only to say why a token was refused.
pub(super) fn token_text(token: &[u8]) -> Result<&str, AuthFailure> {
    is_token68(token)
        .then(|| std::str::from_utf8(token).ok())
        .flatten()
        .map_or_else(
            || {
                refuse(
                    token,
                    AuthFailure::Malformed("the bearer token is not well formed"),
                )
            },
            Ok,
        )
}

/// `failure`, or that the header is not ASCII when it is not (`bytes`: what was read).
fn refuse<T>(bytes: &[u8], failure: AuthFailure) -> Result<T, AuthFailure> {
    if bytes.is_ascii() {
        Err(failure)
    } else {
        Err(AuthFailure::Malformed(
            "the Authorization header is not ASCII",
        ))
    }
}

/// RFC 7235 `token68`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
/// Bearer tokens are ~1-2 KB and this runs on every request: the check is branch-free per
/// byte and folded over chunks, which the compiler turns into vector instructions (a table
/// lookup per byte cost ~3 instructions a byte).
pub(super) fn is_token68(token: &[u8]) -> bool {
    fn allowed(b: u8) -> bool {
        let letter = (b | 0x20).wrapping_sub(b'a') < 26;
        let digit = b.wrapping_sub(b'0') < 10;
        letter
            | digit
            | (b == b'-')
            | (b == b'.')
            | (b == b'_')
            | (b == b'~')
            | (b == b'+')
            | (b == b'/')
    }
    // Padding `=` only at the end.
    let end = token
        .iter()
        .rposition(|&b| b != b'=')
        .map_or(0, |at| at + 1);
    let body = &token[..end];
    !body.is_empty()
        && body
            .chunks(64)
            .all(|chunk| chunk.iter().fold(true, |ok, &b| ok & allowed(b)))
}

/// Text safe inside a quoted-string: printable ASCII without `"` or `\`.
pub(super) fn sanitize_quoted(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"' && *c != '\\')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::is_token68;

    /// Every byte, alone and inside a long token (past one chunk), is judged as RFC 7235's
    /// grammar says; `=` only as trailing padding.
    #[test]
    fn token68_is_rfc_7235s_grammar() {
        for byte in 0..=255u8 {
            let allowed = byte.is_ascii_alphanumeric() || b"-._~+/".contains(&byte);
            assert_eq!(is_token68(&[byte]), allowed, "{byte:#x}");
            let mut long = vec![b'a'; 150];
            long[100] = byte;
            assert_eq!(is_token68(&long), allowed, "{byte:#x} inside");
        }
        assert!(is_token68(b"abc=="));
        assert!(!is_token68(b"=="));
        assert!(!is_token68(b"a=b"));
        assert!(!is_token68(b""));
    }
}
