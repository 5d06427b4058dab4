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
mod future;
mod layer;
mod parse;
#[cfg(test)]
mod tests;

pub(crate) use apply::without_nulls;
pub use apply::{apply, apply_to_object};
pub use future::ResponseFuture;
pub(crate) use layer::unsupported_transfer_coding;
pub use layer::{MergePatchLayer, MergePatchService};

use bytes::Bytes;
use http::header;
use http::request::Parts;
use http_body_util::LengthLimitError;
use serde_json::{Map, Value};

use crate::error::{ErrorKind, GraphError};

/// The request body the inner service of [`MergePatchLayer`] sees: untouched for methods
/// without a patch, the already-read bytes of the patch for `PATCH` (so an inner axum handler
/// can still extract them). The crate's one two-way body, shared with the layers' responses.
pub type RequestBody<B> = crate::body::ResponseBody<B>;

/// Default body limit: 1 MiB, the server's `--max-body` default.
pub const DEFAULT_LIMIT: usize = 1024 * 1024;
/// Default nesting bound for patches: far beyond any real resource, far below a stack risk.
pub const DEFAULT_MAX_DEPTH: usize = 64;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
        match parse::parse_value_noting_floats(&raw, depth) {
            Ok((Value::Object(document), saw_float)) => match saw_float
                .then(|| parse::out_of_range_integer(&raw))
                .flatten()
            {
                None => Ok(Self { document, raw }),
                Some((member, literal)) => Err(bad_request(format!(
                    "the integer {literal} of member {member:?} is outside the 64-bit range and \
                     would be rounded; send it as a string"
                ))),
            },
            Ok((other, _)) => Err(bad_request(format!(
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

    pub(crate) fn document_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.document
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

pub(crate) fn declared_length(parts: &Parts) -> Option<u64> {
    parts
        .headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Marks `response` as the last on its HTTP/1 connection: it refuses a request whose body was
/// not (or not wholly) read, and the unread rest of that body would otherwise be taken for the
/// next request, or make the close reset the connection under a client that still sends. The
/// client learns from `Connection: close` not to reuse the connection (RFC 9112 §9.6).
/// HTTP/2 streams are independent: nothing to do there.
pub(crate) fn close_after<B>(
    mut response: http::Response<B>,
    version: http::Version,
) -> http::Response<B> {
    if version <= http::Version::HTTP_11 {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}

pub(crate) fn read_error(error: &BoxError, limit: usize) -> GraphError {
    if error.downcast_ref::<LengthLimitError>().is_some() {
        too_large(limit)
    } else {
        bad_request("the request body could not be read to its end")
    }
}

pub(crate) fn too_large(limit: usize) -> GraphError {
    GraphError::new(
        ErrorKind::PayloadTooLarge,
        format!("the request body exceeds the limit of {limit} bytes"),
    )
}

pub(crate) fn bad_request(message: impl Into<std::borrow::Cow<'static, str>>) -> GraphError {
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
