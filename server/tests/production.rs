//! Running it in production, against the real binary: TLS (HTTP/1.1 and HTTP/2 over rustls,
//! certificate reload on SIGHUP and on file change, a handshake deadline, bad pairs refused),
//! Prometheus metrics parsed by a real parser, JWKS and schema reload on SIGHUP, and a backup
//! taken from a running server and started from. Every wait is bounded.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::binary::{Server, run_to_exit};
use common::metrics::{metrics_addr, scrape, value};
use common::process::TempDir;
use common::send_http1;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use security_update::EphemeralSigner;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const SEED: &str = r##"{"@odata.type": "#microsoft.graph.security.security"}"##;

/// A certificate for `localhost` and 127.0.0.1 made here: (cert PEM, key PEM, cert DER).
fn certificate() -> (String, String, Vec<u8>) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    (
        made.cert.pem(),
        made.signing_key.serialize_pem(),
        made.cert.der().to_vec(),
    )
}

/// Writes `text` to `path` by rename, as an orchestrator swapping files does.
fn replace_file(path: &std::path::Path, text: &str) {
    let staging = path.with_extension("new");
    std::fs::write(&staging, text).unwrap();
    std::fs::rename(&staging, path).unwrap();
}

/// A TLS connection to `addr` trusting `roots`, offering `alpn`; with the certificate the
/// server presented.
async fn tls_connect(
    addr: SocketAddr,
    roots: &[&[u8]],
    alpn: &[&[u8]],
) -> std::io::Result<(TlsStream<TcpStream>, Vec<u8>)> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(CertificateDer::from(root.to_vec())).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let stream = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let presented = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.to_vec())
        .unwrap_or_default();
    Ok((stream, presented))
}

/// The status and JSON body of `request` over an established HTTP/1.1 or HTTP/2 sender.
enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    async fn open(stream: TlsStream<TcpStream>) -> Self {
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        if h2 {
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            Self::H2(sender)
        } else {
            let (sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            Self::H1(sender)
        }
    }

    async fn send(&mut self, request: Request<Full<Bytes>>) -> (u16, http::Version, Value) {
        let response = match self {
            Self::H1(sender) => sender.send_request(request).await.unwrap(),
            Self::H2(sender) => sender.send_request(request).await.unwrap(),
        };
        let (status, version) = (response.status().as_u16(), response.version());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            version,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    }
}

fn patch(authority: &str, token: &str, body: &str) -> Request<Full<Bytes>> {
    Request::patch(format!("https://{authority}/beta/me/security"))
        .header("host", authority)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// Waits until the log contains `needle` at least `times` times.
fn wait_for_count(server: &Server, needle: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.logs().matches(needle).count() < times {
        assert!(
            Instant::now() < deadline,
            "{needle:?} not seen {times} times:\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server on the memory store serving HTTPS with a certificate made here, plus `extra`
/// flags: (server, cert path, key path, the certificate's DER).
fn tls_server(
    dir: &TempDir,
    extra: &[&str],
) -> (Server, std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let (cert, key, der) = certificate();
    let cert_path = dir.file("cert.pem", &cert);
    let key_path = dir.file("key.pem", &key);
    let server = {
        let mut args = vec![
            "--memory",
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Server::start(&args, &dir.0)
    };
    (server, cert_path, key_path, der)
}

#[tokio::test]
async fn https_speaks_http1_and_http2_and_reloads_its_certificate_without_dropping_connections() {
    let dir = TempDir::new("tls");
    let (server, cert_path, key_path, first_der) =
        tls_server(&dir, &["--tls-reload-interval", "1"]);
    let token = server.dev_token();
    let authority = format!("localhost:{}", server.addr.port());

    // HTTP/2 by ALPN, and HTTP/1.1 by ALPN; @odata.context says https.
    let (stream, presented) = tls_connect(server.addr, &[&first_der], &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(presented, first_der);
    let mut h2 = Sender::open(stream).await;
    let (status, version, body) = h2.send(patch(&authority, &token, SEED)).await;
    assert_eq!((status, version), (200, http::Version::HTTP_2), "{body}");
    let context = body["@odata.context"].as_str().unwrap();
    assert!(
        context.starts_with(&format!("https://{authority}/beta/$metadata#users(")),
        "{context}"
    );
    let (stream, _) = tls_connect(server.addr, &[&first_der], &[b"http/1.1"])
        .await
        .unwrap();
    let mut h1 = Sender::open(stream).await;
    let (status, version, body) = h1.send(patch(&authority, &token, SEED)).await;
    assert_eq!((status, version), (200, http::Version::HTTP_11), "{body}");
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .starts_with("https://"),
        "{body}"
    );
    // Plain HTTP on the TLS port gets no answer.
    let reply = tokio::time::timeout(
        Duration::from_secs(20),
        raw_exchange(server.addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"),
    )
    .await
    .expect("closed within the deadline");
    assert!(
        !reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );

    // SIGHUP with a new pair: new handshakes get it, open connections go on.
    let (cert2, key2, second_der) = certificate();
    replace_file(&key_path, &key2);
    replace_file(&cert_path, &cert2);
    server.signal("HUP");
    wait_for_count(&server, "TLS certificate reloaded", 1);
    let (_, presented) = tls_connect(server.addr, &[&first_der, &second_der], &[b"h2"])
        .await
        .unwrap();
    assert_eq!(
        presented, second_der,
        "a new handshake presents the new certificate"
    );
    assert_eq!(
        h2.send(patch(&authority, &token, SEED)).await.0,
        200,
        "the HTTP/2 connection survived"
    );
    assert_eq!(
        h1.send(patch(&authority, &token, SEED)).await.0,
        200,
        "the HTTP/1 connection survived"
    );

    // A pair that does not match: refused, logged, and the current one stays.
    let (_, stray_key, _) = certificate();
    let (cert3, _, _) = certificate();
    replace_file(&key_path, &stray_key);
    replace_file(&cert_path, &cert3);
    server.signal("HUP");
    wait_for_count(&server, "TLS certificate not reloaded", 1);
    assert!(
        server.logs().contains("do not make a usable pair"),
        "{}",
        server.logs()
    );
    let (_, presented) = tls_connect(server.addr, &[&second_der], &[b"h2"])
        .await
        .unwrap();
    assert_eq!(presented, second_der);

    // A good pair written with no signal is picked up by the file check.
    let (cert4, key4, fourth_der) = certificate();
    replace_file(&key_path, &key4);
    replace_file(&cert_path, &cert4);
    wait_for_count(&server, "TLS certificate reloaded", 2);
    let (_, presented) = tls_connect(server.addr, &[&fourth_der], &[b"h2"])
        .await
        .unwrap();
    assert_eq!(presented, fourth_der);
}

/// Sends `bytes` on a new connection and reads until the server closes it.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    if !bytes.is_empty() {
        let _ = stream.write_all(bytes).await;
    }
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received).await;
    received
}

#[tokio::test]
async fn a_tls_handshake_that_stalls_is_cut_at_its_deadline() {
    let dir = TempDir::new("tls-deadline");
    let (server, ..) = tls_server(&dir, &["--tls-handshake-timeout", "1"]);
    // Nothing at all; one byte; a TLS record header promising a ClientHello that never comes.
    for (name, bytes) in [
        ("no bytes", &b""[..]),
        ("one byte", &[0x16][..]),
        (
            "half a ClientHello",
            &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00][..],
        ),
    ] {
        let closed =
            tokio::time::timeout(Duration::from_secs(20), raw_exchange(server.addr, bytes)).await;
        assert!(
            closed.is_ok(),
            "{name}: the server kept a stalled handshake open"
        );
    }
}

#[test]
fn a_certificate_and_key_that_cannot_be_used_stop_the_start_with_exit_2() {
    let dir = TempDir::new("tls-bad");
    let (cert, _, _) = certificate();
    let (_, other_key, _) = certificate();
    let cert_path = dir.file("cert.pem", &cert);
    let key_path = dir.file("key.pem", &other_key);
    let not_pem = dir.file("garbage.pem", "not a certificate");
    let cases = [
        (
            cert_path.to_str().unwrap(),
            key_path.to_str().unwrap(),
            "do not make a usable pair",
        ),
        (
            "/nonexistent/cert.pem",
            key_path.to_str().unwrap(),
            "cannot read --tls-cert",
        ),
        (
            not_pem.to_str().unwrap(),
            key_path.to_str().unwrap(),
            "no CERTIFICATE",
        ),
        (
            cert_path.to_str().unwrap(),
            not_pem.to_str().unwrap(),
            "--tls-key",
        ),
    ];
    for (cert, key, expected) in cases {
        let (code, _, err) = run_to_exit(&["--memory", "--tls-cert", cert, "--tls-key", key]);
        assert_eq!(code, Some(2), "{cert} {key}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(expected), "{expected:?} in {err}");
    }
    let (code, _, err) = run_to_exit(&["--memory", "--tls-cert", cert_path.to_str().unwrap()]);
    assert_eq!(code, Some(2), "--tls-cert alone: {err}");
}

#[tokio::test]
async fn metrics_are_on_their_own_port_and_move_with_requests() {
    let dir = TempDir::new("metrics");
    let schema = dir.file("schema.json", r#"{"type": "object"}"#);
    let server = Server::start(
        &[
            "--memory",
            "--schema",
            schema.to_str().unwrap(),
            "--metrics-listen",
            ":0",
            "--rate-limit",
            "1",
            "--rate-limit-burst",
            "1",
        ],
        &dir.0,
    );
    let metrics = metrics_addr(&server);
    let token = server.dev_token();
    let before = scrape(metrics).await;
    assert_eq!(
        value(&before, "security_update_http_requests_total", &[]),
        0.0
    );

    let patch = |token: &str| {
        Request::patch("/beta/me/security")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(br#"{"riskLevel": "low"}"#)))
            .unwrap()
    };
    assert_eq!(send_http1(server.addr, patch(&token)).await.status, 200);
    assert_eq!(send_http1(server.addr, patch(&token)).await.status, 429);
    assert_eq!(
        send_http1(server.addr, patch("not-a-jwt")).await.status,
        401
    );
    // Not on the API port.
    let on_api = send_http1(
        server.addr,
        Request::get("/metrics").body(Full::default()).unwrap(),
    )
    .await;
    assert_ne!(on_api.status, 200);
    // The probes are on the metrics port too.
    let probe = send_http1(
        metrics,
        Request::get("/readyz").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(probe.status, 200);

    let after = scrape(metrics).await;
    let requests = "security_update_http_requests_total";
    assert_eq!(
        value(
            &after,
            requests,
            &[("route", "me"), ("method", "PATCH"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            requests,
            &[("route", "me"), ("method", "PATCH"), ("status", "429")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            requests,
            &[("route", "me"), ("method", "PATCH"), ("status", "401")]
        ),
        1.0
    );
    assert_eq!(
        value(&after, requests, &[("route", "other")]),
        1.0,
        "the /metrics miss on the API port"
    );
    assert_eq!(
        value(&after, "security_update_rate_limited_total", &[]),
        1.0
    );
    assert_eq!(
        value(&after, "security_update_audit_records_total", &[]),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "security_update_token_validations_total",
            &[("outcome", "rejected"), ("reason", "malformed")]
        ),
        1.0
    );
    assert!(
        value(
            &after,
            "security_update_token_validations_total",
            &[("outcome", "verified")]
        ) >= 1.0
    );
    assert_eq!(
        value(
            &after,
            "security_update_store_operation_duration_seconds",
            &[("store", "memory"), ("operation", "compare_and_swap")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "security_update_http_request_duration_seconds",
            &[("route", "me"), ("method", "PATCH")]
        ),
        3.0
    );
    assert!(value(&after, "security_update_connections_accepted_total", &[]) >= 4.0);
    assert_eq!(
        value(&after, "security_update_http_requests_in_flight", &[]),
        0.0
    );
    // No caller identity in any label.
    for (_, labels, _) in &after {
        for value in labels.values() {
            assert!(!value.contains("0000"), "an id in a label: {labels:?}");
        }
    }
}

/// The metrics port has its own connection cap: past 64 held connections a new one is closed
/// at once, while the API port (with its own caps) serves on; closing one frees a slot.
#[tokio::test]
async fn the_metrics_port_has_a_connection_cap_of_its_own() {
    let dir = TempDir::new("metrics-cap");
    let server = Server::start(&["--memory", "--metrics-listen", ":0"], &dir.0);
    let metrics = metrics_addr(&server);
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(TcpStream::connect(metrics).await.unwrap());
    }
    // Make sure the server has accepted them all: one more request on the API port first.
    let probe = || Request::get("/healthz").body(Full::default()).unwrap();
    assert_eq!(send_http1(server.addr, probe()).await.status, 200);
    let closed = tokio::time::timeout(
        Duration::from_secs(4),
        raw_exchange(metrics, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"),
    )
    .await
    .expect("the 65th connection is closed at once, before the 5 s first-bytes deadline");
    assert!(
        closed.is_empty(),
        "the 65th connection was served: {}",
        String::from_utf8_lossy(&closed)
    );
    assert_eq!(
        send_http1(server.addr, probe()).await.status,
        200,
        "the API port serves on"
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = tokio::time::timeout(
            Duration::from_secs(2),
            raw_exchange(
                metrics,
                b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            ),
        )
        .await;
        if matches!(&reply, Ok(bytes) if bytes.starts_with(b"HTTP/1.1 200")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the metrics port never served again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn claims(issuer: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "iss": issuer, "aud": "api://security-update", "iat": now, "nbf": now, "exp": now + 600,
        "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "oid": "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa",
        "scp": "SecurityEvents.ReadWrite.All",
    })
}

#[tokio::test]
async fn sighup_reloads_the_jwks_and_the_schema_and_a_bad_file_keeps_the_old_one() {
    let dir = TempDir::new("reload");
    let issuer = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/";
    let (old, new) = (
        EphemeralSigner::generate().unwrap(),
        EphemeralSigner::generate().unwrap(),
    );
    let jwks = dir.file("jwks.json", &serde_json::to_string(old.jwks()).unwrap());
    let narrow = json!({"type": "object", "properties": {"riskLevel": {"enum": ["low"]}}});
    let schema = dir.file("schema.json", &narrow.to_string());
    let server = Server::start(
        &[
            "--memory",
            "--jwks",
            jwks.to_str().unwrap(),
            "--issuer",
            issuer,
            "--audience",
            "api://security-update",
            "--schema",
            schema.to_str().unwrap(),
        ],
        &dir.0,
    );
    let send = |token: String, body: &'static str| {
        Request::patch("/beta/me/security")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    let old_token = old.sign(&claims(issuer)).unwrap();
    let new_token = new.sign(&claims(issuer)).unwrap();
    let high = r#"{"riskLevel": "high"}"#;
    assert_eq!(
        send_http1(server.addr, send(old_token.clone(), SEED))
            .await
            .status,
        200
    );
    assert_eq!(
        send_http1(server.addr, send(new_token.clone(), SEED))
            .await
            .status,
        401
    );
    assert_eq!(
        send_http1(server.addr, send(old_token.clone(), high))
            .await
            .status,
        400
    );

    // Rotate both files, then SIGHUP.
    replace_file(&jwks, &serde_json::to_string(new.jwks()).unwrap());
    let wide = json!({"type": "object", "properties": {"riskLevel": {"enum": ["low", "high"]}}});
    replace_file(&schema, &wide.to_string());
    server.signal("HUP");
    wait_for_count(&server, "schema reloaded", 1);
    wait_for_count(&server, "JWKS reloaded", 1);
    assert_eq!(
        send_http1(server.addr, send(new_token.clone(), high))
            .await
            .status,
        200
    );
    assert_eq!(
        send_http1(server.addr, send(old_token.clone(), SEED))
            .await
            .status,
        401,
        "the rotated-out key"
    );

    // Broken files: both refused, logged, and what is in use stays.
    replace_file(&jwks, "{\"keys\": \"no\"}");
    replace_file(&schema, "{\"type\": 12}");
    server.signal("HUP");
    wait_for_count(&server, "JWKS not reloaded", 1);
    wait_for_count(&server, "schema not reloaded", 1);
    assert_eq!(
        send_http1(server.addr, send(new_token.clone(), high))
            .await
            .status,
        200
    );
    let reply = send_http1(server.addr, send(new_token, r#"{"riskLevel": "extreme"}"#)).await;
    assert_eq!(reply.status, 400, "the wide schema still applies");
}

#[tokio::test]
async fn sigusr1_writes_a_backup_that_a_new_server_starts_from() {
    let dir = TempDir::new("backup");
    let data = dir.0.join("data");
    let backups = dir.0.join("backups");
    // A writable property: under Graph's own type nothing would be stored to back up.
    let schema = dir.file("schema.json", r#"{"type": "object"}"#);
    let schema = schema.to_str().unwrap();
    let mut server = Server::start(
        &[
            "--data",
            data.to_str().unwrap(),
            "--backup-dir",
            backups.to_str().unwrap(),
            "--schema",
            schema,
        ],
        &dir.0,
    );
    let token = server.dev_token();
    let patch = |token: &str, body: &'static str| {
        Request::patch("/beta/me/security")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    let saved = send_http1(server.addr, patch(&token, r#"{"riskLevel": "high"}"#)).await;
    assert_eq!(saved.status, 200);
    assert_eq!(saved.headers["etag"], "\"1\"");
    // What a backup cut short by a crash leaves, and what is not a backup's.
    let stale = backups.join("security-update-000000000000001.partial");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("security.redb"), vec![0u8; 4096]).unwrap();
    let foreign = backups.join("notes.partial");
    std::fs::create_dir_all(&foreign).unwrap();
    server.signal("USR1");
    wait_for_count(&server, "backup written", 1);
    assert!(!stale.exists(), "the unfinished backup was left");
    assert!(server.logs().contains("unfinished backup removed"));
    assert!(
        foreign.exists(),
        "a directory that is not a backup's was removed"
    );
    // A change after the backup is not in it.
    let later = send_http1(server.addr, patch(&token, r#"{"riskLevel": "low"}"#)).await;
    assert_eq!(later.headers["etag"], "\"2\"");
    server.signal("TERM");
    assert!(server.wait().success());
    let copy = std::fs::read_dir(&backups)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("security-update-")
        })
        .expect("a backup directory");
    // Taken out of the way of the original, as a restore onto a new machine would.
    std::fs::remove_dir_all(&data).unwrap();
    let restored = Server::start(
        &["--data", copy.to_str().unwrap(), "--schema", schema],
        &dir.0,
    );
    let token = restored.dev_token();
    let get = Request::get("/beta/me/security")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    let reply = send_http1(restored.addr, get).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.headers["etag"], "\"1\"",
        "the object as it was at the backup"
    );
    assert_eq!(reply.json()["riskLevel"], "high");
}

#[tokio::test]
async fn sigusr1_without_a_backup_dir_says_so_and_serves_on() {
    let dir = TempDir::new("backup-none");
    let server = Server::start(&["--memory"], &dir.0);
    server.signal("USR1");
    server.wait_for_log("no backup written");
    let reply = send_http1(
        server.addr,
        Request::get("/healthz").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
}
