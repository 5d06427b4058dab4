//! Running it in production: probes (and readiness during drain and a PostgreSQL outage), and
//! JSON logs parsed as JSON. Every wait is bounded; assertions are about outcomes.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::binary::Server;
use common::pg::{Proxy, TestDb};
use common::process::TempDir;
use common::send_http1;
use http::Request;
use http_body_util::Full;

fn probe(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::default()).unwrap()
}

/// Polls `path` until it answers `status`, for at most 20 s.
async fn eventually(addr: std::net::SocketAddr, path: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = send_http1(addr, probe(path)).await;
        if reply.status.as_u16() == status {
            return;
        }
        assert!(Instant::now() < deadline, "{path} never answered {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn probes_answer_without_a_token_and_stay_out_of_the_access_log() {
    let dir = TempDir::new("probes");
    let server = Server::start(&["--memory"], &dir.0);
    for (path, text) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
        let reply = send_http1(server.addr, probe(path)).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(&reply.body[..], text.as_bytes(), "{path}");
    }
    // An API request is logged, the probes are not.
    let reply = send_http1(server.addr, probe("/beta/me/security")).await;
    assert_eq!(reply.status, 401);
    server.wait_for_log("/beta/me/security");
    assert!(!server.logs().contains("/healthz"), "{}", server.logs());
    assert!(!server.logs().contains("/readyz"));
}

#[tokio::test]
async fn probes_answer_get_and_head_only() {
    let dir = TempDir::new("probes-methods");
    let server = Server::start(&["--memory"], &dir.0);
    let ask = |method: &str, path: &str, body: &'static str| {
        Request::builder()
            .method(method)
            .uri(path)
            .body(Full::from(body))
            .unwrap()
    };
    for path in ["/healthz", "/readyz"] {
        for method in ["POST", "DELETE", "TRACE", "PATCH"] {
            let reply = send_http1(server.addr, ask(method, path, "")).await;
            assert_eq!(reply.status, 405, "{method} {path}");
            assert_eq!(reply.headers["allow"], "GET, HEAD", "{method} {path}");
            assert!(!reply.headers.contains_key("connection"), "{method} {path}");
            // With a body, which the 405 leaves unread: the connection closes, and says so.
            let reply = send_http1(server.addr, ask(method, path, "unread")).await;
            assert_eq!(reply.status, 405, "{method} {path}");
            assert_eq!(reply.headers["connection"], "close", "{method} {path}");
        }
        for method in ["GET", "HEAD"] {
            let reply = send_http1(server.addr, ask(method, path, "")).await;
            assert_eq!(reply.status, 200, "{method} {path}");
            assert!(!reply.headers.contains_key("connection"), "{method} {path}");
            // A body is answered without being read: the connection closes.
            let reply = send_http1(server.addr, ask(method, path, "unread")).await;
            assert_eq!(reply.status, 200, "{method} {path} with a body");
            let connection = &reply.headers["connection"];
            assert_eq!(connection, "close", "{method} {path} with a body");
        }
    }
}

/// The metrics port answers without reading a body either: one declared closes the
/// connection, as on the API port.
#[tokio::test]
async fn the_metrics_port_closes_a_connection_whose_body_it_did_not_read() {
    let dir = TempDir::new("metrics-unread");
    let server = Server::start(&["--memory", "--metrics-listen", ":0"], &dir.0);
    let metrics = common::metrics::metrics_addr(&server);
    for (method, path, status) in [("POST", "/elsewhere", 404), ("GET", "/metrics", 200)] {
        let request = |body: &'static str| {
            Request::builder()
                .method(method)
                .uri(path)
                .body(Full::from(body))
                .unwrap()
        };
        let reply = send_http1(metrics, request("unread")).await;
        assert_eq!(reply.status, status, "{method} {path}");
        assert_eq!(reply.headers["connection"], "close", "{method} {path}");
        let reply = send_http1(metrics, request("")).await;
        assert_eq!(reply.status, status, "{method} {path}");
        assert!(!reply.headers.contains_key("connection"), "{method} {path}");
    }
}

#[tokio::test]
async fn readiness_is_503_while_draining_and_the_server_still_accepts() {
    let dir = TempDir::new("drain-delay");
    let mut server = Server::start(&["--memory", "--drain-delay", "3"], &dir.0);
    assert_eq!(send_http1(server.addr, probe("/readyz")).await.status, 200);
    server.signal("TERM");
    server.wait_for_log("still accepting for the drain delay");
    // New connections are still accepted, and told not to come back.
    assert_eq!(send_http1(server.addr, probe("/readyz")).await.status, 503);
    assert_eq!(send_http1(server.addr, probe("/healthz")).await.status, 200);
    assert!(server.wait().success());
}

/// The signal handlers are installed before the banner: a SIGTERM sent as soon as "listening
/// on" is printed drains and exits cleanly, never kills the process half-started (the accept
/// loop, which used to install them on its first poll, may not poll them before it serves).
#[test]
fn a_sigterm_sent_as_soon_as_the_banner_is_printed_drains() {
    let dir = TempDir::new("early-term");
    let mut server = Server::start(&["--memory"], &dir.0);
    server.signal("TERM");
    assert!(server.wait().success(), "{}", server.logs());
    assert!(server.logs().contains("shutting down"), "{}", server.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_follows_the_database_and_recovers_by_itself() {
    let Some(db) = TestDb::create("readiness_follows_the_database").await else {
        return;
    };
    let proxy = Proxy::start(db.upstream()).await;
    let dir = TempDir::new("pg-readiness");
    let url = db.url_via(proxy.addr);
    let server = Server::start(
        &[
            "--postgres",
            &url,
            "--postgres-statement-timeout-ms",
            "1000",
        ],
        &dir.0,
    );
    eventually(server.addr, "/readyz", 200).await;
    proxy.cut();
    eventually(server.addr, "/readyz", 503).await;
    // Live all along: the process serves.
    assert_eq!(send_http1(server.addr, probe("/healthz")).await.status, 200);
    proxy.restore();
    eventually(server.addr, "/readyz", 200).await;
}

#[tokio::test]
async fn json_logs_are_one_json_object_per_line() {
    let dir = TempDir::new("json-logs");
    let server = Server::start(&["--memory", "--log-format", "json"], &dir.0);
    let reply = send_http1(server.addr, probe("/beta/me/security")).await;
    assert_eq!(reply.status, 401);
    server.wait_for_log("/beta/me/security");
    let logs = server.logs();
    let mut access = 0;
    for line in logs.lines().filter(|line| !line.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if value["fields"]["path"] == "/beta/me/security" {
            assert_eq!(value["fields"]["status"], 401, "{line}");
            access += 1;
        }
    }
    assert_eq!(access, 1, "{logs}");
}
