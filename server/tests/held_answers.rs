//! The budget for answers clients have not taken, against the real binary over real sockets.
//! A client holds answers by not reading them: over HTTP/2 with a flow-control window of 0
//! (the server may send no byte of any body), over HTTP/1 with a small receive buffer it does
//! not read. Past the budget its requests are refused with 503 before they run (a refused
//! PATCH changes nothing), other clients are served, and once it lets go it is served again.
//! Every wait is bounded; nothing sleeps and hopes.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::binary::Server;
use common::process::{PATIENCE, TempDir};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// An object of about this many bytes: a few pieces of an answer, under the budgets below.
const OBJECT_BYTES: usize = 700_000;
/// Budget of the tests: more than one such answer, less than two.
const BUDGET: &str = "1000000";

fn start(dir: &TempDir, budget_flags: &[&str]) -> Server {
    let schema = dir.file("schema.json", r#"{"type": "object"}"#);
    let mut args = vec!["--memory", "--schema", schema.to_str().unwrap()];
    args.extend_from_slice(budget_flags);
    if !budget_flags.contains(&"--max-body") {
        args.extend_from_slice(&["--max-body", "4194304"]);
    }
    Server::start(&args, &dir.0)
}

async fn connect(
    source: &str,
    addr: SocketAddr,
    receive_buffer: Option<u32>,
) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket.connect(addr).await.unwrap()
}

fn request(method: &str, token: &str, body: Option<String>) -> Request<Full<Bytes>> {
    let builder = Request::builder()
        .method(method)
        .uri("http://x/beta/me/security")
        .header("authorization", format!("Bearer {token}"));
    match body {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(Full::from(body)),
        None => builder.body(Full::default()),
    }
    .unwrap()
}

/// The object with a `blob` of `fill` bytes, about `OBJECT_BYTES` long.
fn object(fill: char) -> String {
    let blob: String = std::iter::repeat_n(fill, OBJECT_BYTES).collect();
    format!(r##"{{"@odata.type": "#microsoft.graph.security.security", "blob": "{blob}"}}"##)
}

/// One request over a fresh HTTP/1 connection from `source`, read to its end.
async fn send(
    source: &str,
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let stream = connect(source, addr, None).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let (parts, body) = sender.send_request(request).await.unwrap().into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

/// An HTTP/2 connection from `source` that takes no byte of any answer's body.
async fn closed_window(
    source: &str,
    addr: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = connect(source, addr, None).await;
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(0)
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// Sends a GET on `sender` and returns its answer, headers only: the body stays in the server.
async fn held_get(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    token: &str,
) -> Response<Incoming> {
    sender.ready().await.unwrap();
    sender
        .send_request(request("GET", token, None))
        .await
        .unwrap()
}

/// Waits, within `PATIENCE`, until a GET from `source` is answered 200.
async fn served_again(source: &str, addr: SocketAddr, token: &str) {
    let started = Instant::now();
    loop {
        let (status, _, _) = send(source, addr, request("GET", token, None)).await;
        if status == StatusCode::OK {
            return;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            started.elapsed() < PATIENCE,
            "still refused after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_refused(status: StatusCode, headers: &http::HeaderMap, body: &[u8], says: &str) {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    let error: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(error["error"]["code"], "serviceNotAvailable");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{message}");
}

#[tokio::test]
async fn a_client_holding_its_budget_is_refused_until_it_lets_go_and_others_are_served() {
    let dir = TempDir::new("held-per-client");
    let server = start(
        &dir,
        &[
            "--max-held-bytes-per-client",
            BUDGET,
            "--max-held-bytes",
            "0",
        ],
    );
    let (addr, token) = (server.addr, server.dev_token());
    let (status, _, _) = send(
        "127.0.0.1",
        addr,
        request("PATCH", &token, Some(object('a'))),
    )
    .await;
    assert!(status.is_success(), "{status}");
    let (_, before, _) = send("127.0.0.2", addr, request("GET", &token, None)).await;

    // Two answers held (1.4 MB, over the budget); each is admitted while the client holds less.
    let mut h2 = closed_window("127.0.0.1", addr).await;
    let first = held_get(&mut h2, &token).await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = held_get(&mut h2, &token).await;
    assert_eq!(second.status(), StatusCode::OK);

    // Now that client's requests are refused, on any connection, before they run.
    let third = held_get(&mut h2, &token).await;
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (status, headers, body) = send("127.0.0.1", addr, request("GET", &token, None)).await;
    assert_refused(status, &headers, &body, "this client");
    let (status, headers, body) = send(
        "127.0.0.1",
        addr,
        request("PATCH", &token, Some(object('b'))),
    )
    .await;
    assert_refused(status, &headers, &body, "this client");

    // Another client is served, and sees the object the refused PATCH did not change.
    let (status, after, body) = send("127.0.0.2", addr, request("GET", &token, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after["etag"], before["etag"]);
    let object: Value = serde_json::from_slice(&body).unwrap();
    assert!(object["blob"].as_str().unwrap().starts_with('a'));

    // Letting go of the answers (the streams are reset) gives the client its budget back.
    drop((first, second, third));
    served_again("127.0.0.1", addr, &token).await;
}

#[tokio::test]
async fn all_clients_together_holding_the_server_budget_are_refused() {
    let dir = TempDir::new("held-in-all");
    let server = start(
        &dir,
        &[
            "--max-held-bytes",
            BUDGET,
            "--max-held-bytes-per-client",
            "0",
        ],
    );
    let (addr, token) = (server.addr, server.dev_token());
    let (status, _, _) = send(
        "127.0.0.1",
        addr,
        request("PATCH", &token, Some(object('a'))),
    )
    .await;
    assert!(status.is_success(), "{status}");

    let mut h2 = closed_window("127.0.0.1", addr).await;
    let first = held_get(&mut h2, &token).await;
    let second = held_get(&mut h2, &token).await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );

    // Every client is refused now: the server's budget is full.
    let (status, headers, body) = send("127.0.0.2", addr, request("GET", &token, None)).await;
    assert_refused(status, &headers, &body, "the server");

    drop((first, second));
    served_again("127.0.0.2", addr, &token).await;
}

#[tokio::test]
async fn an_http1_answer_not_read_is_counted_until_its_connection_ends() {
    let dir = TempDir::new("held-http1");
    let server = start(
        &dir,
        &[
            "--max-held-bytes-per-client",
            BUDGET,
            "--max-held-bytes",
            "0",
            "--max-body",
            "16777216",
            "--max-object-bytes",
            "16777216",
        ],
    );
    let (addr, token) = (server.addr, server.dev_token());
    // An object of 12 MB: the kernel's send buffer (up to `net.ipv4.tcp_wmem`'s largest, 4 MiB
    // here) and hyper's (about 400 KiB) take part of the answer; the rest, well over the
    // budget, waits in the server.
    let big = {
        let blob: String = std::iter::repeat_n('c', 12_000_000).collect();
        format!(r##"{{"@odata.type": "#microsoft.graph.security.security", "blob": "{blob}"}}"##)
    };
    let (status, _, body) = send("127.0.0.1", addr, request("PATCH", &token, Some(big))).await;
    assert!(status.is_success(), "{status} {body:?}");

    let stream = connect("127.0.0.1", addr, Some(4096)).await;
    let mut stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
        .write_all(
            format!(
                "GET /beta/me/security HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    // The answer has begun: it is ready, and counted.
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");

    let (status, headers, body) = send("127.0.0.1", addr, request("GET", &token, None)).await;
    assert_refused(status, &headers, &body, "this client");

    drop(stream);
    served_again("127.0.0.1", addr, &token).await;
}
