//! Keys from a JWKS URL: the first fetch, refetch on an unknown `kid` (rate-limited), and the
//! periodic refresh, against a JWKS endpoint the test serves on loopback.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use security_update::JwtValidator;
use security_update::TokenValidator;
use security_update::auth::EphemeralSigner;
use security_update::auth::jwt::JwksRefresh;
use serde_json::json;

const ISS: &str = "https://issuer.example/";
const AUD: &str = "api://security-update";

/// A JWKS endpoint whose document the test can swap, counting fetches.
struct Endpoint {
    jwks: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    url: String,
}

async fn endpoint(initial: &EphemeralSigner) -> Endpoint {
    let jwks = Arc::new(Mutex::new(serde_json::to_string(initial.jwks()).unwrap()));
    let fetches = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/keys", listener.local_addr().unwrap());
    let (served, counted) = (jwks.clone(), fetches.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (served, counted) = (served.clone(), counted.clone());
            let service = hyper::service::service_fn(move |_req| {
                counted.fetch_add(1, Ordering::SeqCst);
                let body = served.lock().unwrap().clone();
                async move {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                        body,
                    ))))
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Endpoint { jwks, fetches, url }
}

fn token(signer: &EphemeralSigner, oid: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    signer
        .sign(
            &json!({"iss": ISS, "aud": AUD, "exp": now + 600, "tid": "t", "oid": oid, "scp": "x"}),
        )
        .unwrap()
}

#[tokio::test]
async fn rotated_keys_are_fetched_on_unknown_kid_at_most_once_per_interval() {
    let old = EphemeralSigner::generate().unwrap();
    let endpoint = endpoint(&old).await;
    let refresh = JwksRefresh {
        every: Duration::from_secs(3600),
        unknown_kid_at_most_every: Duration::from_secs(3600),
    };
    let validator = JwtValidator::from_jwks_url(&endpoint.url, [ISS], [AUD], refresh)
        .await
        .unwrap();
    assert_eq!(endpoint.fetches.load(Ordering::SeqCst), 1);
    assert!(validator.validate(&token(&old, "a")).await.is_ok());

    // The provider rotates to a new key.
    let new = EphemeralSigner::generate().unwrap();
    *endpoint.jwks.lock().unwrap() = serde_json::to_string(new.jwks()).unwrap();
    let principal = validator.validate(&token(&new, "b")).await.unwrap();
    assert_eq!(principal.object_id(), "b");
    assert_eq!(
        endpoint.fetches.load(Ordering::SeqCst),
        2,
        "one refetch for the new kid"
    );

    // Tokens with made-up kids do not trigger more fetches within the interval.
    for _ in 0..5 {
        let stranger = EphemeralSigner::generate().unwrap();
        let error = validator
            .validate(&token(&stranger, "c"))
            .await
            .unwrap_err();
        assert!(error.description().contains("kid"));
    }
    assert_eq!(
        endpoint.fetches.load(Ordering::SeqCst),
        2,
        "rate limit held"
    );
}

#[tokio::test]
async fn keys_are_refreshed_periodically() {
    let old = EphemeralSigner::generate().unwrap();
    let endpoint = endpoint(&old).await;
    let refresh = JwksRefresh {
        every: Duration::from_millis(50),
        unknown_kid_at_most_every: Duration::from_secs(3600),
    };
    let validator = JwtValidator::from_jwks_url(&endpoint.url, [ISS], [AUD], refresh)
        .await
        .unwrap();
    let new = EphemeralSigner::generate().unwrap();
    *endpoint.jwks.lock().unwrap() = serde_json::to_string(new.jwks()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Without refetch-on-unknown-kid (rate-limited away after the first try), only the periodic
    // refresh can make the old key stop working.
    let old_token = token(&old, "a");
    while validator.validate(&old_token).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the periodic refresh never replaced the keys"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(validator.validate(&token(&new, "b")).await.is_ok());
    assert!(endpoint.fetches.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn an_unreachable_or_bad_jwks_url_is_a_clear_error() {
    let error = JwtValidator::from_jwks_url(
        "http://127.0.0.1:1/keys",
        [ISS],
        [AUD],
        JwksRefresh::default(),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("fetching the JWKS"), "{error}");
    let error = JwtValidator::from_jwks_url("ftp://x/keys", [ISS], [AUD], JwksRefresh::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not http(s)"), "{error}");
}
