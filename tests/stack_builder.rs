//! The stack builder: one configuration for the preflight and the service, and a timeout that
//! answers with the request's ids and never reports a started write as timed out.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{ALICE, TENANT, WRITE, patch, request, revision, send};
use http::{Method, StatusCode};
use http_body_util::Full;
use security_update::{
    DefaultPolicy, MemoryStore, ObjectKey, Principal, ResourceSchema, SecurityStore, Snapshot,
    StackBuilder, StaticTokens, StoreError, SwapOutcome,
};
use tokio::sync::Notify;

fn tokens() -> StaticTokens {
    StaticTokens::new()
        .with_token(
            "alice",
            Principal::delegated(TENANT, ALICE).with_scopes([WRITE]),
        )
        .with_token(
            "custom",
            Principal::delegated(TENANT, ALICE).with_scopes(["Custom.Write"]),
        )
}

#[tokio::test]
async fn a_custom_policy_applies_in_the_preflight_and_the_service_alike() {
    let store = MemoryStore::new();
    let app = StackBuilder::new(store.clone())
        .with_schema(ResourceSchema::open_type())
        .with_policy(DefaultPolicy::new().with_write_permissions(["Custom.Write"]))
        .build(tokens());

    // The preflight refuses before the body is read: a broken body is still 403, not 400.
    let refused = patch(&app, "/me/security", "alice", "{not json").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    // A caller with the custom permission passes the preflight and the service.
    let accepted = patch(&app, "/me/security", "custom", &revision(1)).await;
    assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);
    // The service alone (no preflight in front) decides the same with the same policy.
    let service = StackBuilder::new(store.clone())
        .with_policy(DefaultPolicy::new().with_write_permissions(["Custom.Write"]))
        .into_service();
    let mut direct = request(Method::GET, "/me/security", None)
        .body(Full::<Bytes>::default())
        .unwrap();
    direct
        .extensions_mut()
        .insert(Principal::delegated(TENANT, ALICE).with_scopes(["User.Read"]));
    assert_eq!(send(service, direct).await.status, StatusCode::FORBIDDEN);
    let key = ObjectKey::new(TENANT, ALICE);
    assert_eq!(store.load(&key).await.unwrap().unwrap().version(), 1);
}

/// A memory store whose loads, or whose compare-and-swaps, wait until the test releases them.
#[derive(Clone, Default)]
struct HeldStore {
    inner: MemoryStore,
    hold_loads: bool,
    started: Arc<Notify>,
    release: Arc<Notify>,
}

impl SecurityStore for HeldStore {
    async fn load(&self, key: &ObjectKey) -> Result<Option<Snapshot>, StoreError> {
        if self.hold_loads {
            self.started.notify_one();
            self.release.notified().await;
        }
        self.inner.load(key).await
    }

    async fn compare_and_swap(
        &self,
        key: &ObjectKey,
        expected_version: u64,
        new: Snapshot,
    ) -> Result<SwapOutcome, StoreError> {
        if !self.hold_loads {
            self.started.notify_one();
            self.release.notified().await;
        }
        self.inner
            .compare_and_swap(key, expected_version, new)
            .await
    }
}

#[tokio::test]
async fn a_timeout_answers_408_with_the_requests_ids() {
    let store = HeldStore {
        hold_loads: true,
        ..HeldStore::default()
    };
    let app = StackBuilder::new(store.clone())
        .with_timeout(Duration::from_millis(50))
        .build(tokens());
    let request = request(Method::GET, "/me/security", Some("alice"))
        .header("client-request-id", "11111111-2222-4333-8444-555555555555")
        .body(Full::<Bytes>::default())
        .unwrap();
    let reply = send(app, request).await;
    assert_eq!(reply.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(
        reply.header("client-request-id"),
        "11111111-2222-4333-8444-555555555555"
    );
    // `error_message` checks that the body's ids are the headers' ids.
    assert!(reply.error_message().contains("not completed within"));
    store.release.notify_waiters();
}

/// A read that waits for its store answers without reading a body the request declared, as
/// one answered at once does: the answer closes an HTTP/1 connection (`src/refusal.rs`).
#[tokio::test]
async fn a_read_that_waits_for_its_store_closes_over_an_unread_body() {
    let app = StackBuilder::new(HeldStore::default()).build(tokens());
    for (body, closes) in [("{}", true), ("", false)] {
        let request = request(Method::GET, "/me/security", Some("alice"))
            .header("content-type", "application/json")
            .header("content-length", body.len().to_string())
            .body(Full::from(body))
            .unwrap();
        let reply = send(app.clone(), request).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers.contains_key("connection"), closes, "{body:?}");
    }
}

/// A request first polled after its limit (hyper polls a pipelined request only once it can
/// write its answer) is timed out before any write started: 408, and nothing written.
#[tokio::test(start_paused = true)]
async fn a_write_first_polled_after_its_limit_is_408_and_writes_nothing() {
    use tower::{Service, ServiceExt};
    let memory = MemoryStore::new();
    let mut app = StackBuilder::new(memory.clone())
        .with_schema(ResourceSchema::open_type())
        .with_timeout(Duration::from_secs(30))
        .build(tokens());
    let late = request(Method::PATCH, "/me/security", Some("alice"))
        .body(Full::from(revision(1)))
        .unwrap();
    let response = ServiceExt::<http::Request<Full<Bytes>>>::ready(&mut app)
        .await
        .unwrap()
        .call(late);
    tokio::time::advance(Duration::from_secs(30)).await;
    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    let key = ObjectKey::new(TENANT, ALICE);
    assert!(
        memory.load(&key).await.unwrap().is_none(),
        "nothing written"
    );
    // Polled within its limit, the same request writes.
    let reply = patch(&app, "/me/security", "alice", &revision(1)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(memory.load(&key).await.unwrap().unwrap().version(), 1);
}

#[tokio::test]
async fn a_write_that_started_before_the_deadline_is_answered_with_its_outcome() {
    let store = HeldStore::default();
    let app = StackBuilder::new(store.clone())
        .with_schema(ResourceSchema::open_type())
        .with_timeout(Duration::from_millis(20))
        .build(tokens());
    let writer = tokio::spawn({
        let app = app.clone();
        async move { patch(&app, "/me/security", "alice", &revision(1)).await }
    });
    // The compare-and-swap has started; hold it until the deadline has certainly passed.
    tokio::time::timeout(Duration::from_secs(30), store.started.notified())
        .await
        .expect("the compare-and-swap started");
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.release.notify_one();
    let reply = writer.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let key = ObjectKey::new(TENANT, ALICE);
    assert_eq!(store.inner.load(&key).await.unwrap().unwrap().version(), 1);
}

#[tokio::test]
async fn a_patch_that_would_grow_the_object_past_its_limit_is_413_and_changes_nothing() {
    let store = MemoryStore::new();
    let app = StackBuilder::new(store.clone())
        .with_schema(ResourceSchema::open_type())
        .with_max_object_bytes(120)
        .build(tokens());
    let reply = patch(&app, "/me/security", "alice", r#"{"notes": "a long note that grows the object past its limit of one hundred and twenty bytes"}"#).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.error_message().contains("limit of 120 bytes"));
    assert!(
        store
            .load(&ObjectKey::new(TENANT, ALICE))
            .await
            .unwrap()
            .is_none()
    );
}

/// Preconditions are evaluated before the patch is applied to the object ("just before it
/// would process the request content", RFC 9110 §13.2.2): a stale `If-Match` is 412 where
/// applying the patch would have been 413 (the merged object past its size), and nothing
/// changes; with the current `ETag` the same patch is 413. (The checks of the patch alone,
/// its syntax and the names it may set, are request checks, made before.)
#[tokio::test]
async fn a_stale_if_match_is_412_whatever_applying_the_patch_would_come_to() {
    let store = MemoryStore::new();
    let app = StackBuilder::new(store.clone())
        .with_schema(ResourceSchema::open_type())
        .with_max_object_bytes(120)
        .build(tokens());
    assert_eq!(
        patch(&app, "/me/security", "alice", r#"{"notes": "short"}"#)
            .await
            .status,
        StatusCode::OK
    );
    let too_big = r#"{"notes": "a long note that grows the object past its limit of one hundred and twenty bytes"}"#;
    let with_if_match = |etag: &str| {
        request(Method::PATCH, "/me/security", Some("alice"))
            .header("if-match", etag)
            .body(Full::from(too_big))
            .unwrap()
    };
    let stale = send(app.clone(), with_if_match("\"0\"")).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let current = send(app.clone(), with_if_match("\"1\"")).await;
    assert_eq!(current.status, StatusCode::PAYLOAD_TOO_LARGE);
    let stored = store.load(&ObjectKey::new(TENANT, ALICE)).await.unwrap();
    let stored = stored.unwrap();
    assert_eq!(stored.version(), 1);
    assert_eq!(stored.document()["notes"], "short");
}

#[tokio::test]
async fn a_first_save_past_the_tenant_quota_is_507_and_updates_go_on() {
    let store = MemoryStore::new();
    let tokens = tokens().with_token(
        "app",
        Principal::application(TENANT, "dddddddd-4444-4444-8444-dddddddddddd").with_roles([WRITE]),
    );
    let app = StackBuilder::new(store.clone())
        .with_schema(ResourceSchema::open_type())
        .with_max_objects_per_tenant(2)
        .build(tokens);
    let user = |n: u32| format!("/users/00000000-0000-4000-8000-{n:012}/security");
    assert_eq!(
        patch(&app, &user(1), "app", &revision(1)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        patch(&app, &user(2), "app", &revision(1)).await.status,
        StatusCode::OK
    );
    let full = patch(&app, &user(3), "app", &revision(1)).await;
    assert_eq!(full.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(full.json()["error"]["code"], "quotaLimitReached");
    assert!(full.error_message().contains("limit of 2"));
    assert_eq!(store.len(), 2, "nothing was created");
    // Existing objects still update.
    assert_eq!(
        patch(&app, &user(1), "app", &revision(2)).await.status,
        StatusCode::OK
    );
}

/// A policy that counts how often it is asked.
#[derive(Debug)]
struct Counted(DefaultPolicy, Arc<std::sync::atomic::AtomicUsize>);

impl security_update::Policy for Counted {
    fn authorize(
        &self,
        principal: &Principal,
        access: security_update::Access,
        target: &security_update::Target<'_>,
    ) -> Result<ObjectKey, security_update::GraphError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.authorize(principal, access, target)
    }
}

/// A decision is taken only by the service of the configuration that made it: another
/// stack's preflight in front (a looser policy, say) does not decide for this service, which
/// asks its own policy and refuses what that refuses.
#[tokio::test]
async fn another_stacks_preflight_does_not_decide_for_this_service() {
    use security_update::{ContentTypeLayer, MergePatchLayer, Policy};
    use tower::ServiceBuilder;

    /// Lets anyone write (and counts): the policy of the other stack.
    #[derive(Debug)]
    struct Anyone(Arc<std::sync::atomic::AtomicUsize>);
    impl Policy for Anyone {
        fn authorize(
            &self,
            principal: &Principal,
            _: security_update::Access,
            target: &security_update::Target<'_>,
        ) -> Result<ObjectKey, security_update::GraphError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            DefaultPolicy::new().authorize(principal, security_update::Access::Read, target)
        }
    }
    let store = MemoryStore::new();
    let (theirs, ours) = (
        Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        Arc::new(std::sync::atomic::AtomicUsize::new(0)),
    );
    let other = StackBuilder::new(store.clone())
        .with_policy(Anyone(theirs.clone()))
        .into_service();
    let service = StackBuilder::new(store.clone())
        .with_schema(ResourceSchema::open_type())
        .with_policy(Counted(DefaultPolicy::new(), ours.clone()))
        .into_service();
    let app = ServiceBuilder::new()
        .layer(other.preflight_layer())
        .layer(ContentTypeLayer::new())
        .layer(MergePatchLayer::new())
        .service(service);
    let reader = Principal::delegated(TENANT, ALICE).with_scopes([common::READ]);
    let mut sent = request(Method::PATCH, "/me/security", None)
        .body(Full::from(r#"{"notes":"x"}"#))
        .unwrap();
    sent.extensions_mut().insert(reader);
    let reply = send(app, sent).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{:?}", reply.body);
    assert_eq!(store.len(), 0, "nothing written");
    let asked = |count: &Arc<std::sync::atomic::AtomicUsize>| {
        count.load(std::sync::atomic::Ordering::SeqCst)
    };
    assert_eq!(
        (asked(&theirs), asked(&ours)),
        (1, 1),
        "each policy asked once"
    );
}

/// The preflight hands its decision to the service, which takes it only for the request it
/// was made for. Between the two, a layer that swaps the principal for one that may only read,
/// or rewrites `/me/security` to another user's object, gets the service's own decision: 403,
/// and nothing written. With nothing in between, the write lands.
#[tokio::test]
async fn the_preflights_decision_holds_only_for_the_request_it_was_made_for() {
    use security_update::{ContentTypeLayer, MergePatchLayer};
    use tower::{Layer, ServiceBuilder, ServiceExt};

    #[derive(Clone, Copy, Debug)]
    enum Between {
        Nothing,
        ReaderPrincipal,
        OtherUsersPath,
    }
    let reader = Principal::delegated(TENANT, ALICE).with_scopes([common::READ]);
    let writer = Principal::delegated(TENANT, ALICE).with_scopes([WRITE]);
    for between in [
        Between::ReaderPrincipal,
        Between::OtherUsersPath,
        Between::Nothing,
    ] {
        let store = MemoryStore::new();
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let service = StackBuilder::new(store.clone())
            .with_schema(ResourceSchema::open_type())
            .with_policy(Counted(DefaultPolicy::new(), asked.clone()))
            .into_service();
        let reader = reader.clone();
        let meddle = tower::layer::layer_fn(
            move |inner: security_update::SecurityUpdateService<MemoryStore>| {
                let reader = reader.clone();
                let inner = ContentTypeLayer::new().layer(MergePatchLayer::new().layer(inner));
                tower::service_fn(move |mut request: http::Request<Full<Bytes>>| {
                    match between {
                        Between::Nothing => {}
                        Between::ReaderPrincipal => {
                            request.extensions_mut().insert(reader.clone());
                        }
                        Between::OtherUsersPath => {
                            *request.uri_mut() =
                                format!("/users/{}/security", common::BOB).parse().unwrap();
                        }
                    }
                    inner.clone().oneshot(request)
                })
            },
        );
        let app = ServiceBuilder::new()
            .layer(service.preflight_layer())
            .layer(meddle)
            .service(service);
        let mut sent = request(Method::PATCH, "/me/security", None)
            .body(Full::from(r#"{"notes":"x"}"#))
            .unwrap();
        sent.extensions_mut().insert(writer.clone());
        let reply = send(app, sent).await;
        let expected = match between {
            Between::Nothing => StatusCode::OK,
            _ => StatusCode::FORBIDDEN,
        };
        assert_eq!(reply.status, expected, "{between:?}: {:?}", reply.body);
        assert_eq!(
            store.len(),
            usize::from(expected == StatusCode::OK),
            "{between:?}"
        );
        // Decided once when the decision holds; by the service again when it does not.
        let times = asked.load(std::sync::atomic::Ordering::SeqCst);
        let decided_once = matches!(between, Between::Nothing);
        assert_eq!(times, if decided_once { 1 } else { 2 }, "{between:?}");
    }
}

/// What a request in flight holds in the stack's own future, the same whatever it waits for.
/// The parts only some requests need while they wait (a body being read, a token being
/// checked, the ids for a 408) are boxed or shared, so a request does not carry room for them
/// all; inline they made this future 632 bytes, and each outer layer's future (a server adds
/// its own) held it and copied it as it was made.
#[test]
fn a_request_in_flight_holds_a_small_future() {
    fn future_size<S: tower::Service<R>, R>(_: &S) -> usize {
        std::mem::size_of::<S::Future>()
    }
    let app = StackBuilder::new(MemoryStore::new())
        .with_timeout(Duration::from_secs(30))
        .build(tokens());
    let size = future_size::<_, http::Request<Full<Bytes>>>(&app);
    assert!(size <= 320, "the stack's future is {size} bytes");
}

/// The checks before the body (one service in the built stack) keep their layers' order: the
/// rate limit first, then the route and the permission, then the content type, all before
/// the body is read; a request any of them refuses changes nothing; and the preflight's
/// decision still reaches the service, which does not ask the policy again.
#[tokio::test]
async fn the_checks_before_the_body_refuse_in_order_and_change_nothing() {
    let store = MemoryStore::new();
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let policy_asked = || asked.load(std::sync::atomic::Ordering::SeqCst);
    let app = StackBuilder::new(store.clone())
        .with_schema(ResourceSchema::open_type())
        .with_policy(Counted(DefaultPolicy::new(), asked.clone()))
        .with_rate_limit(
            security_update::RateLimitLayer::new(1, Duration::from_secs(3600)).with_burst(1),
        )
        .build(common::tokens());
    // Not JSON in either sense: were the content type not checked before the body is read,
    // the body's parse would answer 400.
    let text = |path: &str, token: &str| {
        http::Request::patch(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "text/plain")
            .body(Full::from("plain words, not JSON"))
            .unwrap()
    };
    // Without the permission, with a body that is not JSON: the permission is checked first.
    assert_eq!(
        send(app.clone(), text("/me/security", "noscope"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // No such route, a body that is not JSON: the route first.
    assert_eq!(
        send(app.clone(), text("/nowhere", "app")).await.status,
        StatusCode::NOT_FOUND
    );
    // Routed and permitted, not JSON: 415. (Each caller has one request an hour: `noscope`
    // is Alice, the others are users and an application of their own.)
    assert_eq!(
        send(app.clone(), text("/me/security", "admin"))
            .await
            .status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    // Bob's one request of the hour: the policy is asked once, by the preflight; the service
    // takes its decision.
    let before = policy_asked();
    let written = patch(&app, "/me/security", "bob", &revision(1)).await;
    assert_eq!(written.status, StatusCode::OK);
    assert_eq!(policy_asked() - before, 1);
    // His next are 429 before their route, permission or content type is looked at.
    let before = policy_asked();
    for path in ["/nowhere", "/me/security"] {
        let limited = send(app.clone(), text(path, "bob")).await;
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(limited.headers.contains_key(http::header::RETRY_AFTER));
    }
    assert_eq!(policy_asked(), before, "the policy was not asked");
    // Nothing refused was written; Bob's one write was.
    for user in [ALICE, common::ADMIN] {
        let stored = store.load(&ObjectKey::new(TENANT, user)).await.unwrap();
        assert!(stored.is_none(), "{user}: {stored:?}");
    }
    let bob = store.load(&ObjectKey::new(TENANT, common::BOB)).await;
    assert_eq!(bob.unwrap().unwrap().version(), 1);
}

/// The built stack asks the policy once a request, before the body is read, whatever the
/// path's length (a percent-encoded user id makes a path of 124 bytes; a preflight's decision
/// carried in the extensions kept only 96).
#[tokio::test]
async fn the_built_stack_asks_the_policy_once_for_a_long_path() {
    let store = MemoryStore::new();
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = StackBuilder::new(store.clone())
        .with_schema(ResourceSchema::open_type())
        .with_policy(Counted(DefaultPolicy::new(), asked.clone()))
        .build(common::tokens());
    let encoded: String = ALICE.bytes().map(|byte| format!("%{byte:02X}")).collect();
    let path = format!("/users/{encoded}/security");
    assert!(path.len() > 96, "{}", path.len());
    let written = patch(&app, &path, "admin", &revision(1)).await;
    assert_eq!(written.status, StatusCode::OK);
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    let stored = store.load(&ObjectKey::new(TENANT, ALICE)).await.unwrap();
    assert_eq!(stored.map(|snapshot| snapshot.version()), Some(1));
}
