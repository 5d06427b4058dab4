//! A refusal made before the request's body is read, and the connection it leaves behind.
//!
//! The auth layer (401), the rate limit (429), the preflight (403, 404, 405), the content
//! type (415), the transfer coding (501), the merge patch's and the batch's checks of the
//! head (413 on a declared length, 400 on two framings, 405, 415, 429) and the server's own
//! limits (503) refuse a request from its head and never read its body; the service answers
//! a GET, or refuses a request that came without a merge patch (any method but a PATCH, or a
//! PATCH no merge-patch layer read: it takes a [`MergePatch`](crate::MergePatch) in the
//! request's extensions to mean the body was read), without reading a body it may declare. On
//! HTTP/1 that body still sits on the connection, ahead of any next request. hyper reads what
//! has arrived of it; when that is not all of it, hyper closes the connection after the
//! answer without saying so in the answer, and a client that pools connections sends its
//! next request on a connection that is closing (measured: the answer came back without
//! `Connection: close` and the next request on the socket got no answer).
//!
//! So every such refusal follows one rule, [`GraphError::into_refusal`]: when the request
//! declares a body (`Transfer-Encoding`, or a `Content-Length` other than 0; RFC 9112 §6.3),
//! the answer says `Connection: close` (RFC 9112 §9.6) and the client opens a new connection
//! for what it sends next. A request that declares no body keeps its connection. HTTP/2
//! streams end on their own: nothing to add there.
//!
//! The timeout's 408 closes an HTTP/1 connection whatever the request declared: it may come
//! while the body is still arriving, when the connection's framing is out of step with the
//! requests (RFC 9110 §15.5.9; RFC 7231 §6.5.7, which it replaced, had the server send
//! `close` with every 408).

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderMap, HeaderValue, TRANSFER_ENCODING};
use http::{Request, Response, Version};
use http_body_util::Full;

use crate::error::GraphError;
use crate::request_id::RequestIds;

impl GraphError {
    /// The answer to `request`, refused before its body was read: the error's response (see
    /// [`into_response`](Self::into_response)) with the request's ids and, on HTTP/1 when the
    /// request declares a body (`Transfer-Encoding`, or a `Content-Length` other than 0),
    /// `Connection: close`; see the [module docs](crate::refusal).
    ///
    /// ```
    /// use security_update::{ErrorKind, GraphError};
    ///
    /// let upload = http::Request::patch("/me/security")
    ///     .header("content-length", "1000000")
    ///     .body(())
    ///     .unwrap();
    /// let refused = GraphError::new(ErrorKind::MissingToken, "Access token is empty.");
    /// let response = refused.into_refusal(&upload);
    /// assert_eq!(response.status(), 401);
    /// assert_eq!(response.headers()["connection"], "close");
    ///
    /// // No body: the connection stays open for the next request.
    /// let probe = http::Request::get("/me/security").body(()).unwrap();
    /// let refused = GraphError::new(ErrorKind::MissingToken, "Access token is empty.");
    /// assert!(!refused.into_refusal(&probe).headers().contains_key("connection"));
    /// ```
    #[cold]
    pub fn into_refusal<B>(self, request: &Request<B>) -> Response<Full<Bytes>> {
        self.into_refusal_with(&RequestIds::of(request), request)
    }

    /// [`into_refusal`](Self::into_refusal) with `ids` the caller holds: for the stack's own
    /// services, which carry a request's ids as a value rather than in its extensions.
    #[cold]
    pub(crate) fn into_refusal_with<B>(
        self,
        ids: &RequestIds,
        request: &Request<B>,
    ) -> Response<Full<Bytes>> {
        let response = self.into_response(ids);
        close_if_body_unread(response, request.version(), request.headers())
    }
}

/// Whether a request with these headers carries a body (RFC 9112 §6.3): a transfer coding,
/// or a length other than 0. A length that is not a number counts as a body (hyper refuses
/// such a request before any service sees it).
///
/// ```
/// use security_update::refusal::declares_body;
///
/// let upload = http::Request::patch("/me/security").header("content-length", "2");
/// let upload = upload.body(()).unwrap();
/// assert!(declares_body(upload.headers()));
/// let probe = http::Request::get("/healthz").header("content-length", "0").body(()).unwrap();
/// assert!(!declares_body(probe.headers()));
/// ```
#[must_use]
pub fn declares_body(headers: &HeaderMap) -> bool {
    if headers.contains_key(TRANSFER_ENCODING) {
        return true;
    }
    headers
        .get(CONTENT_LENGTH)
        .is_some_and(|length| length.as_bytes().trim_ascii() != b"0")
}

/// The same rule for an answer that is not a [`GraphError`]: `response` refuses a request
/// with these `request_headers` and `version` without reading its body, so on HTTP/1 it
/// closes the connection when the request declares a body (see the [module docs](self)).
///
/// ```
/// use security_update::refusal::close_if_body_unread;
///
/// let upload = http::Request::post("/healthz")
///     .header("transfer-encoding", "chunked")
///     .body(())
///     .unwrap();
/// let refused = http::Response::builder().status(405).body(()).unwrap();
/// let refused = close_if_body_unread(refused, upload.version(), upload.headers());
/// assert_eq!(refused.headers()["connection"], "close");
/// ```
pub fn close_if_body_unread<B>(
    response: Response<B>,
    version: Version,
    request_headers: &HeaderMap,
) -> Response<B> {
    if declares_body(request_headers) {
        close_after(response, version)
    } else {
        response
    }
}

/// [`close_after`] with the request's version when its body was left `unread` (the version
/// when [`declares_body`], kept while the request itself is gone): for an answer made later,
/// in a future.
///
/// ```
/// use security_update::refusal::{close_if_unread, declares_body};
///
/// let upload = http::Request::get("/healthz").header("content-length", "5").body(()).unwrap();
/// let unread = declares_body(upload.headers()).then_some(upload.version());
/// let answer = close_if_unread(http::Response::new(()), unread);
/// assert_eq!(answer.headers()["connection"], "close");
/// ```
pub fn close_if_unread<B>(response: Response<B>, unread: Option<Version>) -> Response<B> {
    match unread {
        Some(version) => close_after(response, version),
        None => response,
    }
}

/// Marks `response` as the last on its HTTP/1 connection: for a refusal that left the body
/// unread, or read it only in part (the rest would otherwise be taken for the next request),
/// and for a 408, which may come mid-body (see the [module docs](self)).
/// The client learns from `Connection: close` not to reuse the connection (RFC 9112 §9.6).
/// HTTP/2 streams are independent: nothing to do there. To an HTTP/1.0 request the answer
/// is made an HTTP/1.0 one (hyper answers such a client in 1.0 whatever the answer says, but
/// adds `keep-alive` to a 1.1 answer's `close` when the client asked to keep the connection).
///
/// ```
/// use security_update::refusal::close_after;
///
/// let response = close_after(http::Response::new(()), http::Version::HTTP_11);
/// assert_eq!(response.headers()["connection"], "close");
/// let response = close_after(http::Response::new(()), http::Version::HTTP_2);
/// assert!(response.headers().get("connection").is_none());
/// ```
pub fn close_after<B>(mut response: Response<B>, version: Version) -> Response<B> {
    mark_last(&mut response, version);
    response
}

/// [`close_after`] in place: an answer is a few hundred bytes, copied at each move.
pub(crate) fn mark_last<B>(response: &mut Response<B>, version: Version) {
    if version <= Version::HTTP_11 {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        // See the doc comment: hyper would answer `Connection: close, keep-alive`.
        if version == Version::HTTP_10 {
            *response.version_mut() = version;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    http::header::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn a_body_is_a_transfer_coding_or_a_length_other_than_zero() {
        assert!(declares_body(&headers(&[("transfer-encoding", "chunked")])));
        assert!(declares_body(&headers(&[("content-length", "1")])));
        assert!(declares_body(&headers(&[("content-length", "x")])));
        assert!(!declares_body(&headers(&[("content-length", "0")])));
        assert!(!declares_body(&headers(&[("content-length", " 0 ")])));
        assert!(!declares_body(&headers(&[(
            "content-type",
            "application/json"
        )])));
    }

    #[test]
    fn only_http1_is_told_to_close() {
        for (version, closes) in [
            (Version::HTTP_09, true),
            (Version::HTTP_10, true),
            (Version::HTTP_11, true),
            (Version::HTTP_2, false),
            (Version::HTTP_3, false),
        ] {
            let response = close_after(Response::new(()), version);
            assert_eq!(
                response.headers().contains_key(CONNECTION),
                closes,
                "{version:?}"
            );
            // An HTTP/1.0 answer stays in its request's version (hyper would add keep-alive).
            let answered = if version == Version::HTTP_10 {
                version
            } else {
                Version::HTTP_11
            };
            assert_eq!(response.version(), answered, "{version:?}");
        }
    }
}
