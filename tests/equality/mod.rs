//! The comparison `tests/endpoint.rs` and `tests/stack.rs` share: a sequence of requests
//! (every refusal the stack's pieces make, and the operations), sent to two services that
//! must answer them alike, and what is compared of their answers.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, StatusCode, Version};
use http_body::Frame;
use http_body_util::BodyExt;
use security_update::audit::{AuditRecord, AuditSink};
use security_update::{
    Access, DefaultPolicy, GraphError, MemoryStore, MergePatchLayer, ObjectKey, Policy, Principal,
    RateLimitLayer, ResourceSchema, SecurityStore, Snapshot, StackBuilder, StoreError, SwapOutcome,
    Target,
};
use serde_json::Value;

/// The client's id every request sends.
pub const CLIENT_ID: &str = "5b3a3a3e-0000-4000-8000-000000000001";

pub const LIMIT: usize = 64;
pub const MAX_DEPTH: usize = 3;
pub const PREFIX: &str = "/beta";
/// Requests each caller may make in the test's hour.
pub const BUDGET: u32 = 50;

/// How a case's body is sent.
#[derive(Clone, Copy, PartialEq)]
pub enum Frames {
    /// One frame.
    Whole,
    /// One frame a byte.
    Pieces,
    /// One frame a byte, then a read error: the body cannot be read to its end.
    CutOff,
    /// Its first half, one frame a byte, then nothing more, ever: a client that stalls.
    Stalls,
}

/// One request of the sequence: what is sent, and the status both must answer.
pub struct Case {
    pub method: Method,
    pub path: &'static str,
    pub token: Option<&'static str>,
    pub headers: &'static [(&'static str, &'static str)],
    pub body: &'static str,
    pub frames: Frames,
    pub status: u16,
}

pub const fn case(
    method: Method,
    path: &'static str,
    token: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    status: u16,
) -> Case {
    Case {
        method,
        path,
        token,
        headers,
        body,
        frames: Frames::Whole,
        status,
    }
}

impl Case {
    pub fn sent_as(self, frames: Frames) -> Self {
        Self { frames, ..self }
    }
}

pub const ME: &str = "/beta/me/security";
pub const BOB_PATH: &str = "/beta/users/bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb/security";
pub const ALICE_PATH: &str = "/beta/users/aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa/security";
pub const JSON: &[(&str, &str)] = &[("content-type", "application/json")];
pub const TEXT: &[(&str, &str)] = &[("content-type", "text/plain")];
pub const JSON_2: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("content-length", "2"),
];
pub const TEXT_5: &[(&str, &str)] = &[("content-type", "text/plain"), ("content-length", "5")];
pub const CHUNKED: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("transfer-encoding", "chunked"),
];
pub const GZIP: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("transfer-encoding", "gzip"),
];
pub const GZIP_TEXT: &[(&str, &str)] = &[
    ("content-type", "text/plain"),
    ("transfer-encoding", "gzip"),
];
pub const BOTH_FRAMINGS: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("transfer-encoding", "chunked"),
    ("content-length", "2"),
];
pub const LONG: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("content-length", "100"),
];
pub const TWO_TYPES: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("content-type", "application/json"),
];
pub const CODED: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("content-encoding", "gzip"),
];
pub const STALE: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("if-match", "W/\"stale\""),
];
pub const MINIMAL: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("prefer", "return=minimal"),
];
pub const PADDED: &str =
    r#"{"revision": 4, "padding": "0123456789012345678901234567890123456789012345678"}"#;
pub const BATCH: &str = r#"{"requests": [
    {"id": "1", "method": "PATCH", "url": "/me/security", "headers": {"content-type": "application/json"}, "body": {"batched": 1}},
    {"id": "2", "method": "GET", "url": "/me/security", "dependsOn": ["1"]},
    {"id": "3", "method": "PATCH", "url": "/me/security", "headers": {"content-type": "text/plain"}, "body": "x"}
]}"#;

#[rustfmt::skip]
pub fn cases() -> Vec<Case> {
    use Method as M;
    use Frames::{CutOff, Pieces};
    let alice = Some("alice");
    let mut cases = vec![
        case(M::PATCH, ME, alice, JSON, r#"{"revision": 1}"#, 200),
        case(M::PATCH, ME, alice, CHUNKED, r#"{"revision": 2}"#, 200).sent_as(Pieces),
        case(M::GET, ME, alice, &[], "", 200),
        case(M::HEAD, ME, alice, &[], "", 200),
        case(M::GET, "/beta/me/security?$select=revision", alice, &[], "", 200),
        case(M::GET, "/beta/me/security?$expand=x", alice, &[], "", 400),
        // A read with a body: JSON is read past (the answer closes), anything else is 415.
        case(M::GET, ME, alice, JSON_2, "{}", 200),
        case(M::HEAD, ME, alice, JSON_2, "{}", 200),
        case(M::GET, ME, alice, TEXT_5, "words", 415),
        case(M::PATCH, ME, alice, TEXT, "words", 415),
        case(M::PATCH, ME, alice, TEXT_5, "words", 415),
        case(M::PATCH, ME, alice, &[], r#"{"revision": 2}"#, 415),
        case(M::PATCH, ME, alice, TWO_TYPES, "{}", 400),
        case(M::PATCH, ME, alice, CODED, "{}", 415),
        // The route and the method before the content type.
        case(M::PATCH, "/beta/nowhere", alice, TEXT, "words", 404),
        case(M::PATCH, "/beta/nowhere", alice, TEXT_5, "words", 404),
        case(M::PATCH, "/me/security", alice, JSON, "{}", 404),
        case(M::DELETE, ME, alice, &[], "", 405),
        case(M::POST, ME, alice, JSON_2, "{}", 405),
        case(M::POST, ME, alice, &[("content-length", "2")], "{}", 405),
        // The permission and the policy before the content type.
        case(M::PATCH, ME, Some("noscope"), TEXT_5, "words", 403),
        case(M::PATCH, ME, None, JSON, "{}", 401),
        case(M::PATCH, BOB_PATH, alice, JSON, "{}", 403),
        case(M::PATCH, ALICE_PATH, Some("admin"), JSON, r#"{"revision": 3}"#, 200),
        // The patch's head (after the content type), then its body.
        case(M::PATCH, ME, alice, GZIP, "{}", 501),
        case(M::PATCH, ME, alice, GZIP_TEXT, "{}", 415),
        case(M::PATCH, ME, alice, BOTH_FRAMINGS, "{}", 400),
        case(M::PATCH, ME, alice, LONG, "{}", 413),
        case(M::PATCH, ME, alice, JSON, PADDED, 413),
        case(M::PATCH, ME, alice, CHUNKED, PADDED, 413).sent_as(Pieces),
        case(M::PATCH, ME, alice, CHUNKED, r#"{"revision": 9}"#, 400).sent_as(CutOff),
        case(M::PATCH, ME, alice, JSON, "[1, 2]", 400),
        case(M::PATCH, ME, alice, JSON, "{not json", 400),
        case(M::PATCH, ME, alice, JSON, "", 400),
        case(M::PATCH, ME, alice, JSON, r#"{"a": {"b": {"c": {"d": 1}}}}"#, 400),
        case(M::PATCH, ME, alice, JSON, r#"{"@odata.type": "x"}"#, 400),
        // The operation.
        case(M::PATCH, ME, alice, STALE, r#"{"revision": 5}"#, 412),
        case(M::PATCH, ME, alice, MINIMAL, r#"{"revision": 6}"#, 204),
        case(M::PATCH, ME, alice, JSON, r#"{"revision": null}"#, 200),
        case(M::POST, "/beta/$batch", alice, JSON, BATCH, 200),
    ];
    // Each caller has `BUDGET` requests an hour (Alice uses fewer): Bob's last two are 429
    // before anything else is looked at.
    cases.push(case(M::PATCH, ME, Some("bob"), JSON, r#"{"revision": 7}"#, 200));
    cases.push(case(M::PATCH, "/beta/nowhere", Some("bob"), TEXT, "words", 404));
    for _ in 2..BUDGET {
        cases.push(case(M::GET, ME, Some("bob"), &[], "", 200));
    }
    cases.push(case(M::PATCH, "/beta/nowhere", Some("bob"), TEXT_5, "words", 429));
    cases.push(case(M::PATCH, ME, Some("bob"), JSON, r#"{"revision": 8}"#, 429));
    // The batch's sub-requests count too.
    let alices = cases.iter().filter(|case| case.token == alice).count() + 3;
    assert!(alices < BUDGET as usize, "{alices}");
    cases
}

/// A request body sent as `Frames` says.
pub struct TestBody {
    frames: VecDeque<Bytes>,
    cut_off: bool,
    stalls: bool,
}

impl http_body::Body for TestBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(match self.frames.pop_front() {
            Some(frame) => Some(Ok(Frame::data(frame))),
            // Never woken: only a deadline ends the wait.
            None if self.stalls => return Poll::Pending,
            None if self.cut_off => Some(Err(std::io::ErrorKind::ConnectionReset.into())),
            None => None,
        })
    }
}

pub fn request_of(case: &Case, version: Version) -> Request<TestBody> {
    let mut builder = Request::builder()
        .method(case.method.clone())
        .uri(case.path)
        .version(version)
        .header("client-request-id", CLIENT_ID);
    if let Some(token) = case.token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in case.headers {
        builder = builder.header(*name, *value);
    }
    let body = Bytes::from_static(case.body.as_bytes());
    let frames = match case.frames {
        Frames::Whole => VecDeque::from([body]),
        Frames::Pieces | Frames::CutOff => (0..body.len()).map(|at| body.slice(at..=at)).collect(),
        Frames::Stalls => (0..body.len() / 2).map(|at| body.slice(at..=at)).collect(),
    };
    let cut_off = case.frames == Frames::CutOff;
    let stalls = case.frames == Frames::Stalls;
    builder
        .body(TestBody {
            frames,
            cut_off,
            stalls,
        })
        .unwrap()
}

/// The answer with what differs by run taken out: the request ids and dates, wherever
/// they are (headers, error bodies, a batch's answers; the client's id is sent, and kept in
/// the answer's headers).
pub async fn comparable<B>(
    response: http::Response<B>,
) -> (StatusCode, Version, Vec<(String, String)>, Value)
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    // Every answer carries a fresh GUID and the client's id, the same in an error's body.
    let request_id = parts.headers["request-id"].to_str().unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(request_id).unwrap().get_version_num(),
        4
    );
    assert_eq!(parts.headers["client-request-id"], CLIENT_ID);
    if let Ok(error) = serde_json::from_slice::<Value>(&body)
        && let Some(inner) = error.pointer("/error/innerError")
    {
        assert_eq!(inner["request-id"], request_id, "{error}");
        assert_eq!(inner["client-request-id"], CLIENT_ID, "{error}");
    }
    // In their order: the order they go on the wire in.
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let value = if name == "request-id" {
                "(fresh)"
            } else {
                value.to_str().unwrap()
            };
            (name.to_string(), value.to_owned())
        })
        .collect();
    let mut body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    forget_ids(&mut body);
    (parts.status, parts.version, headers, body)
}

pub fn forget_ids(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.shift_remove("request-id");
            map.shift_remove("client-request-id");
            map.shift_remove("date");
            map.values_mut().for_each(forget_ids);
        }
        Value::Array(items) => items.iter_mut().for_each(forget_ids),
        _ => {}
    }
}

/// The audit records, without their time.
#[derive(Debug, Default)]
pub struct Recorded(pub Mutex<Vec<AuditRecord>>);

impl AuditSink for Recorded {
    fn record(&self, record: &AuditRecord) {
        let mut record = record.clone();
        record.at = SystemTime::UNIX_EPOCH;
        self.0.lock().unwrap().push(record);
    }
}

/// The default policy, counting how often it is asked.
#[derive(Debug)]
pub struct Counted(pub DefaultPolicy, pub Arc<AtomicUsize>);

impl Policy for Counted {
    fn authorize(
        &self,
        principal: &Principal,
        access: Access,
        target: &Target<'_>,
    ) -> Result<ObjectKey, GraphError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.authorize(principal, access, target)
    }
}

/// One side of the comparison: its store, audit trail and count of policy calls.
pub struct Side {
    pub store: MemoryStore,
    pub audit: Arc<Recorded>,
    pub asked: Arc<AtomicUsize>,
}

impl Side {
    /// The side, and a builder configured for it (schema, prefix, audit, policy).
    pub fn new() -> (Self, StackBuilder<MemoryStore>) {
        Self::with_store(|store| store)
    }

    /// [`new`](Self::new), its store seen through `wrap`.
    pub fn with_store<S: SecurityStore>(
        wrap: impl Fn(MemoryStore) -> S,
    ) -> (Self, StackBuilder<S>) {
        let side = Self {
            store: MemoryStore::new(),
            audit: Arc::default(),
            asked: Arc::default(),
        };
        let service = StackBuilder::new(wrap(side.store.clone()))
            .with_schema(ResourceSchema::open_type())
            .with_path_prefix(PREFIX)
            .with_audit(side.audit.clone())
            .with_policy(Counted(DefaultPolicy::new(), side.asked.clone()));
        (side, service)
    }
}

/// A memory store that waits once before each answer and does not answer at once
/// ([`SecurityStore::at_once`] is `None`), as a store over a network: its operations run in
/// the service's response future rather than in its `call`.
#[derive(Debug, Clone)]
pub struct Waiting(pub MemoryStore);

impl SecurityStore for Waiting {
    async fn load(&self, key: &ObjectKey) -> Result<Option<Snapshot>, StoreError> {
        tokio::task::yield_now().await;
        self.0.load(key).await
    }

    async fn compare_and_swap(
        &self,
        key: &ObjectKey,
        expected_version: u64,
        new: Snapshot,
    ) -> Result<SwapOutcome, StoreError> {
        tokio::task::yield_now().await;
        self.0.compare_and_swap(key, expected_version, new).await
    }

    async fn count_tenant(&self, tenant_id: &str) -> Result<Option<u64>, StoreError> {
        self.0.count_tenant(tenant_id).await
    }
}

pub fn rate_limit() -> RateLimitLayer {
    RateLimitLayer::new(BUDGET, Duration::from_secs(3600)).with_burst(BUDGET)
}

pub fn merge_patch() -> MergePatchLayer {
    MergePatchLayer::new()
        .with_limit(LIMIT)
        .with_max_depth(MAX_DEPTH)
}

/// Sends every case of [`cases`] to `one` and to `other`, in `version`, and requires the same
/// answer of both, and of `one` the status `expected` names.
pub async fn answer_alike<A, B, RA, RB>(
    one: &A,
    other: &B,
    version: Version,
    expected: impl Fn(&Case) -> u16,
) where
    A: tower::Service<Request<TestBody>, Response = http::Response<RA>> + Clone,
    A::Error: std::fmt::Debug,
    B: tower::Service<Request<TestBody>, Response = http::Response<RB>> + Clone,
    B::Error: std::fmt::Debug,
    RA: http_body::Body,
    RA::Error: std::fmt::Debug,
    RB: http_body::Body,
    RB::Error: std::fmt::Debug,
{
    use tower::ServiceExt;
    for case in cases() {
        let what = format!(
            "{version:?} {} {} {:?}",
            case.method, case.path, case.headers
        );
        let from_one = one.clone().oneshot(request_of(&case, version)).await;
        let from_one = comparable(from_one.unwrap()).await;
        let from_other = other.clone().oneshot(request_of(&case, version)).await;
        let from_other = comparable(from_other.unwrap()).await;
        assert_eq!(from_one.0.as_u16(), expected(&case), "{what}: {from_one:?}");
        assert_eq!(from_one, from_other, "{what}");
    }
}

/// Requires that the two sides stored the same objects, audited the same records and asked
/// the policy as often; returns the records and the count.
pub async fn same_effects(one: &Side, other: &Side) -> (Vec<AuditRecord>, usize) {
    use super::common::{ALICE, BOB, TENANT};
    for user in [ALICE, BOB] {
        let key = ObjectKey::new(TENANT, user);
        let from_one = one.store.load(&key).await.unwrap().unwrap();
        let from_other = other.store.load(&key).await.unwrap().unwrap();
        assert_eq!(from_one.version(), from_other.version(), "{user}");
        assert_eq!(from_one.document(), from_other.document(), "{user}");
    }
    let audited = one.audit.0.lock().unwrap().clone();
    assert_eq!(audited, *other.audit.0.lock().unwrap());
    let asked = one.asked.load(Ordering::SeqCst);
    assert_eq!(asked, other.asked.load(Ordering::SeqCst));
    (audited, asked)
}
