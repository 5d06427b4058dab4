//! The contenders every bench measures, all answering the same request, and the checks that
//! each answers it correctly before it is timed. Shared by the criterion benches and the
//! loopback servers (`examples/bench_server.rs`).
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::patch;
use axum::{Json, Router};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use security_update::{
    MemoryStore, Principal, ResourceSchema, Stack, StackBuilder, StaticTokens, TokenValidator,
    stack,
};
use serde_json::{Value, json};
use tower::{Service, ServiceExt};

/// Criterion settings shared by every bench: short enough that `cargo bench` stays a few
/// minutes on two cores, long enough for stable medians.
pub fn criterion_config(measurement_secs: u64, samples: usize) -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(measurement_secs))
        .sample_size(samples)
}

pub const TOKEN: &str = "bench-token-0123456789abcdef";
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const USER: &str = "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa";

/// The request body: ~200 bytes, a nested object and nulls, as a deployment with an extended
/// schema would send.
pub const PATCH_BODY: &str = r#"{"riskProfile":{"level":"medium","score":42,"reasons":["mfa-missing","legacy-auth"],"reviewedBy":null},"notes":"quarterly review of sign-in risk for this account","lastReviewed":"2026-11-29T01:02:03Z","obsolete":null}"#;

/// The deployment schema our stack validates against (the Graph type plus the bench's
/// properties).
pub fn schema() -> ResourceSchema {
    ResourceSchema::from_json_schema(&json!({
        "type": "object",
        "properties": {
            "@odata.type": {"type": "string"},
            "id": {"type": "string"},
            "riskProfile": {
                "type": "object",
                "properties": {
                    "level": {"enum": ["low", "medium", "high"]},
                    "score": {"type": "integer", "minimum": 0, "maximum": 100},
                    "reasons": {"type": "array", "items": {"type": "string"}}
                }
            },
            "notes": {"type": "string", "maxLength": 1000},
            "lastReviewed": {"type": "string"}
        },
        "additionalProperties": false
    }))
    .expect("the bench schema compiles")
}

/// Requests made so far by [`changing_body`]: each one's revision.
static REVISION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// [`PATCH_BODY`] with a revision number no request has carried before (in `notes`): every
/// request really changes the object, so our no-op detection never stands in for a write.
/// The baselines get the same bodies.
pub fn changing_body() -> String {
    let n = REVISION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    PATCH_BODY.replace(
        "for this account",
        &format!("for this account, revision {n}"),
    )
}

pub fn patch_request(path: &str, token: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::patch(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap()
}

/// [`changing_body`] with every member it sets changed as well, from one request to the
/// next (the level, the score, a reason and the review time alternate between two values):
/// no member repeats its stored value, so a write judges each one. The first has
/// [`PATCH_BODY`]'s values.
pub fn every_member_changing_body() -> String {
    let n = REVISION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let body = if n.is_multiple_of(2) {
        PATCH_BODY.to_owned()
    } else {
        PATCH_BODY
            .replace("\"medium\"", "\"high\"")
            .replace("\"score\":42", "\"score\":43")
            .replace("\"legacy-auth\"", "\"legacy-auth-2\"")
            .replace("01:02:03Z", "01:02:04Z")
    };
    body.replace(
        "for this account",
        &format!("for this account, revision {n}"),
    )
}

/// A PATCH of [`changing_body`]: a real change on every request.
pub fn changing_patch(path: &str, token: &str) -> Request<Full<Bytes>> {
    patch_request(path, token, changing_body())
}

pub fn get_request(path: &str, token: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap()
}

/// `floor`: collect, parse, check it is an object, merge in place into a per-user object in a
/// `Mutex<HashMap>`, serialize, 200. No auth, no checks: the least any implementation does.
#[derive(Clone, Default)]
pub struct Floor {
    objects: Arc<Mutex<HashMap<String, Value>>>,
}

impl Floor {
    /// The floor as a service over any request body.
    pub fn service<B>(
        &self,
    ) -> impl Service<Request<B>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + Sync
    + 'static
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
    {
        let objects = self.objects.clone();
        tower::service_fn(move |request: Request<B>| {
            let objects = objects.clone();
            async move { Ok::<_, Infallible>(floor(&objects, request).await) }
        })
    }
}

pub async fn floor<B>(
    objects: &Mutex<HashMap<String, Value>>,
    request: Request<B>,
) -> Response<Full<Bytes>>
where
    B: http_body::Body,
{
    let key = request.uri().path().to_owned();
    let Ok(body) = request.into_body().collect().await else {
        return status(400);
    };
    let Ok(patch) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return status(400);
    };
    if !patch.is_object() {
        return status(400);
    }
    let json = {
        let mut objects = objects.lock().unwrap();
        let object = objects
            .entry(key)
            .or_insert_with(|| Value::Object(Default::default()));
        security_update::merge_patch::apply(object, patch);
        serde_json::to_vec(object).unwrap()
    };
    Response::new(Full::new(Bytes::from(json)))
}

fn status(code: u16) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::from_u16(code).unwrap();
    response
}

/// `axum_baseline`: what a competent axum user writes — a Router, tower-http's body limit, a
/// bearer check, axum's `Json` extractor (which enforces the content type), `json_patch::merge`,
/// `Arc<RwLock<HashMap>>` state, a `Json` answer with `@odata.type` and `id`.
pub fn axum_baseline() -> Router {
    type Objects = Arc<RwLock<HashMap<String, Value>>>;
    async fn update_key(
        State(objects): State<Objects>,
        key: String,
        headers: HeaderMap,
        Json(patch): Json<Value>,
    ) -> Result<Json<Value>, StatusCode> {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer != Some(TOKEN) {
            return Err(StatusCode::UNAUTHORIZED);
        }
        if !patch.is_object() {
            return Err(StatusCode::BAD_REQUEST);
        }
        let mut objects = objects.write().unwrap();
        let object = objects.entry(key.clone()).or_insert_with(
            || json!({"@odata.type": "#microsoft.graph.security.security", "id": key}),
        );
        json_patch::merge(object, &patch);
        Ok(Json(object.clone()))
    }
    async fn update_user(
        state: State<Objects>,
        axum::extract::Path(id): axum::extract::Path<String>,
        headers: HeaderMap,
        body: Json<Value>,
    ) -> Result<Json<Value>, StatusCode> {
        update_key(state, id, headers, body).await
    }
    async fn update_me(
        state: State<Objects>,
        headers: HeaderMap,
        body: Json<Value>,
    ) -> Result<Json<Value>, StatusCode> {
        update_key(state, USER.to_owned(), headers, body).await
    }
    Router::new()
        .route("/me/security", patch(update_me))
        .route("/users/{id}/security", patch(update_user))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(1024 * 1024))
        .with_state(Objects::default())
}

/// `security_update`: our full stack on the in-memory store with `validator`.
pub fn ours<V: TokenValidator>(validator: V) -> (Stack<MemoryStore, V>, MemoryStore) {
    let store = MemoryStore::new();
    let service = StackBuilder::new(store.clone())
        .with_schema(schema())
        .into_service();
    (stack(service, validator), store)
}

/// The bench token: a delegated user who may also reach other users (an application would
/// too), so `/users/{id}/security` works for the contention benches.
pub fn static_tokens() -> StaticTokens {
    StaticTokens::new().with_token(TOKEN, principal())
}

pub fn principal() -> Principal {
    Principal::delegated(TENANT, USER)
        .with_scopes(["SecurityEvents.ReadWrite.All"])
        .with_role_template_ids([security_update::SECURITY_ADMINISTRATOR])
}

/// A GUID for user number `n`.
pub fn user(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// Sends one request, returning status and body.
pub async fn answer<S, B>(service: &S, request: Request<Full<Bytes>>) -> (u16, Bytes)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let response = service.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

/// Panics unless `body` is the merged object: a contender that answers wrong is not timed.
pub fn assert_merged(name: &str, status: u16, body: &[u8]) {
    assert_eq!(
        status,
        200,
        "{name} answered {status}: {}",
        String::from_utf8_lossy(body)
    );
    let object: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(object["riskProfile"]["score"], 42, "{name}: {object}");
    assert!(
        object["notes"].as_str().is_some_and(
            |notes| notes.starts_with("quarterly review of sign-in risk for this account")
        ),
        "{name}: {object}"
    );
    assert!(
        object["riskProfile"].get("reviewedBy").is_none(),
        "{name}: null not removed"
    );
    assert!(object.get("obsolete").is_none(), "{name}: null not removed");
}

/// `tasks` tasks on `rt`, each sending `per_task` changing `PATCH` requests, all to one object
/// (`shared`) or each to its own user's, every answer checked to be 200.
pub fn concurrent_writers<S, B>(
    rt: &tokio::runtime::Runtime,
    service: &S,
    tasks: usize,
    per_task: usize,
    shared: bool,
) where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
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
                    for _ in 0..per_task {
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
