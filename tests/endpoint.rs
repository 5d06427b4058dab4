//! The stack's `Endpoint` (the checks before the body, the merge patch and the service as one
//! service) answers every request exactly as the pieces it fuses, nested by hand, do: the same
//! status, headers and body, in HTTP/1.0, 1.1 and 2, for bodies whole, in pieces or cut off;
//! and it stores, audits and asks the policy the same.

mod common;
mod equality;

use std::sync::atomic::Ordering;

use common::*;
use equality::*;
use http::Version;
use security_update::endpoint::Endpoint;
use security_update::{
    AuthLayer, BatchLayer, ContentTypeLayer, ObjectKey, RequestIdLayer, SecurityStore,
};
use tower::{ServiceBuilder, ServiceExt};

async fn the_same_in(version: Version) {
    let (fused_side, service) = Side::new();
    let service = service.into_service();
    let fused = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(AuthLayer::new(tokens()))
        .layer(BatchLayer::with_prefix(PREFIX, 4096).with_rate_limit(rate_limit()))
        .service(Endpoint::new(service, rate_limit(), merge_patch()));
    let (nested_side, service) = Side::new();
    let service = service.into_service();
    let nested = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(AuthLayer::new(tokens()))
        .layer(BatchLayer::with_prefix(PREFIX, 4096).with_rate_limit(rate_limit()))
        .layer(rate_limit())
        .layer(service.preflight_layer())
        .layer(ContentTypeLayer::new())
        .layer(merge_patch())
        .service(service);

    for case in cases() {
        let what = format!(
            "{version:?} {} {} {:?}",
            case.method, case.path, case.headers
        );
        let from_fused = comparable(
            fused
                .clone()
                .oneshot(request_of(&case, version))
                .await
                .unwrap(),
        );
        let from_nested = comparable(
            nested
                .clone()
                .oneshot(request_of(&case, version))
                .await
                .unwrap(),
        );
        let (from_fused, from_nested) = (from_fused.await, from_nested.await);
        assert_eq!(from_fused.0.as_u16(), case.status, "{what}: {from_fused:?}");
        assert_eq!(from_fused, from_nested, "{what}");
    }
    // Each wrote, audited and asked the policy the same.
    for user in [ALICE, BOB] {
        let key = ObjectKey::new(TENANT, user);
        let fused = fused_side.store.load(&key).await.unwrap().unwrap();
        let nested = nested_side.store.load(&key).await.unwrap().unwrap();
        assert_eq!(fused.version(), nested.version(), "{user}");
        assert_eq!(fused.document(), nested.document(), "{user}");
    }
    // Revisions 1, 2 (in pieces), 3 (by the admin), 6, null, and the batch's one.
    let alice = fused_side.store.load(&ObjectKey::new(TENANT, ALICE)).await;
    assert_eq!(alice.unwrap().unwrap().version(), 6);
    let audited = fused_side.audit.0.lock().unwrap().clone();
    assert_eq!(audited, *nested_side.audit.0.lock().unwrap());
    // Seven writes and the refused attempt at Bob's object.
    assert_eq!(audited.len(), 8, "{audited:?}");
    let asked = fused_side.asked.load(Ordering::SeqCst);
    assert_eq!(asked, nested_side.asked.load(Ordering::SeqCst));
    assert!(asked > 40, "{asked}");
}

#[tokio::test]
async fn the_endpoint_answers_http_1_1_as_the_pieces_it_fuses() {
    the_same_in(Version::HTTP_11).await;
}

#[tokio::test]
async fn the_endpoint_answers_http_1_0_as_the_pieces_it_fuses() {
    the_same_in(Version::HTTP_10).await;
}

#[tokio::test]
async fn the_endpoint_answers_http_2_as_the_pieces_it_fuses() {
    the_same_in(Version::HTTP_2).await;
}
