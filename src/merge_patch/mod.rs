//! JSON merge patch (RFC 7396): the layer that reads and parses a PATCH body, and [`apply`].
//!
//! [`MergePatchLayer`] reads the body of every `PATCH` request up to a limit, parses it as JSON
//! (depth-bounded, duplicate members rejected, nothing after the value), requires an object, and
//! hands the inner service the result as a [`MergePatch`] in the request's extensions. The inner
//! request's body becomes [`RequestBody`]: the same bytes, already buffered, so an inner axum
//! handler can still extract them. Other methods pass through untouched.
//!
//! | `PATCH` body                               | status |
//! |--------------------------------------------|--------|
//! | `{"@odata.type": "#microsoft.graph.security.security"}` | passed on |
//! | longer than the limit (by `Content-Length` or while reading) | 413 |
//! | empty, not JSON, trailing data, duplicate member | 400 |
//! | nested deeper than the bound              | 400 |
//! | `[1, 2]`, `"x"`, `null` (not an object)    | 400 |
//!
//! ```
//! use security_update::{MergePatch, MergePatchLayer};
//! use tower::{service_fn, Layer, ServiceExt};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = MergePatchLayer::new().with_limit(64).layer(service_fn(
//!     |req: http::Request<security_update::merge_patch::RequestBody<http_body_util::Full<bytes::Bytes>>>| async move {
//!         let patch = req.extensions().get::<MergePatch>().unwrap();
//!         Ok::<_, std::convert::Infallible>(http::Response::new(patch.document().len().to_string()))
//!     },
//! ));
//! let request = http::Request::patch("/me/security")
//!     .body(http_body_util::Full::from(r#"{"a":1,"b":null}"#))
//!     .unwrap();
//! let response = svc.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//!
//! let request = http::Request::patch("/me/security")
//!     .body(http_body_util::Full::from("[1, 2]"))
//!     .unwrap();
//! assert_eq!(svc.oneshot(request).await.unwrap().status(), 400);
//! # }
//! ```

mod apply;
mod parse;

pub use apply::{apply, apply_to_object};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{Method, Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Full, LengthLimitError, Limited};
use pin_project_lite::pin_project;
use serde_json::{Map, Value};
use tower::{Layer, Service};

use crate::body::{ResponseBody, polled_after_completion};
use crate::error::{ErrorKind, GraphError};
use crate::request_id::RequestIds;

/// Default body limit: 1 MiB, the server's `--max-body` default.
pub const DEFAULT_LIMIT: usize = 1024 * 1024;
/// Default nesting bound for patches: far beyond any real resource, far below a stack risk.
pub const DEFAULT_MAX_DEPTH: usize = 64;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A parsed merge patch document: always a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct MergePatch {
    document: Map<String, Value>,
    raw: Bytes,
}

impl MergePatch {
    /// Parses `raw` as a merge patch object nested at most `max_depth` deep.
    ///
    /// # Errors
    /// 400 when `raw` is empty, not JSON, has duplicate members or trailing data, is too deep,
    /// or is not an object. The message says which, with line and column.
    pub fn parse(raw: Bytes, max_depth: usize) -> Result<Self, GraphError> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err(bad_request(
                "the request body is empty; a JSON object is required",
            ));
        }
        let depth = max_depth.min(parse::SERDE_JSON_DEPTH_LIMIT);
        match parse::parse_value(&raw, depth) {
            Ok(Value::Object(document)) => Ok(Self { document, raw }),
            Ok(other) => Err(bad_request(format!(
                "the request body must be a JSON object, not {}",
                json_kind(&other)
            ))),
            Err(error) => Err(bad_request(describe_json_error(&error))),
        }
    }

    /// The patch document.
    pub fn document(&self) -> &Map<String, Value> {
        &self.document
    }

    /// The patch document, by value, for [`apply_to_object`].
    pub fn into_document(self) -> Map<String, Value> {
        self.document
    }

    /// The bytes the patch was parsed from.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }
}

/// Reads, bounds and parses `PATCH` bodies; see the [module docs](self).
#[must_use]
#[derive(Debug, Clone, Copy)]
pub struct MergePatchLayer {
    limit: usize,
    max_depth: usize,
}

impl Default for MergePatchLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl MergePatchLayer {
    /// A 1 MiB body limit and a nesting bound of 64.
    pub fn new() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }

    /// Sets the body limit in bytes; longer bodies are answered 413.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Sets how many arrays and objects may nest (at most 128, serde_json's own bound).
    pub fn with_max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = max_depth.min(parse::SERDE_JSON_DEPTH_LIMIT);
        self
    }
}

impl<S> Layer<S> for MergePatchLayer {
    type Service = MergePatchService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MergePatchService {
            inner,
            limit: self.limit,
            max_depth: self.max_depth,
        }
    }
}

/// The service made by [`MergePatchLayer`].
#[must_use]
#[derive(Debug, Clone)]
pub struct MergePatchService<S> {
    inner: S,
    limit: usize,
    max_depth: usize,
}

impl<S, B, ResBody> Service<Request<B>> for MergePatchService<S>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>> + Clone,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.method() != Method::PATCH {
            let future = self.inner.call(request.map(RequestBody::untouched));
            return ResponseFuture::inner(future);
        }
        let (parts, body) = request.into_parts();
        // Both framings at once is how request smuggling starts (RFC 9112 §6.3): refuse.
        if parts.headers.contains_key(header::TRANSFER_ENCODING)
            && parts.headers.contains_key(header::CONTENT_LENGTH)
        {
            let error = bad_request("Content-Length and Transfer-Encoding are both present");
            return ResponseFuture::rejected(error, &parts);
        }
        if let Some(length) = declared_length(&parts)
            && length > self.limit as u64
        {
            return ResponseFuture::rejected(too_large(self.limit), &parts);
        }
        // The future calls the inner service once the body is in, so it must own the service
        // that was polled ready. See "Be careful when cloning inner services" in tower-service's
        // docs (`tower-service/src/lib.rs`): keep the clone, send the ready one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Collecting {
                body: Limited::new(body, self.limit),
                buffer: Buffer::default(),
                parts: Some(parts),
                inner: Some(inner),
                limit: self.limit,
                max_depth: self.max_depth,
            },
        }
    }
}

pin_project! {
    /// Response future of [`MergePatchService`].
    pub struct ResponseFuture<S, F, B> {
        #[pin]
        state: State<S, F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F, B> {
        Collecting {
            #[pin]
            body: Limited<B>,
            buffer: Buffer,
            parts: Option<Parts>,
            inner: Option<S>,
            limit: usize,
            max_depth: usize,
        },
        Inner { #[pin] future: F },
        Rejected { response: Option<Response<Full<Bytes>>> },
    }
}

impl<S, F, B> std::fmt::Debug for ResponseFuture<S, F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, F, B> ResponseFuture<S, F, B> {
    fn inner(future: F) -> Self {
        Self {
            state: State::Inner { future },
        }
    }

    fn rejected(error: GraphError, parts: &Parts) -> Self {
        let ids = RequestIds::from_parts(&parts.headers, &parts.extensions);
        Self {
            state: State::Rejected {
                response: Some(error.into_response(&ids)),
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, S::Future, B>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut state = self.as_mut().project().state;
            let next = match state.as_mut().project() {
                StateProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Rejected { response } => {
                    let response = response.take().unwrap_or_else(polled_after_completion);
                    return Poll::Ready(Ok(response.map(ResponseBody::error)));
                }
                StateProj::Collecting {
                    mut body,
                    buffer,
                    parts,
                    inner,
                    limit,
                    max_depth,
                } => {
                    let outcome = loop {
                        match ready!(body.as_mut().poll_frame(cx)) {
                            Some(Ok(frame)) => {
                                if let Ok(data) = frame.into_data() {
                                    buffer.push(data);
                                }
                            }
                            Some(Err(error)) => break Err(read_error(&error, *limit)),
                            None => break Ok(buffer.take()),
                        }
                    };
                    let (Some(mut parts), Some(mut inner)) = (parts.take(), inner.take()) else {
                        return Poll::Ready(Ok(polled_after_completion().map(ResponseBody::error)));
                    };
                    match outcome.and_then(|raw| MergePatch::parse(raw, *max_depth)) {
                        Ok(patch) => {
                            let raw = patch.raw.clone();
                            parts.extensions.insert(patch);
                            let request = Request::from_parts(parts, RequestBody::buffered(raw));
                            State::Inner {
                                future: inner.call(request),
                            }
                        }
                        Err(error) => {
                            let ids = RequestIds::from_parts(&parts.headers, &parts.extensions);
                            State::Rejected {
                                response: Some(error.into_response(&ids)),
                            }
                        }
                    }
                }
            };
            state.set(next);
        }
    }
}

/// Accumulates data frames; a body that arrives in one frame is kept without copying.
#[derive(Default)]
struct Buffer {
    first: Option<Bytes>,
    rest: Option<BytesMut>,
}

impl Buffer {
    fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        match (&mut self.first, &mut self.rest) {
            (None, _) => self.first = Some(data),
            (Some(first), None) => {
                let mut joined = BytesMut::with_capacity(first.len() + data.len());
                joined.extend_from_slice(first);
                joined.extend_from_slice(&data);
                self.rest = Some(joined);
            }
            (Some(_), Some(joined)) => joined.extend_from_slice(&data),
        }
    }

    fn take(&mut self) -> Bytes {
        match (self.first.take(), self.rest.take()) {
            (_, Some(joined)) => joined.freeze(),
            (Some(first), None) => first,
            (None, None) => Bytes::new(),
        }
    }
}

pin_project! {
    /// The request body the inner service of [`MergePatchLayer`] sees: untouched for methods
    /// without a patch, the already-read bytes of the patch for `PATCH`.
    #[derive(Debug)]
    pub struct RequestBody<B> {
        #[pin]
        kind: RequestBodyKind<B>,
    }
}

pin_project! {
    #[project = RequestBodyProj]
    #[derive(Debug)]
    enum RequestBodyKind<B> {
        Untouched { #[pin] body: B },
        Buffered { #[pin] body: Full<Bytes> },
    }
}

impl<B> RequestBody<B> {
    fn untouched(body: B) -> Self {
        Self {
            kind: RequestBodyKind::Untouched { body },
        }
    }

    fn buffered(bytes: Bytes) -> Self {
        Self {
            kind: RequestBodyKind::Buffered {
                body: Full::new(bytes),
            },
        }
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            RequestBodyProj::Untouched { body } => body.poll_frame(cx),
            RequestBodyProj::Buffered { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            RequestBodyKind::Untouched { body } => body.is_end_stream(),
            RequestBodyKind::Buffered { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            RequestBodyKind::Untouched { body } => body.size_hint(),
            RequestBodyKind::Buffered { body } => body.size_hint(),
        }
    }
}

fn declared_length(parts: &Parts) -> Option<u64> {
    parts
        .headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn read_error(error: &BoxError, limit: usize) -> GraphError {
    if error.downcast_ref::<LengthLimitError>().is_some() {
        too_large(limit)
    } else {
        bad_request("the request body could not be read to its end")
    }
}

fn too_large(limit: usize) -> GraphError {
    GraphError::new(
        ErrorKind::PayloadTooLarge,
        format!("the request body exceeds the limit of {limit} bytes"),
    )
}

fn bad_request(message: impl Into<std::borrow::Cow<'static, str>>) -> GraphError {
    GraphError::new(ErrorKind::BadRequest, message)
}

fn describe_json_error(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match error.classify() {
        Category::Eof => format!("the request body ends before its JSON value does ({error})"),
        Category::Syntax => format!("the request body is not valid JSON: {error}"),
        Category::Data | Category::Io => format!("the request body is not acceptable: {error}"),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::convert::Infallible;
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
}
