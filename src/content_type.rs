//! Content-type enforcement: a request with a body must be JSON, in UTF-8.
//!
//! Graph's update operations require `Content-Type: application/json`; RFC 7396 names
//! `application/merge-patch+json`. Both are accepted, with any parameters (`OData` clients send
//! `odata.metadata=...`), as long as a `charset`, if present, is UTF-8 in any case. Anything else
//! is `415 Unsupported Media Type` with `Accept-Patch` listing what would be accepted; a
//! `Content-Type` sent twice is `400`, since no single media type can be trusted.
//!
//! A request "has a body" when its method is `PATCH`, or it announces one with a non-zero
//! `Content-Length` or a `Transfer-Encoding`. Requests that pass get a
//! [`JsonContentType`] marker in their extensions, which [`SecurityUpdateService`] looks for so
//! that forgetting this layer fails closed.
//!
//! | request                                   | status |
//! |-------------------------------------------|--------|
//! | `PATCH`, `application/json`               | passed on |
//! | `PATCH`, `application/json; charset=latin1` | 415 |
//! | `PATCH`, no `Content-Type`                | 415 |
//! | `PATCH`, two `Content-Type` headers       | 400 |
//! | `PATCH`, `Content-Encoding: gzip`         | 415, with `Accept-Encoding: identity` |
//! | `GET`, no body                            | passed on |
//!
//! ```
//! use security_update::ContentTypeLayer;
//! use tower::{service_fn, Layer, ServiceExt};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ContentTypeLayer::new().layer(service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
//! }));
//! let request = http::Request::patch("/me/security")
//!     .header("content-type", "text/plain")
//!     .body(())
//!     .unwrap();
//! let response = svc.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 415);
//! assert_eq!(response.headers()["accept-patch"], "application/json, application/merge-patch+json");
//! # }
//! ```
//!
//! [`SecurityUpdateService`]: crate::SecurityUpdateService

use std::task::{Context, Poll};

use http::header::{self, HeaderMap};
use http::{Method, Request, Response};
use tower::{Layer, Service};

use crate::body::{ResponseBody, ResponseFuture};
use crate::error::{ErrorKind, GraphError};

/// Marker in request extensions: the body's media type was checked and is JSON in UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JsonContentType;

/// Rejects requests whose body is not JSON; see the [module docs](self).
#[must_use]
#[derive(Debug, Clone, Copy, Default)]
pub struct ContentTypeLayer {
    _priv: (),
}

impl ContentTypeLayer {
    /// Accepts `application/json` and `application/merge-patch+json`, UTF-8 or no charset.
    pub fn new() -> Self {
        Self { _priv: () }
    }
}

impl<S> Layer<S> for ContentTypeLayer {
    type Service = ContentType<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ContentType { inner }
    }
}

/// The service made by [`ContentTypeLayer`].
#[must_use]
#[derive(Debug, Clone)]
pub struct ContentType<S> {
    inner: S,
}

impl<S> ContentType<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    crate::macros::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ContentType<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        match admit(&mut request) {
            Ok(()) => ResponseFuture::inner(self.inner.call(request)),
            Err(error) => ResponseFuture::rejected(error.into_refusal(&request)),
        }
    }
}

/// The layer's check of `request`: [`check`], and the request then says it was checked.
fn admit<B>(request: &mut Request<B>) -> Result<(), GraphError> {
    if check(request)? {
        request.extensions_mut().insert(JsonContentType);
    }
    Ok(())
}

/// The check itself (the layer's, and the stack's [`Endpoint`](crate::endpoint::Endpoint)'s):
/// a body whose media type matters must be JSON. `Ok(true)`: there was one, and it is.
pub(crate) fn check<B>(request: &Request<B>) -> Result<bool, GraphError> {
    let checked = has_body(request);
    if checked {
        check_json_content_type(request.headers())?;
    }
    Ok(checked)
}

/// Whether `request` carries (or, being a `PATCH`, must carry) a body whose media type
/// matters. A bare `POST` or `DELETE` is not checked, so the service can answer 405.
pub(crate) fn has_body<B>(request: &Request<B>) -> bool {
    request.method() == Method::PATCH || crate::refusal::declares_body(request.headers())
}

/// Checks the `Content-Type` of a request with a body.
///
/// # Errors
/// 415 when it is absent, not JSON, unparseable or not UTF-8; 400 when sent more than once.
pub(crate) fn check_json_content_type(headers: &HeaderMap) -> Result<(), GraphError> {
    check_identity_coding(headers)?;
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let Some(value) = values.next() else {
        return Err(unsupported(
            "the request has a body but no Content-Type; send application/json",
        ));
    };
    if values.next().is_some() {
        return Err(GraphError::new(
            ErrorKind::BadRequest,
            "Content-Type is sent more than once",
        ));
    }
    // The overwhelmingly common case, without parsing.
    let bytes = value.as_bytes();
    if bytes.eq_ignore_ascii_case(b"application/json")
        || bytes.eq_ignore_ascii_case(b"application/merge-patch+json")
    {
        return Ok(());
    }
    let Ok(text) = value.to_str() else {
        return Err(unsupported("Content-Type is not valid ASCII"));
    };
    let Ok(mime) = text.parse::<mime::Mime>() else {
        return Err(unsupported(format!(
            "Content-Type '{text}' cannot be parsed"
        )));
    };
    let essence_ok = mime.type_() == mime::APPLICATION
        && (mime.subtype() == mime::JSON
            || (mime.subtype() == "merge-patch" && mime.suffix() == Some(mime::JSON)));
    if !essence_ok {
        return Err(unsupported(format!(
            "Content-Type '{}' is not supported; send application/json or application/merge-patch+json",
            mime.essence_str()
        )));
    }
    match mime.get_param(mime::CHARSET) {
        None => Ok(()),
        Some(charset) if charset.as_str().eq_ignore_ascii_case("utf-8") => Ok(()),
        Some(charset) => Err(unsupported(format!(
            "charset '{charset}' is not supported; JSON must be UTF-8"
        ))),
    }
}

/// A body in a content coding other than `identity` is 415 (RFC 9110 §8.4 and §15.5.16; the
/// answer's `Accept-Encoding: identity` says what would do): we decode none, and reading
/// compressed bytes as if they were JSON would be a wrong answer at best.
fn check_identity_coding(headers: &HeaderMap) -> Result<(), GraphError> {
    for value in &headers.get_all(header::CONTENT_ENCODING) {
        let Ok(text) = value.to_str() else {
            return Err(GraphError::unsupported_coding(
                "Content-Encoding is not valid ASCII",
            ));
        };
        let mut codings = text.split(',').map(str::trim).filter(|c| !c.is_empty());
        if let Some(coding) = codings.find(|coding| !coding.eq_ignore_ascii_case("identity")) {
            let coding: String = coding.chars().take(64).collect();
            return Err(GraphError::unsupported_coding(format!(
                "Content-Encoding '{coding}' is not supported; send the body unencoded"
            )));
        }
    }
    Ok(())
}

#[cold]
fn unsupported(message: impl Into<std::borrow::Cow<'static, str>>) -> GraphError {
    GraphError::new(ErrorKind::UnsupportedMediaType, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    async fn echo_marker(request: Request<()>) -> Result<Response<String>, Infallible> {
        let marked = request.extensions().get::<JsonContentType>().is_some();
        Ok(Response::new(format!("marked={marked}")))
    }

    async fn through_the_layer(request: Request<()>) -> Response<ResponseBody<String>> {
        ContentTypeLayer::new()
            .layer(service_fn(echo_marker))
            .oneshot(request)
            .await
            .unwrap()
    }

    async fn status_for(method: Method, content_types: &[&str]) -> (u16, Option<String>) {
        let mut builder = Request::builder().method(method).uri("/me/security");
        for value in content_types {
            builder = builder.header("content-type", *value);
        }
        let response = through_the_layer(builder.body(()).unwrap()).await;
        let status = response.status().as_u16();
        let accept_patch = response
            .headers()
            .get("accept-patch")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, accept_patch)
    }

    #[tokio::test]
    async fn a_body_in_any_coding_but_identity_is_415_with_accept_encoding() {
        let cases: &[(&[&str], u16)] = &[
            (&[], 200),
            (&["identity"], 200),
            (&["IDENTITY"], 200),
            (&["identity, identity"], 200),
            (&["gzip"], 415),
            (&["identity, gzip"], 415),
            (&["identity", "br"], 415),
            (&["x-unknown"], 415),
        ];
        for (codings, expected) in cases {
            let mut builder =
                Request::patch("/me/security").header("content-type", "application/json");
            for coding in *codings {
                builder = builder.header("content-encoding", *coding);
            }
            let response = through_the_layer(builder.body(()).unwrap()).await;
            assert_eq!(
                response.status(),
                *expected,
                "Content-Encoding: {codings:?}"
            );
            if *expected == 415 {
                assert_eq!(response.headers()["accept-encoding"], "identity");
            }
        }
        // A 415 for the media type does not say it, so a client can tell the two apart.
        let plain = Request::patch("/me/security")
            .header("content-type", "text/plain")
            .body(())
            .unwrap();
        let response = through_the_layer(plain).await;
        assert_eq!(response.status(), 415);
        assert!(!response.headers().contains_key("accept-encoding"));
    }

    #[tokio::test]
    async fn json_content_types() {
        let cases: &[(&str, u16)] = &[
            ("application/json", 200),
            ("APPLICATION/JSON", 200),
            ("application/json; charset=utf-8", 200),
            ("application/json; charset=UTF-8", 200),
            ("application/json;charset=\"utf-8\"", 200),
            ("application/json;odata.metadata=minimal", 200),
            ("application/merge-patch+json", 200),
            ("application/merge-patch+json; charset=utf-8", 200),
            ("application/json; charset=latin1", 415),
            ("application/json; charset=utf-16", 415),
            ("text/json", 415),
            ("text/plain", 415),
            ("application/xml", 415),
            ("application/jsonx", 415),
            ("application/json-patch+json", 415),
            ("application/", 415),
            ("not a media type", 415),
            (";;;", 415),
        ];
        for (content_type, expected) in cases {
            let (status, accept_patch) = status_for(Method::PATCH, &[content_type]).await;
            assert_eq!(status, *expected, "Content-Type: {content_type}");
            if *expected == 415 {
                assert_eq!(
                    accept_patch.as_deref(),
                    Some("application/json, application/merge-patch+json"),
                    "Accept-Patch for {content_type}"
                );
            }
        }
    }

    #[tokio::test]
    async fn missing_content_type_on_patch_is_415() {
        assert_eq!(status_for(Method::PATCH, &[]).await.0, 415);
    }

    #[tokio::test]
    async fn duplicate_content_type_is_400() {
        let status = status_for(Method::PATCH, &["application/json", "application/json"]).await;
        assert_eq!(status.0, 400);
    }

    #[tokio::test]
    async fn get_without_body_passes_unmarked() {
        let response = through_the_layer(Request::get("/me/security").body(()).unwrap()).await;
        assert_eq!(response.status(), 200);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"marked=false");
    }

    #[tokio::test]
    async fn get_with_announced_body_is_checked() {
        let request = Request::get("/me/security")
            .header("content-length", "5")
            .body(())
            .unwrap();
        let response = through_the_layer(request).await;
        assert_eq!(response.status(), 415);
    }

    #[tokio::test]
    async fn accepted_request_is_marked() {
        let request = Request::patch("/me/security")
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let response = through_the_layer(request).await;
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"marked=true");
    }
}
