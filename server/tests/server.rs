//! The real `security-update-server` binary, driven over loopback: dev mode, JWT rejections,
//! persistence across restart and SIGKILL, the data-directory lock, graceful shutdown, header
//! read timeout, HTTP/2 and flag errors.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use bytes::Bytes;
use common::binary::{Server, run_to_exit};
use common::process::{PATIENCE, TempDir, base64url};
use common::send_http1;
use http::Request;
use http_body_util::Full;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use security_update::auth::EphemeralSigner;
use serde_json::{Value, json};

const ISS: &str = "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0";
const AUD: &str = "api://security-update";
const SEED_BODY: &str = "{\n  \"@odata.type\": \"#microsoft.graph.security.security\"\n}";
const OPEN_SCHEMA: &str = r#"{"type": "object"}"#;

fn patch(token: &str, body: &str) -> Request<Full<Bytes>> {
    Request::patch("/beta/me/security")
        .header("host", "graph.microsoft.com")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::from(body.to_owned()))
        .unwrap()
}

fn get(token: &str) -> Request<Full<Bytes>> {
    Request::get("/beta/me/security")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn dev_mode_prints_a_working_token_and_logs_without_it() {
    let dir = TempDir::new("dev");
    // A deployment schema with a writable property: under Graph's own type every valid PATCH
    // is a no-op, and a no-op is not an audited change.
    let schema = dir.file(
        "schema.json",
        r#"{"type": "object", "properties": {"riskLevel": {"type": "string"}}}"#,
    );
    let server = Server::start(&["--memory", "--schema", schema.to_str().unwrap()], &dir.0);
    assert!(
        server
            .banner
            .iter()
            .any(|l| l.contains("WARNING: dev mode")),
        "{:?}",
        server.banner
    );
    assert!(server.banner.iter().any(|l| l.starts_with("try: curl")));
    let token = server.dev_token();

    let reply = send_http1(server.addr, patch(&token, SEED_BODY)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()["@odata.type"],
        "#microsoft.graph.security.security"
    );
    let reply = send_http1(server.addr, patch(&token, r#"{"riskLevel": "low"}"#)).await;
    assert_eq!(reply.status, 200);
    let reply = send_http1(server.addr, get("not-a-token")).await;
    assert_eq!(reply.status, 401);

    server.wait_for_log("status=401");
    let logs = server.logs();
    let lines: Vec<_> = logs
        .lines()
        .filter(|l| l.contains(" INFO ") && l.contains(": request "))
        .collect();
    assert_eq!(lines.len(), 3, "one line per request:\n{logs}");
    for line in &lines {
        for field in [
            "method=",
            "path=/beta/me/security",
            "status=",
            "latency_us=",
            "request_id=",
        ] {
            assert!(line.contains(field), "{field} missing in {line}");
        }
    }
    assert!(
        logs.lines().any(|l| l.contains("security_update::audit")
            && l.contains("outcome=\"accepted\"")
            && l.contains("etag_after=\"1\"")),
        "no audit record of the accepted change:\n{logs}"
    );
    assert!(!logs.contains(&token), "the token reached the log");
    assert!(
        !logs.contains("not-a-token"),
        "a presented token reached the log"
    );
}

/// Keys, a JWKS file, and a way to mint tokens, all made in the test.
struct Issuer {
    rsa: EncodingKey,
    es: EphemeralSigner,
    jwks_path: std::path::PathBuf,
    rsa_public_der: Vec<u8>,
}

impl Issuer {
    fn new(dir: &TempDir) -> Self {
        use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
        use rsa::{Generate, PrivateKey};
        let private = PrivateKey::generate();
        let der = private.to_pkcs1_der().unwrap();
        let rsa_public_der = private
            .to_public_key()
            .to_pkcs1_der()
            .unwrap()
            .as_bytes()
            .to_vec();
        let rsa = EncodingKey::from_rsa_der(der.as_bytes());
        let mut rsa_jwk = Jwk::from_encoding_key(&rsa, Algorithm::RS256).unwrap();
        rsa_jwk.common.key_id = Some("rsa-1".into());
        // Entra's JWKS keys carry no "alg": the validator must decide it from the key type.
        rsa_jwk.common.key_algorithm = None;
        let es = EphemeralSigner::generate().unwrap();
        let mut keys = vec![rsa_jwk];
        keys.extend(es.jwks().keys.iter().cloned());
        let jwks = serde_json::to_string(&JwkSet { keys }).unwrap();
        let jwks_path = dir.file("jwks.json", &jwks);
        Self {
            rsa,
            es,
            jwks_path,
            rsa_public_der,
        }
    }

    fn claims(&self, extra: Value) -> Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = json!({
            "iss": ISS, "aud": AUD, "iat": now, "nbf": now, "exp": now + 600,
            "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "oid": "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa",
            "scp": "SecurityEvents.ReadWrite.All",
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    }

    fn rs256(&self, extra: Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        jsonwebtoken::encode(&header, &self.claims(extra), &self.rsa).unwrap()
    }

    fn es256(&self, extra: Value) -> String {
        self.es.sign(&self.claims(extra)).unwrap()
    }

    fn server(&self, dir: &TempDir, extra: &[&str]) -> Server {
        let jwks = self.jwks_path.to_str().unwrap().to_owned();
        let mut args = vec![
            "--memory",
            "--jwks",
            &jwks,
            "--issuer",
            ISS,
            "--audience",
            AUD,
        ];
        args.extend_from_slice(extra);
        Server::start(&args, &dir.0)
    }
}

#[tokio::test]
async fn jwt_tokens_are_accepted_or_refused_for_each_reason() {
    let dir = TempDir::new("jwt");
    let issuer = Issuer::new(&dir);
    let server = issuer.server(&dir, &["--leeway", "5"]);
    assert!(!server.banner.iter().any(|l| l.contains("dev mode")));

    for (name, token) in [
        ("RS256", issuer.rs256(json!({}))),
        ("ES256", issuer.es256(json!({}))),
    ] {
        let reply = send_http1(server.addr, patch(&token, SEED_BODY)).await;
        assert_eq!(
            reply.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = issuer.rs256(json!({}));
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[2] = base64url(&[7u8; 256]);
    let bad_signature = parts.join(".");
    let unknown_kid = EphemeralSigner::generate()
        .unwrap()
        .sign(&issuer.claims(json!({})))
        .unwrap();
    let header_none = base64url(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#);
    let body = base64url(issuer.claims(json!({})).to_string().as_bytes());
    let alg_none = format!("{header_none}.{body}.");
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("rsa-1".into());
    let hs_with_public_key = jsonwebtoken::encode(
        &hs_header,
        &issuer.claims(json!({})),
        &EncodingKey::from_secret(&issuer.rsa_public_der).unwrap(),
    )
    .unwrap();
    let hs_plain = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &issuer.claims(json!({})),
        &EncodingKey::from_secret(b"secret").unwrap(),
    )
    .unwrap();

    let cases = [
        ("garbled", "not.a.jwt".to_owned(), "well-formed"),
        ("bad signature", bad_signature, "signature"),
        ("unknown kid", unknown_kid, "kid"),
        (
            "expired",
            issuer.rs256(json!({"exp": now - 600})),
            "expired",
        ),
        (
            "not yet valid",
            issuer.rs256(json!({"nbf": now + 600})),
            "not valid yet",
        ),
        (
            "wrong audience",
            issuer.rs256(json!({"aud": "api://other"})),
            "audience",
        ),
        (
            "wrong issuer",
            issuer.rs256(json!({"iss": "https://evil.example/"})),
            "issuer",
        ),
        ("no audience", issuer.rs256(json!({"aud": null})), "claim"),
        ("alg none", alg_none, "well-formed"),
        ("HS256 with the public key", hs_with_public_key, "algorithm"),
        ("HS256", hs_plain, "algorithm"),
    ];
    for (name, token, reason) in cases {
        let reply = send_http1(server.addr, patch(&token, SEED_BODY)).await;
        assert_eq!(reply.status, 401, "{name}");
        let challenge = reply.header("www-authenticate");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        assert!(
            challenge.contains(reason),
            "{name}: {challenge} lacks {reason}"
        );
        assert_eq!(
            reply.json()["error"]["code"],
            "InvalidAuthenticationToken",
            "{name}"
        );
        assert!(!server.logs().contains(&token), "{name}: token logged");
    }
}

#[tokio::test]
async fn acknowledged_patches_survive_restart_and_sigkill() {
    let dir = TempDir::new("durable");
    let data = dir.0.join("data");
    let schema = dir.file("schema.json", OPEN_SCHEMA);
    let args = [
        "--data",
        data.to_str().unwrap(),
        "--schema",
        schema.to_str().unwrap(),
    ];

    let mut server = Server::start(&args, &dir.0);
    let token = server.dev_token();
    let reply = send_http1(server.addr, patch(&token, r#"{"marker":"first"}"#)).await;
    assert_eq!(reply.status, 200);
    server.signal("TERM");
    assert!(server.wait().success());

    let mut server = Server::start(&args, &dir.0);
    // A new dev-mode key signs a new token for the same demo user.
    let token = server.dev_token();
    let reply = send_http1(server.addr, get(&token)).await;
    assert_eq!(
        reply.json()["marker"],
        "first",
        "lost across a clean restart"
    );
    let reply = send_http1(
        server.addr,
        patch(&token, r#"{"marker":"second","more":{"n":1}}"#),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("etag"), "\"2\"");
    // The answer is in: kill -9 at once, no chance to flush anything.
    server.signal("KILL");
    let status = server.wait();
    assert!(!status.success());

    let server = Server::start(&args, &dir.0);
    let reply = send_http1(server.addr, get(&server.dev_token())).await;
    let json = reply.json();
    assert_eq!(json["marker"], "second", "lost after SIGKILL: {json}");
    assert_eq!(json["more"], json!({"n": 1}));
    assert_eq!(reply.header("etag"), "\"2\"");
}

/// Group commit under a burst: 64 writers at once (their writes share transactions), each
/// setting its own member; kill -9 as soon as the last answer is in; every member that was
/// answered 200 is there after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_write_of_a_burst_survives_sigkill() {
    let dir = TempDir::new("durable-burst");
    let data = dir.0.join("data");
    let schema = dir.file("schema.json", OPEN_SCHEMA);
    let args = [
        "--data",
        data.to_str().unwrap(),
        "--schema",
        schema.to_str().unwrap(),
        "--rate-limit",
        "0",
    ];
    let mut server = Server::start(&args, &dir.0);
    let token = server.dev_token();
    let writers: Vec<_> = (0..64)
        .map(|i| {
            let (addr, token) = (server.addr, token.clone());
            tokio::spawn(async move {
                let body = format!(r#"{{"w{i}": {i}}}"#);
                (i, send_http1(addr, patch(&token, &body)).await.status)
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for writer in writers {
        let (i, status) = writer.await.unwrap();
        if status == 200 {
            acknowledged.push(i);
        }
    }
    server.signal("KILL");
    assert!(!server.wait().success());
    assert!(
        acknowledged.len() >= 32,
        "most writes went through: {acknowledged:?}"
    );

    let server = Server::start(&args, &dir.0);
    let json = send_http1(server.addr, get(&server.dev_token()))
        .await
        .json();
    for i in acknowledged {
        assert_eq!(
            json[format!("w{i}")],
            i,
            "write {i} was answered 200 and lost: {json}"
        );
    }
}

#[tokio::test]
async fn a_data_directory_in_use_is_refused_clearly() {
    let dir = TempDir::new("lock");
    let data = dir.0.join("data");
    let args = ["--data", data.to_str().unwrap()];
    let _first = Server::start(&args, &dir.0);
    let Err((status, log)) = Server::try_start(&args, &dir.0) else {
        panic!("a second server opened the same data directory");
    };
    assert_eq!(status.and_then(|s| s.code()), Some(1));
    assert!(
        log.contains("in use by another security-update-server"),
        "{log}"
    );
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_then_exits_cleanly() {
    let dir = TempDir::new("graceful");
    let data = dir.0.join("data");
    // The keep-alive connection must be closed by the drain, right after its answer, not by
    // the wait for a next request's head (30 s by default, as long as the read below waits).
    let mut server = Server::start(
        &[
            "--data",
            data.to_str().unwrap(),
            "--header-read-timeout",
            "300",
        ],
        &dir.0,
    );
    let token = server.dev_token();
    let addr = server.addr;

    // Headers and half the body, then wait until the server has the request in hand.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let head = format!(
        "PATCH /beta/me/security HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        SEED_BODY.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&SEED_BODY.as_bytes()[..10]).unwrap();
    server.wait_for_log("request started");

    server.signal("TERM");
    server.wait_for_log("shutting down");
    stream.write_all(&SEED_BODY.as_bytes()[10..]).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("#microsoft.graph.security.security"));

    assert!(server.wait().success(), "exit after draining");
    assert!(server.logs().contains("store closed"));
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn a_client_that_stalls_mid_headers_is_disconnected() {
    let dir = TempDir::new("stall");
    let server = Server::start(&["--memory", "--header-read-timeout", "1"], &dir.0);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
        .write_all(b"PATCH /beta/me/security HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut rest = Vec::new();
    // read_to_end returns only when the server closes the connection (or PATIENCE fails it).
    let outcome = stream.read_to_end(&mut rest);
    assert!(
        outcome.is_ok(),
        "the server kept the stalled connection open: {outcome:?}"
    );
}

#[tokio::test]
async fn a_client_that_stalls_mid_body_gets_408() {
    let dir = TempDir::new("stall-body");
    let server = Server::start(&["--memory", "--request-timeout", "1"], &dir.0);
    let token = server.dev_token();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let head = format!(
        "PATCH /beta/me/security HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"a\":"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("requestTimeout"), "{response}");
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let dir = TempDir::new("h2");
    let server = Server::start(&["--memory"], &dir.0);
    let token = server.dev_token();
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut request = patch(&token, SEED_BODY);
    *request.uri_mut() = format!("http://{}/beta/me/security", server.addr)
        .parse()
        .unwrap();
    request.headers_mut().remove("host");
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
}

#[test]
fn bad_flags_and_unreadable_files_are_one_line_and_exit_2() {
    for args in [
        &["--no-such-flag"][..],
        &["--listen", "nowhere"],
        &["--memory", "--postgres", "x"],
    ] {
        let (code, _, err) = run_to_exit(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?}: not one line: {err}"
        );
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
    let (code, _, err) = run_to_exit(&[
        "--memory",
        "--jwks",
        "/nonexistent/jwks.json",
        "--issuer",
        "i",
        "--audience",
        "a",
    ]);
    assert_eq!(code, Some(2));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot read --jwks /nonexistent/jwks.json"),
        "{err}"
    );
    let (code, _, err) = run_to_exit(&["--memory", "--schema", "/nonexistent/schema.json"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read --schema"), "{err}");
    let (code, _, err) = run_to_exit(&["--memory", "--jwks", "/dev/null"]);
    assert_eq!(code, Some(2), "--jwks without --issuer: {err}");
}

#[test]
fn help_documents_every_flag() {
    let (code, out, _) = run_to_exit(&["--help"]);
    assert_eq!(code, Some(0));
    for flag in [
        "--listen",
        "--data",
        "--memory",
        "--jwks",
        "--issuer",
        "--audience",
        "--schema",
        "--max-body",
        "--leeway",
        "--header-read-timeout",
        "--shutdown-timeout",
    ] {
        assert!(out.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn a_damaged_data_directory_stops_the_server_with_one_line() {
    let dir = TempDir::new("damaged");
    let data = dir.0.join("data");
    let data_arg = data.to_str().unwrap();
    // First start creates the store; then a failed restore leaves an empty file.
    drop(Server::start(&["--data", data_arg], &dir.0));
    std::fs::write(data.join("security-update.redb"), b"").unwrap();
    let (code, _out, err) = run_to_exit(&["--listen", "127.0.0.1:0", "--data", data_arg]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("is empty"), "{err}");
}
