//! Fuzzing on the stable toolchain: property-based fuzz targets (proptest) for the whole
//! request pipeline in process, for token parsing and validation, and (in `properties.rs`) for
//! `apply`. Each target first replays the corpus in `tests/fuzz-corpus/`, then generated
//! inputs. CI runs the default 256 cases per target; a longer run is one command:
//!
//! ```text
//! PROPTEST_CASES=200000 cargo test --release --all-features --test fuzz --test properties
//! ```

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use http::{Method, Request};
use http_body_util::Full;
use proptest::prelude::*;
use security_update::TokenValidator;
use security_update::auth::{EphemeralSigner, JwtValidator};

fn corpus(name: &str) -> Vec<String> {
    let path = format!("{}/tests/fuzz-corpus/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// One request through the whole stack; checks the invariants every answer must keep.
async fn pipeline_case(method: Method, path: &str, content_type: Option<&str>, body: Vec<u8>) {
    let (app, store) = app();
    assert_eq!(patch(&app, "/me/security", "alice", "{}").await.status, 200);
    let before = store.entries();
    let Ok(uri) = path.parse::<http::Uri>() else {
        return;
    };
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", "Bearer alice");
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let reply = send(
        app.clone(),
        request.body(Full::new(Bytes::from(body))).unwrap(),
    )
    .await;
    assert!(reply.status.as_u16() < 500, "5xx: {:?}", reply.body);
    assert_eq!(reply.header("request-id").len(), 36);
    if reply.status.is_success() {
        // A success may only have touched Alice's object.
        let after = store.entries();
        assert_eq!(after.len(), before.len());
    } else {
        reply.error_message();
        assert_eq!(store.entries(), before, "a refusal changed the store");
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn pipeline_corpus() {
    let paths = corpus("paths.txt");
    for body in corpus("bodies.txt") {
        for path in &paths {
            for method in [Method::PATCH, Method::GET] {
                block_on(pipeline_case(
                    method,
                    path,
                    Some("application/json"),
                    body.clone().into_bytes(),
                ));
            }
        }
    }
}

fn path_strategy() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("me".to_owned()),
        Just("users".to_owned()),
        Just("security".to_owned()),
        Just(ALICE.to_owned()),
        Just("..".to_owned()),
        Just("%2F".to_owned()),
        Just("%ff".to_owned()),
        Just("%00".to_owned()),
        "[a-zA-Z0-9%.~-]{0,12}",
    ];
    prop::collection::vec(segment, 0..5).prop_map(|segments| format!("/{}", segments.join("/")))
}

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        "[{}\\[\\]\":,a-z0-9 .@#null\\\\u-]{0,64}".prop_map(String::into_bytes),
        Just(b"{}".to_vec()),
    ]
}

proptest! {
    #[test]
    fn pipeline_never_fails_open_or_500s(
        method in prop_oneof![Just(Method::PATCH), Just(Method::GET), Just(Method::POST), Just(Method::DELETE)],
        path in path_strategy(),
        content_type in prop::option::of(prop_oneof![
            Just("application/json".to_owned()),
            Just("application/merge-patch+json".to_owned()),
            "[a-z/;=+ -]{0,30}",
        ]),
        body in body_strategy(),
    ) {
        block_on(pipeline_case(method, &path, content_type.as_deref(), body));
    }
}

fn validator() -> (EphemeralSigner, JwtValidator) {
    let signer = EphemeralSigner::generate().unwrap();
    let validator = JwtValidator::new(signer.jwks(), ["iss"], ["aud"]).unwrap();
    // The validator must accept a good token, or "refused" below would prove nothing.
    assert!(
        !refused(&validator, &good_token(&signer)),
        "a valid token was refused"
    );
    (signer, validator)
}

fn good_token(signer: &EphemeralSigner) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    signer
        .sign(&serde_json::json!({
            "iss": "iss", "aud": "aud", "exp": now + 600, "tid": "t", "oid": "o", "scp": "x"
        }))
        .unwrap()
}

fn refused(validator: &JwtValidator, token: &str) -> bool {
    block_on(validator.validate(token)).is_err()
}

#[test]
fn token_corpus_is_refused() {
    let (_, validator) = validator();
    for token in corpus("tokens.txt") {
        assert!(refused(&validator, &token), "accepted {token:?}");
    }
}

proptest! {
    #[test]
    fn arbitrary_tokens_are_refused_without_panic(token in "\\PC{0,200}") {
        let (_, validator) = validator();
        prop_assert!(refused(&validator, &token));
    }

    #[test]
    fn jwt_shaped_garbage_is_refused(parts in prop::collection::vec("[A-Za-z0-9_-]{0,60}", 3)) {
        let (_, validator) = validator();
        prop_assert!(refused(&validator, &parts.join(".")));
    }

    #[test]
    fn any_change_to_a_valid_token_is_refused(position in 0usize..1000, replacement in "[A-Za-z0-9_.-]") {
        let (signer, validator) = validator();
        let token = good_token(&signer);
        prop_assert!(!refused(&validator, &token));
        let position = position % token.len();
        let mut mutated = token.clone().into_bytes();
        mutated[position] = replacement.as_bytes()[0];
        let mutated = String::from_utf8(mutated).unwrap();
        // Base64url's last character carries unused low bits, so a few edits decode to the
        // same bytes; anything that changes the decoded token must be refused.
        let accepted = !refused(&validator, &mutated);
        if accepted {
            prop_assert!(mutated == token || same_decoded(&token, &mutated), "accepted {mutated}");
        }
    }
}

/// Whether two tokens decode to the same three byte strings.
fn same_decoded(a: &str, b: &str) -> bool {
    fn decode(segment: &str) -> Vec<u8> {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bits = 0u32;
        let mut count = 0;
        let mut out = Vec::new();
        for c in segment.bytes() {
            let Some(v) = alphabet.iter().position(|&x| x == c) else {
                return vec![c];
            };
            bits = (bits << 6) | v as u32;
            count += 6;
            if count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
            }
        }
        out
    }
    let (a, b): (Vec<_>, Vec<_>) = (
        a.split('.').map(decode).collect(),
        b.split('.').map(decode).collect(),
    );
    a == b
}
