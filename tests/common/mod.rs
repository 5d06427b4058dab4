//! Shared test fixtures: a tenant, its users, their tokens, and a way to send requests.
#![allow(dead_code, unreachable_pub)]

pub mod pg;
pub mod process;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use security_update::{
    GLOBAL_ADMINISTRATOR, MemoryStore, Principal, SecurityUpdateService, Stack, StaticTokens, stack,
};
use serde_json::Value;
use tower::ServiceExt;

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const OTHER_TENANT: &str = "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6";
pub const ALICE: &str = "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa";
pub const BOB: &str = "bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb";
pub const ADMIN: &str = "cccccccc-3333-4333-8333-cccccccccccc";
pub const APP: &str = "dddddddd-4444-4444-8444-dddddddddddd";
pub const WRITE: &str = "SecurityEvents.ReadWrite.All";
pub const READ: &str = "SecurityEvents.Read.All";

/// Tokens: `alice` (write), `bob` (write), `reader` (read only, as Alice), `noscope`,
/// `admin` (write + Global Administrator), `app` (application role write), `foreign-app`
/// (another tenant).
pub fn tokens() -> StaticTokens {
    StaticTokens::new()
        .with_token(
            "alice",
            Principal::delegated(TENANT, ALICE)
                .with_upn("alice@contoso.com")
                .with_scopes([WRITE]),
        )
        .with_token(
            "bob",
            Principal::delegated(TENANT, BOB).with_scopes([WRITE]),
        )
        .with_token(
            "reader",
            Principal::delegated(TENANT, ALICE).with_scopes([READ]),
        )
        .with_token(
            "noscope",
            Principal::delegated(TENANT, ALICE).with_scopes(["User.Read"]),
        )
        .with_token(
            "admin",
            Principal::delegated(TENANT, ADMIN)
                .with_scopes([WRITE])
                .with_role_template_ids([GLOBAL_ADMINISTRATOR]),
        )
        .with_token(
            "app",
            Principal::application(TENANT, APP).with_roles([WRITE]),
        )
        .with_token(
            "foreign-app",
            Principal::application(OTHER_TENANT, APP).with_roles([WRITE]),
        )
}

pub type App = Stack<MemoryStore, StaticTokens>;

/// The full stack over a fresh memory store, and the store.
pub fn app() -> (App, MemoryStore) {
    let store = MemoryStore::new();
    (
        stack(SecurityUpdateService::new(store.clone()), tokens()),
        store,
    )
}

/// Like [`app`], under an open type: PATCH requests can carry properties and really change the
/// object. (Under Graph's own type, which has no writable property, every valid PATCH is a
/// no-op that stores nothing.)
pub fn open_app() -> (App, MemoryStore) {
    let store = MemoryStore::new();
    let service = security_update::StackBuilder::new(store.clone())
        .with_schema(security_update::ResourceSchema::open_type())
        .into_service();
    (stack(service, tokens()), store)
}

/// A patch that sets `revision` to `n`: a real change whenever `n` differs from what is stored.
pub fn revision(n: u64) -> String {
    format!(r#"{{"revision": {n}}}"#)
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// The object in a 200's body, without its `@odata.context` (which must be there, in
    /// Graph's shape for this entity).
    pub fn object(&self) -> Value {
        let mut json = self.json();
        let context = json
            .as_object_mut()
            .and_then(|map| map.shift_remove("@odata.context"))
            .unwrap_or_else(|| panic!("no @odata.context in {json}"));
        let context = context.as_str().unwrap().to_owned();
        assert!(
            context.contains("/$metadata#users('") && context.ends_with("/$entity"),
            "{context}"
        );
        json
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    /// Asserts Graph's error envelope and returns its message.
    pub fn error_message(&self) -> String {
        let json = self.json();
        let error = &json["error"];
        assert!(error["code"].is_string(), "no error.code in {json}");
        let inner = &error["innerError"];
        assert_eq!(inner["request-id"], self.header("request-id"), "{json}");
        assert_eq!(
            inner["client-request-id"],
            self.header("client-request-id"),
            "{json}"
        );
        assert_eq!(inner["date"].as_str().map(str::len), Some(19), "{json}");
        assert!(self.header("content-type").starts_with("application/json"));
        error["message"].as_str().unwrap().to_owned()
    }
}

/// A request builder with JSON content type and a bearer token, when given.
pub fn request(method: Method, path: &str, token: Option<&str>) -> http::request::Builder {
    let mut builder = Request::builder().method(method.clone()).uri(path);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    if method == Method::PATCH {
        builder = builder.header("content-type", "application/json");
    }
    builder
}

pub async fn send<S, B>(service: S, request: Request<Full<Bytes>>) -> Reply
where
    S: tower::Service<Request<Full<Bytes>>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let response = service.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

pub async fn patch<S, B>(app: &S, path: &str, token: &str, body: &str) -> Reply
where
    S: tower::Service<Request<Full<Bytes>>, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let req = request(Method::PATCH, path, Some(token))
        .body(Full::from(body.to_owned()))
        .unwrap();
    send(app.clone(), req).await
}

pub async fn get<S, B>(app: &S, path: &str, token: &str) -> Reply
where
    S: tower::Service<Request<Full<Bytes>>, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let req = request(Method::GET, path, Some(token))
        .body(Full::default())
        .unwrap();
    send(app.clone(), req).await
}

/// Sends `request` over a fresh HTTP/1.1 connection to `addr`.
pub async fn send_http1<B>(addr: std::net::SocketAddr, request: Request<B>) -> Reply
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// A request body sent in several chunks with no Content-Length: HTTP/1.1 chunked encoding.
pub struct Chunked(pub std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(
            self.0
                .pop_front()
                .map(|chunk| Ok(http_body::Frame::data(chunk))),
        )
    }
}

/// Serves `app` with hyper (HTTP/1.1 and HTTP/2) on a fresh loopback port, for the rest of
/// the test.
pub async fn serve_on_loopback<S, B>(app: S) -> std::net::SocketAddr
where
    S: tower::Service<Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let app = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), app)
                .await;
            });
        }
    });
    addr
}
