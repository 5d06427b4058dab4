//! The stack served by hyper over a real loopback socket, HTTP/1.1 and HTTP/2.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use security_update::{MemoryStore, StackBuilder};

async fn serve(limit: usize) -> (SocketAddr, MemoryStore) {
    let store = MemoryStore::new();
    let app = StackBuilder::new(store.clone())
        .with_schema(security_update::ResourceSchema::open_type())
        .with_path_prefix("/beta")
        .with_body_limit(limit)
        .build(tokens());
    (serve_on_loopback(app).await, store)
}

fn seed_request(body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::patch("/beta/me/security")
        .header("host", "graph.microsoft.com")
        .header("content-type", "application/json")
        .header("authorization", "Bearer alice")
        .body(Full::new(body.into()))
        .unwrap()
}

#[tokio::test]
async fn seed_example_over_http1() {
    let (addr, store) = serve(1024).await;
    let reply = send_http1(
        addr,
        seed_request(r##"{"@odata.type": "#microsoft.graph.security.security", "n": 1}"##),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()["@odata.type"],
        "#microsoft.graph.security.security"
    );
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn chunked_bodies_are_read_and_bounded() {
    let (addr, store) = serve(64).await;
    let chunks = [
        "{\"@odata.",
        "type\": \"#microsoft.graph",
        ".security.security\", \"n\": 1}",
    ];
    let request = Request::patch("/beta/me/security")
        .header("content-type", "application/json")
        .header("authorization", "Bearer alice")
        .body(Chunked(
            chunks
                .iter()
                .map(|c| Bytes::from_static(c.as_bytes()))
                .collect(),
        ))
        .unwrap();
    assert_eq!(send_http1(addr, request).await.status, 200);

    let big: std::collections::VecDeque<Bytes> = (0..100)
        .map(|_| Bytes::from_static(b"xxxxxxxxxxxxxxxx"))
        .collect();
    let request = Request::patch("/beta/me/security")
        .header("content-type", "application/json")
        .header("authorization", "Bearer alice")
        .body(Chunked(big))
        .unwrap();
    let reply = send_http1(addr, request).await;
    assert_eq!(reply.status, 413);
    assert_eq!(
        reply.header("connection"),
        "close",
        "the rest of the body is unread"
    );
    assert!(reply.error_message().contains("limit of 64 bytes"));
    assert_eq!(store.entries()[0].1.version(), 1, "the 413 changed nothing");
}

/// `Content-Length` past the limit is refused from the headers alone: no body is ever sent,
/// and the 413 still comes back.
#[tokio::test]
async fn declared_oversize_is_413_before_reading() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (addr, store) = serve(64).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"PATCH /beta/me/security HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\n\
              Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n",
        )
        .await
        .unwrap();
    // The whole answer, then the end of the connection: the unread body must not be taken
    // for a next request, and the answer says so (Connection: close).
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("an answer without sending the body, then the close")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 413"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(store.is_empty());
}

#[tokio::test]
async fn seed_example_over_http2() {
    let (addr, _) = serve(1024).await;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = seed_request(r##"{"@odata.type": "#microsoft.graph.security.security"}"##);
    *request.uri_mut() = format!("http://{addr}/beta/me/security").parse().unwrap();
    request.headers_mut().remove("host");
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["@odata.type"], "#microsoft.graph.security.security");
}
