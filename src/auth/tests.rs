//! Unit tests of the auth layer: schemes, challenges, validators that wait.

use super::*;
use http::header::{self, HeaderMap};
use std::convert::Infallible;
use tower::{ServiceExt, service_fn};

async fn who(request: Request<()>) -> Result<Response<String>, Infallible> {
    let principal = request.extensions().get::<Principal>().cloned();
    Ok(Response::new(
        principal.map_or("nobody".to_owned(), |p| p.object_id().to_owned()),
    ))
}

fn tokens() -> StaticTokens {
    StaticTokens::new().with_token("good.token", Principal::delegated("t", "alice"))
}

async fn send(headers: &[(&str, &str)]) -> Response<ResponseBody<String>> {
    let mut builder = Request::get("/me/security");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    AuthLayer::new(tokens())
        .layer(service_fn(who))
        .oneshot(builder.body(()).unwrap())
        .await
        .unwrap()
}

fn challenge(response: &Response<ResponseBody<String>>) -> &str {
    response.headers()["www-authenticate"].to_str().unwrap()
}

#[tokio::test]
async fn valid_token_puts_principal_in_extensions() {
    let response = send(&[("authorization", "Bearer good.token")]).await;
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    assert_eq!(&body.to_bytes()[..], b"alice");
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let response = send(&[("authorization", &format!("{scheme} good.token"))]).await;
        assert_eq!(response.status(), 200, "{scheme}");
    }
}

#[tokio::test]
async fn token_is_byte_exact() {
    let response = send(&[("authorization", "Bearer GOOD.TOKEN")]).await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn missing_credentials_get_a_challenge_without_error() {
    for headers in [vec![], vec![("authorization", "Basic dXNlcjpwYXNz")]] {
        let response = send(&headers).await;
        assert_eq!(response.status(), 401);
        assert_eq!(challenge(&response), "Bearer realm=\"security-update\"");
    }
}

#[tokio::test]
async fn bad_credentials_get_invalid_token() {
    for value in [
        "Bearer wrong",
        "Bearer ",
        "Bearer",
        "Bearer a b",
        "Bearer ===",
        "Bearer a\"b",
    ] {
        let response = send(&[("authorization", value)]).await;
        assert_eq!(response.status(), 401, "{value}");
        assert!(
            challenge(&response).contains("error=\"invalid_token\""),
            "{value}"
        );
        assert!(
            !challenge(&response).contains("wrong"),
            "token leaked: {value}"
        );
    }
}

#[tokio::test]
async fn duplicate_authorization_is_invalid_request() {
    let response = send(&[
        ("authorization", "Bearer good.token"),
        ("authorization", "Bearer good.token"),
    ])
    .await;
    assert_eq!(response.status(), 400);
    assert!(challenge(&response).contains("error=\"invalid_request\""));
}

#[tokio::test]
async fn error_body_is_graph_envelope() {
    let response = send(&[("authorization", "Bearer wrong")]).await;
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body.to_bytes()).unwrap();
    assert_eq!(json["error"]["code"], "InvalidAuthenticationToken");
    assert!(json["error"]["innerError"]["request-id"].is_string());
}

/// A validator that answers only after yielding once, to drive the pending path.
struct Slow;

impl TokenValidator for Slow {
    type Future = Pin<Box<dyn Future<Output = Result<Principal, TokenRejection>> + Send>>;
    fn validate(&self, token: &str) -> Self::Future {
        let ok = token == "slow";
        Box::pin(async move {
            tokio::task::yield_now().await;
            if ok {
                Ok(Principal::delegated("t", "slowpoke"))
            } else {
                Err(TokenRejection::new("no"))
            }
        })
    }
}

#[tokio::test]
async fn asynchronous_validators_work() {
    let svc = AuthLayer::new(Slow).layer(service_fn(who));
    let ok = Request::get("/")
        .header("authorization", "Bearer slow")
        .body(())
        .unwrap();
    let response = svc.clone().oneshot(ok).await.unwrap();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    assert_eq!(&body.to_bytes()[..], b"slowpoke");
    let bad = Request::get("/")
        .header("authorization", "Bearer fast")
        .body(())
        .unwrap();
    assert_eq!(svc.oneshot(bad).await.unwrap().status(), 401);
}

#[test]
fn shipped_validator_futures_are_unpin() {
    fn unpin<T: Unpin>() {}
    unpin::<<StaticTokens as TokenValidator>::Future>();
    #[cfg(feature = "jwt")]
    unpin::<<crate::JwtValidator as TokenValidator>::Future>();
}

#[test]
fn bearer_tokens_must_be_token68() {
    let token = |value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        match bearer_token(&headers) {
            Ok(token) => Ok(token.to_owned()),
            Err(AuthFailure::Malformed(why)) => Err(why),
            Err(_) => Err("other"),
        }
    };
    assert_eq!(
        token("Bearer abc-._~+/XYZ09==").as_deref(),
        Ok("abc-._~+/XYZ09==")
    );
    assert_eq!(token("bearer    spaced").as_deref(), Ok("spaced"));
    assert_eq!(token("Bearer "), Err("Access token is empty."));
    let with_byte = |bytes: &[u8]| {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(bytes).unwrap(),
        );
        match bearer_token(&headers) {
            Err(AuthFailure::Malformed(why)) => why,
            other => panic!("{other:?}"),
        }
    };
    // A byte past ASCII, in the token or the scheme, is named as such.
    assert_eq!(
        with_byte(b"Bearer abc\xe9"),
        "the Authorization header is not ASCII"
    );
    assert_eq!(
        with_byte(b"B\xe9arer abc"),
        "the Authorization header is not ASCII"
    );
    for bad in [
        "Bearer a b",
        "Bearer a,b",
        "Bearer a=b",
        "Bearer ===",
        "Bearer a\"b",
    ] {
        assert_eq!(
            token(bad),
            Err("the bearer token is not well formed"),
            "{bad}"
        );
    }
}

/// A validator whose cache knows one token; its `validate` knows none, and counts its calls.
struct CachedOnly {
    validated: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenValidator for CachedOnly {
    type Future = std::future::Ready<Result<Principal, TokenRejection>>;
    fn validate(&self, _: &str) -> Self::Future {
        self.validated
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::future::ready(Err(TokenRejection::new("not known")))
    }
    fn cached(&self, token: &[u8]) -> Option<Principal> {
        (token == b"known.token").then(|| Principal::delegated("t", "cached"))
    }
}

/// A token the validator's cache knows is let in without `validate`; any other goes through
/// the form check and `validate` as before, and a malformed one is refused for its form.
#[tokio::test]
async fn a_cached_token_is_let_in_before_its_form_is_checked() {
    let validated = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let svc = AuthLayer::new(CachedOnly {
        validated: validated.clone(),
    })
    .layer(service_fn(who));
    let send = |value: &'static str| {
        let request = Request::get("/")
            .header("authorization", value)
            .body(())
            .unwrap();
        svc.clone().oneshot(request)
    };
    let response = send("Bearer known.token").await.unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    assert_eq!(&body.to_bytes()[..], b"cached");
    assert_eq!(validated.load(std::sync::atomic::Ordering::Relaxed), 0);

    let response = send("Bearer other.token").await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(validated.load(std::sync::atomic::Ordering::Relaxed), 1);

    let response = send("Bearer known token").await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(challenge_of(&response).contains("not well formed"));
    assert_eq!(validated.load(std::sync::atomic::Ordering::Relaxed), 1);
}

fn challenge_of<B>(response: &Response<B>) -> String {
    response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// A static table knows its tokens good at no cost, but only those of a bearer token's form:
/// a malformed entry is still refused for its form, as before the table was asked first.
#[tokio::test]
async fn a_static_token_is_known_good_when_it_is_well_formed() {
    let tokens = tokens().with_token("bad token", Principal::delegated("t", "bob"));
    let known = tokens.cached(b"good.token").unwrap();
    assert_eq!(known.object_id(), "alice");
    assert!(tokens.cached(b"good.tokenx").is_none());
    assert!(tokens.cached(b"good.toke").is_none());
    assert!(tokens.cached(b"bad token").is_none());
    assert!(tokens.is_known_good("bad token"));
    let svc = AuthLayer::new(tokens).layer(service_fn(who));
    let request = Request::get("/")
        .header("authorization", "Bearer bad token")
        .body(())
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(challenge_of(&response).contains("not well formed"));
}
