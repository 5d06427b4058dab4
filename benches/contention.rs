//! Throughput under contention: 2 and 8 concurrent tasks patching distinct objects, and one
//! shared object, per contender, on a 2-worker runtime.

mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use support::*;

/// Requests each task sends per measured iteration.
const PER_TASK: usize = 16;

fn contention(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let floor = Floor::default().service();
    let axum = axum_baseline();
    let (ours, _) = ours(static_tokens());
    // Each contender answers correctly before it is timed.
    for path in [
        "/me/security".to_owned(),
        format!("/users/{}/security", user(0)),
    ] {
        let (s, b) = rt.block_on(answer(&floor, changing_patch(&path, TOKEN)));
        assert_merged("floor", s, &b);
        let (s, b) = rt.block_on(answer(&axum, changing_patch(&path, TOKEN)));
        assert_merged("axum_baseline", s, &b);
        let (s, b) = rt.block_on(answer(&ours, changing_patch(&path, TOKEN)));
        assert_merged("security_update", s, &b);
    }

    let mut group = c.benchmark_group("contention");
    for tasks in [2, 8] {
        group.throughput(Throughput::Elements((tasks * PER_TASK) as u64));
        for (kind, shared) in [("distinct", false), ("shared", true)] {
            let label = format!("{tasks}_tasks_{kind}");
            group.bench_function(BenchmarkId::new("floor", &label), |b| {
                b.iter(|| concurrent_writers(&rt, &floor, tasks, PER_TASK, shared));
            });
            group.bench_function(BenchmarkId::new("axum_baseline", &label), |b| {
                b.iter(|| concurrent_writers(&rt, &axum, tasks, PER_TASK, shared));
            });
            group.bench_function(BenchmarkId::new("security_update", &label), |b| {
                b.iter(|| concurrent_writers(&rt, &ours, tasks, PER_TASK, shared));
            });
        }
    }
    group.finish();
}

fn config() -> Criterion {
    criterion_config(2, 20)
}

criterion_group! { name = benches; config = config(); targets = contention }
criterion_main!(benches);
