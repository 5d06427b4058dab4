//! The stack's `Endpoint` (the checks before the body, the merge patch and the service as one
//! service) answers every request exactly as the pieces it fuses, nested by hand, do: the same
//! status, headers and body, in HTTP/1.0, 1.1 and 2, for bodies whole, in pieces or cut off;
//! and it stores, audits and asks the policy the same.

mod common;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode, Version};
use http_body::Frame;
use http_body_util::BodyExt;
use security_update::audit::{AuditRecord, AuditSink};
use security_update::endpoint::Endpoint;
use security_update::{
    Access, AuthLayer, BatchLayer, ContentTypeLayer, DefaultPolicy, GraphError, MemoryStore,
    MergePatchLayer, ObjectKey, Policy, Principal, RateLimitLayer, RequestIdLayer, ResourceSchema,
    SecurityStore, StackBuilder, Target,
};
use serde_json::Value;
use tower::{ServiceBuilder, ServiceExt};

const LIMIT: usize = 64;
const MAX_DEPTH: usize = 3;
const PREFIX: &str = "/beta";
/// Requests each caller may make in the test's hour.
const BUDGET: u32 = 50;

/// How a case's body is sent.
#[derive(Clone, Copy, PartialEq)]
enum Frames {
    /// One frame.
    Whole,
    /// One frame a byte.
    Pieces,
    /// One frame a byte, then a read error: the body cannot be read to its end.
    CutOff,
}

/// One request of the sequence: what is sent, and the status both must answer.
struct Case {
    method: Method,
    path: &'static str,
    token: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    frames: Frames,
    status: u16,
}

const fn case(
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
    fn sent_as(self, frames: Frames) -> Self {
        Self { frames, ..self }
    }
}

const ME: &str = "/beta/me/security";
const BOB_PATH: &str = "/beta/users/bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb/security";
const ALICE_PATH: &str = "/beta/users/aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa/security";
const JSON: &[(&str, &str)] = &[("content-type", "application/json")];
const TEXT: &[(&str, &str)] = &[("content-type", "text/plain")];
const JSON_2: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("content-length", "2"),
];
const TEXT_5: &[(&str, &str)] = &[("content-type", "text/plain"), ("content-length", "5")];
const CHUNKED: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("transfer-encoding", "chunked"),
];
const GZIP: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("transfer-encoding", "gzip"),
];
const GZIP_TEXT: &[(&str, &str)] = &[
    ("content-type", "text/plain"),
    ("transfer-encoding", "gzip"),
];
const BOTH_FRAMINGS: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("transfer-encoding", "chunked"),
    ("content-length", "2"),
];
const LONG: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("content-length", "100"),
];
const TWO_TYPES: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("content-type", "application/json"),
];
const CODED: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("content-encoding", "gzip"),
];
const STALE: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("if-match", "W/\"stale\""),
];
const MINIMAL: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("prefer", "return=minimal"),
];
const PADDED: &str =
    r#"{"revision": 4, "padding": "0123456789012345678901234567890123456789012345678"}"#;
const BATCH: &str = r#"{"requests": [
    {"id": "1", "method": "PATCH", "url": "/me/security", "headers": {"content-type": "application/json"}, "body": {"batched": 1}},
    {"id": "2", "method": "GET", "url": "/me/security", "dependsOn": ["1"]},
    {"id": "3", "method": "PATCH", "url": "/me/security", "headers": {"content-type": "text/plain"}, "body": "x"}
]}"#;

#[rustfmt::skip]
fn cases() -> Vec<Case> {
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
struct TestBody {
    frames: VecDeque<Bytes>,
    cut_off: bool,
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
            None if self.cut_off => Some(Err(std::io::ErrorKind::ConnectionReset.into())),
            None => None,
        })
    }
}

fn request(case: &Case, version: Version) -> Request<TestBody> {
    let mut builder = Request::builder()
        .method(case.method.clone())
        .uri(case.path)
        .version(version)
        .header("client-request-id", "5b3a3a3e-0000-4000-8000-000000000001");
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
    };
    let cut_off = case.frames == Frames::CutOff;
    builder.body(TestBody { frames, cut_off }).unwrap()
}

/// The answer with what differs by run taken out: the request ids and dates, wherever
/// they are (headers, error bodies, a batch's answers; the client's id is sent, and kept in
/// the answer's headers).
async fn comparable<B>(
    response: http::Response<B>,
) -> (StatusCode, Version, Vec<(String, String)>, Value)
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter(|(name, _)| *name != "request-id")
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    let mut body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    forget_ids(&mut body);
    (parts.status, parts.version, headers, body)
}

fn forget_ids(value: &mut Value) {
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
struct Recorded(Mutex<Vec<AuditRecord>>);

impl AuditSink for Recorded {
    fn record(&self, record: &AuditRecord) {
        let mut record = record.clone();
        record.at = SystemTime::UNIX_EPOCH;
        self.0.lock().unwrap().push(record);
    }
}

/// The default policy, counting how often it is asked.
#[derive(Debug)]
struct Counted(DefaultPolicy, Arc<AtomicUsize>);

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
struct Side {
    store: MemoryStore,
    audit: Arc<Recorded>,
    asked: Arc<AtomicUsize>,
}

impl Side {
    fn new() -> (Self, security_update::SecurityUpdateService<MemoryStore>) {
        let side = Self {
            store: MemoryStore::new(),
            audit: Arc::default(),
            asked: Arc::default(),
        };
        let service = StackBuilder::new(side.store.clone())
            .with_schema(ResourceSchema::open_type())
            .with_path_prefix(PREFIX)
            .with_audit(side.audit.clone())
            .with_policy(Counted(DefaultPolicy::new(), side.asked.clone()))
            .into_service();
        (side, service)
    }
}

fn rate_limit() -> RateLimitLayer {
    RateLimitLayer::new(BUDGET, Duration::from_secs(3600)).with_burst(BUDGET)
}

fn merge_patch() -> MergePatchLayer {
    MergePatchLayer::new()
        .with_limit(LIMIT)
        .with_max_depth(MAX_DEPTH)
}

async fn the_same_in(version: Version) {
    let (fused_side, service) = Side::new();
    let fused = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(AuthLayer::new(tokens()))
        .layer(BatchLayer::with_prefix(PREFIX, 4096).with_rate_limit(rate_limit()))
        .service(Endpoint::new(service, rate_limit(), merge_patch()));
    let (nested_side, service) = Side::new();
    let nested = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(AuthLayer::new(tokens()))
        .layer(BatchLayer::with_prefix(PREFIX, 4096).with_rate_limit(rate_limit()))
        .layer(rate_limit())
        .layer(service.preflight_layer())
        .layer(ContentTypeLayer::new())
        .layer(merge_patch())
        .service(service);

    for case in cases() {
        let what = format!(
            "{version:?} {} {} {:?}",
            case.method, case.path, case.headers
        );
        let from_fused = comparable(
            fused
                .clone()
                .oneshot(request(&case, version))
                .await
                .unwrap(),
        );
        let from_nested = comparable(
            nested
                .clone()
                .oneshot(request(&case, version))
                .await
                .unwrap(),
        );
        let (from_fused, from_nested) = (from_fused.await, from_nested.await);
        assert_eq!(from_fused.0.as_u16(), case.status, "{what}: {from_fused:?}");
        assert_eq!(from_fused, from_nested, "{what}");
    }
    // Each wrote, audited and asked the policy the same.
    for user in [ALICE, BOB] {
        let key = ObjectKey::new(TENANT, user);
        let fused = fused_side.store.load(&key).await.unwrap().unwrap();
        let nested = nested_side.store.load(&key).await.unwrap().unwrap();
        assert_eq!(fused.version(), nested.version(), "{user}");
        assert_eq!(fused.document(), nested.document(), "{user}");
    }
    // Revisions 1, 2 (in pieces), 3 (by the admin), 6, null, and the batch's one.
    let alice = fused_side.store.load(&ObjectKey::new(TENANT, ALICE)).await;
    assert_eq!(alice.unwrap().unwrap().version(), 6);
    let audited = fused_side.audit.0.lock().unwrap().clone();
    assert_eq!(audited, *nested_side.audit.0.lock().unwrap());
    // Seven writes and the refused attempt at Bob's object.
    assert_eq!(audited.len(), 8, "{audited:?}");
    let asked = fused_side.asked.load(Ordering::SeqCst);
    assert_eq!(asked, nested_side.asked.load(Ordering::SeqCst));
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
