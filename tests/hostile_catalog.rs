//! The bad-input catalog: hostile requests through the whole stack, each with the status it
//! must get, and after each one every stored object byte-for-byte as before.

mod common;

use bytes::Bytes;
use common::*;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request};
use http_body_util::Full;

const ALICE_PATH: &str = "/me/security";

/// One hostile request.
struct Case {
    name: &'static str,
    method: Method,
    path: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    status: u16,
}

fn case(name: &'static str, status: u16) -> Case {
    Case {
        name,
        method: Method::PATCH,
        path: ALICE_PATH.to_owned(),
        headers: vec![
            ("authorization", b"Bearer alice".to_vec()),
            ("content-type", b"application/json".to_vec()),
        ],
        body: b"{}".to_vec(),
        status,
    }
}

impl Case {
    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }
    fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }
    /// Replaces every header of that name.
    fn set(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.into()));
        self
    }
    /// Adds one more header of that name.
    fn add(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn drop_header(mut self, name: &'static str) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self
    }
    fn token(self, token: &str) -> Self {
        self.set("authorization", format!("Bearer {token}"))
    }
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

fn catalog() -> Vec<Case> {
    let many_keys = {
        let members: Vec<String> = (0..50_000).map(|i| format!("\"k{i}\":{i}")).collect();
        format!("{{{}}}", members.join(","))
    };
    let long_string = format!("{{\"id\":\"{}\"}}", "x".repeat(900_000));
    let cyrillic_lookalike = format!("/users/{}/security", ALICE.replacen('a', "%D0%B0", 1));
    vec![
        // Credentials.
        case("no Authorization", 401).drop_header("authorization"),
        case("two Authorization headers", 400).add("authorization", "Bearer alice"),
        case("Bearer and Basic together", 400).add("authorization", "Basic YWxpY2U6eA=="),
        case("token with a space", 401).set("authorization", "Bearer alice extra"),
        case("token with a tab", 401).set("authorization", "Bearer al\tice"),
        case("non-ASCII token", 401).set("authorization", b"Bearer al\xffice".to_vec()),
        case("another scheme", 401).set("authorization", "Token alice"),
        case("empty bearer", 401).set("authorization", "Bearer "),
        case("10 KB token", 401).set("authorization", format!("Bearer {}", "a".repeat(10_000))),
        case("token differing in case", 401).set("authorization", "Bearer ALICE"),
        case("read-only caller writes", 403).token("reader"),
        case("caller without permission", 403).token("noscope"),
        case("app token on /me", 400).token("app"),
        case("another user's object", 403).path(format!("/users/{BOB}/security")),
        // Content types.
        case("two Content-Type headers", 400).add("content-type", "application/json"),
        case("conflicting Content-Types", 400).add("content-type", "text/plain"),
        case("no Content-Type", 415).drop_header("content-type"),
        case("charset utf-16", 415).set("content-type", "application/json; charset=utf-16"),
        case("charset latin1 after junk", 415)
            .set("content-type", "application/json;;charset=latin1"),
        case("form encoding", 415).set("content-type", "application/x-www-form-urlencoded"),
        case("text/json", 415).set("content-type", "text/json"),
        case("non-ASCII Content-Type", 415).set("content-type", b"application/json\xff".to_vec()),
        case("gzip Content-Encoding", 415).set("content-encoding", "gzip"),
        case("identity, then br", 415).set("content-encoding", "identity, br"),
        case("GET announcing a text body", 415)
            .method(Method::GET)
            .set("content-type", "text/plain")
            .set("content-length", "2"),
        // Preconditions.
        case("malformed If-Match", 400).set("if-match", "no-quotes"),
        case("stale If-Match", 412).set("if-match", "\"999\""),
        case("weak If-Match", 412).set("if-match", "W/\"1\""),
        // Paths and methods.
        case("dot-dot escape to me", 403).path("/users/..%2Fme/security"),
        case("dot-dot escape as admin", 404)
            .path("/users/..%2Fme/security")
            .token("admin"),
        case("double slash", 404).path("//me/security"),
        case("trailing slash", 404).path("/me/security/"),
        case("NUL escape in segment", 404).path("/me/security%00"),
        case("mixed-case segments are the route: bad body", 400)
            .path("/ME/Security")
            .body("[]"),
        case("non-UTF-8 escape in id", 404)
            .path("/users/%ff%fe/security")
            .token("admin"),
        case("broken escape in id", 404)
            .path("/users/%zz/security")
            .token("admin"),
        case("unicode look-alike of a GUID", 404)
            .path(cyrillic_lookalike)
            .token("admin"),
        case("newline in a user id (log forging)", 404)
            .path("/users/x%0A%7B%22outcome%22/security"),
        case("carriage return in a user id", 404)
            .path("/users/%0D/security")
            .token("admin"),
        case("GUID with a trailing space", 404)
            .path(format!("/users/{ALICE}%20/security"))
            .token("admin"),
        case("dot segment", 404).path("/me/./security"),
        case("parent segment", 404).path("/me/security/.."),
        case("10 KB path", 404).path(format!("/{}", "a".repeat(10_000))),
        case("prefix not mounted", 404).path("/beta/me/security"),
        case("empty user id", 404).path("/users//security"),
        case("query string does not rescue a bad body", 400)
            .path("/me/security?$select=id")
            .body("[]"),
        case("DELETE", 405).method(Method::DELETE),
        case("PUT", 405).method(Method::PUT),
        case("POST", 405).method(Method::POST),
        case("TRACE", 405).method(Method::TRACE),
        // Bodies.
        case("empty body", 400).body(""),
        case("whitespace body", 400).body(" \n\t "),
        case("null", 400).body("null"),
        case("array", 400).body("[]"),
        case("string", 400).body("\"x\""),
        case("number", 400).body("123"),
        case("truncated", 400).body("{"),
        case("duplicate keys", 400).body(r#"{"id":"a","id":"b"}"#),
        case("trailing garbage", 400).body("{} x"),
        case("two documents", 400).body("{}{}"),
        case("byte order mark", 400).body(b"\xef\xbb\xbf{}".to_vec()),
        case("UTF-16 body", 400).body(b"\xff\xfe{\x00}\x00".to_vec()),
        case("invalid UTF-8 in a string", 400).body(b"{\"id\":\"\xc3\x28\"}".to_vec()),
        case("lone surrogate escape", 400).body(r#"{"id":"\ud800"}"#),
        case("number beyond f64", 400).body(r#"{"x":1e400}"#),
        case("negative number beyond f64", 400).body(r#"{"x":-1e400}"#),
        case("NaN literal", 400).body(r#"{"x":NaN}"#),
        case("comment", 400).body("{/* hi */}"),
        case("single quotes", 400).body("{'id':'x'}"),
        case("nesting past the bound", 400).body(nested(65)),
        case("very deep nesting", 400).body(nested(5_000)),
        case("very many keys", 400).body(many_keys),
        case("very long string", 400).body(long_string),
        case("over the body limit", 413).body(vec![b' '; 1024 * 1024 + 1]),
        case("Content-Length over the limit", 413).set("content-length", "10485760"),
        case("Content-Length with Transfer-Encoding", 400)
            .set("content-length", "2")
            .set("transfer-encoding", "chunked"),
        case("NUL in a member name", 400).body(r#"{"id\u0000":1}"#),
        // The object's own rules.
        case("@odata.type of another type", 400)
            .body(r##"{"@odata.type":"#microsoft.graph.user"}"##),
        case("@odata.type with a trailing space", 400)
            .body(r##"{"@odata.type":"#microsoft.graph.security.security "}"##),
        case("@odata.type in another case", 400)
            .body(r##"{"@odata.type":"#MICROSOFT.GRAPH.SECURITY.SECURITY"}"##),
        case("@odata.type as an array", 400)
            .body(r##"{"@odata.type":["#microsoft.graph.security.security"]}"##),
        case("@odata.type removed", 400).body(r#"{"@odata.type":null}"#),
        case("malformed annotation name", 400).body(r#"{"@note":"x"}"#),
        case("id changed", 400).body(r#"{"id":"00000000-0000-4000-8000-000000000000"}"#),
        case("id removed", 400).body(r#"{"id":null}"#),
        case("id as an object", 400).body(r#"{"id":{"nested":1}}"#),
        case("id change hidden in a navigation property", 400)
            .body(r#"{"informationProtection":{"id":"x"}}"#),
        case("key differing only in case", 400).body(r#"{"Id":"x"}"#),
        case("undeclared property", 400).body(r#"{"displayName":"x"}"#),
        case("undeclared property set to null", 400).body(r#"{"displayName":null}"#),
    ]
}

#[tokio::test]
async fn every_hostile_request_gets_its_status_and_changes_nothing() {
    let cases = catalog();
    assert!(cases.len() >= 60, "the catalog has {} cases", cases.len());
    let (app, store) = app();
    // Objects to protect: Alice's and Bob's, stored at version 1 as Graph's type has them
    // (under that type no PATCH changes anything, so they are put in the store directly).
    for (token, user) in [("alice", ALICE), ("bob", BOB)] {
        use security_update::SecurityStore;
        let current = get(&app, "/me/security", token).await.object();
        let document = current.as_object().unwrap().clone();
        let snapshot = security_update::Snapshot::new(1, document).unwrap();
        let key = security_update::ObjectKey::new(TENANT, user);
        store.compare_and_swap(&key, 0, snapshot).await.unwrap();
    }
    let before: Vec<_> = store
        .entries()
        .into_iter()
        .map(|(key, snapshot)| (key, snapshot.version(), snapshot.json().clone()))
        .collect();
    assert_eq!(before.len(), 2);

    for case in cases {
        let mut request = Request::builder()
            .method(case.method.clone())
            .uri(case.path.as_str());
        for (name, value) in &case.headers {
            request = request.header(
                HeaderName::from_static(name),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        let request = request.body(Full::new(Bytes::from(case.body))).unwrap();
        let reply = send(app.clone(), request).await;
        assert_eq!(
            reply.status.as_u16(),
            case.status,
            "{}: {}",
            case.name,
            String::from_utf8_lossy(&reply.body)
        );
        // A precise Graph error, with its ids, for every refusal.
        let message = reply.error_message();
        assert!(!message.is_empty(), "{}", case.name);
        let after: Vec<_> = store
            .entries()
            .into_iter()
            .map(|(key, snapshot)| (key, snapshot.version(), snapshot.json().clone()))
            .collect();
        assert_eq!(after, before, "{} changed the store", case.name);
    }
}

/// Framing attacks need a real socket: hyper parses them before our stack sees anything.
mod over_the_wire {
    use super::*;
    use security_update::{MemoryStore, SecurityUpdateService, stack};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn serve() -> (std::net::SocketAddr, MemoryStore) {
        let store = MemoryStore::new();
        let app = stack(SecurityUpdateService::new(store.clone()), tokens());
        (serve_on_loopback(app).await, store)
    }

    /// Sends raw bytes, half-closes, and returns whatever the server answered before closing.
    async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = stream.write_all(bytes).await;
        let _ = stream.shutdown().await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            stream.read_to_end(&mut answer),
        )
        .await;
        assert!(read.is_ok(), "the server neither answered nor closed");
        String::from_utf8_lossy(&answer).into_owned()
    }

    fn head(extra: &str) -> String {
        format!(
            "PATCH /me/security HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\n\
             Content-Type: application/json\r\n{extra}"
        )
    }

    #[tokio::test]
    async fn framing_attacks_get_errors_and_change_nothing() {
        let (addr, store) = serve().await;
        let big_header = format!("X-Junk: {}\r\n", "a".repeat(1024 * 1024));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "oversized header",
                format!("{}{big_header}Content-Length: 2\r\n\r\n{{}}", head("")).into_bytes(),
            ),
            (
                "Content-Length shorter than the body",
                format!("{}Content-Length: 5\r\n\r\n{{\"id\":\"x\"}}", head("")).into_bytes(),
            ),
            (
                "Content-Length longer than the body",
                format!("{}Content-Length: 100\r\n\r\n{{}}", head("")).into_bytes(),
            ),
            (
                "chunk longer than its data",
                format!(
                    "{}Transfer-Encoding: chunked\r\n\r\n40\r\n{{}}\r\n",
                    head("")
                )
                .into_bytes(),
            ),
            (
                "chunk size not hex",
                format!(
                    "{}Transfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n",
                    head("")
                )
                .into_bytes(),
            ),
            (
                "two different Content-Lengths",
                format!(
                    "{}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}",
                    head("")
                )
                .into_bytes(),
            ),
        ];
        for (name, bytes) in cases {
            let answer = raw(addr, &bytes).await;
            assert!(
                !answer.starts_with("HTTP/1.1 200") && !answer.starts_with("HTTP/1.1 204"),
                "{name}: {answer:.200}"
            );
            assert!(store.is_empty(), "{name} stored something");
        }
        // Both framings: RFC 9112 §6.3 lets a server go by Transfer-Encoding alone if it then
        // closes the connection, which hyper does (it also drops the Content-Length before our
        // layers could see it). Check the close: nothing can be smuggled after this request.
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let smuggle = format!(
            "{}Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n{}Content-Length: 2\r\n\r\n{{}}",
            head(""),
            head("")
        );
        stream.write_all(smuggle.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            stream.read_to_end(&mut answer),
        )
        .await
        .expect("the server closed the connection after the ambiguous request")
        .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "a second, smuggled request was answered: {answer}"
        );

        // The server is still fine afterwards.
        let answer = raw(
            addr,
            format!(
                "{}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}",
                head("")
            )
            .as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.200}");
    }
}
