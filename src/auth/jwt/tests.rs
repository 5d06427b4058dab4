//! Unit tests of the JWT validator: claims, leeway, keys, cache.

use super::*;
use serde_json::json;

const ISS: &str = "https://login.microsoftonline.com/t/v2.0";
const AUD: &str = "api://security-update";

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let now = unix_now();
    let mut base = json!({
        "iss": ISS, "aud": AUD, "exp": now + 600, "nbf": now - 10, "iat": now - 10,
        "tid": "t", "oid": "o", "scp": "SecurityEvents.ReadWrite.All User.Read",
        "upn": "u@example.com", "wids": ["w"],
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

fn setup() -> (EphemeralSigner, JwtValidator) {
    let signer = EphemeralSigner::generate().unwrap();
    let validator = JwtValidator::new(signer.jwks(), [ISS], [AUD]).unwrap();
    (signer, validator)
}

fn check(validator: &JwtValidator, token: &str) -> Result<Principal, String> {
    validator
        .validate(token)
        .now()
        .expect("a file-based validator answers at once")
        .map_err(|r| r.description().to_owned())
}

#[test]
fn a_good_token_becomes_a_delegated_principal() {
    let (signer, validator) = setup();
    let principal = check(&validator, &signer.sign(&claims(json!({}))).unwrap()).unwrap();
    assert_eq!(principal.tenant_id(), "t");
    assert_eq!(principal.object_id(), "o");
    assert_eq!(principal.upn(), Some("u@example.com"));
    assert!(principal.has_permission("SecurityEvents.ReadWrite.All"));
    assert!(principal.has_role_template("w"));
}

#[test]
fn roles_without_scp_make_an_application() {
    let (signer, validator) = setup();
    let token = signer
        .sign(&claims(
            json!({"scp": null, "roles": ["SecurityEvents.ReadWrite.All"], "appid": "a"}),
        ))
        .unwrap();
    let principal = check(&validator, &token).unwrap();
    assert_eq!(principal.kind(), super::super::PrincipalKind::Application);
    assert_eq!(principal.app_id(), Some("a"));
}

#[test]
fn claims_are_enforced() {
    let (signer, validator) = setup();
    let now = unix_now();
    let cases = [
        (json!({"exp": now - 3600}), "expired"),
        (json!({"nbf": now + 3600}), "not valid yet"),
        (json!({"aud": "api://other"}), "audience"),
        (json!({"iss": "https://evil/"}), "issuer"),
        (json!({"aud": null}), "required claim"),
        (json!({"iss": null}), "required claim"),
        (json!({"tid": null}), "tenant"),
        (json!({"oid": null}), "object"),
        // Single-valued claims are strings (RFC 7519 §4.1.1); an array must not pass because
        // one of its members is the right issuer.
        (json!({"iss": ["https://evil/", ISS]}), "wrong types"),
        (json!({"tid": ["t", "u"]}), "wrong types"),
        (json!({"oid": 42}), "wrong types"),
    ];
    for (extra, needle) in cases {
        let token = signer.sign(&claims(extra.clone())).unwrap();
        let error = check(&validator, &token).unwrap_err();
        assert!(error.contains(needle), "{extra}: {error}");
    }
}

#[test]
fn leeway_tolerates_small_skew() {
    let (signer, validator) = setup();
    let token = signer
        .sign(&claims(json!({"exp": unix_now() - 5})))
        .unwrap();
    assert!(check(&validator, &token).is_ok());
    let strict = validator.with_leeway(Duration::ZERO);
    assert_eq!(strict.leeway_secs(), 0);
    assert!(check(&strict, &token).is_err());
}

#[test]
fn another_keys_signature_is_refused() {
    let (_, validator) = setup();
    let (other, _) = setup();
    let token = other.sign(&claims(json!({}))).unwrap();
    assert!(check(&validator, &token).unwrap_err().contains("kid"));
}

#[test]
fn cached_tokens_are_dropped_when_keys_change() {
    let (signer, validator) = setup();
    let token = signer.sign(&claims(json!({}))).unwrap();
    assert!(check(&validator, &token).is_ok());
    assert!(check(&validator, &token).is_ok(), "served from the cache");
    let (other, _) = setup();
    validator.replace_keys(other.jwks()).unwrap();
    assert!(
        check(&validator, &token).is_err(),
        "a rotated-out key still works"
    );
}

#[test]
fn cache_stays_bounded() {
    let (signer, validator) = setup();
    let validator = validator.with_cache_capacity(4);
    let mut tokens = Vec::new();
    for i in 0..20 {
        let token = signer
            .sign(&claims(json!({"oid": format!("o{i}")})))
            .unwrap();
        assert!(check(&validator, &token).is_ok());
        let len = validator.shared.cache.len();
        assert!(len <= 4, "cache grew to {len}");
        // The token just verified is found, by its own bytes only.
        assert!(validator.cached(token.as_bytes()).is_some(), "token {i}");
        tokens.push(token);
    }
    let found = tokens
        .iter()
        .filter(|token| validator.cached(token.as_bytes()).is_some())
        .count();
    assert!((1..=4).contains(&found), "{found} tokens found");
}

#[test]
fn jwks_without_usable_keys_is_a_config_error() {
    assert!(JwtValidator::from_jwks_json(r#"{"keys":[]}"#, [ISS], [AUD]).is_err());
    let hmac = r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#;
    assert!(JwtValidator::from_jwks_json(hmac, [ISS], [AUD]).is_err());
    assert!(JwtValidator::from_jwks_json("nope", [ISS], [AUD]).is_err());
    let (signer, _) = setup();
    assert!(JwtValidator::new(signer.jwks(), Vec::<String>::new(), [AUD]).is_err());
}

#[test]
fn a_bad_signature_is_remembered_until_the_keys_change_and_not_yet_valid_is_not() {
    let (signer, validator) = setup();
    let good = signer.sign(&claims(json!({}))).unwrap();
    // Same header and claims, another signature: a forgery of a known kid.
    let (head_and_claims, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{head_and_claims}.{}", "A".repeat(86));
    let first = check(&validator, &forged).unwrap_err();
    assert!(first.contains("signature is invalid"), "{first}");
    assert_eq!(validator.shared.rejections.len(), 1);
    assert_eq!(check(&validator, &forged).unwrap_err(), first);
    // A token that is only early is not remembered: it becomes valid by itself.
    let early = signer
        .sign(&claims(json!({"nbf": unix_now() + 3600})))
        .unwrap();
    assert!(
        check(&validator, &early)
            .unwrap_err()
            .contains("not valid yet")
    );
    assert_eq!(validator.shared.rejections.len(), 1);
    // New keys: every remembered refusal is forgotten.
    validator.replace_keys(signer.jwks()).unwrap();
    assert_eq!(validator.shared.rejections.len(), 0);
    // The genuine token is accepted, and then known good without work; a refused one, an
    // early one and a changed one are not found in the cache.
    assert!(!validator.is_known_good(&good));
    assert!(validator.cached(good.as_bytes()).is_none());
    assert!(check(&validator, &good).is_ok());
    assert!(validator.is_known_good(&good));
    let principal = validator.cached(good.as_bytes()).expect("cached");
    assert_eq!(
        principal.object_id(),
        check(&validator, &good).unwrap().object_id()
    );
    for unknown in [forged.as_bytes(), early.as_bytes(), &good.as_bytes()[1..]] {
        assert!(validator.cached(unknown).is_none());
    }
}

/// Token outcomes, as an observer sees them.
#[derive(Default)]
struct Outcomes(std::sync::Mutex<Vec<crate::observe::TokenOutcome>>);

impl crate::observe::Observer for Outcomes {
    fn token(&self, outcome: crate::observe::TokenOutcome) {
        self.0.lock().unwrap().push(outcome);
    }
}

/// Behind the auth layer, a token's first request verifies it and its later ones are let in
/// from the cache (before the scan of its form), each reported as a cache hit.
#[tokio::test]
async fn behind_the_layer_a_known_token_is_a_reported_cache_hit() {
    use crate::observe::TokenOutcome;
    use tower::{Layer, ServiceExt};
    let (signer, validator) = setup();
    let outcomes = std::sync::Arc::new(Outcomes::default());
    let validator = validator.with_observer(outcomes.clone());
    let token = signer.sign(&claims(json!({}))).unwrap();
    let svc = crate::AuthLayer::new(validator).layer(tower::service_fn(
        |request: http::Request<()>| async move {
            let principal = request.extensions().get::<Principal>().cloned();
            Ok::<_, std::convert::Infallible>(http::Response::new(
                principal
                    .map(|p| p.object_id().to_owned())
                    .unwrap_or_default(),
            ))
        },
    ));
    for _ in 0..3 {
        let request = http::Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        let response = svc.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        *outcomes.0.lock().unwrap(),
        [
            TokenOutcome::Verified,
            TokenOutcome::CacheHit,
            TokenOutcome::CacheHit
        ]
    );
}
