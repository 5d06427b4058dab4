//! The built `Stack` answers every request exactly as its layers, nested by hand in the
//! builder's order, do: the same status, headers and body, in HTTP/1.0, 1.1 and 2, for bodies
//! whole, in pieces, cut off or stalled past the deadline; and it stores, audits and asks the
//! policy the same. The stack takes a shortcut through its layers for a request with a token
//! the validator knows good at no cost (`src/stack/service.rs`); the validator here knows a
//! token so only once it has validated it, so each token's first request goes through the
//! layers and the rest through the shortcut.

mod common;
mod equality;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use equality::*;
use http::{Method, Version};
use security_update::endpoint::Endpoint;
use security_update::{
    AuthLayer, BatchLayer, MemoryStore, ObjectKey, Principal, RequestIdLayer, SecurityStore, Stack,
    StackBuilder, StaticTokens, TimeoutLayer, TokenRejection, TokenValidator,
};
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};

/// The test's tokens, known good at no cost once validated.
#[derive(Clone, Default)]
struct Remembering {
    tokens: StaticTokens,
    validated: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Times asked whether a token is known good at no cost, and times it was.
    calls: Arc<AtomicUsize>,
    hits: Arc<AtomicUsize>,
}

impl Remembering {
    fn new() -> Self {
        Self {
            tokens: tokens(),
            ..Self::default()
        }
    }
}

impl TokenValidator for Remembering {
    type Future = std::future::Ready<Result<Principal, TokenRejection>>;

    fn validate(&self, token: &str) -> Self::Future {
        if self.tokens.is_known_good(token) {
            self.validated
                .lock()
                .unwrap()
                .push(token.as_bytes().to_vec());
        }
        self.tokens.validate(token)
    }

    fn is_known_good(&self, token: &str) -> bool {
        self.tokens.is_known_good(token)
    }

    fn cached(&self, token: &[u8]) -> Option<Principal> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let validated = self.validated.lock().unwrap();
        if !validated.iter().any(|known| known == token) {
            return None;
        }
        self.hits.fetch_add(1, Ordering::SeqCst);
        self.tokens.cached(token)
    }
}

type Answer = http::Response<http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, String>>;
type Boxed = BoxCloneService<http::Request<TestBody>, Answer, std::convert::Infallible>;

const TIMEOUT: Duration = Duration::from_secs(30);

/// One side of the comparison and its service.
fn built<S: SecurityStore>(
    (side, builder): (Side, StackBuilder<S>),
    validator: Remembering,
) -> (Side, Stack<S, Remembering>) {
    let stack = builder
        .with_body_limit(LIMIT)
        .with_max_depth(MAX_DEPTH)
        .with_rate_limit(rate_limit())
        .with_timeout(TIMEOUT)
        .build(validator);
    (side, stack)
}

/// The layers `StackBuilder` nests, nested by hand in its order, configured as `built`.
fn nested<S: SecurityStore>(
    (side, builder): (Side, StackBuilder<S>),
    validator: Remembering,
) -> (Side, Boxed) {
    let service = builder.into_service();
    let rate_limit = rate_limit();
    let nested = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(TimeoutLayer::new(TIMEOUT))
        .layer(AuthLayer::new(validator))
        .layer(BatchLayer::with_prefix(PREFIX, LIMIT).with_rate_limit(rate_limit.clone()))
        .service(Endpoint::new(service, rate_limit, merge_patch()));
    (side, boxed(nested))
}

fn boxed<S, B>(service: S) -> Boxed
where
    S: tower::Service<http::Request<TestBody>, Response = http::Response<B>>,
    S: Clone + Send + 'static,
    S::Error: Into<std::convert::Infallible>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt;
    BoxCloneService::new(
        service
            .map_response(|response: http::Response<B>| {
                response.map(|body| body.map_err(|error| format!("{error:?}")).boxed_unsync())
            })
            .map_err(Into::into),
    )
}

/// The whole sequence to both, over a store `store` makes of a memory store.
async fn the_same_in<S: SecurityStore>(version: Version, store: fn(MemoryStore) -> S) {
    let (built_validator, nested_validator) = (Remembering::new(), Remembering::new());
    let (built_side, stack) = built(Side::with_store(store), built_validator.clone());
    let (nested_side, nested) = nested(Side::with_store(store), nested_validator.clone());
    let built = boxed(stack);
    // The batch is longer than the stack's body limit, which a built stack's batch layer
    // shares: 413, on both sides.
    let expected = |case: &Case| {
        if case.path.ends_with("$batch") {
            413
        } else {
            case.status
        }
    };
    answer_alike(&built, &nested, version, expected).await;
    let (audited, asked) = same_effects(&built_side, &nested_side).await;
    // Revisions 1, 2 (in pieces), 3 (by the admin), 6 and null.
    let alice = built_side.store.load(&ObjectKey::new(TENANT, ALICE)).await;
    assert_eq!(alice.unwrap().unwrap().version(), 5);
    // Six writes and the refused attempt at Bob's object.
    assert_eq!(audited.len(), 7, "{audited:?}");
    assert!(asked > 40, "{asked}");
    // Most requests were let in by a token known good at no cost: by the stack's shortcut on
    // one side, by the auth layer on the other.
    let hits = built_validator.hits.load(Ordering::SeqCst);
    assert_eq!(hits, nested_validator.hits.load(Ordering::SeqCst));
    assert!(hits > 40, "{hits}");
    // And the shortcut was the stack's: it asks first, and a token it does not know is asked
    // again by the auth layer, so the built side asks once more for each token not known yet
    // (the batch's token is known by then, and the batch goes by the layers alone).
    let calls = built_validator.calls.load(Ordering::SeqCst);
    let nested_calls = nested_validator.calls.load(Ordering::SeqCst);
    let unknown = nested_calls - hits;
    assert!(unknown > 0, "{nested_calls}");
    assert_eq!(calls, nested_calls + unknown);
}

#[tokio::test]
async fn the_stack_answers_http_1_1_as_its_layers_nested_by_hand() {
    the_same_in(Version::HTTP_11, |store| store).await;
}

#[tokio::test]
async fn the_stack_answers_http_1_0_as_its_layers_nested_by_hand() {
    the_same_in(Version::HTTP_10, |store| store).await;
}

#[tokio::test]
async fn the_stack_answers_http_2_as_its_layers_nested_by_hand() {
    the_same_in(Version::HTTP_2, |store| store).await;
}

/// The same over a store that waits: the operations run in the service's response future.
#[tokio::test]
async fn the_stack_answers_as_its_layers_over_a_store_that_waits() {
    for version in [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2] {
        the_same_in(version, Waiting).await;
    }
}

/// A body that stalls, before its first byte or halfway, is 408 at the deadline on both
/// sides, alike (HTTP/1 connections closed), and changes nothing.
#[tokio::test(start_paused = true)]
async fn a_stalled_body_is_the_same_408() {
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let (built_validator, nested_validator) = (Remembering::new(), Remembering::new());
        let (built_side, stack) = built(Side::new(), built_validator.clone());
        let (nested_side, nested) = nested(Side::new(), nested_validator.clone());
        let built = boxed(stack);
        let get = case(Method::GET, ME, Some("alice"), &[], "", 200);
        let stalls = [
            case(
                Method::PATCH,
                ME,
                Some("alice"),
                JSON,
                r#"{"revision": 1}"#,
                408,
            ),
            case(Method::PATCH, ME, Some("alice"), JSON, "", 408),
        ];
        // The first request validates the token; the stalled ones take the shortcut.
        for case in [get]
            .into_iter()
            .chain(stalls.map(|case| case.sent_as(Frames::Stalls)))
        {
            let started = tokio::time::Instant::now();
            let from_built = built
                .clone()
                .oneshot(request_of(&case, version))
                .await
                .unwrap();
            let waited = started.elapsed();
            let from_nested = nested.clone().oneshot(request_of(&case, version));
            let (from_built, from_nested) = (
                comparable(from_built).await,
                comparable(from_nested.await.unwrap()).await,
            );
            assert_eq!(from_built.0.as_u16(), case.status, "{from_built:?}");
            assert_eq!(from_built, from_nested);
            if case.status == 408 {
                assert!(waited >= TIMEOUT, "{waited:?}");
                let close = from_built
                    .2
                    .contains(&("connection".into(), "close".into()));
                assert_eq!(close, version == Version::HTTP_11, "{from_built:?}");
            }
        }
        for side in [&built_side, &nested_side] {
            let stored = side
                .store
                .load(&ObjectKey::new(TENANT, ALICE))
                .await
                .unwrap();
            assert!(stored.is_none(), "{stored:?}");
            assert!(side.audit.0.lock().unwrap().is_empty());
        }
        assert_eq!(built_validator.hits.load(Ordering::SeqCst), 2);
        assert_eq!(nested_validator.hits.load(Ordering::SeqCst), 2);
    }
}

/// A stack built without a timeout of its own honours one mounted outside it: a write first
/// polled after that limit does not start, whichever way through the stack it goes (Bob's
/// token is new: through the layers; Alice's was validated by her read: the shortcut).
#[tokio::test(start_paused = true)]
async fn a_timeout_outside_the_stack_holds_its_writes_too() {
    use tower::{Layer, Service};
    let (side, builder) = Side::new();
    let validator = Remembering::new();
    let mut app = TimeoutLayer::new(TIMEOUT).layer(builder.build(validator.clone()));
    let get = case(Method::GET, ME, Some("alice"), &[], "", 200);
    let read = app.clone().oneshot(request_of(&get, Version::HTTP_11));
    assert_eq!(read.await.unwrap().status(), 200);
    for (token, user) in [("alice", ALICE), ("bob", BOB)] {
        let write = case(
            Method::PATCH,
            ME,
            Some(token),
            JSON,
            r#"{"revision": 1}"#,
            408,
        );
        let late = ServiceExt::<http::Request<TestBody>>::ready(&mut app)
            .await
            .unwrap()
            .call(request_of(&write, Version::HTTP_11));
        tokio::time::advance(TIMEOUT).await;
        assert_eq!(late.await.unwrap().status(), 408, "{token}");
        let stored = side
            .store
            .load(&ObjectKey::new(TENANT, user))
            .await
            .unwrap();
        assert!(stored.is_none(), "{token}: {stored:?}");
    }
    assert!(side.audit.0.lock().unwrap().is_empty());
    // Alice's write went by the shortcut; polled in time, the same write is made.
    assert_eq!(validator.hits.load(Ordering::SeqCst), 1);
    let write = case(
        Method::PATCH,
        ME,
        Some("alice"),
        JSON,
        r#"{"revision": 1}"#,
        200,
    );
    let made = app
        .oneshot(request_of(&write, Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(made.status(), 200);
    assert_eq!(validator.hits.load(Ordering::SeqCst), 2);
}
