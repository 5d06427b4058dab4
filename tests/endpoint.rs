//! The stack's `Endpoint` (the checks before the body, the merge patch and the service as one
//! service) answers every request exactly as the pieces it fuses, nested by hand, do: the same
//! status, headers and body, in HTTP/1.0, 1.1 and 2, for bodies whole, in pieces or cut off;
//! and it stores, audits and asks the policy the same.

mod common;
mod equality;

use common::*;
use equality::*;
use http::Version;
use security_update::endpoint::Endpoint;
use security_update::{
    AuthLayer, BatchLayer, ContentTypeLayer, ObjectKey, RequestIdLayer, SecurityStore,
};
use tower::ServiceBuilder;

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

    answer_alike(&fused, &nested, version, |case| case.status).await;
    let (audited, asked) = same_effects(&fused_side, &nested_side).await;
    // Revisions 1, 2 (in pieces), 3 (by the admin), 6, null, and the batch's one.
    let alice = fused_side.store.load(&ObjectKey::new(TENANT, ALICE)).await;
    assert_eq!(alice.unwrap().unwrap().version(), 6);
    // Seven writes and the refused attempt at Bob's object.
    assert_eq!(audited.len(), 8, "{audited:?}");
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
