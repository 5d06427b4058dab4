//! Graph's error envelope: every failure any layer or the service produces is rendered here.
//!
//! Microsoft Graph answers errors as
//!
//! ```json
//! {"error":{"code":"InvalidAuthenticationToken","message":"...",
//!           "innerError":{"date":"2026-11-29T01:02:03","request-id":"...","client-request-id":"..."}}}
//! ```
//!
//! with `Content-Type: application/json`. [`GraphError`] is the typed form of that envelope. A
//! rejection response carries its `GraphError` in its extensions, so an outer layer can re-render
//! it in another format without parsing JSON.
//!
//! ```
//! use security_update::{ErrorKind, GraphError};
//!
//! let error = GraphError::new(ErrorKind::PreconditionFailed, "the ETag does not match");
//! assert_eq!(error.status(), http::StatusCode::PRECONDITION_FAILED);
//! assert_eq!(error.code(), "resourceModified");
//! ```

use std::borrow::Cow;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::request_id::RequestIds;
use crate::store::{StoreError, StoreErrorKind};

/// What went wrong, at the granularity that decides the status code and Graph error code.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 401: no bearer credentials were sent.
    MissingToken,
    /// 401: the bearer token was rejected (malformed, expired, bad signature, ...).
    InvalidToken,
    /// 400: the `Authorization` header is malformed beyond a bad token (e.g. sent twice).
    InvalidAuthorizationRequest,
    /// 403: the token is valid but lacks the permission the operation needs.
    InsufficientScope,
    /// 403: the caller may not reach this user's object.
    AccessDenied,
    /// 400: the request is malformed (bad JSON, schema violation, bad header, ...).
    BadRequest,
    /// 404: no such path or no such user.
    NotFound,
    /// 405: the path exists but not with this method.
    MethodNotAllowed,
    /// 412: `If-Match` did not match the current `ETag`.
    PreconditionFailed,
    /// 408: the request (its body, say) took longer than the server allows.
    RequestTimeout,
    /// 413: the body is larger than the configured limit.
    PayloadTooLarge,
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 429: the caller exceeded its rate limit.
    TooManyRequests,
    /// 503: the store is unreachable or too contended; try again later.
    ServiceUnavailable,
    /// 500: a bug or an unexpected store failure.
    Internal,
    /// 424: a request of a batch was not run because one it depends on failed.
    FailedDependency,
    /// 507: a quota is full (objects per tenant); existing objects still update.
    QuotaExceeded,
    /// 501: the request uses something this server does not implement (a transfer coding
    /// other than `chunked`, RFC 9112 §6.1).
    NotImplemented,
}

impl ErrorKind {
    /// The HTTP status this kind is answered with.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            Self::MissingToken | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope | Self::AccessDenied => StatusCode::FORBIDDEN,
            Self::InvalidAuthorizationRequest | Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            Self::QuotaExceeded => StatusCode::INSUFFICIENT_STORAGE,
            Self::FailedDependency => StatusCode::FAILED_DEPENDENCY,
        }
    }

    /// The Graph error `code` for this kind: one code per status, so a client can switch on
    /// it (the message says which check failed). See [`ERROR_CATALOGUE`] for the sources.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            // Graph's identity layer answers a missing or bad token with this code.
            Self::MissingToken | Self::InvalidToken => "InvalidAuthenticationToken",
            Self::InvalidAuthorizationRequest | Self::BadRequest => "invalidRequest",
            Self::InsufficientScope | Self::AccessDenied => "accessDenied",
            Self::NotFound => "itemNotFound",
            Self::MethodNotAllowed => "notAllowed",
            Self::PreconditionFailed => "resourceModified",
            Self::RequestTimeout => "requestTimeout",
            Self::PayloadTooLarge => "payloadTooLarge",
            Self::UnsupportedMediaType => "unsupportedMediaType",
            Self::TooManyRequests => "activityLimitReached",
            Self::ServiceUnavailable => "serviceNotAvailable",
            Self::Internal => "generalException",
            Self::NotImplemented => "notSupported",
            Self::QuotaExceeded => "quotaLimitReached",
            Self::FailedDependency => "failedDependency",
        }
    }
}

impl ErrorKind {
    /// Every kind, for catalogues and tests that must cover them all.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::MissingToken,
        ErrorKind::InvalidToken,
        ErrorKind::InvalidAuthorizationRequest,
        ErrorKind::InsufficientScope,
        ErrorKind::AccessDenied,
        ErrorKind::BadRequest,
        ErrorKind::NotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::PreconditionFailed,
        ErrorKind::RequestTimeout,
        ErrorKind::PayloadTooLarge,
        ErrorKind::UnsupportedMediaType,
        ErrorKind::TooManyRequests,
        ErrorKind::ServiceUnavailable,
        ErrorKind::Internal,
        ErrorKind::NotImplemented,
        ErrorKind::QuotaExceeded,
        ErrorKind::FailedDependency,
    ];
}

/// The error-code catalogue: status, Graph `error.code`, and where the code comes from.
/// README's table is this one; a test keeps them equal.
pub const ERROR_CATALOGUE: &[(u16, &str, &str)] = &[
    (
        400,
        "invalidRequest",
        "Graph error responses: code property values",
    ),
    (
        401,
        "InvalidAuthenticationToken",
        "Graph's identity layer, for a missing or bad token",
    ),
    (
        403,
        "accessDenied",
        "Graph error responses: code property values",
    ),
    (
        404,
        "itemNotFound",
        "Graph error responses: code property values",
    ),
    (
        405,
        "notAllowed",
        "Graph error responses: code property values",
    ),
    (
        408,
        "requestTimeout",
        "ours (Graph lists none); RFC 9110 §15.5.9",
    ),
    (
        412,
        "resourceModified",
        "Graph error responses: \"usually an eTag mismatch\"",
    ),
    (
        413,
        "payloadTooLarge",
        "Graph workbook error codes (Graph lists none in general)",
    ),
    (
        415,
        "unsupportedMediaType",
        "Graph workbook error codes (Graph lists none in general)",
    ),
    (
        424,
        "failedDependency",
        "ours, for JSON batching (Graph's batch answers 424 with no listed code)",
    ),
    (
        429,
        "activityLimitReached",
        "Graph error responses: code property values",
    ),
    (
        500,
        "generalException",
        "Graph error responses: code property values",
    ),
    (
        501,
        "notSupported",
        "Graph error responses: code property values",
    ),
    (
        503,
        "serviceNotAvailable",
        "Graph error responses: code property values",
    ),
    (
        507,
        "quotaLimitReached",
        "Graph error responses: code property values",
    ),
];

/// A Graph-style error: a kind, a precise human message, and the headers its status requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    kind: ErrorKind,
    message: Cow<'static, str>,
    challenge: Option<HeaderValue>,
    retry_after_secs: Option<u32>,
    detail: Option<std::sync::Arc<str>>,
    /// A 415 for the body's content coding, not its media type: answered with
    /// `Accept-Encoding: identity`, which tells the two apart (RFC 9110 §12.5.3, §15.5.16).
    unsupported_coding: bool,
}

/// The media types a PATCH body may have, as advertised in `Accept-Patch`.
pub(crate) const ACCEPT_PATCH: &str = "application/json, application/merge-patch+json";
/// The methods the two routes answer, as advertised in `Allow`.
pub(crate) const ALLOW: &str = "GET, HEAD, PATCH";

impl GraphError {
    /// An error of `kind` with a message for the caller.
    #[cold]
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            challenge: None,
            retry_after_secs: None,
            detail: None,
            unsupported_coding: false,
        }
    }

    /// A 415 for a body's content coding (see `unsupported_coding`).
    #[cold]
    pub(crate) fn unsupported_coding(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            unsupported_coding: true,
            ..Self::new(ErrorKind::UnsupportedMediaType, message)
        }
    }

    /// Attaches an operator-facing detail (say, why the store failed). It is never sent to
    /// the caller; it rides in the response's extensions for logs.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<std::sync::Arc<str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The operator-facing detail, if any.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// Sets the `WWW-Authenticate` challenge (401 and 403 responses).
    #[must_use]
    pub fn with_challenge(mut self, challenge: HeaderValue) -> Self {
        self.challenge = Some(challenge);
        self
    }

    /// Sets `Retry-After`, in seconds (429 and 503 responses).
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_secs = Some(seconds);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The Graph error code.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The message for the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `WWW-Authenticate` challenge, if any.
    pub fn challenge(&self) -> Option<&HeaderValue> {
        self.challenge.as_ref()
    }

    /// Renders the error as Graph does, stamping the request's ids into `innerError` and the
    /// `request-id` / `client-request-id` headers.
    #[cold]
    pub fn into_response(self, ids: &RequestIds) -> Response<Full<Bytes>> {
        let body = serde_json::json!({
            "error": {
                "code": self.code(),
                "message": &*self.message,
                "innerError": {
                    "date": utc_timestamp(SystemTime::now()),
                    "request-id": ids.request_id_str(),
                    "client-request-id": ids.client_request_id_str(),
                }
            }
        });
        let bytes = serde_json::to_vec(&body).map_or_else(|_| Bytes::new(), Bytes::from);
        let mut response = Response::new(Full::new(bytes));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        ids.stamp(headers);
        match self.kind {
            ErrorKind::MissingToken
            | ErrorKind::InvalidToken
            | ErrorKind::InvalidAuthorizationRequest
            | ErrorKind::InsufficientScope => {
                let challenge = self
                    .challenge
                    .clone()
                    .unwrap_or_else(|| HeaderValue::from_static("Bearer"));
                headers.insert(header::WWW_AUTHENTICATE, challenge);
            }
            ErrorKind::MethodNotAllowed => {
                headers.insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            }
            ErrorKind::UnsupportedMediaType => {
                headers.insert("accept-patch", HeaderValue::from_static(ACCEPT_PATCH));
                if self.unsupported_coding {
                    headers.insert("accept-encoding", HeaderValue::from_static("identity"));
                }
            }
            _ => {}
        }
        if let Some(seconds) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(self);
        response
    }
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.status(), self.code(), self.message)
    }
}

impl std::error::Error for GraphError {}

/// Formats `time` as Graph's `innerError.date`: UTC, seconds precision, no zone suffix.
/// How a store failure looks to a Graph client: 503 with `Retry-After` while the store is
/// unreachable, 500 otherwise. The store's own message is kept as the error's detail (for logs),
/// never shown to the caller. The store layer knows nothing of HTTP; this is the one mapping.
impl From<StoreError> for GraphError {
    fn from(error: StoreError) -> Self {
        let graph = match error.kind() {
            StoreErrorKind::Unavailable => GraphError::new(
                ErrorKind::ServiceUnavailable,
                "The service is temporarily unavailable; retry later.",
            )
            .with_retry_after(1),
            _ => GraphError::new(
                ErrorKind::Internal,
                "The store failed to complete the request.",
            ),
        };
        graph.with_detail(error.into_message())
    }
}

pub(crate) fn utc_timestamp(time: SystemTime) -> String {
    thread_local! {
        /// The last second this thread wrote: errors and audit records come many a second.
        static LAST: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            let days = (secs / 86_400) as i64;
            let rem = secs % 86_400;
            let (year, month, day) = civil_from_days(days);
            last.1 = format!(
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
                rem / 3600,
                (rem % 3600) / 60,
                rem % 60
            );
            last.0 = secs;
        }
        last.1.clone()
    })
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
