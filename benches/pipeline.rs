//! Per-request cost in process: our full stack side by side with `floor` and `axum_baseline`,
//! all answering the same PATCH, in the same run. Also GET, the 401 path and
//! `/users/{id}/security`, and the JWT validator with a cached and a never-seen token.

mod support;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use http::Request;
use http_body_util::Full;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use security_update::JwtValidator;
use support::*;
use tower::Service;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Times `service` answering requests made by `make` (outside the timed part), after checking
/// one answer with `check`.
fn contender<S, B>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    service: S,
    make: impl Fn() -> Request<Full<Bytes>>,
    check: impl Fn(&str, u16, &[u8]),
) where
    S: Service<Request<Full<Bytes>>, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let (status, body) = rt.block_on(answer(&service, make()));
    check(name, status, &body);
    group.bench_function(name, |b| {
        b.iter_batched(
            &make,
            |request| rt.block_on(answer(&service, request)),
            BatchSize::SmallInput,
        );
    });
}

/// An RS256 key and a validator trusting it, as Entra would issue.
struct Rs256 {
    key: EncodingKey,
    validator: JwtValidator,
}

const ISS: &str = "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0";
const AUD: &str = "https://graph.microsoft.com";

impl Rs256 {
    fn new() -> Self {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::{Generate, PrivateKey};
        let private = PrivateKey::generate();
        let key = EncodingKey::from_rsa_der(private.to_pkcs1_der().unwrap().as_bytes());
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some("bench".into());
        jwk.common.key_algorithm = None;
        let validator = JwtValidator::new(&JwkSet { keys: vec![jwk] }, [ISS], [AUD]).unwrap();
        Self { key, validator }
    }

    fn token(&self, nonce: u64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("bench".into());
        let claims = serde_json::json!({
            "iss": ISS, "aud": AUD, "exp": now + 3600, "nbf": now - 1, "iat": now,
            "tid": TENANT, "oid": USER, "scp": "SecurityEvents.ReadWrite.All", "uti": nonce,
        });
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

fn patch_contenders(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("patch");
    group.throughput(Throughput::Bytes(PATCH_BODY.len() as u64));

    let floor = Floor::default();
    contender(
        &mut group,
        &rt,
        "floor",
        floor.service(),
        || changing_patch("/me/security", TOKEN),
        assert_merged,
    );

    contender(
        &mut group,
        &rt,
        "axum_baseline",
        axum_baseline(),
        || changing_patch("/me/security", TOKEN),
        assert_merged,
    );

    let (ours_static, _) = ours(static_tokens());
    contender(
        &mut group,
        &rt,
        "security_update",
        ours_static,
        || changing_patch("/me/security", TOKEN),
        assert_merged,
    );

    let rs = Rs256::new();
    let token = rs.token(0);
    let (ours_jwt, _) = ours(rs.validator.clone());
    contender(
        &mut group,
        &rt,
        "security_update_jwt_cached",
        ours_jwt.clone(),
        || changing_patch("/me/security", &token),
        assert_merged,
    );

    // A token never seen before: one RS256 signature check per request. Tokens are minted
    // outside the timed part.
    let counter = std::cell::Cell::new(1u64);
    contender(
        &mut group,
        &rt,
        "security_update_jwt_new_token",
        ours_jwt,
        || {
            let n = counter.get();
            counter.set(n + 1);
            changing_patch("/me/security", &rs.token(n))
        },
        assert_merged,
    );
    group.finish();
}

fn other_paths(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("paths");
    let (service, _) = ours(static_tokens());
    rt.block_on(answer(&service, changing_patch("/me/security", TOKEN)));

    contender(
        &mut group,
        &rt,
        "get",
        service.clone(),
        || get_request("/me/security", TOKEN),
        |name, status, body| {
            assert_eq!(status, 200, "{name}");
            assert!(
                std::str::from_utf8(body).unwrap().contains("riskProfile"),
                "{name}"
            );
        },
    );
    contender(
        &mut group,
        &rt,
        "error_401",
        service.clone(),
        || get_request("/me/security", "wrong-token"),
        |name, status, body| {
            assert_eq!(status, 401, "{name}");
            assert!(
                std::str::from_utf8(body)
                    .unwrap()
                    .contains("InvalidAuthenticationToken"),
                "{name}"
            );
        },
    );
    let path = format!("/users/{USER}/security");
    contender(
        &mut group,
        &rt,
        "patch_users_id",
        service.clone(),
        || changing_patch(&path, TOKEN),
        assert_merged,
    );
    // The same body again and again: after the first, every request is a no-op (no store
    // write, no new ETag, no audit record).
    rt.block_on(answer(
        &service,
        patch_request("/me/security", TOKEN, PATCH_BODY),
    ));
    let before = rt.block_on(answer(&service, get_request("/me/security", TOKEN)));
    contender(
        &mut group,
        &rt,
        "patch_no_op",
        service.clone(),
        || patch_request("/me/security", TOKEN, PATCH_BODY),
        assert_merged,
    );
    let after = rt.block_on(answer(&service, get_request("/me/security", TOKEN)));
    assert_eq!(before, after, "a no-op changed the object");
    group.finish();
}

fn config() -> Criterion {
    criterion_config(3, 50)
}

criterion_group! { name = benches; config = config(); targets = patch_contenders, other_paths }
criterion_main!(benches);
