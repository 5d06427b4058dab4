//! Unit tests of the metrics: fixed label sets, and cached handles in the same series.

use super::layer::{method_index, route_index};
use super::*;
use http::Method;
use std::time::Duration;

#[test]
fn routes_are_a_fixed_set() {
    let route = |path| ROUTES[route_index(path)];
    assert_eq!(route("/beta/me/security"), "me");
    assert_eq!(route("/beta/users/alice@contoso.com/security"), "users");
    assert_eq!(route("/beta/$batch"), "batch");
    assert_eq!(route("/beta/users/x"), "other");
    assert_eq!(route("/anything/else"), "other");
    let pair =
        route_index("/beta/users/a/security") * METHODS.len() + method_index(&Method::DELETE);
    assert_eq!(
        pair_labels(pair),
        [("route", "users"), ("method", "DELETE")]
    );
}

#[test]
fn cached_handles_count_in_the_same_series_as_the_family() {
    let metrics = PrometheusMetrics::new();
    let pair = method_index(&Method::PATCH);
    metrics.count_request(pair, 200);
    metrics.count_request(pair, 200);
    metrics.count_request(pair, 299);
    metrics.store_operation(
        "redb",
        StoreOperation::Load,
        Duration::from_millis(1),
        false,
    );
    metrics.store_operation(
        "postgres",
        StoreOperation::Load,
        Duration::from_millis(1),
        false,
    );
    metrics.token(TokenOutcome::CacheHit);
    metrics.token(TokenOutcome::CacheHit);
    let text = metrics.render();
    for line in [
        r#"security_update_http_requests_total{route="me",method="PATCH",status="200"} 2"#,
        r#"security_update_http_requests_total{route="me",method="PATCH",status="299"} 1"#,
        r#"security_update_store_operation_duration_seconds_count{store="redb",operation="load"} 1"#,
        r#"security_update_store_operation_duration_seconds_count{store="postgres",operation="load"} 1"#,
        r#"security_update_token_validations_total{outcome="cache_hit",reason=""} 2"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

#[test]
fn observer_calls_show_in_the_text() {
    let metrics = PrometheusMetrics::new();
    metrics.token(TokenOutcome::Rejected { reason: "expired" });
    metrics.store_operation(
        "memory",
        StoreOperation::CompareAndSwap,
        Duration::from_millis(2),
        true,
    );
    metrics.write_conflict();
    let text = metrics.render();
    assert!(
        text.contains(
            r#"security_update_token_validations_total{outcome="rejected",reason="expired"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"security_update_store_errors_total{store="memory",operation="compare_and_swap"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("security_update_write_conflicts_total 1"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}
