//! Cost growth: per-request cost with 1, 10^4 and 10^6 stored objects, and with 1 KB against
//! 64 KB objects; memory per stored object (resident set growth while filling the store,
//! printed once, not timed).

mod support;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use security_update::{MemoryStore, ObjectKey, SecurityStore, Snapshot, StackBuilder, stack};
use serde_json::{Map, Value, json};
use support::*;

fn base(user_id: &str) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert(
        "@odata.type".into(),
        json!("#microsoft.graph.security.security"),
    );
    map.insert("id".into(), json!(user_id));
    map
}

/// Stores `count` small objects, directly through the store (setup, not timed).
fn fill(rt: &tokio::runtime::Runtime, store: &MemoryStore, count: usize) {
    rt.block_on(async {
        for n in 0..count {
            let id = user(n);
            let snapshot = Snapshot::new(1, base(&id)).unwrap();
            store
                .compare_and_swap(&ObjectKey::new(TENANT, &id), 0, snapshot)
                .await
                .unwrap();
        }
    });
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn stored_objects(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // First, before the fills below leave freed memory for it to reuse.
    written_objects_memory(&rt);
    let mut group = c.benchmark_group("stored_objects");
    for count in [1usize, 10_000, 1_000_000] {
        let store = MemoryStore::new();
        let before = resident_bytes();
        fill(&rt, &store, count);
        if let (Some(before), Some(after), true) = (before, resident_bytes(), count >= 10_000) {
            println!(
                "memory: {count} stored objects grew the resident set by {} bytes, {} bytes per object",
                after.saturating_sub(before),
                after.saturating_sub(before) / count as u64
            );
        }
        let app = stack(
            StackBuilder::new(store)
                .with_schema(schema())
                .into_service(),
            static_tokens(),
        );
        // Requests walk over the stored objects, so lookups are not all one cached slot.
        let paths: Vec<String> = (0..count.min(4096))
            .map(|n| {
                format!(
                    "/users/{}/security",
                    user(n * (count / count.min(4096)).max(1))
                )
            })
            .collect();
        let (status, body) = rt.block_on(answer(&app, changing_patch(&paths[0], TOKEN)));
        assert_merged("security_update", status, &body);
        let next = std::cell::Cell::new(0usize);
        group.bench_function(BenchmarkId::new("patch", count), |b| {
            b.iter_batched(
                || {
                    let i = next.get();
                    next.set((i + 1) % paths.len());
                    changing_patch(&paths[i], TOKEN)
                },
                |request| rt.block_on(answer(&app, request)),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// Memory per object for objects as the server holds them (created by a PATCH through the
/// stack: a write keeps the JSON and where its members lie, and parses the document only if
/// asked), beside the same objects built with `Snapshot::new` (document and JSON); printed
/// once, not timed. Both stores stay alive, so neither reuses what the other freed.
fn written_objects_memory(rt: &tokio::runtime::Runtime) {
    const COUNT: usize = 100_000;
    let written = MemoryStore::new();
    let app = stack(
        StackBuilder::new(written.clone())
            .with_schema(schema())
            .into_service(),
        static_tokens(),
    );
    let before = resident_bytes();
    rt.block_on(async {
        for n in 0..COUNT {
            let path = format!("/users/{}/security", user(n));
            let (status, _) = answer(&app, changing_patch(&path, TOKEN)).await;
            assert_eq!(status, 200);
        }
    });
    let after_written = resident_bytes();
    let entries = written.entries();
    let built = MemoryStore::new();
    let before_built = resident_bytes();
    rt.block_on(async {
        for (key, snapshot) in &entries {
            // Parsed from the bytes: `document()` would parse into the written snapshot too.
            let document = serde_json::from_slice(snapshot.json()).unwrap();
            built
                .compare_and_swap(key, 0, Snapshot::new(1, document).unwrap())
                .await
                .unwrap();
        }
    });
    let after_built = resident_bytes();
    if let (Some(a), Some(b), Some(c), Some(d)) = (before, after_written, before_built, after_built)
    {
        println!(
            "memory: {COUNT} objects of {} bytes of JSON: written through the stack {} bytes per object, built with Snapshot::new {} bytes per object",
            entries[0].1.json().len(),
            b.saturating_sub(a) / COUNT as u64,
            d.saturating_sub(c) / COUNT as u64
        );
    }
}

fn object_size(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("object_size");
    for (label, bytes) in [("1KB", 1024usize), ("64KB", 64 * 1024)] {
        let store = MemoryStore::new();
        let mut document = base(USER);
        let mut i = 0;
        while serde_json::to_vec(&document).unwrap().len() < bytes {
            document.insert(format!("note{i}"), json!("x".repeat(100)));
            i += 1;
        }
        let key = ObjectKey::new(TENANT, USER);
        rt.block_on(store.compare_and_swap(&key, 0, Snapshot::new(1, document).unwrap()))
            .unwrap();
        // An open schema: these objects carry many extra members.
        let open =
            security_update::ResourceSchema::from_json_schema(&json!({"type": "object"})).unwrap();
        let app = stack(
            StackBuilder::new(store).with_schema(open).into_service(),
            static_tokens(),
        );
        let (status, body) = rt.block_on(answer(&app, changing_patch("/me/security", TOKEN)));
        assert_merged("security_update", status, &body);
        group.bench_function(BenchmarkId::new("patch", label), |b| {
            b.iter_batched(
                || changing_patch("/me/security", TOKEN),
                |request| rt.block_on(answer(&app, request)),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn config() -> Criterion {
    criterion_config(3, 50)
}

criterion_group! { name = benches; config = config(); targets = stored_objects, object_size }
criterion_main!(benches);
