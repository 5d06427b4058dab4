//! Runs the bench's PATCH through one contender many times, for `valgrind --tool=callgrind`
//! (instruction counts are stable on noisy machines, unlike times):
//!
//! ```text
//! cargo build --release -p security-update-tools --bin profile_pipeline
//! valgrind --tool=callgrind target/release/profile_pipeline ours 20000
//! callgrind_annotate --inclusive=yes callgrind.out.<pid> | head -60
//! ```
//!
//! `rounds N` times instead: floor, axum and ours-jwt in alternating batches, N rounds, the
//! medians of the rounds' ratios (see `rounds`): the in-process time target, side by side.
//! `rounds N every` sends every contender bodies in which each member changes from one
//! request to the next (`every_member_changing_body`), where the bench's body changes only
//! `notes`: then no member is left out of our schema check for repeating its stored value.
//!
//! Contenders: `floor`, `axum`, `ours` (static tokens), `ours-jwt` (a real ES256 token found
//! in `JwtValidator`'s cache, as a server sees a client's later requests), `floor-every` and
//! `ours-jwt-every` (the same with `every_member_changing_body`), `ours-metrics` (ours with
//! the Prometheus observer and `MetricsLayer`: the metrics' cost is its instruction count less
//! `ours`'), and `ours-1k` / `ours-64k` (ours under an open JSON Schema on an object of that
//! many bytes, as the `object_size` bench: the answer is checked fully once, then by status,
//! so that parsing a big answer does not hide the write).

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
        "rounds" => {
            let body = match args.next().as_deref() {
                Some("every") => every_member_changing_body,
                _ => changing_body,
            };
            rounds(&rt, count, body);
        }
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
        "deletions-7500" | "deletions-75000" => {
            // Issue 10's mass deletion, `count` times: instruction counts say whether the work
            // is linear where times are dominated by the cache (run with two counts and take
            // the difference).
            let members: usize = contender["deletions-".len()..].parse().unwrap();
            let target: serde_json::Map<String, serde_json::Value> = (0..members)
                .map(|i| (format!("m{i}"), serde_json::Value::from(i)))
                .collect();
            let patch: serde_json::Map<String, serde_json::Value> = (0..members)
                .map(|i| (format!("m{i}"), serde_json::Value::Null))
                .collect();
            for _ in 0..count {
                let mut object = target.clone();
                security_update::merge_patch::apply_to_object(&mut object, patch.clone());
                assert!(object.is_empty());
            }
        }
        "ours-shared8" | "axum-shared8" => {
            // 8 tasks on a 2-worker runtime writing one object, as the contention bench: for
            // `perf record`, not callgrind (threads).
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let per_task = count / 8;
            let started = std::time::Instant::now();
            if contender == "ours-shared8" {
                let (service, _) = ours(static_tokens());
                concurrent_writers(&rt, &service, 8, per_task, true);
            } else {
                concurrent_writers(&rt, &axum_baseline(), 8, per_task, true);
            }
            let rate = (per_task * 8) as f64 / started.elapsed().as_secs_f64();
            println!("{contender}: {rate:.0} requests/s");
        }
        "ours-jwt" => {
            // The product as a server runs it: a real ES256 token, validated once and then
            // found in `JwtValidator`'s cache, as every later request of a client is.
            let (validator, token) = validator_with_token();
            let (service, _) = ours(validator);
            for _ in 0..count {
                let request = changing_patch("/me/security", &token);
                let (status, body) = rt.block_on(answer(&service, request));
                assert_merged("ours-jwt", status, &body);
            }
        }
        "ours-core" | "ours-upto-endpoint" | "ours-upto-batch" | "ours-upto-auth" => {
            upto(&rt, &contender, count);
        }
        "floor-every" => {
            let service = Floor::default().service();
            for n in 0..count {
                let request = patch_request("/me/security", TOKEN, every_member_changing_body());
                let (status, body) = rt.block_on(answer(&service, request));
                assert_first_merged("floor-every", n, status, &body);
            }
        }
        "ours-jwt-every" => {
            let (validator, token) = validator_with_token();
            let (service, _) = ours(validator);
            for n in 0..count {
                let request = patch_request("/me/security", &token, every_member_changing_body());
                let (status, body) = rt.block_on(answer(&service, request));
                assert_first_merged("ours-jwt-every", n, status, &body);
            }
        }
        "ours-1k" | "ours-64k" => {
            let bytes = if contender == "ours-1k" {
                1024
            } else {
                64 * 1024
            };
            let service = ours_on_an_object_of(bytes);
            let (status, body) = rt.block_on(answer(&service, request()));
            assert_merged(&contender, status, &body);
            for _ in 1..count {
                let (status, _) = rt.block_on(answer(&service, request()));
                assert_eq!(status, 200);
            }
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

/// Our stack built up one layer at a time from the inside, the layers as `stack` mounts
/// them, so that each one's cost is the difference of two contenders' counts (ours-jwt is
/// the whole stack). Each makes room in the request's extensions first, as the stack's
/// outermost layer does. `ours-core`: the merge-patch layer and the service, with the
/// principal put in by hand (the service still checks the content type and authorizes, as
/// it does without the layers); `ours-upto-endpoint` the stack's `Endpoint` instead (the rate
/// limit, unlimited as in `stack`, the preflight, the content type, the merge patch and the
/// service, one service as the stack runs them); `ours-upto-batch` batching;
/// `ours-upto-auth` the auth layer with the cached ES256 token instead of the hand-made
/// principal. Left for ours-jwt: the timeout (off) and the request ids.
fn upto(rt: &tokio::runtime::Runtime, contender: &str, count: usize) {
    use security_update::{
        AuthLayer, BatchLayer, MemoryStore, MergePatchLayer, RateLimitLayer, StackBuilder,
        endpoint::Endpoint,
    };
    use tower::{Layer, ServiceBuilder};
    let service = StackBuilder::new(MemoryStore::new())
        .with_schema(schema())
        .into_service();
    let core = MergePatchLayer::new().layer(service.clone());
    let by_hand = principal();
    let given = move |mut request: http::Request<_>| {
        // As the stack's outermost layer does.
        security_update::make_extension_room(request.extensions_mut());
        request.extensions_mut().insert(by_hand.clone());
        request
    };
    let run = |service: &dyn Fn(http::Request<_>) -> (u16, bytes::Bytes)| {
        for _ in 0..count {
            let (status, body) = service(changing_patch("/me/security", TOKEN));
            assert_merged(contender, status, &body);
        }
    };
    let inner = || {
        Endpoint::new(
            service.clone(),
            RateLimitLayer::unlimited(),
            MergePatchLayer::new(),
        )
    };
    let batched =
        || BatchLayer::with_prefix("", security_update::merge_patch::DEFAULT_LIMIT).layer(inner());
    match contender {
        "ours-core" => {
            let service = ServiceBuilder::new()
                .map_request(given)
                .service(core.clone());
            run(&|request| rt.block_on(answer(&service, request)));
        }
        "ours-upto-endpoint" => {
            let service = ServiceBuilder::new().map_request(given).service(inner());
            run(&|request| rt.block_on(answer(&service, request)));
        }
        "ours-upto-batch" => {
            let service = ServiceBuilder::new().map_request(given).service(batched());
            run(&|request| rt.block_on(answer(&service, request)));
        }
        _ => {
            let (validator, token) = validator_with_token();
            let service = ServiceBuilder::new()
                .map_request(|mut request: http::Request<_>| {
                    security_update::make_extension_room(request.extensions_mut());
                    request
                })
                .service(AuthLayer::new(validator).layer(batched()));
            for _ in 0..count {
                let request = changing_patch("/me/security", &token);
                let (status, body) = rt.block_on(answer(&service, request));
                assert_merged(contender, status, &body);
            }
        }
    }
}

/// The first answer checked whole (its body has `PATCH_BODY`'s values), the others by status.
fn assert_first_merged(name: &str, n: usize, status: u16, body: &[u8]) {
    if n == 0 {
        assert_merged(name, status, body);
    } else {
        assert_eq!(status, 200, "{name}: {}", String::from_utf8_lossy(body));
    }
}

/// A `JwtValidator` trusting a fresh ES256 key, and a token it signed for the bench user.
fn validator_with_token() -> (security_update::JwtValidator, String) {
    let signer = security_update::EphemeralSigner::generate().unwrap();
    let issuer = format!("https://login.microsoftonline.com/{TENANT}/v2.0");
    let audience = "https://graph.microsoft.com";
    let validator =
        security_update::JwtValidator::new(signer.jwks(), [issuer.as_str()], [audience]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = signer
        .sign(&serde_json::json!({
            "iss": issuer, "aud": audience, "exp": now + 3600, "nbf": now - 1,
            "iat": now, "tid": TENANT, "oid": USER,
            "scp": "SecurityEvents.ReadWrite.All",
        }))
        .unwrap();
    (validator, token)
}

/// `rounds N`: the in-process time target in one process, side by side. Each round times a
/// batch of 1,000 `PATCH`es for each of `floor`, `axum` and `ours-jwt`, in an order that turns
/// each round, and takes the round's ratios; the medians over N rounds are printed. Batches
/// of the contenders alternate every few milliseconds, so the machine's speed, which drifts
/// over seconds here (criterion's runs of one contender after another differ by 30%), is
/// nearly the same for the three batches of a round. As criterion's `iter_batched`, requests
/// are made outside the timed part and answers dropped after it; every answer is checked by
/// status, the first of each contender whole.
fn rounds(rt: &tokio::runtime::Runtime, count: usize, body: fn() -> String) {
    const BATCH: usize = 1000;
    let floor = Floor::default().service();
    let axum = axum_baseline();
    let (validator, token) = validator_with_token();
    let (ours, _) = ours(validator);
    let request = || patch_request("/me/security", TOKEN, body());
    let jwt_request = || patch_request("/me/security", &token, body());
    // Each checked whole once, with the bench's values.
    for (name, (status, body)) in [
        (
            "floor",
            rt.block_on(answer(&floor, changing_patch("/me/security", TOKEN))),
        ),
        (
            "axum",
            rt.block_on(answer(&axum, changing_patch("/me/security", TOKEN))),
        ),
        (
            "ours-jwt",
            rt.block_on(answer(&ours, changing_patch("/me/security", &token))),
        ),
    ] {
        assert_merged(name, status, &body);
    }
    fn batch<S, B>(
        rt: &tokio::runtime::Runtime,
        service: &S,
        make: &dyn Fn() -> http::Request<http_body_util::Full<bytes::Bytes>>,
    ) -> f64
    where
        S: tower::Service<
                http::Request<http_body_util::Full<bytes::Bytes>>,
                Response = http::Response<B>,
            > + Clone,
        S::Error: std::fmt::Debug,
        B: http_body::Body,
        B::Error: std::fmt::Debug,
    {
        let requests: Vec<_> = (0..BATCH).map(|_| make()).collect();
        let mut answers = Vec::with_capacity(BATCH);
        let started = std::time::Instant::now();
        for request in requests {
            answers.push(rt.block_on(answer(service, request)));
        }
        let nanos = started.elapsed().as_nanos() as f64 / BATCH as f64;
        assert!(answers.iter().all(|(status, _)| *status == 200));
        nanos
    }
    let (mut ours_floor, mut axum_floor, mut axum_ours) = (Vec::new(), Vec::new(), Vec::new());
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..count {
        let mut took = [0.0; 3];
        for turn in 0..3 {
            let which = (round + turn) % 3;
            took[which] = match which {
                0 => batch(rt, &floor, &request),
                1 => batch(rt, &axum, &request),
                _ => batch(rt, &ours, &jwt_request),
            };
        }
        ours_floor.push(took[2] / took[0]);
        axum_floor.push(took[1] / took[0]);
        axum_ours.push(took[1] / took[2]);
        for (all, one) in times.iter_mut().zip(took) {
            all.push(one);
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!(
        "{count} rounds of {BATCH} PATCHes each; medians: floor {:.0} ns, axum {:.0} ns, \
         ours-jwt {:.0} ns a PATCH",
        median(&mut times[0]),
        median(&mut times[1]),
        median(&mut times[2])
    );
    println!(
        "ours-jwt / floor {:.3}x; axum / floor {:.3}x; ours-jwt is {:.3}x axum's speed",
        median(&mut ours_floor),
        median(&mut axum_floor),
        median(&mut axum_ours)
    );
}

/// Our stack under an open JSON Schema, over a store holding the bench user's object grown to
/// `bytes` with 100-character members.
fn ours_on_an_object_of(
    bytes: usize,
) -> security_update::Stack<security_update::MemoryStore, security_update::StaticTokens> {
    use security_update::{ObjectKey, SecurityStore, Snapshot, StackBuilder};
    let store = security_update::MemoryStore::new();
    let mut document = serde_json::Map::new();
    document.insert(
        "@odata.type".into(),
        "#microsoft.graph.security.security".into(),
    );
    let mut i = 0;
    while serde_json::to_vec(&document).unwrap().len() < bytes {
        document.insert(format!("note{i}"), "x".repeat(100).into());
        i += 1;
    }
    let key = ObjectKey::new(TENANT, USER);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(store.compare_and_swap(&key, 0, Snapshot::new(1, document).unwrap()))
        .unwrap();
    let open =
        security_update::ResourceSchema::from_json_schema(&serde_json::json!({"type": "object"}))
            .unwrap();
    security_update::stack(
        StackBuilder::new(store).with_schema(open).into_service(),
        static_tokens(),
    )
}
