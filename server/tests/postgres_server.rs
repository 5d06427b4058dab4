//! Several real server processes on one `PostgreSQL` database: no lost update, If-Match across
//! processes, and an outage (a proxy the test cuts) answered with 503 and recovered from.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::binary::Server;
use common::pg::{Proxy, TestDb};
use common::process::TempDir;
use common::send_http1;
use http::Request;
use http_body_util::Full;
use serde_json::json;

const OPEN_SCHEMA: &str = r#"{"type": "object"}"#;

fn patch(token: &str, body: String, if_match: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::patch("/beta/me/security")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    if let Some(etag) = if_match {
        builder = builder.header("if-match", etag);
    }
    builder.body(Full::from(body)).unwrap()
}

fn get(token: &str) -> Request<Full<Bytes>> {
    Request::get("/beta/me/security")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap()
}

fn start(url: &str, dir: &TempDir, schema: &std::path::Path, extra: &[&str]) -> Server {
    let mut args = vec!["--postgres", url, "--schema", schema.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start(&args, &dir.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_database_lose_nothing() {
    let Some(db) = TestDb::create("two_processes_on_one_database_lose_nothing").await else {
        return;
    };
    let dir = TempDir::new("pg-two");
    let schema = dir.file("schema.json", OPEN_SCHEMA);
    let a = start(&db.url, &dir, &schema, &[]);
    let b = start(&db.url, &dir, &schema, &[]);
    // Each dev-mode process signs its own tokens, for the same demo user.
    let servers = [(a.addr, a.dev_token()), (b.addr, b.dev_token())];

    const WRITES: usize = 40;
    let tasks: Vec<_> = (0..WRITES)
        .map(|i| {
            let (addr, token) = servers[i % 2].clone();
            tokio::spawn(async move {
                let body = json!({ format!("p{i}"): {"by": i % 2, "gone": null} }).to_string();
                send_http1(addr, patch(&token, body, None)).await.status
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    for (addr, token) in &servers {
        let reply = send_http1(*addr, get(token)).await;
        let object = reply.json();
        for i in 0..WRITES {
            assert_eq!(
                object[format!("p{i}")],
                json!({"by": i % 2}),
                "p{i} lost: {object}"
            );
        }
        assert_eq!(
            reply.header("etag"),
            format!("\"{WRITES}\""),
            "one version per acknowledged write"
        );
    }

    // If-Match across processes: B's write makes A's ETag stale.
    let (a_addr, a_token) = &servers[0];
    let (b_addr, b_token) = &servers[1];
    let etag = send_http1(*a_addr, get(a_token))
        .await
        .header("etag")
        .to_owned();
    let reply = send_http1(
        *b_addr,
        patch(b_token, json!({"step": 1}).to_string(), Some(&etag)),
    )
    .await;
    assert_eq!(reply.status, 200);
    let reply = send_http1(
        *a_addr,
        patch(a_token, json!({"step": 2}).to_string(), Some(&etag)),
    )
    .await;
    assert_eq!(
        reply.status, 412,
        "a stale ETag from another process must fail"
    );
    let object = send_http1(*a_addr, get(a_token)).await.json();
    assert_eq!(object["step"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_is_503_and_recovers_by_itself() {
    let Some(db) = TestDb::create("an_outage_is_503_and_recovers_by_itself").await else {
        return;
    };
    let proxy = Proxy::start(db.upstream()).await;
    let dir = TempDir::new("pg-outage");
    let schema = dir.file("schema.json", OPEN_SCHEMA);
    let url = db.url_via(proxy.addr);
    let server = start(
        &url,
        &dir,
        &schema,
        &["--postgres-statement-timeout-ms", "2000"],
    );
    let token = server.dev_token();

    let reply = send_http1(
        server.addr,
        patch(&token, json!({"before": 1}).to_string(), None),
    )
    .await;
    assert_eq!(reply.status, 200);

    proxy.cut();
    for i in 0..3 {
        let reply = send_http1(
            server.addr,
            patch(&token, json!({ format!("during{i}"): 1 }).to_string(), None),
        )
        .await;
        assert_eq!(reply.status, 503, "during the outage");
        assert_eq!(reply.header("retry-after"), "1");
        assert_eq!(reply.json()["error"]["code"], "serviceNotAvailable");
        reply.error_message();
    }
    let reply = send_http1(server.addr, get(&token)).await;
    assert_eq!(reply.status, 503);

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = send_http1(
            server.addr,
            patch(&token, json!({"after": 1}).to_string(), None),
        )
        .await;
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 503, "only 503 while recovering");
        assert!(Instant::now() < deadline, "the server did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let object = send_http1(server.addr, get(&token)).await.json();
    assert_eq!(
        object["before"], 1,
        "an acknowledged write was lost: {object}"
    );
    assert_eq!(object["after"], 1);
    for i in 0..3 {
        assert!(
            object.get(format!("during{i}")).is_none(),
            "a refused write landed: {object}"
        );
    }
}

#[test]
fn a_database_down_at_start_stops_the_server_clearly() {
    let dir = TempDir::new("pg-down");
    match Server::try_start(
        &["--postgres", "postgres://postgres@127.0.0.1:1/test"],
        &dir.0,
    ) {
        Ok(_) => panic!("started without a database"),
        Err((status, log)) => {
            assert_eq!(status.and_then(|s| s.code()), Some(1));
            assert!(log.contains("cannot use PostgreSQL"), "{log}");
            assert_eq!(log.trim().lines().count(), 1, "one clear line: {log}");
        }
    }
}
