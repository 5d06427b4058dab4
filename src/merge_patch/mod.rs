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
pub(crate) mod canonical;
mod cursor;
mod future;
mod layer;
mod parse;
pub(crate) mod reading;
pub(crate) mod scan;
#[cfg(test)]
pub(crate) mod scan_tests;
#[cfg(test)]
mod tests;
mod text;
pub(crate) mod value;

pub use apply::{apply, apply_to_object};
pub use future::ResponseFuture;
pub use layer::{MergePatchLayer, MergePatchService};
pub(crate) use reading::unsupported_transfer_coding;
pub(crate) use text::{PatchText, PlainNames};

use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::header;
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

/// A merge patch document: always a JSON object, checked whole when it was parsed.
///
/// The write path works on the patch's JSON text (its top-level members indexed, see
/// `scan`); the [`document`](Self::document) as a `serde_json` map is built the first time
/// something asks for it.
///
/// A handle on the parsed patch, shared (a clone shares it): a request's patch is moved from
/// the layer that reads it through the request's extensions to the write and its audit
/// record, and a pointer moves where the parsed patch (~200 bytes) was copied at each step.
#[derive(Clone)]
pub struct MergePatch {
    parsed: Arc<Parsed>,
}

/// What [`MergePatch`] shares.
#[derive(Clone)]
struct Parsed {
    raw: Bytes,
    /// The patch as JSON text: `raw` when the strict scan accepted it, else the parsed
    /// document written out again. `None` only when that did not scan either (nested past
    /// the scan's bound): then writes use the document.
    text: Option<PatchText>,
    document: OnceLock<Map<String, Value>>,
}

impl fmt::Debug for MergePatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured, so that a field added to `Parsed` is not left out here.
        let Parsed {
            raw,
            text,
            document,
        } = &*self.parsed;
        f.debug_struct("MergePatch")
            .field("raw", raw)
            .field("text", text)
            .field("document", document)
            .finish()
    }
}

impl Parsed {
    /// The document the raw bytes hold, parsed.
    ///
    /// # Panics
    /// Never: a text the patch scan accepted is one `serde_json` parses, and a patch that did
    /// not scan was made with its document.
    fn read_document(&self) -> Map<String, Value> {
        serde_json::from_slice(&self.raw).expect("a text the patch scan accepted parses")
    }
}

impl From<Parsed> for MergePatch {
    fn from(parsed: Parsed) -> Self {
        Self {
            parsed: Arc::new(parsed),
        }
    }
}

/// The scan's nesting bound: below `serde_json`'s own, so that whatever the scan accepts,
/// `serde_json` parses.
const SCAN_DEPTH_LIMIT: usize = parse::SERDE_JSON_DEPTH_LIMIT - 1;

impl PartialEq for MergePatch {
    fn eq(&self, other: &Self) -> bool {
        self.parsed.raw == other.parsed.raw && self.document() == other.document()
    }
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
        if let Some(scanned) = scan::scan_noting_compact(&raw, depth.min(SCAN_DEPTH_LIMIT)) {
            return Ok(Parsed {
                text: Some(PatchText::new(&raw, scanned)),
                raw,
                document: OnceLock::new(),
            }
            .into());
        }
        // What the scan refuses, the parse judges: it names the problem, or accepts what the
        // scan is stricter about.
        match parse::parse_value_noting_floats(&raw, depth) {
            Ok((Value::Object(document), saw_float)) => match saw_float
                .then(|| parse::out_of_range_number(&raw))
                .flatten()
            {
                None => Ok(Self::of_document(raw, document)),
                Some((member, literal, parse::Lost::Rounded)) => Err(bad_request(format!(
                    "the integer {literal} of member {member:?} is outside the 64-bit range and \
                     would be rounded; send it as a string"
                ))),
                Some((member, literal, parse::Lost::Zeroed)) => Err(bad_request(format!(
                    "the number {literal} of member {member:?} is too small for a 64-bit float \
                     and would be stored as 0; send it as a string"
                ))),
            },
            Ok((other, _)) => Err(bad_request(format!(
                "the request body must be a JSON object, not {}",
                json_kind(&other)
            ))),
            Err(error) => Err(bad_request(describe_json_error(&error))),
        }
    }

    fn of_document(raw: Bytes, document: Map<String, Value>) -> Self {
        Parsed {
            raw,
            text: PatchText::of(&document),
            document: OnceLock::from(document),
        }
        .into()
    }

    /// The patch document.
    ///
    /// # Panics
    /// Never: a text the patch scan accepted is one `serde_json` parses.
    #[must_use]
    pub fn document(&self) -> &Map<String, Value> {
        let parsed = &*self.parsed;
        parsed.document.get_or_init(|| parsed.read_document())
    }

    /// The patch document, by value, for [`apply_to_object`].
    #[must_use]
    pub fn into_document(self) -> Map<String, Value> {
        match Arc::try_unwrap(self.parsed) {
            Ok(mut parsed) => parsed
                .document
                .take()
                .unwrap_or_else(|| parsed.read_document()),
            Err(shared) => Self { parsed: shared }.document().clone(),
        }
    }

    /// The bytes the patch was parsed from.
    #[must_use]
    pub fn raw(&self) -> &Bytes {
        &self.parsed.raw
    }

    /// The patch as JSON text with its members indexed (see [`PatchText`]); the text is
    /// [`text_json`](Self::text_json).
    pub(crate) fn text(&self) -> Option<&PatchText> {
        self.parsed.text.as_ref()
    }

    /// The JSON text [`text`](Self::text) indexes: the raw bytes, or the document written
    /// out again when they did not scan.
    pub(crate) fn text_json(&self) -> &[u8] {
        let parsed = &*self.parsed;
        parsed
            .text
            .as_ref()
            .and_then(|text| text.rewritten.as_deref())
            .unwrap_or(&parsed.raw)
    }

    /// The names of the top-level members when every one can be read and none is `id`,
    /// `@odata.type` (the two whose values the schema reads) or an annotation; `None`
    /// otherwise.
    pub(crate) fn plain_names(&self) -> Option<PlainNames<'_>> {
        let json = self.text_json();
        self.text()
            .filter(|text| text.plain)
            .map(|text| PlainNames { json, text })
    }

    /// Removes the annotations (see `odata::annotations::strip`).
    ///
    /// # Errors
    /// 400 naming the first malformed annotation.
    pub(crate) fn strip_annotations(&mut self) -> Result<(), GraphError> {
        if self.text().is_some_and(|text| !text.annotated) {
            return Ok(());
        }
        // Copied first when shared, then parsed in the copy: not parsed into the shared
        // handle only to be copied with it.
        let parsed = Arc::make_mut(&mut self.parsed);
        let mut document = parsed
            .document
            .take()
            .unwrap_or_else(|| parsed.read_document());
        let stripped = crate::odata::annotations::strip(&mut document);
        parsed.text = PatchText::of(&document);
        parsed.document = OnceLock::from(document);
        stripped
    }

    /// [`compact_json`](Self::compact_json), borrowed when the patch was sent compact.
    pub(crate) fn compact_text(&self) -> std::borrow::Cow<'_, str> {
        if self.text().is_some_and(|text| text.compact)
            && let Ok(json) = std::str::from_utf8(self.text_json())
        {
            return std::borrow::Cow::Borrowed(json);
        }
        std::borrow::Cow::Owned(self.compact_json())
    }

    /// The patch as compact JSON, as `serde_json` writes its document, for the audit record.
    pub(crate) fn compact_json(&self) -> String {
        let json = self.text_json();
        let written = self.text().and_then(|text| {
            if text.compact {
                return String::from_utf8(json.to_vec()).ok();
            }
            let mut out = Vec::with_capacity(json.len());
            canonical::write(&mut out, json, false).ok()?;
            String::from_utf8(out).ok()
        });
        written.unwrap_or_else(|| serde_json::to_string(self.document()).unwrap_or_default())
    }
}

pub(crate) fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cold]
pub(crate) fn read_error(error: &BoxError, limit: usize) -> GraphError {
    if error.downcast_ref::<LengthLimitError>().is_some() {
        too_large(limit)
    } else {
        bad_request("the request body could not be read to its end")
    }
}

#[cold]
pub(crate) fn too_large(limit: usize) -> GraphError {
    GraphError::new(
        ErrorKind::PayloadTooLarge,
        format!("the request body exceeds the limit of {limit} bytes"),
    )
}

#[cold]
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
