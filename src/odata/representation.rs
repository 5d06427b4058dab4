//! The body of a 200: the stored object with its `@odata.context`, shaped by `$select` and
//! `$expand`.
//!
//! `@odata.context` is `{service root}/$metadata#users('{user id}')/security/$entity`, as Graph
//! writes it for this entity (the caller's own id for `/me`), with the selection in
//! parentheses when there is one: `.../security(id,informationProtection())/$entity`. The
//! service root is the one configured ([`StackBuilder::with_service_root`], the server's
//! `--public-url`), or else the request's scheme and `Host` and the mount prefix.
//!
//! [`StackBuilder::with_service_root`]: crate::StackBuilder::with_service_root

use bytes::{BufMut, Bytes, BytesMut};
use http::Request;
use serde_json::{Map, Value};

use super::query::{INFORMATION_PROTECTION, QueryOptions};
use crate::request_id::single_header;
use crate::store::Snapshot;

/// Namespace of the expanded `informationProtection` ids (stable per object).
const EXPANSION_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x1f0e_2d3c_4b5a_4968_8776_a5b4_c3d2_e1f0);

/// How a successful answer renders the object.
#[derive(Debug, Clone)]
pub(crate) struct Representation {
    /// `@odata.context`, complete.
    context: String,
    /// `context` holds nothing a JSON string escapes: it is written as it is.
    plain: bool,
    options: QueryOptions,
}

/// Whether `text` holds nothing a JSON string literal escapes (a quote, a backslash, a
/// control character) nor anything past ASCII (left to `serde_json`'s writer). Folded
/// without branching, which the compiler vectorizes: a short-circuiting check cost 12
/// instructions a byte here (callgrind).
fn is_plain(text: &str) -> bool {
    text.bytes().fold(true, |plain, b| {
        plain & (0x20..0x7f).contains(&b) & (b != b'"') & (b != b'\\')
    })
}

impl Representation {
    pub(crate) fn new<B>(
        request: &Request<B>,
        configured_root: Option<&str>,
        path_prefix: Option<&str>,
        user_id: &str,
        options: QueryOptions,
    ) -> Self {
        // Built in one buffer: this runs on every request. Only the parts that vary are
        // checked for what JSON escapes: the constant ones hold nothing of it, a host is
        // one `is_host` accepted, a scheme one `http` parsed.
        let mut context = String::with_capacity(128);
        let mut plain = is_plain(user_id);
        match configured_root {
            Some(root) => {
                plain &= is_plain(root);
                context.push_str(root);
            }
            None => {
                let scheme = request.uri().scheme_str().unwrap_or("http");
                // The target's own authority first: an absolute-form target's (RFC 9112
                // §3.2.2: the server ignores `Host` then) and HTTP/2's `:authority` (RFC 9113
                // §8.3.1). Then `Host`, if sent once: RFC 9112 §3.2 makes two a 400, and which
                // one a proxy before us read is unknown.
                let host = request
                    .uri()
                    .authority()
                    .map(http::uri::Authority::as_str)
                    .or_else(|| {
                        single_header(request.headers(), &http::header::HOST)
                            .and_then(|host| host.to_str().ok())
                    })
                    .filter(|host| is_host(host))
                    .unwrap_or("localhost");
                let prefix = path_prefix.unwrap_or("");
                plain &= is_plain(scheme) && is_plain(prefix);
                context.push_str(scheme);
                context.push_str("://");
                context.push_str(host);
                context.push_str(prefix);
            }
        }
        context.push_str("/$metadata#users('");
        // A quote in the key is doubled (OData ABNF, `SQUOTE-in-string`).
        if user_id.contains('\'') {
            context.push_str(&user_id.replace('\'', "''"));
        } else {
            context.push_str(user_id);
        }
        context.push_str("')/security");
        let selected = options.select.as_deref().unwrap_or_default();
        if !selected.is_empty() || options.expand_information_protection {
            context.push('(');
            let mut first = true;
            for name in selected {
                plain &= is_plain(name);
                if !first {
                    context.push(',');
                }
                context.push_str(name);
                first = false;
            }
            if options.expand_information_protection {
                if !first {
                    context.push(',');
                }
                context.push_str(INFORMATION_PROTECTION);
                context.push_str("()");
            }
            context.push(')');
        }
        context.push_str("/$entity");
        Self {
            context,
            plain,
            options,
        }
    }

    /// The JSON body for `snapshot`.
    pub(crate) fn render(&self, snapshot: &Snapshot) -> Bytes {
        if self.options == QueryOptions::default() {
            // The stored bytes, with the context spliced in front: no re-serialization. Plain
            // text (the usual case: a GUID, a validated host) needs no escaping; escaped, the
            // context is longer. The buffer is sized to the byte: a `Bytes` made of a buffer
            // with room to spare allocates a second block to share it (`From<Vec<u8>>`), one
            // of exactly its length does not.
            const OPENING: &[u8] = b"{\"@odata.context\":";
            let json = snapshot.json();
            let escaped = (!self.plain).then(|| Value::String(self.context.clone()).to_string());
            let context_len = escaped.as_ref().map_or(self.context.len() + 2, String::len);
            // The members after the context: `,` and the stored object without its `{`, or
            // the closing `}` alone.
            let rest_len = if json.len() > 2 { json.len() } else { 1 };
            let mut out = BytesMut::with_capacity(OPENING.len() + context_len + rest_len);
            out.put_slice(OPENING);
            if let Some(escaped) = &escaped {
                out.put_slice(escaped.as_bytes());
            } else {
                out.put_u8(b'"');
                out.put_slice(self.context.as_bytes());
                out.put_u8(b'"');
            }
            if json.len() > 2 {
                out.put_u8(b',');
                out.put_slice(&json[1..]);
            } else {
                out.put_u8(b'}');
            }
            debug_assert_eq!(
                out.len(),
                out.capacity(),
                "the answer's size, reckoned before"
            );
            return out.freeze();
        }
        self.render_shaped(snapshot)
    }

    /// The object as `$select` / `$expand` shape it: parsed and serialized again. Out of line:
    /// an answer without query options never runs it, and its code stays out of the lines
    /// that answer runs (the instruction cache; benches/README.md, twenty-second session).
    #[inline(never)]
    fn render_shaped(&self, snapshot: &Snapshot) -> Bytes {
        let document = snapshot.document();
        let mut shaped = Map::new();
        shaped.insert(
            "@odata.context".to_owned(),
            Value::String(self.context.clone()),
        );
        if let Some(kind) = document.get("@odata.type") {
            shaped.insert("@odata.type".to_owned(), kind.clone());
        }
        for (name, value) in document {
            let wanted = match &self.options.select {
                None => name != "@odata.type",
                Some(select) => select.iter().any(|s| s == name),
            };
            if wanted {
                shaped.insert(name.clone(), value.clone());
            }
        }
        if self.options.expand_information_protection {
            let owner = document
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let id = uuid::Uuid::new_v5(&EXPANSION_NAMESPACE, owner.as_bytes());
            shaped.insert(
                INFORMATION_PROTECTION.to_owned(),
                serde_json::json!({
                    "@odata.type": "#microsoft.graph.security.informationProtection",
                    "id": id.to_string(),
                }),
            );
        }
        crate::body::answer_bytes(Value::Object(shaped).to_string())
    }
}

/// A `Host` value we are willing to echo: host name or address characters and a port.
fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(user_id: &str) -> String {
        let request = Request::patch("/me/security")
            .header("host", "example.com")
            .body(())
            .unwrap();
        Representation::new(&request, None, None, user_id, QueryOptions::default()).context
    }

    /// The context is written as a JSON string, escaped where a part of it needs it (a user
    /// id from a path, a configured root) and copied where nothing does.
    #[test]
    fn the_context_is_a_json_string_whatever_its_parts_hold() {
        let snapshot = crate::store::Snapshot::new(1, Map::new()).unwrap();
        let request = |host: &str| {
            Request::patch("/me/security")
                .header("host", host)
                .body(())
                .unwrap()
        };
        for (root, prefix, host, user_id) in [
            (None, None, "example.com", "0a1b"),
            (None, Some("/be\\ta"), "example.com", "0a1b"),
            (None, None, "bad\"host", "0a1b"),
            (None, None, "example.com", "quote\"back\\slash\u{1}é"),
            // Escaped six bytes each: longer than the room the buffer once kept.
            (
                None,
                None,
                "example.com",
                "\u{1}\u{2}\u{3}\u{4}\u{5}\u{6}\u{7}\u{8}",
            ),
            (
                Some("https://graph.example/v\"1"),
                None,
                "example.com",
                "0a1b",
            ),
            (Some("https://graph.example/beta"), None, "example.com", "é"),
        ] {
            let representation = Representation::new(
                &request(host),
                root,
                prefix,
                user_id,
                QueryOptions::default(),
            );
            let rendered = representation.render(&snapshot);
            let body: Value = serde_json::from_slice(&rendered).unwrap();
            assert_eq!(
                body["@odata.context"], *representation.context,
                "{root:?} {prefix:?} {host:?} {user_id:?}"
            );
            // Sized for what it holds: an answer held for a slow reader keeps its whole
            // buffer (an escaped context once overflowed it, and the buffer doubled).
            let length = rendered.len();
            let capacity = rendered.try_into_mut().expect("the only owner").capacity();
            assert!(
                capacity <= length + 24,
                "{capacity} for {length}: {user_id:?}"
            );
            assert!(representation.context.contains(user_id));
        }
    }

    /// A `$select`ed answer is written anew; its buffer keeps at most 4 KiB of spare room
    /// (a `String` grown by doubling kept up to its length again).
    #[test]
    fn a_selected_answer_keeps_little_spare_room() {
        let mut document = Map::new();
        document.insert("big".to_owned(), Value::String("x".repeat(300_000)));
        let snapshot = crate::store::Snapshot::new(1, document).unwrap();
        let request = Request::patch("/me/security")
            .header("host", "example.com")
            .body(())
            .unwrap();
        let options = QueryOptions {
            select: Some(vec!["big".to_owned()]),
            expand_information_protection: false,
        };
        let representation = Representation::new(&request, None, None, "0a1b", options);
        let rendered = representation.render(&snapshot);
        let length = rendered.len();
        assert!(length > 300_000);
        let capacity = rendered.try_into_mut().expect("the only owner").capacity();
        assert!(capacity <= length + 4096, "{capacity} for {length}");
    }

    /// The host of the context: the target's authority before `Host` (an absolute-form
    /// target, HTTP/2's `:authority`), one `Host` otherwise, `localhost` when there are two.
    #[test]
    fn the_context_host_is_the_targets_then_a_single_host_header() {
        let host_of = |request: Request<()>| {
            Representation::new(&request, None, None, "u", QueryOptions::default()).context
        };
        let absolute = Request::patch("http://graph.example:8080/me/security")
            .header("host", "evil.example")
            .body(())
            .unwrap();
        assert!(host_of(absolute).starts_with("http://graph.example:8080/$metadata"));
        let two = Request::patch("/me/security")
            .header("host", "a.example")
            .header("host", "b.example")
            .body(())
            .unwrap();
        assert!(host_of(two).starts_with("http://localhost/$metadata"));
        let one = Request::patch("/me/security")
            .header("host", "a.example")
            .body(())
            .unwrap();
        assert!(host_of(one).starts_with("http://a.example/$metadata"));
    }

    /// A quote in the key is doubled, as OData writes a quote inside a string literal.
    #[test]
    fn the_context_quotes_the_user_id_as_odata_does() {
        assert_eq!(
            context("0a1b"),
            "http://example.com/$metadata#users('0a1b')/security/$entity"
        );
        assert_eq!(
            context("o'brien@contoso.com"),
            "http://example.com/$metadata#users('o''brien@contoso.com')/security/$entity"
        );
    }
}
