//! Runs the bench's PATCH through one contender many times, for `valgrind --tool=callgrind`
//! (instruction counts are stable on noisy machines, unlike times):
//!
//! ```text
//! cargo build --release -p security-update-tools --bin profile_pipeline
//! valgrind --tool=callgrind target/release/profile_pipeline ours 20000
//! callgrind_annotate --inclusive=yes callgrind.out.<pid> | head -60
//! ```
//!
//! Contenders: `floor`, `axum`, `ours`, and `ours-metrics` (ours with the Prometheus observer
//! and `MetricsLayer`: the metrics' cost is its instruction count less `ours`').

#[path = "../../../benches/support/mod.rs"]
mod support;

use support::*;

fn main() {
    let mut args = std::env::args().skip(1);
    let contender = args.next().unwrap_or_else(|| "ours".to_owned());
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let request = || changing_patch("/me/security", TOKEN);
    match contender.as_str() {
        "floor" => {
            let service = Floor::default().service();
            for _ in 0..count {
                let (status, body) = rt.block_on(answer(&service, request()));
                assert_merged("floor", status, &body);
            }
        }
        "axum" => {
            let service = axum_baseline();
            for _ in 0..count {
                let (status, body) = rt.block_on(answer(&service, request()));
                assert_merged("axum", status, &body);
            }
        }
        "ours-metrics" => {
            use tower::Layer;
            let metrics = std::sync::Arc::new(security_update::metrics::PrometheusMetrics::new());
            let inner = security_update::StackBuilder::new(security_update::MemoryStore::new())
                .with_schema(schema())
                .with_observer(metrics.clone())
                .into_service();
            let service = security_update::metrics::MetricsLayer::new(metrics.clone())
                .layer(security_update::stack(inner, static_tokens()));
            for _ in 0..count {
                let (status, body) = rt.block_on(answer(&service, request()));
                assert_merged("ours-metrics", status, &body);
            }
            assert!(
                metrics
                    .render()
                    .contains("security_update_audit_records_total")
            );
        }
        _ => {
            let (service, _) = ours(static_tokens());
            for _ in 0..count {
                let (status, body) = rt.block_on(answer(&service, request()));
                assert_merged("ours", status, &body);
            }
        }
    }
}
