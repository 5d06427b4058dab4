//! `request-id` / `client-request-id`, as Microsoft Graph stamps them on every response.
//!
//! Graph gives every request a fresh GUID `request-id` and echoes the caller's
//! `client-request-id` (or, when none was sent, repeats the `request-id` there). The ids also
//! appear in every error body's `innerError`, so [`RequestIdLayer`] puts them into the request's
//! extensions as [`RequestIds`] for the layers and the service inside it.
//!
//! ```
//! use security_update::RequestIdLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(RequestIdLayer::new())
//!     .service(service_fn(|_req: http::Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(()))
//!     }));
//! let request = http::Request::builder()
//!     .header("client-request-id", "my-id")
//!     .body(())
//!     .unwrap();
//! let response = svc.oneshot(request).await.unwrap();
//! assert_eq!(response.headers()["client-request-id"], "my-id");
//! assert_eq!(response.headers()["request-id"].len(), 36);
//! # }
//! ```

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// The `request-id` response header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
/// The `client-request-id` request and response header.
pub const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("client-request-id");

/// Longest `client-request-id` we echo; Graph expects a GUID (36 bytes).
const MAX_CLIENT_REQUEST_ID: usize = 128;

/// The ids of one request, found in request extensions behind [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestIds {
    request_id: HeaderValue,
    /// `None` when the `request-id` stands in for it (no copy of it made).
    client_request_id: Option<HeaderValue>,
    /// Put there by [`RequestIdLayer`], which stamps the response on its way out: this
    /// crate's own answers need not stamp it first (two header inserts a request).
    from_layer: bool,
}

/// The same ids, wherever they were made.
impl PartialEq for RequestIds {
    fn eq(&self, other: &Self) -> bool {
        self.request_id == other.request_id && self.client_request_id() == other.client_request_id()
    }
}

impl Eq for RequestIds {}

impl RequestIds {
    /// Fresh ids; `client_request_id` is echoed when it is a sane header value, otherwise the
    /// new `request-id` stands in for it, as Graph does.
    pub fn generate(client_request_id: Option<HeaderValue>) -> Self {
        let request_id = new_request_id();
        let client_request_id = client_request_id.filter(is_echoable);
        Self {
            request_id,
            client_request_id,
            from_layer: false,
        }
    }

    /// The ids a layer put into `request`'s extensions, or fresh ones when no
    /// [`RequestIdLayer`] runs outside.
    pub fn of<B>(request: &Request<B>) -> Self {
        Self::from_parts(request.headers(), request.extensions())
    }

    /// [`of`](Self::of), taking the ids out of `request`'s extensions instead of cloning
    /// them: for the service at the end of the stack, which consumes the request (a clone
    /// and its drop are two atomic instructions a `HeaderValue`).
    pub(crate) fn take<B>(request: &mut Request<B>) -> Self {
        match request.extensions_mut().remove::<Self>() {
            Some(ids) => ids,
            None => Self::generate(single_header(request.headers(), &CLIENT_REQUEST_ID).cloned()),
        }
    }

    pub(crate) fn from_parts(headers: &HeaderMap, extensions: &http::Extensions) -> Self {
        match extensions.get::<Self>() {
            Some(ids) => ids.clone(),
            None => Self::generate(single_header(headers, &CLIENT_REQUEST_ID).cloned()),
        }
    }

    /// The server-assigned `request-id`.
    pub fn request_id(&self) -> &HeaderValue {
        &self.request_id
    }

    /// The `client-request-id` echoed to the caller.
    pub fn client_request_id(&self) -> &HeaderValue {
        self.client_request_id.as_ref().unwrap_or(&self.request_id)
    }

    pub(crate) fn request_id_str(&self) -> &str {
        self.request_id.to_str().unwrap_or_default()
    }

    pub(crate) fn client_request_id_str(&self) -> &str {
        self.client_request_id().to_str().unwrap_or_default()
    }

    /// Writes both ids into response headers, replacing any there.
    pub fn stamp(&self, headers: &mut HeaderMap) {
        headers.insert(REQUEST_ID, self.request_id.clone());
        headers.insert(CLIENT_REQUEST_ID, self.client_request_id().clone());
    }

    /// [`stamp`](Self::stamp), by value: the `request-id` moves into its header.
    fn stamp_owned(self, headers: &mut HeaderMap) {
        let client_request_id = self
            .client_request_id
            .unwrap_or_else(|| self.request_id.clone());
        headers.insert(REQUEST_ID, self.request_id);
        headers.insert(CLIENT_REQUEST_ID, client_request_id);
    }

    /// [`stamp`](Self::stamp), unless the ids came from a [`RequestIdLayer`] outside, which
    /// stamps the response itself: for this crate's own answers on the hot path, into
    /// `headers` that hold neither id yet (a response just made). Appended, not inserted:
    /// the same where no value is there to replace, and `append` is the code hyper's parse
    /// of every request runs already, where `insert` is more code a PATCH runs through
    /// (`scripts/request_footprint.py`).
    pub(crate) fn stamp_unless_layered(&self, headers: &mut HeaderMap) {
        debug_assert!(
            !headers.contains_key(&REQUEST_ID) && !headers.contains_key(&CLIENT_REQUEST_ID)
        );
        if !self.from_layer {
            headers.append(REQUEST_ID, self.request_id.clone());
            headers.append(CLIENT_REQUEST_ID, self.client_request_id().clone());
        }
    }
}

/// Adds [`RequestIds`] to requests and the matching headers to responses.
#[must_use]
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer {
    _priv: (),
}

impl RequestIdLayer {
    /// The layer with GUID request ids.
    pub fn new() -> Self {
        Self { _priv: () }
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestId { inner }
    }
}

/// The service made by [`RequestIdLayer`].
#[must_use]
#[derive(Debug, Clone)]
pub struct RequestId<S> {
    inner: S,
}

impl<S> RequestId<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    crate::macros::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestId<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let ids =
            RequestIds::generate(single_header(request.headers(), &CLIENT_REQUEST_ID).cloned());
        // The outermost layer of the stack: room for what the layers inside put there.
        crate::make_extension_room(request.extensions_mut());
        request.extensions_mut().insert(RequestIds {
            from_layer: true,
            ..ids.clone()
        });
        ResponseFuture {
            inner: self.inner.call(request),
            ids: Some(ids),
        }
    }
}

pin_project! {
    /// Response future of [`RequestId`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        ids: Option<RequestIds>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(ids) = this.ids.take() {
            ids.stamp_owned(response.headers_mut());
        }
        Poll::Ready(Ok(response))
    }
}

/// The value of a header sent exactly once; a repeated header counts as absent.
pub(crate) fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

fn is_echoable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_CLIENT_REQUEST_ID
        && bytes.iter().all(u8::is_ascii_graphic)
}

/// A GUID-shaped id, unique within the process and unpredictable across processes: a random
/// per-process key mixed with a counter through a bijection (splitmix64's finalizer).
fn new_request_id() -> HeaderValue {
    static SEED: OnceLock<(u64, u64)> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (hi_seed, lo_seed) = *SEED.get_or_init(|| (random_u64(), random_u64()));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let lo = mix(lo_seed.wrapping_add(n));
    let hi = mix(hi_seed ^ lo);
    // Version 4 / variant 1 bits, so the id reads as a random GUID.
    let hi = (hi & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let lo = (lo & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    // Hex by hand, eight digits at a time with word arithmetic, into the GUID's groups
    // (`8-4-4-4-12` digits): `format!` here cost more than the rest of the layer, a digit at
    // a time ~320 instructions (callgrind); a table of digit pairs was 512 bytes of data (8
    // cache lines) read on every request.
    let mut digits = [0u8; 32];
    for (chunk, word) in digits.chunks_exact_mut(8).zip([hi >> 32, hi, lo >> 32, lo]) {
        chunk.copy_from_slice(&hex_digits(word as u32));
    }
    let mut text = [b'-'; 36];
    for (start, from, len) in [(0, 0, 8), (9, 8, 4), (14, 12, 4), (19, 16, 4), (24, 20, 12)] {
        text[start..start + len].copy_from_slice(&digits[from..from + len]);
    }
    // One allocation holding the count and the text: the id is cloned into the request's
    // extensions and the response's headers, and `from_bytes`'s copy (a `Vec`) allocated its
    // shared count again on the first clone.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The eight lowercase hex digits of `word`, most significant first: each nibble spread into
/// a byte of its own, then `'0'` added, and `'a' - '0' - 10` more where the nibble is over 9.
fn hex_digits(word: u32) -> [u8; 8] {
    let mut spread = u64::from(word);
    spread = ((spread & 0xffff_0000) << 16) | (spread & 0x0000_ffff);
    spread = ((spread & 0x0000_ff00_0000_ff00) << 8) | (spread & 0x0000_00ff_0000_00ff);
    spread = ((spread & 0x00f0_00f0_00f0_00f0) << 4) | (spread & 0x000f_000f_000f_000f);
    let over_nine = ((spread + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (spread + 0x3030_3030_3030_3030 + over_nine * u64::from(b'a' - b'0' - 10)).to_be_bytes()
}

fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    async fn echo_ids(request: Request<()>) -> Result<Response<String>, Infallible> {
        let ids = request.extensions().get::<RequestIds>().cloned();
        Ok(Response::new(
            ids.map(|ids| ids.request_id_str().to_owned())
                .unwrap_or_default(),
        ))
    }

    #[tokio::test]
    async fn request_ids_are_guids_and_unique() {
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            let id = new_request_id();
            let text = id.to_str().unwrap();
            assert_eq!(text.len(), 36);
            assert_eq!(text.as_bytes()[14], b'4');
            // A GUID as `uuid` writes one: its digits and dashes in their places, a random
            // (version 4, RFC 9562 variant) id.
            let parsed = uuid::Uuid::parse_str(text).unwrap();
            assert_eq!(parsed.hyphenated().to_string(), text);
            assert_eq!(parsed.get_version(), Some(uuid::Version::Random));
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
            assert!(seen.insert(text.to_owned()), "duplicate id {text}");
        }
    }

    /// The word arithmetic writes what `format!` does, for every nibble in every place.
    #[test]
    fn hex_digits_are_formats_lowercase_hex() {
        let mut words = vec![
            0,
            u32::MAX,
            0x0123_4567,
            0x89ab_cdef,
            0x9a9a_9a9a,
            0xa9a9_a9a9,
        ];
        // Each digit value in each place, the others zero and fifteen.
        for place in 0..8 {
            for digit in 0..16u32 {
                words.push(digit << (4 * place));
                words.push(!(0xf << (4 * place)) | (digit << (4 * place)));
            }
        }
        words.extend((0..100_000u32).map(|n| n.wrapping_mul(0x9e37_79b9)));
        for word in words {
            let expected = format!("{word:08x}");
            assert_eq!(hex_digits(word), expected.as_bytes(), "{word:#x}");
        }
    }

    #[tokio::test]
    async fn response_carries_the_id_the_inner_service_saw() {
        let svc = RequestIdLayer::new().layer(service_fn(echo_ids));
        let response = svc.oneshot(Request::new(())).await.unwrap();
        let header = response.headers()["request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(response.body(), &header);
        assert_eq!(response.headers()["client-request-id"], header.as_str());
    }

    #[tokio::test]
    async fn client_request_id_is_echoed_unless_repeated_or_odd() {
        let svc = RequestIdLayer::new().layer(service_fn(echo_ids));
        let request = Request::builder()
            .header("client-request-id", "abc-123")
            .body(())
            .unwrap();
        let response = svc.clone().oneshot(request).await.unwrap();
        assert_eq!(response.headers()["client-request-id"], "abc-123");

        let request = Request::builder()
            .header("client-request-id", "one")
            .header("client-request-id", "two")
            .body(())
            .unwrap();
        let response = svc.clone().oneshot(request).await.unwrap();
        assert_eq!(
            response.headers()["client-request-id"],
            response.headers()["request-id"]
        );

        let long = "x".repeat(MAX_CLIENT_REQUEST_ID + 1);
        let request = Request::builder()
            .header("client-request-id", long)
            .body(())
            .unwrap();
        let response = svc.oneshot(request).await.unwrap();
        assert_eq!(
            response.headers()["client-request-id"],
            response.headers()["request-id"]
        );
    }
}
