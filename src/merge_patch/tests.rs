//! Unit tests of the merge-patch layer: what reaches the inner service, and every refusal.

use super::*;
use http::{Method, Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use http_body_util::Full;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::Layer;
use tower::{ServiceExt, service_fn};

type Inner = RequestBody<Full<Bytes>>;

async fn echo_patch(request: Request<Inner>) -> Result<Response<String>, Infallible> {
    let text = match request.extensions().get::<MergePatch>() {
        Some(patch) => serde_json::to_string(patch.document()).unwrap(),
        None => "no patch".to_owned(),
    };
    Ok(Response::new(text))
}

async fn send(layer: MergePatchLayer, request: Request<Full<Bytes>>) -> (u16, String) {
    let response = layer
        .layer(service_fn(echo_patch))
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn patch(body: &'static str) -> Request<Full<Bytes>> {
    Request::patch("/me/security")
        .body(Full::from(body))
        .unwrap()
}

#[tokio::test]
async fn object_patch_reaches_the_inner_service_parsed() {
    let (status, body) = send(MergePatchLayer::new(), patch(r#"{"a":{"b":null}}"#)).await;
    assert_eq!((status, body.as_str()), (200, r#"{"a":{"b":null}}"#));
}

#[tokio::test]
async fn non_patch_methods_pass_through_unparsed() {
    let request = Request::get("/me/security").body(Full::from("[]")).unwrap();
    let (status, body) = send(MergePatchLayer::new(), request).await;
    assert_eq!((status, body.as_str()), (200, "no patch"));
}

#[tokio::test]
async fn bad_bodies_are_400_with_a_precise_message() {
    let cases = [
        ("", "empty"),
        ("   ", "empty"),
        ("[1,2]", "not an array"),
        ("null", "not null"),
        ("\"x\"", "not a string"),
        ("{\"a\":", "ends before"),
        ("{\"a\":1} trailing", "not valid JSON"),
        ("{\"a\":1,\"a\":2}", r#"duplicate member \"a\""#),
        ("{nope}", "not valid JSON"),
        ("{\"n\":18446744073709551616}", "outside the 64-bit range"),
        (
            "{\"n\":1e-400}",
            "number 1e-400 of member \\\"n\\\" is too small",
        ),
        (
            "{\"n\":-123456789012345678901234567890}",
            "of member \\\"n\\\"",
        ),
    ];
    for (body, needle) in cases {
        let (status, text) = send(MergePatchLayer::new(), patch(body)).await;
        assert_eq!(status, 400, "body {body:?}");
        assert!(text.contains(needle), "body {body:?} gave {text}");
        assert!(text.contains("\"innerError\""), "{text}");
    }
}

#[tokio::test]
async fn too_deep_is_400() {
    let deep = format!("{}{}", "{\"a\":".repeat(5), "1}}}}}");
    let request = Request::patch("/").body(Full::from(deep)).unwrap();
    let (status, text) = send(MergePatchLayer::new().with_max_depth(4), request).await;
    assert_eq!(status, 400);
    assert!(text.contains("nested too deeply"), "{text}");
}

#[tokio::test]
async fn over_limit_by_content_length_is_413() {
    let request = Request::patch("/")
        .header("content-length", "100")
        .body(Full::from("{}"))
        .unwrap();
    let (status, text) = send(MergePatchLayer::new().with_limit(10), request).await;
    assert_eq!(status, 413);
    assert!(text.contains("limit of 10 bytes"), "{text}");
}

/// A chunked body that never ends, or fails on its first read.
enum TestBody {
    Endless,
    Failing,
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(Some(match *self {
            Self::Endless => Ok(Frame::data(Bytes::from_static(
                b"{\"a\":\"xxxxxxxxxxxxxxxx",
            ))),
            Self::Failing => Err(std::io::Error::other("connection reset")),
        }))
    }
}

async fn status_of(layer: MergePatchLayer, body: TestBody) -> u16 {
    let svc = layer.layer(service_fn(|_req: Request<RequestBody<TestBody>>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let response = svc
        .oneshot(Request::patch("/").body(body).unwrap())
        .await
        .unwrap();
    response.status().as_u16()
}

#[tokio::test]
async fn over_limit_chunked_body_is_413_without_reading_it_all() {
    // An endless stream: the layer must stop at the limit instead of buffering forever.
    let layer = MergePatchLayer::new().with_limit(1024);
    assert_eq!(status_of(layer, TestBody::Endless).await, 413);
}

#[tokio::test]
async fn body_read_error_is_400_not_an_empty_patch() {
    assert_eq!(
        status_of(MergePatchLayer::new(), TestBody::Failing).await,
        400
    );
}

#[tokio::test]
async fn transfer_codings_other_than_chunked_are_501_before_the_body_is_read() {
    for (coding, status) in [
        ("gzip, chunked", 501),
        ("chunked, chunked", 200),
        ("Chunked", 200),
        (", chunked", 200),
        ("identity", 501),
    ] {
        let request = Request::patch("/me/security")
            .header("transfer-encoding", coding)
            .body(Full::from("{}"))
            .unwrap();
        let (got, text) = send(MergePatchLayer::new(), request).await;
        assert_eq!(got, status, "{coding}: {text}");
    }
    // Other methods too: the body is never read as if it were plain.
    let request = Request::get("/me/security")
        .header("transfer-encoding", "gzip, chunked")
        .body(Full::from(""))
        .unwrap();
    assert_eq!(send(MergePatchLayer::new(), request).await.0, 501);
}

/// The head's refusals of a request that names a transfer coding, in their order: a coding
/// we do not implement is 501 whatever else is wrong (both framings, a length over the
/// limit); both framings on a PATCH are 400 before its length is judged; a request of
/// another method, whose body this layer never reads, passes on with both.
#[tokio::test]
async fn a_coded_requests_refusals_come_in_their_order() {
    let over = (DEFAULT_LIMIT + 1).to_string();
    for (method, coding, length, status) in [
        (Method::PATCH, "gzip", "2", 501),
        (Method::PATCH, "gzip", over.as_str(), 501),
        (Method::PATCH, "chunked", over.as_str(), 400),
        (Method::PATCH, "chunked", "2", 400),
        (Method::GET, "chunked", "2", 200),
        (Method::POST, "chunked", "2", 200),
    ] {
        let request = Request::builder()
            .method(method.clone())
            .uri("/me/security")
            .header("transfer-encoding", coding)
            .header("content-length", length)
            .body(Full::from("{}"))
            .unwrap();
        let (got, text) = send(MergePatchLayer::new(), request).await;
        assert_eq!(got, status, "{method} {coding} {length}: {text}");
        if status == 200 {
            assert_eq!(text, "no patch", "{method}: passed on unread");
        }
    }
}

/// A clone shares the parsed patch; changing one (stripping its annotations) leaves the other
/// as it was, and either gives its own document by value even while the other holds it.
#[test]
fn a_clone_shares_the_parse_and_keeps_its_own_value() {
    let raw = Bytes::from_static(br##"{"a":1,"b@odata.type":"#Int32","b":2}"##);
    let original = MergePatch::parse(raw.clone(), DEFAULT_MAX_DEPTH).unwrap();
    let mut stripped = original.clone();
    assert!(
        std::ptr::eq(original.raw(), stripped.raw()),
        "a clone shares the parse"
    );
    stripped.strip_annotations().unwrap();
    let names = |patch: &MergePatch| patch.document().keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&stripped), ["a", "b"]);
    assert_eq!(names(&original), ["a", "b@odata.type", "b"]);
    assert_eq!(original.raw(), &raw);
    let held = original.clone();
    assert_eq!(original.into_document(), *held.document());
    assert_eq!(
        held.into_document().len(),
        3,
        "the last handle gives its own"
    );
}
