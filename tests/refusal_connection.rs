//! A request refused before its body is read, over a real HTTP/1 connection served by hyper:
//! when the request declares a body, the answer says `Connection: close` and the connection
//! ends; when it declares none, the connection serves the next request. Nothing refused is
//! written. (`src/refusal.rs` says why.)

mod common;

use std::time::Duration;

use common::*;
use security_update::{MemoryStore, RateLimitLayer, ResourceSchema, StackBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATIENCE: Duration = Duration::from_secs(30);

/// The stack with a request timeout of `timeout`; with `rate_limited`, a caller's second
/// request in a minute is over the rate.
async fn serve(store: &MemoryStore, rate_limited: bool, timeout: Duration) -> std::net::SocketAddr {
    let rate_limit = if rate_limited {
        RateLimitLayer::new(1, Duration::from_secs(60)).with_burst(1)
    } else {
        RateLimitLayer::unlimited()
    };
    let app = StackBuilder::new(store.clone())
        .with_schema(ResourceSchema::open_type())
        .with_path_prefix("/beta")
        .with_rate_limit(rate_limit)
        .with_timeout(timeout)
        .build(tokens());
    serve_on_loopback(app).await
}

/// One answer read off `stream`: its head (lower case) and its body, by its length.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("an answer")
            .unwrap();
        assert_eq!(
            read, 1,
            "the connection ended inside an answer's head: {seen:?}"
        );
        seen.push(byte[0]);
    }
    let head = String::from_utf8(seen).unwrap().to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .expect("a length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut body))
        .await
        .expect("the answer's body")
        .unwrap();
    head + &String::from_utf8(body).unwrap()
}

/// Sends `head` and `part` of a body (in one write, so the server has read all of it when it
/// closes), reads the answer, then expects the connection to end.
async fn refused_and_closed(addr: std::net::SocketAddr, head: &str, part: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&[head.as_bytes(), part].concat())
        .await
        .unwrap();
    let answer = read_answer(&mut stream).await;
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("the connection ends after the answer");
    // The end of the connection, or its reset (this test server does not linger on close).
    if let Err(error) = ended {
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
    }
    assert!(rest.is_empty(), "nothing after the answer: {rest:?}");
    answer
}

fn patch_head(headers: &str, length: &str) -> String {
    format!(
        "PATCH /beta/me/security HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         {headers}content-length: {length}\r\n\r\n"
    )
}

#[tokio::test]
async fn a_refusal_that_leaves_a_body_unread_closes_the_connection_and_says_so() {
    let store = MemoryStore::new();
    let addr = serve(&store, false, PATIENCE).await;
    let alice = "authorization: Bearer alice\r\n";
    // Each: the head, a part of the body (or all of it), and the status it is refused with.
    let cases: Vec<(&str, String, &[u8], &str)> = vec![
        ("no token", patch_head("", "1000000"), b"", "401"),
        (
            "no token, whole body sent",
            patch_head("", "2"),
            b"{}",
            "401",
        ),
        (
            "no scope to write",
            patch_head("authorization: Bearer reader\r\n", "100"),
            b"{\"a\":",
            "403",
        ),
        (
            "no such resource",
            "PATCH /beta/me/securityx HTTP/1.1\r\nhost: x\r\nauthorization: Bearer alice\r\n\
             content-type: application/json\r\ncontent-length: 100\r\n\r\n"
                .to_owned(),
            b"{",
            "404",
        ),
        (
            "another method",
            "DELETE /beta/me/security HTTP/1.1\r\nhost: x\r\nauthorization: Bearer alice\r\n\
             transfer-encoding: chunked\r\n\r\n"
                .to_owned(),
            b"5\r\nhello\r\n",
            "405",
        ),
        (
            "not JSON",
            format!(
                "PATCH /beta/me/security HTTP/1.1\r\nhost: x\r\n{alice}\
                 content-type: text/plain\r\ncontent-length: 1000000\r\n\r\n"
            ),
            b"",
            "415",
        ),
        (
            "a transfer coding not implemented",
            format!(
                "PATCH /beta/me/security HTTP/1.1\r\nhost: x\r\n{alice}\
                 content-type: application/json\r\ntransfer-encoding: gzip, chunked\r\n\r\n"
            ),
            b"",
            "501",
        ),
        (
            "a batch that is not JSON",
            format!(
                "POST /beta/$batch HTTP/1.1\r\nhost: x\r\n{alice}\
                 content-type: text/plain\r\ncontent-length: 1000\r\n\r\n"
            ),
            b"{",
            "415",
        ),
        (
            "a read the service refuses (an unknown system query option)",
            format!(
                "GET /beta/me/security?$nope=1 HTTP/1.1\r\nhost: x\r\n{alice}\
                 content-type: application/json\r\ncontent-length: 100\r\n\r\n"
            ),
            b"{",
            "400",
        ),
        (
            "a batch asked with another method",
            format!("GET /beta/$batch HTTP/1.1\r\nhost: x\r\n{alice}content-length: 10\r\n\r\n"),
            b"{",
            "405",
        ),
        (
            "HTTP/1.0 asking to keep the connection, no token",
            "PATCH /beta/me/security HTTP/1.0\r\nhost: x\r\nconnection: keep-alive\r\n\
             content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
                .to_owned(),
            b"{",
            "401",
        ),
        (
            "HTTP/1.0, no token",
            "PATCH /beta/me/security HTTP/1.0\r\nhost: x\r\ncontent-type: application/json\r\n\
             content-length: 1000\r\n\r\n"
                .to_owned(),
            b"{",
            "401",
        ),
    ];
    for (case, head, part, status) in cases {
        let answer = refused_and_closed(addr, &head, part).await;
        // HTTP/1.1 or, to the HTTP/1.0 request, HTTP/1.0.
        assert!(
            answer.starts_with("http/1.") && answer[8..].starts_with(&format!(" {status} ")),
            "{case}: {answer}"
        );
        assert!(
            answer.contains("\r\nconnection: close\r\n"),
            "{case}: {answer}"
        );
        assert!(!answer.contains("keep-alive"), "{case}: {answer}");
        assert!(
            answer.contains("\"innerError\""),
            "{case}: a Graph error: {answer}"
        );
    }
    assert!(store.is_empty(), "nothing refused was written");

    // Not a refusal, but answered without reading the body all the same: a GET with one (in
    // JSON, or the content-type check refuses it with 415).
    let answer = refused_and_closed(
        addr,
        &format!(
            "GET /beta/me/security HTTP/1.1\r\nhost: x\r\n{alice}\
             content-type: application/json\r\ncontent-length: 100\r\n\r\n"
        ),
        b"{",
    )
    .await;
    assert!(answer.starts_with("http/1.1 200 "), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(store.is_empty(), "a GET writes nothing");

    // The body stalls: the timeout's 408 closes the connection.
    let stalled = serve(&store, false, Duration::from_millis(300)).await;
    let answer = refused_and_closed(stalled, &patch_head(alice, "100"), b"{\"a\":").await;
    assert!(answer.starts_with("http/1.1 408 "), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(store.is_empty(), "the stalled PATCH wrote nothing");

    // Over the rate: the first PATCH is written, the second refused with its body unread.
    let addr = serve(&store, true, PATIENCE).await;
    let first = "{\"n\":1}";
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{}{first}", patch_head(alice, &first.len().to_string())).as_bytes())
        .await
        .unwrap();
    assert!(read_answer(&mut stream).await.starts_with("http/1.1 200 "));
    let answer = refused_and_closed(addr, &patch_head(alice, "100"), b"{").await;
    assert!(answer.starts_with("http/1.1 429 "), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    // A batch takes a token of its own before its body is read: over the rate as well.
    let answer = refused_and_closed(
        addr,
        &format!(
            "POST /beta/$batch HTTP/1.1\r\nhost: x\r\n{alice}\
             content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
        ),
        b"{",
    )
    .await;
    assert!(answer.starts_with("http/1.1 429 "), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    // Over the rate with no body declared: refused, the connection kept.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let empty = format!(
        "POST /beta/$batch HTTP/1.1\r\nhost: x\r\n{alice}\
         content-type: application/json\r\ncontent-length: 0\r\n\r\n"
    );
    for _ in 0..2 {
        stream.write_all(empty.as_bytes()).await.unwrap();
        let answer = read_answer(&mut stream).await;
        assert!(answer.starts_with("http/1.1 429 "), "{answer}");
        assert!(!answer.contains("\r\nconnection:"), "{answer}");
    }
    let entries = store.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].1.version(),
        1,
        "the refused PATCH changed nothing"
    );
}

#[tokio::test]
async fn a_refusal_of_a_request_without_a_body_keeps_the_connection() {
    let store = MemoryStore::new();
    let addr = serve(&store, false, PATIENCE).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let refusals = [
        ("GET /beta/me/security HTTP/1.1\r\nhost: x\r\n\r\n", "401"),
        (
            "PATCH /beta/me/security HTTP/1.1\r\nhost: x\r\nauthorization: Bearer alice\r\n\
             content-type: text/plain\r\ncontent-length: 0\r\n\r\n",
            "415",
        ),
        (
            "DELETE /beta/me/security HTTP/1.1\r\nhost: x\r\nauthorization: Bearer alice\r\n\r\n",
            "405",
        ),
        (
            "GET /beta/$batch HTTP/1.1\r\nhost: x\r\nauthorization: Bearer alice\r\n\r\n",
            "405",
        ),
        // Not a refusal: a read, answered by the service.
        (
            "GET /beta/me/security HTTP/1.1\r\nhost: x\r\nauthorization: Bearer alice\r\n\r\n",
            "200",
        ),
    ];
    for (request, status) in refusals {
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_answer(&mut stream).await;
        assert!(
            answer.starts_with(&format!("http/1.1 {status} ")),
            "{answer}"
        );
        assert!(!answer.contains("\r\nconnection:"), "{answer}");
    }
    // The same connection still serves a write.
    let body = "{\"n\":1}";
    stream
        .write_all(
            format!(
                "{}{body}",
                patch_head("authorization: Bearer alice\r\n", &body.len().to_string())
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let answer = read_answer(&mut stream).await;
    assert!(answer.starts_with("http/1.1 200 "), "{answer}");
    assert_eq!(store.entries()[0].1.version(), 1);
}
