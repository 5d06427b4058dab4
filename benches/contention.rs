//! Throughput under contention: 2 and 8 concurrent tasks patching distinct objects, and one
//! shared object, per contender, on a 2-worker runtime.

mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use support::*;
use tower::Service;

/// Requests each task sends per measured iteration.
const PER_TASK: usize = 16;

fn run<S, B>(rt: &tokio::runtime::Runtime, service: &S, tasks: usize, shared: bool)
where
    S: Service<http::Request<http_body_util::Full<bytes::Bytes>>, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug + Send,
    B: http_body::Body + Send,
    B::Data: Send,
    B::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let service = service.clone();
                let path = if shared {
                    "/me/security".to_owned()
                } else {
                    format!("/users/{}/security", user(task))
                };
                tokio::spawn(async move {
                    for _ in 0..PER_TASK {
                        let (status, _) = answer(&service, changing_patch(&path, TOKEN)).await;
                        assert_eq!(status, 200);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
    });
}

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
                b.iter(|| run(&rt, &floor, tasks, shared));
            });
            group.bench_function(BenchmarkId::new("axum_baseline", &label), |b| {
                b.iter(|| run(&rt, &axum, tasks, shared));
            });
            group.bench_function(BenchmarkId::new("security_update", &label), |b| {
                b.iter(|| run(&rt, &ours, tasks, shared));
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
