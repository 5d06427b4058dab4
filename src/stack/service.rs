//! [`Stack`]: the service [`StackBuilder`](super::StackBuilder) builds: its layers, nested in
//! the builder's order, and one shortcut through them.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower::Service;

use crate::auth::{self, Auth, ClientAddress, TokenValidator};
use crate::batch::{self, Batch};
use crate::body::ResponseBody;
use crate::endpoint::{self, Carried, Endpoint};
use crate::merge_patch::BoxError;
use crate::request_id::{self, CLIENT_REQUEST_ID, RequestId, RequestIds, single_header};
use crate::store::SecurityStore;
use crate::timeout::{self, Timeout, WriteDeadline};

/// The layers of the stack, outermost first, nested as a stack composed by hand nests them.
type Layered<S, V> = RequestId<Timeout<Auth<Batch<Endpoint<S>>, V>>>;

/// The response body of a [`Stack`]: one [`ResponseBody`] for each layer that may answer on
/// its own (the timeout, the auth layer, the batch layer) around the endpoint's.
pub type StackBody = ResponseBody<ResponseBody<ResponseBody<Full<Bytes>>>>;

/// The whole pipeline, as [`StackBuilder`](super::StackBuilder) assembles it: its layers,
/// nested in the builder's order, and one shortcut through them.
///
/// The layers hand each other what they learn of a request in its extensions: the request-id
/// layer its ids, the timeout its deadline, the auth layer the caller's
/// [`Principal`](crate::Principal). That is a map made for each request, a boxed value for
/// each put into it and taken out again (the deadline only with a timeout), and the map's
/// drop: about 1,100 instructions of a PATCH that took 24,000 in process (benches/README.md).
/// A layer generic over the service inside it has no other way to pass them on.
///
/// `Stack` knows every layer it holds, so for the request most requests are (not a `$batch`,
/// with a bearer token the validator knows good at no cost, [`TokenValidator::cached`]) it
/// does what the layers would, in their order, and hands the three values to the
/// [`Endpoint`] directly. Every other request (a batch; a missing, malformed, unknown or
/// refused token; a token whose check takes time) goes through the layers themselves. Either
/// way the answer is the same, byte for byte but for the fresh ids and dates
/// (`tests/stack.rs`).
///
/// ```
/// use http_body_util::Full;
/// use security_update::{MemoryStore, Principal, StackBuilder, StaticTokens};
/// use tower::ServiceExt;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let tokens = StaticTokens::new().with_token(
///     "t",
///     Principal::delegated("72f988bf-86f1-41af-91ab-2d7cd011db47", "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa")
///         .with_scopes(["SecurityEvents.ReadWrite.All"]),
/// );
/// let app = StackBuilder::new(MemoryStore::new()).build(tokens);
/// let read = |token: &str| {
///     http::Request::get("/me/security")
///         .header("authorization", format!("Bearer {token}"))
///         .header("client-request-id", "my-id")
///         .body(Full::<bytes::Bytes>::default())
///         .unwrap()
/// };
/// // A known token: the shortcut. An unknown one: the auth layer's 401. Both carry the ids.
/// let known = app.clone().oneshot(read("t")).await.unwrap();
/// assert_eq!(known.status(), 200);
/// assert_eq!(known.headers()["client-request-id"], "my-id");
/// let unknown = app.oneshot(read("guess")).await.unwrap();
/// assert_eq!(unknown.status(), 401);
/// assert_eq!(unknown.headers()["client-request-id"], "my-id");
/// # }
/// ```
#[must_use]
pub struct Stack<S, V> {
    /// Shared: a service is cloned for every request (hyper-util's adapter does), and the
    /// layers hold an `Arc` each (the auth layer's, the batch layer's, the service's): one
    /// here instead, two atomic instructions a request for each saved (`scripts/atomics.py`).
    /// The shortcut needs the layers by reference only; a request that goes through them
    /// gets a clone of its own.
    layered: Arc<Layered<S, V>>,
    /// The client of the requests that name none ([`for_client`](Self::for_client)).
    client: Option<IpAddr>,
}

impl<S, V> Stack<S, V> {
    pub(super) fn new(layered: Layered<S, V>) -> Self {
        Self {
            layered: Arc::new(layered),
            client: None,
        }
    }

    /// This stack for the requests of one client, at `address`: those that carry no
    /// [`ClientAddress`] of their own are taken to come from it (the failed-authentication
    /// throttle counts their failures under it, and a `$batch`'s requests carry it).
    ///
    /// For a server that makes a service for each connection: inserting a `ClientAddress`
    /// into every request does the same, but a request's extensions are a map made for that
    /// request, and the stack's shortcut needs no address (only a refused or pending token
    /// is throttled, and those go through the layers): given here, the address is put in the
    /// requests that go through the layers, and only in those. A request's own
    /// `ClientAddress` (a proxy's client, say) still wins.
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    /// use http_body_util::Full;
    /// use security_update::auth::FailureThrottle;
    /// use security_update::{MemoryStore, StackBuilder, StaticTokens};
    /// use tower::ServiceExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // One failed token a client, then 429 until its bucket refills (a second).
    /// let stack = StackBuilder::new(MemoryStore::new())
    ///     .with_failure_throttle(FailureThrottle::new(1, 1))
    ///     .build(StaticTokens::new());
    /// let guess = || {
    ///     http::Request::get("/me/security")
    ///         .header("authorization", "Bearer guess")
    ///         .body(Full::<bytes::Bytes>::default())
    ///         .unwrap()
    /// };
    /// let peer = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    /// let connection = stack.clone().for_client(peer);
    /// assert_eq!(connection.clone().oneshot(guess()).await.unwrap().status(), 401);
    /// assert_eq!(connection.oneshot(guess()).await.unwrap().status(), 429);
    /// // Another connection's client has its own bucket.
    /// let other = stack.for_client(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 8)));
    /// assert_eq!(other.oneshot(guess()).await.unwrap().status(), 401);
    /// # }
    /// ```
    pub fn for_client(mut self, address: IpAddr) -> Self {
        self.client = Some(address);
        self
    }

    /// The endpoint at the inner end of the stack: the operation's service and its store.
    pub fn endpoint(&self) -> &Endpoint<S> {
        self.layered.get_ref().get_ref().get_ref().get_ref()
    }
}

impl<S, V> Clone for Stack<S, V> {
    fn clone(&self) -> Self {
        Self {
            layered: self.layered.clone(),
            client: self.client,
        }
    }
}

impl<S, V> std::fmt::Debug for Stack<S, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("endpoint", self.endpoint())
            .field("timeout", &self.layered.get_ref().limit())
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// What the layers' futures make of a request that goes through them.
type LayeredFuture<S, Fut, B> = request_id::ResponseFuture<
    timeout::ResponseFuture<
        auth::ResponseFuture<
            Batch<Endpoint<S>>,
            batch::ResponseFuture<
                endpoint::ResponseFuture<S, ResponseBody<B>>,
                Infallible,
                Full<Bytes>,
            >,
            Fut,
            B,
        >,
    >,
>;

impl<S, V, B> Service<Request<B>> for Stack<S, V>
where
    S: SecurityStore,
    V: TokenValidator,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    Layered<S, V>: Service<
            Request<B>,
            Response = Response<StackBody>,
            Error = Infallible,
            Future = LayeredFuture<S, V::Future, B>,
        >,
{
    type Response = Response<StackBody>;
    type Error = Infallible;
    type Future = StackFuture<S, V::Future, B>;

    /// Always ready: so are the layers, each ready when the one inside it is, down to the
    /// endpoint, which is always ready.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let timeout = self.layered.get_ref();
        let limit = timeout.limit();
        let auth = timeout.get_ref();
        // As the auth layer lets such a request in, and the batch layer passes it on.
        let principal = if auth.get_ref().serves(request.uri().path()) {
            None
        } else {
            auth.cached_principal(request.headers())
        };
        let Some(principal) = principal else {
            if let Some(address) = self.client
                && request.extensions().get::<ClientAddress>().is_none()
            {
                // Room for what the layers put there too, as the request-id layer would
                // make in an empty map (`make_extension_room`).
                crate::make_extension_room(request.extensions_mut());
                request.extensions_mut().insert(ClientAddress(address));
            }
            return StackFuture {
                kind: Kind::Layered {
                    future: Box::pin(self.call_layered(request)),
                },
            };
        };
        // As the request-id layer makes them; the endpoint's answers stamp them (no layer
        // outside does).
        let client_request_id = single_header(request.headers(), &CLIENT_REQUEST_ID).cloned();
        let ids = RequestIds::generate(client_request_id);
        // As the timeout layer does: its own deadline, raced by its future; with no limit of
        // its own, a deadline a timeout layer outside the stack put there still holds for the
        // write (its 408 is that layer's).
        let (raced, deadline) = match limit {
            Some(limit) => {
                let deadline = WriteDeadline::new(limit, ids.clone(), request.version());
                (Some(deadline.clone()), Some(deadline))
            }
            None => (None, request.extensions_mut().remove::<WriteDeadline>()),
        };
        let carried = Carried {
            ids,
            principal: Some(principal),
            deadline,
        };
        let future = auth.get_ref().get_ref().call_carried(request, carried);
        StackFuture {
            kind: Kind::Direct {
                future: timeout::ResponseFuture::new(Inward { future }, raced),
            },
        }
    }
}

impl<S, V> Stack<S, V> {
    /// `request` through the layers, on a clone of them of its own: the layers' `call`
    /// takes them mutably (the auth layer's, waiting for a token's check, takes its inner
    /// service with it).
    #[inline(never)]
    fn call_layered<B>(&self, request: Request<B>) -> <Layered<S, V> as Service<Request<B>>>::Future
    where
        Layered<S, V>: Service<Request<B>>,
    {
        let mut layered = Layered::clone(&self.layered);
        // Ready at once, as `poll_ready` says of the stack.
        debug_assert!(
            layered
                .poll_ready(&mut Context::from_waker(std::task::Waker::noop()))
                .is_ready()
        );
        layered.call(request)
    }
}

pin_project! {
    /// Response future of [`Stack`].
    pub struct StackFuture<S, Fut, B> {
        #[pin]
        kind: Kind<S, Fut, B>,
    }
}

pin_project! {
    /// The two ways through. The layers' future is boxed: it is the larger of the two (the
    /// token check's future and the batch's are in it), and inline it sized the shortcut's
    /// future too, and every future around it, each copied as it is made and handed on: in
    /// the server the future of a request went from 328 to 232 bytes, and a PATCH copies
    /// 9,573 -> 8,996 bytes through memcpy (perf uprobes, as `scripts/memmove_bytes.py
    /// server`). A request that goes through the layers (a batch, a token not known good)
    /// costs far more than one allocation.
    #[project = KindProj]
    enum Kind<S, Fut, B> {
        Direct { #[pin] future: timeout::ResponseFuture<Inward<endpoint::ResponseFuture<S, B>>> },
        Layered { future: Pin<Box<LayeredFuture<S, Fut, B>>> },
    }
}

impl<S, Fut, B> std::fmt::Debug for StackFuture<S, Fut, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackFuture").finish_non_exhaustive()
    }
}

impl<S, Fut, B> Future for StackFuture<S, Fut, B>
where
    S: SecurityStore,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    LayeredFuture<S, Fut, B>: Future<Output = Result<Response<StackBody>, Infallible>>,
{
    type Output = Result<Response<StackBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Direct { future } => future.poll(cx),
            KindProj::Layered { future } => future.as_mut().poll(cx),
        }
    }
}

pin_project! {
    /// The endpoint's answer in the bodies of the auth and batch layers it went past.
    struct Inward<F> {
        #[pin]
        future: F,
    }
}

impl<F> Future for Inward<F>
where
    F: Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
{
    type Output = Result<Response<ResponseBody<ResponseBody<Full<Bytes>>>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().future.poll(cx).map(|answer| {
            answer
                .map(|response| response.map(|body| ResponseBody::inner(ResponseBody::inner(body))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryStore, Principal, StackBuilder, StaticTokens};

    fn stack() -> Stack<MemoryStore, StaticTokens> {
        let alice = Principal::delegated("t", "a").with_scopes(["SecurityEvents.ReadWrite.All"]);
        StackBuilder::new(MemoryStore::new()).build(StaticTokens::new().with_token("a1", alice))
    }

    fn direct(method: &str, path: &str, authorization: Option<&str>) -> bool {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let future = stack().call(request.body(Full::new(Bytes::new())).unwrap());
        matches!(future.kind, Kind::Direct { .. })
    }

    /// `Stack::poll_ready` answers for its layers without asking them: they must be ready
    /// whatever they have seen, a rate limit spent and a throttle dry included.
    #[tokio::test]
    async fn the_layers_are_ready_whatever_they_have_seen() {
        use std::time::Duration;
        let alice = Principal::delegated("t", "a").with_scopes(["SecurityEvents.ReadWrite.All"]);
        let stack = StackBuilder::new(MemoryStore::new())
            .with_rate_limit(crate::RateLimitLayer::new(1, Duration::from_secs(3600)).with_burst(1))
            .with_failure_throttle(crate::auth::FailureThrottle::new(1, 1))
            .with_timeout(Duration::from_secs(30))
            .build(StaticTokens::new().with_token("a1", alice));
        let mut statuses = Vec::new();
        for authorization in ["Bearer a1", "Bearer a1", "Bearer guess", "Bearer guess"] {
            let mut request = Request::get("/me/security")
                .header("authorization", authorization)
                .body(Full::new(Bytes::new()))
                .unwrap();
            let client = crate::auth::ClientAddress(std::net::Ipv4Addr::LOCALHOST.into());
            request.extensions_mut().insert(client);
            let mut layered = Layered::clone(&stack.layered);
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let ready = Service::<Request<Full<Bytes>>>::poll_ready(&mut layered, &mut cx);
            assert!(ready.is_ready(), "{authorization}");
            statuses.push(layered.call(request).await.unwrap().status().as_u16());
        }
        // Spent and dry: the second of each was refused.
        assert_eq!(statuses, [200, 429, 401, 429]);
    }

    /// `for_client`: a request naming no client of its own is counted under the stack's,
    /// one that names its own under that one; a token known good still takes the shortcut.
    #[tokio::test]
    async fn a_stack_for_a_client_counts_that_clients_failures() {
        use std::net::Ipv4Addr;
        use tower::ServiceExt;
        let alice = Principal::delegated("t", "a").with_scopes(["SecurityEvents.ReadWrite.All"]);
        let stack = StackBuilder::new(MemoryStore::new())
            .with_failure_throttle(crate::auth::FailureThrottle::new(1, 1))
            .build(StaticTokens::new().with_token("a1", alice));
        let request = |token: &str, own: Option<Ipv4Addr>| {
            let mut request = Request::get("/me/security")
                .header("authorization", format!("Bearer {token}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            if let Some(own) = own {
                request.extensions_mut().insert(ClientAddress(own.into()));
            }
            request
        };
        let status = |stack: &Stack<MemoryStore, StaticTokens>, request| {
            let stack = stack.clone();
            async move { stack.oneshot(request).await.unwrap().status().as_u16() }
        };
        let (peer, other) = (Ipv4Addr::new(192, 0, 2, 7), Ipv4Addr::new(192, 0, 2, 8));
        let connection = stack.clone().for_client(peer.into());
        assert_eq!(status(&connection, request("guess", None)).await, 401);
        assert_eq!(status(&connection, request("guess", None)).await, 429);
        assert_eq!(
            status(&connection, request("guess", Some(other))).await,
            401
        );
        assert_eq!(status(&connection, request("a1", None)).await, 200);
        // The peer's bucket was the one spent: named, it is dry too.
        assert_eq!(status(&stack, request("guess", Some(peer))).await, 429);
        // A stack for no client counts no failure of a request that names none.
        assert_eq!(status(&stack, request("guess", None)).await, 401);
        assert_eq!(status(&stack, request("guess", None)).await, 401);
    }

    /// The shortcut is taken exactly where the layers would let a request straight through
    /// to the endpoint; `tests/stack.rs` shows that either way the answer is the same.
    #[test]
    fn a_known_token_outside_a_batch_takes_the_shortcut() {
        assert!(direct("PATCH", "/me/security", Some("Bearer a1")));
        assert!(direct("GET", "/nowhere", Some("bearer  a1")));
        assert!(!direct("POST", "/$batch", Some("Bearer a1")));
        assert!(!direct("PATCH", "/me/security", None));
        assert!(!direct("PATCH", "/me/security", Some("Bearer a2")));
        assert!(!direct("PATCH", "/me/security", Some("Basic a1")));
        assert!(!direct("PATCH", "/me/security", Some("Bearer a1 ")));
    }
}
